"""Domain classifiers: small CNNs trained by genzoo itself, the feature extractors of domain FID/KID,
precision/recall and mode coverage (Inception weights cannot be fetched offline and do not suit 28x28 digits).

    get_classifier("mnist")            # the shipped weights (also for "mnist-mini"), in eval mode
    get_classifier("fashion-mnist")
    train_classifier("mnist", epochs=8)  # how those weights were made (scripts/train_classifiers.py)
    train_user_classifier("folder:~/pics")  # `genzoo classifier train DATA`: any labelled dataset, stored in
                                            # $GENZOO_HOME/classifiers/<key>/ where evaluate finds it

A classifier is not a generative model, so it is trained here with a plain loop, not genzoo's engine.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WEIGHTS_DIR = Path(__file__).with_name("weights")
# dataset name -> the classifier (weights file stem) that measures it
CLASSIFIER_FOR = {"mnist": "mnist", "mnist-mini": "mnist", "fashion-mnist": "fashion-mnist",
                  "digits28": "digits28", "thick-mnist": "thick-mnist"}  # the last two: CycleGAN's domains
CLASSES = {"mnist": [str(i) for i in range(10)], "digits28": [str(i) for i in range(10)],
           "thick-mnist": [str(i) for i in range(10)],
           "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                             "Sneaker", "Bag", "Ankle boot"]}


class DomainClassifier(nn.Module):
    """Three 3x3 conv blocks (conv, batch norm, ReLU, 2x2 max pool) and a two-layer head; for (C, H, W) images:

        (N,C,H,W) -> (N,w,H/2,W/2) -> (N,2w,H/4,W/4) -> (N,4w,H/8,W/8) -> flatten -> (N,hidden) -> (N,classes)

    (1x28x28: 28 -> 14 -> 7 -> 3, flatten 36w.) `features` is the penultimate layer (after its ReLU), the
    embedding used by domain FID. Inputs are float images in [0, 1] shaped (N, C, H, W) = `image_shape`.
    """

    def __init__(self, name: str, width: int = 16, hidden: int = 128, num_classes: int = 10,
                 dropout: float = 0.3, image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.name = name
        self.width, self.hidden, self.num_classes = width, hidden, num_classes
        self.image_shape = tuple(int(v) for v in image_shape)
        c_in, h, w = self.image_shape
        if h < 8 or w < 8:
            raise ValueError(f"the domain classifier needs images of at least 8x8 pixels, got {h}x{w}")
        layers: list[nn.Module] = []
        for c_out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.Flatten())  # (N, 4w * (H//8) * (W//8))
        self.embed = nn.Sequential(nn.Linear(4 * width * (h // 8) * (w // 8), hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def _check(self, x01: Tensor) -> Tensor:
        if x01.ndim != 4 or tuple(x01.shape[1:]) != self.image_shape:
            raise ValueError(f"the domain classifier takes images shaped (N, {', '.join(map(str, self.image_shape))}), "
                             f"got {tuple(x01.shape)}")
        if not x01.is_floating_point():
            raise ValueError(f"the domain classifier takes float images in [0, 1], got dtype {x01.dtype}")
        return (x01 - 0.5) / 0.5

    def features(self, x01: Tensor) -> Tensor:
        """Penultimate-layer embedding, (N, hidden)."""
        return self.embed(self.body(self._check(x01)))

    def logits(self, x01: Tensor) -> Tensor:
        """Class logits, (N, num_classes)."""
        return self.head(self.features(x01))

    def probs(self, x01: Tensor) -> Tensor:
        """Class probabilities p(y|x) = softmax(logits), (N, num_classes)."""
        return self.logits(x01).softmax(-1)

    def forward(self, x01: Tensor) -> Tensor:
        return self.logits(x01)


def classifier_name(dataset: str) -> str:
    """The shipped classifier that measures `dataset` (e.g. mnist-mini -> mnist)."""
    if dataset not in CLASSIFIER_FOR:
        raise ValueError(f"no shipped domain classifier for dataset {dataset!r}; shipped: "
                         f"{', '.join(sorted(CLASSIFIER_FOR))}; and none of yours in {user_classifier_dir(dataset)}. "
                         f"Train one with `genzoo classifier train {dataset}`, or pass your own feature extractor "
                         f"(any torch module mapping images in [0, 1] to features)")
    return CLASSIFIER_FOR[dataset]


# ---- the user's own classifiers ($GENZOO_HOME/classifiers/<key>/) ----------------------------------------
USER_WEIGHTS, USER_INFO = "classifier.safetensors", "classifier.json"


def dataset_key(dataset: str) -> str:
    """A folder name for `dataset`: the name itself for named sets; for folder:PATH the folder's name plus a
    hash of its absolute path (two folders called `pics` do not collide)."""
    import hashlib
    import re
    if dataset.startswith("folder:"):
        path = Path(dataset[len("folder:"):]).expanduser().resolve()
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name)[:40] or "root"
        return f"folder-{slug}-{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset)


def user_classifier_dir(dataset: str) -> Path:
    from .._io import genzoo_home
    return genzoo_home() / "classifiers" / dataset_key(dataset)


def find_classifier(dataset: str) -> DomainClassifier | None:
    """The extractor `evaluate` uses for `dataset`: the shipped classifier when genzoo ships one, else the one
    `genzoo classifier train DATASET` stored, else None."""
    if dataset in CLASSIFIER_FOR:
        return get_classifier(dataset)
    if (user_classifier_dir(dataset) / USER_WEIGHTS).exists():
        return load_user_classifier(dataset)
    return None


def load_user_classifier(dataset: str) -> DomainClassifier:
    """The classifier `genzoo classifier train DATASET` stored, named `DATASET (yours, test accuracy A)`."""
    from .._io import read_json
    from ..train.rundir import load_weights
    folder = user_classifier_dir(dataset)
    path, info_path = folder / USER_WEIGHTS, folder / USER_INFO
    if not path.exists():
        raise FileNotFoundError(f"{path}: no classifier of yours for {dataset!r}; train one with "
                                f"`genzoo classifier train {dataset}`")
    info = read_json(info_path)
    model = DomainClassifier(f"{dataset} (yours, test accuracy {info['test_accuracy']:.4f})",
                             width=int(info["width"]), hidden=int(info["hidden"]),
                             num_classes=int(info["num_classes"]), image_shape=tuple(info["image_shape"]))
    from safetensors.torch import load_file
    try:
        state = load_file(str(path))
    except Exception as e:
        raise ValueError(f"{path}: cannot read the classifier weights ({e})") from None
    load_weights(model, state, path, info_path)
    model.info = info
    return model.eval().requires_grad_(False)


def train_user_classifier(dataset: str, out: str | Path | None = None, *, root: str | Path | None = None,
                          log: Any = print, **recipe: Any) -> tuple[DomainClassifier, dict[str, Any], Path]:
    """`genzoo classifier train DATA`: the shipped recipe (train_classifier) on any labelled dataset, stored
    as `out`/classifier.safetensors + classifier.json (dataset, classes, image shape, recipe, test accuracy);
    `out` defaults to $GENZOO_HOME/classifiers/<key>/, where `evaluate` finds it for that dataset."""
    from .._io import write_json
    model, report = train_classifier(dataset, root=root, log=log, **recipe)
    folder = Path(out) if out is not None else user_classifier_dir(dataset)
    save_classifier(model, folder / USER_WEIGHTS, report)
    write_json(folder / USER_INFO, report)
    model.name = f"{dataset} (yours, test accuracy {report['test_accuracy']:.4f})"
    return model, report, folder


def get_classifier(dataset: str) -> DomainClassifier:
    """The shipped domain classifier for `dataset` ("mnist", "mnist-mini" or "fashion-mnist"), loaded from
    genzoo/evaluate/weights/NAME.safetensors, in eval mode with gradients off. Each call returns a new copy."""
    from safetensors import safe_open

    name = classifier_name(dataset)
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path}: classifier weights missing; run scripts/train_classifiers.py")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}
    shape = tuple(_from_meta(meta["image_shape"])) if "image_shape" in meta else (1, 28, 28)
    model = DomainClassifier(name, width=int(meta.get("width", 16)), hidden=int(meta.get("hidden", 128)),
                             num_classes=int(meta.get("num_classes", 10)), image_shape=shape)
    model.load_state_dict(state)
    model.info = {k: _from_meta(v) for k, v in meta.items()}  # the training report (recipe, test accuracy)
    return model.eval().requires_grad_(False)


def _from_meta(v: str) -> Any:
    try:
        return json.loads(v)
    except ValueError:
        return v


def _augment(x: Tensor, shift: int, flip: bool, g: torch.Generator) -> Tensor:
    """Random integer translation by up to `shift` pixels per image (zero fill), and a random horizontal flip
    when `flip`. x: (N, C, H, W) images in [0, 1] (0 = background)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))  # (N, C, H+2s, W+2s)
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (N, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (N, 1, W)
    out = padded.permute(0, 2, 3, 1)[torch.arange(n)[:, None, None], rows, cols]  # (N, H, W, C)
    out = out.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
    if flip:
        mask = torch.rand(n, generator=g) < 0.5
        out[mask] = out[mask].flip(-1)
    return out


@torch.no_grad()
def accuracy(model: nn.Module, x_uint8: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of a classifier (logits from float images in [0, 1]) on uint8 images."""
    model.eval()
    correct = 0
    for i in range(0, len(x_uint8), batch_size):
        logits = model(x_uint8[i:i + batch_size].float() / 255)
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / len(x_uint8)


def train_classifier(dataset: str, *, epochs: int = 8, batch_size: int = 128, lr: float = 2e-3,
                     weight_decay: float = 1e-4, width: int = 16, hidden: int = 128, shift: int = 2,
                     flip: bool | None = None, seed: int = 0, root: str | Path | None = None,
                     threads: int | None = 1, out: str | Path | None = None, image_size: int | None = None,
                     log: Any = print) -> tuple[DomainClassifier, dict[str, Any]]:
    """Train a domain classifier on the train split of `dataset` ("mnist" or "fashion-mnist") and measure it
    on the test split. AdamW with a cosine learning-rate schedule to 0, cross-entropy, random shifts of up to
    `shift` pixels (and horizontal flips for Fashion-MNIST unless `flip=False`). Seeded: same seed, same
    weights on CPU. With `out` the weights are written there (safetensors, with the recipe and the test
    accuracy in the metadata). Returns (model in eval mode, report dict).
    """
    from .. import __version__
    from .. import data as gdata

    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs={epochs}, batch_size={batch_size}: expected integers >= 1")
    opts: dict[str, Any] = {"root": root} if root is not None and not dataset.startswith("folder:") else {}
    if image_size is not None:
        if not dataset.startswith("folder:"):
            raise ValueError(f"image_size={image_size}: only image folders (folder:PATH) are resized")
        opts["size"] = image_size
    train, test = gdata.load(dataset, "train", **opts), gdata.load(dataset, "test", **opts)
    if train.y is None or not train.classes:
        raise ValueError(f"{dataset}: a classifier needs labels, and this dataset has none (for a folder: one "
                         f"sub-folder per class)")
    if test.y is None or len(test) == 0:
        raise ValueError(f"{dataset}: no labelled test split to measure the classifier on")
    classes = CLASSES.get(dataset) or list(train.classes)
    if threads:
        torch.set_num_threads(threads)
    # horizontal flips: clothing and colour photographs are left-right symmetric, digits are not
    flip = (dataset == "fashion-mnist" or train.shape[0] == 3) if flip is None else flip
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = DomainClassifier(dataset, width=width, hidden=hidden, num_classes=len(classes),
                             image_shape=train.shape)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(train) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    t0 = time.process_time()
    for epoch in range(epochs):
        model.train()
        total, seen = 0.0, 0
        for xb, yb in train.batches(batch_size, shuffle=True, generator=g):
            x = _augment(xb.float() / 255, shift, flip, g) if shift or flip else xb.float() / 255
            loss = F.cross_entropy(model(x), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, seen = total + loss.item() * len(xb), seen + len(xb)
        acc = accuracy(model, test.x, test.y)
        log(f"{dataset} epoch {epoch + 1}/{epochs}: train loss {total / seen:.4f}, test accuracy {acc:.4f}, "
            f"{time.process_time() - t0:.0f} CPU s")
    cpu = time.process_time() - t0
    report = {"dataset": dataset, "test_accuracy": acc, "train_seconds_cpu": round(cpu, 1), "epochs": epochs,
              "recipe": dict(batch_size=batch_size, lr=lr, weight_decay=weight_decay, shift=shift, flip=flip,
                             seed=seed, threads=threads, optimizer="adamw", schedule="cosine"),
              "width": width, "hidden": hidden, "num_classes": model.num_classes, "genzoo_version": __version__,
              "torch_version": torch.__version__, "n_train": len(train), "n_test": len(test),
              "image_shape": list(train.shape), "classes": list(classes)}
    model.eval().requires_grad_(False)
    if out is not None:
        save_classifier(model, out, report)
    return model, report


def save_classifier(model: DomainClassifier, path: str | Path, report: dict[str, Any]) -> Path:
    """Write the weights as safetensors with the report (recipe, accuracy) as string metadata, atomically."""
    from safetensors.torch import save

    from .._io import write_bytes

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in report.items()}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return write_bytes(path, save(state, metadata=meta))


__all__ = ["DomainClassifier", "get_classifier", "train_classifier", "classifier_name", "accuracy",
           "train_user_classifier", "load_user_classifier", "find_classifier", "user_classifier_dir", "dataset_key",
           "save_classifier", "CLASSES", "WEIGHTS_DIR"]
