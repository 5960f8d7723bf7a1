"""``python -m reports``: compare stored runs, re-render a summary.

    python -m reports compare RUN_A RUN_B [--more-a RUN] [--more-b RUN] [--threshold 0.02]
                              [--alpha 0.01] [--run-noise 0.0075] [--escalate] [--plot compare.png]
    python -m reports summarize reports/latest/run.json [--out DIR]

``compare`` exits 1 when a test regressed (its lower bound above 1 and its ratio >= 1 + threshold),
2 on unusable input, 3 with ``--escalate`` when no test regressed but some are unknown (it prints
how to take more samples), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .compare import (
    DEFAULTS,
    CompareError,
    compare_runs,
    format_table,
    load_run,
    machine_differences,
    write_plot,
)
from .summary import write_summary


def _add_compare(sub) -> None:
    c = sub.add_parser("compare", help="compare two pytest-benchmark runs test by test")
    c.add_argument("run_a", help="pytest-benchmark JSON (or folder: its newest JSON), the baseline")
    c.add_argument("run_b", help="pytest-benchmark JSON (or folder), the candidate")
    c.add_argument(
        "--more-a",
        action="append",
        default=[],
        metavar="RUN",
        help="another run of the baseline, pooled with RUN_A (repeatable)",
    )
    c.add_argument(
        "--more-b",
        action="append",
        default=[],
        metavar="RUN",
        help="another run of the candidate, pooled with RUN_B (repeatable)",
    )
    c.add_argument(
        "--threshold",
        type=float,
        default=DEFAULTS.threshold,
        help="smallest change that counts as a regression or improvement "
        "(default %(default)s = 2%%)",
    )
    c.add_argument(
        "--same-within",
        type=float,
        default=DEFAULTS.same_within,
        help="'same' when both bounds lie within 1 -/+ this (default %(default)s)",
    )
    c.add_argument(
        "--alpha",
        type=float,
        default=DEFAULTS.alpha,
        help="one-sided error rate per test (default %(default)s); comparing N tests, "
        "alpha/N bounds the chance of any false verdict",
    )
    c.add_argument(
        "--run-noise",
        type=float,
        default=DEFAULTS.run_noise,
        help="run-to-run level noise of one run (SD of log time, default %(default)s): "
        "calibrate it from A/A comparisons on your device",
    )
    c.add_argument(
        "--metric",
        default="auto",
        choices=("auto", "gpu_compute_ms", "host_latency_ms"),
        help="auto: GPU compute time where both runs have it, else host latency",
    )
    c.add_argument(
        "--escalate",
        action="store_true",
        help="exit 3 and print how to take more samples when tests are unknown",
    )
    c.add_argument("--plot", default="compare.png", help="PNG to write ('' for none)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reports", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    _add_compare(sub)
    s = sub.add_parser("summarize", help="re-render summary.md/html and plots from a run.json")
    s.add_argument("run_json")
    s.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.cmd == "summarize":
        src = Path(args.run_json)
        try:
            run = json.loads(src.read_text())
        except (OSError, ValueError) as exc:
            print(f"error: {src}: cannot read run record ({exc})", file=sys.stderr)
            return 2
        paths = write_summary(run, Path(args.out) if args.out else src.parent)
        print(f"wrote {paths['md']} and {paths['html']}")
        return 0
    return compare(args)


def compare(args: argparse.Namespace) -> int:
    try:
        runs_a = [load_run(p) for p in [args.run_a, *args.more_a]]
        runs_b = [load_run(p) for p in [args.run_b, *args.more_b]]
        rows = compare_runs(
            runs_a,
            runs_b,
            args.threshold,
            alpha=args.alpha,
            same_within=args.same_within,
            run_noise=args.run_noise,
            metric=args.metric,
        )
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    a, b = runs_a[0], runs_b[0]
    names_a = {x["name"] for r in runs_a for x in r["benchmarks"]}
    names_b = {x["name"] for r in runs_b for x in r["benchmarks"]}
    for side, runs in (("A", runs_a), ("B", runs_b)):
        more = f" (+ {len(runs) - 1} more run(s) pooled)" if len(runs) > 1 else ""
        print(f"{side}: {runs[0]['_path']}{more}")
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
        if write_plot(rows, Path(args.plot), args.threshold):
            print(f"\nplot: {args.plot}")
    count = {
        v: sum(r.verdict == v for r in rows) for v in ("regressed", "improved", "same", "unknown")
    }
    weak = sum(r.weak for r in rows)
    print(
        f"\n{len(rows)} compared: {count['regressed']} regressed, {count['improved']} improved, "
        f"{count['same']} same, {count['unknown']} unknown (bounds one-sided "
        f"{1 - args.alpha:.0%} each; regression = lower bound > 1 and ratio >= "
        f"{1 + args.threshold:g}; run noise {args.run_noise:.2%} per run)"
    )
    if weak:
        print(
            f"{weak} test(s) compared on pytest-benchmark summaries only (runs saved without "
            "block samples): weak, mostly unknown; re-run both versions with the current "
            "suites/test_benchmark.py to store blocks"
        )
    if count["regressed"]:
        return 1
    unknown = [r for r in rows if r.verdict == "unknown"]
    if unknown and args.escalate:
        print(escalation(unknown, args))
        return 3
    return 0


def escalation(unknown: list, args: argparse.Namespace) -> str:
    """How to take more samples of the unknown tests and compare again (Pinpoint-style)."""
    names = [r.test for r in unknown]
    expr = " or ".join(names)
    per_run = max(
        (
            max(r.blocks_a // max(r.runs_a, 1), r.blocks_b // max(r.runs_b, 1))
            for r in unknown
            if not r.weak
        ),
        default=100,
    )
    lines = [
        f"\n{len(unknown)} test(s) unknown: neither a change beyond the threshold nor 'same within "
        f"{args.same_within:.0%}' is established. Take more samples of both versions (the "
        "run-to-run noise shrinks with the number of runs), then compare again:",
        f"  pytest suites/test_benchmark.py -k {shlex.quote(expr)} "
        f"--benchmark-min-rounds={2 * per_run} --benchmark-save=more     # with A's version",
        "  (the same with B's version)",
        f"  python -m reports compare {shlex.quote(args.run_a)} {shlex.quote(args.run_b)} "
        "--more-a <A's new run>.json --more-b <B's new run>.json",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
