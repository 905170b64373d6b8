"""Rows of published fused images (`bench --method published:NAME --fused-dir DIR`, preset published): their metric
values are those of `fusion-bench metrics` on the same folder, pairing by stem or `--fused-pattern`, the subset rule,
every request error (exit 2, nothing written), the leaderboard/report labels, `metrics --fused-pattern/--allow-subset`,
downstream columns from `--train-fused-dir`, and the real published folders of ../shared/realdata."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from toy_dataset import make_toy

from fusion_bench.benchmark.results import read_rows
from fusion_bench.metrics import score_folders

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
RTOL = 1e-9  # bench decodes a 3-channel grey source as one channel, `metrics` as three: last-digit differences


def _fused_folder(root: Path, out: Path, name: str = "{stem}.png", drop: tuple[str, ...] = ()) -> Path:
    """`out` with a "published" fused image per test pair of the toy dataset (the mean of the two sources, as 8-bit
    RGB, named by `name`)."""
    import numpy as np
    from PIL import Image

    out.mkdir(parents=True)
    for path in sorted((root / "test" / "ir").iterdir()):
        if path.stem in drop:
            continue
        ir = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        vis = np.asarray(Image.open(root / "test" / "vis" / path.name).convert("RGB"), dtype=np.float64)
        Image.fromarray(((ir + vis) / 2).round().astype(np.uint8)).save(out / name.format(stem=path.stem))
    return out


def _bench(cli, capsys, tmp_path: Path, root: Path, fused: Path, *extra: str) -> tuple[int, str, str]:
    return cli(capsys, "bench", "--method", "published:Avg", "--dataset", "toy", "--root", root, "--fused-dir", fused,
               "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb", "--no-progress", *extra)


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-12)


def test_published_row_equals_metrics_on_the_same_folder(cli, capsys, tmp_path, toy_registered):
    root = make_toy(tmp_path / "toy", n=3)
    fused = _fused_folder(root, tmp_path / "fused", "{stem}_fused.png")
    code, out, err = _bench(cli, capsys, tmp_path, root, fused, "--fused-pattern", "{stem}_fused.png",
                            "--source", "the authors' repository @abc")
    assert code == 0, err
    assert "Avg (published images)" in out
    (row,) = read_rows(tmp_path / "lb" / "raw" / "toy.csv")
    assert (row["method"], row["preset"], row["n_images"]) == ("Avg", "published", "3")
    assert row["source"] == "the authors' repository @abc" and len(row["fused_sha256"]) == 64
    assert row["params_m"] == row["gflops"] == row["fuse_ms_per_image"] == row["train_s"] == ""
    code, _, err = cli(capsys, "metrics", "--a", root / "test" / "ir", "--b", root / "test" / "vis", "--fused", fused,
                       "--fused-pattern", "{stem}_fused.png", "--out", tmp_path / "metrics.csv", "--no-progress")
    assert code == 0, err
    reference = pd.read_csv(tmp_path / "metrics.csv").set_index("name")
    run_dir = next((tmp_path / "runs").rglob("metrics_per_image.csv")).parent
    per_image = pd.read_csv(run_dir / "metrics_per_image.csv", dtype={"name": str}).set_index("name")
    reference.index = per_image.index  # the CSV read back parses "000" as 0
    for metric in reference.columns:
        for name in reference.index:
            assert _close(per_image.loc[name, metric], reference.loc[name, metric]), (metric, name)
        assert _close(float(row[metric]), float(reference[metric].mean())), metric
    assert sorted(p.name for p in (run_dir / "fused").iterdir()) == ["000.png", "001.png", "002.png"]


def test_missing_images_are_an_error_unless_allow_subset(cli, capsys, tmp_path, toy_registered):
    root = make_toy(tmp_path / "toy", n=3)
    fused = _fused_folder(root, tmp_path / "fused", drop=("001",))
    code, _, err = _bench(cli, capsys, tmp_path, root, fused)
    assert code == 2 and "1 of 3 test images of toy have no fused image" in err and "001" in err
    assert "--allow-subset" in err and "--fused-pattern" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists()
    code, _, err = _bench(cli, capsys, tmp_path, root, fused, "--allow-subset")
    assert code == 0, err
    full = _fused_folder(root, tmp_path / "full")
    code, _, err = _bench(cli, capsys, tmp_path, root, full)
    assert code == 0, err
    subset_row, full_row = read_rows(tmp_path / "lb" / "raw" / "toy.csv")
    assert (subset_row["n_images"], full_row["n_images"]) == ("2", "3")
    assert subset_row["split_hash"] != full_row["split_hash"]  # two leaderboard entries, never averaged
    board = pd.read_csv(tmp_path / "lb" / "toy.csv")
    assert len(board) == 2 and set(board["kind"]) == {"published"}
    reference = score_folders(root / "test" / "ir", root / "test" / "vis", fused, progress=False,
                              allow_subset=True)
    assert _close(float(subset_row["EN"]), float(reference["EN"].mean()))


def test_metrics_cli_fused_pattern_and_allow_subset(cli, capsys, tmp_path, toy_registered):
    root = make_toy(tmp_path / "toy", n=3)
    fused = _fused_folder(root, tmp_path / "fused", "{stem}_fused.png", drop=("002",))
    argv = ["metrics", "--a", root / "test" / "ir", "--b", root / "test" / "vis", "--fused", fused,
            "--out", tmp_path / "m.csv", "--no-progress"]
    code, _, err = cli(capsys, *argv)
    assert code == 2 and "000_fused.png" in err
    code, _, err = cli(capsys, *argv, "--fused-pattern", "{stem}_fused.png")
    assert code == 2 and "--allow-subset" in err and "002.png" in err
    code, out, err = cli(capsys, *argv, "--fused-pattern", "{stem}_fused.png", "--allow-subset")
    assert code == 0, err
    assert list(pd.read_csv(tmp_path / "m.csv", dtype={"name": str})["name"]) == ["000", "001"]
    code, _, err = cli(capsys, *argv, "--fused-pattern", "fused.png", "--overwrite")
    assert code == 2 and "--fused-pattern 'fused.png'" in err and "{stem}" in err


@pytest.mark.parametrize("extra, expected", [
    ((), "pass --fused-dir DIR"),
    (("--preset", "smoke", "--fused-dir", "F"), "--preset smoke: --method published:NAME runs under preset published"),
    (("--fused-dir", "F", "--set", "model.width=3"), "--set model.width: published images have no method settings"),
    (("--fused-dir", "F", "--weights", "zoo"), "--weights does not apply to --method published:NAME"),
    (("--fused-dir", "F", "--train-fused-dir", "F"), "--train-fused-dir F: no downstream evaluator runs on toy"),
    (("--fused-dir", "NOWHERE"), "--fused-dir NOWHERE: fused-dir folder NOWHERE does not exist"),
])
def test_published_request_errors(cli, capsys, tmp_path, toy_registered, monkeypatch, extra, expected):
    root = make_toy(tmp_path / "toy", n=2)
    _fused_folder(root, tmp_path / "F")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "bench", "--method", "published:Avg", "--dataset", "toy", "--root", root,
                       "--out", "runs", "--leaderboard-dir", "lb", *extra)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists()


def test_published_options_and_names_are_checked(cli, capsys, tmp_path, toy_registered):
    root = make_toy(tmp_path / "toy", n=2)
    fused = _fused_folder(root, tmp_path / "F")
    code, _, err = cli(capsys, "bench", "--method", "mean", "--dataset", "toy", "--root", root, "--fused-dir", fused)
    assert code == 2 and "--fused-dir goes with --method published:NAME" in err
    code, _, err = cli(capsys, "bench", "--method", "published:Avg,mean", "--dataset", "toy", "--root", root,
                       "--fused-dir", fused)
    assert code == 2 and "one method on one dataset" in err
    code, _, err = cli(capsys, "bench", "--method", "published:a/b", "--dataset", "toy", "--root", root,
                       "--fused-dir", fused)
    assert code == 2 and "expected published:NAME" in err
    from PIL import Image

    Image.new("RGB", (10, 12)).save(fused / "001.png")
    code, _, err = _bench(cli, capsys, tmp_path, root, fused)
    assert code == 2 and "001.png is 12x10 (HxW), but the sources of sample '001' are 48x64" in err


def test_published_entries_are_labelled_in_every_format_and_the_report(cli, capsys, tmp_path, toy_registered):
    from fusion_bench.report.build import build_report
    from fusion_bench.report.formats import format_leaderboard

    root = make_toy(tmp_path / "toy", n=3)
    fused = _fused_folder(root, tmp_path / "fused")
    assert _bench(cli, capsys, tmp_path, root, fused)[0] == 0
    shutil.copytree(fused, tmp_path / "fused2")
    from PIL import Image

    Image.new("RGB", (64, 48), (200, 10, 10)).save(tmp_path / "fused2" / "000.png")
    code, _, err = cli(capsys, "bench", "--method", "published:Other", "--dataset", "toy", "--root", root,
                       "--fused-dir", tmp_path / "fused2", "--out", tmp_path / "runs", "--leaderboard-dir",
                       tmp_path / "lb", "--no-progress")
    assert code == 0, err
    code, _, err = cli(capsys, "bench", "--method", "mean", "--dataset", "toy", "--root", root, "--out",
                       tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb", "--no-progress")
    assert code == 0, err
    lb = tmp_path / "lb"
    board = pd.read_csv(lb / "toy.csv")
    assert dict(zip(board["method"], board["kind"])) == {"Avg": "published", "Other": "published", "mean": "trained"}
    assert "Avg (published images)" in (lb / "README.md").read_text()
    assert "Avg (published images)" in format_leaderboard(lb, "latex", "toy")
    assert "Avg (published images)" in format_leaderboard(lb, "html", "toy")
    assert "mean (" not in format_leaderboard(lb, "md", "toy")
    report = build_report("toy", preset="published", runs_dir=tmp_path / "runs", leaderboard_dir=lb,
                          out=tmp_path / "report", root=root)
    assert report.entries == ["Avg (published images)", "Other (published images)"]
    html = report.index_html.read_text()
    assert "Avg (published images)" in html and (report.out / "tables" / "wilcoxon.csv").is_file()


def test_reported_table_compares_own_entries_and_published_names(tmp_path):
    from fusion_bench.benchmark.results import append_rows
    from fusion_bench.report.build import build_report

    base = {"dataset": "synthetic-ivif", "task": "ivif", "metric_dialect": "mmif", "seed": "0", "split_hash": "s",
            "n_images": "3", "timestamp": "t"}
    append_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv", [
        {**base, "method": "max", "preset": "smoke", "config_hash": "000aaa", "EN": "9.0",
         "overrides": '{"model.x":1}'},
        {**base, "method": "max", "preset": "smoke", "config_hash": "fffbbb", "EN": "6.0", "overrides": ""},
        {**base, "method": "SeAFusion", "preset": "published", "config_hash": "ccc", "EN": "7.5", "overrides": ""}])
    reported = tmp_path / "reported"
    reported.mkdir()
    (reported / "synthetic-ivif.csv").write_text(
        "method,our_method,metric,value,source,dialect,note\n"
        "Max rule,max,EN,6.5,A paper,mmif,\n"
        "SeAFusion,seafusion,EN,7.1,Tang's kit,tang,\n")
    for preset, expected in (("smoke", [6.0, None]), ("published", [None, 7.5])):
        build_report("synthetic-ivif", preset=preset, runs_dir=tmp_path / "runs", leaderboard_dir=tmp_path / "lb",
                     out=tmp_path / preset, reported_dir=reported)
        table = pd.read_csv(tmp_path / preset / "tables" / "reported.csv")
        ours = [None if math.isnan(v) else v for v in table["ours_mean"]]
        assert ours == expected, preset  # never the override entry (EN 9.0)
    assert table.loc[1, "our_entry"] == "SeAFusion (published images)"
    assert (table["reported_dialect"].tolist(), table["our_dialect"].tolist()) == (["mmif", "tang"], ["mmif"] * 2)


def test_train_fused_dir_fills_the_downstream_columns(cli, capsys, tmp_path, toy_registered):
    root = make_toy(tmp_path / "toy", n=3)
    fused = _fused_folder(root, tmp_path / "fused")
    train = tmp_path / "train_fused"
    shutil.copytree(root / "train" / "vis", train)
    tiny = ["seg.hidden_sizes=[8,8,8,8]", "seg.num_attention_heads=[1,1,1,1]", "seg.decoder_hidden_size=8",
            "seg.epochs=1", "seg.image_size=[32,32]", "seg.early_stopping_patience=null", "seg.val_fraction=0.0",
            "seg.freeze_backbone_epochs=0", "seg.variant=b0"]
    code, _, err = _bench(cli, capsys, tmp_path, root, fused, "--train-fused-dir", train, "--downstream", "seg",
                          "--set", *tiny)
    assert code == 0, err
    (row,) = read_rows(tmp_path / "lb" / "raw" / "toy.csv")
    assert row["seg_miou"] != "" and 0.0 <= float(row["seg_miou"]) <= 1.0
    (train / "001.png").unlink()
    code, _, err = _bench(cli, capsys, tmp_path, root, fused, "--train-fused-dir", train, "--downstream", "seg",
                          "--set", *tiny)
    assert code == 2 and "--train-fused-dir" in err and "001" in err


# -- real published images ----------------------------------------------------------------------------------------
# (dataset, folder, fused folders, bench options, `metrics` options): every published folder of ../shared/realdata
REAL = [
    ("tno", "TNO", ("fused_SeAFusion", "fused_DenseFuse", "fused_U2Fusion"), ("--dataset-arg", "layout=flat"),
     ("ir", "vi", ())),
    ("msrs", "MSRS", ("fused_PIAFusion",), ("--dataset-arg", "layout=flat", "--allow-subset"),
     ("ir", "vi", ("--allow-subset",))),
    ("vifb", "VIFB", ("fused_ADF", "fused_CBF", "fused_GFF", "fused_MSVD", "fused_SeAFusion", "fused_U2Fusion"), (),
     ("ir", "vi", ())),
    ("lytro", "Lytro", ("fused_CNN", "fused_IFCNN"), (),
     ("a", "b", ("--a-pattern", "{stem}_A.*", "--b-pattern", "{stem}_B.*"))),
]
FAST = {("tno", "fused_SeAFusion"), ("msrs", "fused_PIAFusion"), ("lytro", "fused_CNN")}  # VIFB's kit: a minute each
CASES = [pytest.param(d, f, fused, o, m, marks=() if (d, fused) in FAST else pytest.mark.slow, id=f"{d}-{fused}")
         for d, f, folders, o, m in REAL for fused in folders]


@pytest.mark.realdata
@pytest.mark.parametrize("dataset, folder, fused, options, metrics_args", CASES)
def test_realdata_published_rows_equal_metrics(cli, capsys, tmp_path, dataset, folder, fused, options, metrics_args):
    root = REALDATA / folder
    if not (root / fused).is_dir():
        pytest.skip(f"{root / fused} is absent (../shared/realdata)")
    from fusion_bench.benchmark.protocol import load_protocol
    from fusion_bench.registry import get_datamodule

    dialect = load_protocol(dataset, get_datamodule(dataset).dataset_class.task)["metric_dialect"]
    name = fused.removeprefix("fused_")
    code, out, err = cli(capsys, "bench", "--method", f"published:{name}", "--dataset", dataset, "--root", root,
                         "--fused-dir", root / fused, *options, "--out", tmp_path / "runs", "--leaderboard-dir",
                         tmp_path / "lb", "--no-progress", "--no-report")
    assert code == 0, err
    (row,) = read_rows(tmp_path / "lb" / "raw" / f"{dataset}.csv")
    a, b, extra = metrics_args
    code, _, err = cli(capsys, "metrics", "--a", root / a, "--b", root / b, "--fused", root / fused, "--dialect",
                       dialect, *extra, "--out", tmp_path / "metrics.csv", "--no-progress")
    assert code == 0, err
    reference = pd.read_csv(tmp_path / "metrics.csv")
    assert int(row["n_images"]) == len(reference) and row["metric_dialect"] == dialect
    for metric in reference.columns.drop("name"):
        # the CSV of `metrics` holds 10 significant digits
        assert math.isclose(float(row[metric]), float(reference[metric].mean()), rel_tol=1e-8, abs_tol=1e-9), metric
