"""Domain classifiers: small CNNs trained by genzoo itself, the feature extractors of domain FID/KID,
precision/recall and mode coverage (Inception weights cannot be fetched offline and do not suit 28x28 digits).

    get_classifier("mnist")            # the shipped weights (also for "mnist-mini"), in eval mode
    get_classifier("fashion-mnist")
    train_classifier("mnist", epochs=8)  # how those weights were made (scripts/train_classifiers.py)

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
    """Three 3x3 conv blocks (conv, batch norm, ReLU, 2x2 max pool) and a two-layer head:

        (N,1,28,28) -> (N,w,14,14) -> (N,2w,7,7) -> (N,4w,3,3) -> flatten (N,36w) -> (N,hidden) -> (N,classes)

    `features` is the penultimate layer (after its ReLU), the embedding used by domain FID. Inputs are float
    images in [0, 1] shaped (N, 1, 28, 28).
    """

    def __init__(self, name: str, width: int = 16, hidden: int = 128, num_classes: int = 10,
                 dropout: float = 0.3):
        super().__init__()
        self.name = name
        self.width, self.hidden, self.num_classes = width, hidden, num_classes
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.Flatten())  # (N, 4w * 3 * 3)
        self.embed = nn.Sequential(nn.Linear(4 * width * 9, hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    @staticmethod
    def _check(x01: Tensor) -> Tensor:
        if x01.ndim != 4 or tuple(x01.shape[1:]) != (1, 28, 28):
            raise ValueError(f"the domain classifier takes images shaped (N, 1, 28, 28), got {tuple(x01.shape)}")
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
                         f"{', '.join(sorted(CLASSIFIER_FOR))}. Pass your own feature extractor "
                         f"(any torch module mapping images in [0, 1] to features) instead")
    return CLASSIFIER_FOR[dataset]


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
    model = DomainClassifier(name, width=int(meta.get("width", 16)), hidden=int(meta.get("hidden", 128)),
                             num_classes=int(meta.get("num_classes", 10)))
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
    when `flip`. x: (N, 1, 28, 28) images in [0, 1] (0 = background)."""
    n = len(x)
    padded = F.pad(x, (shift, shift, shift, shift))  # (N, 1, 28+2s, 28+2s)
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(28))[:, :, None]  # (N, 28, 1)
    cols = (dx[:, None] + torch.arange(28))[:, None, :]  # (N, 1, 28)
    out = padded[torch.arange(n)[:, None, None], 0, rows, cols][:, None]  # (N, 1, 28, 28)
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
                     threads: int | None = 1, out: str | Path | None = None,
                     log: Any = print) -> tuple[DomainClassifier, dict[str, Any]]:
    """Train a domain classifier on the train split of `dataset` ("mnist" or "fashion-mnist") and measure it
    on the test split. AdamW with a cosine learning-rate schedule to 0, cross-entropy, random shifts of up to
    `shift` pixels (and horizontal flips for Fashion-MNIST unless `flip=False`). Seeded: same seed, same
    weights on CPU. With `out` the weights are written there (safetensors, with the recipe and the test
    accuracy in the metadata). Returns (model in eval mode, report dict).
    """
    from .. import __version__
    from .. import data as gdata

    if dataset not in CLASSES:
        raise ValueError(f"train_classifier: dataset {dataset!r} not supported; expected one of {sorted(CLASSES)}")
    if threads:
        torch.set_num_threads(threads)
    flip = (dataset == "fashion-mnist") if flip is None else flip
    train, test = gdata.load(dataset, "train", root=root), gdata.load(dataset, "test", root=root)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = DomainClassifier(dataset, width=width, hidden=hidden, num_classes=len(CLASSES[dataset]))
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
              "torch_version": torch.__version__, "n_train": len(train), "n_test": len(test)}
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
           "save_classifier", "CLASSES", "WEIGHTS_DIR"]
