"""``python -m models``: export zoo variants to files, analyse any ONNX model.

python -m models export resnet8 --variant traced -o resnet8_traced.onnx   # the negative control
python -m models export resnet56 --variant concat -o resnet56_exit.onnx
python -m models analyze path/to/model.onnx                                 # what the suite sees
python -m models train [NAMES...]                                           # regenerate weights
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        from .train import main as train_main

        return train_main(argv[1:])
    from .zoo import VARIANTS, ZOO

    ap = argparse.ArgumentParser(prog="python -m models", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write a zoo model's ONNX variant to a file")
    ex.add_argument("name", choices=sorted(ZOO))
    ex.add_argument("--variant", default="concat", choices=VARIANTS)
    ex.add_argument("-o", "--output", required=True)
    an = sub.add_parser("analyze", help="print what the suite finds in an ONNX model")
    an.add_argument("path")
    sub.add_parser("train", help="retrain zoo weights (see python -m models.train --help)")
    args = ap.parse_args(argv)
    if args.cmd == "export":
        from ._io import atomic_write_bytes
        from .zoo import onnx_path

        src = onnx_path(ZOO[args.name], args.variant)
        with open(src, "rb") as fh:
            atomic_write_bytes(args.output, fh.read())
        print(f"wrote {args.output} ({args.name}, {args.variant})")
        return 0
    from .structure import ModelFileError, analyze, load_model

    try:
        a = analyze(load_model(args.path), args.path)
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for k in ("if_node", "condition", "image_input", "image_layout", "threshold_input",
              "threshold_constant", "compare_op", "exit_branch", "layout", "flag_output",
              "probs_output", "num_classes"):  # fmt: skip
        print(f"{k}: {getattr(a, k)}")
    print("verdict: the exit is real" if a.ok and not a.undetermined else a.explain())
    return 0 if a.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
