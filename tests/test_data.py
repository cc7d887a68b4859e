"""Data layer: real statistics of the shipped/real sets, bad input errors, folders, downloads."""
from __future__ import annotations

import gzip
import http.server
import shutil
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import genzoo.data as gd
from genzoo.data.fetch import fetch
from genzoo.data.idx import DataError, read_idx

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the well-known normalisation constants of MNIST's training set


def test_mnist_mini_is_real_balanced_mnist():
    tr, te = gd.load("mnist-mini", "train"), gd.load("mnist-mini", "test")
    assert tr.x.shape == (10_000, 1, 28, 28) and te.x.shape == (2_000, 1, 28, 28)
    assert tr.x.dtype == torch.uint8 and tr.classes == [str(i) for i in range(10)]
    assert torch.equal(tr.y.bincount(), torch.full((10,), 1000))
    assert torch.equal(te.y.bincount(), torch.full((10,), 200))
    # a real MNIST subset has MNIST's pixel statistics (class-balanced, so within a couple of percent)
    assert abs(tr.x.float().mean().item() / 255 - MNIST_MEAN) < 0.006
    assert abs(tr.x.float().std().item() / 255 - MNIST_STD) < 0.01


def test_digits_matches_scikit_learn():
    from sklearn.datasets import load_digits
    d = load_digits()
    tr, te = gd.load("digits", "train"), gd.load("digits", "test")
    assert len(tr) + len(te) == len(d.images) == 1797
    assert tr.shape == (1, 8, 8)
    total = torch.cat([tr.y, te.y]).bincount()
    assert torch.equal(total, torch.from_numpy(np.bincount(d.target)))
    assert tr.x.max() == 255


@pytest.mark.slow
def test_full_mnist_and_fashion_statistics(mnist_root):
    tr = gd.load("mnist", "train", root=mnist_root)
    te = gd.load("mnist", "test", root=mnist_root)
    assert len(tr) == 60_000 and len(te) == 10_000
    x = tr.x.float() / 255
    assert abs(x.mean().item() - MNIST_MEAN) < 5e-4 and abs(x.std().item() - MNIST_STD) < 5e-4
    assert tr.y.bincount()[1].item() == 6742  # the number of 1s in MNIST's training set
    f = gd.load("fashion-mnist", "test", root=mnist_root)
    assert len(f) == 10_000 and torch.equal(f.y.bincount(), torch.full((10,), 1000))


# ---- bad input --------------------------------------------------------------------------------------
def write_idx(path: Path, arr: np.ndarray, gz: bool = True, magic: bytes | None = None) -> Path:
    header = (magic or bytes([0, 0, 0x08, arr.ndim])) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_idx_set(folder: Path, n: int = 20, n_labels: int | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split in ("train", "t10k"):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n_labels or n,)))


def test_idx_round_trip(tmp_path):
    make_idx_set(tmp_path / "mnist")
    ds = gd.load("mnist", root=tmp_path)
    assert ds.x.shape == (20, 1, 28, 28) and ds.y.shape == (20,)


def test_truncated_gzip_names_file(tmp_path):
    make_idx_set(tmp_path / "mnist")
    p = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: truncated or corrupt gzip"):
        gd.load("mnist", root=tmp_path)


def test_corrupt_gzip_names_file(tmp_path):
    make_idx_set(tmp_path / "mnist")
    p = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    raw = bytearray(p.read_bytes())
    raw[20:40] = b"\xff" * 20
    p.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: truncated or corrupt gzip"):
        gd.load("mnist", root=tmp_path)


def test_wrong_magic_number(tmp_path):
    make_idx_set(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", np.zeros((20, 28, 28)), magic=b"\x12\x34\x08\x03")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: wrong magic number 12340803"):
        gd.load("mnist", root=tmp_path)


def test_truncated_idx_payload(tmp_path):
    make_idx_set(tmp_path / "mnist")
    p = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-100]))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: header says shape \(20, 28, 28\)"):
        gd.load("mnist", root=tmp_path)


def test_labels_do_not_match_images(tmp_path):
    make_idx_set(tmp_path / "mnist", n=20, n_labels=19)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: 19 labels do not match the 20 images"):
        gd.load("mnist", root=tmp_path)


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DataError, match=r"genzoo data fetch mnist.*" + str(tmp_path / "mnist")):
        gd.load("mnist", root=tmp_path)


def test_unknown_dataset_lists_names():
    with pytest.raises(KeyError, match="known: .*mnist-mini"):
        gd.load("nope")


def test_cifar10_binary_records(tmp_path):
    d = tmp_path / "cifar10"
    d.mkdir()
    rng = np.random.default_rng(0)
    rec = np.concatenate([rng.integers(0, 10, (5, 1)), rng.integers(0, 256, (5, 3072))], 1).astype(np.uint8)
    (d / "test_batch.bin").write_bytes(rec.tobytes())
    ds = gd.load("cifar10", "test", root=tmp_path)
    assert ds.x.shape == (5, 3, 32, 32)
    assert torch.equal(ds.y, torch.from_numpy(rec[:, 0].astype(np.int64)))
    assert torch.equal(ds.x[2, 1].flatten(), torch.from_numpy(rec[2, 1 + 1024: 1 + 2048]))  # green plane
    (d / "test_batch.bin").write_bytes(rec.tobytes()[:-7])
    with pytest.raises(DataError, match="test_batch.bin: .* not a whole number of 3073-byte"):
        gd.load("cifar10", "test", root=tmp_path)


# ---- folders ------------------------------------------------------------------------------------------
def make_folder(root: Path, classes=("cat", "dog"), n: int = 12, size=(10, 12), mode="L") -> None:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            shape = size if mode == "L" else (*size, 3)
            Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(root / c / f"{i}.png")


def test_folder_classes_and_size(tmp_path):
    make_folder(tmp_path / "imgs")
    tr = gd.load(f"folder:{tmp_path / 'imgs'}", "train")
    te = gd.load(f"folder:{tmp_path / 'imgs'}", "test")
    assert len(tr) + len(te) == 24 and len(tr) > len(te)
    assert tr.shape == (1, 10, 12) and tr.classes == ["cat", "dog"]
    assert set(tr.y.tolist()) <= {0, 1}
    small = gd.load(f"folder:{tmp_path / 'imgs'}", "train", size=8)
    assert small.shape == (1, 8, 8)


def test_folder_rgb_with_split_dirs(tmp_path):
    make_folder(tmp_path / "d" / "train", classes=("a",), n=3, mode="RGB")
    make_folder(tmp_path / "d" / "test", classes=("a",), n=2, mode="RGB")
    assert gd.load(f"folder:{tmp_path / 'd'}", "test").x.shape == (2, 3, 10, 12)


def test_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="empty: no PNG/JPEG images found"):
        gd.load(f"folder:{tmp_path / 'empty'}")


def test_folder_unreadable_image_names_file(tmp_path):
    make_folder(tmp_path / "imgs", classes=("a",), n=30)
    for p in (tmp_path / "imgs" / "a").glob("*.png"):
        p.write_bytes(b"not an image at all")
        break
    with pytest.raises(DataError, match=r"\.png: cannot read image"):
        gd.load(f"folder:{tmp_path / 'imgs'}", "train")
        gd.load(f"folder:{tmp_path / 'imgs'}", "test")


# ---- downloads ----------------------------------------------------------------------------------------
@pytest.fixture
def http_server(mnist_root):
    """Serve the real data folder on 127.0.0.1 (an ephemeral port); yields (base_url, state) where
    state["dir"] can point the server at another folder."""
    state = {"dir": str(mnist_root)}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=state["dir"], **kw)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", state
    srv.shutdown()
    srv.server_close()


def test_fetch_from_local_mirror_verifies_uncompressed_md5(tmp_path, http_server, mnist_root):
    url, _ = http_server
    files = fetch("mnist", tmp_path, mirror=url)
    assert sorted(p.name for p in files) == sorted(
        ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz"])
    assert not list(tmp_path.rglob("*.part"))
    assert len(gd.load("mnist", "test", root=tmp_path)) == 10_000


def test_fetch_rejects_corrupt_download_and_leaves_nothing(tmp_path, http_server, mnist_root):
    url, state = http_server
    bad = tmp_path / "mirror"
    shutil.copytree(Path(state["dir"]) / "mnist", bad / "mnist")
    p = bad / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(raw[:-1] + bytes([(raw[-1] + 1) % 256])))  # one label changed
    state["dir"] = str(bad)
    dest = tmp_path / "root"
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz.*checksum mismatch"):
        fetch("mnist", dest, mirror=url)
    assert not (dest / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list(dest.rglob("*.part"))


def test_fetch_offline_says_where_to_place_files(tmp_path):
    with pytest.raises(DataError, match=r"Offline\? Place these files in .*fashion-mnist/: train-images"):
        fetch("fashion-mnist", tmp_path, mirror="http://127.0.0.1:9", timeout=2)
    assert not list(tmp_path.rglob("*.part"))


def test_idx_header_whose_dimensions_overflow_names_the_file(tmp_path):
    """Four dimensions of 2^32 - 1: the product overflows int64 (numpy's np.prod wraps to a small number);
    the check uses exact integers and names the file."""
    import struct
    from genzoo.data.idx import DataError, read_idx
    p = tmp_path / "forged-idx3-ubyte"
    p.write_bytes(bytes([0, 0, 0x08, 4]) + struct.pack(">IIII", *([2 ** 32 - 1] * 4)) + b"\0" * 16)
    with pytest.raises(DataError, match=rf"{p}: header declares dimensions \(4294967295, 4294967295, "
                                        rf"4294967295, 4294967295\).*corrupt header"):
        read_idx(p)
    # a product that wraps exactly to the payload size under int64 arithmetic: 2^32 * 2^32 = 2^64 -> 0
    q = tmp_path / "wrap-idx2-ubyte"
    q.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">III", 2 ** 31, 2 ** 31, 4))
    with pytest.raises(DataError, match=str(q)):
        read_idx(q)
