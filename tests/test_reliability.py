"""Fault injection (issue 19): hostile weights, odd images, damaged dataset copies, outputs that would overwrite data,
request errors, NaN metrics, concurrent and killed runs; and the second review (issue 30): override values, broken
plug-ins, resume checkpoints, operating-system errors, non-finite numbers, writes outside the output folders, killed
`--jobs` parents. docs/reliability.md keeps the table of cases and outcomes.

Every request error must exit 2 with one line naming the argument or file, before any expensive work; no case may
lose data. In-process `main(argv)` calls (the `cli` fixture) wherever a subprocess is not essential.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from toy_dataset import make_toy

from fusion_bench.benchmark import config as run_config
from fusion_bench.benchmark.build import build_datamodule, build_method
from fusion_bench.benchmark.request import prepare
from fusion_bench.benchmark.results import read_rows
from fusion_bench.benchmark.spec import BenchSpec
from fusion_bench.benchmark.weight_files import read_weights, save_weights
from fusion_bench.data.io import read_image
from fusion_bench.errors import BenchError, ImageReadError
from fusion_bench.registry import DATASETS, get_datamodule

TESTS = Path(__file__).resolve().parent


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def _request_error(code: int, err: str, *needles: str) -> None:
    """Exit 2, an `error:`/usage message containing every needle, and no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


def _toy(tmp_path: Path, n: int = 3) -> Path:
    return make_toy(tmp_path / "toy", n=n)


def _bench_args(tmp_path: Path, *extra: object) -> list[object]:
    return ["bench", "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb", "--no-progress", *extra]


# -- 1. weights files never run code ---------------------------------------------------------------------------------
class _Evil:
    """Pickles to a call that creates a marker file (what a hostile weights file would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_weights_are_refused_and_never_run(cli, capsys, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"method": "fusion_cnn", "preset": "smoke", "config": {}, "state_dict": {}, "x": _Evil(marker)}, evil)
    assert not marker.exists()
    code, _, err = cli(capsys, "fuse", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--weights", evil,
                       "--out", tmp_path / "fused", "--no-progress")
    _request_error(code, err, str(evil), "refused")
    assert len(_lines(err)) == 1
    assert not marker.exists(), "unpickling the weights file ran code from it"
    assert not (tmp_path / "fused").exists()
    with pytest.raises(BenchError, match="refused"):
        read_weights(evil, "fusion_cnn")
    assert not marker.exists()


def test_weights_must_match_method_preset_and_settings(cli, capsys, tmp_path):
    prep = prepare(BenchSpec(method="fusion_cnn", dataset="synthetic-ivif", device="cpu",
                                           leaderboard_dir=None, out=tmp_path))
    model = build_method(prep, build_datamodule(prep, 0))
    weights = tmp_path / "smoke.pt"
    save_weights(model, prep, weights)  # what `fusion-bench train` writes
    base = ["fuse", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--no-progress"]
    args = [*base, "--weights", weights]
    code, _, err = cli(capsys, *args, "--preset", "paper", "--out", tmp_path / "a")
    _request_error(code, err, "preset 'smoke'", "--preset smoke")  # was a traceback (state_dict size mismatch)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    code, _, err = cli(capsys, *base, "--weights", tmp_path / "junk.pt", "--out", tmp_path / "b")
    _request_error(code, err, "junk.pt", "not a readable weights file")
    checkpoint = torch.load(weights, weights_only=True)
    checkpoint["config"]["model"]["width"] = 8
    torch.save(checkpoint, tmp_path / "other.pt")
    with pytest.raises(BenchError, match="differing: width"):
        read_weights(tmp_path / "other.pt", "fusion_cnn", "smoke", prep.config)
    code, _, err = cli(capsys, *args, "--out", tmp_path / "ok")
    assert code == 0, err
    assert len(list((tmp_path / "ok").glob("*.png"))) == 16


# -- 2. 16-bit and float images: one depth policy, never clipped ----------------------------------------------------
def test_16_bit_images_are_scaled_not_clipped_everywhere(cli, capsys, tmp_path, toy_registered):
    root = _toy(tmp_path)
    rng = np.random.default_rng(0)
    ir16 = {}
    for split in ("train", "test"):
        for path in sorted((root / split / "ir").glob("*.png")):
            arr = rng.integers(1000, 60000, (48, 64), dtype=np.uint16)
            Image.fromarray(arr).save(path)
            ir16[path] = arr
    path, arr = next(iter(ir16.items()))
    with Image.open(path) as img:
        assert img.mode == "I;16"
    ir = read_image(path, "L")
    assert torch.equal(ir, torch.from_numpy(arr.astype(np.float32))[None] / 65535.0)  # was 255-clipped: all 1.0
    assert torch.equal(read_image(path, "RGB"), ir.expand(3, -1, -1))
    code, out, _ = cli(capsys, "data", "check", "toy", "--root", root)
    assert code == 0 and "stored 16-bit I;16 (6)" in out and "scaled by 1/65535" in out, out
    # `metrics` scores the same 16-bit files (it refused them) with the values `bench` scores
    code, _, err = cli(capsys, *_bench_args(tmp_path, "--method", "source_a", "--dataset", "toy", "--root", root))
    assert code == 0, err
    (row,) = read_rows(tmp_path / "lb" / "raw" / "toy.csv")
    fused = next((tmp_path / "runs").rglob("seed0/fused"))
    code, out, err = cli(capsys, "metrics", "--a", root / "test" / "ir", "--b", root / "test" / "vis", "--fused", fused,
                         "--metrics", "EN,SD,MI", "--out", tmp_path / "m.csv")
    assert code == 0, err
    import pandas as pd

    means = pd.read_csv(tmp_path / "m.csv")[["EN", "SD", "MI"]].mean()
    assert {m: float(row[m]) for m in means.index} == pytest.approx(dict(means), rel=1e-9)


@pytest.mark.parametrize(("array", "needle"), [
    (np.full((8, 8), 70000, dtype=np.int32), "values 70000..70000"),
    (np.full((8, 8), 21.5, dtype=np.float32), "values in [21.5, 21.5]"),
    (np.full((8, 8), np.nan, dtype=np.float32), "NaN"),
], ids=["int32-beyond-16-bit", "float-kelvin", "float-nan"])
def test_out_of_policy_deep_images_are_errors_naming_the_file(tmp_path, array, needle):
    path = tmp_path / "thermal.tif"
    Image.fromarray(array).save(path)
    with pytest.raises(ImageReadError, match="thermal.tif") as info:
        read_image(path, "L")
    assert needle in str(info.value)
    ok = tmp_path / "unit.tif"
    Image.fromarray(np.full((8, 8), 0.25, dtype=np.float32)).save(ok)
    assert torch.equal(read_image(ok, "L"), torch.full((1, 8, 8), 0.25))


def test_decompression_bombs_are_clear_errors(cli, capsys, tmp_path, monkeypatch, toy_registered):
    root = _toy(tmp_path)
    bomb = root / "test" / "vis" / "000.png"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 48 * 64 - 1)  # every toy image is now over the warning limit
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 48 * 64 // 2 - 1)  # and over PIL's error limit (2x)
    code, _, err = cli(capsys, "metrics", "--a", root / "test" / "ir", "--b", root / "test" / "vis", "--fused",
                       root / "test" / "ir", "--out", tmp_path / "m.csv")
    _request_error(code, err, "decompression bomb")
    code, out, _ = cli(capsys, "data", "check", "toy", "--root", root)
    assert code == 1 and "000.png" in out and "decompression bomb" in out


# -- 3. a different test set never replaces a result -----------------------------------------------------------------
def test_test_split_identity_is_part_of_the_run_directory(cli, capsys, tmp_path, toy_registered):
    root = _toy(tmp_path)
    args = _bench_args(tmp_path, "--method", "mean", "--dataset", "toy", "--root", root)
    assert cli(capsys, *args)[0] == 0
    for folder in ("ir", "vis", "mask"):  # one more test pair
        shutil.copy(root / "test" / folder / "000.png", root / "test" / folder / "009.png")
    assert cli(capsys, *args)[0] == 0
    first, second = read_rows(tmp_path / "lb" / "raw" / "toy.csv")
    assert first["config_hash"] == second["config_hash"] and first["split_hash"] != second["split_hash"]
    base = tmp_path / "runs" / "mean" / "toy" / "smoke" / first["config_hash"]
    assert (base / f"test-{first['split_hash']}" / "seed0" / "row.csv").is_file()
    assert (base / f"test-{second['split_hash']}" / "seed0" / "row.csv").is_file()
    assert not list(base.rglob("*.replaced-*")), "a different test set is a different run, not a replacement"


def test_an_extra_pair_never_switches_tno_to_the_flat_layout(cli, capsys, tmp_path):
    root = get_datamodule("tno").dataset_class.make_fake(tmp_path / "tno", seed=0)
    for folder in ("ir", "vi"):
        shutil.copy(root / folder / "01.png", root / folder / "43.png")
    args = _bench_args(tmp_path, "--method", "mean", "--dataset", "tno", "--root", root)
    code, _, err = cli(capsys, *args)
    _request_error(code, err, "layout=flat", "43")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists()
    code, _, err = cli(capsys, *args, "--dataset-arg", "layout=tang42")  # the committed split, 43 unused
    assert code == 0, err
    code, _, err = cli(capsys, *args, "--dataset-arg", "layout=flat")  # every pair, on request
    assert code == 0, err
    tang, flat = read_rows(tmp_path / "lb" / "raw" / "tno.csv")
    assert int(tang["n_images"]) == 25 and int(flat["n_images"]) == len(list((root / "ir").glob("*.png")))
    assert tang["split_hash"] != flat["split_hash"]


# -- 4. nothing overwrites data it did not create ------------------------------------------------------------------
def test_outputs_never_overwrite_sources_or_earlier_outputs(cli, capsys, tmp_path, toy_registered):
    root = _toy(tmp_path)
    source = root / "test" / "vis"
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    fuse = ["fuse", "--method", "mean", "--dataset", "toy", "--root", root, "--no-progress"]
    for extra in ([], ["--overwrite"]):  # a dataset root is refused even with --overwrite
        code, _, err = cli(capsys, *fuse, "--out", source, *extra)
        _request_error(code, err, str(source), "inside the dataset root")
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before
    out = tmp_path / "fused"
    assert cli(capsys, *fuse, "--out", out)[0] == 0
    code, _, err = cli(capsys, *fuse, "--out", out)
    _request_error(code, err, "is not empty", "--overwrite")
    assert cli(capsys, *fuse, "--out", out, "--overwrite")[0] == 0
    # data fake onto an existing dataset mixed fake files into it
    code, _, err = cli(capsys, "data", "fake", "tno", "--out", root)
    _request_error(code, err, str(root), "is not empty")
    assert sorted(p.name for p in root.iterdir()) == ["test", "train"]
    # metrics / profile / train outputs: existing files need --overwrite
    metrics = ["metrics", "--a", root / "test" / "ir", "--b", source, "--fused", out, "--metrics", "EN",
               "--no-progress"]
    (tmp_path / "m.csv").write_text("precious\n")
    _request_error(*cli(capsys, *metrics, "--out", tmp_path / "m.csv")[::2], "m.csv", "--overwrite")
    assert (tmp_path / "m.csv").read_text() == "precious\n"
    assert cli(capsys, *metrics, "--out", tmp_path / "m.csv", "--overwrite")[0] == 0
    code, _, err = cli(capsys, "profile", "--method", "mean", "--width", "8", "--out", tmp_path / "m.csv")
    _request_error(code, err, "m.csv", "--overwrite")
    code, _, err = cli(capsys, "train", "--method", "fusion_cnn", "--dataset", "toy", "--root", root, "--out",
                       tmp_path / "m.csv")
    _request_error(code, err, "m.csv", "--overwrite")


# -- 5. request errors: exit 2, one line, before any work ------------------------------------------------------------
BENCH = ["bench", "--method", "mean", "--dataset", "synthetic-ivif", "--no-progress"]


@pytest.mark.parametrize(("argv", "needles"), [
    (["metrics", "--a", "a", "--b", "b", "--fused", "f", "--dialect", "nope", "--out", "m.csv"],
     ["--dialect", "unknown metric dialect 'nope'"]),
    (["metrics", "--a", "a", "--b", "b", "--fused", "f", "--metrics", "EN,NOPE", "--out", "m.csv"],
     ["NOPE", "valid:"]),
    (["metrics", "--a", "a", "--b", "b", "--fused", "f", "--metrics", ",", "--out", "m.csv"], ["--metrics"]),
    ([*BENCH, "--seeds", ""], ["--seeds", "got nothing"]),
    ([*BENCH, "--seeds=-1"], ["--seeds", "0..4294967295"]),
    ([*BENCH, "--seeds", "4294967296"], ["--seeds", "4294967296"]),
    ([*BENCH, "--device", "tpu"], ["--device 'tpu'", "auto, cpu, cuda or cuda:N"]),
    ([*BENCH, "--num-workers", "-1"], ["--num-workers", ">= 0"]),
    ([*BENCH, "--dataset-arg", "x=[1"], ["--dataset-arg", "not valid YAML"]),
    (["bench", "--method", "", "--dataset", "synthetic-ivif"], ["--method", "names nothing"]),
    (["profile", "--method", "mean", "--width", "-5"], ["--width", ">= 1"]),
    (["regress", "--suite", "nope"], ["--suite", "unknown suite 'nope'", "smoke"]),
    (["fuse", "--method", "mean", "--dataset", "synthetic-ivif", "--split", "x", "--out", "OUT"], ["--split 'x'"]),
    (["train", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--seed", "-3", "--out", "w.pt"], ["--seed"]),
], ids=lambda v: "-".join(str(a) for a in v)[:60] if isinstance(v, list) else None)
def test_request_errors_exit_2_with_one_line(cli, capsys, tmp_path, monkeypatch, argv, needles):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, *argv)
    _request_error(code, err, *needles)
    assert len(_lines(err)) == 1, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "leaderboards").exists()


def test_bad_output_folders_and_dataset_options(cli, capsys, tmp_path, toy_registered):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for option, value, needle in (("--out", afile, "is a file"), ("--leaderboard-dir", afile, "is a file"),
                                  ("--out", afile / "below", "is a file, so the folder cannot be created")):
        code, _, err = cli(capsys, *BENCH, option, value)
        _request_error(code, err, option, needle)
    tno = get_datamodule("tno").dataset_class.make_fake(tmp_path / "tno", seed=0)
    for command in (["bench", "--method", "mean", "--out", tmp_path / "r", "--leaderboard-dir", tmp_path / "l"],
                    ["downstream", "seg", "--fused", tmp_path]):
        code, _, err = cli(capsys, *command, "--dataset", "tno", "--root", tno, "--dataset-arg", "layout=nope")
        _request_error(code, err, "unknown layout 'nope'")
    code, _, err = cli(capsys, "data", "check", "tno", "--root", tno, "--dataset-arg", "layout=nope")
    _request_error(code, err, "unknown layout 'nope'")


def test_regress_without_expected_numbers_is_a_request_error(cli, capsys, tmp_path, monkeypatch):
    from fusion_bench.benchmark import protocol

    (tmp_path / "tiny.yaml").write_text("runs: [{dataset: synthetic-ivif, methods: [mean]}]\n")
    monkeypatch.setattr(protocol, "SUITE_DIR", tmp_path)
    code, _, err = cli(capsys, "regress", "--suite", "tiny")
    _request_error(code, err, "tiny.expected.csv", "--update")


def test_corrupt_raw_csv_is_found_before_the_run(cli, capsys, tmp_path):
    raw = tmp_path / "lb" / "raw"
    raw.mkdir(parents=True)
    (raw / "other.csv").write_text("method,seed\na,0\nb,1,extra\n")  # regenerating the leaderboards reads it too
    code, _, err = cli(capsys, *_bench_args(tmp_path, "--method", "mean", "--dataset", "synthetic-ivif"))
    _request_error(code, err, "other.csv:3")
    assert not (tmp_path / "runs").exists(), "the error must come before the run, not after it"


@pytest.mark.parametrize(("method", "change", "needle"), [
    ("fusion_cnn", {"width": -3}, "negative dimension"),
    ("fusion_cnn", {"nope": 1}, "unexpected keyword argument 'nope'"),
    ("amdanet", {"fused_output": "raw"}, "fused_output"),
])
def test_bad_method_config_values_are_request_errors_before_training(cli, capsys, tmp_path, monkeypatch, method,
                                                                     change, needle):
    original = run_config.load_method_config

    def broken(cls, name, preset, dataset=None):
        config = original(cls, name, preset, dataset)
        config["model"].update(change)
        return config

    monkeypatch.setattr(run_config, "load_method_config", broken)
    code, _, err = cli(capsys, *_bench_args(tmp_path, "--method", method, "--dataset", "synthetic-ivif"))
    _request_error(code, err, f"method {method!r}", needle)
    assert not (tmp_path / "runs").exists()


def test_tiny_images_in_metrics_name_the_file(cli, capsys, tmp_path):
    for folder in ("a", "b", "f"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.zeros((1, 1), dtype=np.uint8)).save(tmp_path / folder / "dot.png")
    code, _, err = cli(capsys, "metrics", "--a", tmp_path / "a", "--b", tmp_path / "b", "--fused", tmp_path / "f",
                       "--out", tmp_path / "m.csv")
    _request_error(code, err, "dot.png", "1x1", "window")
    assert not (tmp_path / "m.csv").exists()


# -- 6. NaN metrics are counted and said ---------------------------------------------------------------------------
def test_nan_metrics_are_counted_in_the_row_and_printed(cli, capsys, tmp_path, toy_registered):
    root = _toy(tmp_path)
    for folder, shape in (("ir", (48, 64)), ("vis", (48, 64, 3))):  # one all-black test pair: CC/SCD undefined
        Image.fromarray(np.zeros(shape, dtype=np.uint8)).save(root / "test" / folder / "001.png")
    code, out, err = cli(capsys, *_bench_args(tmp_path, "--method", "mean", "--dataset", "toy", "--root", root))
    assert code == 0, err
    (row,) = read_rows(tmp_path / "lb" / "raw" / "toy.csv")
    import pandas as pd

    per_image = pd.read_csv(next((tmp_path / "runs").rglob("metrics_per_image.csv")))
    nan = {m: int(per_image[m].isna().sum()) for m in per_image.columns if m != "name" and per_image[m].isna().any()}
    assert nan.get("CC") == 1 and int(row["n_nan"]) == sum(nan.values())
    assert row["nan_metrics"] == ";".join(f"{m}:{n}" for m, n in nan.items())
    assert float(row["CC"]) == pytest.approx(per_image["CC"].dropna().mean())
    assert "NaN" in out and row["nan_metrics"] in out
    fused = next((tmp_path / "runs").rglob("seed0/fused"))
    code, out, _ = cli(capsys, "metrics", "--a", root / "test" / "ir", "--b", root / "test" / "vis", "--fused", fused,
                       "--metrics", "CC,EN", "--out", tmp_path / "m.csv", "--no-progress")
    assert code == 0 and "CC:" in out and "mean of 2 of 3 images: 1 NaN" in out


# -- 7. concurrency and resources ------------------------------------------------------------------------------------
def test_metrics_batches_are_bounded_by_pixels(tmp_path, monkeypatch):
    from fusion_bench.metrics import folders
    from fusion_bench.metrics.dialect_base import Dialect

    assert folders.batch_limit(480, 640, 8) == 8 and folders.batch_limit(3000, 4000, 8) == 1
    assert folders.batch_limit(1080, 1920, 8) == 2
    rng = np.random.default_rng(0)
    for folder in ("a", "b", "f"):
        for i in range(3):
            (tmp_path / folder).mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 40), dtype=np.uint8)).save(tmp_path / folder / f"{i}.png")
    sizes = []
    compute = Dialect.compute

    def spy(self, a, *args, **kwargs):
        sizes.append(a.shape[0])
        return compute(self, a, *args, **kwargs)

    monkeypatch.setattr(Dialect, "compute", spy)
    monkeypatch.setattr(folders, "MAX_BATCH_PIXELS", 32 * 40 * 2)
    folders.score_folders(tmp_path / "a", tmp_path / "b", tmp_path / "f", "mmif", ["EN"], progress=False)
    assert sizes[-2:] == [2, 1]  # 3 images, at most 2 per batch (the probe of small sizes came first)


def test_empty_method_list_and_a_held_run_lock(cli, capsys, tmp_path, toy_registered):
    from filelock import FileLock

    root = _toy(tmp_path)
    code, _, err = cli(capsys, *_bench_args(tmp_path, "--method", ",", "--dataset", "toy", "--root", root))
    _request_error(code, err, "--method")
    prep = prepare(BenchSpec(method="mean", dataset="toy", root=root, out=tmp_path / "runs",
                                           leaderboard_dir=tmp_path / "lb"))
    run_dir = prep.run_dir(0)
    run_dir.parent.mkdir(parents=True)
    with FileLock(run_dir.with_name("seed0.lock")):  # another process computing the same seed directory
        code, _, err = cli(capsys, *_bench_args(tmp_path, "--method", "mean", "--dataset", "toy", "--root", root))
    _request_error(code, err, "another fusion-bench run", str(run_dir))
    assert not run_dir.exists() and read_rows(tmp_path / "lb" / "raw" / "toy.csv") == []


SLOW_METHOD = '''
import os, time
from pathlib import Path
from fusion_bench.methods.baselines.model import MeanFusion


class SlowMean(MeanFusion):
    """mean fusion that, with SLOW_MARKER set, says it started fusing and then hangs (to be killed)."""

    def fuse(self, x1, x2):
        marker = os.environ.get("SLOW_MARKER")
        if marker:
            Path(marker).touch()
            time.sleep(120)
        return super().fuse(x1, x2)
'''


def test_concurrent_and_killed_bench_runs_lose_nothing(cli, capsys, tmp_path, monkeypatch, toy_registered):
    """A run killed with SIGKILL while fusing leaves the raw CSV intact and no seed directory; an identical run
    started meanwhile stops with a clear error instead of writing into the same directory; a re-run completes."""
    from fusion_bench import registry

    package = tmp_path / "slowpkg"
    package.mkdir()
    (package / "__init__.py").write_text(SLOW_METHOD)
    (package / "config.yaml").write_text("slow: {smoke: {}, paper: {}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.METHODS, "slow", "slowpkg:SlowMean")
    root = _toy(tmp_path)
    assert cli(capsys, *_bench_args(tmp_path, "--method", "mean", "--dataset", "toy", "--root", root))[0] == 0
    raw = tmp_path / "lb" / "raw" / "toy.csv"
    raw_before = raw.read_bytes()
    argv = [str(a) for a in _bench_args(tmp_path, "--method", "slow", "--dataset", "toy", "--root", root)]
    script = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; from fusion_bench import registry; "
              "registry.METHODS['slow'] = 'slowpkg:SlowMean'; registry.DATASETS['toy'] = 'toy_dataset:ToyDataModule'; "
              "from fusion_bench.cli import main; sys.exit(main(sys.argv[3:]))")
    marker = tmp_path / "fusing"
    env = {**os.environ, "SLOW_MARKER": str(marker), "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(TESTS), *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else proc.returncode
            assert time.monotonic() < deadline, "the subprocess never started fusing"
            time.sleep(0.1)
        code, _, err = cli(capsys, *argv)  # the same experiment at the same time
        _request_error(code, err, "another fusion-bench run")
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 while fusing
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()
    assert raw.read_bytes() == raw_before, "the killed run must not touch the raw CSV"
    seed_dirs = {p.name for p in (tmp_path / "runs" / "slow").rglob("seed0*") if p.is_dir()}
    assert seed_dirs == {"seed0.partial"}, seed_dirs
    code, _, err = cli(capsys, *argv)  # the re-run takes over the lock the OS released, and starts over
    assert code == 0, err
    seed_dirs = {p.name for p in (tmp_path / "runs" / "slow").rglob("seed0*") if p.is_dir()}
    assert seed_dirs == {"seed0"}
    rows = read_rows(raw)
    assert [r["method"] for r in rows] == ["mean", "slow"]


# -- each dataset's fake copy with one used image corrupted -----------------------------------------------------------
FAKE_DATASETS = [name for name in DATASETS if not name.startswith("synthetic-")]


@pytest.mark.parametrize("name", FAKE_DATASETS)
def test_a_corrupt_used_image_is_named(cli, capsys, tmp_path, name):
    """`data fake NAME`, corrupt an image the test split uses, then `data check` (exit 1) and loading the sample
    (an integrity error) both name that file."""
    from fusion_bench.data.io import is_image_file
    from fusion_bench.errors import DatasetError
    from fusion_bench.types import FRAMES

    code, _, err = cli(capsys, "data", "fake", name, "--out", tmp_path / name)
    assert code == 0, err
    cls = get_datamodule(name).dataset_class
    root = tmp_path / name
    if hasattr(cls, "prepare"):  # audio-visual: the used images are the prepared frames
        pytest.importorskip("av")
        cls.prepare(root)
    dataset = cls(root, "test")
    ref = dataset.samples[0]
    if FRAMES in ref.files:
        victim = dataset._pick_frames(sorted(ref.files[FRAMES].glob("*.jpg")), ref.extra.get("window"))[0]
    else:
        victim = next(p for p in ref.files.values() if is_image_file(Path(p)))
    victim.write_bytes(victim.read_bytes()[:40])  # truncated
    code, out, _ = cli(capsys, "data", "check", name, "--root", root)
    assert code == 1 and str(victim) in out, out
    with pytest.raises(DatasetError) as info:
        cls(root, "test")[0]
    assert str(victim) in str(info.value)


def test_a_corrupt_image_is_named_after_ultralytics_wrapped_image_open(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Once imported, ultralytics replaces PIL's Image.open by a version that, on a file PIL cannot identify, tries
    to import (or pip-install) the HEIF plugin and raises ModuleNotFoundError; reading a corrupt image must still be
    a clear ImageReadError naming the file. (Simulated: importing ultralytics here would patch PIL for the rest of
    the session and could try to install packages.)"""
    from PIL import Image, UnidentifiedImageError

    from fusion_bench.data.io import read_image
    from fusion_bench.errors import ImageReadError

    original = Image.open

    def wrapped(fp, *args, **kwargs):
        try:
            return original(fp, *args, **kwargs)
        except UnidentifiedImageError:
            raise ModuleNotFoundError("No module named 'pi_heif'") from None

    monkeypatch.setattr(Image, "open", wrapped)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ImageReadError, match="bad.png"):
        read_image(bad)


def test_an_image_open_wrapper_raising_import_error_is_an_unreadable_image(monkeypatch, tmp_path):
    """Once ultralytics is imported it wraps Image.open and, on a file PIL cannot identify, tries to import pi_heif
    (ModuleNotFoundError) instead of raising UnidentifiedImageError: every reader still names the file."""
    from fusion_bench.data import io as image_io
    from fusion_bench.errors import MetricsInputError
    from fusion_bench.metrics.folders import image_header

    path = tmp_path / "01.png"
    path.write_bytes(b"not a png")

    def wrapped_open(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'pi_heif'")

    monkeypatch.setattr(Image, "open", wrapped_open)
    assert image_io.stored_mode(path) == "unreadable"
    with pytest.raises(ImageReadError, match="cannot read image .*01.png"):
        image_io.read_array(path)
    with pytest.raises(MetricsInputError, match="cannot read image .*01.png"):
        image_header(path)


def test_bad_downstream_numerics_in_a_spec_is_a_request_error(tmp_path):
    with pytest.raises(BenchError, match="--downstream-numerics 'fast': expected one of pinned, native"):
        prepare(BenchSpec(method="mean", dataset="synthetic-ivif", device="cpu", downstream="none",
                                        out=tmp_path / "runs", leaderboard_dir=None, downstream_numerics="fast"))


# == issue 30: the second fault review (new-user cases) ===============================================================
# -- 30.1 override values are checked against types and ranges before any work -----------------------------------------
@pytest.mark.parametrize(("method", "setting", "needles"), [
    ("fusion_cnn", "train.crop_size=abc", ["train.crop_size=abc", "expected an integer or a list of 2 integers"]),
    ("fusion_cnn", "model.width=0", ["model.width=0", "expected an integer in 1..1048576"]),
    ("fusion_cnn", "optim.lr=.nan", ["optim.lr=.nan", "expected a finite learning rate > 0"]),
    ("fusion_cnn", "optim.lr=-1", ["optim.lr=-1", "expected a finite learning rate > 0"]),
    ("fusion_cnn", "model.width=1.5", ["model.width=1.5", "expected an integer, got a decimal number"]),
    ("fusion_cnn", "model.w_int=.nan", ["model.w_int=.nan", "expected a finite number"]),
    ("laplacian", "model.levels=four", ["model.levels=four", "expected an integer, got a string"]),
    ("mean", "seg.lr=-1", ["seg.lr=-1", "expected a finite learning rate > 0"]),
    ("mean", "seg.epochs=2.5", ["seg.epochs=2.5", "expected an integer"]),
])
def test_override_values_are_checked_before_any_work(cli, capsys, tmp_path, method, setting, needles):
    """Each was a traceback after the run started (exit 1, a `seed0.partial` left), a constructor's message without
    the key (exit 2), or a silent NaN run."""
    code, _, err = cli(capsys, *_bench_args(tmp_path, "--method", method, "--dataset", "synthetic-ivif",
                                            "--downstream", "seg" if setting.startswith("seg.") else "none",
                                            "--set", setting))
    _request_error(code, err, f"--set {needles[0]}", *needles[1:])
    assert len(_lines(err)) == 1
    assert not (tmp_path / "runs").exists(), "checked before any work"


def test_a_step_count_beyond_any_run_is_refused_not_run(tmp_path):
    """`--set train.max_steps=99999999999999999999999` was accepted (an ETA of 6.8e18 hours): a hang."""
    spec = BenchSpec(method="fusion_cnn", dataset="synthetic-ivif", device="cpu", downstream="none",
                     out=tmp_path / "runs", leaderboard_dir=None,
                     overrides={"train.max_steps": 99999999999999999999999})
    with pytest.raises(BenchError, match=r"train.max_steps=99999999999999999999999: expected an integer in "
                                         r"-1..1000000000"):
        prepare(spec)
    config = tmp_path / "exp.yaml"
    config.write_text("model: {width: 1.5}\n")
    with pytest.raises(BenchError, match=r"--config .*exp.yaml model.width=1.5: expected an integer"):
        prepare(BenchSpec(method="fusion_cnn", dataset="synthetic-ivif", device="cpu", downstream="none",
                          out=tmp_path / "runs", leaderboard_dir=None, config=config))


def test_every_preset_value_fits_what_its_key_expects():
    """The checks never refuse a valid configuration: every value of every method's presets (and per-dataset
    sections), and every downstream evaluator preset, passes as an override of its own key."""
    import dataclasses
    import inspect

    import yaml

    from fusion_bench.benchmark.config import SECTIONS, config_section
    from fusion_bench.benchmark.downstream import evaluator
    from fusion_bench.benchmark.override_types import check_evaluator_overrides, check_method_overrides
    from fusion_bench.registry import METHODS, get_method

    checked = 0
    for name in METHODS:
        cls = get_method(name)
        presets = yaml.safe_load((Path(inspect.getfile(cls)).parent / "config.yaml").read_text())
        for preset in presets[config_section(cls, name)].values():
            for body in [preset, *(preset.get("datasets") or {}).values()]:
                overrides = {f"{s}.{k}": v for s in SECTIONS for k, v in (body.get(s) or {}).items()}
                check_method_overrides(cls, {s: {} for s in SECTIONS}, overrides, name, lambda key: "--set")
                checked += len(overrides)
    for name in ("seg", "det"):
        for preset in ("smoke", "paper"):
            config = evaluator(name).preset_config(preset)
            check_evaluator_overrides(config, {f.name: getattr(config, f.name) for f in dataclasses.fields(config)},
                                      name)
    assert checked > 500


# -- 30.1 broken plug-ins: the plug-in, the file, the first line of the error ------------------------------------------
PLUGIN_CLASS = '''
from fusion_bench.methods.baselines.model import MeanFusion


class Cls(MeanFusion):
    """a plug-in method"""
'''


@pytest.mark.parametrize(("case", "module", "config", "needles"), [
    ("syntax", "def f(:\n", None, ["mod.py:1", "SyntaxError"]),
    ("dependency", "import not_a_module_xyz\n", None, ["mod.py:1", "No module named 'not_a_module_xyz'"]),
    ("raises", "raise RuntimeError('boom at import')\n", None, ["mod.py:1", "RuntimeError: boom at import"]),
    ("yaml", PLUGIN_CLASS, "Cls:\n  smoke: {model: [1,\n", ["config.yaml is not valid YAML", "line 3"]),
    ("tag", PLUGIN_CLASS, "Cls:\n  smoke: !!python/object/apply:os.system ['touch {marker}']\n",
     ["config.yaml is not valid YAML", "python/object/apply:os.system"]),
])
def test_broken_plug_ins_are_request_errors(cli, capsys, tmp_path, monkeypatch, case, module, config, needles):
    package = tmp_path / f"plug30_{case}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text(module)
    marker = tmp_path / "pwned"
    if config is not None:
        (package / "config.yaml").write_text(config.replace("{marker}", str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"plug30_{case}.mod:Cls"
    code, _, err = cli(capsys, *_bench_args(tmp_path, "--method", name, "--dataset", "synthetic-ivif"))
    _request_error(code, err, name, str(package / ("config.yaml" if config else "mod.py")), *needles)
    assert len(_lines(err)) == 1 and not marker.exists()
    assert not (tmp_path / "runs").exists()


# -- 30.1 resume checkpoints and weights files that do not match -------------------------------------------------------
@pytest.fixture(scope="module")
def fusion_cnn_checkpoint(tmp_path_factory) -> Path:
    """The Lightning checkpoint (`last.ckpt`) of a one-step fusion_cnn fit with `train.max_steps=1`."""
    from fusion_bench.benchmark.training import fit

    folder = tmp_path_factory.mktemp("ckpt")
    prep = prepare(BenchSpec(method="fusion_cnn", dataset="synthetic-ivif", device="cpu", downstream="none",
                             progress=False, out=folder, leaderboard_dir=None, overrides={"train.max_steps": 1}))
    model = build_method(prep, datamodule := build_datamodule(prep, 0))
    fit(prep, model, datamodule, folder / "fit")
    return folder / "fit" / "checkpoints" / "last.ckpt"


def _resume_cases(tmp_path: Path, good: Path) -> dict[str, tuple[Path, list[str], list[str]]]:
    """case -> (checkpoint file, extra arguments, needles)."""
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": _Evil(tmp_path / "pwned")}, evil)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    steps = ["--set", "train.max_steps=1"]
    return {
        "code": (evil, steps, ["refused", "nothing in it was run"]),
        "truncated": (truncated, steps, ["not a readable weights file"]),
        "method": (good, ["--method", "cfi", *steps], ["a fit of method 'fusion_cnn'", "not of 'cfi'"]),
        "settings": (good, [*steps, "model.width=8"], ["other settings", "model.width: 16 there, 8 now"]),
        "lr": (good, [*steps, "optim.lr=0.5"], ["other settings", "optim.lr: 0.003 there, 0.5 now"]),
    }


@pytest.mark.parametrize("case", ["code", "truncated", "method", "settings", "lr"])
def test_train_resume_refuses_a_checkpoint_that_does_not_match(cli, capsys, tmp_path, fusion_cnn_checkpoint, case):
    """`train --resume` over a checkpoint that is not weights-only loadable, cut short, of another method, of other
    model settings (all raw tracebacks), or of another learning rate (resumed the checkpoint's optimiser state while
    the weights file recorded the new rate, never used)."""
    source, extra, needles = _resume_cases(tmp_path, fusion_cnn_checkpoint)[case]
    out = tmp_path / "w.pt"
    (tmp_path / "w" / "checkpoints").mkdir(parents=True)
    shutil.copy(source, tmp_path / "w" / "checkpoints" / "last.ckpt")
    argv = ["train", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--out", out, "--resume",
            "--no-progress", *extra]
    if "--method" in extra:
        argv[1:3] = []
    code, _, err = cli(capsys, *argv)
    _request_error(code, err, "--resume", "last.ckpt", *needles)
    assert len(_lines(err)) == 1 and not out.exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("case", ["truncated", "method"])
def test_bench_resume_refuses_a_checkpoint_that_does_not_match(cli, capsys, tmp_path, fusion_cnn_checkpoint, case):
    source, extra, needles = _resume_cases(tmp_path, fusion_cnn_checkpoint)[case]
    method = "cfi" if case == "method" else "fusion_cnn"
    prep = prepare(BenchSpec(method=method, dataset="synthetic-ivif", device="cpu", downstream="none",
                             out=tmp_path / "runs", leaderboard_dir=tmp_path / "lb",
                             overrides={"train.max_steps": 1}))
    checkpoints = prep.run_dir(0).with_name("seed0.partial") / "checkpoints"  # an interrupted seed's
    checkpoints.mkdir(parents=True)
    shutil.copy(source, checkpoints / "last.ckpt")
    code, _, err = cli(capsys, *_bench_args(tmp_path, "--method", method, "--dataset", "synthetic-ivif",
                                            "--downstream", "none", "--resume", "--set", "train.max_steps=1"))
    _request_error(code, err, "--resume", "last.ckpt", *needles)
    assert not (tmp_path / "lb" / "raw" / "synthetic-ivif.csv").exists()


def test_train_resume_with_the_same_settings_and_a_longer_run_goes_on(cli, capsys, tmp_path, fusion_cnn_checkpoint):
    (tmp_path / "w" / "checkpoints").mkdir(parents=True)
    shutil.copy(fusion_cnn_checkpoint, tmp_path / "w" / "checkpoints" / "last.ckpt")
    code, _, err = cli(capsys, "train", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--out",
                       tmp_path / "w.pt", "--resume", "--no-progress", "--set", "train.max_steps=2")
    assert code == 0, err
    assert torch.load(tmp_path / "w.pt", weights_only=True)["config"]["optim"]["lr"] == 0.003


# -- 30.2 operating-system errors: one line naming the path and the option ---------------------------------------------
def test_unusable_output_paths_are_one_line_errors(cli, capsys, tmp_path):
    """A name over the file system's limit (ENAMETOOLONG) and a place nothing can be written to (`/sys`: even root
    cannot; `os.access` says yes there) were tracebacks."""
    long = tmp_path / ("a" * 300)
    code, _, err = cli(capsys, *BENCH, "--out", long, "--leaderboard-dir", tmp_path / "lb")
    _request_error(code, err, "--out", "aaaa")
    assert len(_lines(err)) == 1
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no /sys here")
    for option in ("--out", "--leaderboard-dir"):
        code, _, err = cli(capsys, *_bench_args(tmp_path, "--method", "mean", "--dataset", "synthetic-ivif"),
                           option, "/sys/x")
        _request_error(code, err, f"{option} /sys/x", "not writable")
    (tmp_path / "f").mkdir()
    code, _, err = cli(capsys, "metrics", "--a", tmp_path / "f", "--b", tmp_path / "f", "--fused", tmp_path / "f",
                       "--out", "/sys/x.csv")
    _request_error(code, err, "--out /sys/x.csv", "not writable")


def test_a_file_size_limit_is_exit_3_and_leaves_no_temp_file(tmp_path):
    """`ulimit -f 45` while the raw CSV is rewritten: was an OSError traceback (exit 1) that left
    `raw/.toy.csv.<pid>.tmp`; now exit 3 (resource exhausted), the raw CSV as it was and no temp file."""
    import csv

    resource = pytest.importorskip("resource")
    root = _toy(tmp_path)
    raw = tmp_path / "lb" / "raw" / "toy.csv"
    raw.parent.mkdir(parents=True)
    with raw.open("w", newline="") as fh:  # 90 KB of earlier rows: rewriting it passes the 45 KB limit
        writer = csv.writer(fh)
        writer.writerow(["method", "dataset", "seed", "note"])
        writer.writerows(["old", "toy", i, "x" * 20] for i in range(2000))
    before = raw.read_bytes()
    limit = 45 * 1024
    script = ("import sys; sys.path[:0] = [sys.argv[1]]; from fusion_bench import registry; "
              "registry.DATASETS['toy'] = 'toy_dataset:ToyDataModule'; "
              "from fusion_bench.cli import main; sys.exit(main(sys.argv[2:]))")
    argv = [str(a) for a in _bench_args(tmp_path, "--method", "mean", "--dataset", "toy", "--root", root)]
    proc = subprocess.run([sys.executable, "-c", script, str(TESTS), *argv], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "toy.csv" in proc.stderr and "file-size limit" in proc.stderr
    assert raw.read_bytes() == before
    assert sorted(p.name for p in raw.parent.iterdir()) == ["toy.csv", "toy.csv.lock"], "no temp file left"


def test_collect_over_a_binary_row_csv_names_the_file(cli, capsys, tmp_path):
    row = tmp_path / "runs" / "m" / "d" / "row.csv"
    row.parent.mkdir(parents=True)
    row.write_bytes(bytes(range(256)) * 4)
    code, _, err = cli(capsys, "leaderboard", "--collect", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb")
    _request_error(code, err, str(row), "not a CSV file of result rows")


# -- 30.3 non-finite numbers are failures, not data --------------------------------------------------------------------
NAN_METHOD = '''
import torch
from fusion_bench.methods.baselines.model import MeanFusion


class NaNMean(MeanFusion):
    """mean fusion that returns NaN (a broken plug-in)."""

    def fuse(self, x1, x2):
        return super().fuse(x1, x2) * float("nan")
'''


def test_non_finite_fused_images_stop_the_run_naming_the_image(cli, capsys, tmp_path, monkeypatch):
    """A plug-in returning NaN, and `fuse --weights` of NaN weights: black PNGs were written and rows got EN 0 and
    PSNR -inf (exit 0)."""
    package = tmp_path / "nanpkg30"
    package.mkdir()
    (package / "__init__.py").write_text(NAN_METHOD)
    (package / "config.yaml").write_text("NaNMean: {smoke: {}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = cli(capsys, *_bench_args(tmp_path, "--method", "nanpkg30:NaNMean", "--dataset", "synthetic-ivif",
                                            "--downstream", "none"))
    first = get_datamodule("synthetic-ivif").dataset_class(
        get_datamodule("synthetic-ivif").resolve_root(None), "test").samples[0].name
    _request_error(code, err, "NaN or Inf", f"image {first!r}")
    assert not (tmp_path / "lb" / "raw" / "synthetic-ivif.csv").exists()
    # NaN weights through `fuse --weights`
    prep = prepare(BenchSpec(method="fusion_cnn", dataset="synthetic-ivif", device="cpu", downstream="none",
                             leaderboard_dir=None, out=tmp_path))
    model = build_method(prep, build_datamodule(prep, 0))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    save_weights(model, prep, tmp_path / "nan.pt")
    code, _, err = cli(capsys, "fuse", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--weights",
                       tmp_path / "nan.pt", "--out", tmp_path / "fused", "--no-progress")
    _request_error(code, err, "NaN or Inf", f"image {first!r}")
    assert not list((tmp_path / "fused").glob("*.png")), "no black PNG is written"


def test_a_non_finite_training_loss_stops_the_fit_at_its_step(cli, capsys, tmp_path):
    """`--set optim.lr=1e308` trained to NaN weights and wrote a row of black-image metrics (exit 0)."""
    code, _, err = cli(capsys, *_bench_args(tmp_path, "--method", "fusion_cnn", "--dataset", "synthetic-ivif",
                                            "--downstream", "none", "--set", "optim.lr=1e308"))
    _request_error(code, err, "training loss is NaN or Inf at step 2")
    assert not (tmp_path / "lb" / "raw" / "synthetic-ivif.csv").exists()
    partial = next((tmp_path / "runs").rglob("seed0.partial"))
    assert not (partial / "checkpoints" / "last.ckpt").exists(), "no checkpoint of non-finite weights to resume"


def test_deferred_loss_checks_name_the_first_bad_step():
    """On a GPU the finiteness flags stay on the device and are read every `every` steps: the error still names the
    first bad step, not the step where it was read."""
    from fusion_bench.benchmark.callbacks import FiniteLoss
    from fusion_bench.errors import NonFiniteError

    check = FiniteLoss("m", every=25)
    check.pending = [(step, torch.isfinite(torch.tensor(v))) for step, v in
                     ((1, 0.5), (2, 0.4), (3, float("inf")), (4, float("nan")))]
    with pytest.raises(NonFiniteError, match="at step 3"):
        check.check()
    assert check.pending == []
    check.check()  # nothing pending: nothing to say


# -- 30.5 nothing outside the output folders is written or removed -----------------------------------------------------
@pytest.mark.parametrize("dataset", ["../../escaped", "ABSOLUTE"])
def test_collect_refuses_a_row_whose_dataset_is_a_path(cli, capsys, tmp_path, dataset):
    """A row.csv whose `dataset` is `../../x` wrote outside the leaderboard folder; an absolute path rewrote that
    user's CSV."""
    victim = tmp_path / "user" / "notes"
    victim.parent.mkdir()
    victim.with_suffix(".csv").write_text("mine\n")
    dataset = str(victim) if dataset == "ABSOLUTE" else dataset
    row = tmp_path / "runs" / "m" / "row.csv"
    row.parent.mkdir(parents=True)
    row.write_text(f"method,dataset,seed\nmean,{dataset},0\n")
    code, _, err = cli(capsys, "leaderboard", "--collect", tmp_path / "runs", "--leaderboard-dir",
                       tmp_path / "a" / "b" / "lb")
    _request_error(code, err, str(row), "is not a dataset name")
    assert victim.with_suffix(".csv").read_text() == "mine\n"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.csv")) == ["runs/m/row.csv",
                                                                                            "user/notes.csv"]


def test_bench_never_writes_into_the_dataset_root(cli, capsys, tmp_path, toy_registered):
    root = _toy(tmp_path)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for extra in (["--leaderboard-dir", root, "--out", tmp_path / "runs"],
                  ["--out", root / "test" / "vis", "--leaderboard-dir", tmp_path / "lb"]):
        code, _, err = cli(capsys, "bench", "--method", "mean", "--dataset", "toy", "--root", root, "--no-progress",
                           *extra)
        _request_error(code, err, extra[0], "inside the dataset root")
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_the_leaderboard_never_replaces_a_file_it_did_not_write(cli, capsys, tmp_path):
    """`bench --leaderboard-dir proj` overwrote the user's `proj/README.md`."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "README.md").write_text("# my project\n")
    args = ["--method", "mean", "--dataset", "synthetic-ivif", "--downstream", "none"]
    code, _, err = cli(capsys, "bench", "--out", tmp_path / "runs", "--leaderboard-dir", proj, "--no-progress", *args)
    _request_error(code, err, str(proj / "README.md"), "was not written by fusion-bench")
    assert (proj / "README.md").read_text() == "# my project\n" and not (tmp_path / "runs").exists()
    (proj / "README.md").unlink()
    (proj / "synthetic-ivif.csv").write_text("my,own\n1,2\n")
    code, _, err = cli(capsys, "bench", "--out", tmp_path / "runs", "--leaderboard-dir", proj, "--no-progress", *args)
    _request_error(code, err, "synthetic-ivif.csv", "was not written by fusion-bench")
    (proj / "synthetic-ivif.csv").unlink()
    assert cli(capsys, "bench", "--out", tmp_path / "runs", "--leaderboard-dir", proj, "--no-progress", *args)[0] == 0
    assert cli(capsys, "leaderboard", "--leaderboard-dir", proj)[0] == 0, "its own README is regenerated"


def test_report_replaces_only_its_own_files(cli, capsys, tmp_path, toy_registered, monkeypatch):
    """`report --out DIR` over an earlier report folder deleted the user's other files in it."""
    root = _toy(tmp_path)
    assert cli(capsys, *_bench_args(tmp_path, "--method", "mean", "--dataset", "toy", "--root", root))[0] == 0
    report = ["report", "--dataset", "toy", "--runs", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb",
              "--root", root, "--out", tmp_path / "rep"]
    code, _, err = cli(capsys, *report)
    assert code == 0, err
    (tmp_path / "rep" / "my_notes.txt").write_text("keep me\n")
    code, _, err = cli(capsys, *report)
    _request_error(code, err, "my_notes.txt", "did not write")
    assert (tmp_path / "rep" / "my_notes.txt").read_text() == "keep me\n"
    (tmp_path / "rep" / "my_notes.txt").unlink()
    assert cli(capsys, *report)[0] == 0, "its own earlier report is replaced"


@pytest.mark.slow
def test_killing_a_jobs_parent_stops_its_children(tmp_path):
    """`kill -9` of a `bench --jobs 3` parent left its children running (they finished and appended rows)."""
    if not Path("/proc/self/stat").is_file():
        pytest.skip("finds the children through /proc")
    package = tmp_path / "slowpkg30"
    package.mkdir()
    (package / "__init__.py").write_text(SLOW_METHOD)
    (package / "config.yaml").write_text("SlowMean: {smoke: {}}\n")
    marker = tmp_path / "fusing"
    env = {**os.environ, "SLOW_MARKER": str(marker),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    argv = [sys.executable, "-m", "fusion_bench", *map(str, _bench_args(
        tmp_path, "--method", "slowpkg30:SlowMean", "--dataset", "synthetic-ivif", "--downstream", "none",
        "--seeds", "0,1,2", "--jobs", "3", "--no-report"))]
    parent = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children() -> list[int]:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent.pid:
                found.append(int(stat.parent.name))
        return found

    try:
        deadline = time.monotonic() + 240
        while not marker.exists() or len(children()) < 3:
            assert parent.poll() is None and time.monotonic() < deadline, "the jobs never started fusing"
            time.sleep(0.2)
        jobs = children()
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
                  for pid in jobs):
            assert time.monotonic() < deadline, "children still running after their parent was killed"
            time.sleep(0.2)
    finally:
        if parent.poll() is None:
            parent.kill()
    raw = tmp_path / "lb" / "raw"
    assert not raw.exists() or not list(raw.glob("*.csv")) and not list(raw.glob(".*.tmp"))
