"""`genzoo.train(...)`: build (or take) a model, load the data, run the engine, write the run directory."""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from .. import data as gdata
from .. import registry
from ..config import TrainConfig, from_dict, preset_settings, split_settings
from ..models.base import GenerativeModel
from . import distributed as D
from . import rundir as R
from .engine import Trainer, TrainingDiverged, resolve_device

__all__ = ["train", "build_model", "Trainer", "TrainingDiverged", "resolve_device"]


def build_model(name: str, dataset: gdata.Dataset | None = None, preset: str | None = None,
                **settings: Any) -> GenerativeModel:
    """Build a registered model; `image_shape`/`num_classes` come from `dataset` unless given."""
    entry = registry.get(name)
    cfg = entry.config_class
    values: dict[str, Any] = {}
    values.update(preset_settings(cfg, preset, name)[0])  # its training keys: train() applies them
    if dataset is not None:
        values.setdefault("image_shape", dataset.shape)
        values.setdefault("num_classes", dataset.num_classes)
        if "target_shape" in cfg.__dataclass_fields__ and dataset.target_shape is not None:
            values.setdefault("target_shape", dataset.target_shape)
    values.update(settings)
    return entry.model_class(from_dict(cfg, values, source=f"{name} config"))


def train(model: str | GenerativeModel, data: str | gdata.Dataset | None = None, *,
          out: str | os.PathLike | None = None, settings: dict[str, Any] | None = None,
          preset: str | None = None, resume: bool = False, root: str | None = None,
          image_size: int | None = None, data_options: dict[str, Any] | None = None, command: str | None = None,
          **train_kw: Any) -> GenerativeModel:
    """Train `model` (a registry name or a built model) on `data` and return it (eval mode).

    `settings`: flat dict of model-config and TrainConfig keys (from YAML / --set); `train_kw`: TrainConfig
    keys as Python arguments (epochs=, steps=, batch_size=, seed=, ...). `out`: run directory (None: write
    nothing). `data`: a dataset name or Dataset (default "mnist-mini"; when resuming, the run's own dataset,
    and another one is an error). `data_options`: keyword options of the dataset's loader (e.g. {"scale": 2,
    "crop": 16} for sr:PATH, {"size": 64} for folder:PATH; `image_size=N` is short for size=N), checked against
    the loader before any work and recorded in run.json ("data_options"), so every command that reloads the
    run's data uses them; resuming takes the run's own, and different ones are an error. `resume=True` continues the run in `out` from its last checkpoint, with the
    new total when `steps`/`epochs` are given (a run killed before its first checkpoint starts again from
    step 0). Every option is checked before any work; the run directory is locked while training.
    """
    settings = dict(settings or {})
    out_path = Path(out) if out is not None else None
    data_options = _data_options(data, data_options, image_size)
    if resume and out_path is None:
        raise ValueError("resume=True needs the run directory (out=)")
    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes (and locks)
    new_run: tuple[Any, ...] | None = None
    if not resume:  # check every option before touching the disk
        if isinstance(model, str):
            entry = registry.get(model)
            model_settings, train_settings = split_settings(entry.config_class, settings)
            recipe = preset_settings(entry.config_class, preset, model)[1]  # the preset's training defaults
        else:
            model_settings, train_settings, recipe = {}, settings, {}
            if set(train_settings) - set(TrainConfig.__dataclass_fields__):
                raise ValueError(f"unknown training keys {sorted(set(train_settings) - set(TrainConfig.__dataclass_fields__))}")
        tc = from_dict(TrainConfig, {**recipe, **train_settings, **train_kw}, source="training settings")
        if data is None or isinstance(data, str):
            gdata.check_options(data or "mnist-mini", data_options)
        new_run = (model_settings, tc)
    elif not out_path.is_dir():  # type: ignore[union-attr]
        raise FileNotFoundError(f"{out_path}: no such run directory to resume")
    with contextlib.ExitStack() as stack:
        if out_path is not None and main:
            if not resume:
                R.refuse_foreign(out_path)
            R.check_writable(out_path)
            stack.enter_context(R.RunLock(out_path))
        return _train(model, data, out_path, settings, preset, resume, root, data_options, command, train_kw,
                      new_run, main)


def _data_options(data: Any, data_options: dict[str, Any] | None, image_size: int | None) -> dict[str, Any]:
    """The dataset loader's options: `data_options`, with `image_size=N` as short for size=N."""
    import json
    opts = json.loads(json.dumps(dict(data_options or {})))  # as run.json will hold them ((H, W) -> [H, W])
    if image_size is not None:
        if "size" in opts and opts["size"] != image_size:
            raise ValueError(f"--image-size {image_size} and --data-opt size={opts['size']!r} disagree; give one")
        opts["size"] = image_size
    if opts and isinstance(data, gdata.Dataset):
        raise ValueError(f"data options ({', '.join(opts)}) apply when data is a dataset name; {data.name} is "
                         f"already loaded")
    return opts


def _train(model: str | GenerativeModel, data: str | gdata.Dataset | None, out_path: Path | None,
           settings: dict[str, Any], preset: str | None, resume: bool, root: str | None,
           data_options: dict[str, Any], command: str | None, train_kw: dict[str, Any],
           new_run: tuple[Any, ...] | None, main: bool) -> GenerativeModel:
    resume_state = None
    fresh_start = False  # resuming a run that never reached its first checkpoint
    if resume:
        assert out_path is not None
        info = _read_run_json(out_path) if (out_path / R.RUN).exists() else {}
        entry, saved_cfg = R.read_config(out_path)
        if isinstance(model, str) and model != entry.name:
            raise ValueError(f"{out_path} holds a {entry.name!r} run, not {model!r}")
        run_data = info.get("data")
        if data is not None and run_data is not None:
            given = data if isinstance(data, str) else data.name
            if given != run_data:
                raise ValueError(f"--data {given!r}: {out_path} was trained on {run_data!r} ({out_path / R.RUN}); "
                                 f"--resume continues a run on its own dataset. Drop --data, or start a new run "
                                 f"with another --out")
        if data is None:
            if run_data is None:
                raise ValueError(f"{out_path / R.RUN}: missing, so the run's dataset is unknown; pass --data")
            data = run_data
        run_opts = dict(info.get("data_options") or {})
        if data_options and data_options != run_opts:
            shown = lambda o: ", ".join(f"{k}={v!r}" for k, v in sorted(o.items())) or "none"  # noqa: E731
            raise ValueError(f"data options {shown(data_options)}: {out_path} was trained on {data} with data "
                             f"options {shown(run_opts)} ({out_path / R.RUN}); --resume continues a run on its own "
                             f"data. Drop --data-opt/--image-size, or start a new run with another --out")
        data_options = run_opts
        tc_values = {k: v for k, v in info.get("train_config", {}).items()}
        model_settings, train_settings = split_settings(entry.config_class, settings)
        if model_settings:
            raise ValueError(f"cannot change model settings ({', '.join(model_settings)}) when resuming")
        tc_values.update(train_settings)
        tc_values.update(train_kw)
        if "steps" in train_kw or "steps" in train_settings:
            if "epochs" not in train_kw and "epochs" not in train_settings:
                tc_values["epochs"] = None
        elif "epochs" in train_kw or "epochs" in train_settings:
            tc_values["steps"] = None
        tc = from_dict(TrainConfig, tc_values, source=str(out_path / R.RUN))
        if main:
            R.remove_stale_temps(out_path)
        if (out_path / R.STATE).exists():
            resume_state = R.load_state(out_path)
            if tc.steps is not None and tc.steps < int(resume_state["step"]):
                raise ValueError(f"steps={tc.steps}: {out_path} is already at step {int(resume_state['step'])}; "
                                 f"give a larger --steps to train further")
        else:
            fresh_start = True
            print(f"{out_path}: no checkpoint yet (the run stopped before its first one); training starts again "
                  f"from step 0 with the run's config and seed", flush=True)
    else:
        assert new_run is not None
        model_settings, tc = new_run
        if data is None:
            data = "mnist-mini"
        if out_path is not None and main and R.inspect(out_path) == "run":  # (other ranks: rank 0 writes)
            hint = ("it has no checkpoint yet (it stopped before its first one): pass --resume to start it again "
                    "from step 0, or" if not (out_path / R.STATE).exists() else "pass --resume to continue it or")
            raise FileExistsError(f"{out_path} already holds a run; {hint} choose another --out")

    device = resolve_device(tc.device)
    dist_info = D.setup(str(device))
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)

    opts = {"root": root, **data_options} if root else dict(data_options)
    train_ds = gdata.load(data, "train", **opts) if isinstance(data, str) else data
    try:
        test_ds = gdata.load(data, "test", **opts) if isinstance(data, str) else None
    except (gdata.DataError, FileNotFoundError):
        test_ds = None
    if tc.binarize == "static":
        train_ds = _binarize_static(train_ds, tc.seed)
        test_ds = _binarize_static(test_ds, tc.seed + 1) if test_ds is not None else None

    torch.manual_seed(tc.seed)
    if resume:
        built = R.build(entry, saved_cfg)
    elif isinstance(model, str):
        built = build_model(model, train_ds, preset=preset, **model_settings)
    else:
        built = model
    check_data_kind(built, train_ds)
    if built.config.image_shape != train_ds.shape:
        raise ValueError(f"the model expects images of shape {built.config.image_shape} but {train_ds.name} has "
                         f"{train_ds.shape}")
    if resume_state is not None:
        R.load_weights(built, resume_state["model"], out_path / R.STATE, out_path / R.CONFIG)  # type: ignore[operator]
    built = built.to(device)
    if dist_info.enabled:
        D.broadcast_module(built)
        torch.manual_seed(tc.seed + 1000 * dist_info.rank)
    data_name = data if isinstance(data, str) else train_ds.name
    run_info = {"model_type": built.model_type, "data": data_name, "seed": tc.seed,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": str(device)}
    if data_options:
        run_info["data_options"] = data_options
    if command:
        run_info["command"] = command
    if out_path is not None and main and resume_state is None:
        # before the first step: config.json, then run.json (status "started"), so that a run killed before or
        # during its first checkpoint can be resumed from step 0
        R.save_config(built, out_path)
        R.write_run_json(out_path, {**run_info, "status": "started", "step": 0, "train_config": asdict(tc)})
    trainer = Trainer(built, train_ds, tc, out_path, test_ds, dist_info, resume_state, run_info)
    if fresh_start:
        trainer.run_info["restarted_from_step_0"] = True
    return trainer.fit()


def check_data_kind(model: GenerativeModel, ds: gdata.Dataset) -> None:
    """A model trains on one dataset kind (images, paired, unpaired): a mismatch names datasets that fit."""
    if model.data_kind == ds.kind:
        return
    what = {"images": "images (with labels or none)", "paired": "paired (source, target) images",
            "unpaired": "two unpaired image domains"}
    fits = gdata.names_of_kind(model.data_kind)
    hint = f"; datasets that fit: {', '.join(fits)}" if fits else ""
    raise ValueError(f"{model.model_type or type(model).__name__} trains on {what[model.data_kind]}, but "
                     f"{ds.name} holds {what[ds.kind]}{hint}")


def _binarize_static(ds: gdata.Dataset, seed: int) -> gdata.Dataset:
    """One fixed Bernoulli draw of every pixel (p = intensity / 255), stored back as 0/255. Drawn 1,024 images
    at a time (the same numbers as one draw of the whole shape), so what is held is the binarised uint8 copy,
    not float copies of the whole set (5x its size: a folder's memory map would otherwise be read whole)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(ds.x.shape, dtype=torch.uint8)
    for i in range(0, len(x), 1024):
        part = ds.x[i:i + 1024]
        x[i:i + 1024] = (torch.rand(part.shape, generator=g) < part.float() / 255).to(torch.uint8) * 255
    return replace(ds, x=x)


def _read_run_json(out: Path) -> dict[str, Any]:
    from .._io import read_json
    return read_json(out / R.RUN)
