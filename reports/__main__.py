"""``python -m reports``: compare stored runs, re-render a summary.

    python -m reports compare RUN_A RUN_B [--threshold 0.10] [--plot compare.png]
    python -m reports summarize reports/latest/run.json [--out DIR]

``compare`` exits 1 when a test regressed beyond the threshold (with an interval entirely above 1),
2 on unusable input, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reports", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="compare two pytest-benchmark runs test by test")
    c.add_argument("run_a", help="pytest-benchmark JSON (or folder: its newest JSON), the baseline")
    c.add_argument("run_b", help="pytest-benchmark JSON (or folder), the candidate")
    c.add_argument(
        "--threshold", type=float, default=0.10, help="regression threshold (0.10 = 10%%)"
    )
    c.add_argument("--plot", default="compare.png", help="PNG to write ('' for none)")
    s = sub.add_parser("summarize", help="re-render summary.md/html and plots from a run.json")
    s.add_argument("run_json")
    s.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.cmd == "summarize":
        from .summary import write_summary

        src = Path(args.run_json)
        try:
            run = json.loads(src.read_text())
        except (OSError, ValueError) as exc:
            print(f"error: {src}: cannot read run record ({exc})", file=sys.stderr)
            return 2
        paths = write_summary(run, Path(args.out) if args.out else src.parent)
        print(f"wrote {paths['md']} and {paths['html']}")
        return 0
    from .compare import (
        CompareError,
        compare_runs,
        format_table,
        load_run,
        machine_differences,
        write_plot,
    )

    try:
        a, b = load_run(args.run_a), load_run(args.run_b)
        rows = compare_runs(a, b, args.threshold)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names_a = {x["name"] for x in a["benchmarks"]}
    names_b = {x["name"] for x in b["benchmarks"]}
    print(f"A: {a['_path']}\nB: {b['_path']}")
    diffs = machine_differences(a, b)
    if diffs:
        print(f"\nmachine_info differs in {len(diffs)} field(s):")
        for k, va, vb in diffs:
            print(f"  {k}: A={va!r}  B={vb!r}")
    print()
    print(format_table(rows, sorted(names_a - names_b), sorted(names_b - names_a)))
    if not rows:
        print("\nno test id is present in both runs: nothing to compare", file=sys.stderr)
        return 2
    if args.plot:
        write_plot(rows, Path(args.plot), args.threshold)
        print(f"\nplot: {args.plot}")
    regressions = [r for r in rows if r.verdict == "regression"]
    print(f"\n{len(rows)} compared, {len(regressions)} regression(s) beyond {args.threshold:.0%}")
    return 1 if regressions else 0


if __name__ == "__main__":
    raise SystemExit(main())
