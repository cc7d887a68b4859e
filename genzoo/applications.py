"""What autoencoders are used for: denoising, anomaly detection, features, pretraining, and PCA.

    denoise(model, x, "gaussian:0.5")           clean | noisy | denoised, PSNR/SSIM of noisy and denoised
    anomaly_task("mnist", normal=[3], ...)      the one-class protocol: AUROC and average precision
    encode_dataset(model, ds) + linear_probe()  latent codes as features, logistic-regression accuracy
    finetune(model, train, test, labels=100)    pretrained encoder vs the same classifier from scratch
    linear_pca_check("digits", k=8)             a linear AE trained by SGD vs scikit-learn's PCA

Everything trains through genzoo's one engine (`genzoo.train`); nothing here has its own training loop.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import data as gd
from .evaluate.image_metrics import psnr, ssim
from .models.autoencoder import corrupt, parse_noise
from .models.base import Batch, GenerativeModel, ModelConfig, Phase


# ---- codes and reconstruction errors -----------------------------------------------------------------
@torch.no_grad()
def encode_dataset(model: GenerativeModel, ds: gd.Dataset, batch_size: int = 500) -> Tensor:
    """One latent point per image (`model.code`: an AE's code, a VAE's posterior mean): (N, k) float32."""
    model.eval()
    return torch.cat([model.code(model.prepare(x.to(model.device))).flatten(1).float().cpu()
                      for x, _ in ds.batches(batch_size)])


@torch.no_grad()
def reconstruction_errors(model: GenerativeModel, ds: gd.Dataset, batch_size: int = 500) -> Tensor:
    """Per-image mean squared error between each image and its reconstruction, both in [0, 1]: (N,)."""
    if not model.can("reconstruct"):
        raise ValueError(f"a {model.model_type} model cannot reconstruct, so it cannot score images")
    model.eval()
    out = []
    for x, _ in ds.batches(batch_size):
        xin = model.prepare(x.to(model.device))
        r = model.to_unit(model.reconstruct(xin))
        out.append((r - model.to_unit(xin)).pow(2).flatten(1).mean(1).cpu())  # (B,)
    return torch.cat(out)


def mean_image_mse(train: gd.Dataset, test: gd.Dataset) -> float:
    """The baseline every autoencoder must beat: predict the training mean image for every test image;
    its per-pixel MSE on the test split (MNIST: 0.0675)."""
    mean = train.x.double().mean(0) / 255
    return float((test.x.double() / 255 - mean).pow(2).mean())


# ---- denoising -----------------------------------------------------------------------------------------
@dataclass
class Denoised:
    clean: Tensor  # (N, C, H, W) in [0, 1]
    noisy: Tensor  # the corrupted input, clamped to [0, 1] for display and metrics
    denoised: Tensor  # the model's reconstruction of the (unclamped) corrupted input
    metrics: dict[str, float]  # psnr/ssim of noisy and of denoised against clean (means over images)


@torch.no_grad()
def denoise(model: GenerativeModel, x: Tensor, noise: str = "gaussian:0.5", seed: int = 0) -> Denoised:
    """Corrupt images `x` (uint8 or float in [0, 1]) with `noise` ('gaussian:SIGMA', 'masking:NU',
    'salt-pepper:NU'), reconstruct them, and measure PSNR and SSIM of the noisy and denoised images against
    the clean ones."""
    if not model.can("reconstruct"):
        raise ValueError(f"a {model.model_type} model cannot reconstruct, so it cannot denoise")
    kind, level = parse_noise(noise)
    model.eval()
    clean = model.to_unit(model.prepare(x.to(model.device)))
    noisy = corrupt(clean, kind, level, generator=torch.Generator().manual_seed(seed))
    lo, hi = model.input_range
    denoised = model.to_unit(model.reconstruct(noisy * (hi - lo) + lo))
    noisy = noisy.clamp(0, 1)
    metrics = {f"{m}_{name}": float(fn(img, clean).mean())
               for m, fn in (("psnr", psnr), ("ssim", ssim)) for name, img in (("noisy", noisy), ("denoised", denoised))}
    return Denoised(clean.cpu(), noisy.cpu(), denoised.cpu(), metrics)


# ---- anomaly detection: the one-class protocol -----------------------------------------------------------
def anomaly_metrics(scores: Tensor | np.ndarray, is_anomaly: Tensor | np.ndarray) -> dict[str, float]:
    """AUROC and average precision of `scores` (higher = more anomalous) against binary labels."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(is_anomaly).astype(int)
    if y.min() == y.max():
        raise ValueError("anomaly metrics need both normal and anomalous test images")
    return {"auroc": float(roc_auc_score(y, s)), "ap": float(average_precision_score(y, s))}


def _class_list(normal: Iterable[int], ds: gd.Dataset) -> list[int]:
    normal = sorted(set(int(c) for c in normal))
    if ds.y is None:
        raise ValueError(f"{ds.name} has no labels; the one-class protocol needs classes")
    k = int(ds.y.max()) + 1
    bad = [c for c in normal if not 0 <= c < k]
    if not normal or bad or len(normal) == k:
        raise ValueError(f"normal classes {normal}: expected some, not all, of the classes 0..{k - 1} of {ds.name}")
    return normal


def score_anomalies(model: GenerativeModel, test: gd.Dataset, normal: Iterable[int]) -> dict[str, float]:
    """Score every test image by its reconstruction error; AUROC/AP with the classes not in `normal` as
    anomalies."""
    normal = _class_list(normal, test)
    is_anomaly = ~torch.isin(test.y, torch.tensor(normal))
    return {**anomaly_metrics(reconstruction_errors(model, test), is_anomaly),
            "n_test": len(test), "anomaly_fraction": float(is_anomaly.float().mean())}


def anomaly_task(data: str, normal: Iterable[int], model: str = "ae", preset: str | None = "conv",
                 settings: dict[str, Any] | None = None, epochs: int | None = 20, steps: int | None = None,
                 seed: int = 0, root: str | None = None, out: str | None = None) -> dict[str, Any]:
    """One one-class task: train `model` on the training images of the `normal` classes only, then score
    every test image. Returns auroc, ap, the classes and the process CPU seconds it took."""
    from .train import train as train_model
    t0 = time.process_time()
    train, test = gd.load(data, "train", root=root), gd.load(data, "test", root=root)
    normal = _class_list(normal, train)
    train_normal = train.subset(torch.isin(train.y, torch.tensor(normal)))
    s = {"progress": False, "validate": False, "sample_every": 0, "log_every": 100, **(settings or {})}
    kw = {"steps": steps, "epochs": None} if steps is not None else {"epochs": epochs}
    m = train_model(model, train_normal, out=out, settings=s, preset=preset, seed=seed, **kw)
    res = score_anomalies(m, test, normal)
    return {"normal": normal, **res, "cpu_s": round(time.process_time() - t0, 1)}


def anomaly_table(data: str, classes: Iterable[int] | None = None,
                  on_row: Callable[[dict[str, Any]], None] | None = None, **task_kw: Any) -> dict[str, Any]:
    """The one-class table: one task per class (that class normal, the others anomalous) and the means.
    `on_row` is called with each finished row (for progress output)."""
    classes = list(range(10)) if classes is None else list(classes)
    rows = []
    for c in classes:
        rows.append({"class": c, **anomaly_task(data, [c], **task_kw)})
        if on_row is not None:
            on_row(rows[-1])
    return {"data": data, "rows": rows, "mean_auroc": float(np.mean([r["auroc"] for r in rows])),
            "mean_ap": float(np.mean([r["ap"] for r in rows])), "cpu_s": round(sum(r["cpu_s"] for r in rows), 1)}


# ---- features: linear probe ------------------------------------------------------------------------------
def linear_probe(train_codes: Any, train_y: Any, test_codes: Any, test_y: Any, *, max_iter: int = 1000,
                 C: float = 1.0) -> float:
    """Test accuracy of a logistic regression (scikit-learn, standardised inputs) trained on the codes of the
    training images: how linearly the classes can be read off a representation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    Xtr, Xte = (np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in (train_codes, test_codes))
    ytr, yte = np.asarray(train_y), np.asarray(test_y)
    if len(Xtr) != len(ytr) or len(Xte) != len(yte):
        raise ValueError(f"codes and labels differ in length: train {len(Xtr)} vs {len(ytr)}, "
                         f"test {len(Xte)} vs {len(yte)}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=C))
    clf.fit(Xtr, ytr)
    return float(clf.score(Xte, yte))


# ---- unsupervised pretraining, then fine-tuning ----------------------------------------------------------
def balanced_labels(ds: gd.Dataset, n: int, seed: int = 0) -> gd.Dataset:
    """n labelled images, n / classes of each class, chosen with `seed` (n must be a multiple of the number
    of classes)."""
    if ds.y is None:
        raise ValueError(f"{ds.name} has no labels")
    k = int(ds.y.max()) + 1
    if n < k or n % k:
        raise ValueError(f"labels={n}: expected a positive multiple of the {k} classes of {ds.name}")
    g = torch.Generator().manual_seed(seed)
    idx = []
    for c in range(k):
        members = torch.nonzero(ds.y == c).flatten()
        if len(members) < n // k:
            raise ValueError(f"{ds.name} has only {len(members)} images of class {c}; labels={n} needs {n // k}")
        idx.append(members[torch.randperm(len(members), generator=g)[: n // k]])
    return ds.subset(torch.cat(idx))


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Translate each image by a random integer offset in [-max_shift, max_shift]^2, filling with zeros."""
    if max_shift <= 0:
        return x
    b, c, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p))  # (B, C, H + 2p, W + 2p)
    off = torch.randint(0, 2 * p + 1, (b, 2), generator=generator)
    rows = (off[:, 0, None] + torch.arange(h)).to(x.device)  # (B, H)
    cols = (off[:, 1, None] + torch.arange(w)).to(x.device)  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class ClassifierConfig(ModelConfig):
    """A classifier on top of an autoencoder's encoder (not a registered generative model: it is built by
    `finetune` around a given encoder). `shift`: random translation augmentation in pixels."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    shift: int = 2
    dropout: float = 0.0
    freeze: bool = False  # train only the linear head


class EncoderClassifier(GenerativeModel):
    """p(y | x) = softmax(W f(x) + b), f an autoencoder's encoder (its code h, before the decoder)."""

    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig, autoencoder: GenerativeModel):
        super().__init__(config)
        self.ae = autoencoder
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(autoencoder.latent_dim, config.num_classes)

    def logits(self, x: Tensor) -> Tensor:
        return self.head(self.drop(self.ae.code(x)))  # (B, classes)

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy -1/B sum_b log p(y_b | x_b) on shifted copies of the labelled images."""
        x = random_shift(batch.x, self.config.shift) if self.training else batch.x
        logits = self.logits(x)
        ce = F.cross_entropy(logits, batch.y)
        return ce, {"ce": ce, "acc": (logits.argmax(1) == batch.y).float().mean()}

    def phases(self) -> list[Phase]:
        c = self.config
        params = list(self.head.parameters()) if c.freeze else list(self.parameters())
        return [Phase("classifier", params, self.loss, {"name": "adam", "lr": c.lr, "weight_decay": c.weight_decay})]

    @torch.no_grad()
    def error(self, ds: gd.Dataset, batch_size: int = 1000) -> float:
        """Test error rate on `ds`."""
        self.eval()
        wrong = sum(int((self.logits(self.prepare(x.to(self.device))).argmax(1) != y.to(self.device)).sum())
                    for x, y in ds.batches(batch_size))
        return wrong / len(ds)


def finetune(pretrained: GenerativeModel, train: gd.Dataset, test: gd.Dataset, labels: int = 100, seed: int = 0,
             steps: int = 1500, batch_size: int = 100, **classifier_cfg: Any) -> dict[str, Any]:
    """Train the classifier `f -> linear` on `labels` balanced labelled images twice, from the pretrained
    encoder (fine-tuning all of it, or only the head with freeze=True) and from a fresh initialisation of the
    same architecture (same seed for the head, same steps), and report both test errors."""
    from .train import train as train_model
    if not pretrained.can("encode"):
        raise ValueError(f"a {pretrained.model_type} model has no encoder to fine-tune")
    labelled = balanced_labels(train, labels, seed)
    cfg = ClassifierConfig(image_shape=pretrained.config.image_shape, num_classes=int(train.y.max()) + 1,
                           **classifier_cfg)
    s = {"progress": False, "validate": False, "sample_every": 0, "log_every": 100}
    bs = min(batch_size, labels)
    result: dict[str, Any] = {"labels": labels, "seed": seed, "steps": steps}
    for name in ("pretrained", "scratch"):
        t0 = time.process_time()
        ae = copy.deepcopy(pretrained).cpu()
        if name == "scratch":
            torch.manual_seed(seed)
            ae = type(pretrained)(pretrained.config)
        ae.fold_ema()  # fine-tune the averaged weights, if any, and evaluate the weights being trained
        torch.manual_seed(seed + 1)
        clf = EncoderClassifier(cfg, ae)
        train_model(clf, labelled, settings=s, steps=steps, epochs=None, batch_size=bs, seed=seed)
        result[f"{name}_error"] = clf.error(test)
        result[f"{name}_cpu_s"] = round(time.process_time() - t0, 1)
    return result


# ---- linear autoencoder vs PCA ---------------------------------------------------------------------------
def principal_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Principal angles (degrees, ascending) between the column spans of a (D, k) and b (D, l), min(k, l) of
    them (Bjorck & Golub 1973): with orthonormal bases Q_a, Q_b (l <= k after swapping), cos theta_i are the
    singular values of Q_a^T Q_b and sin theta_i those of Q_b - Q_a Q_a^T Q_b; small angles are taken from
    the sines, where arccos loses precision (as scipy.linalg.subspace_angles does)."""
    qa, _ = np.linalg.qr(np.asarray(a, dtype=np.float64))
    qb, _ = np.linalg.qr(np.asarray(b, dtype=np.float64))
    if qa.shape[1] < qb.shape[1]:
        qa, qb = qb, qa
    m = qa.T @ qb  # (k, l)
    cos = np.linalg.svd(m, compute_uv=False).clip(-1, 1)  # descending -> angles ascending
    sin = np.linalg.svd(qb - qa @ m, compute_uv=False).clip(-1, 1)[::-1]  # ascending
    theta = np.where(cos ** 2 >= 0.5, np.arcsin(sin), np.arccos(cos))
    return np.degrees(theta)


def decoder_basis(model: GenerativeModel) -> np.ndarray:
    """The (D, k) matrix whose columns span a linear decoder's image: W_dec (or W_enc^T when tied)."""
    c = model.config
    if getattr(c, "arch", None) != "mlp" or len(getattr(c, "hidden", (1,))) != 0:
        raise ValueError("decoder_basis needs a one-layer (linear) MLP autoencoder: arch=mlp, hidden=()")
    w = model.encoder[1][0].weight.T if c.tied else model.averaged(model.decoder)[0][0].weight  # (D, k); EMA copy if on
    return w.detach().cpu().double().numpy()


def train_linear_ae(train: gd.Dataset, k: int, epochs: int = 500, lr: float = 1e-2, batch_size: int = 128,
                    seed: int = 0, settings: dict[str, Any] | None = None) -> GenerativeModel:
    """A linear autoencoder x_hat = W_d (W_e x + b_e) + b_d (`ae`, arch=mlp, hidden=(), linear code, mse),
    trained by Adam with a cosine learning-rate schedule through genzoo's engine."""
    from .train import train as train_model
    s = {"arch": "mlp", "hidden": (), "latent_dim": k, "latent_activation": "linear", "loss": "mse", "lr": lr,
         "progress": False, "validate": False, "sample_every": 0, "log_every": 100,
         "lr_schedule": "cosine", **(settings or {})}
    return train_model("ae", train, settings=s, epochs=epochs, batch_size=batch_size, seed=seed)


def compare_with_pca(model: GenerativeModel, ds: gd.Dataset) -> dict[str, Any]:
    """Per-pixel MSE of a linear AE and of scikit-learn's PCA with the same k on `ds` (both unclamped), and
    the principal angles between the decoder's column span and the top-k principal directions."""
    from sklearn.decomposition import PCA
    k = model.latent_dim
    X = ds.x.flatten(1).double().numpy() / 255  # (N, D)
    with torch.no_grad():
        x = model.prepare(ds.x)
        ae_mse = float((model.reconstruct(x) - x).double().pow(2).mean())
    pca = PCA(n_components=k).fit(X)
    pca_mse = float(((pca.inverse_transform(pca.transform(X)) - X) ** 2).mean())
    angles = principal_angles(decoder_basis(model), pca.components_.T)
    return {"k": k, "ae_mse": ae_mse, "pca_mse": pca_mse, "mse_ratio": ae_mse / pca_mse,
            "max_angle_deg": float(angles.max()), "angles_deg": [round(float(a), 3) for a in angles]}


def linear_pca_check(data: str = "digits", k: int = 10, epochs: int = 500, lr: float = 1e-2,
                     batch_size: int = 128, seed: int = 0, root: str | None = None,
                     settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Baldi & Hornik (1989): a linear autoencoder trained on MSE spans the top-k principal subspace.
    Trains the linear AE on the training split, then `compare_with_pca` on the same images."""
    t0 = time.process_time()
    train = gd.load(data, "train", root=root)
    model = train_linear_ae(train, k, epochs, lr, batch_size, seed, settings)
    return {"data": data, "epochs": epochs, **compare_with_pca(model, train),
            "cpu_s": round(time.process_time() - t0, 1)}


# ---- what the code units draw ----------------------------------------------------------------------------
@torch.no_grad()
def unit_images(model: GenerativeModel, units: int | None = None) -> Tensor:
    """What each code unit draws: g(e_j) - g(0) before the output nonlinearity, scaled to [0, 1] per image.
    For a one-layer decoder this is column j of the decoder's weight matrix ("learned features")."""
    if not (model.can("decode") and hasattr(model, "decode_logits")):
        raise ValueError(f"a {model.model_type} model has no decoder to visualise")
    model.eval()
    k = model.latent_dim if units is None else min(units, model.latent_dim)
    eye = torch.eye(model.latent_dim, device=model.device)[:k]
    w = model.decode_logits(eye) - model.decode_logits(torch.zeros_like(eye))  # (k, C, H, W)
    flat = w.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).reshape(w.shape).cpu()
