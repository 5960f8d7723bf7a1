"""Derive ``members.json``: which Python members each TensorRT release binds, per class.

Reads NVIDIA's own pybind11 binding sources at release tags of https://github.com/NVIDIA/TensorRT
(``python/src/infer/pyCore.cpp``, ``pyInt8.cpp``, ``pyGraph.cpp``, ``pyFoundationalTypes.cpp``,
``pyPlugin.cpp``, ``python/src/parsers/pyOnnx.cpp`` and the wheel's ``tensorrt/__init__.py``) from a
local git clone, and writes only the small table the conformance test needs (the classes exitgate
uses, see ``tests/trt_conformance.py``). NVIDIA's code itself is never copied into this repository.

    git clone https://github.com/NVIDIA/TensorRT /tmp/TensorRT   # or any clone with the tags
    python tests/trt_api/derive_members.py /tmp/TensorRT

The parser understands the binding idioms those files use: ``py::class_<...>(m, "Name", ...)`` and
``py::enum_<...>`` (also bound to a variable and continued later), chained ``.def("x"``,
``.def_property*("x"``, ``.def_readwrite/readonly("x"``, ``.def_static("x"``, ``.value("x"``,
``export_values()``, class inheritance through the template arguments, module-level
``m.def("x"`` / ``m.attr("x")``, and top-level ``def`` in the Python package. Preprocessor
conditionals are ignored (the full ``tensorrt`` wheel is built with EXPORT_ALL_BINDINGS).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

from tests.trt_conformance import used_classes

#: release label -> git tag in NVIDIA/TensorRT
RELEASES = {"8.6.1": "v8.6.1", "10.3.0": "v10.3.0", "10.13.0": "v10.13.0", "11.1": "v11.1"}
CPP_FILES = (
    "python/src/infer/pyCore.cpp",
    "python/src/infer/pyInt8.cpp",
    "python/src/infer/pyGraph.cpp",
    "python/src/infer/pyFoundationalTypes.cpp",
    "python/src/infer/pyPlugin.cpp",
    "python/src/parsers/pyOnnx.cpp",
)
PY_FILE = "python/packaging/bindings_wheel/tensorrt/__init__.py"
MODULE = "<module>"
HERE = Path(__file__).resolve().parent


def _strip(src: str) -> str:
    """Comments and preprocessor lines removed; string literals kept."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append(src[i : j + 1])
            i = j + 1
        elif src.startswith("//", i):
            i = src.find("\n", i)
            i = n if i < 0 else i
        elif src.startswith("/*", i):
            i = src.find("*/", i) + 2
        elif c == "'" and i + 2 < n and src[i + 2] == "'":
            out.append(src[i : i + 3])
            i += 3
        else:
            out.append(c)
            i += 1
    lines = [ln for ln in "".join(out).splitlines() if not ln.lstrip().startswith("#")]
    return "\n".join(lines)


def _skip_balanced(src: str, i: int, open_: str, close: str) -> int:
    """Index after the bracket that closes ``src[i]`` (== open_), strings respected."""
    depth = 0
    n = len(src)
    while i < n:
        c = src[i]
        if c == '"':
            i += 1
            while src[i] != '"':
                i += 2 if src[i] == "\\" else 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced brackets")


def _template_args(src: str, i: int) -> tuple[list[str], int]:
    """``src[i] == '<'``: the top-level template arguments and the index after '>'."""
    depth, start, args = 0, i + 1, []
    while True:
        c = src[i]
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
            if depth == 0:
                args.append(src[start:i].strip())
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(src[start:i].strip())
            start = i + 1
        elif c == "(":
            i = _skip_balanced(src, i, "(", ")") - 1
        i += 1


_CHAIN = re.compile(r"\s*\.\s*(\w+)\s*\(")
_MEMBER_METHODS = {
    "def",
    "def_property",
    "def_property_readonly",
    "def_readwrite",
    "def_readonly",
    "def_static",
    "def_property_static",
    "def_property_readonly_static",
    "value",
}


def _chain(src: str, i: int) -> tuple[list[str], bool, int]:
    """Members named by a ``.def("x", ...)...`` chain starting at ``src[i]``; export_values."""
    members, export = [], False
    while True:
        m = _CHAIN.match(src, i)
        if not m:
            return members, export, i
        open_at = m.end() - 1
        end = _skip_balanced(src, open_at, "(", ")")
        if m.group(1) in _MEMBER_METHODS:
            name = re.match(r'\s*"([^"]+)"', src[open_at + 1 : end])
            if name:
                members.append(name.group(1))
        export |= m.group(1) == "export_values"
        i = end


_BIND = re.compile(r"py::(class_|enum_)\s*<")


def parse_cpp(src: str) -> tuple[dict[str, set[str]], dict[str, list[str]], dict[str, str]]:
    """``(members by Python class, bases by Python class, C++ name -> Python name)``."""
    src = _strip(src)
    members: dict[str, set[str]] = {MODULE: set()}
    bases_cpp: dict[str, list[str]] = {}
    cpp_to_py: dict[str, str] = {}
    var_to_py: dict[str, str] = {"m": MODULE}
    for m in _BIND.finditer(src):
        targs, i = _template_args(src, m.end() - 1)
        var = re.match(r"\s*(\w+)\s*(?=[{(])", src[i:])
        varname = None
        if var:
            varname, i = var.group(1), i + var.end()
        head = re.match(r'\s*[({]\s*(\w+)\s*,\s*"([^"]+)"', src[i:])
        if not head:
            continue  # a py::class_ used as a type, not a binding
        scope, pyname = head.group(1), head.group(2)
        qual = pyname if scope == "m" else f"{var_to_py.get(scope, scope)}.{pyname}"
        cpp_to_py[targs[0]] = qual
        if varname:
            var_to_py[varname] = qual
        bases_cpp[qual] = [a for a in targs[1:] if not a.startswith(("std::", "Py", "py::"))]
        close = "}" if src[i:].lstrip()[0] == "{" else ")"
        start = i + src[i:].index("{" if close == "}" else "(")
        end = _skip_balanced(src, start, src[start], close)
        own, export, _ = _chain(src, end)
        if m.group(1) == "enum_":
            own = [*own, "name", "value"]  # pybind11 gives every enum value these
        members.setdefault(qual, set()).update(own)
        if scope != "m":
            parent = var_to_py.get(scope, scope)
            members.setdefault(parent, set()).add(pyname)
            if export:
                members[parent].update(own)
        else:
            members[MODULE].add(pyname)
    # chains continued on a bound variable: baseLoggerBinding.def(...)
    for var, qual in var_to_py.items():
        for m in re.finditer(rf"(?<![\w.]){var}(?=\s*\.\s*\w+\s*\()", src):
            own, _, _ = _chain(src, m.end())
            members.setdefault(qual, set()).update(own)
    for m in re.finditer(r'(?<![\w.])m\s*\.\s*(?:def|attr)\s*\(\s*"([^"]+)"', src):
        members[MODULE].add(m.group(1))
    return members, bases_cpp, cpp_to_py


def parse_py(src: str) -> dict[str, set[str]]:
    """Top-level functions and names of the wheel's ``tensorrt/__init__.py`` (as module members)
    and attributes it sets on bound classes (``DataType.itemsize = property(...)``)."""
    tree = ast.parse(re.sub(r"##\w+##", "_placeholder", src))  # build-time placeholders
    out: dict[str, set[str]] = {MODULE: set()}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            out[MODULE].add(node.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[MODULE].add(t.id)
                elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name):
                    out.setdefault(t.value.id, set()).add(t.attr)
    return {k: {n for n in v if not n.startswith("_")} for k, v in out.items()}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def release_members(repo: Path, tag: str) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Flattened members (own + inherited) of every class bound at ``tag``; file blob ids."""
    members: dict[str, set[str]] = {MODULE: set()}
    bases_cpp: dict[str, list[str]] = {}
    cpp_to_py: dict[str, str] = {}
    blobs: dict[str, str] = {}
    listed = set(_git(repo, "ls-tree", "-r", "--name-only", tag, "python").split())
    for path in CPP_FILES:
        if path not in listed:
            continue  # pyInt8.cpp is gone in 11.x
        blobs[path] = _git(repo, "rev-parse", f"{tag}:{path}").strip()
        mem, bases, c2p = parse_cpp(_git(repo, "show", f"{tag}:{path}"))
        for k, v in mem.items():
            members.setdefault(k, set()).update(v)
        bases_cpp.update(bases)
        cpp_to_py.update(c2p)
    if PY_FILE in listed:
        blobs[PY_FILE] = _git(repo, "rev-parse", f"{tag}:{PY_FILE}").strip()
        for cls, names in parse_py(_git(repo, "show", f"{tag}:{PY_FILE}")).items():
            if cls == MODULE or cls in members:
                members.setdefault(cls, set()).update(names)

    def flat(cls: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out = set(members.get(cls, ()))
        for base in bases_cpp.get(cls, []):
            py = cpp_to_py.get(base)
            if py and py not in seen:
                out |= flat(py, seen | {cls})
        return out

    return {cls: flat(cls) for cls in members}, blobs


def derive(repo: Path, classes: set[str]) -> dict:
    releases, per_release = {}, {}
    for label, tag in RELEASES.items():
        commit = _git(repo, "rev-parse", f"{tag}^{{commit}}").strip()
        mem, blobs = release_members(repo, tag)
        releases[label] = {"tag": tag, "commit": commit, "files": blobs}
        per_release[label] = mem
    table: dict[str, dict[str, list[str]]] = {}
    for cls in sorted(classes | {MODULE}):
        names = set().union(*(r.get(cls, set()) for r in per_release.values()))
        bound = [lab for lab in RELEASES if cls in per_release[lab]]
        row: dict[str, str | list[str]] = {"<bound in>": bound}
        for n in sorted(names):
            present = [lab for lab in RELEASES if n in per_release[lab].get(cls, set())]
            row[n] = "*" if present == bound else present  # "*": wherever the class is bound
        table[cls] = row
    return {
        "source": "https://github.com/NVIDIA/TensorRT (pybind11 binding sources, read at the tags)",
        "derived_by": "tests/trt_api/derive_members.py",
        "releases": releases,
        "members": table,
    }


def dumps(table: dict) -> str:
    """JSON with one member per line (small, diffable)."""
    head = {k: v for k, v in table.items() if k != "members"}
    lines = [json.dumps(head, indent=1)[:-2] + ',\n "members": {']
    classes = list(table["members"].items())
    for i, (cls, row) in enumerate(classes):
        lines.append(f"  {json.dumps(cls)}: {{")
        items = list(row.items())
        for j, (name, where) in enumerate(items):
            comma = "," if j < len(items) - 1 else ""
            lines.append(f"   {json.dumps(name)}: {json.dumps(where)}{comma}")
        lines.append("  }" + ("," if i < len(classes) - 1 else ""))
    lines.append(" }\n}\n")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    sys.path.insert(0, str(HERE.parent.parent))

    table = derive(Path(argv[0]), used_classes())
    (HERE / "members.json").write_text(dumps(table))
    print(f"wrote {HERE / 'members.json'}: {len(table['members'])} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
