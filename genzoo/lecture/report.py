"""The lecture report: `report.md` (figures as PNG files beside it), `report.html` (one self-contained page,
every figure inlined as a base64 data URI) and `results.json` (the numbers), all written atomically."""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

from .._io import write_json, write_text
from .core import Claim, Result

STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
blockquote{border-left:4px solid #bbb;margin:0;padding:.2rem 1rem;color:#555;font-style:italic}
table{border-collapse:collapse;margin:.6rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;font-size:.9rem}
th{background:#f3f3f3}.v{font-weight:bold;padding:.1rem .5rem;border-radius:.3rem}
.holds{background:#d4f4d4}.partly{background:#fbf0c8}.fails{background:#f8d4d4}.error{background:#ddd}
img{max-width:100%;border:1px solid #eee;margin:.3rem 0}code{background:#f6f6f6;padding:0 .2rem}
.toc td{font-size:.85rem}"""


def fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def _verdict_class(v: str) -> str:
    return {"holds": "holds", "partly": "partly", "error": "error"}.get(v, "fails")


def _rows_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    return keys, [[fmt(r.get(k, "-")) for k in keys] for r in rows]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _rel(f: Any, out: Path) -> str:
    """A figure's path relative to the report folder when it lies inside it (the folder can be moved)."""
    f = Path(f)
    return (f.relative_to(out) if f.is_relative_to(out) else f).as_posix()


def write_report(items: Sequence[tuple[Claim, Result]], out: Path, scale: str, header: str = "") -> dict[str, Path]:
    """Write report.md, report.html and results.json under `out` for the (claim, result) pairs."""
    out = Path(out)
    md = [f"# The lectures, measured ({scale} run)", "", header, "",
          _md_table(["#", "claim", "verdict", "CPU s"],
                    [[str(c.number), f"[{c.title}](#{c.name})", r.verdict, f"{r.cpu_s:.0f}"] for c, r in items]), ""]
    hp = [f"<!doctype html><html><head><meta charset='utf-8'><title>genzoo: the lectures, measured</title>"
          f"<style>{STYLE}</style></head><body><h1>The lectures, measured ({html.escape(scale)} run)</h1>",
          f"<p>{html.escape(header)}</p>",
          "<table class='toc'><tr><th>#</th><th>claim</th><th>verdict</th><th>CPU s</th></tr>"
          + "".join(f"<tr><td>{c.number}</td><td><a href='#{c.name}'>{html.escape(c.title)}</a></td>"
                    f"<td><span class='v {_verdict_class(r.verdict)}'>{html.escape(r.verdict)}</span></td>"
                    f"<td>{r.cpu_s:.0f}</td></tr>" for c, r in items) + "</table>"]
    results = []
    for c, r in items:
        nums = [[k, fmt(v)] for k, v in r.numbers.items()]
        md += [f"<a id=\"{c.name}\"></a>", f"## {c.number}. {c.title} (`{c.name}`)", "", f"> {c.quote}", "",
               f"**Experiment.** {c.experiment}", "", f"**Verdict: {r.verdict}.** {r.why}", ""]
        hp += [f"<h2 id='{c.name}'>{c.number}. {html.escape(c.title)} <small>({c.name})</small></h2>",
               f"<blockquote>{html.escape(c.quote)}</blockquote>",
               f"<p><b>Experiment.</b> {html.escape(c.experiment)}</p>",
               f"<p><b>Verdict: <span class='v {_verdict_class(r.verdict)}'>{html.escape(r.verdict)}</span>"
               f"</b> {html.escape(r.why)}</p>"]
        if r.table:
            head, rows = _rows_table(r.table)
            md += [_md_table(head, rows), ""]
            hp.append(_html_table(head, rows))
        if nums:
            md += [_md_table(["number", "value"], nums), ""]
            hp.append(_html_table(["number", "value"], nums))
        for f in r.figures:
            f = Path(f)
            rel = f.relative_to(out) if f.is_relative_to(out) else f
            md += [f"![{c.name}]({rel.as_posix()})", ""]
            if f.exists():
                b64 = base64.b64encode(f.read_bytes()).decode()
                hp.append(f"<img alt='{c.name}' src='data:image/png;base64,{b64}'>")
        md += [f"Rerun: `{c.command(scale)}` ({r.cpu_s:.0f} CPU s here)", ""]
        hp.append(f"<p>Rerun: <code>{html.escape(c.command(scale))}</code> ({r.cpu_s:.0f} CPU s here)</p>")
        if r.error:
            md += ["```", r.error, "```", ""]
            hp.append(f"<pre>{html.escape(r.error)}</pre>")
        results.append({"name": c.name, "number": c.number, "title": c.title, "quote": c.quote,
                        "verdict": r.verdict, "why": r.why, "numbers": r.numbers, "table": r.table,
                        "figures": [_rel(f, out) for f in r.figures], "cpu_s": round(r.cpu_s, 1),
                        "command": c.command(scale), "error": r.error})
    hp.append("</body></html>")
    return {"md": write_text(out / "report.md", "\n".join(md) + "\n"),
            "html": write_text(out / "report.html", "\n".join(hp) + "\n"),
            "json": write_json(out / "results.json", json.loads(json.dumps(
                {"scale": scale, "claims": results}, default=str)))}
