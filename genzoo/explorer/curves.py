"""The explorer's training-curves panel: a run's metrics.csv read tolerantly and followed while it grows, and
the latest progress grid (samples/step_XXXXXX.png).

metrics.csv is read as any CSV a person or another program might have written: a last line without its newline
(a torn write, or a file still being written) is left out until it is complete, rows shorter than the header
have the missing cells empty, rows longer than it are skipped and counted, cells that are not finite numbers
are empty (None), columns with no number at all are listed as text columns and not plotted. A run that is
training appends rows: the reader keeps its place (inode and byte offset) and parses only what was added; a
file replaced by another (MetricsCSV widens its header by an atomic rename) is read again from the start.

Polling is cheap: `Curves.etag()` is built from stat() calls and one directory listing, and a poll that sends
the etag it has gets `{"changed": false}` without the file being read.
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import is_temp, read_json
from ..train import rundir as R

GRID_NAME = re.compile(r"step_(\d+)\.png")
MAX_GRID_BYTES = 32 * 1024 * 1024  # a progress grid larger than this is not served
MAX_METRICS_BYTES = 64 * 1024 * 1024  # a metrics.csv larger than this is not read (about 1M rows of 10 columns)
MAX_POINTS = 1000  # points per curve in an answer (the default; `max_points` asks for up to MAX_POINTS_LIMIT)
MAX_POINTS_LIMIT = 5000
LIVE_STATUSES = ("started", "running")  # run.json statuses of a run that may still be training


def _number(cell: str) -> float | None:
    try:
        v = float(cell)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


@dataclass
class Table:
    """The parsed rows of a metrics.csv: `columns` (header names), `rows` (lists of float | None, one per column),
    `skipped` (rows with more cells than the header), `torn` (a last line without its newline was left out)."""

    columns: list[str] = field(default_factory=list)
    rows: list[list[float | None]] = field(default_factory=list)
    skipped: int = 0
    torn: bool = False
    text: set[int] = field(default_factory=set)  # columns with a non-empty cell that is not a number


def parse_header(line: str) -> list[str]:
    names = next(csv.reader([line]), [])
    out: list[str] = []
    for i, name in enumerate(names):
        name = name.strip() or f"column {i + 1}"
        while name in out:  # duplicate names: keep both, the second one suffixed
            name += "'"
        out.append(name)
    return out


def parse_rows(text: str, table: Table) -> None:
    """Append the complete CSV lines of `text` to `table` (its columns already set)."""
    k = len(table.columns)
    for cells in csv.reader(io.StringIO(text)):
        if not cells or all(not c.strip() for c in cells):
            continue  # a blank line
        if len(cells) > k:
            table.skipped += 1
            continue
        row: list[float | None] = []
        for j, c in enumerate(cells):
            v = _number(c) if c.strip() else None
            if v is None and c.strip() and c.strip().lower() not in ("nan", "inf", "-inf", "+inf"):
                table.text.add(j)
            row.append(v)
        table.rows.append(row + [None] * (k - len(cells)))  # missing cells at the end: empty


def read_table(path: str | Path) -> Table:
    """metrics.csv (or any CSV with a header line) -> Table, tolerating what the module's docstring says."""
    path = Path(path)
    if path.stat().st_size > MAX_METRICS_BYTES:
        raise ValueError(f"{path} has {path.stat().st_size:,} bytes; at most {MAX_METRICS_BYTES:,} are read")
    raw = path.read_bytes()
    table = Table()
    _parse_bytes(raw, table, header=True)
    return table


def _parse_bytes(raw: bytes, table: Table, header: bool) -> int:
    """Parse the complete lines of `raw` into `table` (the first one as the header when `header`); -> the number
    of bytes consumed (up to and including the last newline)."""
    end = raw.rfind(b"\n") + 1
    table.torn = end < len(raw)
    text = raw[:end].decode("utf-8", errors="replace")
    if header:
        first, _, text = text.partition("\n")
        table.columns = parse_header(first.rstrip("\r"))
    parse_rows(text, table)
    return end


class Curves:
    """One run's curves, followed while the run trains. Thread-safe; `answer()` is what /api/metrics returns."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / R.METRICS
        self._lock = threading.Lock()
        self._table = Table()
        self._place: tuple[int, int] | None = None  # (inode, bytes consumed)

    # ---- what changed --------------------------------------------------------------------------------------
    def grids(self) -> list[int]:
        """Steps of the progress grids in samples/ (step_XXXXXX.png), ascending."""
        try:
            names = [e.name for e in os.scandir(self.run_dir / R.SAMPLES) if e.is_file() and not is_temp(e.name)]
        except OSError:
            return []
        return sorted(int(m.group(1)) for m in map(GRID_NAME.fullmatch, names) if m)

    def etag(self, grids: list[int] | None = None) -> str:
        """Changes when metrics.csv, run.json or the newest progress grid change."""
        parts = []
        for p in (self.path, self.run_dir / R.RUN):
            try:
                s = p.stat()
                parts.append(f"{s.st_ino:x}.{s.st_size:x}.{s.st_mtime_ns:x}")
            except OSError:
                parts.append("-")
        g = self.grids() if grids is None else grids
        parts.append(str(g[-1]) if g else "-")
        return "-".join(parts)

    # ---- reading ---------------------------------------------------------------------------------------------
    def table(self) -> Table:
        """The rows of metrics.csv now: only what was appended since the last call is parsed."""
        with self._lock:
            try:
                f = open(self.path, "rb")
            except FileNotFoundError:
                self._table, self._place = Table(), None
                return self._table
            with f:
                st = os.fstat(f.fileno())
                if st.st_size > MAX_METRICS_BYTES:
                    raise ValueError(f"{self.path} has {st.st_size:,} bytes; the explorer reads metrics files of at "
                                     f"most {MAX_METRICS_BYTES:,} bytes (log less often: --set log_every=N)")
                if self._place is not None and self._place[0] == st.st_ino and st.st_size >= self._place[1]:
                    f.seek(self._place[1])
                    consumed = self._place[1] + _parse_bytes(f.read(), self._table, header=False)
                else:  # first read, or the file was replaced (a widened header) or cut: read it all again
                    self._table = Table()
                    consumed = _parse_bytes(f.read(), self._table, header=True)
                # a header not yet complete is read again next time, with the rest
                self._place = (st.st_ino, consumed) if self._table.columns else None
            return self._table

    def answer(self, known: str | None = None, max_points: int = MAX_POINTS) -> dict[str, Any]:
        """What the page needs: {changed: false, etag} when `known` is the current etag, else the curves
        (columns with at least one number, at most `max_points` rows of each, evenly spaced, the last one always
        in), the x axis ("step" when the file has one, else the row number), the run's status and the steps of its
        progress grids."""
        grids = self.grids()
        tag = self.etag(grids)
        if known is not None and known == tag:
            return {"changed": False, "etag": tag}
        t = self.table()
        with self._lock:
            rows, columns = list(t.rows), list(t.columns)
            skipped, torn, text = t.skipped, t.torn, set(t.text)
        n = len(rows)
        keep = _spaced(n, max_points)
        numeric = [j for j, c in enumerate(columns) if j not in text and any(r[j] is not None for r in rows)]
        x_name = "step" if "step" in columns and columns.index("step") in numeric else None
        xj = columns.index(x_name) if x_name else None
        series = {columns[j]: [rows[i][j] for i in keep] for j in numeric if j != xj}
        x = [rows[i][xj] for i in keep] if xj is not None else [float(i + 1) for i in keep]
        info = _read_run_json(self.run_dir / R.RUN)
        status = info.get("status")
        return {
            "changed": True, "etag": tag, "file": R.METRICS, "exists": self.path.exists(), "rows": n,
            "shown": len(keep), "x": x_name or "row", "xs": x, "series": series,
            "text_columns": [columns[j] for j in sorted(text)], "skipped_rows": skipped, "torn": torn,
            "status": status, "live": status in LIVE_STATUSES, "step": info.get("step"),
            "total_steps": info.get("total_steps"), "grids": grids[-500:], "last_row": _last(columns, rows),
        }

    def grid_png(self, step: int | None = None) -> tuple[int, bytes]:
        """(step, PNG bytes) of the progress grid at `step` (default: the newest)."""
        grids = self.grids()
        if not grids:
            raise FileNotFoundError(f"{self.run_dir / R.SAMPLES}: no progress grids yet (train writes one every "
                                    f"sample_every steps)")
        if step is None:
            step = grids[-1]
        elif step not in grids:
            shown = ", ".join(map(str, grids)) if len(grids) <= 6 else \
                f"{', '.join(map(str, grids[:3]))}, ..., {', '.join(map(str, grids[-3:]))}"
            raise IndexError(f"no progress grid at step {step}; the run has {len(grids)}, at steps {shown}")
        path = self.run_dir / R.SAMPLES / f"step_{step:06d}.png"
        if not path.exists():  # written with more than 6 digits, or with leading zeros of another width
            path = next(p for p in (self.run_dir / R.SAMPLES).glob("step_*.png")
                        if (m := GRID_NAME.fullmatch(p.name)) and int(m.group(1)) == step)
        size = path.stat().st_size
        if size > MAX_GRID_BYTES:
            raise ValueError(f"{path} has {size:,} bytes; the explorer serves progress grids of at most "
                             f"{MAX_GRID_BYTES:,} bytes")
        return step, path.read_bytes()


def _spaced(n: int, k: int) -> list[int]:
    """At most k of the indices 0..n-1, evenly spaced, first and last included."""
    if n <= k:
        return list(range(n))
    if k == 1:
        return [n - 1]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _last(columns: list[str], rows: list[list[float | None]]) -> dict[str, float] | None:
    """The newest value of each column (the last row where it has one)."""
    if not rows:
        return None
    out: dict[str, float] = {}
    for j, c in enumerate(columns):
        for r in reversed(rows[-200:]):
            if r[j] is not None:
                out[c] = r[j]
                break
    return out


def _read_run_json(path: Path) -> dict[str, Any]:
    try:
        info = read_json(path)
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


__all__ = ["Curves", "Table", "read_table", "MAX_POINTS", "MAX_POINTS_LIMIT"]
