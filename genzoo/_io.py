"""Atomic file writes: every file genzoo writes goes to a temp file in the same folder, then is renamed.

A process killed at any moment leaves either the old file or the new one, never half of one. The temp file
is named `.NAME.genzoo-tmp-XXXXXXXX` (TEMP_MARK), so that cleaning up after a killed process removes genzoo's
own temp files and never anyone else's `.tmp` files.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

TEMP_MARK = ".genzoo-tmp-"
_UMASK = os.umask(0o022)  # at import (os.umask can only be read by setting it), then put back; see _umask
os.umask(_UMASK)


def _umask() -> int:
    """The process's umask now: Linux reports it in /proc/self/status (read, not set, so it is thread-safe);
    elsewhere the one read at import."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK


def is_temp(path: str | os.PathLike) -> bool:
    """True for a temp file `atomic_path` creates (`.NAME.genzoo-tmp-XXXXXXXX`)."""
    name = Path(path).name
    return name.startswith(".") and TEMP_MARK in name


def remove_temps(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Delete genzoo's own temp files under `folder` (left by a killed process); returns what was removed."""
    folder = Path(folder)
    found = folder.rglob(f".*{TEMP_MARK}*") if recursive else folder.glob(f".*{TEMP_MARK}*")
    removed = []
    for p in list(found):
        if p.is_file() and is_temp(p):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success fsync it and rename it over `path`.

    The file gets the mode a plain `open(path, "w")` would give it (0o666 less the umask; an existing file's mode
    is kept), not mkstemp's private 0o600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_MARK}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def genzoo_home() -> Path:
    """genzoo's per-user folder: $GENZOO_HOME, else ~/.cache/genzoo (folder caches, user classifiers)."""
    env = os.environ.get("GENZOO_HOME")
    return Path(env).expanduser() if env else Path("~/.cache/genzoo").expanduser()


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
