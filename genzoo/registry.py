"""The one registry: model name -> (config class, model class).

Each model file registers its families with `@register("name", ConfigClass)`. The CLI, `genzoo.load` and the
explorer read this registry; nothing else dispatches on model names.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

_MODELS: dict[str, "Entry"] = {}
# Model files imported on first use of the registry (one file per family).
_MODULES = (
    "genzoo.models.autoencoder",
    "genzoo.models.vae",
    "genzoo.models.gan",
    "genzoo.models.translation",
    "genzoo.models.cyclegan",
    "genzoo.models.diffusion",
)


@dataclass(frozen=True)
class Entry:
    name: str
    config_class: type
    model_class: type
    summary: str


def register(name: str, config_class: type, summary: str = "") -> Callable[[type], type]:
    def deco(model_class: type) -> type:
        if name in _MODELS and _MODELS[name].model_class is not model_class:
            raise ValueError(f"model name {name!r} is registered twice")
        model_class.model_type = name
        doc = summary or (model_class.__doc__ or "").strip().splitlines()[0]
        _MODELS[name] = Entry(name, config_class, model_class, doc)
        return model_class

    return deco


def _import_all() -> None:
    for mod in _MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a missing family file is fine; a broken import inside one is not
                raise


def names() -> list[str]:
    _import_all()
    return sorted(_MODELS)


def get(name: str) -> Entry:
    _import_all()
    try:
        return _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(_MODELS))}") from None


def entries() -> list[Entry]:
    _import_all()
    return [_MODELS[n] for n in sorted(_MODELS)]
