"""Download datasets from their public mirrors, verify checksums, write `.part` then rename.

Offline (or when a mirror fails) the error says which files to place where. Checksums of MNIST and
Fashion-MNIST are md5s of the *uncompressed* IDX files, so recompressed copies verify too.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .idx import DataError, read_bytes


@dataclass(frozen=True)
class Remote:
    mirrors: tuple[str, ...]
    files: dict[str, str]  # file name -> md5 (of the uncompressed content for .gz files)
    archive: bool = False  # a tar.gz to extract after checking


REMOTES: dict[str, Remote] = {
    "mnist": Remote(
        ("https://ossci-datasets.s3.amazonaws.com/mnist", "https://storage.googleapis.com/cvdf-datasets/mnist"),
        {
            "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
        },
    ),
    "fashion-mnist": Remote(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",),
        {
            "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
        },
    ),
    "cifar10": Remote(
        ("https://www.cs.toronto.edu/~kriz",),
        {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
        archive=True,
    ),
}


def md5_of(path: Path, uncompressed: bool) -> str:
    data = read_bytes(path) if uncompressed else Path(path).read_bytes()
    return hashlib.md5(data).hexdigest()


def fetch(name: str, root: str | os.PathLike, mirror: str | None = None, timeout: float = 60.0) -> list[Path]:
    """Download `name` into `root/name/`, verifying each file; return the paths. Files already present
    and verified are kept. `mirror` (or `$GENZOO_MIRROR`) replaces the public mirrors with a base URL
    serving `<mirror>/<name>/<file>`."""
    if name not in REMOTES:
        raise KeyError(f"dataset {name!r} cannot be downloaded; downloadable: {', '.join(REMOTES)}")
    remote = REMOTES[name]
    dest = Path(root) / name
    dest.mkdir(parents=True, exist_ok=True)
    mirror = mirror or os.environ.get("GENZOO_MIRROR")
    bases = (f"{mirror.rstrip('/')}/{name}",) if mirror else remote.mirrors
    written = []
    for fname, md5 in remote.files.items():
        target = dest / fname
        gz = fname.endswith(".gz") and not remote.archive
        if target.exists() and _matches(target, md5, gz):
            written.append(target)
            continue
        errors = []
        for base in bases:
            url = f"{base}/{fname}"
            part = target.with_name(target.name + ".part")
            try:
                _download(url, part, timeout)
                if not _matches(part, md5, gz):
                    raise DataError(f"checksum mismatch for {url} (expected md5 {md5})")
                os.replace(part, target)
                break
            except (urllib.error.URLError, OSError, DataError) as e:
                errors.append(f"{url}: {e}")
            finally:
                if part.exists():
                    part.unlink()
        else:
            raise DataError(
                f"could not download {fname} for {name}:\n  " + "\n  ".join(errors)
                + f"\nOffline? Place these files in {dest}/: {', '.join(remote.files)}"
            )
        written.append(target)
    if remote.archive:
        written = _extract(written[0], dest)
    return written


def _matches(path: Path, md5: str, uncompressed: bool) -> bool:
    try:
        return md5_of(path, uncompressed) == md5
    except DataError:
        return False


def _download(url: str, part: Path, timeout: float) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "genzoo"})
    with urllib.request.urlopen(req, timeout=timeout) as r, open(part, "wb") as f:
        shutil.copyfileobj(r, f, length=1 << 20)


def _extract(archive: Path, dest: Path) -> list[Path]:
    """Extract the members of a tar.gz (regular files only, no path escapes) into `dest`, atomically each."""
    out = []
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue
            target = dest / Path(m.name).name
            part = target.with_name(target.name + ".part")
            with tar.extractfile(m) as src, open(part, "wb") as f:  # type: ignore[union-attr]
                shutil.copyfileobj(src, f)
            os.replace(part, target)
            out.append(target)
    return out

