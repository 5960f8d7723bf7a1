"""Which TensorRT API exitgate calls, read from its source, and whether every release has it.

An AST scan (no import of the scanned code, no TensorRT needed for the scan) collects every use of a
TensorRT member in the project's code (``fixtures/``, ``models/``, ``suites/``, ``reports/``,
``conftest.py``): module attributes (``trt.BuilderFlag.TF32``), members of TensorRT objects
(``ctx.set_tensor_address(name, ptr)``), constructor calls, attribute writes
(``config.builder_optimization_level = 3``) and feature probes (``hasattr(config, "x")``,
``getattr(trt, "X", None)``). For each use it records the file and line, whether it sits behind
feature detection, and for calls the *kind* of every argument as far as the source proves it.

The receiver of a member is known from:

* the convention that ``trt`` is the TensorRT module (a parameter, or ``trt, flavor =
  import_tensorrt()``; binding that result to another name is reported);
* annotations with ``tensorrt-stubs`` classes (``config: trt_t.IBuilderConfig``), on parameters,
  variables, class attributes and project functions' return types;
* return types of TensorRT calls and properties, read from the live ``tensorrt_rtx`` binding's
  pybind11 signatures (``create_network(...) -> INetworkDefinition``);
* loops and comprehensions over those (``for i in range(n)``, ``[net.get_layer(i) for ...]``).

Feature detection counts when a use is inside ``if hasattr(x, "m")`` (also ``and`` chains,
``all(hasattr(x, m) for m in (...))``, a project predicate function returning such a test), after
an early exit (``if not hasattr(x, "m"): return``), reached through ``getattr(x, "m", default)`` or
a variable holding its result, or inside ``try: ... except AttributeError``. The guard is matched by
member name.

:func:`check` then holds the uses against the live ``tensorrt_rtx`` bindings (existence, pybind11
signature: argument count and kinds) and against ``tests/trt_api/members.json``, the frozen table
of members per full TensorRT release derived from NVIDIA's binding sources: a member some target
release lacks must be reached only behind feature detection.
"""

from __future__ import annotations

import ast
import difflib
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TABLE = Path(__file__).resolve().parent / "trt_api" / "members.json"
SCANNED = ("fixtures", "models", "suites", "reports", "conftest.py")
MODULE = "<module>"
ANY_GUARD = "*"

#: members exitgate uses that TensorRT-RTX does not have, each with why that is fine. A stale mark
#: (the member exists in RTX after all) fails the check, so this list stays true.
RTX_ABSENT: dict[tuple[str, str], str] = {
    ("BuilderFlag", "FP16"): "weak typing: TensorRT-RTX is always strongly typed",
    ("BuilderFlag", "INT8"): "weak typing: TensorRT-RTX is always strongly typed",
    ("IBuilderConfig", "int8_calibrator"): "implicit INT8 calibration: not in TensorRT-RTX",
    (MODULE, "IInt8EntropyCalibrator2"): "implicit INT8 calibration: not in TensorRT-RTX",
    ("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"): "8.x only; removed in 11.x and RTX",
}

#: uses the scan must find (a guard against the scan silently losing track of receivers)
EXPECTED_USES = (
    (MODULE, "Builder"),
    (MODULE, "OnnxParser"),
    (MODULE, "Runtime"),
    (MODULE, "nptype"),
    ("Builder", "create_network"),
    ("Builder", "build_serialized_network"),
    ("IBuilderConfig", "set_memory_pool_limit"),
    ("IBuilderConfig", "set_flag"),
    ("OnnxParser", "parse"),
    ("OnnxParser", "get_error"),
    ("ParserError", "desc"),
    ("INetworkDefinition", "get_layer"),
    ("ILayer", "get_output"),
    ("ITensor", "dtype"),
    ("Runtime", "deserialize_cuda_engine"),
    ("ICudaEngine", "get_tensor_dtype"),
    ("ICudaEngine", "create_execution_context"),
    ("IExecutionContext", "set_tensor_address"),
    ("IExecutionContext", "execute_async_v3"),
    ("IExecutionContext", "is_stream_capturable"),
    ("EngineInspector", "get_engine_information"),
    ("BuilderFlag", "REQUIRE_USER_ALLOCATION"),
)


# --------------------------------------------------------------------------------------------------
# What the scan records


@dataclass(frozen=True)
class Use:
    """One use of a TensorRT member. ``kind``: attr, call, set, probe (hasattr), init (a
    constructor call: ``member`` is the class). ``args``: argument kinds of a call, positional;
    ``keywords``: (name, kind); ``value``: the kind written by a set."""

    file: str
    line: int
    cls: str
    member: str
    kind: str
    guarded: bool
    args: tuple[str, ...] = ()
    keywords: tuple[tuple[str, str], ...] = ()
    starred: bool = False
    value: str = "?"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def name(self) -> str:
        return self.member if self.cls == MODULE else f"{self.cls}.{self.member}"


@dataclass
class ScanResult:
    uses: list[Use] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the scan itself could not follow

    def used(self) -> set[tuple[str, str]]:
        return {(u.cls, u.member) for u in self.uses if u.kind != "probe"}


# --------------------------------------------------------------------------------------------------
# The live binding: classes, members, pybind11 signatures


_PREFIX = re.compile(r"\b(?:tensorrt_rtx_bindings\.)?tensorrt_rtx\.|\btensorrt\.")


@dataclass(frozen=True)
class Param:
    name: str
    annotation: str
    has_default: bool
    default_none: bool


@dataclass(frozen=True)
class Signature:
    params: tuple[Param, ...]
    returns: str
    text: str


def _split_top(text: str, sep: str = ",") -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts]


def parse_signatures(doc: str | None, name: str) -> list[Signature]:
    """pybind11 signatures from a docstring: ``name(self: X, a: int = 0) -> R`` lines (one, or
    several after "Overloaded function."); for property accessors the name is empty."""
    sigs = []
    for line in (doc or "").splitlines():
        m = re.match(rf"^\s*(?:\d+\.\s*)?{re.escape(name)}\((.*)\)\s*->\s*(.+?)\s*$", line)
        if not m:
            continue
        params = []
        for i, part in enumerate(_split_top(m.group(1))):
            if not part or part in ("*args", "**kwargs"):
                if part:
                    return []  # (*args, **kwargs): the overloads follow
                continue
            pname, _, rest = part.partition(":")
            annot, eq, default = rest.partition("=")
            if i == 0 and pname.strip() in ("self", "arg0") and name:
                continue
            params.append(
                Param(
                    pname.strip(),
                    _PREFIX.sub("", annot.strip()),
                    bool(eq),
                    default.strip() == "None",
                )
            )
        sigs.append(Signature(tuple(params), _PREFIX.sub("", m.group(2)), line.strip()))
    return sigs


class Binding:
    """What the live ``tensorrt_rtx`` module offers: classes, members, signatures."""

    def __init__(self, trt: ModuleType) -> None:
        self.trt = trt
        self.name = f"{trt.__name__} {getattr(trt, '__version__', '?')}"

    def obj(self, cls: str) -> Any:
        return self.trt if cls == MODULE else getattr(self.trt, cls, None)

    def has(self, cls: str, member: str) -> bool:
        owner = self.obj(cls)
        return owner is not None and hasattr(owner, member)

    def members(self, cls: str) -> list[str]:
        owner = self.obj(cls)
        return [m for m in dir(owner) if not m.startswith("_")] if owner is not None else []

    def is_class(self, name: str) -> bool:
        return isinstance(getattr(self.trt, name, None), type)

    def is_enum(self, cls: str) -> bool:
        return hasattr(self.obj(cls), "__members__")

    def raw(self, cls: str, member: str) -> Any:
        owner = self.obj(cls)
        if owner is None:
            return None
        if isinstance(owner, type):
            for klass in owner.__mro__:
                if member in klass.__dict__:
                    return klass.__dict__[member]
            return None
        return getattr(owner, member, None)

    def signatures(self, cls: str, member: str) -> list[Signature]:
        raw = self.raw(cls, member)
        if raw is None:
            return []
        if isinstance(raw, property):
            return parse_signatures(getattr(raw.fget, "__doc__", None), "")
        return parse_signatures(getattr(raw, "__doc__", None), member)

    def setter(self, cls: str, member: str) -> list[Signature]:
        raw = self.raw(cls, member)
        if isinstance(raw, property) and raw.fset is not None:
            return parse_signatures(raw.fset.__doc__, "")
        return []

    def constructor(self, cls: str) -> list[Signature]:
        return self.signatures(cls, "__init__")

    def subclass(self, sub: str, base: str) -> bool:
        a, b = self.obj(sub), self.obj(base)
        return isinstance(a, type) and isinstance(b, type) and issubclass(a, b)

    def type_of_return(self, annotation: str) -> str | None:
        """A Python type annotation of a return value -> the scan's type."""
        text = annotation.strip()
        simple = {"int": "int", "str": "str", "bool": "bool", "float": "float", "bytes": "bytes"}
        if text in simple:
            return simple[text]
        name = text.rsplit("::", 1)[-1]
        for cand in (name, name[1:] if name.startswith("I") else name):
            if self.is_class(cand):
                return f"enumval:{cand}" if self.is_enum(cand) else f"inst:{cand}"
        return None

    def member_type(self, cls: str, member: str) -> str | None:
        """The scan's type of ``cls.member``: a property's value, an enum value, a bound method."""
        raw = self.raw(cls, member)
        if raw is None:
            return None
        if isinstance(raw, property):
            sigs = self.signatures(cls, member)
            return self.type_of_return(sigs[0].returns) if sigs else None
        if self.is_enum(cls) and not callable(raw):
            return f"enumval:{cls}"
        if callable(raw):
            return f"bound:{cls}.{member}"
        return None


# --------------------------------------------------------------------------------------------------
# The scan


_PRIM = {
    "int": "int",
    "str": "str",
    "bytes": "bytes",
    "bool": "bool",
    "float": "float",
    "bytearray": "bytes",
    "memoryview": "bytes",
}
_RETURNS = {"int": "int", "len": "int", "str": "str", "repr": "str", "bytes": "bytes"}
_RETURNS |= {"bool": "bool", "float": "float", "range": "range", "hasattr": "bool"}


def _literal_strings(node: ast.AST) -> tuple[str, ...] | None:
    if isinstance(node, ast.Tuple | ast.List | ast.Set) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return tuple(e.value for e in node.elts)  # type: ignore[attr-defined]
    return None


@dataclass
class _ClassInfo:
    attrs: dict[str, ast.expr] = field(default_factory=dict)  # annotations
    methods: dict[str, ast.FunctionDef] = field(default_factory=dict)


class _Project:
    """Project-level facts the scan needs: function/method return annotations, class attribute
    annotations, accessor helpers (``getattr(obj, name, default)``) and guard predicates."""

    def __init__(self, trees: Mapping[str, ast.Module]) -> None:
        self.functions: dict[str, ast.FunctionDef] = {}
        self.classes: dict[str, _ClassInfo] = {}
        self.trt_aliases: set[str] = set()
        for tree in trees.values():
            for node in _imports(tree):
                for a in node.names:
                    if a.name == "tensorrt" and a.asname:
                        self.trt_aliases.add(a.asname)
            for node in tree.body:
                if isinstance(node, ast.FunctionDef):
                    self.functions.setdefault(node.name, node)
                elif isinstance(node, ast.ClassDef):
                    info = self.classes.setdefault(node.name, _ClassInfo())
                    for item in node.body:
                        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                            info.attrs[item.target.id] = item.annotation
                        elif isinstance(item, ast.FunctionDef):
                            info.methods[item.name] = item
                            for sub in _statements(item.body):
                                if (
                                    isinstance(sub, ast.AnnAssign)
                                    and isinstance(sub.target, ast.Attribute)
                                    and isinstance(sub.target.value, ast.Name)
                                    and sub.target.value.id == "self"
                                ):
                                    info.attrs.setdefault(sub.target.attr, sub.annotation)
        self._accessors: dict[str, bool] = {}

    def is_accessor(self, name: str | None) -> bool:
        if name is None or name not in self.functions:
            return False
        if name not in self._accessors:
            self._accessors[name] = self._is_accessor(self.functions[name])
        return self._accessors[name]

    @staticmethod
    def _is_accessor(f: ast.FunctionDef) -> bool:
        """``def f(obj, name): ... getattr(obj, name, default)``."""
        if len(f.args.args) < 2:
            return False
        obj, name = f.args.args[0].arg, f.args.args[1].arg
        for node in ast.walk(f):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "getattr"
                and len(node.args) == 3
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id == obj
                and isinstance(node.args[1], ast.Name)
                and node.args[1].id == name
            ):
                return True
        return False

    def predicate(self, name: str) -> ast.expr | None:
        """The returned test of a one-statement predicate function (``return a and hasattr(...)``)."""
        f = self.functions.get(name)
        if f is None:
            return None
        body = [
            s for s in f.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        ]
        if len(body) == 1 and isinstance(body[0], ast.Return) and body[0].value is not None:
            return body[0].value
        return None


class _Scope:
    def __init__(self, parent: _Scope | None = None, cls: str | None = None) -> None:
        self.types: dict[str, str] = dict(parent.types) if parent else {}
        self.declared: set[str] = set()
        self.literals: dict[str, tuple[str, ...]] = dict(parent.literals) if parent else {}
        self.probe: dict[str, tuple[str, str]] = dict(parent.probe) if parent else {}
        self.cls = cls if cls is not None else (parent.cls if parent else None)


class _FileScan:
    def __init__(self, rel: str, tree: ast.Module, project: _Project, binding: Binding) -> None:
        self.rel, self.tree, self.project, self.binding = rel, tree, project, binding
        self.result = ScanResult()
        self.recording = True

    # ---- types ----
    def annotation(self, node: ast.expr | None, scope: _Scope | None = None) -> str | None:
        if node is None:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                return self.annotation(ast.parse(node.value, mode="eval").body, scope)
            except SyntaxError:
                return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            sides = [self.annotation(node.left, scope), self.annotation(node.right, scope)]
            real = [s for s in sides if s not in (None, "none")]
            return real[0] if len(real) == 1 else None
        if isinstance(node, ast.Constant) and node.value is None:
            return "none"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in self.project.trt_aliases:
                cls = node.attr
                return f"enumval:{cls}" if self.binding.is_enum(cls) else f"inst:{cls}"
            return None
        if isinstance(node, ast.Name):
            if node.id in _PRIM:
                return _PRIM[node.id]
            if node.id in self.project.classes:
                return f"proj:{node.id}"
            return None
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            if node.value.id in ("list", "Sequence", "Iterable"):
                inner = self.annotation(node.slice, scope)
                return f"list:{inner}" if inner else None
            if node.value.id == "Optional":
                return self.annotation(node.slice, scope)
        return None

    def _member_type(self, cls: str, member: str) -> str | None:
        if cls == MODULE:
            if member.startswith("__"):
                return None
            if self.binding.is_class(member) or member in _table_classes():
                return f"class:{member}"
            return (
                f"bound:{MODULE}.{member}"
                if callable(getattr(self.binding.trt, member, None))
                else None
            )
        return self.binding.member_type(cls, member)

    def _proj_attr(self, cls: str, attr: str, scope: _Scope) -> str | None:
        info = self.project.classes.get(cls)
        if info is None:
            return None
        if attr in info.attrs:
            return self.annotation(info.attrs[attr], scope)
        method = info.methods.get(attr)
        if method is not None:
            if any(isinstance(d, ast.Name) and d.id == "property" for d in method.decorator_list):
                return self.annotation(method.returns, scope)
            return f"projmethod:{cls}.{attr}"
        return None

    @staticmethod
    def _trt_owner(t: str | None) -> str | None:
        """The TensorRT class whose members an expression of type ``t`` exposes."""
        if t == "module":
            return MODULE
        if t and t.split(":", 1)[0] in ("inst", "class", "enumval"):
            return t.split(":", 1)[1]
        return None

    def kind(self, t: str | None) -> str:
        return t if t else "?"

    def etype(self, node: ast.expr, scope: _Scope, guards: frozenset[str]) -> str | None:
        """The type of ``node``; records the TensorRT uses inside it."""
        if isinstance(node, ast.Name):
            if node.id == "trt":
                return "module"
            return scope.types.get(node.id)
        if isinstance(node, ast.Constant):
            v = node.value
            if v is None:
                return "none"
            return {bool: "bool", int: "int", str: "str", bytes: "bytes", float: "float"}.get(
                type(v)
            )
        if isinstance(node, ast.JoinedStr):
            for v in node.values:
                self.etype(v, scope, guards)
            return "str"
        if isinstance(node, ast.FormattedValue):
            self.etype(node.value, scope, guards)
            return None
        if isinstance(node, ast.Attribute):
            vt = self.etype(node.value, scope, guards)
            owner = self._trt_owner(vt)
            if owner is not None and not node.attr.startswith("__"):
                self.record(node, owner, node.attr, "attr", guards)
                return self._member_type(owner, node.attr)
            if vt and vt.startswith("proj:"):
                return self._proj_attr(vt[5:], node.attr, scope)
            if isinstance(node.value, ast.Name) and node.value.id == "self" and scope.cls:
                return self._proj_attr(scope.cls, node.attr, scope)
            return None
        if isinstance(node, ast.Call):
            return self.call(node, scope, guards)
        if isinstance(node, ast.Subscript):
            vt = self.etype(node.value, scope, guards)
            self.etype(node.slice, scope, guards)
            if vt and vt.startswith("list:"):
                return vt[5:]
            if vt and vt.startswith("tuple:") and isinstance(node.slice, ast.Constant):
                parts = vt[6:].split(",")
                i = node.slice.value
                return parts[i] if isinstance(i, int) and -len(parts) <= i < len(parts) else None
            return None
        if isinstance(node, ast.BinOp):
            left, right = (
                self.etype(node.left, scope, guards),
                self.etype(node.right, scope, guards),
            )
            if left in ("int", "bool") and right in ("int", "bool"):
                return "int"
            if isinstance(node.op, ast.Add) and left == right == "str":
                return "str"
            if isinstance(node.op, ast.Mod) and left == "str":
                return "str"
            return None
        if isinstance(node, ast.UnaryOp):
            t = self.etype(node.operand, scope, guards)
            return "bool" if isinstance(node.op, ast.Not) else t
        if isinstance(node, ast.BoolOp):
            self.boolop(node, scope, guards)
            return None
        if isinstance(node, ast.Compare):
            self.etype(node.left, scope, guards)
            for c in node.comparators:
                self.etype(c, scope, guards)
            return "bool"
        if isinstance(node, ast.IfExp):
            self.etype(node.test, scope, guards)
            a = self.etype(node.body, scope, guards | self.true_guards(node.test, scope))
            b = self.etype(node.orelse, scope, guards | self.false_guards(node.test, scope))
            return a if a == b or b == "none" else (b if a == "none" else None)
        if isinstance(node, ast.NamedExpr):
            t = self.etype(node.value, scope, guards)
            self.bind(node.target, t, scope, node.value)
            return t
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            inner = _Scope(scope)
            cond_guards = guards
            for gen in node.generators:
                it = self.etype(gen.iter, inner, cond_guards)
                self.bind_iter(gen.target, it, inner, gen.iter)
                for cond in gen.ifs:
                    self.etype(cond, inner, cond_guards)
                    cond_guards = cond_guards | self.true_guards(cond, inner)
            if isinstance(node, ast.DictComp):
                self.etype(node.key, inner, cond_guards)
                self.etype(node.value, inner, cond_guards)
                return None
            elt = self.etype(node.elt, inner, cond_guards)
            return f"list:{elt}" if elt and isinstance(node, ast.ListComp) else None
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            types = [self.etype(e, scope, guards) for e in node.elts]
            if isinstance(node, ast.Tuple):
                return "tuple:" + ",".join(t or "?" for t in types)
            return f"list:{types[0]}" if types and types[0] and len(set(types)) == 1 else None
        if isinstance(node, ast.Dict):
            for k in node.keys:
                if k is not None:
                    self.etype(k, scope, guards)
            for v in node.values:
                self.etype(v, scope, guards)
            return None
        if isinstance(node, ast.Starred):
            self.etype(node.value, scope, guards)
            return None
        if isinstance(node, ast.Lambda):
            self.etype(node.body, _Scope(scope), guards)
            return None
        if isinstance(node, ast.Slice):
            for part in (node.lower, node.upper, node.step):
                if part is not None:
                    self.etype(part, scope, guards)
            return None
        if isinstance(node, ast.Await | ast.Yield | ast.YieldFrom) and node.value is not None:
            self.etype(node.value, scope, guards)
        return None

    def boolop(self, node: ast.BoolOp, scope: _Scope, guards: frozenset[str]) -> None:
        g = guards
        for value in node.values:
            self.etype(value, scope, g)
            extra = (
                self.true_guards(value, scope)
                if isinstance(node.op, ast.And)
                else self.false_guards(value, scope)
            )
            g = g | extra

    def _names(self, node: ast.expr, scope: _Scope) -> tuple[str, ...]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return (node.value,)
        if isinstance(node, ast.Name):
            return scope.literals.get(node.id, ())
        return ()

    def call(self, node: ast.Call, scope: _Scope, guards: frozenset[str]) -> str | None:
        func = node.func
        fname = func.id if isinstance(func, ast.Name) else None
        if fname in ("hasattr", "getattr") and len(node.args) >= 2:
            target = self.etype(node.args[0], scope, guards)
            for extra in node.args[2:]:
                self.etype(extra, scope, guards)
            names = self._names(node.args[1], scope)
            if not isinstance(node.args[1], ast.Constant | ast.Name):
                self.etype(node.args[1], scope, guards)
            owner = self._trt_owner(target)
            if fname == "hasattr":
                if owner is not None:
                    for n in names:
                        self.record(node, owner, n, "probe", guards | {n})
                return "bool"
            guarded = len(node.args) == 3
            result = None
            if owner is not None:
                for n in names:
                    self.record(node, owner, n, "attr", guards | ({n} if guarded else set()))
                    result = self._member_type(owner, n)
                if not names and owner != MODULE and self.binding.is_enum(owner):
                    result = f"enumval:{owner}"
            return result
        if fname == "import_tensorrt":
            return "tuple:module,str"
        if len(node.args) >= 2 and self.project.is_accessor(fname):
            target = self.etype(node.args[0], scope, guards)
            owner = self._trt_owner(target)
            for n in self._names(node.args[1], scope) if owner is not None else ():
                self.record(node, owner, n, "attr", guards | {n})
            return None
        if fname == "all" and node.args:
            self.etype(node.args[0], scope, guards)
            return "bool"
        if fname == "enumerate" and node.args:
            inner = self.etype(node.args[0], scope, guards)
            return f"enumerate:{inner}" if inner else None
        args = [self.etype(a, scope, guards) for a in node.args]
        keywords = [(k.arg, self.etype(k.value, scope, guards)) for k in node.keywords]
        starred = any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        )
        call_info = (
            tuple(self.kind(a) for a in args),
            tuple((k or "**", self.kind(v)) for k, v in keywords),
            starred,
        )
        if fname is not None:
            if fname in _RETURNS:
                return _RETURNS[fname]
            bound = scope.types.get(fname)
            if bound and bound.startswith("bound:"):
                cls, _, member = bound[6:].partition(".")
                guarded = fname in scope.probe
                self.record(
                    node, cls, member, "call", guards | ({member} if guarded else set()), call_info
                )
                return self._call_return(cls, member, call_info)
            f = self.project.functions.get(fname)
            if f is not None:
                return self.annotation(f.returns, scope)
            if fname in self.project.classes:
                return f"proj:{fname}"
            return None
        if isinstance(func, ast.Attribute):
            vt = self.etype(func.value, scope, guards)
            owner = self._trt_owner(vt)
            if owner is not None and not func.attr.startswith("__"):
                member_t = self._member_type(owner, func.attr)
                if member_t and member_t.startswith("class:"):  # trt.Builder(...)
                    self.record(func, owner, func.attr, "attr", guards)
                    cls = member_t[6:]
                    self.record(node, cls, cls, "init", guards, call_info)
                    return f"inst:{cls}"
                self.record(node, owner, func.attr, "call", guards, call_info)
                return self._call_return(owner, func.attr, call_info)
            t = None
            if vt and vt.startswith("proj:"):
                t = self._proj_attr(vt[5:], func.attr, scope)
            elif isinstance(func.value, ast.Name) and func.value.id == "self" and scope.cls:
                t = self._proj_attr(scope.cls, func.attr, scope)
            if t and t.startswith("projmethod:"):
                cls, _, meth = t[11:].partition(".")
                return self.annotation(self.project.classes[cls].methods[meth].returns, scope)
            return None
        self.etype(func, scope, guards)
        return None

    def _call_return(self, cls: str, member: str, call_info: tuple) -> str | None:
        sigs = self.binding.signatures(cls, member)
        rets = {self.binding.type_of_return(s.returns) for s in sigs}
        return rets.pop() if len(rets) == 1 else None

    # ---- guards ----
    def true_guards(self, node: ast.expr, scope: _Scope) -> frozenset[str]:
        """Member names known to exist when ``node`` is true."""
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "hasattr" and len(node.args) >= 2:
                return frozenset(self._names(node.args[1], scope))
            if node.func.id == "all" and node.args and isinstance(node.args[0], ast.GeneratorExp):
                gen = node.args[0]
                inner = _Scope(scope)
                for g in gen.generators:
                    lits = _literal_strings(g.iter)
                    if lits and isinstance(g.target, ast.Name):
                        inner.literals[g.target.id] = lits
                return self.true_guards(gen.elt, inner)
            pred = self.project.predicate(node.func.id)
            if pred is not None:
                return self.true_guards(pred, _Scope())
            return frozenset()
        if isinstance(node, ast.BoolOp):
            parts = [self.true_guards(v, scope) for v in node.values]
            if isinstance(node.op, ast.And):
                return frozenset().union(*parts)
            return frozenset.intersection(*parts) if parts else frozenset()
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self.false_guards(node.operand, scope)
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            op, right = node.ops[0], node.comparators[0]
            if (
                isinstance(op, ast.IsNot)
                and isinstance(right, ast.Constant)
                and right.value is None
                and isinstance(node.left, ast.Name)
                and node.left.id in scope.probe
            ):
                return frozenset({scope.probe[node.left.id][1]})
        if isinstance(node, ast.Name) and node.id in scope.probe:
            return frozenset({scope.probe[node.id][1]})
        return frozenset()

    def false_guards(self, node: ast.expr, scope: _Scope) -> frozenset[str]:
        """Member names known to exist when ``node`` is false."""
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self.true_guards(node.operand, scope)
        if isinstance(node, ast.BoolOp):
            parts = [self.false_guards(v, scope) for v in node.values]
            if isinstance(node.op, ast.Or):
                return frozenset().union(*parts)
            return frozenset.intersection(*parts) if parts else frozenset()
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            op, right = node.ops[0], node.comparators[0]
            if (
                isinstance(op, ast.Is)
                and isinstance(right, ast.Constant)
                and right.value is None
                and isinstance(node.left, ast.Name)
                and node.left.id in scope.probe
            ):
                return frozenset({scope.probe[node.left.id][1]})
        return frozenset()

    # ---- binding names ----
    def bind(self, target: ast.expr, t: str | None, scope: _Scope, value: ast.expr | None) -> None:
        if isinstance(target, ast.Name):
            if target.id in scope.declared:
                return
            if t == "none" and target.id in scope.types:
                return  # `x = None` after `x = <typed>`: an Optional, keep the type
            if t is not None or target.id not in scope.types:
                if t is None:
                    scope.types.pop(target.id, None)
                else:
                    scope.types[target.id] = t
            if (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id == "getattr"
                and len(value.args) == 3
            ):
                recording, self.recording = self.recording, False
                owner = self._trt_owner(self.etype(value.args[0], scope, frozenset()))
                self.recording = recording
                names = self._names(value.args[1], scope)
                if owner is not None and len(names) == 1:
                    scope.probe[target.id] = (owner, names[0])
            lits = _literal_strings(value) if value is not None else None
            if lits:
                scope.literals[target.id] = lits
        elif isinstance(target, ast.Tuple | ast.List):
            parts = t[6:].split(",") if t and t.startswith("tuple:") else []
            for i, elt in enumerate(target.elts):
                part = parts[i] if i < len(parts) and parts[i] != "?" else None
                self.bind(elt, part, scope, None)
            if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "import_tensorrt":
                first = target.elts[0] if target.elts else None
                if not (isinstance(first, ast.Name) and first.id == "trt"):
                    self.result.problems.append(
                        f"{self.rel}:{value.lineno}: bind import_tensorrt()'s module to the name "
                        "`trt` (the scan follows TensorRT calls through that name)"
                    )

    def bind_iter(
        self, target: ast.expr, it: str | None, scope: _Scope, iter_node: ast.expr
    ) -> None:
        elt: str | None = None
        if it == "range":
            elt = "int"
        elif it and it.startswith("list:"):
            elt = it[5:]
        elif it and it.startswith("enumerate:"):
            inner = it[10:]
            elt = "tuple:int," + (inner[5:] if inner.startswith("list:") else "?")
        lits = _literal_strings(iter_node)
        if lits and isinstance(target, ast.Name):
            scope.literals[target.id] = lits
            elt = "str"
        self.bind(target, elt, scope, None)

    # ---- statements ----
    def function(
        self, f: ast.FunctionDef | ast.AsyncFunctionDef, parent: _Scope, guards: frozenset[str]
    ) -> None:
        scope = _Scope(parent)
        for a in [*f.args.posonlyargs, *f.args.args, *f.args.kwonlyargs]:
            t = "module" if a.arg == "trt" else self.annotation(a.annotation, scope)
            if a.arg == "self" and scope.cls:
                t = f"proj:{scope.cls}"
            if t is not None:
                scope.types[a.arg] = t
                scope.declared.add(a.arg)
            else:
                scope.types.pop(a.arg, None)
        for default in [*f.args.defaults, *f.args.kw_defaults]:
            if default is not None:
                self.etype(default, parent, guards)
        # names first (flow-insensitive, twice for chains), then the uses
        self.recording = False
        for _ in range(2):
            self.block(f.body, scope, guards)
        self.recording = True
        self.block(f.body, scope, guards)

    def block(self, stmts: Iterable[ast.stmt], scope: _Scope, guards: frozenset[str]) -> None:
        local = guards
        for stmt in stmts:
            self.stmt(stmt, scope, local)
            if isinstance(stmt, ast.If) and not stmt.orelse and _exits(stmt.body):
                local = local | self.false_guards(stmt.test, scope)

    def stmt(self, s: ast.stmt, scope: _Scope, guards: frozenset[str]) -> None:
        if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef):
            if self.recording:
                self.function(s, scope, guards)
                self.recording = True
            return
        if isinstance(s, ast.ClassDef):
            for base in s.bases:
                self.etype(base, scope, guards)
            inner = _Scope(scope, cls=s.name)
            for item in s.body:
                self.stmt(item, inner, guards)
            return
        if isinstance(s, ast.Assign):
            t = self.etype(s.value, scope, guards)
            for target in s.targets:
                self.assign_target(target, t, scope, s.value, guards)
            return
        if isinstance(s, ast.AnnAssign):
            declared = self.annotation(s.annotation, scope)
            t = self.etype(s.value, scope, guards) if s.value is not None else None
            if isinstance(s.target, ast.Name):
                if declared is not None:
                    scope.types[s.target.id] = declared
                    scope.declared.add(s.target.id)
                else:
                    self.bind(s.target, t, scope, s.value)
            else:
                self.assign_target(s.target, declared or t, scope, s.value, guards)
            return
        if isinstance(s, ast.AugAssign):
            self.etype(s.value, scope, guards)
            self.etype(s.target, scope, guards)
            return
        if isinstance(s, ast.If | ast.While):
            self.etype(s.test, scope, guards)
            self.block(s.body, scope, guards | self.true_guards(s.test, scope))
            self.block(s.orelse, scope, guards | self.false_guards(s.test, scope))
            return
        if isinstance(s, ast.For | ast.AsyncFor):
            it = self.etype(s.iter, scope, guards)
            self.bind_iter(s.target, it, scope, s.iter)
            self.block(s.body, scope, guards)
            self.block(s.orelse, scope, guards)
            return
        if isinstance(s, ast.With | ast.AsyncWith):
            for item in s.items:
                self.etype(item.context_expr, scope, guards)
            self.block(s.body, scope, guards)
            return
        if isinstance(s, ast.Try):
            catches = any(_catches_attribute_error(h) for h in s.handlers)
            self.block(s.body, scope, guards | ({ANY_GUARD} if catches else set()))
            for h in s.handlers:
                self.block(h.body, scope, guards)
            self.block(s.orelse, scope, guards)
            self.block(s.finalbody, scope, guards)
            return
        if isinstance(s, ast.Return | ast.Expr) and s.value is not None:
            self.etype(s.value, scope, guards)
            return
        if isinstance(s, ast.Raise):
            for part in (s.exc, s.cause):
                if part is not None:
                    self.etype(part, scope, guards)
            return
        if isinstance(s, ast.Assert):
            self.etype(s.test, scope, guards)
            return
        if isinstance(s, ast.Delete):
            return
        for child in ast.iter_child_nodes(s):
            if isinstance(child, ast.expr):
                self.etype(child, scope, guards)

    def assign_target(
        self,
        target: ast.expr,
        t: str | None,
        scope: _Scope,
        value: ast.expr,
        guards: frozenset[str],
    ) -> None:
        if isinstance(target, ast.Attribute):
            vt = self.etype(target.value, scope, guards)
            owner = self._trt_owner(vt)
            if owner is not None:
                self.record(target, owner, target.attr, "set", guards, value_kind=self.kind(t))
            return
        if isinstance(target, ast.Subscript):
            self.etype(target.value, scope, guards)
            self.etype(target.slice, scope, guards)
            return
        self.bind(target, t, scope, value)

    # ---- recording ----
    def record(
        self,
        node: ast.AST,
        cls: str,
        member: str,
        kind: str,
        guards: frozenset[str] | set[str],
        call_info: tuple = ((), (), False),
        value_kind: str = "?",
    ) -> None:
        if not self.recording or member.startswith("__"):
            return
        guarded = ANY_GUARD in guards or member in guards
        args, keywords, starred = call_info
        self.result.uses.append(
            Use(
                self.rel,
                getattr(node, "lineno", 0),
                cls,
                member,
                kind,
                guarded,
                args,
                keywords,
                starred,
                value_kind,
            )
        )

    def run(self) -> ScanResult:
        scope = _Scope()
        self.block(self.tree.body, scope, frozenset())
        return self.result


def _exits(body: list[ast.stmt]) -> bool:
    return bool(body) and isinstance(body[-1], ast.Return | ast.Raise | ast.Continue | ast.Break)


def _catches_attribute_error(h: ast.ExceptHandler) -> bool:
    names = []
    if isinstance(h.type, ast.Name):
        names = [h.type.id]
    elif isinstance(h.type, ast.Tuple):
        names = [e.id for e in h.type.elts if isinstance(e, ast.Name)]
    return "AttributeError" in names


def source_files(root: Path = REPO) -> dict[str, str]:
    """``{relative path: source}`` of the scanned project code."""
    out = {}
    for entry in SCANNED:
        path = root / entry
        files = [path] if path.is_file() else sorted(path.rglob("*.py")) if path.is_dir() else []
        for f in files:
            out[str(f.relative_to(root))] = f.read_text()
    return out


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement in ``body`` and its nested blocks (not nested functions or classes)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for name in ("body", "orelse", "finalbody"):
            yield from _statements(getattr(stmt, name, []) or [])
        for handler in getattr(stmt, "handlers", []) or []:
            yield from _statements(handler.body)


def _imports(tree: ast.Module) -> Iterator[ast.Import]:
    """Imports at module level and under ``if TYPE_CHECKING:``."""
    for node in tree.body:
        if isinstance(node, ast.Import):
            yield node
        elif isinstance(node, ast.If):
            yield from (n for n in node.body if isinstance(n, ast.Import))


@functools.lru_cache(maxsize=256)
def _parse(rel: str, text: str) -> ast.Module:
    return ast.parse(text, filename=rel)


def scan(sources: Mapping[str, str], binding: Binding) -> ScanResult:
    """Every TensorRT use in ``sources`` (``{relative path: text}``). All files inform the types
    (project classes and functions); uses are collected from the files that mention ``trt``."""
    trees = {rel: _parse(rel, text) for rel, text in sources.items()}
    project = _Project(trees)
    result = ScanResult()
    for rel, tree in trees.items():
        if "trt" not in sources[rel]:
            continue
        part = _FileScan(rel, tree, project, binding).run()
        result.uses += part.uses
        result.problems += part.problems
    seen, uses = set(), []
    for u in result.uses:  # the flow-insensitive passes may see a use twice
        if u not in seen:
            seen.add(u)
            uses.append(u)
    result.uses = uses
    return result


# --------------------------------------------------------------------------------------------------
# The frozen table


_TABLE_CACHE: dict[str, Any] = {}


def load_table(path: Path = TABLE) -> dict[str, Any]:
    key = str(path)
    if key not in _TABLE_CACHE:
        _TABLE_CACHE[key] = json.loads(path.read_text())
    return _TABLE_CACHE[key]


def _table_classes() -> set[str]:
    try:
        return set(load_table()["members"])
    except FileNotFoundError:
        return set()


def used_classes(root: Path = REPO) -> set[str]:
    """The TensorRT classes exitgate's code uses (for ``derive_members.py``); needs tensorrt_rtx."""
    import tensorrt_rtx

    result = scan(source_files(root), Binding(tensorrt_rtx))
    out = {u.cls for u in result.uses if u.cls != MODULE}
    out |= {
        u.member
        for u in result.uses
        if u.cls == MODULE and Binding(tensorrt_rtx).is_class(u.member)
    }
    return out


# --------------------------------------------------------------------------------------------------
# The checks


_INT = {"int", "bool"}
_BUFFER = {"bytes"}


def _norm(annotation: str) -> str:
    a = annotation.strip()
    return {
        "typing.SupportsInt": "int",
        "int": "int",
        "typing.SupportsFloat": "float",
        "float": "float",
        "str": "str",
        "bool": "bool",
        "typing_extensions.Buffer": "buffer",
        "collections.abc.Buffer": "buffer",
        "buffer": "buffer",
        "bytes": "buffer",
    }.get(a, a)


def _compatible(kind: str, param: Param, binding: Binding) -> bool:
    want = _norm(param.annotation)
    if kind == "none":
        return param.default_none
    if want == "int":  # pointers, streams, sizes, indices: must be provably int at the call
        return kind in _INT
    if kind == "?" or kind.startswith(("proj:", "list:", "tuple:", "bound:", "projmethod:")):
        return True
    if want == "float":
        return kind in _INT | {"float"}
    if want == "str":
        return kind == "str"
    if want == "bool":
        return kind == "bool"
    if want == "buffer":
        return kind in _BUFFER
    if binding.is_class(want):
        if kind.startswith(("inst:", "enumval:")):
            return binding.subclass(kind.split(":", 1)[1], want)
        return False  # a str/int/bytes where a TensorRT object is expected
    return True  # an annotation this check does not model (capsules, sequences, numpy arrays)


def _matches(use: Use, sig: Signature, binding: Binding) -> bool:
    params = list(sig.params)
    if len(use.args) > len(params):
        return False
    filled = set()
    for kind, p in zip(use.args, params, strict=False):
        if not _compatible(kind, p, binding):
            return False
        filled.add(p.name)
    by_name = {p.name: p for p in params}
    for name, kind in use.keywords:
        p = by_name.get(name)
        if p is None or name in filled or not _compatible(kind, p, binding):
            return False
        filled.add(name)
    return all(p.has_default or p.name in filled for p in params)


def _signature_problem(use: Use, binding: Binding) -> str | None:
    if use.starred:
        return None
    if use.kind == "init":
        sigs = binding.constructor(use.cls)
    elif use.kind == "set":
        sigs = binding.setter(use.cls, use.member)
        if not sigs:
            return None
        sigs = [Signature(s.params[-1:], s.returns, s.text) for s in sigs]
        use = Use(use.file, use.line, use.cls, use.member, "set", use.guarded, (use.value,))
    else:
        sigs = binding.signatures(use.cls, use.member)
    if not sigs or any(_matches(use, s, binding) for s in sigs):
        return None
    given = ", ".join([*use.args, *(f"{k}={v}" for k, v in use.keywords)])
    what = f"{use.name} = ..." if use.kind == "set" else f"{use.name}({given})"
    return (
        f"{use.where}: {what} matches no signature of {binding.name}'s {use.name}: "
        + " | ".join(s.text for s in sigs)
        + " (argument kinds as the source proves them; pointers, streams, sizes and indices must "
        "be provably int, e.g. int(ptr))"
    )


def check(
    result: ScanResult,
    binding: Binding,
    table: Mapping[str, Any],
    rtx_absent: Mapping[tuple[str, str], str] = RTX_ABSENT,
) -> list[str]:
    """Every problem with the scanned uses, one line each naming file:line and member."""
    problems = list(result.problems)
    releases = list(table["releases"])
    members: Mapping[str, Mapping[str, list[str]]] = table["members"]
    for use in result.uses:
        in_rtx = binding.has(use.cls, use.member) if binding.obj(use.cls) is not None else None
        known = members.get(use.cls)
        row = known.get(use.member) if known is not None else None
        if use.kind == "probe":  # hasattr: the member may be missing; it must exist somewhere
            if not in_rtx and row is None and known is not None:
                problems.append(
                    f"{use.where}: hasattr probe of {use.name}, which neither {binding.name} nor "
                    f"TensorRT {', '.join(releases)} has: a typo, or a renamed member?"
                )
            continue
        if use.kind == "init":
            problem = _signature_problem(use, binding)
            if problem:
                problems.append(problem)
            continue
        mark = rtx_absent.get((use.cls, use.member))
        if in_rtx is False and mark is None and binding.obj(use.cls) is not None:
            near = difflib.get_close_matches(use.member, binding.members(use.cls), n=3)
            in_release = [r for r in releases if row and (row == "*" or r in row)]
            problems.append(
                f"{use.where}: {use.name} does not exist in {binding.name}"
                + (
                    f" (TensorRT {', '.join(in_release)} have it: mark it RTX-absent with a "
                    "reason, behind feature detection)"
                    if in_release
                    else f"{' nor in TensorRT ' + ', '.join(releases) if known is not None else ''}"
                )
                + (f"; did you mean {', '.join(near)}?" if near else "")
            )
            continue
        if mark is not None and in_rtx:
            problems.append(
                f"{use.where}: {use.name} is marked RTX-absent ({mark}) but {binding.name} has "
                "it: drop the stale mark"
            )
        if in_rtx and use.kind in ("call", "set"):
            problem = _signature_problem(use, binding)
            if problem:
                problems.append(problem)
        if known is None:
            problems.append(
                f"{use.where}: class {use.cls} is not in {TABLE.name}: re-derive it with "
                "tests/trt_api/derive_members.py (it lists the classes exitgate uses)"
            )
            continue
        bound_in = known.get("<bound in>", releases)
        present = bound_in if row == "*" else (row or [])
        missing = [r for r in releases if r in bound_in and r not in present]
        if mark is not None:
            missing.append(f"TensorRT-RTX ({mark})")
        if missing and not use.guarded:
            problems.append(
                f"{use.where}: {use.name} is missing from {', '.join(missing)} and is used "
                "without feature detection: guard it with hasattr(...) / getattr(..., default) "
                "/ try-except AttributeError, or use what those releases offer"
            )
    for (cls, member), why in rtx_absent.items():
        if not any((u.cls, u.member) == (cls, member) for u in result.uses):
            problems.append(
                f"RTX_ABSENT lists {cls}.{member} ({why}), which the code no longer uses"
            )
    return problems
