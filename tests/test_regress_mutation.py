"""The smoke regression keeps its teeth: a 1e-3 relative change of one setting is a drift.

For every trained entry of benchmarks/suites/smoke.yaml (seed 0 of its first entry), the learning rate times 1.001,
and for the methods with a loss weight in their smoke preset one loss weight times 1.001; for the downstream entry
SegFormer's and YOLO's learning rates times 1.001; for a training-free method one pixel rule (the mean's weights
0.5005/0.4995 instead of 0.5/0.5). Each mutated run is compared with the committed expected numbers under the
suite's own tolerance: `compare` must report at least one drifted number (not a missing run). The measured sizes of
these drifts, against the cross-CPU spread they must stand out from, are in smoke.yaml's comments and the README's
"Determinism and regression" section.

Slow (about 10 minutes on the 2-core CI machine): `pytest -m slow tests/test_regress_mutation.py`. The same check by
hand: `fusion-bench regress --methods fusion_cnn --set optim.lr=0.003003` (exit 1, drift).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fusion_bench.base.method import load_method_config
from fusion_bench.benchmark.protocol import SUITE_DIR, load_suite
from fusion_bench.benchmark.regress import KEY, compare, keyed_frame, read_expected, run_suite
from fusion_bench.evaluators.detection import DET_PRESETS
from fusion_bench.evaluators.segmentation import SEG_PRESETS
from fusion_bench.registry import get_method

SUITE, _ = load_suite("smoke")
EXPECTED = read_expected(SUITE_DIR / SUITE["expected"])
FACTOR = 1.001


def _entry(method: str, *, downstream: bool = False) -> dict[str, Any]:
    """The first suite entry of `method` (the downstream one when asked), seed 0 only."""
    for entry in SUITE["runs"]:
        if method in entry["methods"] and bool(entry.get("downstream")) == downstream:
            return {**entry, "methods": [method], "seeds": [0]}
    raise LookupError(method)


def _trained() -> list[str]:
    names = dict.fromkeys(m for entry in SUITE["runs"] for m in entry["methods"] if not entry.get("downstream"))
    return [m for m in names if getattr(get_method(m), "trainable", False)]


def _preset(method: str, entry: dict[str, Any]) -> dict[str, Any]:
    dataset = entry.get("dataset") or entry["mixture"][0]
    return load_method_config(get_method(method), method, "smoke", dataset)


# one loss weight per method whose smoke preset exposes one
LOSS_WEIGHTS = {"fusion_cnn": "w_grad", "cfi": "w_inv", "cmd_cta": "w_contrast", "amdanet": "w_fus",
                "infonce": "alpha", "infobridge": "alpha", "pmr": "alpha", "mmpareto": "gamma"}
MUTATIONS = [(m, "optim.lr") for m in _trained()] + [(m, f"model.{k}") for m, k in LOSS_WEIGHTS.items()]


def _drifts(entry: dict[str, Any], tmp_path: Path, overrides: dict[str, Any]) -> list[str]:
    suite = {**SUITE, "runs": [entry]}
    actual = run_suite(suite, tmp_path, overrides=overrides)
    keys = keyed_frame(actual).set_index(KEY).index
    expected = keyed_frame(EXPECTED).set_index(KEY)
    expected = expected.loc[expected.index.intersection(keys)].reset_index()
    assert len(expected) == len(actual), "every mutated run has its expected row"
    drifts = compare(expected, actual, SUITE.get("tolerance", {}))
    assert not any("missing" in d or "new run" in d for d in drifts), drifts
    print(f"\n{entry['methods'][0]} {overrides or 'pixel rule'}: {len(drifts)} drifted numbers, largest relative "
          f"change {_largest_change(drifts):.1e}")  # the README's mutation sizes (pytest -s)
    return drifts


def _largest_change(drifts: list[str]) -> float:
    """The largest |got - expected| / |expected| among `compare`'s lines ('...: EN expected 6.7, got 6.6')."""
    largest = 0.0
    for line in drifts:
        try:
            expected, got = line.rsplit(" expected ", 1)[1].split(", got ")
            e, g = float(expected), float(got)
        except (IndexError, ValueError):
            continue
        largest = max(largest, abs(g - e) / max(abs(e), 1e-300))
    return largest


@pytest.mark.slow
@pytest.mark.parametrize(("method", "key"), MUTATIONS, ids=[f"{m}-{k}" for m, k in MUTATIONS])
def test_a_1e3_relative_change_of_a_trained_setting_is_a_drift(method: str, key: str, tmp_path: Path) -> None:
    entry = _entry(method)
    section, name = key.split(".")
    value = _preset(method, entry)[section][name]
    drifts = _drifts(entry, tmp_path, {key: value * FACTOR})
    assert drifts, f"{method}: {key} {value} -> {value * FACTOR} went unnoticed"


@pytest.mark.slow
def test_the_mixture_entry_notices_its_learning_rate(tmp_path: Path) -> None:
    entry = next({**e, "seeds": [0]} for e in SUITE["runs"] if "mixture" in e)
    method = entry["methods"][0]
    assert _drifts(entry, tmp_path, {"optim.lr": _preset(method, entry)["optim"]["lr"] * FACTOR})


@pytest.mark.slow
@pytest.mark.parametrize("evaluator", ["seg", "det"])
def test_the_downstream_entry_notices_its_evaluators_learning_rates(evaluator: str, tmp_path: Path) -> None:
    entry = _entry("max", downstream=True)
    if evaluator == "seg":
        change = {"seg.lr": SEG_PRESETS["smoke"].lr * FACTOR}
    else:
        args = dict(DET_PRESETS["smoke"].train_args)
        change = {"det.train_args": {**args, "lr0": args["lr0"] * FACTOR}}
    drifts = _drifts(entry, tmp_path, change)
    column = "seg_" if evaluator == "seg" else "det_"
    assert any(f": {column}" in d for d in drifts), drifts


@pytest.mark.slow
def test_a_changed_pixel_rule_of_a_training_free_method_is_a_drift(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from fusion_bench.methods.baselines.model import MeanFusion

    monkeypatch.setattr(MeanFusion, "fuse_luminance", lambda self, y1, y2: 0.5005 * y1 + 0.4995 * y2)
    assert _drifts(_entry("mean"), tmp_path, {})


def test_every_trained_entry_is_mutated() -> None:
    """The mutation list follows the suite: a trained method added to smoke.yaml is mutated too."""
    trained = set(_trained())
    assert trained and trained <= {m for m, _ in MUTATIONS}
    assert isinstance(EXPECTED, pd.DataFrame) and not EXPECTED.empty
