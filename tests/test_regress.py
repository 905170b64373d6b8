"""The regression comparison names every drifted metric and every missing run."""

from __future__ import annotations

import pandas as pd

from fusion_bench.benchmark.regress import compare, run_suite


def _frame(**overrides):
    row = {"dataset": "d", "method": "mean", "preset": "smoke", "seed": 0, "EN": 7.0, "SD": 40.0}
    row.update(overrides)
    return pd.DataFrame([row])


def test_identical_numbers_pass():
    assert compare(_frame(), _frame(), {"default": {"rtol": 1e-6}}) == []


def test_each_drifted_metric_is_named():
    drifts = compare(_frame(), _frame(EN=7.1, SD=41.0), {"default": {"rtol": 1e-6}})
    assert len(drifts) == 2
    assert any("EN expected 7.0, got 7.1" in d for d in drifts)
    assert any("SD" in d for d in drifts)


def test_per_method_tolerance():
    assert compare(_frame(), _frame(EN=7.0001), {"default": {"rtol": 1e-6}, "mean": {"rtol": 1e-3}}) == []


def test_missing_and_new_runs_reported():
    drifts = compare(_frame(), _frame(method="max"), {})
    assert any("run missing" in d for d in drifts) and any("new run" in d for d in drifts)


def test_an_entry_may_name_its_own_seeds(tmp_path):
    suite = {"preset": "smoke", "seeds": [0, 1], "runs": [
        {"dataset": "synthetic-ivif", "methods": ["mean"], "seeds": [0]},
        {"dataset": "synthetic-ivif", "methods": ["max"]}]}
    frame = run_suite(suite, tmp_path)
    assert sorted(zip(frame["method"], frame["seed"].astype(int))) == [("max", 0), ("max", 1), ("mean", 0)]


def test_compare_checks_a_text_column_by_equality() -> None:
    from fusion_bench.benchmark.regress import compare

    row = {"dataset": "d", "method": "m", "preset": "smoke", "seed": 0, "EN": 1.0, "backend": "chunked"}
    assert compare(pd.DataFrame([row]), pd.DataFrame([row]), {}) == []
    (drift,) = compare(pd.DataFrame([row]), pd.DataFrame([{**row, "backend": "loop"}]), {})
    assert "backend expected 'chunked', got 'loop'" in drift
