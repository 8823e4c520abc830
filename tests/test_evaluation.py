"""Evaluation: every metric on small cases worked out by hand, the pair and ground-truth
readers, and `facekit eval` / `facekit calibrate` on the real photos, with the reported
numbers recomputed independently from the saved embeddings."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facekit import FaceRecognizer
from facekit.cli import main as cli_main
from facekit.errors import ConfigError
from facekit.evaluation import (
    average_precision,
    best_threshold,
    equal_error_rate,
    evaluate_detection,
    load_thresholds,
    read_boxes,
    read_pairs,
    roc_auc,
    roc_curve,
    split_gallery,
    tar_at_far,
    ten_fold_accuracy,
)
from facekit.evaluation.detection import _match
from facekit.thresholds import CalibrationFile
from facekit.types import Thresholds

# The hand-worked set: 5 same-person and 5 different-person pairs, scores in sixteenths
# (exact in binary, so midpoints between scores are exact too).
G = np.array([9, 8, 7, 6, 4]) / 16
I = np.array([5, 3, 2, 1, 0]) / 16  # noqa: E741


def test_auc_counts_ordered_pairs() -> None:
    # 25 (genuine, impostor) comparisons; only 4/16 < 5/16 is out of order: 24/25.
    assert roc_auc(G, I) == pytest.approx(24 / 25)
    # a tie counts half: 5/16 against 5/16
    assert roc_auc([5 / 16], [5 / 16]) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        roc_auc([], I)


def test_roc_curve_points() -> None:
    thresholds, far, tar = roc_curve(G, I)
    assert np.isinf(thresholds[0])
    # descending distinct scores: 9, 8, 7, 6, 5, 4, 3, 2, 1, 0 (sixteenths)
    assert np.allclose(thresholds[1:] * 16, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert np.allclose(tar, [0, 0.2, 0.4, 0.6, 0.8, 0.8, 1, 1, 1, 1, 1])
    assert np.allclose(far, [0, 0, 0, 0, 0, 0.2, 0.2, 0.4, 0.6, 0.8, 1])


def test_equal_error_rate() -> None:
    # FRR = 1 - TAR meets FAR at threshold 5/16: FRR 0.2 (4/16 rejected), FAR 0.2 (5/16
    # accepted); one step earlier (6/16) FRR 0.2 but FAR 0: further apart.
    eer, threshold = equal_error_rate(G, I)
    assert eer == pytest.approx(0.2)
    assert threshold == pytest.approx(5 / 16)
    # perfectly separated scores: EER 0
    assert equal_error_rate([0.9, 0.8], [0.1, 0.2])[0] == 0.0


def test_best_threshold_prefers_the_lowest_of_ties() -> None:
    # 3.5/16 accepts all 5 genuine and rejects 4 impostors (9/10); 5.5/16 accepts 4 and
    # rejects 5 (also 9/10): the lower one wins.
    threshold, accuracy = best_threshold(G, I)
    assert threshold == pytest.approx(3.5 / 16)
    assert accuracy == pytest.approx(0.9)


def test_ten_fold_accuracy_by_hand() -> None:
    """One pair per fold. Left out, with the threshold chosen on the other nine:
    genuine 9, 8, 7, 6: 3.5 (8/9 on the rest, lowest of ties) -> accepted, correct;
    genuine 4: the rest separate perfectly in (5, 6]: 5.5 -> rejected, wrong;
    impostor 5: the rest separate in (3, 4]: 3.5 -> accepted, wrong;
    impostor 3: the rest's lowest 8/9 threshold is the midpoint of 2 and 4 = 3, and the
        left-out score 3 is accepted (>=): wrong (a tie on the threshold);
    impostors 2, 1, 0: 3.5 -> rejected, correct.
    Accuracy 7/10, std sqrt(0.7 * 0.3), mean threshold (8 * 3.5 + 5.5 + 3) / 10 / 16."""
    scores = np.concatenate([G, I])
    same = np.array([True] * 5 + [False] * 5)
    result = ten_fold_accuracy(scores, same, np.arange(10))
    assert result.accuracy == pytest.approx(0.7)
    assert result.std == pytest.approx(np.sqrt(0.21))
    assert result.threshold == pytest.approx((8 * 3.5 + 5.5 + 3) / 10 / 16)
    assert [f.accuracy for f in result.folds] == [1, 1, 1, 1, 0, 0, 0, 1, 1, 1]
    assert result.skipped == 0


def test_ten_fold_degenerate_folds() -> None:
    # the only genuine pair in fold 0: its training folds have no genuine pair, skipped
    result = ten_fold_accuracy([0.9, 0.1, 0.2], [True, False, False], [0, 1, 2])
    assert result.skipped == 1
    assert result.folds[0].accuracy is None
    assert result.accuracy == 1.0  # folds 1 and 2: threshold between 0.2 and 0.9
    with pytest.raises(ConfigError):
        ten_fold_accuracy([0.9, 0.1], [True, False], [0, 0])  # one fold: nothing to train on


def test_tar_at_far_says_when_pairs_are_too_few() -> None:
    impostor = np.arange(20) / 20  # 0.00 .. 0.95
    genuine = np.array([0.99, 0.96, 0.9, 0.5])
    points = tar_at_far(genuine, impostor, (1e-1, 1e-2))
    # FAR 0.1 of 20: 2 impostors may pass (0.95, 0.90); threshold just above 0.85:
    # genuine 0.99, 0.96, 0.9 pass: TAR 0.75
    assert points[1e-1] is not None
    assert points[1e-1].far == pytest.approx(0.1)
    assert points[1e-1].tar == pytest.approx(0.75)
    assert points[1e-2] is None  # 20 impostors cannot resolve 1 %


def test_average_precision_by_hand() -> None:
    # Sorted by score: TP, FP, TP, TP over 3 faces. Recall 1/3, 1/3, 2/3, 1 with precision
    # 1, 1/2, 2/3, 3/4; the envelope gives 1, 3/4, 3/4 on the three recall steps:
    # AP = (1 + 3/4 + 3/4) / 3.
    ap, precision, recall = average_precision(
        np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, True]), 3
    )
    assert ap == pytest.approx(2.5 / 3)
    assert np.allclose(precision, [1, 0.5, 2 / 3, 0.75])
    assert np.allclose(recall, [1 / 3, 1 / 3, 2 / 3, 1])
    assert average_precision(np.array([0.5]), np.array([False]), 2)[0] == 0.0


def test_matching_takes_each_face_once() -> None:
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=float)
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 29, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # the duplicate of face 1 (IoU 0.82) comes second and finds it taken
    assert _match(truth, boxes, scores, 0.5).tolist() == [True, False, True, False]


def test_pairs_readers(tmp_path: Path) -> None:
    lfw = tmp_path / "pairs.txt"
    lfw.write_text("2\t1\nAlice\t1\t2\nAlice\t1\tBob\t3\nBob\t1\t2\nCarol\t2\tAlice\t1\n")
    pairs = read_pairs(lfw, tmp_path)
    assert [(p.same, p.fold) for p in pairs] == [(True, 0), (False, 0), (True, 1), (False, 1)]
    assert pairs[1].b == tmp_path / "Bob" / "Bob_0003.jpg"
    table = tmp_path / "pairs.tsv"
    table.write_text("img_a\timg_b\tsame\na.jpg\tb.jpg\t1\na.jpg\tc.jpg\tdifferent\n")
    rows = read_pairs(table, tmp_path, folds=2)
    assert [r.same for r in rows] == [True, False]
    assert sorted({r.fold for r in rows}) == [0]  # one pair per class: both in fold 0
    bad = tmp_path / "bad.csv"
    bad.write_text("a.jpg,b.jpg,1\na.jpg,b.jpg,maybe\n")
    with pytest.raises(ConfigError, match=r"bad\.csv:2"):
        read_pairs(bad, tmp_path)
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_pairs(tmp_path / "empty.csv", tmp_path)
    (tmp_path / "lfw_bad.txt").write_text("10 300\nAlice 1\n")
    with pytest.raises(ConfigError, match=r"lfw_bad\.txt:2"):
        read_pairs(tmp_path / "lfw_bad.txt", tmp_path)


def test_ground_truth_readers(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps({"a.jpg": [[1, 2, 11, 22]], "b.jpg": []}))
    assert read_boxes(tmp_path / "t.json")["a.jpg"].tolist() == [[1, 2, 11, 22]]
    (tmp_path / "t.csv").write_text("image,x,y,w,h\na.jpg,1,2,10,20\na.jpg,5,5,5,5\n")
    assert read_boxes(tmp_path / "t.csv")["a.jpg"].tolist() == [[1, 2, 11, 22], [5, 5, 10, 10]]
    (tmp_path / "wider.txt").write_text(
        "0--Parade/a.jpg\n2\n1 2 10 20 0 0 0 0 0 0\n5 5 5 5 0 0 0 1 0 0\n"
        "0--Parade/b.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n"
    )
    wider = read_boxes(tmp_path / "wider.txt")
    assert wider["0--Parade/a.jpg"].tolist() == [[1, 2, 11, 22]]  # the invalid face is out
    assert wider["0--Parade/b.jpg"].shape == (0, 4)
    from scipy.io import savemat

    events = np.empty((1, 1), dtype=object)
    events[0, 0] = np.array(["0--Parade"])
    files = np.empty((1, 1), dtype=object)
    inner = np.empty((1, 1), dtype=object)
    inner[0, 0] = np.array(["a"])
    files[0, 0] = inner
    boxes = np.empty((1, 1), dtype=object)
    inner_boxes = np.empty((1, 1), dtype=object)
    inner_boxes[0, 0] = np.array([[1.0, 2.0, 10.0, 20.0]])
    boxes[0, 0] = inner_boxes
    mat = {"event_list": events, "file_list": files, "face_bbx_list": boxes}
    savemat(tmp_path / "wider.mat", mat)
    assert read_boxes(tmp_path / "wider.mat")["0--Parade/a.jpg"].tolist() == [[1, 2, 11, 22]]
    (tmp_path / "broken.json").write_text('{"a.jpg": [[5, 5, 1, 1]]}')
    with pytest.raises(ConfigError, match="x2 <= x1"):
        read_boxes(tmp_path / "broken.json")


def test_split_is_seeded_and_leaves_identities_out() -> None:
    items = [(f"p{i}", Path(f"p{i}/{k}.png")) for i in range(10) for k in range(10)]
    split = split_gallery(items, probe_every=5, unknown=0.2, seed=3)
    assert split == split_gallery(items, probe_every=5, unknown=0.2, seed=3)
    assert split != split_gallery(items, probe_every=5, unknown=0.2, seed=4)
    unmated = {i for (i, _), m in zip(split.probes, split.mated, strict=True) if not m}
    assert len(unmated) == 2  # 20 % of 10 identities, all 10 images each probe
    assert not unmated & {identity for identity, _ in split.gallery}
    mated = [p for p, m in zip(split.probes, split.mated, strict=True) if m]
    assert len(mated) == 8 * 2  # 1 in 5 of 10 images per enrolled identity
    assert len(split.gallery) == 8 * 8


def _shared_pairs(data_dir: Path, path: Path) -> Path:
    """The pair list of scripts/make_shared_pairs.py (all pairs of ORL subjects 1-25,
    images 1-4, and six photos), plus one pair with a missing image."""
    spec = importlib.util.spec_from_file_location(
        "make_shared_pairs", Path(__file__).resolve().parents[1] / "scripts/make_shared_pairs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rows = [*script.pair_rows(data_dir), "openface/lennon-1.jpg,openface/missing.jpg,1"]
    path.write_text("\n".join(rows) + "\n")
    return path


MODELS = ["--detector-model", "scrfd_2.5g", "--embedder-model", "mobilefacenet_128d"]
PADDED = ["--detector-options", '{"padding": 0.3}']


def test_eval_verify_report_recomputed_from_saved_embeddings(
    models_dir: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = _shared_pairs(data_dir, tmp_path / "pairs.csv")
    out = tmp_path / "out"
    args = ["eval", "verify", "--pairs", str(pairs), "--root", str(data_dir)]
    args += [*MODELS, "--model-dir", str(models_dir), *PADDED]
    assert cli_main([*args, "--json", "--out", str(out), "--plots", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "report.json").read_text())
    assert (out / "roc.png").stat().st_size > 1000
    assert (out / "similarities.png").stat().st_size > 1000
    # the failed pair is counted and named, not dropped
    # 106 images: 5565 pairs (152 same: 25 x 6 ORL pairs, Lennon's and Clapton's) + 1
    assert report["pairs"] == 5566
    assert report["scored"] == 5565
    assert len(report["failed"]) == 1
    assert "missing.jpg" in report["failed"][0]["b"]
    # recompute from the saved embeddings, with code written independently of facekit's
    saved = np.load(out / "embeddings.npz")
    vectors = {Path(p): v for p, v in zip(saved["paths"], saved["vectors"], strict=True)}
    rows = [line.split(",") for line in pairs.read_text().splitlines()[1:]]
    scored = [
        (float(vectors[data_dir / a] @ vectors[data_dir / b]), s == "1")
        for a, b, s in rows
        if "missing" not in b
    ]
    genuine = [v for v, same in scored if same]
    impostor = [v for v, same in scored if not same]
    assert (report["genuine"], report["impostor"]) == (len(genuine), len(impostor)) == (152, 5413)
    wins = sum((g > i) + 0.5 * (g == i) for g in genuine for i in impostor)
    assert report["auc"] == pytest.approx(wins / (len(genuine) * len(impostor)))
    point = report["tar_at_far"]["0.001"]
    allowed = int(0.001 * len(impostor))  # 5 impostors may score at or above it
    next_one = sorted(impostor, reverse=True)[allowed]
    assert point["far"] <= 0.001
    assert point["threshold"] > next_one
    assert point["tar"] == pytest.approx(np.mean(np.array(genuine) >= point["threshold"]))
    assert 0.9 < report["auc"] <= 1.0
    assert 0.9 < report["accuracy"] <= 1.0
    assert report["accuracy_std"] >= 0.0
    assert report["eer"] < 0.1


def test_calibrate_and_the_verdicts_on_both_sides(
    models_dir: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = _shared_pairs(data_dir, tmp_path / "pairs.csv")
    calib = tmp_path / "calib.json"
    args = ["calibrate", "--pairs", str(pairs), "--root", str(data_dir), "--output", str(calib)]
    args += [*MODELS, "--model-dir", str(models_dir), *PADDED, "--far", "0.001", "--json"]
    assert cli_main([*args, "--no-progress"]) == 0
    written = json.loads(capsys.readouterr().out)
    thresholds = load_thresholds(calib)
    assert (thresholds.likely, thresholds.same) == (written["likely"], written["same"])
    assert written["same_far"] <= 0.001
    assert "5413 different pairs" in thresholds.protocol
    fr = FaceRecognizer(
        detector_model="scrfd_2.5g",
        embedder_model="mobilefacenet_128d",
        model_dir=models_dir,
        detector_options={"padding": 0.3},
        thresholds=calib,
    )
    assert fr.thresholds.likely == thresholds.likely
    # verdicts follow the calibrated thresholds, on both sides of them
    orl = data_dir / "orl_faces"
    checks = [
        (orl / f"s{s}/1.png", orl / f"s{t}/{k}.png")
        for s, t, k in [(1, 1, 2), (2, 2, 3), (3, 3, 4), (1, 2, 1), (4, 7, 2), (5, 9, 3), (6, 6, 2)]
    ]
    sides = set()
    for a, b in checks:
        result = fr.verify(a, b)
        expected = (
            "same"
            if result.similarity >= thresholds.same
            else ("likely same" if result.similarity >= thresholds.likely else "different")
        )
        assert result.verdict == expected
        assert result.threshold == thresholds.likely
        sides.add(result.similarity >= thresholds.likely)
    assert sides == {True, False}
    # the command line takes the file too
    verify = ["verify", str(checks[0][0]), str(checks[0][1]), *MODELS, "--model-dir"]
    assert cli_main([*verify, str(models_dir), *PADDED, "--thresholds", str(calib), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["thresholds"]
    assert (shown["likely"], shown["same"]) == (thresholds.likely, thresholds.same)
    # a file calibrated for another embedder is refused
    data = json.loads(calib.read_text())
    data["embedder_sha256"] = "0" * 64
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="do not carry over"):
        FaceRecognizer(
            detector_model="scrfd_2.5g",
            embedder_model="mobilefacenet_128d",
            model_dir=models_dir,
            thresholds=other,
        )
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a facekit thresholds file"):
        load_thresholds(tmp_path / "junk.json")


def test_eval_identify_on_orl(
    models_dir: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", "identify", "--root", str(data_dir / "orl_faces"), "--unknown", "0.25"]
    args += [*MODELS, "--model-dir", str(models_dir), "--ranks", "1", "3"]
    args += ["--detector-options", '{"padding": 0.5, "input_size": [320, 320]}']
    assert cli_main([*args, "--json", "--no-progress", "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    # 40 people: 10 left out (all 100 of their images probe, unmated); 30 enrolled with
    # 8 images each, 2 probing
    assert report["identities"] == 30
    assert (report["gallery_images"], report["mated_probes"]) == (240, 60)
    assert report["unmated_probes"] == 100
    assert report["rank"]["1"] >= 0.95  # measured: 1.0
    assert report["rank"]["3"] >= report["rank"]["1"]
    assert report["precision_at"]["1"] >= 0.95
    dir_at = report["open_set"]["0.1"]
    assert dir_at is not None
    assert dir_at["dir"] >= 0.8  # measured: 0.983
    strict = report["open_set"]["0.01"]  # 100 unmated probes: 1 may pass
    assert strict["threshold"] >= dir_at["threshold"]
    assert strict["dir"] <= dir_at["dir"]
    assert (tmp_path / "embeddings.npz").exists()


def test_eval_detect_against_box_truth(
    models_dir: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ground truth: ivan.jpg's documented box (ipazc/mtcnn), no face in no-faces.jpg, and
    for t1.jpg's 6 faces (no published boxes) the confident faces of an independent
    detector, MTCNN; a missing image is reported, not fatal."""
    truth_file = json.loads((data_dir / "mtcnn/truth.json").read_text())
    x, y, w, h = truth_file["ivan.jpg"]["documented_output"]["box_xywh"]
    from facekit.detectors import MTCNN

    found = MTCNN(models_dir / "mtcnn_torch").detect(data_dir / "insightface_samples/t1.jpg")
    t1 = [d.box for d in found if d.score > 0.95]
    truth = {
        "mtcnn/ivan.jpg": [[x, y, x + w, y + h]],
        "mtcnn/no-faces.jpg": [],
        "insightface_samples/t1.jpg": [list(b) for b in t1],
        "mtcnn/missing.jpg": [[0, 0, 10, 10]],
    }
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    args = ["eval", "detect", "--truth", str(tmp_path / "truth.json"), "--root", str(data_dir)]
    args += ["--detector-model", "scrfd_2.5g", "--model-dir", str(models_dir)]
    assert cli_main([*args, "--json", "--out", str(tmp_path / "out"), "--plots"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["images"], report["faces"]) == (3, 7)
    assert report["failed"][0]["image"] == "mtcnn/missing.jpg"
    assert report["recall"] == 1.0
    assert report["ap"] >= 0.95
    assert report["per_image_recall"]["mtcnn/no-faces.jpg"] is None
    assert (tmp_path / "out/precision_recall.png").exists()
    # the same through the API, with a detector that finds nothing on ivan at 0.99
    from facekit.detectors import SCRFD

    strict = SCRFD("scrfd_2.5g", model_dir=models_dir, score_threshold=0.99)
    boxes = read_boxes(tmp_path / "truth.json")
    del boxes["mtcnn/missing.jpg"]
    result = evaluate_detection(strict, boxes, data_dir)
    assert result.recall < 1.0


def test_identification_metrics_by_hand() -> None:
    """Gallery: identity 0 at angles 0 and 10 degrees, identity 1 at 90, identity 2 at 180
    (unit vectors in 2-D). Probes: at 5 degrees (identity 0: nearest is 0 and 10 degrees,
    rank 1 correct, both of its 2 nearest images its own), at 80 degrees labelled
    identity 0 (nearest identity 1, then 0: wrong at rank 1, right at rank 2; its 2
    nearest images are 90 (identity 1) and 10 (identity 0): precision@2 1/2).
    Unmated probes: at 135 degrees the best is cos 45 = 0.707 (identities 1 and 2), at 45
    degrees cos 35 = 0.819 (identity 0). At FPIR 0.5 (1 of 2 may pass) the threshold lies
    just above the second-highest, 0.707; the first mated probe (cos 5 = 0.996, correct)
    passes it, the second (wrong identity) does not: DIR 1/2."""

    def at(*degrees: float) -> np.ndarray:
        radians = np.radians(degrees)
        return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)

    from facekit.evaluation import identification_metrics

    rank, precision, open_set = identification_metrics(
        at(0, 10, 90, 180),
        np.array([0, 0, 1, 2]),
        at(5, 80),
        np.array([0, 0]),
        at(135, 45),
        ranks=(1, 2),
        fpirs=(0.5, 0.1),
    )
    assert rank == {1: 0.5, 2: 1.0}
    assert precision[1] == pytest.approx(0.5)  # 5 -> 0 or 10 (own); 80 -> 90 (not own)
    assert precision[2] == pytest.approx(0.75)  # (2/2 + 1/2) / 2
    threshold, dir_rate = open_set[0.5]
    assert threshold == pytest.approx(np.cos(np.radians(45)), abs=1e-6)
    second_best = float((at(135) @ at(0, 10, 90, 180).T).max())  # as the index computes it
    assert second_best < threshold < float((at(45) @ at(10).T)[0, 0])
    assert dir_rate == pytest.approx(0.5)
    assert open_set[0.1] is None  # 2 unmated probes cannot resolve 10 %


# --- the thresholds file on disk ----------------------------------------------------------


def _calibration(protocol: str = "10 same and 10 different pairs") -> CalibrationFile:
    """A thresholds file's content (values made up: only the file handling is tested)."""
    return CalibrationFile(
        Thresholds(0.3, 0.5, protocol),
        embedder="mobilefacenet_128d",
        embedder_sha256="ab" * 32,
        detector="scrfd_2.5g",
        target_far=0.001,
        likely_accuracy=0.95,
        same_far=0.001,
        same_tar=0.9,
    )


_CUT_SHORT = """
import resource, signal, sys
from pathlib import Path
from facekit.thresholds import CalibrationFile
from facekit.types import Thresholds
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))  # no file grows past 1 KiB
calibration = CalibrationFile(Thresholds(0.3, 0.5, "x" * 4000), "e", "cd" * 32, "d", 0, 0, 0, 0)
try:
    calibration.save(Path(sys.argv[1]))
except OSError as exc:
    print(exc.errno)
"""


def test_thresholds_save_cut_short_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = _calibration().save(tmp_path / "calib.json")
    before = target.read_bytes()
    # a save cut short by a full disk (here: a 1 KiB file size limit, in a child process)
    done = subprocess.run(
        [sys.executable, "-B", "-c", _CUT_SHORT, str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == str(errno.EFBIG), done.stderr
    assert target.read_bytes() == before
    assert load_thresholds(target) == Thresholds(0.3, 0.5, "10 same and 10 different pairs")
    assert os.listdir(tmp_path) == ["calib.json"]  # the partial file is gone


def test_thresholds_save_is_on_disk_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    fsync = os.fsync

    def spy(fd: int) -> None:  # the real fsync, recording which file it flushed
        synced.append(os.fstat(fd).st_ino)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    target = _calibration().save(tmp_path / "calib.json")
    assert target.stat().st_ino in synced  # the file renamed into place was flushed
    assert load_thresholds(target).protocol == "10 same and 10 different pairs"
    text = target.read_text(encoding="utf-8")
    assert text == json.dumps(_calibration().to_dict(), indent=2) + "\n"


def test_thresholds_file_is_made_like_any_file(tmp_path: Path) -> None:
    before = os.umask(0o027)
    try:
        target = _calibration().save(tmp_path / "new" / "calib.json")
    finally:
        os.umask(before)
    # 0o666 less the umask, as open() would make it (not mkstemp's owner-only 0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(target.parent) == ["calib.json"]
