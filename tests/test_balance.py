"""The `balance` protocol variant (fusion_bench.benchmark.balance) and the linear probes (benchmark.probes):
one shared recipe for every audio-visual method, its seeds and hash, refusals naming --protocol, and probes that are
right on known features, deterministic and computed in the model's dtype."""

from __future__ import annotations

import pytest
import torch

from fusion_bench.benchmark.balance import apply_recipe, recipe
from fusion_bench.benchmark.probes import extract_features, fit_probe, probe_accuracy, tie_aware_accuracy
from fusion_bench.benchmark.request import default_seeds, prepare
from fusion_bench.benchmark.spec import BenchSpec
from fusion_bench.errors import BenchError

RECIPE_KEYS = {"optim": ("optimizer", "lr", "momentum", "weight_decay", "schedule"),
               "train": ("max_steps", "max_epochs", "batch_size"), "model": ("width", "blocks")}


def _spec(method: str, tmp_path, **kwargs) -> BenchSpec:
    return BenchSpec(method=method, dataset="synthetic-av", out=tmp_path / "runs", leaderboard_dir=tmp_path / "lb",
                     device="cpu", **kwargs)


def _recipe_part(config: dict) -> dict:
    return {(s, k): config.get(s, {}).get(k) for s, keys in RECIPE_KEYS.items() for k in keys}


# -- probes ----------------------------------------------------------------------------------------------------------


def _blobs(n: int, informative: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    if informative:
        x[:, :3] += 6.0 * torch.nn.functional.one_hot(y, 3).to(torch.float64)
    return x, y


def test_probe_separates_informative_features_and_not_noise() -> None:
    assert probe_accuracy(_blobs(90, True, 0), _blobs(60, True, 1), 3) == 1.0
    noise = probe_accuracy(_blobs(90, False, 0), _blobs(300, False, 1), 3)
    assert noise < 0.5, noise  # chance 1/3


def test_tied_logits_share_the_credit_whatever_their_last_bits() -> None:
    """Two classes a modality cannot tell apart tie up to rounding: either rounding gives the same accuracy (0.5 for
    such a sample), while a plain argmax would follow the last bit."""
    target = torch.tensor([0, 1, 2])
    a = torch.tensor([[1.0, 1.0 + 1e-15, -3.0], [2.0, 2.0 - 1e-15, 0.0], [0.0, 0.0, 5.0]], dtype=torch.float64)
    b = torch.tensor([[1.0 + 1e-15, 1.0, -3.0], [2.0 - 1e-15, 2.0, 0.0], [0.0, 0.0, 5.0]], dtype=torch.float64)
    assert tie_aware_accuracy(a, target) == tie_aware_accuracy(b, target) == (0.5 + 0.5 + 1.0) / 3
    assert tie_aware_accuracy(torch.tensor([[1.0, 1.1]], dtype=torch.float64), torch.tensor([0])) == 0.0


def test_probe_is_deterministic_and_float64() -> None:
    x, y = _blobs(60, True, 2)
    w1, b1, _, _ = fit_probe(x.float(), y, 3)
    w2, b2, _, _ = fit_probe(x.float(), y, 3)
    assert w1.dtype == torch.float64 and torch.equal(w1, w2) and torch.equal(b1, b2)
    constant = torch.cat([x, torch.ones(60, 1, dtype=torch.float64)], 1)  # a dead feature stays finite
    assert torch.isfinite(fit_probe(constant, y, 3)[0]).all()
    with pytest.raises(ValueError, match="l2"):
        fit_probe(x, y, 3, l2=0.0)


def test_probe_features_in_the_model_dtype(tmp_path) -> None:
    from fusion_bench.data.synthetic import SyntheticAVDataModule
    from fusion_bench.methods.late_fusion.module import LateFusionClassifier

    dm = SyntheticAVDataModule()
    model = LateFusionClassifier(num_classes=6, modalities=dm.modalities, width=4, blocks=2).double()
    subset = torch.utils.data.Subset(dm.dataset("test"), range(8))
    feats, target = extract_features(model, subset, torch.device("cpu"))
    assert set(feats) == set(dm.modalities) and target.shape == (8,)
    assert all(f.dtype == torch.float64 and f.shape == (8, 8) for f in feats.values())


# -- the shared recipe -----------------------------------------------------------------------------------------------


def test_balance_gives_every_method_the_same_recipe(tmp_path) -> None:
    methods = ("late_fusion", "unimodal", "ogm_ge", "mmpareto")
    standard = {m: prepare(_spec(m, tmp_path)) for m in methods}
    balance = {m: prepare(_spec(m, tmp_path, protocol_variant="balance")) for m in methods}
    # today's presets differ (late fusion: Adam 1e-3 for 200 steps; the balancing methods: SGD 0.03 for 100)
    assert len({tuple(_recipe_part(p.config).items()) for p in standard.values()}) > 1
    parts = {m: _recipe_part(p.config) for m, p in balance.items()}
    assert all(part == parts["late_fusion"] for part in parts.values()), parts
    assert parts["late_fusion"][("optim", "optimizer")] == "sgd" and parts["late_fusion"][("train", "max_epochs")] \
        is None
    assert balance["ogm_ge"].config["model"]["alpha"] == standard["ogm_ge"].config["model"]["alpha"]  # own keys kept
    assert balance["late_fusion"].config_hash != standard["late_fusion"].config_hash
    assert balance["late_fusion"].overrides == {}  # the recipe is not an override
    tuned = prepare(_spec("ogm_ge", tmp_path, protocol_variant="balance", overrides={"optim.lr": 0.01}))
    assert tuned.config["optim"]["lr"] == 0.01 and tuned.overrides == {"optim.lr": 0.01}  # --set over the recipe


def test_paper_recipe_replaces_the_budget() -> None:
    from fusion_bench.benchmark.protocol import load_protocol
    from fusion_bench.types import Task

    shared = recipe(load_protocol("cremad", Task.CLASSIFICATION), "paper")
    config = {"model": {"alpha": 0.8}, "optim": {"lr": 1e-3}, "train": {"max_steps": 7, "batch_size": 4}}
    valid = {"model": ["alpha", "encoder", "pretrained", "init", "frame_norm", "audio_size"],
             "optim": ["lr", "optimizer", "momentum", "weight_decay", "schedule"],
             "train": ["max_steps", "max_epochs", "batch_size"]}
    out = apply_recipe(config, shared, "ogm_ge", valid)
    assert out["train"] == {"max_epochs": 200, "batch_size": 128} and out["model"]["alpha"] == 0.8
    assert config["train"]["max_steps"] == 7  # the preset itself is not changed
    with pytest.raises(BenchError, match="--protocol balance: method 'x' does not take"):
        apply_recipe(config, shared, "x", {**valid, "optim": ["lr"]})


def test_balance_seeds_and_refusals(tmp_path) -> None:
    assert default_seeds("synthetic-av", "smoke", variant="balance") == [0, 1, 2, 3, 4]
    assert default_seeds("synthetic-av", "smoke") == [0]
    with pytest.raises(BenchError, match="^--protocol balance: dataset 'synthetic-ivif'"):
        prepare(BenchSpec(method="mean", dataset="synthetic-ivif", protocol_variant="balance",
                          out=tmp_path / "r", leaderboard_dir=None))
    with pytest.raises(BenchError, match="^--protocol nope: unknown"):
        prepare(_spec("late_fusion", tmp_path, protocol_variant="nope"))


def test_cli_protocol_refused_before_work(cli, capsys, tmp_path) -> None:
    code, _, err = cli(capsys, "bench", "--method", "mean", "--dataset", "synthetic-ivif", "--protocol", "balance",
                       "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb")
    assert code == 2 and "--protocol" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists()


# -- the report's AV section -----------------------------------------------------------------------------------------


def test_balance_summary_pairs_seeds_against_late_fusion(tmp_path) -> None:
    from fusion_bench.report.balance import balance_frame, balance_section, balance_summary

    rows = []
    for seed in range(5):
        rows.append({"method": "late_fusion", "seed": seed, "protocol": "balance", "preset": "smoke",
                     "cls_acc": 0.8, "probe_frames": 0.40 + 0.01 * seed, "probe_audio": 0.5})
        rows.append({"method": "ogm_ge", "seed": seed, "protocol": "balance", "preset": "smoke",
                     "cls_acc": 0.8, "probe_frames": 0.45 + 0.01 * seed + (0.01 if seed % 2 else -0.01)})
        rows.append({"method": "unimodal", "seed": seed, "protocol": "balance", "preset": "smoke",
                     "overrides": '{"model.modality":"frames"}', "probe_frames": 0.8})
        rows.append({"method": "ogm_ge", "seed": seed, "preset": "smoke", "probe_frames": 0.0})  # standard protocol
    summary = balance_summary(balance_frame(rows))
    assert list(summary.index) == ["late_fusion", "ogm_ge", "unimodal (frames)"]
    ogm = summary.loc["ogm_ge"]
    assert ogm["n"] == 5 and abs(ogm["d_diff"] - 0.048) < 1e-12  # paired: +0.05 and the +-0.01 wobble (mean -0.002)
    assert ogm["d_low"] < ogm["d_diff"] < ogm["d_high"] and ogm["d_p"] < 0.001
    assert abs(summary.loc["unimodal (frames)", "d_diff"] - 0.38) < 1e-12
    html = balance_section(rows, tmp_path)
    assert html is not None and "unimodal (frames)" in html and (tmp_path / "tables" / "balance.csv").is_file()
    assert balance_section([r for r in rows if "protocol" not in r], tmp_path) is None
