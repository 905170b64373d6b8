"""Fault injection (issue 19): hostile weights, odd images, damaged dataset copies, outputs that would overwrite data,
request errors, NaN metrics, concurrent and killed runs. docs/reliability.md keeps the table of cases and outcomes.

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

from fusion_bench.benchmark import runner
from fusion_bench.benchmark.results import read_rows
from fusion_bench.data.io import ImageReadError, read_image
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
    with pytest.raises(runner.BenchError, match="refused"):
        runner.read_weights(evil, "fusion_cnn")
    assert not marker.exists()


def test_weights_must_match_method_preset_and_settings(cli, capsys, tmp_path):
    prep = runner.prepare(runner.BenchSpec(method="fusion_cnn", dataset="synthetic-ivif", device="cpu",
                                           leaderboard_dir=None, out=tmp_path))
    model = runner.build_method(prep, runner.build_datamodule(prep, 0))
    weights = tmp_path / "smoke.pt"
    runner.save_weights(model, prep, weights)  # what `fusion-bench train` writes
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
    with pytest.raises(runner.BenchError, match="differing: width"):
        runner.read_weights(tmp_path / "other.pt", "fusion_cnn", "smoke", prep.config)
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
    original = runner.load_method_config

    def broken(cls, name, preset, dataset=None):
        config = original(cls, name, preset, dataset)
        config["model"].update(change)
        return config

    monkeypatch.setattr(runner, "load_method_config", broken)
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
    from fusion_bench.metrics.dialects import Dialect

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
    prep = runner.prepare(runner.BenchSpec(method="mean", dataset="toy", root=root, out=tmp_path / "runs",
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
from methods.baselines.model import MeanFusion


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
    from fusion_bench.data.base import DatasetError
    from fusion_bench.data.io import is_image_file
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

    from fusion_bench.data.io import ImageReadError, read_image

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
    from fusion_bench.metrics._common import MetricsInputError
    from fusion_bench.metrics.folders import _header

    path = tmp_path / "01.png"
    path.write_bytes(b"not a png")

    def wrapped_open(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'pi_heif'")

    monkeypatch.setattr(Image, "open", wrapped_open)
    assert image_io.stored_mode(path) == "unreadable"
    with pytest.raises(ImageReadError, match="cannot read image .*01.png"):
        image_io.read_array(path)
    with pytest.raises(MetricsInputError, match="cannot read image .*01.png"):
        _header(path)


def test_bad_downstream_numerics_in_a_spec_is_a_request_error(tmp_path):
    with pytest.raises(runner.BenchError, match="--downstream-numerics 'fast': expected one of pinned, native"):
        runner.prepare(runner.BenchSpec(method="mean", dataset="synthetic-ivif", device="cpu", downstream="none",
                                        out=tmp_path / "runs", leaderboard_dir=None, downstream_numerics="fast"))
