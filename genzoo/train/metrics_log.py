"""metrics.csv written row by row: one `write()` of a whole line per row, appended, never rewritten per log.

Format: an ordinary CSV with one header line (read it with `csv.DictReader` or `genzoo.train.rundir.
read_metrics`). Columns can appear during a run (validation columns at the first epoch end, a callback's
columns at its first measurement): the first row that brings a new column rewrites the file once, atomically
(temp file + rename), with the widened header, and appending continues. That happens a handful of times per run,
so a long run costs O(rows) in total (the old writer rewrote the whole file at every log: O(rows^2)).

Crash safety: a row is one `os.write` of the complete line on an O_APPEND descriptor, so a SIGKILL leaves either
the row or nothing; a torn last line (power loss, full disk) is dropped when the run is resumed, together with
rows after the checkpoint being resumed from. Rows are not fsync'ed (a machine crash may lose the last rows
since the checkpoint, which --resume writes again).
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from .._io import write_bytes


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def _line(values: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def read_rows(path: Path) -> tuple[list[str], list[list[str]], bool]:
    """(header, complete rows, whether something torn was dropped) of a metrics.csv written by MetricsCSV."""
    raw = path.read_bytes()
    torn = False
    if raw and not raw.endswith(b"\n"):  # a last line cut short: drop it
        raw = raw[: raw.rfind(b"\n") + 1]
        torn = True
    reader = csv.reader(io.StringIO(raw.decode("utf-8", errors="replace")))
    lines = list(reader)
    if not lines:
        return [], [], torn
    header, rows = lines[0], []
    for r in lines[1:]:
        if len(r) != len(header):
            torn = True
            continue
        rows.append(r)
    return header, rows, torn


class MetricsCSV:
    """Appends metrics rows to `path`. `keep_until_step`: resuming; keep only rows with step <= it (and drop a
    torn last line)."""

    def __init__(self, path: Path, keep_until_step: int | None = None):
        self.path = Path(path)
        self.header: list[str] = []
        self.fd: int | None = None
        if self.path.exists():
            header, rows, torn = read_rows(self.path)
            keep = rows
            if keep_until_step is not None and "step" in header:
                i = header.index("step")
                keep = [r for r in rows if _step(r[i]) <= keep_until_step]
            self.header = header
            if torn or len(keep) != len(rows):
                self._rewrite(header, keep)

    def add(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self.header]
        if new:
            old_header, old_rows = self.header, (read_rows(self.path)[1] if self.path.exists() else [])
            header = old_header + new
            pad = [""] * len(new)
            self._rewrite(header, [r + pad for r in old_rows])
        line = _line([_fmt(row.get(k, "")) for k in self.header]).encode()
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self.fd, line)  # the whole row in one write: a kill leaves the row or nothing

    def flush(self) -> None:
        """Rows are written as they are added (kept for callers of the old interface)."""

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _rewrite(self, header: list[str], rows: list[list[str]]) -> None:
        self.close()  # the rename replaces the file: reopen the new one for appending
        text = _line(header) + "".join(_line(r) for r in rows)
        write_bytes(self.path, text.encode())
        self.header = list(header)


def _step(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        return float("inf")
