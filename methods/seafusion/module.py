"""LightningModules for SeAFusion.

- `SeAFusion` (`seafusion`): the published, semantic-aware training of the authors' train.py in one Lightning fit:
  rounds of (a freshly initialised fusion network trained on content + round x semantic loss through the frozen
  segmentation network, then the segmentation network trained on the fused images), by manual optimisation.
- `SeAFusionContent` (`seafusion_content`): the fusion network trained with the content loss only (the authors'
  round 0); not the published method.

Both fuse the luminance and give the fused Y the visible CbCr back.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import torch
from torch import nn

from fusion_bench.base import LuminanceFusionMethod
from fusion_bench.base.colour import fuse_on_luminance, split_luminance
from fusion_bench.methods.seafusion.loss import SeAFusionContentLoss, SemanticLoss
from fusion_bench.methods.seafusion.model import SeAFusionNet, SemanticSegmenter
from fusion_bench.methods.seafusion.schedule import FUSION, Phase, RoundSchedule
from fusion_bench.methods.seafusion.transforms import AUTHORS_SCALES, as_saved_images, augment_for_segmentation
from fusion_bench.types import MASK, Task
from fusion_bench.weights.pretrained import is_zoo_ref, resolve_pretrained
from fusion_bench.weights.zoo import ResolvedWeights, WeightsError

log = logging.getLogger(__name__)

SEG_INPUTS = ("saved", "clamped")
# loss terms logged at every training step (NaN outside their phase); the phase keys are train/round, train/phase
# (0 fusion, 1 segmentation), train/semantic_weight and train/lr
LOGGED_TERMS = tuple(f"train/{k}" for k in ("loss", "loss_content", "loss_int", "loss_grad", "loss_semantic",
                                             "loss_sem_main", "loss_sem_aux", "seg_loss", "seg_loss_main",
                                             "seg_loss_aux"))


class SeAFusionContent(LuminanceFusionMethod):
    """SeAFusion's network with the content loss only (`seafusion_content`; the authors' round 0, no semantic loss).

    x1 (`ir`) feeds the infrared encoder and x2 (`vis`) the visible one; the network sees luminance only and the
    fused Y gets the visible CbCr back. Adam with the authors' per-epoch decay lr * lr_decay**epoch.
    """

    tasks: ClassVar[frozenset[Task]] = frozenset({Task.IVIF})

    def __init__(self, channels: tuple[int, ...] | list[int] = (16, 32, 48), w_int: float = 1.0, w_grad: float = 10.0,
                 lr_decay: float = 0.75, lr: float = 1e-3, **kwargs: Any):
        super().__init__(lr=lr, **kwargs)
        if not 0 < lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay}")
        self.save_hyperparameters()
        self.channels = tuple(int(c) for c in channels)
        self.net = SeAFusionNet(in_channels=1, out_channels=1, channels=self.channels)
        self.criterion = SeAFusionContentLoss(w_int=w_int, w_grad=w_grad)
        self.lr_decay = lr_decay

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        decay = self.lr_decay
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: decay ** epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def poly_warmup_lr(it: int, lr0: float, max_iter: int, warmup_steps: int, warmup_start_lr: float,
                   power: float) -> float:
    """The authors' segmentation optimiser (optimizer.py): exponential warm-up from `warmup_start_lr` to `lr0` over
    `warmup_steps` iterations (it <= warmup_steps), then poly decay lr0 * (1 - (it - warmup) / (max_iter - warmup))
    ** power."""
    if warmup_steps > 0 and it <= warmup_steps:
        return warmup_start_lr * (lr0 / warmup_start_lr) ** (it / warmup_steps)
    return lr0 * max(0.0, 1 - (it - warmup_steps) / max(1, max_iter - warmup_steps)) ** power


class SeAFusion(SeAFusionContent):
    """SeAFusion (`seafusion`): the published semantic-aware training (the authors' train.py), one Lightning fit.

    Schedule (`fusion_bench.methods.seafusion.schedule.RoundSchedule`): for round r = 0 .. rounds - 1, a fusion phase
    (`fusion_epochs` epochs of the training loader, or `fusion_steps` steps) that re-initialises the fusion network
    and Adam and minimises content + r * (OHEM CE(main) + aux_weight_fusion * OHEM CE(aux)) of the frozen segmenter
    (eval mode) on the clamped fused RGB image; then a segmentation phase of `seg_steps` SGD steps training the
    segmenter on the fused images (`seg_input`: "saved" = as the authors' PNGs, min-max + 8 bits) and the labels,
    with OHEM CE(main) + aux_weight_seg * OHEM CE(aux). The segmenter (SegFormer + auxiliary head, a stand-in for
    the authors' BiSeNet) is built when fitting starts, kept across rounds, and dropped when fitting ends (unless
    `keep_segmenter`), so saved weights, parameter count and GFLOPs are the fusion network's.

    Needs segmentation labels (`needs_class_labels`: the runner passes `num_classes` and refuses a dataset without
    class labels). The schedule ends training itself; the trainer's max_steps / max_epochs must not cut it short.
    """

    needs_class_labels: ClassVar[bool] = True

    def __init__(self, num_classes: int = 9, channels: tuple[int, ...] | list[int] = (16, 32, 48),
                 w_int: float = 1.0, w_grad: float = 10.0, lr_decay: float = 0.75, lr: float = 1e-3,
                 rounds: int = 4, fusion_epochs: int | None = None, fusion_steps: int | None = None,
                 seg_steps: int = 20000, seg_after_last_round: bool = False, aux_weight_fusion: float = 0.1,
                 aux_weight_seg: float = 0.75, ohem_thresh: float = 0.7, ohem_min_kept_fraction: float = 1 / 16,
                 segformer: dict[str, Any] | None = None, aux_stage: int = 2, aux_channels: int = 64,
                 seg_normalize: bool = False, seg_input: str = "saved", seg_augment: bool = True,
                 seg_jitter: float = 0.5, seg_scales: tuple[float, ...] | list[float] = AUTHORS_SCALES,
                 seg_lr: float = 1e-2, seg_momentum: float = 0.9, seg_weight_decay: float = 5e-4,
                 seg_head_lr_mult: float = 10.0, seg_warmup_steps: int = 1000, seg_warmup_start_lr: float = 1e-5,
                 seg_power: float = 0.9, keep_segmenter: bool = False, **kwargs: Any):
        super().__init__(channels=channels, w_int=w_int, w_grad=w_grad, lr_decay=lr_decay, lr=lr, **kwargs)
        self.save_hyperparameters()
        self.automatic_optimization = False  # two optimisers, one active per phase
        if (fusion_epochs is None) == (fusion_steps is None):
            raise ValueError("give exactly one of fusion_epochs (the authors: 10 per round) and fusion_steps, got "
                             f"fusion_epochs={fusion_epochs!r}, fusion_steps={fusion_steps!r}")
        if fusion_epochs is not None and (isinstance(fusion_epochs, bool) or int(fusion_epochs) < 1):
            raise ValueError(f"fusion_epochs must be an integer >= 1, got {fusion_epochs!r}")
        RoundSchedule(rounds, fusion_steps or 1, seg_steps, seg_after_last_round)  # validate the counts now
        if seg_input not in SEG_INPUTS:
            raise ValueError(f"seg_input must be one of {', '.join(SEG_INPUTS)}, got {seg_input!r}")
        if seg_lr <= 0 or seg_warmup_start_lr <= 0 or seg_head_lr_mult <= 0 or seg_warmup_steps < 0:
            raise ValueError("seg_lr, seg_warmup_start_lr and seg_head_lr_mult must be > 0 and seg_warmup_steps >= 0")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        from fusion_bench.methods.ssvif.model import segformer_config

        segformer_config(segformer)  # fail on a bad SegFormer config now, not when training starts
        self.segmenter_weights = self._resolve_segmenter_weights((segformer or {}).get("pretrained"))
        self.num_classes = num_classes
        self.rounds, self.fusion_epochs, self.fusion_steps = rounds, fusion_epochs, fusion_steps
        self.seg_steps, self.seg_after_last_round = seg_steps, seg_after_last_round
        self.fusion_semantic = SemanticLoss(aux_weight_fusion, ohem_thresh, ohem_min_kept_fraction)
        self.seg_criterion = SemanticLoss(aux_weight_seg, ohem_thresh, ohem_min_kept_fraction)
        self.segformer_arch = dict(segformer or {})
        self.aux_stage, self.aux_channels, self.seg_normalize = aux_stage, aux_channels, seg_normalize
        self.seg_input, self.seg_augment = seg_input, seg_augment
        self.seg_jitter, self.seg_scales = seg_jitter, tuple(float(s) for s in seg_scales)
        self.seg_lr, self.seg_momentum, self.seg_weight_decay = seg_lr, seg_momentum, seg_weight_decay
        self.seg_head_lr_mult, self.seg_power = seg_head_lr_mult, seg_power
        self.seg_warmup_steps, self.seg_warmup_start_lr = seg_warmup_steps, seg_warmup_start_lr
        self.keep_segmenter = keep_segmenter
        self.segmenter: SemanticSegmenter | None = None
        self.fusion_optimizer: torch.optim.Optimizer | None = None
        self.seg_optimizer: torch.optim.Optimizer | None = None
        self.schedule: RoundSchedule | None = None
        self.epoch_steps: float = math.inf  # training batches per loader epoch (the fusion lr decays per epoch)
        self.step_index = 0  # schedule steps done
        self.phase: Phase | None = None
        self.seg_iter = 0  # segmenter iterations done over all rounds (the authors' `it`)

    @staticmethod
    def _resolve_segmenter_weights(pretrained: str | None) -> ResolvedWeights | None:
        """The segmenter's ImageNet initialisation (`zoo:mit_b0` in the paper preset), resolved now: a reference that
        cannot be served fails before any work (WeightsError naming the file and the from-scratch override), not when
        the segmenter is built at the start of fitting."""
        if not is_zoo_ref(pretrained):
            return None
        try:
            return resolve_pretrained(pretrained)
        except WeightsError as err:
            raise WeightsError(f"segformer.pretrained {pretrained}: {str(err).removeprefix(f'{pretrained}: ')}; put "
                               "the file there, pass --set "
                               "model.segformer.pretrained=PATH, or run the from-scratch ablation with --set "
                               "model.segformer.pretrained=null") from err

    # ------------------------------------------------------------------ networks and optimisers
    def build_segmenter(self) -> SemanticSegmenter:
        """Create the segmenter (from the current torch RNG, or local `segformer.pretrained` weights)."""
        if self.segmenter is None:
            device = next(self.net.parameters()).device
            self.segmenter = SemanticSegmenter(self.num_classes, self.segformer_arch, self.aux_stage,
                                               self.aux_channels, self.seg_normalize).to(device)
        return self.segmenter

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.build_segmenter()

    def on_fit_end(self) -> None:
        if not self.keep_segmenter:
            self.segmenter = None
            self.seg_optimizer = None

    def reset_fusion_network(self) -> None:
        """Re-initialise the fusion network in place (a new `SeAFusionNet` from the torch RNG, as the authors build
        a new FusionNet every round) and forget Adam's moments (they build a new Adam)."""
        fresh = SeAFusionNet(in_channels=1, out_channels=1, channels=self.channels)
        self.net.load_state_dict(fresh.state_dict())
        if self.fusion_optimizer is not None:
            self.fusion_optimizer.state.clear()

    def segmenter_param_groups(self) -> list[dict[str, Any]]:
        """The authors' groups: conv/linear weights with weight decay, all other parameters (biases, norms)
        without; the output heads (decode head, auxiliary head) at `seg_head_lr_mult` x the learning rate."""
        segmenter = self.build_segmenter()
        heads = {id(p) for m in segmenter.head_modules() for p in m.parameters()}
        decayed = {id(m.weight) for m in segmenter.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {(h, d): [] for h in (False, True) for d in (True, False)}
        for p in segmenter.parameters():
            groups[(id(p) in heads, id(p) in decayed)].append(p)
        return [{"params": params, "lr_mult": self.seg_head_lr_mult if head else 1.0,
                 **({} if decay else {"weight_decay": 0.0})}
                for (head, decay), params in groups.items() if params]

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        self.fusion_optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.seg_optimizer = torch.optim.SGD(self.segmenter_param_groups(), lr=self.seg_lr,
                                             momentum=self.seg_momentum, weight_decay=self.seg_weight_decay)
        return [self.fusion_optimizer, self.seg_optimizer]

    # ------------------------------------------------------------------ schedule
    def make_schedule(self, epoch_steps: float) -> RoundSchedule:
        """The round schedule for a loader of `epoch_steps` batches per epoch (used by `fusion_epochs`)."""
        if self.fusion_epochs is not None:
            if not math.isfinite(epoch_steps):
                raise ValueError("fusion_epochs needs a training loader of known length; set fusion_steps instead")
            fusion_steps = int(self.fusion_epochs * epoch_steps)
        else:
            fusion_steps = int(self.fusion_steps)
        return RoundSchedule(self.rounds, fusion_steps, self.seg_steps, self.seg_after_last_round)

    def start_schedule(self, epoch_steps: float) -> RoundSchedule:
        self.epoch_steps = epoch_steps
        self.schedule = self.make_schedule(epoch_steps)
        self.step_index, self.seg_iter, self.phase = 0, 0, None
        return self.schedule

    def on_train_start(self) -> None:
        trainer = self.trainer
        schedule = self.start_schedule(float(trainer.num_training_batches))
        total = schedule.total_steps
        limits = []
        if trainer.max_steps not in (None, -1) and trainer.max_steps < total:
            limits.append(f"max_steps={trainer.max_steps}")
        if trainer.max_epochs not in (None, -1) and trainer.max_epochs * trainer.num_training_batches < total:
            limits.append(f"max_epochs={trainer.max_epochs} ({trainer.num_training_batches} batches each)")
        if limits:
            raise ValueError(f"seafusion: the round schedule needs {total} training steps ({schedule.rounds} rounds, "
                             f"fusion phases of {schedule.fusion_steps} steps, segmentation phases of "
                             f"{schedule.seg_steps}) but the trainer stops at {' and '.join(limits)}; leave "
                             "train.max_steps / train.max_epochs unset or -1 (the schedule ends training itself)")
        log.info("SeAFusion schedule: %d steps, phases %s", total,
                 [(p.round, p.kind, p.steps) for p in schedule.phases])

    def start_phase(self, phase: Phase) -> None:
        """Enter `phase`: a fusion phase of round >= 1 re-initialises the fusion network and Adam; a segmentation
        phase starts SGD afresh (the authors build a new optimiser per phase; the poly schedule continues)."""
        if phase.kind == FUSION:
            if phase.round > 0:
                self.reset_fusion_network()
        elif self.seg_optimizer is not None:
            self.seg_optimizer.state.clear()
        self.phase = phase
        self.apply_phase_modes(phase)
        log.info("SeAFusion: round %d, %s phase (%d steps)", phase.round, phase.kind, phase.steps)

    def apply_phase_modes(self, phase: Phase) -> None:
        """Fusion phase: segmenter frozen (eval mode, no gradients). Segmentation phase: the reverse."""
        fusion = phase.kind == FUSION
        segmenter = self.build_segmenter()
        self.net.train(fusion).requires_grad_(fusion)
        segmenter.train(not fusion).requires_grad_(not fusion)

    # ------------------------------------------------------------------ steps
    def _labels(self, batch: dict[str, Any]) -> torch.Tensor:
        if MASK not in batch:
            raise KeyError(f"SeAFusion trains on segmentation labels: the batch has no {MASK!r} key (keys: "
                           f"{sorted(batch)}); use a dataset with segmentation masks (e.g. msrs, fmb, mfnet, "
                           "pst900, synthetic-ivif)")
        return batch[MASK]

    def fusion_losses(self, batch: dict[str, Any], weight: float) -> dict[str, torch.Tensor]:
        """content + weight * semantic (the semantic term only when weight > 0, as the authors' round 0)."""
        x1, x2 = self.inputs(batch)
        y1, _ = split_luminance(x1)
        y2, _ = split_luminance(x2)
        fused_y = self.net(y1, y2)
        content = self.criterion(fused_y, y1, y2)
        losses = {"loss_content": content["loss"], "loss_int": content["loss_int"],
                  "loss_grad": content["loss_grad"]}
        total = content["loss"]
        if weight > 0:
            assert self.segmenter is not None
            fused = fuse_on_luminance(x1, x2, lambda a, b: fused_y)  # the visible chroma back, RGB clamped to [0, 1]
            main, aux = self.segmenter(fused)
            semantic = self.fusion_semantic(main, aux, self._labels(batch))
            losses.update(loss_semantic=semantic["loss"], loss_sem_main=semantic["loss_main"],
                          loss_sem_aux=semantic["loss_aux"])
            total = total + weight * semantic["loss"]
        return {"loss": total, **losses}

    def segmentation_inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused images (no gradient) and labels the segmenter trains on, as `seg_input` / `seg_augment` say."""
        labels = self._labels(batch)
        with torch.no_grad():
            fused = self.fuse(*self.inputs(batch))
            if self.seg_input == "saved":
                fused = as_saved_images(fused)
            if self.seg_augment:
                fused, labels = augment_for_segmentation(fused, labels, self.seg_jitter, self.seg_scales)
        return fused, labels

    def segmentation_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        fused, labels = self.segmentation_inputs(batch)
        main, aux = self.build_segmenter()(fused)
        return self.seg_criterion(main, aux, labels)

    def fusion_lr(self, step_in_phase: int) -> float:
        """The authors' per-epoch decay, restarted every round: lr * lr_decay ** (epoch within the phase)."""
        epoch = step_in_phase // self.epoch_steps if math.isfinite(self.epoch_steps) else 0
        return self.lr * self.lr_decay ** int(epoch)

    def seg_lr_at(self, it: int) -> float:
        assert self.schedule is not None
        return poly_warmup_lr(it, self.seg_lr, self.schedule.seg_max_iter, self.seg_warmup_steps,
                              self.seg_warmup_start_lr, self.seg_power)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if self.schedule is None:
            raise RuntimeError("SeAFusion trains through a Lightning Trainer (on_train_start builds the schedule)")
        if self.step_index >= self.schedule.total_steps:
            self.trainer.should_stop = True
            return None
        phase = self.schedule.phase_at(self.step_index)
        if phase != self.phase:
            self.start_phase(phase)
        self.apply_phase_modes(phase)  # Lightning puts the whole module in train mode after validation
        fusion_opt, seg_opt = self.optimizers()
        step_in_phase = self.step_index - phase.start
        batch_size = self.inputs(batch)[0].shape[0]
        if phase.kind == FUSION:
            losses = self.fusion_losses(batch, phase.semantic_weight)
            lr = self.fusion_lr(step_in_phase)
            optimizer, logged = fusion_opt, {f"train/{k}": v.detach() for k, v in losses.items()}
        else:
            losses = self.segmentation_losses(batch)
            lr = self.seg_lr_at(self.seg_iter)
            self.seg_iter += 1
            optimizer, logged = seg_opt, {f"train/seg_{k}": v.detach() for k, v in losses.items()}
        for group in optimizer.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        optimizer.zero_grad()
        self.manual_backward(losses["loss"])
        optimizer.step()
        self.step_index += 1
        if self.step_index >= self.schedule.total_steps:
            self.trainer.should_stop = True
        # every key at every step, NaN where the phase does not compute it (Lightning would repeat stale values)
        logged = {key: logged.get(key, math.nan) for key in LOGGED_TERMS}
        logged.update({"train/round": float(phase.round), "train/phase": float(phase.kind != FUSION),
                       "train/semantic_weight": phase.semantic_weight, "train/lr": lr})
        self.log_dict(logged, prog_bar=False, batch_size=batch_size)
        return losses["loss"].detach()
