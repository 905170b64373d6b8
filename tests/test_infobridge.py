"""InfoBridge: the conditional NCE value, the negative sampler, the memory buffer, gradient routing, alpha = 0 equals
late fusion, the condition T, and the shared recipe's forward contract (spec ../shared/specs/infobridge.md, sec. 6)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fusion_bench.methods.infobridge.loss import conditional_nce, mi_bounds
from fusion_bench.methods.infobridge.model import ConditionAssigner, MemoryBuffer, candidate_mask, sample_negatives
from fusion_bench.methods.infobridge.module import InfoBridgeClassifier
from fusion_bench.methods.late_fusion.module import LateFusionClassifier
from fusion_bench.types import NAME, TARGET

TINY = {"modalities": ("audio", "frames"), "num_classes": 3, "width": 4, "blocks": 2}


def av_batch(n: int = 12, seed: int = 0, frames_t: int | None = None) -> dict:
    g = torch.Generator().manual_seed(seed)
    frames_shape = (n, 3, 16, 16) if frames_t is None else (n, frames_t, 3, 16, 16)
    return {"audio": torch.randn(n, 1, 16, 12, generator=g), "frames": torch.rand(*frames_shape, generator=g),
            TARGET: torch.arange(n) % 3, NAME: [f"clip{i}" for i in range(n)]}


def quiet(model):
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    return model


# -- 1. the objective at a constant critic ----------------------------------------------------------------
def test_nce_at_a_constant_critic():
    for c in (-3.0, -math.log(5), 0.0, 1.5):
        pos, neg = torch.full((4,), c), torch.full((4, 5), c)
        valid = torch.ones(4, dtype=torch.bool)
        expected = F.logsigmoid(torch.tensor(c)) + 5 * F.logsigmoid(torch.tensor(-c))
        assert torch.allclose(conditional_nce(pos, [neg], valid, "ratio"), expected)
        assert torch.allclose(conditional_nce(pos, [neg, neg], valid, "ratio"), expected)  # both sides averaged
        one = F.logsigmoid(torch.tensor(c)) + F.logsigmoid(torch.tensor(-c))
        assert torch.allclose(conditional_nce(pos, [neg], valid, "one"), one)
    grid = torch.linspace(-4, 2, 6001)
    values = F.logsigmoid(grid) + 5 * F.logsigmoid(-grid)
    assert abs(float(grid[values.argmax()]) + math.log(5)) < 2e-3
    assert abs(float(values.max()) - (-2.7034)) < 1e-4
    # an anchor without negatives keeps its positive term only
    pos, neg = torch.tensor([0.5, 0.5]), torch.full((2, 5), 0.5)
    value = conditional_nce(pos, [neg], torch.tensor([True, False]), "ratio")
    expected = F.logsigmoid(torch.tensor(0.5)) + 0.5 * 5 * F.logsigmoid(torch.tensor(-0.5))
    assert torch.allclose(value, expected)
    bound, paper = mi_bounds(torch.full((4,), -math.log(5)), torch.tensor(-2.7034), 5)
    assert abs(float(bound) - (math.log(5) + math.log(1 / 6))) < 1e-5 and float(paper) < 0


# -- 2. the sampler -----------------------------------------------------------------------------------------
def test_sampler_keeps_the_condition_and_never_the_anchor():
    cond = torch.tensor([0, 0, 0, 1, 1, 2])
    ids = torch.arange(6)
    pool_cond = torch.cat([cond, torch.tensor([0, 0, 0, 0, 1, 1])])  # batch, then 6 buffer entries
    pool_ids = torch.cat([ids, torch.tensor([0, 10, 11, 12, 3, 13])])  # buffer entry 6 is anchor 0's stale copy
    mask = candidate_mask(cond, pool_cond, ids, pool_ids, "same_class")
    negs = sample_negatives(mask, 5, torch.Generator().manual_seed(0))
    for i in range(6):
        drawn = negs.index[i]
        if negs.valid[i]:
            assert (pool_cond[drawn] == cond[i]).all() and (pool_ids[drawn] != ids[i]).all()
    # anchor 0: candidates 1, 2 (batch) + 10, 11, 12 (buffer) = 5 -> drawn without replacement
    assert int(negs.candidates[0]) == 5 and len(set(negs.index[0].tolist())) == 5
    # anchor 3: candidates 4 (batch) + 13 (buffer; 3's own stale copy excluded) = 2 -> with replacement
    assert int(negs.candidates[3]) == 2 and set(negs.index[3].tolist()) <= {4, 11}
    # anchor 5 (condition 2): no candidate -> no negative term, counted
    assert not negs.valid[5] and int((~negs.valid).sum()) == 1
    again = sample_negatives(mask, 5, torch.Generator().manual_seed(0))
    assert torch.equal(again.index, negs.index)
    other = candidate_mask(cond, pool_cond, ids, pool_ids, "other_class")
    assert not (other & mask).any() and candidate_mask(cond, pool_cond, ids, pool_ids, "any").sum() > mask.sum()


# -- 3. the buffer ------------------------------------------------------------------------------------------
def test_buffer_is_a_detached_fifo_with_labels():
    buffer = MemoryBuffer(5)
    za = torch.randn(3, 4, requires_grad=True)
    buffer.push(za * 2, za, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))
    buffer.push(za * 2, za, torch.tensor([3, 4, 5]), torch.tensor([3, 4, 5]))
    assert len(buffer) == 5
    assert buffer.ids.tolist() == [1, 2, 3, 4, 5] and buffer.labels.tolist() == [1, 2, 3, 4, 5]
    assert not buffer.za.requires_grad and not buffer.zv.requires_grad
    assert torch.equal(buffer.za[-1], (za * 2)[-1].detach())


# -- 4. gradient routing ------------------------------------------------------------------------------------
def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for k, p in module.named_parameters()}


def routed_grads(alpha: float, objective: str = "loss"):
    """(critic grads, net grads) of one step of a fresh model whose buffer was filled by one earlier batch;
    objective: the full training loss, "encoder" (CE - alpha * nce_enc only) or "ce"."""
    torch.manual_seed(0)
    model = quiet(InfoBridgeClassifier(alpha=alpha, critic_hidden=8, cond_dim=4, buffer_size=8, sampler_seed=1,
                                       **TINY))
    model.training_losses(av_batch(seed=1))  # fills the buffer (no optimiser step: weights unchanged)
    terms, _ = model.objective_terms(av_batch())
    loss = {"loss": terms["ce"] - alpha * terms["nce_enc"] - terms["nce_critic"],
            "encoder": terms["ce"] - alpha * terms["nce_enc"], "ce": terms["ce"]}[objective]
    loss.backward()
    return grads(model.critic), grads(model.net)


def test_gradient_routing():
    critic_full, net_full = routed_grads(0.1)
    assert any(float(g.abs().max()) > 0 for g in critic_full.values())
    # without nce_critic the critic gets no gradient at all ...
    critic_enc, net_enc = routed_grads(0.1, "encoder")
    assert all(float(g.abs().max()) == 0 for g in critic_enc.values())
    # ... and nce_critic never reaches the encoders or the head
    assert all(torch.allclose(net_enc[k], net_full[k]) for k in net_full)
    # the encoders do receive the information gradient when alpha > 0
    _, net_ce = routed_grads(0.1, "ce")
    assert any(not torch.allclose(net_full[k], net_ce[k]) for k in net_full if "audio_encoder" in k)
    # alpha = 0: encoders and head get exactly the CE gradient; the critic's gradient does not depend on alpha
    critic_zero, net_zero = routed_grads(0.0)
    assert all(torch.allclose(net_zero[k], net_ce[k], atol=1e-7) for k in net_ce)
    assert all(torch.allclose(critic_zero[k], critic_full[k], atol=1e-6) for k in critic_full)


# -- 5. alpha = 0 equals late fusion -----------------------------------------------------------------------
def test_alpha_zero_trains_like_late_fusion():
    torch.manual_seed(3)
    late = LateFusionClassifier(optimizer="sgd", lr=0.05, **TINY)
    torch.manual_seed(3)
    info = quiet(InfoBridgeClassifier(alpha=0.0, optimizer="sgd", lr=0.05, critic_hidden=8, cond_dim=4, **TINY))
    assert all(torch.equal(a, b) for a, b in zip(late.net.state_dict().values(), info.net.state_dict().values()))
    opt_late = torch.optim.SGD(late.parameters(), lr=0.05, momentum=0.9)
    opt_info = torch.optim.SGD([g["params"] for g in info.parameter_groups()][0] + list(info.critic.parameters()),
                               lr=0.05, momentum=0.9)
    for step in range(3):
        batch = av_batch(seed=step)
        loss_late = F.cross_entropy(late(batch)["fused"], batch[TARGET])
        losses, _ = info.training_losses(batch)
        assert torch.allclose(losses["ce"], loss_late.detach())
        assert torch.allclose(losses["loss"] + losses["nce_critic"], loss_late.detach(), atol=1e-6)
        for opt, loss in ((opt_late, loss_late), (opt_info, losses["loss"])):
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (name, a), b in zip(late.net.state_dict().items(), info.net.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


# -- 6. forward contract ------------------------------------------------------------------------------------
def test_forward_keys_and_frame_folding():
    model = InfoBridgeClassifier(critic_hidden=8, cond_dim=4, **TINY).eval()
    batch = av_batch(n=4, frames_t=3)
    out = model(batch)
    assert set(out) == {"fused", "audio", "frames"} and out["fused"].shape == (4, 3)
    with torch.no_grad():
        per_frame = torch.stack([model.net.encode_visual(batch["frames"][:, t]) for t in range(3)], 1).mean(1)
        assert torch.allclose(model.net.encode_visual(batch["frames"]), per_frame, atol=1e-6)
        fa = model.net.encode_audio(batch["audio"])
        w, b, d = model.net.classifier.weight, model.net.classifier.bias, model.net.feature_dim
        assert torch.allclose(out["frames"], per_frame @ w[:, d:].t() + b / 2, atol=1e-6)
        assert torch.allclose(out["fused"], out["audio"] + out["frames"], atol=1e-5)
        assert torch.allclose(out["audio"], fa @ w[:, :d].t() + b / 2, atol=1e-6)


# -- the condition T ----------------------------------------------------------------------------------------
def test_conditions():
    za, zv, y = torch.randn(40, 6), torch.randn(40, 6), torch.arange(40) % 4
    assert torch.equal(ConditionAssigner("class", 4)(za, zv, y), y)
    assert ConditionAssigner("constant", 4)(za, zv, y).eq(0).all()
    cluster = ConditionAssigner("cluster:2", 4)
    assert cluster.num_conditions == 2 and cluster(za, zv, y).eq(0).all()  # before the first refit
    assert ConditionAssigner("cluster", 4).num_conditions == 5
    # two well-separated groups (opposite directions) must land in different clusters
    za[:20] += 5
    zv[:20] += 5
    za[20:] -= 5
    zv[20:] -= 5
    assert cluster.refit(za, zv, torch.Generator().manual_seed(0))
    assign = cluster(za, zv, y)
    assert len(set(assign[:20].tolist())) == 1 and len(set(assign[20:].tolist())) == 1 and assign[0] != assign[-1]
    retrieval = ConditionAssigner("retrieval:3", 4)
    retrieval.refit(za, zv, torch.Generator().manual_seed(0))
    counts = torch.bincount(retrieval(za, zv, y), minlength=3)
    assert counts.min() >= 12  # tertiles of the fitted similarities (40 samples)
    with pytest.raises(ValueError, match="unknown condition"):
        ConditionAssigner("weather", 4)
