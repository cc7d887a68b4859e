"""The one registry: model name -> (config class, model class).

Each model file registers its families with `@register("name", ConfigClass)`. The model files are discovered:
every module in genzoo/models/ (pkgutil), and every `genzoo.models` entry point of an installed package
(importlib.metadata), so a new family is one new file, and a plug-in package needs only

    [project.entry-points."genzoo.models"]
    mymodel = "mypkg.mymodel"          # a module whose import registers models (or a callable that does)

The CLI, `genzoo.load` and the explorer read this registry; nothing else dispatches on model names.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

_MODELS: dict[str, "Entry"] = {}
MODELS_PACKAGE = "genzoo.models"  # every module in it is a model file (one per family); `base` holds no model
ENTRY_POINT_GROUP = "genzoo.models"  # other installed packages: [project.entry-points."genzoo.models"]
_SKIP = {"base"}
_imported = False


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


def model_modules() -> list[str]:
    """The model files of genzoo/models/, discovered (pkgutil): a new family is one new file there."""
    pkg = importlib.import_module(MODELS_PACKAGE)
    return sorted(f"{MODELS_PACKAGE}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)
                  if not m.name.startswith("_") and m.name not in _SKIP)


def _entry_points() -> list:
    from importlib.metadata import entry_points
    return list(entry_points(group=ENTRY_POINT_GROUP))


def _import_all() -> None:
    """Import every model file once: genzoo/models/*.py, then each `genzoo.models` entry point of an installed
    package (its value is a module, imported, or a callable, called, that registers models with @register)."""
    global _imported
    if _imported:
        return
    _imported = True
    try:
        for mod in model_modules():
            importlib.import_module(mod)
        for ep in _entry_points():
            try:
                obj = ep.load()
            except Exception as e:
                raise ImportError(f"entry point {ep.name!r} = {ep.value!r} (group {ENTRY_POINT_GROUP!r}) failed "
                                  f"to import: {type(e).__name__}: {e}") from e
            if callable(obj) and not isinstance(obj, type):
                obj()
    except BaseException:
        _imported = False
        raise


def refresh() -> None:
    """Discover again (after installing a plug-in or adding a model file in a running process)."""
    global _imported
    _imported = False
    importlib.invalidate_caches()
    _import_all()


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
