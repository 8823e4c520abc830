"""Named bundles of a detector and an embedder: what ``FaceRecognizer(preset=...)`` builds.

Interface::

    PRESETS: dict[str, Preset]          # "open", "buffalo_l", "buffalo_m", "buffalo_s"
    DEFAULT_PRESET = "open"
    get_preset(name) -> Preset           # ConfigError for an unknown name
    Preset.research_only                 # from the zoo entries of its two models
    choose_stage(stage, preset, backend, model) -> (backend, model)   # explicit wins

A preset names zoo models only; their files, licences, preprocessing and thresholds come
from the zoo table (`facekit.zoo.MODELS`), so nothing is written twice. Explicit
``detector=`` / ``embedder=`` / ``*_model=`` arguments of `FaceRecognizer` win over the
preset's. The default is ``"open"``: weights anyone may use commercially, fetched from the
Python package index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, TypeVar

from .errors import ConfigError
from .zoo import MODELS, get_spec

B = TypeVar("B")  # a backend: a registered name or an instance

__all__ = ["DEFAULT_PRESET", "PRESETS", "Preset", "choose_stage", "get_preset"]

Stage = Literal["detector", "embedder"]

_FILE_BACKEND: dict[Stage, str] = {"detector": "scrfd", "embedder": "arcface"}
"""The backend that runs a model file given without a backend (the ONNX ones, as before
presets existed)."""


@dataclass(frozen=True, slots=True)
class Preset:
    """A detector and an embedder that go together.

    Attributes:
        name: preset name (``"open"``).
        detector: registered detector backend (``"centerface"``).
        detector_model: zoo name of the detector's weights.
        embedder: registered embedder backend (``"arcface"``).
        embedder_model: zoo name of the embedder's weights.
        summary: one line for ``facekit models presets`` and the README.
    """

    name: str
    detector: str
    detector_model: str
    embedder: str
    embedder_model: str
    summary: str

    @property
    def research_only(self) -> bool:
        """True when either model's weights may not be used commercially (zoo table)."""
        return any(
            get_spec(model).research_only for model in (self.detector_model, self.embedder_model)
        )

    @property
    def licenses(self) -> tuple[str, str]:
        """The detector's and the embedder's licence, as the zoo table states them."""
        return get_spec(self.detector_model).license, get_spec(self.embedder_model).license


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "open",
            "centerface",
            "centerface",
            "arcface",
            "dlib_resnet_v1",
            "CenterFace (MIT) + dlib's ResNet (public domain) as ONNX; both from the package "
            "index; commercial use allowed",
        ),
        Preset(
            "buffalo_l",
            "scrfd",
            "scrfd_10g",
            "arcface",
            "arcface_r50",
            "InsightFace buffalo_l: SCRFD-10G + ArcFace R50 (WebFace600K); the most accurate; "
            "non-commercial research only",
        ),
        Preset(
            "buffalo_m",
            "scrfd",
            "scrfd_2.5g",
            "arcface",
            "arcface_r50",
            "InsightFace buffalo_m: SCRFD-2.5G + ArcFace R50; non-commercial research only",
        ),
        Preset(
            "buffalo_s",
            "scrfd",
            "scrfd_500m",
            "arcface",
            "arcface_mbf",
            "InsightFace buffalo_s: SCRFD-500M + MobileFaceNet (WebFace600K); small and fast; "
            "non-commercial research only",
        ),
    )
}
"""Built-in presets by name."""

DEFAULT_PRESET = "open"
"""What ``FaceRecognizer()`` builds when no preset and no models are named."""


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        ConfigError: no such preset (the message lists the known ones).
    """
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


def choose_stage(
    stage: Stage,
    preset: Preset,
    backend: B | None,
    model: str | os.PathLike[str] | None,
) -> tuple[B | str, str | os.PathLike[str] | None]:
    """The backend and model that build one stage: what the caller gave wins.

    - a backend (a name or an instance): it, with ``model`` (``None``: the backend's default);
    - only a model: a zoo name runs on its zoo entry's backend, a file on ``"scrfd"`` /
      ``"arcface"`` (the ONNX backends);
    - neither: the preset's backend and model.
    """
    if backend is not None:
        return backend, model
    if model is None:
        if stage == "detector":
            return preset.detector, preset.detector_model
        return preset.embedder, preset.embedder_model
    if isinstance(model, str) and model in _ZOO_NAMES:
        return get_spec(model).backend, model
    return _FILE_BACKEND[stage], model


_ZOO_NAMES = frozenset(spec.name for spec in MODELS)
