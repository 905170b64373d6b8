"""The balanced-multimodal-learning baselines on known inputs: OGM-GE's coefficients and gradient modulation, PMR's
prototypes and re-weighting, AGM's Shapley responses and coefficients, MMPareto's gradient combination, the unimodal
baseline and the shared recipe's options."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from fusion_bench.data.transforms import collate_samples
from fusion_bench.methods.agm.module import (
    AGMClassifier,
    agm_coefficients,
    response_score,
    scale_grad,
    shapley_responses,
)
from fusion_bench.methods.av_balance.module import AVClassifier
from fusion_bench.methods.mmpareto.module import MMParetoClassifier, min_norm_weights, pareto_gradient, pareto_weights
from fusion_bench.methods.ogm_ge.module import modulate_conv_gradients, ogm_ge_coefficients
from fusion_bench.methods.pmr.module import PMRClassifier, pmr_coefficients, prototype_logits
from fusion_bench.methods.unimodal.module import UnimodalClassifier
from fusion_bench.types import NAME, TARGET

TINY = {"modalities": ("audio", "frames"), "num_classes": 3, "width": 4, "blocks": 2}


def av_batch(n: int = 12, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(n, 1, 16, 12, generator=g), "frames": torch.rand(n, 3, 16, 16, generator=g),
            TARGET: torch.arange(n) % 3, NAME: [f"clip{i}" for i in range(n)]}


def logits_with_true_prob(p: float, target: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Logits whose softmax gives probability p to the target class (the rest shared equally)."""
    logits = torch.full((len(target), k), math.log((1 - p) / (k - 1)))
    logits[torch.arange(len(target)), target] = math.log(p)
    return logits


# -- OGM-GE -------------------------------------------------------------------------------------------------
def test_ogm_ge_coefficient_from_given_scores():
    target = torch.tensor([0, 1, 2, 0])
    audio, visual = logits_with_true_prob(0.8, target), logits_with_true_prob(0.4, target)
    coeff_a, coeff_v, ratio_v = ogm_ge_coefficients(audio, visual, target, alpha=0.8)
    assert ratio_v == pytest.approx(0.5)  # score_v / score_a = (4 x 0.4) / (4 x 0.8)
    assert coeff_a == pytest.approx(1 - math.tanh(0.8 * 2.0)) and coeff_v == 1.0  # audio dominates
    coeff_a, coeff_v, ratio_v = ogm_ge_coefficients(visual, audio, target, alpha=0.1)
    assert ratio_v == pytest.approx(2.0) and coeff_a == 1.0 and coeff_v == pytest.approx(1 - math.tanh(0.2))


def test_ogm_ge_modulates_conv_gradients_only():
    model = AVClassifier(**TINY)
    for p in model.parameters():
        p.grad = torch.ones_like(p) * 2
    modulate_conv_gradients(model.net.audio_encoder, 0.25, noise=False)
    for p in model.net.audio_encoder.parameters():
        assert torch.equal(p.grad, torch.full_like(p, 0.5 if p.ndim == 4 else 2.0))
    torch.manual_seed(0)
    conv = model.net.visual_encoder[0].weight
    conv.grad = torch.randn_like(conv)
    before = conv.grad.clone()
    modulate_conv_gradients(model.net.visual_encoder, 0.5, noise=True)
    noise = conv.grad - 0.5 * before
    assert noise.abs().max() > 0 and 0.5 < float(noise.std() / before.std()) < 1.5  # N(0, std(grad))
    assert torch.equal(model.net.classifier.weight.grad, torch.full_like(model.net.classifier.weight, 2.0))


# -- PMR ----------------------------------------------------------------------------------------------------
def test_pmr_prototype_distance_and_reweighting():
    protos = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    z = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    assert torch.allclose(prototype_logits(z, protos), torch.tensor([[0.0, -5.0], [-3.0, -4.0]]))
    assert pmr_coefficients(1.5, 2.0) == (0.0, 2.0)  # audio faster: the visual prototype CE gets alpha
    assert pmr_coefficients(0.5, 2.0) == (2.0, 0.0)
    assert pmr_coefficients(1.0, 2.0) == (0.0, 0.0)
    assert pmr_coefficients(1.25, 2.0, "clipped") == (0.0, 0.5)  # alpha * min(rho - 1, 1)
    assert pmr_coefficients(0.25, 2.0, "clipped") == (2.0, 0.0)  # 1/rho - 1 = 3, clipped to 1

    torch.manual_seed(0)
    model = PMRClassifier(alpha=2.0, **TINY)
    model.log = model.log_dict = lambda *a, **k: None
    samples = [{k: (v[i] if k != NAME else v[i]) for k, v in av_batch().items()} for i in range(12)]
    loader = DataLoader(samples, batch_size=4, collate_fn=collate_samples)
    model.proto_fraction = 1.0
    audio_proto, visual_proto = model.compute_prototypes(loader)
    model.eval()
    with torch.no_grad():
        za, zv = model.features(av_batch())
    target = av_batch()[TARGET]
    for c in range(3):
        assert torch.allclose(audio_proto[c], za[target == c].mean(0), atol=1e-5)
        assert torch.allclose(visual_proto[c], zv[target == c].mean(0), atol=1e-5)
    assert model.net.training is False  # compute_prototypes restores the previous mode
    model.train()
    # prototypes that make the audio side look perfect and the visual side uninformative: rho > 1, visual CE added
    batch = av_batch()
    with torch.no_grad():
        za, zv = model.features(batch)
    model.audio_proto.copy_(za[:3])  # samples 0, 1, 2 have classes 0, 1, 2
    model.visual_proto.copy_(zv.mean(0, keepdim=True).expand(3, -1))
    losses, outputs = model.training_losses(batch)
    assert float(losses["ratio_audio_proto"]) > 1 and float(losses["coef_frames"]) == 2.0
    expected = (F.cross_entropy(outputs["fused"], batch[TARGET]) + 2.0 * losses["proto_ce_frames"])
    assert torch.allclose(losses["loss"], expected, atol=1e-5)


# -- AGM ----------------------------------------------------------------------------------------------------
def test_agm_shapley_scores_and_coefficients():
    total, audio_only, visual_only = torch.tensor([[4.0, 0.0]]), torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 2.0]])
    m_a, m_v = shapley_responses(total, audio_only, visual_only)
    assert torch.allclose(m_a, torch.tensor([[3.0, -1.0]])) and torch.allclose(m_v, torch.tensor([[1.0, 1.0]]))
    assert torch.allclose(m_a + m_v, total)
    target = torch.tensor([0])
    assert response_score(m_a, target) == pytest.approx(-math.log(math.exp(3) / (math.exp(3) + math.exp(-1))),
                                                        rel=1e-5)
    assert response_score(torch.tensor([[0.0, 40.0]]), target) == pytest.approx(-math.log(1e-8))  # floored
    # s_a = 0.2, s_v = 1.0, running means S_a = 0.5, S_v = 0.5: r_a = e^0.8, r^_a = 1
    k_a, k_v = agm_coefficients(0.2, 1.0, 0.5, 0.5, alpha=0.5)
    assert k_a == pytest.approx(math.exp(0.5 * (1 - math.exp(0.8))))
    assert k_v == pytest.approx(math.exp(0.5 * (1 - math.exp(-0.8))))
    assert agm_coefficients(30.0, 0.0, 0.0, 30.0, alpha=1.0)[0] == pytest.approx(math.exp(10.0))  # capped at 10
    x = torch.ones(3, requires_grad=True)
    (scale_grad(x, 0.25) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([0.25, 0.5, 0.75]))


def test_agm_training_step_scales_each_response():
    torch.manual_seed(0)
    model = AGMClassifier(alpha=1.0, **TINY)
    model.log = model.log_dict = lambda *a, **k: None
    batch = av_batch()
    losses, outputs = model.training_losses(batch)
    assert model.iteration == 1 and model.mean_score_a == pytest.approx(float(losses["score_audio"]))
    assert torch.allclose(outputs["fused"], model.heads(*model.features(batch))["fused"], atol=1e-4)
    # second step: coefficients come from the running means of the first
    s_a, s_v = model.mean_score_a, model.mean_score_v
    losses, _ = model.training_losses(batch)
    k_a, _ = agm_coefficients(float(losses["score_audio"]), float(losses["score_frames"]), s_a, s_v, 1.0)
    assert float(losses["coeff_audio"]) == pytest.approx(k_a, rel=1e-5)


def test_agm_coefficients_scale_the_responses_not_the_encoders():
    """As in the authors' code, k_u scales the gradient of the Shapley response m_u: the frames encoder's gradient is
    1/2 (k_a + k_v) dT + 1/2 (k_v - k_a) (dV - dA), not k_v times its plain gradient (methods/agm/README.md)."""
    import copy

    torch.manual_seed(0)
    model = AGMClassifier(alpha=1.0, **TINY)
    batch = av_batch(32, seed=1)

    def frames_gradient(k_a: float, k_v: float) -> torch.Tensor:
        fresh = copy.deepcopy(model)  # each pass updates BN statistics: every call starts from the same state
        fresh.train()
        _, m_a, m_v = fresh.responses(batch)
        F.cross_entropy(scale_grad(m_a, k_a) + scale_grad(m_v, k_v), batch[TARGET]).backward()
        return torch.cat([p.grad.flatten() for p in fresh.net.visual_encoder.parameters()])

    plain, scaled = frames_gradient(1.0, 1.0), frames_gradient(2.0, 0.5)
    assert torch.allclose(frames_gradient(0.5, 0.5), 0.5 * plain, rtol=1e-4, atol=1e-8), "k_a = k_v scales exactly"
    ratio = float(scaled.norm() / plain.norm())
    assert ratio > 1.0, f"k_v = 0.5 does not halve the frames gradient here: |g| ratio {ratio:.2f}"


def test_agm_running_state_survives_a_checkpoint():
    """AGM's running means, step count and coefficients in force go into the checkpoint (a resumed fit continues
    them; without them the means restart at 0 and the coefficients after the window fall back to 1)."""
    torch.manual_seed(0)
    model = AGMClassifier(alpha=1.0, **TINY)
    model.log = model.log_dict = lambda *a, **k: None
    for _ in range(3):
        model.training_losses(av_batch())
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    resumed = AGMClassifier(alpha=1.0, **TINY)
    resumed.on_load_checkpoint(checkpoint)
    assert {name: getattr(resumed, name) for name in AGMClassifier.STATE} == \
        {name: getattr(model, name) for name in AGMClassifier.STATE}
    assert resumed.iteration == 3 and resumed.mean_score_a > 0


@pytest.mark.parametrize("method, override, needle", [
    ("ogm_ge", "train.accumulate_grad_batches=2", "rewrites the gradients after every backward pass"),
    ("agm", "train.accumulate_grad_batches=2", "rewrites the gradients after every backward pass"),
    ("agm", "train.precision=16-mixed", "float16 loss scaling"),
])
def test_gradient_rewriting_methods_refuse_accumulation_and_loss_scaling(cli, capsys, tmp_path, method, override,
                                                                         needle):
    code, _, err = cli(capsys, "bench", "--method", method, "--dataset", "synthetic-av", "--device", "cpu",
                       "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb", "--no-progress",
                       "--set", override)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


# -- MMPareto -----------------------------------------------------------------------------------------------
def test_mmpareto_combination_of_two_given_gradients():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0])
    k_mm, k_uni, cos = pareto_weights([g1], [g2])
    assert cos < 0
    c = torch.linspace(0, 1, 100001)
    norms = ((c[:, None] * g1 + (1 - c[:, None]) * g2) ** 2).sum(1)
    assert k_mm == pytest.approx(float(c[norms.argmin()]), abs=1e-4) and k_mm + k_uni == pytest.approx(1.0)
    assert pareto_weights([g1], [torch.tensor([1.0, 1.0])])[:2] == (0.5, 0.5)  # aligned: equal weights
    assert min_norm_weights(1.0, 2.0, 5.0) == (0.999, pytest.approx(0.001))  # MinNormSolver's end points
    # new = 2 k g_mm + 2 k' g_u, rescaled up to the summed gradient's norm, times gamma
    new = 2 * 0.5 * g1 + 2 * 0.5 * torch.tensor([1.0, 1.0])  # norm sqrt(5)
    summed = torch.tensor([6.0, 0.0])
    assert torch.allclose(pareto_gradient(summed, g1, torch.tensor([1.0, 1.0]), 0.5, 0.5, 1.5),
                          new * (6 / math.sqrt(5)) * 1.5)
    assert torch.allclose(pareto_gradient(torch.tensor([0.1, 0.0]), g1, torch.tensor([1.0, 1.0]), 0.5, 0.5, 1.5),
                          new * 1.5)


def test_mmpareto_step_sets_the_combined_encoder_gradients():
    torch.manual_seed(0)
    model = MMParetoClassifier(**TINY)
    model.log = model.log_dict = lambda *a, **k: None
    batch = av_batch()
    losses, outputs = model.training_losses(batch)
    pending = [(p, gm.clone(), gu.clone(), k0, k1) for params, g_mm, g_uni, k0, k1 in model._pending
               for p, gm, gu in zip(params, g_mm, g_uni)]
    losses["loss"].backward()
    summed = {id(p): p.grad.clone() for p, *_ in pending}
    head_grad = model.net.audio_head.weight.grad.clone()
    model.on_after_backward()
    for p, gm, gu, k0, k1 in pending:
        assert torch.allclose(p.grad, pareto_gradient(summed[id(p)], gm, gu, k0, k1, 1.5))
    assert torch.equal(model.net.audio_head.weight.grad, head_grad)  # heads keep the plain summed gradient
    assert {"audio_aux", "frames_aux"} <= set(outputs) and set(model(batch)) == {"fused", "audio", "frames"}


# -- unimodal and the recipe ---------------------------------------------------------------------------------
@pytest.mark.parametrize("modality", ["audio", "frames"])
def test_unimodal_sees_one_modality(modality):
    model = UnimodalClassifier(modality=modality, **TINY)
    out = model(av_batch(n=4))
    assert set(out) == {"fused", modality} and torch.equal(out["fused"], out[modality])
    other = "frames" if modality == "audio" else "audio"
    batch = av_batch(n=4)
    batch[other] = torch.full_like(batch[other], float("nan"))  # never read
    assert torch.isfinite(model(batch)["fused"]).all()


def test_recipe_options():
    model = AVClassifier(encoder="resnet18", init="ogm_ge", frame_norm="imagenet", audio_size=[32, 24], **TINY)
    assert model.net.feature_dim == 512 and model.net.audio_encoder.conv1.in_channels == 1
    assert float(model.net.classifier.bias.detach().abs().max()) == 0  # OGM-GE init: Linear bias 0
    audio, frames = model.inputs(av_batch(n=2))
    assert audio.shape[-2:] == (32, 24)
    assert torch.allclose(frames[:, 0], (av_batch(n=2)["frames"][:, 0] - 0.485) / 0.229)
    with pytest.raises(ValueError, match="unknown optimizer"):
        AVClassifier(optimizer="lamb", **TINY)
    with pytest.raises(ValueError, match="unknown encoder"):
        AVClassifier(encoder="vit", **TINY)
