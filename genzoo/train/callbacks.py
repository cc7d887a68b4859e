"""Engine callbacks that models ask for through `model.callbacks()`.

A callback is any object with optional `on_log(trainer, row)` (may add keys to the metrics row and call
`trainer.warn`) and `on_epoch_end(trainer)`.
"""
from __future__ import annotations

import math
from typing import Any

import torch


class ModeMonitor:
    """Every `every` steps, sample a fixed batch (fixed z seed, eval mode) and measure mode coverage.

    Images: the dataset's classifier (`genzoo.evaluate.classifier.get_classifier`) labels `n` samples;
    logs `modes_covered` (classes with >= half a fair share) and `modes_kl` (KL(histogram || uniform)), both
    by `genzoo.evaluate.metrics.mode_coverage`, and for conditional models asked for classes 0, 1, ..., K-1
    in turn, `label_acc`. 2-D toy data: the same from
    the nearest mixture component, plus `hq_share` (samples within 3 std of a mode).
    Warns (`trainer.warn`) when coverage falls to (1 - drop) of its best so far — mode collapse — and when
    the discriminator wins outright (mean D(x) > 1 - d_margin and D(G(z)) < d_margin; bce only), which is
    when the minimax generator's gradient vanishes.
    """

    def __init__(self, every: int = 500, n: int = 1000, min_share: float = 0.5, drop: float = 0.2,
                 d_margin: float = 0.05, seed: int = 2024):
        if every < 1 or n < 1:
            raise ValueError(f"ModeMonitor needs every >= 1 and n >= 1, got every={every}, n={n}")
        self.every, self.n, self.min_share, self.seed = every, n, min_share, seed
        self.drop, self.d_margin = drop, d_margin
        self.kind: str | None = None  # "points" | "images" | "off", decided on the first call
        self.classifier = None
        self.best = 0
        self.last_run = 0
        self.collapsed = self.d_wins = False  # warn once per episode, again only after recovering

    def setup(self, ds) -> None:
        """Pick the measure for dataset `ds`: mixture components for 2-D points, else the dataset's shipped
        classifier (raises ValueError / FileNotFoundError when there is none)."""
        if ds.meta.get("kind") == "points":
            self.kind = "points"
            self.modes, self.std = torch.tensor(ds.meta["modes"]), float(ds.meta["std"])
            self.num_classes = len(self.modes)
            return
        from ..evaluate.classifier import get_classifier
        self.classifier = get_classifier(ds.name).eval()
        self.kind = "images"
        self.num_classes = ds.num_classes

    def on_log(self, trainer, row: dict[str, Any]) -> None:
        self._check_discriminator(trainer, row)
        step = trainer.step
        if step // self.every == self.last_run // self.every and step != trainer.total_steps:
            return
        self.last_run = step
        if self.kind is None:
            try:
                self.setup(trainer.train_data)
            except (ImportError, KeyError, ValueError, FileNotFoundError) as e:
                self.kind = "off"
                trainer.warn(f"mode monitor off: no dataset classifier for {trainer.train_data.name!r} ({e})")
        if self.kind == "off":
            return
        stats = self.measure(trainer.model)
        row.update(stats)
        trainer.run_info["mode_monitor"] = {"step": step, **stats}
        covered = stats["modes_covered"]
        collapsed = self.best > 0 and covered <= self.best * (1 - self.drop)
        if collapsed and not self.collapsed:
            trainer.warn(f"mode collapse? modes covered fell from {self.best} to {covered} of "
                         f"{self.num_classes} (KL to uniform {stats['modes_kl']:.3f})")
        self.collapsed = collapsed
        self.best = max(self.best, covered)

    @torch.no_grad()
    def measure(self, model, histogram: bool = False) -> dict[str, Any]:
        """Coverage statistics of `n` samples from a fixed z (`histogram`: also the samples per class)."""
        was_training = model.training
        model.eval()
        try:
            g = torch.Generator().manual_seed(self.seed)
            conditional = getattr(model.config, "conditional", False)
            labels = torch.arange(self.n) % self.num_classes if conditional else None
            x = model.sample(self.n, labels=labels, generator=g)
        finally:
            model.train(was_training)
        from ..evaluate.metrics import mode_coverage
        out: dict[str, Any] = {}
        if self.kind == "points":  # the nearest mixture component plays the classifier
            from ..data.toy import mode_quality
            q = mode_quality(x.reshape(self.n, -1).cpu(), self.modes, self.std, self.min_share)
            pred = q["nearest"]
            cov = mode_coverage(torch.nn.functional.one_hot(pred, self.num_classes).float())
            out["modes_covered"], out["hq_share"] = q["modes_covered"], round(q["hq_share"], 4)
            if histogram:
                out["hq_counts"] = q["counts"]
        else:
            probs = torch.cat([self.classifier.probs(model.to_unit(c).cpu()) for c in x.split(500)])
            pred = probs.argmax(1)
            cov = mode_coverage(probs)
            out["modes_covered"] = cov["classes_covered"]
        out["modes_kl"] = round(cov["kl_to_uniform"], 4)
        if histogram:
            out["class_histogram"] = cov["class_histogram"]
        if labels is not None:
            out["label_acc"] = round(float((pred == labels).double().mean()), 4)
        return out

    def _check_discriminator(self, trainer, row: dict[str, Any]) -> None:
        if getattr(trainer.model.config, "loss", None) != "bce":
            return
        d_real, d_fake = row.get("discriminator/d_real"), row.get("generator/d_fake")
        if d_real is None or d_fake is None or math.isnan(d_real) or math.isnan(d_fake):
            return
        wins = d_real > 1 - self.d_margin and d_fake < self.d_margin
        if wins and not self.d_wins:
            g = row.get("generator/grad_minimax")
            why = f"; the minimax generator's gradient |dL/df| = {g:.2e} is vanishing" if g is not None else ""
            trainer.warn(f"the discriminator wins outright: mean D(x) = {d_real:.3f}, D(G(z)) = {d_fake:.3f}{why}")
        self.d_wins = wins
