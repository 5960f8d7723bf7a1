"""``python -m models``: export zoo variants to files, analyse any ONNX model.

python -m models export resnet8 --variant traced -o resnet8_traced.onnx   # the negative control
python -m models export resnet56 --variant concat -o resnet56_exit.onnx
python -m models analyze path/to/model.onnx [--threshold=T] [--batch=N]     # what the suite sees
python -m models train [NAMES...]                                           # regenerate weights
"""

from __future__ import annotations

import argparse
import sys

from . import dataset
from ._io import atomic_write_bytes
from .probe import ort_errors, settle
from .structure import IMAGE_LAYOUTS, LAYOUTS, ModelFileError, analyze, load_model
from .train import main as train_main
from .zoo import VARIANTS, ZOO, onnx_path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        return train_main(argv[1:])

    ap = argparse.ArgumentParser(prog="python -m models", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write a zoo model's ONNX variant to a file")
    ex.add_argument("name", choices=sorted(ZOO))
    ex.add_argument("--variant", default="concat", choices=VARIANTS)
    ex.add_argument("-o", "--output", required=True)
    an = sub.add_parser("analyze", help="print what the suite finds in an ONNX model")
    an.add_argument("path")
    an.add_argument("--threshold", type=float, help="the model's threshold, if it is an input")
    an.add_argument("--flag-layout", choices=LAYOUTS)
    an.add_argument("--flag-output", help="the output that carries the exit flag")
    an.add_argument("--input-layout", choices=IMAGE_LAYOUTS)
    an.add_argument("--batch", type=int, default=1, help="pin a dynamic batch to N (default 1)")
    sub.add_parser("train", help="retrain zoo weights (see python -m models.train --help)")
    args = ap.parse_args(argv)
    if args.cmd == "export":
        src = onnx_path(ZOO[args.name], args.variant)
        with open(src, "rb") as fh:
            atomic_write_bytes(args.output, fh.read())
        print(f"wrote {args.output} ({args.name}, {args.variant})")
        return 0
    return _analyze(args)


def _analyze(args: argparse.Namespace) -> int:
    """Static analysis, then (where it is sound) the probe on a few of the project's images."""
    if args.batch < 1:
        print(f"error: --batch={args.batch}: expected a whole number >= 1", file=sys.stderr)
        return 2
    try:
        model = load_model(args.path)
        a = analyze(
            model,
            args.path,
            layout=args.flag_layout,
            input_layout=args.input_layout,
            flag_output=args.flag_output,
        )
    except (ModelFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = {}
    source = a  # the file as given: where its threshold comes from
    if a.ok and not a.undetermined:
        default = args.threshold if args.threshold is not None else a.threshold_constant
        x = dataset.eval_split(4 * args.batch).x
        images = [
            x[i : i + args.batch] if args.batch > 1 else x[i] for i in range(0, len(x), args.batch)
        ]
        try:
            settled = settle(model, a, images, 0.5 if default is None else default, args.batch)
        except ort_errors() as exc:
            print(f"error: {args.path}: onnxruntime cannot run the model: {exc}", file=sys.stderr)
            return 1
        a, paths = settled.analysis, settled.paths
    facts = {
        "if_node": a.if_node,
        "condition": a.condition,
        "criterion": a.criterion,
        "exit_when": f"{a.describe()}" if a.exit_when else None,
        "compare_op": a.compare_op,
        "threshold": source.threshold_source,
        "threshold_via": " -> ".join(source.threshold_via) or None,
        "exit_branch": a.exit_branch,
        "flag_layout": a.layout,
        "flag_output": a.flag_output,
        "probs_output": a.probs_output,
        "num_classes": a.num_classes,
        "image_input": a.image_input,
        "image_layout": a.image_layout,
        "image_shape": list(a.image_shape) if a.image_shape else None,
    }
    for k, v in facts.items():
        print(f"{k}: {v}")
    for name, p in paths.items():
        print(
            f"path {name}: threshold {p.threshold:g}"
            + (f", flag {p.flag:g} ({p.branch} branch forced)" if p.flag is not None else "")
        )
    if source.threshold_input is not None and args.threshold is None:
        print("note: the threshold is an input without a default: the suite needs --threshold=T")
    print("verdict: the exit is real" if a.ok and not a.undetermined else a.explain())
    return 0 if a.ok and not a.undetermined else 1


if __name__ == "__main__":
    raise SystemExit(main())
