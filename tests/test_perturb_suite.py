"""benchmarks/determinism/perturb_suite.py: the perturbation environments and the spread table that set the smoke
suite's tolerance (the suite itself is re-run by hand: README, Determinism and regression)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "determinism" / "perturb_suite.py"
spec = importlib.util.spec_from_file_location("perturb_suite", SCRIPT)
perturb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(perturb)


def test_each_variant_changes_what_it_names_and_nothing_else() -> None:
    envs = perturb.variant_environments({"PATH": "/bin", "FUSION_BENCH_NUMERICS": "native"})
    pinned = envs["pinned"]
    assert pinned["FUSION_BENCH_NUMERICS"] == "pinned" and pinned["MKL_CBWR"] == "COMPATIBLE,STRICT"
    assert pinned["ATEN_CPU_CAPABILITY"] == "avx2" and pinned["OMP_NUM_THREADS"] == "1"
    assert envs["cbwr-avx2"] == {**pinned, "MKL_CBWR": "AVX2"}
    assert "MKL_CBWR" not in envs["cbwr-unset"] and envs["mkl-avx512"]["MKL_ENABLE_INSTRUCTIONS"] == "AVX512"
    assert "ATEN_CPU_CAPABILITY" not in envs["aten-default"]
    for threads in (1, 2):
        native = envs[f"native-{threads}t"]
        assert native["FUSION_BENCH_NUMERICS"] == "native" and native["OMP_NUM_THREADS"] == str(threads)
        assert "MKL_CBWR" not in native and "ATEN_CPU_CAPABILITY" not in native and native["PATH"] == "/bin"


def test_avx512_variants_are_skipped_on_a_cpu_without_it() -> None:
    assert perturb.unreachable({"avx2", "fma"}) == ["mkl-avx512", "aten-default", "aten-avx512"]
    assert perturb.unreachable({"avx2", "avx512f"}) == []


def test_spread_is_the_largest_relative_difference_per_entry_and_variant() -> None:
    def frame(en: float, acc: float, missing: bool = False) -> pd.DataFrame:
        rows = [{"dataset": "d", "method": "m", "preset": "smoke", "seed": 0, "train_mixture": None,
                 "downstream": None, "EN": en, "cls_acc": math.nan},
                {"dataset": "av", "method": "late", "preset": "smoke", "seed": 0, "train_mixture": None,
                 "downstream": None, "EN": math.nan, "cls_acc": acc}]
        return pd.DataFrame(rows[:1] if missing else rows)

    table = perturb.spread({"pinned": frame(6.0, 0.5), "a": frame(6.0 * (1 + 1e-12), 0.5),
                            "b": frame(6.0, 0.5 * (1 + 3e-3)), "c": frame(6.0, 0.5, missing=True)})
    assert table.loc[("m", "d", ""), "a"] == abs(6.0 * (1 + 1e-12) - 6.0) / 6.0
    assert table.loc[("m", "d", ""), "b"] == 0.0 and table.loc[("late", "av", ""), "b"] > 2.9e-3
    assert math.isinf(table.loc[("late", "av", ""), "c"]), "a run missing from a variant is infinitely far"
    assert table.loc[("late", "av", ""), "max"] == math.inf
    text = perturb.markdown(table, {"pinned": "pinned: AVX2 kernels"})
    assert "| late | av | - |" in text and "`pinned`: pinned: AVX2 kernels" in text


def test_spread_keys_robust_rows_apart_and_keeps_to_the_methods_run() -> None:
    def frame(noise: float) -> pd.DataFrame:
        base = {"dataset": "d", "method": "m", "preset": "smoke", "seed": 0, "protocol": "robust", "modality": "a"}
        return pd.DataFrame([{**base, "corruption": "none", "severity": 0, "EN": 6.0},
                             {**base, "corruption": "noise", "severity": 1, "EN": noise},
                             {**base, "method": "other", "corruption": "none", "severity": 0, "EN": 1.0}])

    variant = frame(5.0 * (1 + 1e-6)).query("method == 'm'")  # run with --methods m
    table = perturb.spread({"pinned": frame(5.0), "v": variant}, ["m"])
    assert list(table.index) == [("m", "d", "robust")]
    assert table.loc[("m", "d", "robust"), "v"] == abs(5.0 * (1 + 1e-6) - 5.0) / 5.0
