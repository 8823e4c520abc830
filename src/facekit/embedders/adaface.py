"""AdaFace (Kim et al., CVPR 2022) on torch: IR-18/50/101 backbones, official checkpoints.

Crops are aligned to the ArcFace 112×112 template and fed as AdaFace was trained: **BGR**,
``(x / 255 - 0.5) / 0.5``. The norm of the raw feature is AdaFace's image-quality proxy
(`embed_with_norms`): low norms mark blurred, dark or badly aligned faces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ._torch_base import TorchEmbedder

__all__ = ["AdaFace"]

_UNIT = re.compile(r"body\.(\d+)\.")


class AdaFace(TorchEmbedder):
    """AdaFace embedder, flip-averaged and L2-normalised, 512-d.

    Takes the arguments of `TorchEmbedder`. ``model`` is a zoo name (default
    ``adaface_ir101_webface12m``) or a checkpoint path: an official ``.ckpt``
    (``{"state_dict": {"model.…": …, "head.…": …}}``) or a bare backbone state dict. The
    variant (IR-18/34/50/101) is read from the keys and must match the zoo's.
    """

    _backend = "adaface"

    def _weights(self, state: Mapping[str, Any], path: Path) -> dict[str, Any]:
        inner = state.get("state_dict", state)
        if not isinstance(inner, Mapping):
            raise ModelError(f"{path}: 'state_dict' is a {type(inner).__name__}, not a mapping")
        if any(key.startswith("model.") for key in inner):
            # The training checkpoint: backbone under "model.", the margin head under "head.".
            return {k[len("model.") :]: v for k, v in inner.items() if k.startswith("model.")}
        return dict(inner)

    def _architecture_of(self, weights: Mapping[str, Any]) -> str | None:
        from ._adaface_nets import architecture_of_units

        units = {int(m.group(1)) for key in weights if (m := _UNIT.match(key))}
        return architecture_of_units(len(units)) if units else None

    def _build(self, architecture: str) -> Any:
        from ._adaface_nets import ARCHITECTURES, IResNet

        if architecture not in ARCHITECTURES:
            raise ModelError(
                f"unknown AdaFace architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}"
            )
        return IResNet(architecture)
