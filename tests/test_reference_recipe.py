"""facekit's MobileFaceNet embeddings of colour photos against an independent reference.

The reference is the documented recipe (shared/models/MANIFEST.md, "MobileFaceNet ONNX"),
written here with numpy, OpenCV and onnxruntime only, none of facekit's code: the detector's
5 landmarks -> least-squares similarity (Umeyama) onto the standard ArcFace 112x112 template
-> ``cv2.warpAffine`` -> RGB, ``(x - 127.5) / 128``, NCHW -> the ONNX graph, plus the same for
the horizontally mirrored crop -> sum -> L2 normalisation. The landmarks are taken from
facekit's detector (its boxes and landmarks are checked against their own reference in the
detector tests).

ORL faces are grayscale, so the AUC and threshold tests cannot see a channel-order error;
these colour photos can, and so can they see a missing flip. The second test shows both: the
reference fed BGR, or without the mirrored crop, lies outside the tolerance the first test
allows, so a facekit that made either error would fail it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from facekit import FaceRecognizer

# InsightFace's ArcFace 112x112 template: eyes, nose tip, mouth corners (x, y) in pixels.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
CROP = 112
MEAN, STD = 127.5, 128.0  # MANIFEST.md: "RGB, (x - 127.5) / 128"

PHOTOS = (
    "openface/lennon-1.jpg",
    "openface/lennon-2.jpg",
    "openface/clapton-1.jpg",
    "openface/clapton-2.jpg",
    "openface/carell.jpg",
    "openface/adams.jpg",
    "facenet_pytorch/angelina_jolie/1.jpg",
    "facenet_pytorch/kate_siegel/1.jpg",
    "facenet_pytorch/paul_rudd/1.jpg",
    "facenet_pytorch/shea_whigham/1.jpg",
    "insightface_samples/t1.jpg",  # 6 faces
)
FACES = 16

# cos(facekit, reference) must exceed this for every face; pair similarities must agree
# within PAIR_TOLERANCE. Measured: cos >= 0.999999, pair similarities within 2e-4.
COSINE = 0.999
PAIR_TOLERANCE = 1e-3


def umeyama(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity ``2x3`` matrix taking ``source`` points to ``target``
    (Umeyama 1991, eq. 40-42), both ``(K, 2)``."""
    count = source.shape[0]
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_c, target_c = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(target_c.T @ source_c / count)
    signs = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ np.diag(signs) @ vt
    scale = (singular * signs).sum() / ((source_c**2).sum() / count)
    return np.hstack([scale * rotation, (target_mean - scale * rotation @ source_mean)[:, None]])


class Reference:
    """The documented recipe, with switches to break it on purpose."""

    def __init__(self, model: Path) -> None:
        self.session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def crop(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        matrix = umeyama(landmarks.astype(np.float64), ARCFACE_TEMPLATE)
        return cv2.warpAffine(rgb, matrix, (CROP, CROP), borderValue=(0, 0, 0))

    def raw(self, crop: np.ndarray) -> np.ndarray:
        blob = ((crop.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)[None]
        return np.asarray(self.session.run(None, {self.input: np.ascontiguousarray(blob)})[0][0])

    def embed(self, crop: np.ndarray, *, bgr: bool = False, flip: bool = True) -> np.ndarray:
        if bgr:
            crop = crop[:, :, ::-1]
        vector = self.raw(crop) + (self.raw(crop[:, ::-1]) if flip else 0.0)
        normalised: np.ndarray = vector / np.linalg.norm(vector)
        return normalised


@pytest.fixture(scope="module")
def embeddings(models_dir: Path, data_dir: Path) -> dict[str, np.ndarray]:
    """facekit's embeddings and the reference's (correct, BGR-fed, unflipped), ``(16, 128)``
    each, same face order."""
    recognizer = FaceRecognizer(
        detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d", model_dir=models_dir
    )
    reference = Reference(models_dir / "mobilefacenet_onnx/mobilefacenet_128d.onnx")
    rows: dict[str, list[np.ndarray]] = {"facekit": [], "reference": [], "bgr": [], "no_flip": []}
    for relative in PHOTOS:
        path = data_dir / relative
        bgr_image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert bgr_image is not None, path
        rgb = cv2.cvtColor(bgr_image, cv2.COLOR_BGR2RGB)
        for face in recognizer.faces(path):
            crop = reference.crop(rgb, np.asarray(face.detection.landmarks))
            rows["facekit"].append(face.embedding)
            rows["reference"].append(reference.embed(crop))
            rows["bgr"].append(reference.embed(crop, bgr=True))
            rows["no_flip"].append(reference.embed(crop, flip=False))
    return {name: np.stack(vectors) for name, vectors in rows.items()}


def test_embeddings_match_the_independent_reference(
    embeddings: dict[str, np.ndarray], report: Callable[[str], None]
) -> None:
    facekit, reference = embeddings["facekit"], embeddings["reference"]
    assert facekit.shape == reference.shape == (FACES, 128)
    cosines = (facekit * reference).sum(axis=1)
    # what verification and identification see: every pair's similarity
    pair_error = float(np.abs(facekit @ facekit.T - reference @ reference.T).max())
    report(
        f"MobileFaceNet vs the independent reference recipe on {FACES} colour faces: "
        f"min cosine {cosines.min():.7f}, pair similarities within {pair_error:.1e}"
    )
    assert cosines.min() > COSINE, cosines
    assert pair_error < PAIR_TOLERANCE


def test_the_reference_check_sees_channel_order_and_flip(
    embeddings: dict[str, np.ndarray],
) -> None:
    """The comparison above can fail: a BGR-fed or unflipped embedder lands outside its
    tolerance on every one of these faces (measured: cos <= 0.979 for BGR, <= 0.996 without
    the flip; pair similarities off by up to 0.15 and 0.08)."""
    facekit = embeddings["facekit"]
    for broken in ("bgr", "no_flip"):
        wrong = embeddings[broken]
        assert (facekit * wrong).sum(axis=1).max() < COSINE, broken
        assert np.abs(facekit @ facekit.T - wrong @ wrong.T).max() > 20 * PAIR_TOLERANCE, broken
