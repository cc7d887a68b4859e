"""The claim registry and the context every claim runs in.

A claim is a small function `fn(ctx) -> Result`, registered with `@claim(name, number=..., title=...,
quote=..., experiment=...)`. It trains what it needs through `ctx.train` (one engine; runs under `ctx.runs`
are reused when they exist), measures, writes its figure(s) with `ctx.figure(name)`, and states a verdict
from its numbers by a rule written in the claim (`verdict_of(...)`): holds, partly, or does not hold at this
scale. `ctx.pick(tiny=..., quick=..., full=...)` chooses sizes by scale: `tiny` for tests (seconds), `quick`
for `genzoo lecture --quick` (minutes), `full` for the full run (87 CPU minutes measured).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

SCALES = ("tiny", "quick", "full")
HOLDS, PARTLY, FAILS = "holds", "partly", "does not hold at this scale"
VERDICTS = (HOLDS, PARTLY, FAILS)
# settings that keep training runs quiet and cheap (no progress bar, no per-epoch validation, no grids)
QUIET = {"progress": False, "validate": False, "sample_every": 0, "log_every": 50, "checkpoint_every": 10 ** 9}


@dataclass(frozen=True)
class Claim:
    name: str
    number: int
    title: str
    quote: str
    experiment: str
    fn: Callable[["Context"], "Result"]

    def command(self, scale: str = "quick") -> str:
        """The command that reruns just this claim."""
        return f"genzoo lecture --only {self.name}" + (" --quick" if scale == "quick" else "")


@dataclass
class Result:
    """What a claim found: `numbers` (name -> value), figure paths, the verdict, and one paragraph saying why."""

    numbers: dict[str, Any]
    figures: list[Path]
    verdict: str
    why: str
    table: list[dict[str, Any]] | None = None  # optional rows (one per model/setting) for the report
    cpu_s: float = 0.0
    error: str | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS + ("error",):
            raise ValueError(f"verdict {self.verdict!r}: expected one of {', '.join(VERDICTS)}")


_CLAIMS: dict[str, Claim] = {}


def claim(name: str, *, number: int, title: str, quote: str, experiment: str) -> Callable:
    """Register `fn(ctx) -> Result` as the claim `name` (the lecture's claim `number`, quoted in `quote`)."""

    def deco(fn: Callable[["Context"], Result]) -> Callable[["Context"], Result]:
        if name in _CLAIMS and _CLAIMS[name].fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"claim {name!r} is registered twice")
        _CLAIMS[name] = Claim(name, number, title, quote, experiment, fn)
        return fn

    return deco


def _load_builtin() -> None:
    from . import claims_ae, claims_gan, claims_ood  # noqa: F401  (they register the built-in claims)


def claims() -> list[Claim]:
    """Every registered claim, in the lecture's order (number, then name)."""
    _load_builtin()
    return sorted(_CLAIMS.values(), key=lambda c: (c.number, c.name))


def names() -> list[str]:
    return [c.name for c in claims()]


def get(name: str) -> Claim:
    _load_builtin()
    if name not in _CLAIMS:
        raise KeyError(f"unknown claim {name!r}; claims: {', '.join(names())}")
    return _CLAIMS[name]


def verdict_of(checks: dict[str, bool]) -> str:
    """holds when every check passes, does not hold when none does, partly otherwise."""
    n = sum(bool(v) for v in checks.values())
    return HOLDS if n == len(checks) else FAILS if n == 0 else PARTLY


def describe_checks(checks: dict[str, bool]) -> str:
    return "; ".join(f"{k}: {'yes' if v else 'no'}" for k, v in checks.items())


# ---- the context -------------------------------------------------------------------------------------------
@dataclass
class Context:
    """Where a claim runs: its scale, the report folder (`out`), the folder of reusable runs (`runs`; None
    trains in memory only), the data root and the seed. Trained models are also cached in memory by key, so
    claims that need the same model (e.g. the latent-arithmetic figure and the latent-space claim) share it."""

    scale: str = "quick"
    out: Path = Path("lecture")
    runs: Path | None = None
    root: str | None = None
    seed: int = 0
    log: Callable[[str], None] = print
    _models: dict[str, Any] = field(default_factory=dict)
    _data: dict[tuple, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale {self.scale!r}: expected one of {', '.join(SCALES)}")
        self.out = Path(self.out)
        self.runs = None if self.runs is None else Path(self.runs)

    def pick(self, tiny: Any, quick: Any, full: Any) -> Any:
        return {"tiny": tiny, "quick": quick, "full": full}[self.scale]

    @property
    def tiny(self) -> bool:
        return self.scale == "tiny"

    def figure(self, name: str) -> Path:
        return self.out / "figures" / f"{name}.png"

    # ---- data ------------------------------------------------------------------------------------------
    def has(self, name: str, splits: tuple[str, ...] = ("test", "train")) -> bool:
        """Whether dataset `name` can be loaded (by default both splits) from the data root."""
        try:
            for split in splits:
                self.dataset(name, split)
            return True
        except (FileNotFoundError, OSError, ValueError, KeyError):
            return False

    def dataset(self, name: str, split: str, n: int | None = None):
        """A dataset split (cached); with `n`, a seeded random sample of `n` of its images (stratified by class
        where there are labels, `genzoo.evaluate.subsets`; never the first n: folders come sorted by class)."""
        from .. import data as gd
        from ..evaluate.subsets import random_subset
        key = (name, split)
        if key not in self._data:
            self._data[key] = gd.load(name, split, root=self.root)
        ds = self._data[key]
        if n is None or n >= len(ds):
            return ds
        sub = random_subset(ds, n, self.seed)
        sub.meta["sample"] = f"stratified seed {self.seed}"  # part of the run cache's key (see train)
        return sub

    def digits(self) -> str:
        """The MNIST dataset of this scale: mnist-mini for tests, full MNIST (when present) otherwise."""
        return "mnist-mini" if self.tiny or not self.has("mnist") else "mnist"

    # ---- models ----------------------------------------------------------------------------------------
    def train(self, key: str, model: str, data: Any, *, preset: str | None = None,
              settings: dict[str, Any] | None = None, **train_kw: Any):
        """Train `model` on `data` (a name or Dataset) — or reuse the run trained with exactly these settings
        (an in-memory model of this session, else `runs/<key>-<hash>` when it holds a finished run)."""
        from .. import load as load_run
        from ..train import rundir as R
        from ..train import train as train_model
        data_name = data if isinstance(data, str) else f"{data.name}/{data.split}[{len(data)}]"
        if not isinstance(data, str) and data.meta.get("sample"):  # not a run of an earlier first-n subset
            data_name += f" ({data.meta['sample']})"
        spec = {"model": model, "data": data_name, "preset": preset, "settings": settings or {},
                "train": train_kw, "seed": self.seed}
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]
        tag = f"{key}-{digest}"
        if tag in self._models:
            return self._models[tag]
        run_dir = None if self.runs is None else self.runs / tag
        if run_dir is not None and R.is_run(run_dir) and (run_dir / R.WEIGHTS).exists():
            self.log(f"  reusing {run_dir}")
            m = load_run(run_dir)
        else:
            if run_dir is not None and run_dir.exists():
                shutil.rmtree(run_dir)  # an unfinished run of ours (the name carries the settings' hash)
            self.log(f"  training {model} ({key}) on {data_name}" + (f" -> {run_dir}" if run_dir else ""))
            kw = {"seed": self.seed, **train_kw}
            m = train_model(model, data, out=run_dir, preset=preset, settings={**QUIET, **(settings or {})},
                            root=self.root, **kw)
        m.eval().requires_grad_(False)
        self._models[tag] = m
        return m

    def classifier(self, name: str = "mnist"):
        from ..evaluate.classifier import get_classifier
        return get_classifier(name)


@torch.no_grad()
def recognised(clf: Any, x01: torch.Tensor, threshold: float = 0.9) -> float:
    """Share of images the classifier assigns to some class with probability >= threshold."""
    if len(x01) == 0:
        return float("nan")
    return float((clf.probs(x01).max(1).values >= threshold).float().mean())


def run_claim(c: Claim, ctx: Context, strict: bool = False) -> Result:
    """Run one claim, timing it (process CPU seconds). With `strict` an exception propagates; otherwise it
    becomes a Result with verdict "error" and the message, so one broken claim does not stop the report."""
    t0 = time.process_time()
    try:
        res = c.fn(ctx)
    except Exception as e:  # noqa: BLE001  (reported in the page; --strict re-raises)
        if strict:
            raise
        res = Result({}, [], "error", f"the experiment failed: {type(e).__name__}: {e}",
                     error="".join(traceback.format_exception(e))[-2000:])
    res.cpu_s = time.process_time() - t0
    return res
