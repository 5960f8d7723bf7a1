"""Render a run record (``run.json``) as Markdown, a static HTML page and PNG plots.

The tables follow what the run's suites declared (``run["families"]``, from each module's
``exitgate_family`` marker, see ``reports/plugin.py``): one status column per family, one section
per declared fact, titled as declared. A fact with its own columns has a layout in :data:`LAYOUTS`
(keyed by the fact's key); any other declared fact is shown as ``case | result``.

Everything is written atomically into the output folder; the HTML needs no server and embeds
nothing remote, so it opens from disk.
"""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models._io import atomic_write_text

from .plots import write_plots

__all__ = ["LAYOUTS", "families", "render_html", "render_markdown", "sections", "write_summary"]

SYMBOL = {
    "passed": "pass",
    "failed": "FAIL",
    "error": "ERROR",
    "skipped": "skip",
    "xfailed": "xfail",
    "xpassed": "XPASS",
}
_ORDER = ["ERROR", "FAIL", "XPASS", "pass", "xfail", "skip"]


def _file_and_case(nodeid: str) -> tuple[str, str]:
    m = re.match(r"(?:.*/)?([^/:]+)::[^\[]+(?:\[(.*)\])?$", nodeid)
    return (m.group(1), m.group(2) or "") if m else (nodeid, "")


def _declared(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's family declarations, in their declared order."""
    return sorted(run.get("families", {}).values(), key=lambda d: (d.get("order", 100), d["name"]))


def _family(nodeid: str, t: dict[str, Any]) -> str:
    """A test's family: as its module declared, else its file's name."""
    return t.get("family") or _file_and_case(nodeid)[0]


def families(run: dict[str, Any]) -> dict[str, dict[str, str]]:
    """model (with layout) -> family -> worst status over its tests."""
    table: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for nodeid, t in run["tests"].items():
        case = t.get("props", {}).get("case")
        model = (
            case["model"] + (f" ({case['layout']})" if case.get("layout") else "") if case else "-"
        )
        table[model][_family(nodeid, t)].append(SYMBOL.get(t["outcome"], t["outcome"]))
    return {
        m: {
            f: min(v, key=_ORDER.index) + (f" ({len(v)})" if len(v) > 1 else "")
            for f, v in fams.items()
        }
        for m, fams in sorted(table.items())
    }


def _rows(run: dict[str, Any], prop: str) -> list[tuple[str, Any]]:
    out = []
    for nodeid, t in sorted(run["tests"].items()):
        if prop in t.get("props", {}):
            out.append((_file_and_case(nodeid)[1], t["props"][prop]))
    return out


def _counts(run: dict[str, Any]) -> dict[str, int]:
    c: dict[str, int] = defaultdict(int)
    for t in run["tests"].values():
        c[t["outcome"]] += 1
    return dict(c)


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return lines


def _fmt(v: Any) -> str:
    """A recorded fact as one readable cell."""
    if isinstance(v, dict) and "median_ms" in v:
        how = f", {v['launch']}" if v.get("launch") else ""
        return (
            f"median {v['median_ms']:.3f} ms [p5 {v.get('p05_ms', float('nan')):.3f}, "
            f"p95 {v.get('p95_ms', float('nan')):.3f}] ({v.get('metric', '?')} time{how})"
        )
    if isinstance(v, list):
        return "; ".join(map(str, v))
    return v if isinstance(v, str) else json.dumps(v)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _exit_rows(rows: list[tuple[str, Any]]) -> list[list[Any]]:
    return [
        [
            c,
            e.get("criterion", ""),
            e["threshold"],
            _pct(e["exit_rate"]),
            _pct(e.get("accuracy")),
            _pct(e.get("accuracy_exited")),
            _pct(e.get("accuracy_deep")),
            e["n"],
        ]
        for c, e in rows
    ]


def _audit_rows(rows: list[tuple[str, Any]]) -> list[list[Any]]:
    return [
        [case, branch, info["text"], "LEFT AT FP32" if info.get("left_fp32") else ""]
        for case, a in rows
        for branch, info in a.items()
    ]


def _stream_rows(rows: list[tuple[str, Any]]) -> list[list[Any]]:
    out = []
    for case, st in rows:
        for lab, r in st["strategies"].items():
            sp = (
                f"{r['speedup']:.2f}x [{r['speedup_low']:.2f}, {r['speedup_high']:.2f}]"
                if "speedup" in r
                else ""
            )
            out.append(
                [
                    case,
                    st["criterion"],
                    f"{st['threshold']:g}",
                    lab,
                    f"{r['mean_ms']:.3f}",
                    f"{r['p99_ms']:.3f}",
                    _pct(r["exit_rate"]),
                    sp,
                    f"{r['promised']:.2f}x" if "promised" in r else "",
                ]
            )
        if "twin" in st:
            out.append(
                [
                    case,
                    "",
                    "",
                    "no-exit twin",
                    f"{st['twin']['mean_ms']:.3f}",
                    f"{st['twin']['p99_ms']:.3f}",
                    "",
                    "1.00x",
                    "",
                ]
            )
    return out


Layout = tuple[list[str], Callable[[list[tuple[str, Any]]], list[list[Any]]], str]
LAYOUTS: dict[str, Layout] = {  # fact key -> (header, rows from [(case, value)], note)
    "exit": (
        [
            "case",
            "criterion",
            "threshold",
            "exit rate",
            "accuracy",
            "accuracy of exited",
            "accuracy of deep path",
            "inputs",
        ],
        _exit_rows,
        "",
    ),
    "correctness": (["summary"], lambda rows: [[line] for _, line in rows], ""),
    "audit": (
        ["case", "branch", "coverage", "flag"],
        _audit_rows,
        "counts of Conv/Gemm/MatMul running in the target precision",
    ),
    "stream": (
        [
            "case",
            "criterion",
            "threshold",
            "strategy",
            "mean ms",
            "p99 ms",
            "exit rate",
            "speed-up over twin [95 %]",
            "promised by path latencies",
        ],
        _stream_rows,
        "each input its own inference, loaded in place, its path decided by the model; "
        "timing: GPU events (device) or perf_counter (host)",
    ),
    "engine": (
        ["case", "engine"],
        lambda rows: [
            [c, ", ".join(f"{k} {v}" for k, v in e.items() if k != "plan")] for c, e in rows
        ],
        "",
    ),
}
"""Facts with columns of their own; every other declared fact is a ``case | result`` table."""
_PLAIN: Layout = (["case", "result"], lambda rows: [[c, _fmt(v)] for c, v in rows], "")


def sections(run: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]], str]]:
    """(title, header, rows, note) for every table of the summary, shared by MD and HTML."""
    env = run.get("environment", {})
    out: list[tuple[str, list[str], list[list[Any]], str]] = []
    env_rows = [[k, v] for k, v in env.items() if k not in ("args",) and v not in (None, "")]
    env_rows.append(["command", "pytest " + " ".join(env.get("args", []))])
    out.append(("Environment", ["field", "value"], env_rows, ""))
    fam = families(run)
    declared = _declared(run)
    undeclared = sorted({f for v in fam.values() for f in v} - {d["name"] for d in declared})
    cols = [d["name"] for d in declared if any(d["name"] in v for v in fam.values())] + undeclared
    out.append(
        (
            "Status per model",
            ["model", *cols],
            [[m, *[v.get(c, "") for c in cols]] for m, v in fam.items()],
            "worst outcome over the model's tests; (n) = number of tests",
        )
    )
    titles: dict[str, str] = {}  # fact key -> title: the first family (in order) declaring it wins
    for d in declared:
        for key, title in d["facts"]:
            titles.setdefault(key, title)
    for key, title in titles.items():
        rows = _rows(run, key)
        if rows:
            header, make, note = LAYOUTS.get(key, _PLAIN)
            out.append((title, header, make(rows), note))
    skipped = [
        [nodeid, t.get("reason", "")]
        for nodeid, t in sorted(run["tests"].items())
        if t["outcome"] in ("skipped", "xfailed")
    ]
    if skipped:
        out.append(("Skipped or expected to fail, and why", ["test", "reason"], skipped, ""))
    failed = [
        [nodeid, t.get("reason", "")]
        for nodeid, t in sorted(run["tests"].items())
        if t["outcome"] in ("failed", "error", "xpassed")
    ]
    if failed:
        out.append(("Failures", ["test", "first line"], failed, ""))
    return out


def render_markdown(run: dict[str, Any], plots: list[str]) -> str:
    c = _counts(run)
    lines = [
        "# exitgate run summary",
        "",
        "**" + ", ".join(f"{v} {k}" for k, v in sorted(c.items())) + "**",
        "",
    ]
    for title, header, rows, note in sections(run):
        lines += [f"## {title}", ""]
        if note:
            lines += [f"_{note}_", ""]
        lines += [*_md_table(header, rows), ""]
    if plots:
        lines += ["## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f2f2f2}.FAIL,.ERROR,.XPASS{background:#fdd;font-weight:bold}.pass{color:#070}
.skip,.xfail{color:#777}img{max-width:100%;border:1px solid #ddd;margin:4px 0}
.note{color:#666;font-style:italic}"""


def render_html(run: dict[str, Any], plots: list[str]) -> str:
    c = _counts(run)
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>exitgate run summary</title>",
        f"<style>{_CSS}</style></head><body><h1>exitgate run summary</h1>",
        "<p><b>" + e(", ".join(f"{v} {k}" for k, v in sorted(c.items()))) + "</b></p>",
    ]
    for title, header, rows, note in sections(run):
        parts.append(f"<h2>{e(title)}</h2>")
        if note:
            parts.append(f"<p class='note'>{e(note)}</p>")
        parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        for r in rows:
            cells = []
            for x in r:
                s = str(x)
                cls = s.split(" ")[0] if s.split(" ")[0] in SYMBOL.values() else ""
                cells.append(f"<td class='{cls}'>{e(s)}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
    if plots:
        parts.append("<h2>Plots</h2>")
        parts += [f"<p><img src='{e(p)}' alt='{e(p)}'></p>" for p in plots]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_summary(run: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)

    plots = write_plots(run, out)
    paths = {"json": out / "run.json", "md": out / "summary.md", "html": out / "summary.html"}
    atomic_write_text(paths["json"], json.dumps(run, indent=1, sort_keys=True, default=str))
    atomic_write_text(paths["md"], render_markdown(run, plots))
    atomic_write_text(paths["html"], render_html(run, plots))
    return paths
