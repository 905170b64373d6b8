"""SeAFusion's round schedule (the authors' train.py main loop) as a pure step -> phase map.

The authors' loop is `for i in range(4): train_fusion(i); run_fusion('train'); train_seg(i)`: round i trains a
freshly initialised fusion network with `content + i * semantic` through the segmentation network of the previous
rounds (round 0: content only), then fine-tunes the segmentation network on the fused training images. Here every
phase is a run of consecutive training steps of one Lightning fit; `RoundSchedule.phase_at(step)` says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FUSION, SEGMENTATION = "fusion", "segmentation"
PhaseKind = Literal["fusion", "segmentation"]


@dataclass(frozen=True)
class Phase:
    """One phase: `kind` of round `round` (0-based), starting at global step `start`, `steps` long."""

    round: int
    kind: PhaseKind
    start: int
    steps: int

    @property
    def end(self) -> int:
        return self.start + self.steps

    @property
    def semantic_weight(self) -> float:
        """Weight of the semantic loss in a fusion phase: the round index (the authors' `num`); 0 otherwise."""
        return float(self.round) if self.kind == FUSION else 0.0


@dataclass(frozen=True)
class RoundSchedule:
    """`rounds` x (fusion phase of `fusion_steps`, segmentation phase of `seg_steps`).

    The segmentation phase after the last fusion phase changes nothing the fusion network produces; the authors
    run it (their loop always ends with `train_seg`), here it runs only with `seg_after_last_round`.
    """

    rounds: int
    fusion_steps: int
    seg_steps: int
    seg_after_last_round: bool = False

    def __post_init__(self) -> None:
        for name in ("rounds", "fusion_steps"):
            if isinstance(getattr(self, name), bool) or int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if isinstance(self.seg_steps, bool) or int(self.seg_steps) < 0:
            raise ValueError(f"seg_steps must be an integer >= 0, got {self.seg_steps!r}")
        if self.rounds > 1 and self.seg_steps == 0:
            raise ValueError("seg_steps must be >= 1 when rounds > 1: rounds after the first need a trained "
                             "segmentation network")

    @property
    def phases(self) -> tuple[Phase, ...]:
        phases, start = [], 0
        for r in range(self.rounds):
            phases.append(Phase(r, FUSION, start, self.fusion_steps))
            start += self.fusion_steps
            if self.seg_steps and (r < self.rounds - 1 or self.seg_after_last_round):
                phases.append(Phase(r, SEGMENTATION, start, self.seg_steps))
                start += self.seg_steps
        return tuple(phases)

    @property
    def total_steps(self) -> int:
        return self.phases[-1].end

    def phase_at(self, step: int) -> Phase:
        """The phase global step `step` (0-based) belongs to; IndexError past the end."""
        if step < 0:
            raise IndexError(f"step must be >= 0, got {step}")
        for phase in self.phases:
            if step < phase.end:
                return phase
        raise IndexError(f"step {step} is past the end of the schedule ({self.total_steps} steps)")

    @property
    def seg_max_iter(self) -> int:
        """Length of the segmenter's poly schedule: all rounds' segmentation steps (authors: 4 x 20000 = 80000,
        the last round's included even when that phase is skipped, so the earlier phases keep their rates)."""
        return self.rounds * self.seg_steps
