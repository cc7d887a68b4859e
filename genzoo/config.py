"""Frozen dataclass configs: parse, check, override, save.

Every model has a frozen dataclass config saved as `config.json` beside its weights. Training settings live
in `TrainConfig`. `--config FILE.yaml` and `--set key=value` overrides are checked against the fields of both:
an unknown key or a value of the wrong type is an error that lists the valid keys.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class TrainConfig:
    """How to train (not what): shared by every model family."""

    epochs: int | None = None  # stop after this many passes over the training data
    steps: int | None = None  # or after this many steps (one step = every phase once, with its repeats)
    batch_size: int = 128
    seed: int = 0
    lr_schedule: str = "constant"  # constant | cosine | step | linear
    lr_step_size: int = 1000  # for lr_schedule=step: multiply the LR by lr_gamma every this many steps
    lr_gamma: float = 0.5
    # for lr_schedule=linear: constant LR until step lr_decay_start (a whole number; or a number between 0 and 1:
    # that fraction of the run; default: half the run, or 0 when lr_decay_steps is given), then linear decay to 0
    # over lr_decay_steps steps (default: until the run's last step). Giving either selects lr_schedule=linear.
    lr_decay_start: int | float | None = None
    lr_decay_steps: int | None = None
    grad_clip: float | None = None  # clip each phase's gradient norm to this value
    log_every: int = 50  # metrics.csv row + progress-bar update every N steps
    sample_every: int = 500  # sample/reconstruction grid PNG every N steps (0: only at the end)
    checkpoint_every: int = 1000  # checkpoint every N steps (and always at the end)
    validate: bool = True  # validation loss on the test split at each epoch end
    binarize: str = "none"  # none | static | dynamic (Bernoulli-sample pixel intensities; for likelihood work)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int | None = None  # torch CPU threads (default: torch's choice)
    progress: bool = True
    gif: bool = False  # also write the sample grids as an animation, samples/training.gif
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast of forward + loss; fp16 on CUDA only; weights stay fp32)
    channels_last: bool | str = "auto"  # conv weights + image batches channels-last; auto: where measured faster
    compile: bool = False  # torch.compile each phase's loss (needs a C++ compiler on CPU, Triton on CUDA)

    def __post_init__(self) -> None:
        if self.epochs is None and self.steps is None:
            object.__setattr__(self, "epochs", 1)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        decay = {k: getattr(self, k) for k in ("lr_decay_start", "lr_decay_steps") if getattr(self, k) is not None}
        if decay and self.lr_schedule == "constant":  # pix2pix's / cyclegan's keys: constant, then linear to 0
            object.__setattr__(self, "lr_schedule", "linear")
        elif decay and self.lr_schedule != "linear":
            raise ValueError(f"{', '.join(f'{k}={v}' for k, v in decay.items())} set the linear schedule's decay, "
                             f"but lr_schedule={self.lr_schedule!r}; use lr_schedule=linear or drop them")
        start = self.lr_decay_start
        if isinstance(start, float) and start.is_integer():  # 900.0 is step 900 (as YAML and run.json give it)
            object.__setattr__(self, "lr_decay_start", start := int(start))
        if isinstance(start, bool) or (isinstance(start, float) and not 0 < start < 1) or (
                isinstance(start, int) and start < 0):
            raise ValueError(f"lr_decay_start={start!r}: expected a step (a whole number >= 0) or a fraction of the "
                             f"run (a number between 0 and 1, e.g. 0.5)")
        if self.lr_decay_steps is not None and self.lr_decay_steps < 1:
            raise ValueError(f"lr_decay_steps={self.lr_decay_steps}: expected an integer >= 1 (the decay's length in "
                             f"steps), or leave it unset to decay until the run's last step")
        check_choice("binarize", self.binarize, ("none", "static", "dynamic"))
        check_choice("precision", self.precision, ("fp32", "bf16", "fp16"))
        if self.channels_last not in (True, False, "auto"):
            raise ValueError(f"channels_last={self.channels_last!r} is not valid; expected true, false or auto")
        for name, least in (("epochs", 1), ("steps", 1), ("batch_size", 1), ("log_every", 1),
                            ("checkpoint_every", 1), ("sample_every", 0)):
            value = getattr(self, name)
            if value is not None and value < least:
                raise ValueError(f"{name}={value}: expected an integer >= {least} ({_OPTION_HINT.get(name, '')}"
                                 f"--set {name}=N{_LEAST_HINT.get(name, '')})")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip={self.grad_clip}: expected a positive number, or none for no clipping")


LR_SCHEDULES = ("constant", "cosine", "step", "linear")
_OPTION_HINT = {"epochs": "--epochs N or ", "steps": "--steps N or ", "batch_size": "--batch-size N or "}
_LEAST_HINT = {"sample_every": "; 0 writes one grid at the end", "checkpoint_every": "; the last step is always "
               "checkpointed"}


def check_choice(field: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{field}={value!r} is not valid; expected one of: {', '.join(map(str, choices))}")


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls) if f.init]


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(cls: type, key: str, value: Any) -> Any:
    """Convert `value` (from YAML or a `--set` string) to the declared type of `cls.key`, or raise."""
    hint = _type_hints(cls)[key]
    try:
        return _coerce(hint, value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{key}={value!r}: expected {_type_name(hint)} ({e})") from None


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _coerce(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value)
            except (ValueError, TypeError) as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors) or "no matching type")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"not a list: {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        if len(args) != len(value):
            raise ValueError(f"expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v) for a, v in zip(args, value))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise TypeError("a boolean is not an integer")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"not an integer: {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool):
            raise TypeError("a boolean is not a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"not a string: {value!r}")
        return value
    if hint is Any:
        return value
    raise TypeError(f"unsupported config type {hint}")


def from_dict(cls: type, data: dict[str, Any], *, source: str = "config") -> Any:
    """Build `cls` from a dict, checking every key and value type."""
    valid = field_names(cls)
    unknown = [k for k in data if k not in valid]
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
    return cls(**{k: coerce(cls, k, v) for k, v in data.items()})


def to_dict(cfg: Any) -> dict[str, Any]:
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def parse_sets(pairs: list[str] | None) -> dict[str, str]:
    """['a=1', 'b=x'] -> {'a': '1', 'b': 'x'}; a pair without '=' is an error."""
    out: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            raise ValueError(f"--set {p!r}: expected key=value")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such config file") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of key: value at the top level")
    return data


def split_settings(
    model_cls: type, settings: dict[str, Any], *, source: str = "settings"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a flat dict into (model config keys, TrainConfig keys); unknown keys are an error."""
    mkeys, tkeys = set(field_names(model_cls)), set(field_names(TrainConfig))
    model, train, unknown = {}, {}, []
    for k, v in settings.items():
        if k in mkeys:
            model[k] = v
        elif k in tkeys:
            train[k] = v
        else:
            unknown.append(k)
    if unknown:
        raise ValueError(
            f"{source}: unknown key(s) {', '.join(unknown)}.\n"
            f"  model keys ({model_cls.__name__}): {', '.join(sorted(mkeys))}\n"
            f"  training keys: {', '.join(sorted(tkeys))}"
        )
    return model, train


def preset_settings(model_cls: type, preset: str | None, name: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """The (model config keys, TrainConfig keys) of preset `preset` of `model_cls` ({}, {} for None). A preset
    is a recipe: its model keys build the model; its training keys (batch size, LR schedule, gradient clipping,
    ...) are defaults of the run that `--set` and the command's options override."""
    if preset is None:
        return {}, {}
    presets = model_cls.PRESETS
    if preset not in presets:
        raise ValueError(f"preset {preset!r} is not defined for {name or model_cls.__name__}; presets: "
                         f"{', '.join(presets) or 'none'}")
    return split_settings(model_cls, dict(presets[preset]), source=f"preset {preset!r} of {name or model_cls.__name__}")


def replace(cfg: Any, **changes: Any) -> Any:
    return dataclasses.replace(cfg, **changes)
