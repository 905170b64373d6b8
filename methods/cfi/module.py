"""LightningModule for CFI (intervention-stable fusion): fuses luminance, restores the visible CbCr."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from fusion_bench.base import FusionMethod
from fusion_bench.base.colour import fuse_on_luminance, split_luminance
from fusion_bench.data.transforms import batch_dihedral
from fusion_bench.interventions import MaskConfig, complementary_masking, modality_dropout, same_masking
from fusion_bench.methods.cfi.loss import CFILoss, fusion_loss
from fusion_bench.methods.cfi.model import CFINet, mean_gate
from fusion_bench.types import Task


class CFIFusion(FusionMethod):
    """Intervention-stable fusion with Causal Feature Integrators (`cfi`).

    x1 feeds the infrared encoder and x2 the visible one (the datamodule order `(ir, vis)`). One training step
    runs five forwards: base, complementary masking, same masking, and modality dropout of each modality.
    """

    tasks: ClassVar[frozenset[Task]] = frozenset({Task.IVIF, Task.MEDICAL})

    def __init__(self, dim: int = 32, levels: int = 3, tokens: int = 8, w_fus: float = 1.0, w_inv: float = 0.1,
                 w_nec: float = 0.05, necessity: str = "code", nec_margin: float = 0.1, eta: float = 0.3,
                 w_entropy: float = 1.0, hole_size: tuple[int, int] | list[int] = (16, 16),
                 num_holes: tuple[int, int] | list[int] = (1, 6), p_rect: float = 0.7, augment: bool = True,
                 intervention_seed: int | None = None, lr: float = 1e-4, **kwargs: Any):
        super().__init__(lr=lr, **kwargs)
        self.save_hyperparameters()
        self.net = CFINet(dim=dim, levels=levels, tokens=tokens)
        self.criterion = CFILoss(w_fus=w_fus, w_inv=w_inv, w_nec=w_nec, necessity=necessity, nec_margin=nec_margin,
                                 eta=eta, w_entropy=w_entropy)
        self.mask_config = MaskConfig(hole_size=tuple(hole_size), num_holes=tuple(num_holes), p_rect=p_rect)
        self.augment = augment
        self.intervention_seed = intervention_seed
        self._generator: torch.Generator | None = None

    @property
    def generator(self) -> torch.Generator:
        """CPU generator for interventions and augmentation; seeded from `intervention_seed`, else from the
        global seed (Lightning's seed_everything), on first use."""
        if self._generator is None:
            seed = self.intervention_seed if self.intervention_seed is not None else torch.initial_seed()
            self._generator = torch.Generator().manual_seed(int(seed))
        return self._generator

    def fuse(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return fuse_on_luminance(x1, x2, lambda y1, y2: self.net(y1, y2)[0])

    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The five forwards of one training step and the loss terms (`loss` is the total)."""
        x1, x2 = self.inputs(batch)
        y1, _ = split_luminance(x1)
        y2, _ = split_luminance(x2)
        gen = self.generator
        if self.augment:
            y1, y2 = batch_dihedral(y1, y2, gen)  # with the datamodule's hflip: the authors' flips/rot90
        fused, _ = self.net(y1, y2)
        size = fused.shape[-2:]
        c1, c2, _, _ = complementary_masking(y1, y2, gen, self.mask_config)
        y_comp, g_comp = self.net(c1, c2)
        s1, s2, _ = same_masking(y1, y2, gen, self.mask_config)
        y_same, g_same = self.net(s1, s2)
        y_drop1 = self.net(*modality_dropout(y1, y2, drop_first=True)[:2])[0]
        y_drop2 = self.net(*modality_dropout(y1, y2, drop_first=False)[:2])[0]
        return self.criterion(fused, y1, y2, [y_comp, y_same], [mean_gate(g_comp, size), mean_gate(g_same, size)],
                              y_drop1, y_drop2)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.log_losses(self.compute_losses(batch), "train", batch)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Fusion loss of the plain forward (interventions are a training device only)."""
        x1, x2 = self.inputs(batch)
        y1, _ = split_luminance(x1)
        y2, _ = split_luminance(x2)
        losses = fusion_loss(self.net(y1, y2)[0], y1, y2)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=y1.shape[0])
        return losses["loss_fus"]
