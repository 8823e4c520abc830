"""Backend names → factories, so stages can be chosen by a string.

Built-in backends are recorded as ``"module:attribute"`` paths and imported only when used,
which keeps ``import facekit`` free of torch and mxnet. Third-party packages add backends
through the entry-point groups ``facekit.detectors`` and ``facekit.embedders``; a factory is
called as ``factory(model, **options)`` where ``model`` is a zoo name, a path or ``None``
(the backend's default). `FaceRecognizer` passes the options ``model_dir``,
``device`` and ``download`` to both stages and ``max_pixels`` to detectors, plus the
user's ``detector_options`` / ``embedder_options``.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Literal

from .errors import ConfigError

__all__ = ["Stage", "available", "create", "options_of", "register"]

Stage = Literal["detector", "embedder"]
"""The pipeline stages that have named backends."""

_BUILTIN: dict[str, dict[str, str]] = {
    "detector": {
        "scrfd": "facekit.detectors.scrfd:SCRFD",
        "mtcnn": "facekit.detectors.mtcnn:MTCNN",
        "retinaface": "facekit.detectors.retinaface:RetinaFace",
        "centerface": "facekit.detectors.centerface:CenterFace",
        "yunet": "facekit.detectors.yunet:YuNet",
    },
    "embedder": {
        "arcface": "facekit.embedders.arcface:ArcFace",
        "adaface": "facekit.embedders.adaface:AdaFace",
        "facenet": "facekit.embedders.facenet:FaceNet",
        "arcface-mxnet": "facekit.embedders.arcface_mxnet:ArcFaceMXNet",
    },
}

_ENTRY_POINT_GROUP = {"detector": "facekit.detectors", "embedder": "facekit.embedders"}


class _Registry:
    """Maps backend names to factories; one instance per process, filled at import time."""

    def __init__(self) -> None:
        self._added: dict[str, dict[str, Callable[..., Any]]] = {"detector": {}, "embedder": {}}

    def register(self, stage: Stage, name: str, factory: Callable[..., Any]) -> None:
        _check_stage(stage)
        if name in _BUILTIN[stage] or name in self._added[stage]:
            raise ConfigError(f"a {stage} backend named {name!r} is already registered")
        self._added[stage][name] = factory

    def names(self, stage: Stage) -> list[str]:
        _check_stage(stage)
        plugins = {ep.name for ep in entry_points(group=_ENTRY_POINT_GROUP[stage])}
        return sorted(set(_BUILTIN[stage]) | set(self._added[stage]) | plugins)

    def factory(self, stage: Stage, name: str) -> Callable[..., Any]:
        _check_stage(stage)
        if name in self._added[stage]:
            return self._added[stage][name]
        if name in _BUILTIN[stage]:
            module, _, attribute = _BUILTIN[stage][name].partition(":")
            loaded: Callable[..., Any] = getattr(importlib.import_module(module), attribute)
            return loaded
        for ep in entry_points(group=_ENTRY_POINT_GROUP[stage]):
            if ep.name == name:
                plugin: Callable[..., Any] = ep.load()
                return plugin
        raise ConfigError(f"unknown {stage} {name!r}; available: {', '.join(self.names(stage))}")


def _check_stage(stage: str) -> None:
    if stage not in _BUILTIN:
        raise ConfigError(f"stage must be 'detector' or 'embedder', got {stage!r}")


_REGISTRY = _Registry()


def register(stage: Stage, name: str, factory: Callable[..., Any]) -> None:
    """Register ``factory`` as the ``stage`` backend called ``name``.

    Raises:
        ConfigError: the name is taken.
    """
    _REGISTRY.register(stage, name, factory)


def available(stage: Stage) -> list[str]:
    """Names of the registered ``stage`` backends, sorted."""
    return _REGISTRY.names(stage)


def options_of(stage: Stage, name: str) -> frozenset[str] | None:
    """The keyword options the ``stage`` backend ``name`` takes, following ``**options``
    that a class hands on to its base class's ``__init__``; ``None`` when that cannot be
    told (a factory without a signature, or one taking any keyword).

    Raises:
        ConfigError: no backend has that name.
    """
    return _keywords(_REGISTRY.factory(stage, name))


def _keywords(factory: Callable[..., Any]) -> frozenset[str] | None:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    named = frozenset(
        p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):
        return named
    if isinstance(factory, type):
        for base in factory.__mro__[1:]:
            if base is not object and "__init__" in vars(base):
                inherited = _keywords(vars(base)["__init__"])
                return None if inherited is None else named | inherited
    return None


def create(
    stage: Stage, name: str, model: str | os.PathLike[str] | None = None, **options: Any
) -> Any:
    """Build the ``stage`` backend ``name`` for ``model`` with backend ``options``.

    Raises:
        ConfigError: no backend has that name, or it takes no such option.
    """
    factory = _REGISTRY.factory(stage, name)
    known = _keywords(factory)
    unknown = sorted(set(options) - known) if known is not None else []
    if unknown:
        raise ConfigError(f"the {stage} {name!r} takes no option {', '.join(map(repr, unknown))}")
    try:
        signature = inspect.signature(factory)
    except ValueError:  # no signature to check (a builtin or C factory): let it decide
        return factory(model, **options)
    try:
        signature.bind(model, **options)
    except TypeError as exc:
        raise ConfigError(f"the {stage} {name!r} ({exc})") from None
    return factory(model, **options)
