"""The verification pipeline end to end on real weights and real photos."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facekit import FaceRecognizer, Thresholds, Verification
from facekit.cli import main as cli_main
from facekit.detectors import SCRFD
from facekit.embedders import ArcFace
from facekit.errors import ConfigError, ImageError, MultipleFacesError, NoFaceError, StreamError
from facekit.evaluation import calibrate, pair_scores, roc_auc
from facekit.zoo import get_spec

REPO = Path(__file__).resolve().parents[1]


def _calibration_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "calibrate", REPO / "scripts/calibrate_thresholds.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def recognizer(models_dir: Path) -> FaceRecognizer:
    return FaceRecognizer(
        detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d", model_dir=models_dir
    )


@pytest.fixture(scope="module")
def calibration_set(shared_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return _calibration_script().embed_calibration_set(
        shared_dir, "scrfd_2.5g", "mobilefacenet_128d"
    )


def test_same_and_different_people(recognizer: FaceRecognizer, data_dir: Path) -> None:
    openface = data_dir / "openface"
    same = recognizer.verify(openface / "lennon-1.jpg", openface / "lennon-2.jpg")
    assert isinstance(same, Verification)
    assert same.same
    assert same.verdict == "same"
    assert same.similarity > 0.5
    assert recognizer.verify(openface / "clapton-1.jpg", openface / "clapton-2.jpg").same
    for a, b in [("lennon-1", "clapton-1"), ("carell", "adams"), ("lennon-2", "carell")]:
        different = recognizer.verify(openface / f"{a}.jpg", openface / f"{b}.jpg")
        assert not different.same
        assert different.verdict == "different"
        assert different.similarity < 0.2
    assert (
        same.threshold == same.thresholds.likely == get_spec("mobilefacenet_128d").thresholds.likely
    )
    # the faces used are returned with their boxes: Lennon's face in lennon-1 is large
    x1, _y1, x2, _y2 = same.face_a.box
    assert x2 - x1 > 400
    assert same.face_a.embedding.shape == (128,)


def test_roc_auc_on_all_pairs_of_the_shared_photos(
    calibration_set: tuple[np.ndarray, np.ndarray], report: Callable[[str], None]
) -> None:
    embeddings, labels = calibration_set
    genuine, impostor = pair_scores(embeddings, labels)
    auc = roc_auc(genuine, impostor)
    report(
        f"MobileFaceNet ROC AUC on facekit-shared-v1: {auc:.6f} "
        f"({genuine.size} genuine, {impostor.size} impostor pairs)"
    )
    assert genuine.size == 1803
    assert impostor.size == 83275
    assert auc > 0.999  # measured 0.99995 (scripts/calibrate_thresholds.py)
    assert np.median(genuine) > 0.6 > 0.1 > np.median(impostor)


def test_zoo_thresholds_reproduce_from_the_stated_protocol(
    calibration_set: tuple[np.ndarray, np.ndarray],
) -> None:
    genuine, impostor = pair_scores(*calibration_set)
    measured, _, _ = calibrate(genuine, impostor)
    recorded = get_spec("mobilefacenet_128d").thresholds
    assert recorded is not None
    assert abs(measured.likely - recorded.likely) < 0.01
    assert abs(measured.same - recorded.same) < 0.01
    assert "FAR 0.01" in recorded.protocol
    assert "FAR 0.001" in recorded.protocol


def test_verdict_tiers_and_threshold_override(
    recognizer: FaceRecognizer, models_dir: Path, data_dir: Path
) -> None:
    a, b = data_dir / "openface/lennon-1.jpg", data_dir / "openface/lennon-2.jpg"
    similarity = recognizer.verify(a, b).similarity
    strict = FaceRecognizer(
        detector=recognizer.detector,
        embedder=recognizer.embedder,
        thresholds=Thresholds(likely=similarity - 0.05, same=similarity + 0.05),
    )
    result = strict.verify(a, b)
    assert result.verdict == "likely same"
    assert result.same
    assert result.similarity == pytest.approx(similarity, abs=1e-6)
    assert Thresholds(0.2, 0.3).verdict(0.1) == "different"
    with pytest.raises(ValueError, match="likely <= same"):
        Thresholds(0.5, 0.3)


def test_face_policies_on_a_two_person_photo(
    recognizer: FaceRecognizer, models_dir: Path, data_dir: Path
) -> None:
    photo = data_dir / "openface/longoria-cooper.jpg"
    faces = recognizer.faces(photo)
    assert len(faces) == 2
    by_x = sorted(faces, key=lambda f: f.box[0])
    assert abs((by_x[0].box[0] + by_x[0].box[2]) / 2 - 91) < 25  # Eva Longoria, x ≈ 91
    assert abs((by_x[1].box[0] + by_x[1].box[2]) / 2 - 191) < 25  # Bradley Cooper, x ≈ 191
    largest = max(faces, key=lambda f: f.detection.area)
    assert np.allclose(recognizer.embed(photo), largest.embedding, atol=1e-6)
    best = max(faces, key=lambda f: f.detection.score)
    assert np.allclose(recognizer.embed(photo, face="best"), best.embedding, atol=1e-6)
    assert np.allclose(recognizer.embed(photo, face=1), faces[1].embedding, atol=1e-6)
    with pytest.raises(MultipleFacesError, match="2 faces"):
        recognizer.embed(photo, face="error")
    with pytest.raises(NoFaceError, match="index 5"):
        recognizer.embed(photo, face=5)
    with pytest.raises(ConfigError):
        recognizer.embed(photo, face="smallest")  # type: ignore[arg-type]
    # Bradley Cooper here and in facenet-pytorch's aligned crop of him: the same person
    crop = data_dir / "facenet_pytorch/test_images_aligned/bradley_cooper/1.png"
    padded = FaceRecognizer(
        detector=SCRFD("scrfd_2.5g", model_dir=models_dir, padding=0.5),
        embedder=recognizer.embedder,
    )
    cooper = float(by_x[1].embedding @ padded.embed(crop))
    longoria = float(by_x[0].embedding @ padded.embed(crop))
    assert cooper > recognizer.thresholds.likely > longoria


def test_errors_name_the_image(recognizer: FaceRecognizer, data_dir: Path, tmp_path: Path) -> None:
    lennon, empty = data_dir / "openface/lennon-1.jpg", data_dir / "mtcnn/no-faces.jpg"
    with pytest.raises(NoFaceError, match=r"no face found in image 2 \(.*no-faces.jpg\)"):
        recognizer.verify(lennon, empty)
    with pytest.raises(NoFaceError, match="image 1"):
        recognizer.verify(empty, lennon)
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    with pytest.raises(ImageError, match=r"notes\.jpg"):
        recognizer.verify(lennon, text)
    small = FaceRecognizer(
        detector=recognizer.detector, embedder=recognizer.embedder, max_pixels=1000
    )
    with pytest.raises(ImageError, match="too large"):
        small.verify(lennon, lennon)
    assert recognizer.faces(empty) == []


def test_instances_and_names_are_checked(models_dir: Path) -> None:
    detector = SCRFD("scrfd_500m", model_dir=models_dir)
    embedder = ArcFace("mobilefacenet_128d", model_dir=models_dir)
    with pytest.raises(ConfigError, match="detector_model applies"):
        FaceRecognizer(detector=detector, embedder=embedder, detector_model="scrfd_2.5g")
    with pytest.raises(ConfigError, match="implementing"):
        FaceRecognizer(detector=object(), embedder=embedder)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown detector 'nope'"):
        FaceRecognizer(detector="nope", embedder=embedder)


def test_cli_verify_text_json_and_errors(
    models_dir: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [
        "--detector-model",
        "scrfd_2.5g",
        "--embedder-model",
        "mobilefacenet_128d",
        "--model-dir",
        str(models_dir),
    ]
    a, b = str(data_dir / "openface/lennon-1.jpg"), str(data_dir / "openface/lennon-2.jpg")
    assert cli_main(["verify", a, b, *common]) == 0
    assert capsys.readouterr().out.startswith("SAME: similarity 0.6")
    assert cli_main(["verify", a, str(data_dir / "openface/carell.jpg"), *common, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "different"
    assert report["same"] is False
    assert report["embedder"] == "mobilefacenet_128d"
    assert len(report["face_a"]["landmarks"]) == 5
    assert cli_main(["verify", a, str(data_dir / "mtcnn/no-faces.jpg"), *common]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("facekit: error: no face found in image 2")
    assert "\n" not in err


def test_cli_models_list_and_verify(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "scrfd_500m" in listing
    assert "RESEARCH ONLY" in listing
    rows = {line.split()[0]: line.split() for line in listing.splitlines()[1:]}
    assert rows["adaface_ir18_casia"][3:] == ["?", "no", "RESEARCH", "ONLY"]  # size unpublished
    assert rows["mtcnn"][2:4] == ["mtcnn", "2.0"]
    assert "RESEARCH" not in rows["mtcnn"]
    assert (
        cli_main(
            ["models", "verify", "scrfd_500m", "mobilefacenet_128d", "--model-dir", str(models_dir)]
        )
        == 0
    )
    assert capsys.readouterr().out.count("ok (") == 2


def test_command_line_entry_point_runs(models_dir: Path, data_dir: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "facekit",
            "verify",
            str(data_dir / "openface/clapton-1.jpg"),
            str(data_dir / "openface/clapton-2.jpg"),
            "--detector-model",
            "scrfd_500m",
            "--embedder-model",
            "mobilefacenet_128d",
            "--model-dir",
            str(models_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["same"] is True


def test_import_is_light() -> None:
    code = (
        "import sys, facekit; from facekit import FaceRecognizer, load_image; "
        "heavy = [m for m in ('torch', 'mxnet', 'tensorflow') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_example_runs(models_dir: Path, data_dir: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples/verify_two_photos.py"),
            str(data_dir / "openface/lennon-1.jpg"),
            str(data_dir / "openface/lennon-2.jpg"),
            "--model-dir",
            str(models_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "-> same" in done.stdout
    assert "verdict='same'" in done.stdout


def test_options_a_backend_does_not_take_are_a_config_error(models_dir: Path) -> None:
    with pytest.raises(ConfigError, match="detector 'scrfd' takes no option 'score_treshold'"):
        FaceRecognizer(
            detector_model="scrfd_2.5g",
            embedder_model="mobilefacenet_128d",
            model_dir=models_dir,
            detector_options={"score_treshold": 0.5},  # misspelt
        )


@pytest.mark.parametrize("embedder", ["facenet", "adaface"])
def test_options_handed_on_to_a_base_class_are_checked(embedder: str) -> None:
    from facekit import registry

    # FaceNet and AdaFace take ``**options`` for TorchEmbedder: those are checked too, so
    # a misspelt or foreign option (ONNX ``threads``) is a ConfigError, not a TypeError
    takes = registry.options_of("embedder", embedder)
    assert takes is not None
    assert {"model_dir", "flip", "device", "trust_checkpoint"} <= takes
    assert "threads" not in takes
    for option in ("threads", "fliip"):
        with pytest.raises(ConfigError, match=f"embedder {embedder!r} takes no option '{option}'"):
            registry.create("embedder", embedder, None, **{option: 1})


def test_registry_accepts_third_party_backends(models_dir: Path, data_dir: Path) -> None:
    from facekit import registry

    def padded_scrfd(model: str | None, **options: object) -> SCRFD:
        return SCRFD(model or "scrfd_2.5g", padding=0.5, model_dir=models_dir)

    registry.register("detector", "padded_scrfd_test", padded_scrfd)
    assert "padded_scrfd_test" in registry.available("detector")
    assert {"scrfd"} <= set(registry.available("detector"))
    with pytest.raises(ConfigError, match="already registered"):
        registry.register("detector", "scrfd", padded_scrfd)
    fr = FaceRecognizer(
        detector="padded_scrfd_test", embedder_model="mobilefacenet_128d", model_dir=models_dir
    )
    assert isinstance(fr.detector, SCRFD)
    assert fr.detector.padding == 0.5
    # the padded detector finds the face filling an ORL crop
    assert len(fr.faces(data_dir / "orl_faces/s2/1.png")) == 1


def test_pixel_limit_reaches_the_detector(models_dir: Path) -> None:
    big = np.zeros((9100, 9000, 3), np.uint8)  # 81.9 MP: over the 80 MP default
    fr = FaceRecognizer(
        detector_model="scrfd_500m",
        embedder_model="mobilefacenet_128d",
        model_dir=models_dir,
        max_pixels=90_000_000,
    )
    assert fr.faces(big) == []
    with pytest.raises(ImageError, match="too large"):
        FaceRecognizer(detector=fr.detector, embedder=fr.embedder, max_pixels=80_000_000).faces(big)


def test_opencv_arrays_with_channel_order_bgr(recognizer: FaceRecognizer, data_dir: Path) -> None:
    import cv2

    a, b = data_dir / "openface/lennon-1.jpg", data_dir / "openface/lennon-2.jpg"
    reference = recognizer.verify(a, b).similarity
    bgr_a, bgr_b = cv2.imread(str(a)), cv2.imread(str(b))
    as_bgr = recognizer.verify(bgr_a, bgr_b, channel_order="bgr").similarity
    bgr_recognizer = FaceRecognizer(
        detector=recognizer.detector, embedder=recognizer.embedder, channel_order="bgr"
    )
    # OpenCV and Pillow decode JPEGs with different IDCTs: pixels differ by a level or two
    assert as_bgr == pytest.approx(reference, abs=0.005)
    assert bgr_recognizer.verify(bgr_a, bgr_b).similarity == pytest.approx(as_bgr, abs=1e-6)
    # the same arrays read as RGB (blue and red swapped) give another similarity
    swapped = recognizer.verify(bgr_a, bgr_b).similarity
    assert abs(swapped - reference) > 0.01
    # the recognizer's order can be overridden per call, and files ignore it
    assert bgr_recognizer.verify(bgr_a, bgr_b, channel_order="rgb").similarity == pytest.approx(
        swapped, abs=1e-6
    )
    assert bgr_recognizer.verify(a, b).similarity == pytest.approx(reference, abs=1e-6)
    assert np.allclose(
        bgr_recognizer.embed(bgr_a), recognizer.embed(bgr_a, channel_order="bgr"), atol=1e-6
    )
    with pytest.raises(ConfigError, match="channel_order"):
        FaceRecognizer(
            detector=recognizer.detector,
            embedder=recognizer.embedder,
            channel_order="BGRA",  # type: ignore[arg-type]
        )


def test_an_embedder_without_thresholds_needs_them_only_to_decide(
    recognizer: FaceRecognizer, models_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    import onnx

    # the MobileFaceNet weights re-saved with a doc string: an unlisted model (another
    # sha256), so facekit has no calibrated thresholds for it
    model = onnx.load(str(models_dir / "mobilefacenet_onnx/mobilefacenet_128d.onnx"))
    model.doc_string = "an unlisted copy"
    unlisted_path = tmp_path / "my_arcface.onnx"
    onnx.save(model, str(unlisted_path))
    unlisted = ArcFace(unlisted_path)
    assert unlisted.thresholds is None
    fr = FaceRecognizer(detector=recognizer.detector, embedder=unlisted)  # constructs
    a, b = data_dir / "openface/lennon-1.jpg", data_dir / "openface/lennon-2.jpg"
    assert fr.embed(a).shape == (128,)  # no thresholds needed
    with pytest.raises(ConfigError, match="no calibrated thresholds for my_arcface"):
        fr.verify(a, b)
    given = Thresholds(likely=0.3, same=0.4)
    result = fr.verify(a, b, thresholds=given)
    assert result.thresholds is given
    # unlisted: preprocessing read from the graph, a hair off the zoo entry's
    assert result.similarity == pytest.approx(recognizer.verify(a, b).similarity, abs=1e-3)
    with_override = FaceRecognizer(
        detector=recognizer.detector, embedder=unlisted, thresholds=given
    )
    assert with_override.verify(a, b).verdict == "same"


def test_identify_uses_the_threshold_given(
    recognizer: FaceRecognizer, data_dir: Path, tmp_path: Path
) -> None:
    fr = FaceRecognizer(
        detector=recognizer.detector, embedder=recognizer.embedder, gallery=tmp_path / "g.db"
    )
    fr.enroll([("lennon", data_dir / "openface/lennon-1.jpg")], progress=False)
    probe = data_dir / "openface/lennon-2.jpg"
    (default,) = fr.identify(probe)
    assert default.identity == "lennon"
    assert default.threshold == fr.thresholds.same
    similarity = default.similarity
    (strict,) = fr.identify(probe, threshold=similarity + 0.01)
    assert strict.identity is None
    assert strict.threshold == similarity + 0.01
    assert strict.candidates[0][0] == "lennon"  # the nearest is kept for an unknown face
    (lenient,) = fr.identify(data_dir / "openface/clapton-1.jpg", threshold=-1.0)
    assert lenient.identity == "lennon"


def test_embed_each_keeps_each_error_in_its_place(
    recognizer: FaceRecognizer, data_dir: Path
) -> None:
    openface = data_dir / "openface"
    images = [
        openface / "lennon-1.jpg",
        data_dir / "mtcnn/no-faces.jpg",
        openface / "clapton-1.jpg",
        b"not an image",
        openface / "carell.jpg",
    ]
    results = recognizer.embed_each(images, batch_size=2)
    assert len(results) == 5
    assert isinstance(results[1], NoFaceError)
    assert "image 2" in str(results[1])
    assert "no-faces.jpg" in str(results[1])
    assert isinstance(results[3], ImageError)
    for index in (0, 2, 4):
        assert np.allclose(results[index], recognizer.embed(images[index]), atol=1e-6)


def test_embed_aligned_matches_the_pipeline_crops(
    recognizer: FaceRecognizer, data_dir: Path
) -> None:
    faces = [recognizer.faces(data_dir / f"openface/{n}.jpg")[0] for n in ("lennon-1", "adams")]
    crops = np.stack([face.crop for face in faces])
    assert crops.shape == (2, 112, 112, 3)
    embeddings = recognizer.embed_aligned(crops)
    assert embeddings.shape == (2, 128)
    for face, embedding in zip(faces, embeddings, strict=True):
        assert np.allclose(embedding, face.embedding, atol=1e-5)
    bgr = recognizer.embed_aligned([crops[0][:, :, ::-1]], channel_order="bgr")
    assert np.allclose(bgr[0], embeddings[0], atol=1e-5)
    assert recognizer.embed_aligned([]).shape == (0, 128)
    with pytest.raises(ImageError, match=r"160x160 is not an aligned crop"):
        recognizer.embed_aligned(np.zeros((1, 160, 160, 3), np.uint8))


def test_facade_takes_lazy_inputs_and_gives_the_same_results_with_any_workers(
    recognizer: FaceRecognizer, models_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    openface = data_dir / "openface"
    names = ["lennon-1", "clapton-1", "carell", "adams", "lennon-2"]
    sequential = FaceRecognizer(recognizer.detector, recognizer.embedder, workers=0)
    overlapped = FaceRecognizer(recognizer.detector, recognizer.embedder, workers=3)
    assert (sequential.workers, overlapped.workers) == (0, 3)
    one = sequential.embed_each(openface / f"{n}.jpg" for n in names)
    other = overlapped.embed_each((openface / f"{n}.jpg" for n in names), batch_size=2)
    for a, b in zip(one, other, strict=True):
        assert isinstance(a, np.ndarray)
        np.testing.assert_array_equal(a, b)
    # enrol from a generator of (identity, image): consumed lazily, nothing lost
    gallery = FaceRecognizer(
        recognizer.detector, recognizer.embedder, gallery=tmp_path / "g.db", workers=2
    )
    report = gallery.enroll(
        ((n.split("-")[0], openface / f"{n}.jpg") for n in names), progress=False
    )
    assert len(report.added) == 5
    again = gallery.enroll(((n, openface / f"{n}.jpg") for n in names), progress=False)
    assert len(again.skipped) == 5
    assert not again.added
    assert gallery.identify(openface / "lennon-2.jpg")[0].identity == "lennon"
    # the stream API is reachable from the recogniser (facekit.stream does the work)
    with pytest.raises(StreamError, match="no such video file"):
        next(recognizer.stream(tmp_path / "missing.mp4"))
