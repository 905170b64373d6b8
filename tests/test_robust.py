"""The robustness protocol (`bench --protocol robust`): rows for every corruption x severity, the clean row equal to
the standard protocol's bit for bit, scores falling with the Gaussian noise, cross-dataset rows, the mCE arithmetic,
and bad requests refused with exit 2 before any work."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from fusion_bench.benchmark.protocol import hash_of_text
from fusion_bench.benchmark.results import read_rows
from fusion_bench.benchmark.robust import robust_raw_path
from fusion_bench.benchmark.robust_table import corruption_table, mce_table
from fusion_bench.corruptions import SEVERITIES
from fusion_bench.registry import get_datamodule

METRICS = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM", "AG", "CC", "MSE", "PSNR")


def _bench(cli, capsys, tmp_path, *extra: str) -> tuple[int, str, str]:
    return cli(capsys, "bench", "--dataset", "synthetic-ivif", "--device", "cpu", "--out", tmp_path / "runs",
               "--leaderboard-dir", tmp_path / "lb", "--no-progress", "--no-report", "--downstream", "none", *extra)


def test_robust_rows_clean_equals_standard_and_noise_degrades(cli, capsys, tmp_path):
    methods = "mean,max,laplacian"
    code, out, err = _bench(cli, capsys, tmp_path, "--method", methods, "--protocol", "robust", "--corruptions",
                            "gaussian_noise:both,modality_dropout:ir")
    assert code == 0, err
    assert "mCE" in out
    rows = read_rows(robust_raw_path(tmp_path / "lb", "synthetic-ivif"))
    assert len(rows) == 3 * (1 + 2 * len(SEVERITIES))
    code, _, err = _bench(cli, capsys, tmp_path, "--method", methods)
    assert code == 0, err
    standard = {r["method"]: r for r in read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")}
    for method in methods.split(","):
        mine = [r for r in rows if r["method"] == method]
        groups = {(r["corruption"], r["modality"], int(r["severity"])) for r in mine}
        assert groups == {("none", "", 0)} | {(c, m, s) for c, m in (("gaussian_noise", "both"),
                                                                       ("modality_dropout", "ir"))
                                              for s in SEVERITIES}
        (clean,) = [r for r in mine if r["severity"] == "0"]
        for metric in METRICS:  # the same text: every digit of the float
            assert clean[metric] == standard[method][metric], (method, metric)
        assert clean["config_hash"] == standard[method]["config_hash"] and clean["train_dataset"] == ""
        noise = sorted((int(r["severity"]), r) for r in mine if r["corruption"] == "gaussian_noise")
        for metric in ("Qabf", "SSIM", "VIF"):  # a training-free method: falls monotonically with the noise
            values = [float(clean[metric])] + [float(r[metric]) for _, r in noise]
            assert all(a > b for a, b in zip(values, values[1:])), (method, metric, values)
    table = pd.read_csv(tmp_path / "lb" / "robust" / "synthetic-ivif.mce.csv")
    assert float(table.loc[table["method"] == "mean", "mCE"].iloc[0]) == pytest.approx(100.0)
    assert set(table["method"]) == set(methods.split(","))
    # the report: a robustness section beside the standard ones, with the curves and the tables
    code, _, err = cli(capsys, "report", "--dataset", "synthetic-ivif", "--runs", tmp_path / "runs",
                       "--leaderboard-dir", tmp_path / "lb", "--out", tmp_path / "report")
    assert code == 0, err
    html = (tmp_path / "report" / "index.html").read_text()
    assert 'id="robustness"' in html and "Degradation curves" in html
    assert (tmp_path / "report" / "figures" / "robust_curves.png").stat().st_size > 0
    assert "| mean |" in (tmp_path / "report" / "tables" / "robust_mce.md").read_text()
    assert "\\toprule" in (tmp_path / "report" / "tables" / "robust_mce.tex").read_text()


def test_robust_rows_repeat(cli, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSION_BENCH_REPORT", "1")  # the tests' default is off (conftest)
    numbers = []
    for k in range(2):
        code, _, err = cli(capsys, "bench", "--dataset", "synthetic-ivif", "--method", "laplacian", "--device", "cpu",
                           "--out", tmp_path / f"runs{k}", "--leaderboard-dir", tmp_path / f"lb{k}", "--no-progress",
                           "--protocol", "robust", "--corruptions", "complementary_masking,misregistration,low_light")
        assert code == 0, err
        rows = read_rows(robust_raw_path(tmp_path / f"lb{k}", "synthetic-ivif"))
        page = tmp_path / f"runs{k}" / "reports" / "synthetic-ivif-smoke-robust"
        assert "Degradation curves" in (page / "index.html").read_text()
        assert (page / "tables" / "robust_mce.md").is_file()
        numbers.append([(r["corruption"], r["severity"], *(r[m] for m in METRICS)) for r in rows])
    assert numbers[0] == numbers[1]
    assert len(numbers[0]) == 1 + 3 * len(SEVERITIES)


def test_segmentation_on_corrupted_images_without_retraining(cli, capsys, tmp_path):
    """`--downstream seg`: SegFormer trained once on the clean fused training images scores every corrupted test
    folder; the clean row's mIoU is the standard protocol's (same recipe, same seed)."""
    common = ("--method", "max", "--downstream", "seg", "--set", "seg.epochs=2")
    code, _, err = _bench(cli, capsys, tmp_path, *common, "--protocol", "robust", "--corruptions",
                          "modality_dropout:ir")
    assert code == 0, err
    rows = read_rows(robust_raw_path(tmp_path / "lb", "synthetic-ivif"))
    assert len(rows) == 1 + len(SEVERITIES) and all(r["seg_miou"] not in ("", "nan") for r in rows)
    code, _, err = _bench(cli, capsys, tmp_path, *common, "--no-downstream-baselines")
    assert code == 0, err
    (standard,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    (clean,) = [r for r in rows if r["severity"] == "0"]
    assert clean["seg_miou"] == standard["seg_miou"] and clean["config_hash"] == standard["config_hash"]
    dropped = float([r for r in rows if r["severity"] == "5"][0]["seg_miou"])
    assert dropped < float(clean["seg_miou"])  # every image without its IR: the segmenter trained on fused loses
    seg_runs = list((tmp_path / "runs" / "robust").rglob("seg_result.json"))
    assert len(seg_runs) == 1, "trained once for all passes"


def test_detection_on_corrupted_images_without_retraining(cli, capsys, tmp_path):
    """`--downstream det`: YOLO trained once on the clean fused training images scores every corrupted test folder;
    the clean row's mAP is the standard protocol's (same recipe, same seed, same threads)."""
    common = ("--method", "max", "--downstream", "det", "--set", "det.epochs=2")
    code, _, err = _bench(cli, capsys, tmp_path, *common, "--protocol", "robust", "--corruptions",
                          "modality_dropout:ir")
    assert code == 0, err
    rows = read_rows(robust_raw_path(tmp_path / "lb", "synthetic-ivif"))
    assert len(rows) == 1 + len(SEVERITIES)
    assert all(r["det_map50"] not in ("", "nan") and r["det_map50_95"] not in ("", "nan") for r in rows), rows[0]
    code, _, err = _bench(cli, capsys, tmp_path, *common, "--no-downstream-baselines")
    assert code == 0, err
    (standard,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    (clean,) = [r for r in rows if r["severity"] == "0"]
    assert clean["det_map50"] == standard["det_map50"] and clean["config_hash"] == standard["config_hash"]
    results = list((tmp_path / "runs" / "robust").rglob("det_result.json"))
    assert len(results) == 1, "trained once for all passes"
    extra = json.loads(results[0].read_text())["det_extra"]
    assert list(extra) == [f"modality_dropout-ir-s{s}" for s in SEVERITIES]
    # (that each extra test folder is scored on its own images: tests/test_downstream.py, with a trained detector)


def test_cross_dataset_row_with_segmentation(cli, capsys, tmp_path):
    """`--train-dataset A --downstream seg`: the evaluator trains on the scored dataset's training images fused by
    the model trained on A; the rows' config hash covers the evaluator (another entry than the metrics-only row)."""
    root = get_datamodule("msrs").dataset_class.make_fake(tmp_path / "msrs")
    common = ("--method", "fusion_cnn", "--dataset", "msrs", "--root", root, "--train-dataset", "synthetic-ivif",
              "--protocol", "robust", "--corruptions", "gaussian_noise:vis", "--device", "cpu", "--out",
              tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb", "--no-progress", "--no-report",
              "--set", "train.max_steps=2", "seg.epochs=1")
    code, out, err = cli(capsys, "bench", *common, "--downstream", "seg", "--print-config")
    assert code == 0 and not (tmp_path / "runs").exists(), "--print-config runs nothing"
    printed = out.partition("\n")[2]
    code, _, err = cli(capsys, "bench", *common, "--downstream", "seg")
    assert code == 0, err
    rows = read_rows(robust_raw_path(tmp_path / "lb", "msrs"))
    assert len(rows) == 1 + len(SEVERITIES)
    assert all(r["train_dataset"] == "synthetic-ivif" and r["seg_miou"] not in ("", "nan") for r in rows)
    (saved,) = (tmp_path / "runs" / "robust").rglob("config.yaml")
    assert saved.read_text() == printed and hash_of_text(printed) == rows[0]["config_hash"]
    code, _, err = cli(capsys, "bench", *common[:-1], "--downstream", "none")
    assert code == 0, err
    plain = [r for r in read_rows(robust_raw_path(tmp_path / "lb", "msrs")) if not r["seg_miou"]]
    assert plain and plain[0]["config_hash"] != rows[0]["config_hash"]
    assert [r["Qabf"] for r in plain] == [r["Qabf"] for r in rows], "the same fusion model and inputs"


def test_cross_dataset_row(cli, capsys, tmp_path):
    root = get_datamodule("msrs").dataset_class.make_fake(tmp_path / "msrs")
    code, out, err = cli(capsys, "bench", "--method", "fusion_cnn", "--dataset", "msrs", "--root", root,
                         "--train-dataset", "synthetic-ivif", "--protocol", "robust", "--corruptions", "none",
                         "--device", "cpu", "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb",
                         "--no-progress")
    assert code == 0, err
    (row,) = read_rows(robust_raw_path(tmp_path / "lb", "msrs"))
    assert row["train_dataset"] == "synthetic-ivif" and row["dataset"] == "msrs" and row["severity"] == "0"
    assert not math.isnan(float(row["Qabf"])) and float(row["train_s"]) > 0
    assert (tmp_path / "runs" / "robust" / "fusion_cnn" / "synthetic-ivif-to-msrs").is_dir()


def test_cross_dataset_refuses_other_channels(cli, capsys, tmp_path, monkeypatch):
    from fusion_bench.benchmark import robust

    root = get_datamodule("msrs").dataset_class.make_fake(tmp_path / "msrs")
    # a gray-visible copy of the layout stands for a dataset whose images have other channels
    monkeypatch.setattr(robust, "_channels", lambda prep: (1, 1) if prep.spec.dataset == "msrs" else (1, 3))
    code, _, err = cli(capsys, "bench", "--method", "fusion_cnn", "--dataset", "msrs", "--root", root,
                       "--train-dataset", "synthetic-ivif", "--protocol", "robust", "--device", "cpu",
                       "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb", "--no-progress")
    assert code == 2 and "--train-dataset synthetic-ivif" in err and "channels" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("extra, needle", [
    (("--method", "fusion_cnn", "--train-dataset", "synthetic-mfif", "--protocol", "robust"), "--train-dataset"),
    (("--method", "mean", "--train-dataset", "synthetic-ivif"), "--protocol robust"),
    (("--method", "mean", "--protocol", "sturdy"), "--protocol"),
    (("--method", "mean", "--protocol", "robust", "--corruptions", "fog"), "--corruptions"),
    (("--method", "mean", "--protocol", "robust", "--corruptions", "gaussian_noise:thermal"), "--corruptions"),
    (("--method", "mean", "--protocol", "robust", "--corruptions", "modality_dropout:both"), "--corruptions"),
    (("--method", "mean", "--protocol", "robust", "--downstream", "native"), "unknown downstream evaluator"),
    (("--method", "fusion_cnn", "--protocol", "robust", "--downstream", "seg", "--train-dataset", "synthetic-mfif"),
     "--train-dataset synthetic-mfif"),
    (("--method", "mean", "--protocol", "balance"), "--protocol"),
])
def test_bad_requests_exit_2_before_any_work(cli, capsys, tmp_path, extra, needle):
    code, _, err = cli(capsys, "bench", "--dataset", "synthetic-ivif", "--device", "cpu", "--out", tmp_path / "runs",
                       "--leaderboard-dir", tmp_path / "lb", "--no-progress", *extra)
    assert code == 2 and needle in err, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists()


def test_robust_refuses_a_classification_dataset(cli, capsys, tmp_path):
    code, _, err = cli(capsys, "bench", "--dataset", "synthetic-av", "--method", "late_fusion", "--protocol", "robust",
                       "--device", "cpu", "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb")
    assert code == 2 and "--protocol robust" in err, err


def test_regress_key_holds_robust_rows():
    from fusion_bench.benchmark.regress import compare

    plain = {"dataset": "d", "method": "m", "preset": "smoke", "seed": 0, "Qabf": 0.4}
    robust = [{**plain, "protocol": "robust", "corruption": c, "modality": m, "severity": s, "Qabf": q}
              for c, m, s, q in (("none", "", 0, 0.5), ("gaussian_noise", "vis", 1, 0.45))]
    expected = pd.DataFrame([plain, *robust])
    expected["severity"] = expected["severity"].astype(float)  # as a CSV with empty cells reads it
    assert compare(expected, pd.DataFrame([plain, *robust]), {}) == []
    drifted = [dict(r) for r in robust]
    drifted[1]["Qabf"] = 0.46
    (line,) = compare(expected, pd.DataFrame([plain, *drifted]), {})
    assert "robust/gaussian_noise/vis/1" in line and "Qabf" in line


def _raw(method: str, corruption: str, severity: int, qabf: float, seed: int = 0) -> dict:
    return {"method": method, "dataset": "d", "train_dataset": "", "preset": "smoke", "config_hash": method,
            "corruption_hash": "h", "seed": str(seed), "corruption": corruption,
            "modality": "" if severity == 0 else "a", "severity": str(severity), "Qabf": str(qabf)}


def test_mce_arithmetic():
    rows = [_raw("base", "none", 0, 0.8), _raw("f", "none", 0, 0.9)]
    for s in SEVERITIES:  # E = 1 - Qabf: baseline errors 0.2 + 0.1 s, method 0.1 + 0.05 s (noise) / 0.1 + 0.1 s (blur)
        rows += [_raw("base", "noise", s, 0.8 - 0.1 * s), _raw("f", "noise", s, 0.9 - 0.05 * s)]
        rows += [_raw("base", "blur", s, 0.8 - 0.1 * s), _raw("f", "blur", s, 0.9 - 0.1 * s)]
    rows += [_raw("f", "noise", 1, 0.9 - 0.05 * 1 - 0.02, seed=1)]  # seeds are averaged first
    table = corruption_table(pd.DataFrame(rows), "base", "Qabf", 1.0, True)
    f = table[table["method"] == "f"].set_index("corruption")
    e_base = sum(0.2 + 0.1 * s for s in SEVERITIES)
    e_noise = sum(0.1 + 0.05 * s for s in SEVERITIES) + 0.01
    assert f.loc["noise", "CE"] == pytest.approx(e_noise / e_base)
    assert f.loc["noise", "relCE"] == pytest.approx((e_noise - 5 * 0.1) / (e_base - 5 * 0.2))
    assert f.loc["blur", "CE"] == pytest.approx(sum(0.1 + 0.1 * s for s in SEVERITIES) / e_base)
    assert f.loc["noise", "Qabf"] == pytest.approx(sum(0.9 - 0.05 * s for s in SEVERITIES) / 5 - 0.01 / 5)
    assert f.loc["noise", "Qabf_clean"] == pytest.approx(0.9)
    mce = mce_table(table, "Qabf", "base").set_index("method")
    assert mce.loc["base", "mCE"] == pytest.approx(100.0) and mce.loc["base", "relative_mCE"] == pytest.approx(100.0)
    assert mce.loc["f", "mCE"] == pytest.approx(100 * (f.loc["noise", "CE"] + f.loc["blur", "CE"]) / 2)
    no_base = corruption_table(pd.DataFrame([r for r in rows if r["method"] == "f"]), "base", "Qabf", 1.0, True)
    assert no_base["CE"].isna().all()
