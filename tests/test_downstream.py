"""Downstream detection evaluator and the runner/CLI wiring of both evaluators.

The learning sanity checks (an information-keeping fusion beats a constant image) use the real smoke presets;
the plumbing tests shrink the budgets (1-2 epochs) because they are about files, columns and reuse.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from fusion_bench.benchmark.downstream import evaluator_config, parse_downstream, resolve_evaluators
from fusion_bench.benchmark.results import read_rows
from fusion_bench.cli import main
from fusion_bench.data.io import write_png
from fusion_bench.data.synthetic import SyntheticIVIF, ensure_generated
from fusion_bench.errors import DownstreamError
from fusion_bench.evaluators.detection import (
    DET_PRESETS,
    DETECTION,
    det_preset,
    evaluate_detection_folders,
    write_yolo_split,
    yolo_label_lines,
)
from fusion_bench.evaluators.segmentation import SEG_PRESETS
from fusion_bench.registry import get_datamodule

# find_spec, not importorskip: importing ultralytics patches PIL's Image.open for the rest of the session.
needs_ultralytics = pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None, reason="needs ultralytics")

TINY_SEG = {"epochs": 1, "image_size": (32, 40)}
TINY_DET = {"epochs": 1, "image_size": 64, "batch_size": 16}


@pytest.fixture(scope="module")
def ivif_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_generated("synthetic-ivif", tmp_path_factory.mktemp("ivif") / "synthetic-ivif")


def _write_fused(root: Path, out: Path, kind: str) -> None:
    from fusion_bench.methods.baselines.model import MaxFusion

    for split in ("train", "test"):
        ds = SyntheticIVIF(root, split)
        for i in range(len(ds)):
            s = ds[i]
            fused = MaxFusion().fuse(s["ir"][None], s["vis"][None])[0] if kind == "max" else torch.full_like(
                s["vis"], 0.5)
            write_png(out / split / f"{s['name']}.png", fused)


@pytest.fixture
def tiny_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """1-epoch evaluators at tiny sizes (plumbing tests only)."""
    monkeypatch.setitem(SEG_PRESETS, "smoke", SEG_PRESETS["smoke"].replace(**TINY_SEG))
    monkeypatch.setitem(DET_PRESETS, "smoke", DET_PRESETS["smoke"].replace(**TINY_DET))


# ------------------------------------------------------------------------------------------------ unit


def test_parse_downstream(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_downstream("protocol") is None
    assert parse_downstream("none") == () and parse_downstream("") == ()
    assert parse_downstream("det, seg,det") == ("det", "seg")
    with pytest.raises(ValueError, match="valid: protocol, none"):
        parse_downstream("seg,yolo")
    monkeypatch.setenv("FUSION_BENCH_DOWNSTREAM", "seg")
    assert parse_downstream(None) == ("seg",)


def test_yolo_labels_are_normalised_centre_boxes() -> None:
    lines = yolo_label_lines(torch.tensor([[10.0, 20.0, 30.0, 60.0], [-5.0, 0.0, 5.0, 10.0]]), torch.tensor([1, 0]),
                             height=100, width=200, where="x")
    assert lines[0] == "1 0.100000 0.400000 0.100000 0.400000"
    assert lines[1] == "0 0.012500 0.050000 0.025000 0.100000"  # clipped to the image
    with pytest.raises(DownstreamError, match="x: box .* no area inside the 200x100 image"):
        yolo_label_lines(torch.tensor([[210.0, 0.0, 220.0, 5.0]]), torch.tensor([0]), 100, 200, "x")


def test_yolo_view_links_fused_images_and_writes_labels(ivif_root: Path, tmp_path: Path) -> None:
    _write_fused(ivif_root, tmp_path / "fused", "max")
    test = SyntheticIVIF(ivif_root, "test")
    images = [tmp_path / "fused" / "test" / f"{r.name}.png" for r in test.samples]
    n_boxes = write_yolo_split(tmp_path / "view", "test", images, test, progress=False)
    linked = sorted((tmp_path / "view" / "images" / "test").iterdir())
    assert len(linked) == len(test) and all(p.is_symlink() and p.resolve() in images for p in linked)
    labels = sorted((tmp_path / "view" / "labels" / "test").glob("*.txt"))
    assert [p.stem for p in labels] == [p.stem for p in linked]
    assert n_boxes == sum(len(test[i]["boxes"]) for i in range(len(test)))
    first = labels[0].read_text().split("\n")[0].split()
    assert first[0] in {"0", "1"} and all(0 < float(v) <= 1 for v in first[1:])


def test_det_preset_validation_and_protocol_overrides() -> None:
    assert det_preset("paper").model_yaml == "yolo11n.yaml" and det_preset("paper").epochs == 100
    assert det_preset("smoke", model="yolov8n").model_yaml == "yolov8n.yaml"
    with pytest.raises(ValueError, match="valid: smoke, paper"):
        det_preset("large")
    with pytest.raises(ValueError, match="val_fraction"):
        det_preset("smoke", val_fraction=1.0)
    protocol = {"presets": {"smoke": {"det": {"epochs": 3}, "seg": {"image_size": [32, 48]}}}}
    assert evaluator_config("det", "smoke", protocol).epochs == 3
    assert evaluator_config("seg", "smoke", protocol).image_size == (32, 48)
    assert evaluator_config("seg", "paper", protocol).variant == "b3"


def test_resolve_evaluators_names_what_is_missing(ivif_root: Path, tmp_path: Path) -> None:
    test = SyntheticIVIF(ivif_root, "test")
    assert resolve_evaluators(None, {"downstream": ["seg", "det"]}, test, ("train", "test")) == ("seg", "det")
    assert resolve_evaluators((), {"downstream": ["seg"]}, test, ("train", "test")) == ()
    with pytest.raises(ValueError, match="no train split"):
        resolve_evaluators(("seg",), {}, test, ("test",))
    mfif = get_datamodule("synthetic-mfif").dataset_class
    mfif_test = mfif(ensure_generated("synthetic-mfif", tmp_path / "mfif"), "test")
    with pytest.raises(ValueError, match="'det' \\(requested\\) cannot run: .* no detection boxes"):
        resolve_evaluators(("det",), {}, mfif_test, ("train", "test"))


@needs_ultralytics
def test_detection_errors_are_clear(ivif_root: Path, tmp_path: Path) -> None:
    train, test = SyntheticIVIF(ivif_root, "train"), SyntheticIVIF(ivif_root, "test")
    with pytest.raises(DownstreamError, match="does not exist"):
        evaluate_detection_folders(tmp_path / "nope", tmp_path / "nope", train, test, log_dir=tmp_path / "det")
    _write_fused(ivif_root, tmp_path / "fused", "max")
    with pytest.raises(DownstreamError, match="weights are never downloaded"):
        evaluate_detection_folders(tmp_path / "fused" / "train", tmp_path / "fused" / "test", train, test,
                                   det_preset("smoke", pretrained=str(tmp_path / "missing.pt")),
                                   log_dir=tmp_path / "det")


# ------------------------------------------------------------------------------------------------ sanity


@needs_ultralytics
def test_detection_learns_from_pixels(ivif_root: Path, tmp_path: Path) -> None:
    """smoke preset: YOLO on max-fused images finds objects; on a constant image it finds none (mAP ~ 0). The model
    trained on max also scores extra test folders without retraining (the robustness protocol's corrupted ones):
    the same images again give the same scores, constant images fewer detections."""
    train, test = SyntheticIVIF(ivif_root, "train"), SyntheticIVIF(ivif_root, "test")
    scores = {}
    for kind in ("max", "const"):
        _write_fused(ivif_root, tmp_path / kind, kind)
    for kind in ("max", "const"):
        extra = {"again": tmp_path / "max" / "test", "const": tmp_path / "const" / "test"} if kind == "max" else None
        scores[kind] = evaluate_detection_folders(tmp_path / kind / "train", tmp_path / kind / "test", train, test,
                                                  "smoke", seed=0, log_dir=tmp_path / kind / "det", progress=False,
                                                  extra_tests=extra)
    good, const = scores["max"], scores["const"]
    again, blank = good["det_extra"]["again"], good["det_extra"]["const"]
    assert (again["det_map50"], again["det_map50_95"]) == (good["det_map50"], good["det_map50_95"])
    assert blank["det_map50"] < good["det_map50"] - 0.06, (blank, good["det_map50"])
    print(f"det mAP50 max {good['det_map50']:.3f} const {const['det_map50']:.3f} "
          f"({good['det_seconds_per_epoch']:.2f} s/epoch)")
    # A constant image still lets YOLO learn where boxes usually are (the scene layout), so its level is small but
    # not zero (measured, pinned numerics: max 0.138, constant 0.029 mAP@0.5): pixels must add clearly to that.
    assert const["det_map50"] < 0.05
    assert good["det_map50"] > 3 * const["det_map50"] and good["det_map50"] > const["det_map50"] + 0.06
    assert good["det_map50_95"] <= good["det_map50"]
    assert set(good["det_ap50_per_class"]) == {"person", "car"}
    log_dir = tmp_path / "max" / "det"
    assert (log_dir / "train" / "results.csv").is_file() and (log_dir / "det_result.json").is_file()
    assert list((log_dir / "ultralytics").rglob("settings.json"))  # ultralytics' settings stay in the run


# ------------------------------------------------------------------------------------------------ runner / CLI


@needs_ultralytics
def test_bench_adds_downstream_columns_and_reuses_baselines(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                            tiny_budgets: None) -> None:
    pytest.importorskip("transformers")
    argv = ["bench", "--method", "max", "--dataset", "synthetic-ivif", "--downstream", "protocol", "--no-progress",
            "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "lb")]
    assert main(argv) == 0
    rows = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    assert [r["method"] for r in rows] == ["max", "source_a", "source_b"]
    from fusion_bench import numerics

    for row in rows:
        for col in ("seg_miou", "seg_pixel_acc", "det_map50", "det_map50_95"):
            assert 0 <= float(row[col]) <= 1, (row["method"], col)
        assert row["Qabf"] and row["config_hash"]
        if numerics.is_pinned():  # the CLI's default: the fusion pinned, the evaluators on native kernels
            assert row["numerics"].endswith(";downstream=native"), row["numerics"]
    run_dir = next((tmp_path / "runs" / "max" / "synthetic-ivif" / "smoke").glob("*/test-*/seed0"))
    per_class = (run_dir / "downstream_per_class.csv").read_text().splitlines()
    assert per_class[0] == "evaluator,class,metric,value"
    assert any(line.startswith("det,car,ap50,") for line in per_class)
    assert any(line.startswith("seg,road,iou,") for line in per_class)
    assert len(list((run_dir / "fused_train").glob("*.png"))) == 64
    assert (run_dir / "downstream" / "seg" / "seg_train_log.csv").is_file()
    assert (run_dir / "downstream" / "det" / "train" / "results.csv").is_file()
    # later methods reuse the baseline rows; a requested baseline runs first, so it is not computed twice
    assert main(argv[:2] + ["mean,source_a"] + argv[3:]) == 0
    assert [r["method"] for r in read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")] == [
        "max", "source_a", "source_b", "source_a", "mean"]
    board = (tmp_path / "lb" / "synthetic-ivif.csv").read_text()
    assert "seg_miou_mean" in board and "det_map50_mean" in board


def test_bench_downstream_errors(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    base = ["--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "lb"), "--no-progress"]
    assert main(["bench", "--method", "mean", "--dataset", "synthetic-ivif", "--downstream-numerics", "fast",
                 *base]) == 2
    assert "--downstream-numerics: invalid choice: 'fast'" in capsys.readouterr().err
    assert main(["bench", "--method", "mean", "--dataset", "synthetic-mfif", "--downstream", "seg", *base]) == 2
    assert "no segmentation masks" in capsys.readouterr().err
    assert main(["bench", "--method", "mean", "--dataset", "synthetic-ivif", "--downstream", "yolo", *base]) == 2
    assert "valid: protocol, none" in capsys.readouterr().err


def test_downstream_command_scores_any_folder(capsys: pytest.CaptureFixture, ivif_root: Path, tmp_path: Path,
                                              tiny_budgets: None) -> None:
    pytest.importorskip("transformers")
    _write_fused(ivif_root, tmp_path / "fused", "max")
    argv = ["downstream", "seg", "--fused", str(tmp_path / "fused"), "--dataset", "synthetic-ivif", "--root",
            str(ivif_root), "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[:out.rindex("}") + 1])
    assert set(summary) == {"seg_miou", "seg_pixel_acc"} and 0 <= summary["seg_miou"] <= 1
    result_dir = tmp_path / "fused" / "downstream-seg-smoke-seed0"
    assert (result_dir / "seg_result.json").is_file()
    per_class = (result_dir / "per_class.csv").read_text().splitlines()
    assert per_class[0] == "evaluator,class,metric,value" and len(per_class) == 1 + len(SyntheticIVIF.class_names)
    assert main(argv) == 2  # never overwrites a result
    assert "is not empty" in capsys.readouterr().err
    (tmp_path / "nofused").mkdir()
    assert main(["downstream", "det", "--fused", str(tmp_path / "nofused"), "--dataset", "synthetic-ivif",
                 "--root", str(ivif_root)]) == 2
    assert "train/ and test/" in capsys.readouterr().err


FAKE_DOWNSTREAM = [("msrs", "seg"), ("fmb", "seg"), ("llvip", "det"), ("m3fd", "det")]


@pytest.mark.parametrize("name, evaluator", FAKE_DOWNSTREAM)
def test_evaluators_run_on_fake_copies_through_bench(name: str, evaluator: str, capsys: pytest.CaptureFixture,
                                                     tmp_path: Path, tiny_budgets: None) -> None:
    """The protocol's evaluator runs through `bench` on the fake tree (masks/boxes in the real formats)."""
    pytest.importorskip("ultralytics" if evaluator == "det" else "transformers")
    root = get_datamodule(name).dataset_class.make_fake(tmp_path / name, seed=0)
    argv = ["bench", "--method", "mean", "--dataset", name, "--root", str(root), "--downstream", "protocol",
            "--no-downstream-baselines", "--no-progress", "--out", str(tmp_path / "runs"), "--leaderboard-dir",
            str(tmp_path / "lb")]
    assert main(argv) == 0, capsys.readouterr().err
    (row,) = read_rows(tmp_path / "lb" / "raw" / f"{name}.csv")
    column = "seg_miou" if evaluator == "seg" else "det_map50"
    assert not math.isnan(float(row[column])) and 0 <= float(row[column]) <= 1


@needs_ultralytics
def test_detection_training_is_deterministic_on_cpu(ivif_root: Path, tmp_path: Path) -> None:
    """Two seeded runs give the same per-epoch losses and scores (ultralytics deterministic mode, no workers)."""
    _write_fused(ivif_root, tmp_path / "fused", "max")
    train, test = SyntheticIVIF(ivif_root, "train"), SyntheticIVIF(ivif_root, "test")
    config = det_preset("smoke", epochs=2, image_size=64)
    runs = [evaluate_detection_folders(tmp_path / "fused" / "train", tmp_path / "fused" / "test", train, test, config,
                                       seed=5, log_dir=tmp_path / f"run{i}", progress=False) for i in range(2)]
    logs = [(tmp_path / f"run{i}" / "train" / "results.csv").read_text().splitlines() for i in range(2)]
    losses = [[line.split(",")[2:5] for line in log[1:]] for log in logs]  # box, cls, dfl train losses per epoch
    assert len(losses[0]) == 2 and losses[0] == losses[1]
    assert runs[0]["det_map50"] == runs[1]["det_map50"]


@pytest.mark.gpu
@pytest.mark.parametrize("evaluator", ["seg", "det"])
def test_paper_preset_on_cuda(evaluator: str, ivif_root: Path, tmp_path: Path) -> None:
    """Paper preset (2 epochs) on the synthetic-ivif train split (64 images); prints s/epoch and peak memory for
    the docs (run with `pytest -m gpu -s`)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from fusion_bench.evaluators.segmentation import evaluate_segmentation_folders, seg_preset

    _write_fused(ivif_root, tmp_path / "fused", "max")
    train, test = SyntheticIVIF(ivif_root, "train"), SyntheticIVIF(ivif_root, "test")
    if evaluator == "seg":
        r = evaluate_segmentation_folders(tmp_path / "fused" / "train", tmp_path / "fused" / "test", train, test,
                                          seg_preset("paper", epochs=2, freeze_backbone_epochs=1), device="cuda",
                                          log_dir=tmp_path / "seg", progress=False)
        print(f"seg paper: {r['seg_seconds_per_epoch']:.2f} s/epoch, peak {r['seg_peak_mem_mb']:.0f} MiB")
        assert 0 <= r["seg_miou"] <= 1
    else:
        r = evaluate_detection_folders(tmp_path / "fused" / "train", tmp_path / "fused" / "test", train, test,
                                       det_preset("paper", epochs=2), device="cuda", log_dir=tmp_path / "det",
                                       progress=False)
        print(f"det paper: {r['det_seconds_per_epoch']:.2f} s/epoch, peak {r['det_peak_mem_mb']:.0f} MiB")
        assert 0 <= r["det_map50"] <= 1
    assert r[f"{evaluator}_seconds_per_epoch"] > 0 and r[f"{evaluator}_peak_mem_mb"] > 0


@pytest.mark.parametrize("method, dataset", [("amdanet", "synthetic-ivif"), ("amdanet", "fmb"),
                                             ("ssvif", "synthetic-ivif"), ("swinfusion", "synthetic-ivif"),
                                             ("seafusion", "synthetic-ivif")])
def test_paper_methods_rows_carry_downstream_miou(method: str, dataset: str, capsys: pytest.CaptureFixture,
                                                  tmp_path: Path, tiny_budgets: None) -> None:
    """`bench` rows of the paper methods have fused-image metrics and the downstream SegFormer mIoU; AMDANet's
    also its own head's mIoU (native_miou). Smoke methods, 1-epoch SegFormer (plumbing of the columns)."""
    pytest.importorskip("transformers")
    root = ["--root", str(get_datamodule("fmb").dataset_class.make_fake(tmp_path / "fmb", seed=0))] \
        if dataset == "fmb" else []
    argv = ["bench", "--method", method, "--dataset", dataset, *root, "--downstream", "seg",
            "--no-downstream-baselines", "--no-progress", "--device", "cpu", "--out", str(tmp_path / "runs"),
            "--leaderboard-dir", str(tmp_path / "lb")]
    assert main(argv) == 0, capsys.readouterr().err
    (row,) = read_rows(tmp_path / "lb" / "raw" / f"{dataset}.csv")
    assert math.isfinite(float(row["Qabf"])) and math.isfinite(float(row["EN"]))
    assert 0 <= float(row["seg_miou"]) <= 1
    if method == "amdanet":
        assert 0 <= float(row["native_miou"]) <= 1
    else:
        assert "native_miou" not in row


def test_segmentation_evaluator_trains_with_native_kernels_unless_pinned(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    """`seg` runs in this process: with pinned=False its training sees oneDNN on; pinned, the process's setting."""
    from fusion_bench.evaluators import segmentation

    seen = []
    monkeypatch.setattr(segmentation, "evaluate_segmentation_folders",
                        lambda *args, **kwargs: seen.append(torch.backends.mkldnn.enabled) or {})
    fused = {"train": tmp_path, "test": tmp_path}
    datasets = {"train": None, "test": None}
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        for pinned in (True, False):
            segmentation.start("smoke", fused, datasets, seed=0, device="cpu", log_dir=tmp_path, progress=False,
                               pinned=pinned).result()
    finally:
        torch.backends.mkldnn.enabled = before
    assert seen == [False, True]


def test_detection_child_gets_the_native_environment_unless_pinned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                   ivif_root: Path) -> None:
    """`det` trains in a child process: pinned, it inherits this process's environment; native, it gets
    native_environment(threads) and the request names the thread count."""
    from fusion_bench import numerics
    from fusion_bench.evaluators import detection

    started = []

    class FakePopen:
        def __init__(self, cmd, env, stdout, stderr):
            started.append(env)

        def poll(self):
            return 0

    monkeypatch.setattr(detection.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(detection, "require_extra", lambda *args: None)
    monkeypatch.setattr(detection, "smoke_model_yaml", lambda folder: folder / "smoke.yaml")
    monkeypatch.setenv(numerics.MODE_ENV, "pinned")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    _write_fused(ivif_root, tmp_path / "fused", "max")
    fused = {split: tmp_path / "fused" / split for split in ("train", "test")}
    datasets = {split: SyntheticIVIF(ivif_root, split) for split in ("train", "test")}
    for pinned in (True, False):
        detection.start("smoke", fused, datasets, seed=0, device="cpu", log_dir=tmp_path / f"det{pinned}",
                        progress=False, pinned=pinned, threads=3)
    assert started[0][numerics.MODE_ENV] == "pinned" and started[0]["ATEN_CPU_CAPABILITY"] == "avx2"
    assert started[1][numerics.MODE_ENV] == "native" and "ATEN_CPU_CAPABILITY" not in started[1]
    assert started[1]["OMP_NUM_THREADS"] == "3"
    assert json.loads((tmp_path / "detFalse" / "yolo_request.json").read_text())["threads"] == 3


def test_child_process_evaluator_overlaps_the_in_process_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With pinned numerics on a multi-core CPU, the evaluator that trains in a child process (YOLO) is started
    before the in-process one (SegFormer) runs, and the row values come back in the requested order."""
    from fusion_bench import numerics
    from fusion_bench.benchmark import downstream
    from fusion_bench.evaluators.spec import Deferred, EvaluatorSpec

    events: list[str] = []
    numerics_seen: list[tuple] = []

    class FakeImpl:
        def __init__(self, name: str, child: bool):
            self.name, self.child = name, child

        def start(self, config, fused, datasets, **kwargs):
            events.append(f"start {self.name}")
            numerics_seen.append((self.name, kwargs["pinned"], kwargs["threads"]))
            if self.child:  # already running: result() only waits
                return Deferred(lambda: events.append(f"wait {self.name}") or {f"{self.name}_score": 1.0, "pc": {}})
            return Deferred(lambda: events.append(f"run {self.name}") or {f"{self.name}_score": 2.0, "pc": {}})

    specs = {name: EvaluatorSpec(name, name, "unused", (f"{name}_score",), (("x", "pc"),), "class_names", "labels",
                                 (), child_process=child) for name, child in (("seg", False), ("det", True))}
    impls = {"seg": FakeImpl("seg", False), "det": FakeImpl("det", True)}
    monkeypatch.setattr(EvaluatorSpec, "_impl", lambda self: impls[self.name])
    monkeypatch.setattr(downstream, "evaluator", lambda name: specs[name])
    monkeypatch.setattr(numerics, "is_pinned", lambda: True)
    monkeypatch.setattr(downstream.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    values, _, seconds = downstream.run_evaluators({"seg": "cfg", "det": "cfg"}, {"train": tmp_path}, {}, 0,
                                                   torch.device("cpu"), tmp_path, False)
    assert events == ["start det", "start seg", "run seg", "wait det"]
    assert list(values) == ["seg_score", "det_score"] and set(seconds) == {"seg", "det"}
    assert numerics_seen == [("det", True, None), ("seg", True, None)]
    # native downstream numerics in a pinned process: still overlapped, the child gets the core SegFormer leaves
    events.clear(), numerics_seen.clear()
    monkeypatch.setattr(downstream.torch, "get_num_threads", lambda: 1)
    downstream.run_evaluators({"seg": "cfg", "det": "cfg"}, {"train": tmp_path}, {}, 0, torch.device("cpu"),
                              tmp_path, False, "native")
    assert events == ["start det", "start seg", "run seg", "wait det"]
    assert numerics_seen == [("det", False, 1), ("seg", False, 1)]
    events.clear()
    monkeypatch.setattr(numerics, "is_pinned", lambda: False)  # unpinned: one after the other
    downstream.run_evaluators({"seg": "cfg", "det": "cfg"}, {"train": tmp_path}, {}, 0, torch.device("cpu"),
                              tmp_path, False)
    assert events == ["start det", "wait det", "start seg", "run seg"]


@needs_ultralytics
def test_yolo_worker_checkpoints_every_epoch_only_when_it_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without validation there is no best epoch to keep: ultralytics gets save=False (last.pt once, at the end);
    with validation, save=True (best.pt); a protocol's own `save` in train_args wins."""
    import ultralytics

    from fusion_bench.evaluators import yolo_worker

    calls: list[dict] = []

    class Stop(Exception):
        pass

    class FakeYOLO:
        def __init__(self, model: str):
            pass

        def train(self, **kwargs):
            calls.append(kwargs)
            raise Stop

    monkeypatch.setattr(ultralytics, "YOLO", FakeYOLO)
    request = {"data": "d.yaml", "model_yaml": "m.yaml", "pretrained": None, "epochs": 1, "batch": 2, "imgsz": 64,
               "seed": 0, "device": "cpu", "workers": 0, "amp": False, "project": "p", "class_names": ["a"],
               "threads": 1}
    for validate, train_args in ((False, {}), (True, {}), (False, {"save": True})):
        with pytest.raises(Stop):
            yolo_worker.run({**request, "validate": validate, "train_args": train_args})
    assert [c["save"] for c in calls] == [False, True, True]
    assert [c["val"] for c in calls] == [False, True, False]


@needs_ultralytics
def test_detection_in_float64_trains_and_tests_a_float64_model(ivif_root: Path, tmp_path: Path) -> None:
    """`dtype: float64` (the regression suite's downstream entry): the detector trains in float64 in the child
    process (ultralytics' float32 casts redirected there), with a finite training loss in the row; float64 refuses
    AMP and validation (ultralytics validates during training in float32)."""
    _write_fused(ivif_root, tmp_path / "fused", "max")
    train, test = SyntheticIVIF(ivif_root, "train"), SyntheticIVIF(ivif_root, "test")
    result = evaluate_detection_folders(tmp_path / "fused" / "train", tmp_path / "fused" / "test", train, test,
                                        det_preset("smoke", epochs=1, image_size=64, dtype="float64"), seed=0,
                                        log_dir=tmp_path / "det", progress=False)
    assert result["det_dtype"] == "float64"
    assert math.isfinite(result["det_train_loss"]) and result["det_train_loss"] > 0
    assert set(DETECTION.row(result)) == {"det_map50", "det_map50_95", "det_train_loss"}
    with pytest.raises(ValueError, match="float64 trains without AMP and without validation"):
        det_preset("paper", dtype="float64")
    with pytest.raises(ValueError, match="dtype 'float16'"):
        det_preset("smoke", dtype="float16")
