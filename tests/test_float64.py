"""Float64 end to end (`train.precision: 64-true`), the regression suite's per-entry settings and its options.

The smoke regression trains every trained entry in float64 so that its numbers do not depend on the CPU's kernels
(benchmarks/suites/smoke.yaml; README "Determinism and regression"). These tests check that float64 reaches every
place a trained model runs (fit, fuse, classify, GFLOPs, the methods' own loaders, `fuse --weights`), that the
suite's `set:` and the downstream evaluators' `seg.*` / `det.*` overrides arrive where they should, and the
`regress --methods/--set/--actual` options (the README's manual mutation check).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from fusion_bench.base.precision import cast_floating, computing_in, is_double, model_dtype, upcast
from fusion_bench.benchmark.regress import read_expected, run_suite
from fusion_bench.benchmark.runner import BenchSpec, prepare, run_bench
from fusion_bench.errors import BenchError

DOUBLE = {"train.precision": "64-true", "train.max_steps": 3}


def _spec(tmp_path: Path, method: str, dataset: str, **changes: Any) -> BenchSpec:
    return BenchSpec(method=method, dataset=dataset, out=tmp_path / "runs", leaderboard_dir=None, device="cpu",
                     progress=False, downstream="none", **changes)


def test_precision_helpers() -> None:
    assert is_double("64-true") and is_double(64) and is_double("64") and not is_double("32-true")
    net = torch.nn.Linear(2, 2).double()
    assert model_dtype(net) == torch.float64 and model_dtype(torch.nn.ReLU()) == torch.float32
    batch = {"x": torch.zeros(2), "mask": torch.zeros(2, dtype=torch.long), "name": ["a"]}
    cast = cast_floating(batch, torch.float64)
    assert cast["x"].dtype == torch.float64 and cast["mask"].dtype == torch.long and cast["name"] == ["a"]
    with computing_in(torch.float64):
        assert torch.zeros(1).dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32
    assert upcast(torch.zeros(1, dtype=torch.bfloat16)).dtype == torch.float32
    assert upcast(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("method", ["fusion_cnn", "cmd_cta"])
def test_float64_fit_fuses_and_scores(method: str, tmp_path: Path) -> None:
    """A 64-true fit keeps float64 weights (model.pt), fuses and scores the test split (was: 'Input type (float) and
    bias type (double) should be the same' at fuse time) and records the precision in the row."""
    spec = _spec(tmp_path, method, "synthetic-ivif", overrides=DOUBLE)
    (row,) = run_bench(spec)
    assert math.isfinite(row["EN"]) and row["n_images"] == 16 and '"train.precision":"64-true"' in row["overrides"]
    weights = torch.load(prepare(spec).run_dir(0) / "model.pt", weights_only=True)["state_dict"]
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float64}


def test_float64_classifier_evaluates_and_reports_its_test_cross_entropy(tmp_path: Path) -> None:
    """PMR computes prototypes with its own loader (float32 batches) and must cast them; the row gets cls_nll."""
    (row,) = run_bench(_spec(tmp_path, "pmr", "synthetic-av", overrides=DOUBLE))
    assert 0 <= row["cls_acc"] <= 1 and math.isfinite(row["cls_nll"]) and row["cls_nll"] > 0
    assert 0 <= row["probe_audio"] <= 1 and 0 <= row["probe_frames"] <= 1  # probes of the float64 encoders


def test_fuse_with_float64_weights_fuses_in_float64(cli, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """`train` in 64-true, then `fuse --weights`: the model takes the weights' float64 and the fused PNGs equal
    those of the same fit fused inside `train`'s process (compared through `bench` on the same settings)."""
    common = ["--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--set", "train.precision=64-true",
              "train.max_steps=3"]
    code, _, err = cli(capsys, "train", *common, "--out", tmp_path / "w.pt")
    assert code == 0, err
    code, _, err = cli(capsys, "fuse", *common, "--weights", tmp_path / "w.pt", "--out", tmp_path / "fused")
    assert code == 0, err
    run_bench(_spec(tmp_path, "fusion_cnn", "synthetic-ivif", overrides=dict(DOUBLE)))
    bench_dir = prepare(_spec(tmp_path, "fusion_cnn", "synthetic-ivif", overrides=dict(DOUBLE))).run_dir(0) / "fused"
    fused = sorted((tmp_path / "fused").glob("*.png"))
    assert len(fused) == 16
    assert all((bench_dir / p.name).read_bytes() == p.read_bytes() for p in fused)


# ------------------------------------------------------------------------------------------------ suite settings


def test_suite_set_reaches_trained_entries_only(tmp_path: Path) -> None:
    """A suite's `set` is merged with each entry's own; training-free methods ignore train.* (no hash change)."""
    suite = {"preset": "smoke", "seeds": [0], "set": {"train.precision": "64-true"}, "runs": [
        {"dataset": "synthetic-ivif", "methods": ["mean"]},
        {"dataset": "synthetic-ivif", "methods": ["fusion_cnn"], "set": {"train.max_steps": 2}}]}
    frame = run_suite(suite, tmp_path)
    rows = pd.read_csv(tmp_path / "leaderboards" / "raw" / "synthetic-ivif.csv")
    overrides = dict(zip(rows["method"], rows["overrides"].fillna("")))
    assert overrides["mean"] == ""
    assert overrides["fusion_cnn"] == '{"train.max_steps":2,"train.precision":"64-true"}'
    assert sorted(frame["method"]) == ["fusion_cnn", "mean"]
    only = run_suite(suite, tmp_path / "only", methods=["mean"])
    assert list(only["method"]) == ["mean"]


def test_evaluator_overrides_are_checked_before_any_work(tmp_path: Path) -> None:
    base = {"overrides": {"seg.dtype": "float64"}}
    with pytest.raises(BenchError, match=r"--set seg\.\*: the downstream evaluator 'seg' does not run"):
        prepare(_spec(tmp_path, "max", "synthetic-ivif", **base))
    spec = _spec(tmp_path, "max", "synthetic-ivif", overrides={"seg.dtype": "float64", "det.epochs": 4})
    prep = prepare(BenchSpec(**{**spec.__dict__, "downstream": ["seg", "det"]}))
    assert prep.evaluators["seg"].dtype == "float64" and prep.evaluators["det"].epochs == 4
    with pytest.raises(BenchError, match=r"--set seg\.colour: unknown key 'colour' of the seg evaluator; valid seg "
                                         r"keys: .*dtype"):
        prepare(BenchSpec(**{**spec.__dict__, "downstream": ["seg"], "overrides": {"seg.colour": 1}}))
    with pytest.raises(BenchError, match="segmentation dtype 'half'"):
        prepare(BenchSpec(**{**spec.__dict__, "downstream": ["seg"], "overrides": {"seg.dtype": "half"}}))


def test_regress_options_select_change_and_write_the_numbers(cli, capsys: pytest.CaptureFixture,
                                                              tmp_path: Path) -> None:
    """`regress --methods mean --actual F` re-runs only mean's entries (no drift); `--set` changes an entry (drift,
    exit 1, naming it); a method outside the suite and `--update` with a selection are request errors."""
    code, out, err = cli(capsys, "regress", "--methods", "mean", "--actual", tmp_path / "mean.csv")
    assert code == 0 and "no drift" in out, err
    actual = read_expected(tmp_path / "mean.csv")
    standard = actual[actual["protocol"].fillna("") == ""]
    assert set(actual["method"]) == {"mean"} and len(standard) == 6  # 3 datasets x 2 seeds
    assert len(actual) - len(standard) == 16  # the robust entry: the clean row + 3 corruptions x 5 severities
    code, _, err = cli(capsys, "regress", "--methods", "laplacian", "--set", "model.levels=3")
    assert code == 1 and "synthetic-ivif/laplacian/smoke/0: EN expected" in err
    code, _, err = cli(capsys, "regress", "--methods", "nope")
    assert code == 2 and "--methods: nope not in suite smoke" in err
    code, _, err = cli(capsys, "regress", "--update", "--methods", "mean")
    assert code == 2 and "--update rewrites the whole expected file" in err
