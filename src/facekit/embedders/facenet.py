"""FaceNet (Schroff et al. 2015) as Inception-ResNet-v1 on torch, with facenet-pytorch's
released VGGFace2 and CASIA-WebFace weights.

Input: 160×160 RGB crops, ``(x - 127.5) / 128``. By default crops are aligned to the
5-point ArcFace template scaled to 160 (``arcface160``). The weights were trained and
evaluated on *box* crops (MTCNN box, margin, resized, no rotation); ``alignment="box"``
reproduces those (``box160``), which needs a detector box for every face.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ._torch_base import TorchEmbedder

__all__ = ["FaceNet"]

_TEMPLATES = {"template": "arcface160", "box": "box160"}


class FaceNet(TorchEmbedder):
    """FaceNet embedder, flip-averaged and L2-normalised, 512-d.

    Args:
        model: zoo name (default ``facenet_vggface2``) or a state-dict path in
            facenet-pytorch's layout (its ``logits`` classifier is ignored).
        alignment: ``"template"`` (5-point similarity to ``arcface160``) or ``"box"``
            (facenet-pytorch's box crop, ``box160``).
        **options: see `TorchEmbedder`.
    """

    _backend = "facenet"

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        alignment: Literal["template", "box"] = "template",
        **options: Any,
    ) -> None:
        if alignment not in _TEMPLATES:
            raise ConfigError(f"alignment must be 'template' or 'box', got {alignment!r}")
        super().__init__(model, **options)
        self.alignment = alignment

    @property
    def template(self) -> str:
        """``arcface160`` or ``box160``, after ``alignment``."""
        return _TEMPLATES[self.alignment]

    def _weights(self, state: Mapping[str, Any], path: Path) -> dict[str, Any]:
        return {k: v for k, v in state.items() if not k.startswith("logits.")}

    def _architecture_of(self, weights: Mapping[str, Any]) -> str | None:
        return "inception_resnet_v1"

    def _build(self, architecture: str) -> Any:
        from ._facenet_nets import InceptionResnetV1

        return InceptionResnetV1()
