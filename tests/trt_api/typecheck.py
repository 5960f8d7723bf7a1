"""Type-check the TensorRT backend against tensorrt-stubs, then prove the check can fail.

    python tests/trt_api/patch_stubs.py TYPINGS        # once: stubs into a private folder
    python tests/trt_api/typecheck.py --typings TYPINGS

1. mypy (``tests/trt_api/mypy.ini``: the package ``fixtures/backends/tensorrt/``, its split
   halves included) must report no error.
2. The same files, copied with planted misuses, must fail with the expected errors: a renamed
   member, a wrong argument kind, an RTX-only member used without feature detection (the stubs
   describe full TensorRT 10.13), an unchecked None from a call the patched stubs mark Optional.
   A member that only *older* releases lack cannot be seen by a checker of one stubs version:
   that is ``tests/test_trt_conformance.py``'s job (frozen per-release table).

Exit status 0 only when both hold; the output names each plant and what mypy said.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "tests" / "trt_api" / "mypy.ini"
TRT = "fixtures/backends/tensorrt/engine.py"

#: name -> (file, original text, planted text, what mypy must say about the planted line)
PLANTS = {
    "renamed member": (
        TRT,
        "ctx.execute_async_v3(int(stream))",
        "ctx.execute_async_v4(int(stream))",
        '"IExecutionContext" has no attribute "execute_async_v4"',
    ),
    "wrong argument kind": (
        TRT,
        "ctx.set_tensor_address(spec.name, int(buf.ptr))",
        "ctx.set_tensor_address(int(buf.ptr), spec.name)",
        'Argument 1 to "set_tensor_address" of "IExecutionContext" has incompatible type "int"; '
        'expected "str"',
    ),
    "RTX-only member without feature detection": (
        TRT,
        'if hasattr(ctx, "is_stream_capturable"):',
        "if ctx is not None:",
        '"IExecutionContext" has no attribute "is_stream_capturable"',
    ),
    "unchecked None (a failed deserialisation)": (
        TRT,
        "        if engine is None:\n            raise TrtRuntimeError(\n"
        '                f"{flavor} {version_of(trt)} could not deserialize the plan of {label}',
        "        if engine is None and False:\n            raise TrtRuntimeError(\n"
        '                f"{flavor} {version_of(trt)} could not deserialize the plan of {label}',
        'Item "None" of "ICudaEngine | None" has no attribute',
    ),
}


def mypy(cwd: Path, typings: Path, cache: Path) -> tuple[int, str]:
    env = {**os.environ, "MYPYPATH": str(typings)}
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(CONFIG), "--cache-dir", str(cache)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return out.returncode, out.stdout + out.stderr


def planted_tree(dest: Path) -> None:
    """Copy the Python packages mypy reads, then plant every misuse (each on its own line)."""
    for pkg in ("fixtures", "models"):
        shutil.copytree(REPO / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for name, (rel, old, new, _) in PLANTS.items():
        path = dest / rel
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"plant {name!r}: {old!r} is not in {rel} exactly once: update it")
        path.write_text(text.replace(old, new))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--typings", type=Path, required=True, help="the patched stubs' folder")
    args = ap.parse_args(argv)
    typings = args.typings.resolve()
    if not (typings / "tensorrt" / "__init__.pyi").is_file():
        print(f"no tensorrt stubs in {typings}: run tests/trt_api/patch_stubs.py {typings} first")
        return 2
    cache = typings.parent / ".mypy_cache"
    t0 = time.perf_counter()
    rc, out = mypy(REPO, typings, cache)
    print(out.rstrip())
    print(f"mypy on the TensorRT backend: exit {rc} ({time.perf_counter() - t0:.1f} s)")
    if rc != 0:
        return rc
    with tempfile.TemporaryDirectory() as tmp:
        planted_tree(Path(tmp))
        rc, out = mypy(Path(tmp), typings, cache)
    missed = []
    for name, (rel, _, _, expected) in PLANTS.items():
        hits = [ln for ln in out.splitlines() if ln.startswith(rel) and expected in ln]
        print(f"planted {name}: {'caught: ' + hits[0] if hits else 'NOT CAUGHT'}")
        if not hits:
            missed.append(name)
    if rc == 0 or missed:
        print(out.rstrip())
        print(f"the type check did not catch: {missed or 'anything (mypy passed)'}")
        return 1
    print(f"type check: clean, and every planted misuse caught ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
