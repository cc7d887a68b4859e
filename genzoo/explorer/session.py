"""What the explorer's routes compute: a loaded run (model in inference mode, its test set) and the latent map.

An `Explorer` is built once when the server starts and is read-only afterwards — except that a training run
without a checkpoint yet gets its model once the first one exists, and a run of 2-D points follows each new
checkpoint (the model is swapped whole, under a lock, never modified in place). Each request works on its own
tensors (its own `torch.Generator` for anything random), so concurrent requests cannot disturb each other. The
latent map of each plane is computed at most once (under a lock), cached in the run directory (atomic write,
keyed by the weights' hash) and never modified after it is built.
"""
from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .. import data as gd
from .. import latent
from .._io import read_json, write_bytes
from ..images import grid, png_bytes
from ..train import rundir as R
from .curves import Curves
from .limits import LimitError, Limits
from .uploads import WORK_SIDE, border_level, open_image, to_model_pixels

MAP_POINTS = 2000  # test images on the latent map (a seeded sample of the test split, stratified by class)
CACHE_DIR = "explorer"  # inside the run directory
MAX_IMAGES = Limits.max_images  # per request (the default; Explorer.limits holds the server's)


@dataclass(frozen=True)
class LatentMap:
    """The encoded test subset on a plane: `proj` (a `genzoo.latent.Projection`: `xy`, `codes`, and both ways
    between plane and latent) and the class of each point, `labels` (N,) or None."""

    proj: latent.Projection
    labels: np.ndarray | None

    def bounds(self) -> list[float]:
        """[x0, x1, y0, y1] around the points, with a margin so that empty space around them can be decoded."""
        lo, hi = self.proj.xy.min(0), self.proj.xy.max(0)
        pad = 0.08 * np.maximum(hi - lo, 1e-6)
        return [float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1])]


PRECISIONS = ("auto", "fp32", "bf16")
BF16_MIN_BATCH = 64  # "auto" decodes and samples batches of at least this many in bf16 (where it is native)


class Explorer:
    """A run opened for exploring. `run_dir`: a run directory; `data`: the dataset to show (default: the
    run's own, from run.json)."""

    def __init__(self, run_dir: str | Path, data: str | None = None, map_points: int = MAP_POINTS,
                 limits: Limits | None = None, precision: str = "auto"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise FileNotFoundError(f"{self.run_dir}: no such run directory")
        self.limits = limits or Limits()
        self.requested_data = data
        self.map_points = map_points
        self.curves = Curves(self.run_dir)
        self.metrics = _read_optional_json(self.run_dir / "metrics.json")
        self.run_info = _read_optional_json(self.run_dir / R.RUN) or {}
        self.data_name = data or self.run_info.get("data")
        self.test: gd.Dataset | None = None
        self.data_error = None
        self.points = False  # a run of 2-D points (ring8, grid25): curves and progress pictures only
        self.background = 0.0
        self._model = None
        self._weights_key = None  # (inode, size, mtime) of the loaded model.safetensors
        self._weights_at: int | None = None
        self._open_lock = threading.Lock()
        self._cache: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}  # one per cached key: a slow t-SNE blocks nothing else
        self._locks_lock = threading.Lock()
        R.read_config(self.run_dir)  # not a run, or a bad config.json: say so now
        self.waiting = None if (self.run_dir / R.WEIGHTS).exists() else (
            f"{self.run_dir / R.WEIGHTS} is not written yet (the run has no checkpoint): the page shows the "
            f"training curves until it is, then the model's panels")
        if self.waiting is None:
            self._open()

    def _open(self) -> None:
        """Load the model and the test set (at start, or once a training run's first checkpoint exists)."""
        from ..train.rundir import load

        model = load(self.run_dir)
        model.requires_grad_(False)
        model.eval()
        c, h, w = model.config.image_shape
        self.points = h * w == 1
        self.run_info = _read_optional_json(self.run_dir / R.RUN) or self.run_info
        self.data_name = self.requested_data or self.run_info.get("data")
        if self.data_name:
            try:
                self.test = gd.load_run_data(self.run_dir, "test", self.requested_data)  # with its data options
            except (gd.DataError, FileNotFoundError, ValueError, KeyError) as e:
                self.data_error = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
        else:
            self.data_error = f"{self.run_dir / R.RUN} names no dataset; pass --data"
        # translation generators are fully convolutional: whole test images of any size, the channels must fit
        fits = (self.test.shape[0] == c if self.test is not None and self.test.kind != "images"
                else self.test is None or self.test.shape == model.config.image_shape)
        if not fits:
            raise ValueError(f"{self.data_name} images are {self.test.shape} but the model takes "
                             f"{model.config.image_shape}")
        self.background = border_level(self.test.x[:500]) if self.test is not None and not self.points else 0.0
        self._weights_key = _stat_key(self.run_dir / R.WEIGHTS)
        self._weights_at = _weights_step(self.run_dir / R.WEIGHTS)  # the step it was written at
        self._model = model
        self.waiting = None

    def _try_open(self) -> None:
        if self._model is None and self.waiting is not None and (self.run_dir / R.WEIGHTS).exists():
            with self._open_lock:
                if self._model is None:
                    self._open()

    @property
    def model(self):
        """The run's model; a ValueError while a training run has no checkpoint yet (loaded once it has)."""
        if self._model is None:
            self._try_open()
        if self._model is None:
            raise ValueError(self.waiting or f"{self.run_dir}: no model")
        return self._model

    # ---- what the model can do -----------------------------------------------------------------
    @property
    def conditional(self) -> bool:
        return bool(getattr(self.model.config, "conditional", False))

    @property
    def classes(self) -> list[str] | None:
        if self.test is not None and self.test.classes:
            return list(self.test.classes)
        k = getattr(self.model.config, "num_classes", 0)
        return [str(i) for i in range(k)] if self.conditional and k else None

    def sample_options(self) -> list[str]:
        """The sampling knobs `model.sample` names explicitly (temperature, truncation; diffusion: steps,
        guidance for a conditional model)."""
        params = self.model.sample_options
        opts = [p for p in ("temperature", "truncation", "steps") if p in params]
        if "guidance" in params and self.conditional:
            opts.append("guidance")
        return opts

    def panels(self) -> list[str]:
        """The page's panels this run supports, from the model's capabilities and the test set."""
        m, has_test = self.model, self.test is not None
        if self.points:  # no images: GAN Lab's view of a GAN, and the curves panel's progress pictures
            return ["points"] if hasattr(m, "discriminator_field") and self.test is not None \
                and self.test.meta.get("kind") == "points" else []
        out = ["samples"] if m.can("sample") else []
        if self.map_methods():
            out += ["map", "draw", "interpolate"]
            if self.direction_names():
                out.append("attributes")
        elif m.can("reconstruct"):
            out.append("draw")
        if m.can("reconstruct") and has_test and self.noise is not None:
            out.append("denoise")
        if m.can("translate"):
            out.append("translate")
        return out

    @property
    def noise(self) -> tuple[str, float] | None:
        """(kind, level) of a denoising autoencoder's corruption, else None."""
        kind, level = getattr(self.model.config, "noise", None), getattr(self.model.config, "noise_level", None)
        return (kind, float(level)) if isinstance(kind, str) and level is not None else None

    def info(self) -> dict[str, Any]:
        self._try_open()
        status = (_read_optional_json(self.run_dir / R.RUN) or {}).get("status")
        run = {"run": self.run_dir.resolve().name, "status": status, "points": self.points, "waiting": self.waiting,
               "curves": self.curves.path.exists() or status in ("started", "running")}
        if self._model is None:  # a training run without its first checkpoint: what config.json says
            entry, cfg = R.read_config(self.run_dir)
            return {**run, "model_type": entry.name, "data": self.data_name, "data_error": None,
                    "image_shape": list(cfg.image_shape), "latent_dim": None, "parameters": None, "capabilities": [],
                    "panels": [], "conditional": False, "classes": None, "directions": None, "sample_options": [],
                    "trajectory": False,
                    "test_size": 0, "map_methods": [], "background": "dark", "steps": self.run_info.get("step"),
                    "wall_time_s": None, "validation": {}, "metrics": self.metrics, "config": {}, "noise": None}
        m = self.model
        cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(m.config).items()}
        last = self.run_info.get("last_validation") or {}
        return {
            **run, "model_type": m.model_type, "data": self.data_name,
            "data_error": self.data_error, "image_shape": list(m.config.image_shape), "latent_dim": m.latent_dim,
            "parameters": sum(p.numel() for p in m.parameters()), "capabilities": m.capabilities,
            "panels": self.panels(), "conditional": self.conditional, "classes": self.classes,
            "directions": self.direction_names(),
            "sample_options": self.sample_options(),
            "trajectory": callable(getattr(m, "trajectory", None)), "test_size": len(self.test) if self.test is not None else 0,
            "map_methods": self.map_methods(), "background": "light" if self.background > 127 else "dark",
            "steps": self.run_info.get("step"), "wall_time_s": self.run_info.get("wall_time_s"),
            "validation": {k: v for k, v in last.items() if isinstance(v, (int, float))},
            "metrics": self.metrics, "config": cfg, "noise": self.noise,
        }

    # ---- images (all returned in [0, 1], (N, C, H, W), on the CPU) ---------------------------------
    def png(self, x: Tensor, nrow: int | None = None, scale: int = 1) -> bytes:
        """Images in [0, 1] (N, C, H, W) -> PNG bytes (rows of `nrow`; no padding around a single image)."""
        self.check_picture(len(x), nrow, scale)
        return png_bytes(grid(x.float().cpu(), nrow=nrow, pad=0 if len(x) == 1 else 2), scale)

    def check_picture(self, n: int, nrow: int | None, scale: int) -> None:
        """LimitError unless `scale` is 1..max_scale and a grid of n images (`nrow` per row) at `scale` stays
        within max_output_pixels."""
        if not 1 <= scale <= self.limits.max_scale:
            raise LimitError(f"scale: {scale} is out of range; allowed: 1..{self.limits.max_scale}")
        _, h, w = self.model.config.image_shape
        pad = 0 if n == 1 else 2
        nrow = nrow or max(1, int(np.ceil(np.sqrt(n))))
        rows = -(-n // nrow)
        gh, gw = rows * (h + pad) + pad, nrow * (w + pad) + pad
        limit = self.limits.max_output_pixels
        if gh * gw * scale * scale > limit:
            fits = int((limit / (gh * gw)) ** 0.5)
            raise LimitError(f"scale: the picture would be {gw * scale} x {gh * scale} = {gh * gw * scale ** 2:,} "
                             f"pixels ({n} images of {w} x {h} at scale {scale}); the limit is {limit:,} pixels: "
                             + (f"use scale at most {fits} here" if fits >= 1 else "ask for fewer images"))

    def check_count(self, name: str, count: int) -> None:
        """LimitError unless 1 <= count <= max_images."""
        k = self.limits.max_images
        if not 1 <= count <= k:
            raise LimitError(f"{name}: {count} values; allowed: 1..{k} per request")

    def _labels(self, label: int | None, n: int) -> Tensor | None:
        """A chosen class for n images of a conditional model, checked; None when no class is chosen."""
        if label is None:
            return None
        if not self.conditional:
            raise ValueError(f"this {self.model.model_type} model is not conditional: it takes no class")
        k = len(self.classes or [])
        if not 0 <= label < k:
            raise ValueError(f"class {label} is out of range: expected 0..{k - 1}")
        return torch.full((n,), label, dtype=torch.long)

    def samples(self, n: int, seed: int, label: int | None = None, temperature: float | None = None,
                truncation: float | None = None, steps: int | None = None, guidance: float | None = None) -> Tensor:
        """n samples from the model's own sampler, with its own generator seeded by `seed`."""
        if not self.model.can("sample"):
            raise ValueError(f"a {self.model.model_type} model cannot sample")
        self.check_count("n", n)
        kw = self._sample_settings(temperature=temperature, truncation=truncation, steps=steps, guidance=guidance)
        with torch.inference_mode(), self._precision(n):
            x = self.model.sample(n, labels=self._labels(label, n), generator=torch.Generator().manual_seed(seed),
                                  **kw)
        return self.model.to_unit(x.float()).cpu()

    def trajectory(self, n: int, seed: int, label: int | None = None, steps: int | None = None,
                   guidance: float | None = None, frames: int = 10) -> Tensor:
        """A diffusion model's reverse process for n samples: (n * frames, C, H, W) in [0, 1], one row of
        frames x_T -> x_0 per sample."""
        if not callable(getattr(self.model, "trajectory", None)):
            raise ValueError(f"a {self.model.model_type} model has no reverse trajectory")
        self.check_count("n", n * frames)
        kw = self._sample_settings(steps=steps, guidance=guidance)
        with torch.inference_mode():
            fr = self.model.trajectory(n, labels=self._labels(label, n), generator=torch.Generator().manual_seed(seed),
                                       frames=frames, **kw)  # (frames, n, C, H, W)
        return fr.transpose(0, 1).reshape(-1, *fr.shape[2:]).cpu()  # (n * frames, C, H, W), row per sample

    def _sample_settings(self, **settings: Any) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        for name, val in settings.items():
            if val is not None:
                if name not in self.sample_options():
                    raise ValueError(f"a {self.model.model_type} model has no {name} setting")
                kw[name] = val
        return kw

    def test_image(self, index: int) -> tuple[Tensor, int | None]:
        """Test image `index` as a model input (1, C, H, W), and its class."""
        if self.test is None:
            raise ValueError(f"no test set: {self.data_error}")
        if not 0 <= index < len(self.test):
            raise IndexError(f"test image {index} does not exist: expected 0..{len(self.test) - 1}")
        y = int(self.test.y[index]) if self.test.y is not None else None
        return self.model.prepare(self.test.x[index: index + 1]), y

    def unit(self, x: Tensor) -> Tensor:
        """A model input -> the image in [0, 1] (what the model sees)."""
        return self.model.to_unit(x).cpu()

    def check_codes(self, z: Any) -> Tensor:
        """Codes from a client -> float tensor (M, L), or a ValueError saying what is wrong."""
        z = torch.as_tensor(np.asarray(z, dtype=np.float64), dtype=torch.float32)
        z = z[None] if z.ndim == 1 else z
        L = self.model.latent_dim
        if z.ndim != 2 or z.shape[1] != L:
            raise ValueError(f"a latent code of this model has {L} numbers; got an array of shape {list(z.shape)}")
        if not torch.isfinite(z).all():
            raise ValueError("latent codes must be finite numbers")
        self.check_count("z", len(z))
        return z

    def _precision(self, n: int):
        """The autocast context for decoding or sampling a batch of n images: bf16 where it is faster (precision
        "auto": batches of BF16_MIN_BATCH or more on hardware with native bf16; a single decode is slower in
        bf16, docs/benchmarks.md "bf16 decode"), or as `precision` says; fp32 otherwise."""
        from ..train.engine import autocast, bf16_native

        dev, m = self.model.device, self.model
        # "auto" leaves iterative samplers (diffusion: rounding would add up over the steps) in fp32
        one_pass = not callable(getattr(m, "trajectory", None))
        bf16 = self.precision == "bf16" or (self.precision == "auto" and one_pass and n >= BF16_MIN_BATCH
                                            and bf16_native(dev))
        return autocast(dev, "bf16" if bf16 else "fp32")

    def decode(self, z: Any, label: int | None = None) -> Tensor:
        """Latent codes (M, L) -> images. A conditional model decodes as class `label` (default 0)."""
        z = self.check_codes(z)
        if self.conditional and label is None:
            label = 0
        with torch.inference_mode(), self._precision(len(z)):
            return latent.decode(self.model, z, self._labels(label, len(z))).float()

    def code(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Model inputs (M, C, H, W) -> latent codes (M, L) (a VAE's posterior mean). A conditional model
        without `labels` infers the class."""
        with torch.inference_mode():
            return latent.encode(self.model, x, labels if self.conditional else None)

    def reconstruct(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            return self.model.to_unit(self.model.reconstruct(x)).cpu()

    def upload(self, data: bytes, *, fit: bool = False, invert: bool | None = None) -> Tensor:
        """PNG/JPEG bytes -> the model input (1, C, H, W) made of them."""
        side = max(WORK_SIDE, 4 * max(self.model.config.image_shape[1:]))
        im = open_image(data, self.limits.max_upload_bytes, self.limits.max_pixels, work_side=side)
        px = to_model_pixels(im, self.model.config.image_shape, invert=invert, background=self.background, fit=fit)
        return self.model.prepare(px)

    def interpolate(self, a: Any, b: Any, ts: list[float], mode: str) -> Tensor:
        """Points at fractions `ts` of the lerp or slerp path from code a to code b: (K, L)."""
        self.check_count("ts", len(ts))
        za, zb = self.check_codes(a)[0], self.check_codes(b)[0]
        walk = {"lerp": latent.lerp, "slerp": latent.slerp}[mode]
        return walk(za, zb, torch.tensor(ts, dtype=torch.float64))

    def shift(self, z: Any, alphas: dict[int, float]) -> Tensor:
        """z + sum_c alpha_c d_c, d_c the direction of slider c (a class: genzoo.latent.class_direction; an
        attribute: genzoo.latent.attribute_direction)."""
        z = self.check_codes(z)
        directions = self.directions()
        for c, alpha in sorted(alphas.items()):
            if c not in directions:
                what = "class" if self.test is not None and self.test.y is not None else "attribute"
                raise ValueError(f"no direction for {what} {c}: expected one of {sorted(directions)}")
            z = latent.shift(z, directions[c], float(alpha))
        return z

    def denoise(self, index: int, level: float, seed: int = 0) -> Tensor:
        """Test image `index`, corrupted by the model's own noise at `level`, and restored: (3, C, H, W)."""
        if "denoise" not in self.panels():
            raise ValueError(f"a {self.model.model_type} model is not a denoising autoencoder")
        from ..models.autoencoder import corrupt

        x, _ = self.test_image(index)
        noisy = corrupt(x, self.noise[0], level, torch.Generator().manual_seed(seed))
        with torch.inference_mode():
            restored = self.model.reconstruct(noisy)
        return self.model.to_unit(torch.cat([x, noisy, restored])).cpu()

    # ---- a GAN of 2-D points (ring8, grid25): GAN Lab's view ------------------------------------------------
    def _newest_point_model(self):
        """The model of the newest checkpoint: a point run is reloaded whenever model.safetensors changes (a
        training run writes one every checkpoint_every steps), so the view follows training."""
        from ..train.rundir import load

        key = _stat_key(self.run_dir / R.WEIGHTS)
        if key != self._weights_key:
            with self._open_lock:
                if key != self._weights_key:
                    step = _weights_step(self.run_dir / R.WEIGHTS)
                    model = load(self.run_dir)
                    model.requires_grad_(False)
                    self._model, self._weights_key, self._weights_at = model.eval(), key, step
        return self._model

    def point_view(self, n: int, seed: int, res: int) -> dict[str, Any]:
        """D's output on a res x res grid over the data's square (row 0 at y = +lim), n test points and n
        generated ones (seeded), and the toy mode metrics of those, from the newest checkpoint."""
        if "points" not in self.panels():
            raise ValueError(f"{self.run_dir}: not a GAN of 2-D points (ring8, grid25): no D to show")
        from ..data.toy import mode_quality

        model = self._newest_point_model()
        modes, std = torch.tensor(self.test.meta["modes"], dtype=torch.float32), float(self.test.meta["std"])
        lim = float(modes.abs().max()) + 1.0  # as `genzoo gans plot`
        with torch.inference_mode():
            fake = model.sample(n, generator=torch.Generator().manual_seed(seed)).reshape(-1, 2).float().cpu()
            field = model.discriminator_field(lim, res).float().cpu()
        q = mode_quality(fake, modes, std)
        real = self.test.x[:n].reshape(-1, 2).float()
        c = model.config
        return {"lim": lim, "res": res, "field": np.round(field.numpy().ravel(), 4).tolist(),
                "field_label": "D(x)" if c.loss == "bce" else "critic D(x)", "probability": c.loss == "bce",
                "real": np.round(real.numpy().ravel(), 4).tolist(), "fake": np.round(fake.numpy().ravel(), 4).tolist(),
                "modes": modes.tolist(), "modes_covered": q["modes_covered"], "hq_share": round(q["hq_share"], 4),
                "checkpoint_step": self._weights_at}

    # ---- the latent map and class directions ----------------------------------------------------------
    def map_methods(self) -> list[str]:
        m = self.model
        if self.points or self.test is None or not (m.can("encode") and m.can("decode")) or (m.latent_dim or 0) < 2:
            return []
        return ["latent"] if m.latent_dim == 2 else ["pca", "tsne"]

    def _once(self, key: str, compute: Callable[[], Any]) -> Any:
        """compute() at most once per key (other requests wait for it); the result is never modified."""
        found = self._cache.get(key)
        if found is None:
            with self._locks_lock:
                lock = self._locks.setdefault(key, threading.Lock())
            with lock:
                if key not in self._cache:
                    self._cache[key] = compute()
                found = self._cache[key]
        return found

    def test_codes(self) -> tuple[Tensor, Tensor | None]:
        """Codes (N, L) and classes (N,) of `map_points` test images, a seeded sample stratified by class (the
        first N of a folder sorted by class would be one class; all of them when the split is no larger), with
        the true classes given to a conditional encoder."""
        def compute():
            with torch.inference_mode():
                return latent.encode_dataset(self.model, self.test.subset(self.map_rows()),
                                             use_labels=self.conditional)
        return self._once("codes", compute)

    def map_rows(self) -> Tensor:
        """The test images on the map (their indices): evaluate's seeded class-stratified subset of
        `map_points`, or the whole split in order when it is no larger."""
        from ..evaluate.subsets import subset_indices
        n = len(self.test)
        return subset_indices(n, self.map_points, self.test.y, 0) if self.map_points < n else torch.arange(n)

    def direction_names(self) -> list[str] | None:
        """What the attribute sliders move along: the classes of a labelled test set, else the attribute table's
        columns (celeba: Blond_Hair, Eyeglasses, ...), else None."""
        if self.test is None:
            return None
        if self.test.y is not None and self.classes:
            return list(self.classes)
        return list(self.test.meta["attributes"]) if self.test.meta.get("attributes") else None

    def directions(self) -> dict[int, Tensor]:
        """Slider index -> direction, from the map's codes: for a class, mean(codes of the class) - mean(codes of
        the others); for an attribute, mean(codes with it) - mean(codes without it) (attributes that the sample
        holds on one side only have none)."""
        def compute():
            codes, labels = self.test_codes()
            if labels is not None:
                return {int(c): latent.class_direction(codes, labels, int(c)) for c in labels.unique()}
            if not self.direction_names():
                raise ValueError(f"{self.data_name} has no classes or attributes to take directions from")
            from ..data.celeba import attribute_values
            values = attribute_values(self.test)[self.map_rows()]  # (N, A) bool: the rows test_codes encoded
            return {a: latent.attribute_direction(codes, values[:, a]) for a in range(values.shape[1])
                    if 0 < int(values[:, a].sum()) < len(values)}
        return self._once("directions", compute)

    def latent_map(self, method: str) -> LatentMap:
        """The map for `method` (latent | pca | tsne): from memory, else the run directory's cache, else
        computed (once) and cached there."""
        methods = self.map_methods()
        if method not in methods:
            raise ValueError(f"map {method!r} is not available for this run; available: "
                             f"{', '.join(methods) or 'none'}")
        return self._once(f"map-{method}", lambda: self._load_or_compute_map(method))

    def _map_cache(self, method: str) -> Path:
        name = str(self.data_name).replace("/", "_").replace(":", "_").replace("\\", "_")
        return self.run_dir / CACHE_DIR / f"map-{method}-{name}-{self.map_points}-s0.npz"  # s0: the sample's seed

    def _load_or_compute_map(self, method: str) -> LatentMap:
        path = self._map_cache(method)
        key = hashlib.sha256((self.run_dir / R.WEIGHTS).read_bytes()).hexdigest()
        found = _read_map(path, method, key)
        if found is not None:
            return found
        codes, labels = self.test_codes()
        lm = LatentMap(latent.project(codes, method), None if labels is None else labels.numpy())
        p = lm.proj
        arrays = {"key": np.array(key), "xy": p.xy, "codes": p.codes,
                  "labels": lm.labels if lm.labels is not None else np.zeros(0),
                  "origin": p.origin if p.linear else np.zeros(0), "basis": p.basis if p.linear else np.zeros(0)}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        try:
            write_bytes(path, buf.getvalue())
        except OSError:
            pass  # a read-only run directory: keep the map in memory only
        return lm


def _read_map(path: Path, method: str, key: str) -> LatentMap | None:
    """A cached map if `path` holds one made from the same weights (`key`), else None."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            linear = f["basis"].size > 0
            proj = latent.Projection(method, f["xy"], f["codes"], f["origin"] if linear else None,
                                     f["basis"] if linear else None)
            return LatentMap(proj, f["labels"] if f["labels"].size else None)
    except (OSError, KeyError, ValueError):
        return None  # missing or unreadable: recompute (and overwrite)


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _weights_step(path: Path) -> int | None:
    """The training step model.safetensors was written at (its header's metadata), or None."""
    import json

    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            meta = json.loads(f.read(min(n, 1 << 20)).decode("utf-8")).get("__metadata__") or {}
        return int(meta["step"]) if "step" in meta else None
    except (OSError, ValueError, KeyError):
        return None


def _read_optional_json(path: Path) -> Any:
    try:
        return read_json(path)
    except (FileNotFoundError, ValueError):
        return None
