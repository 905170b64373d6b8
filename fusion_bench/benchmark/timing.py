"""Where a seed's time goes: seconds per phase (fit, fuse, score, seg, det, ...) written to `<run_dir>/timings.json`
and shown as a table after `bench`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any


class PhaseTimer:
    """Seconds per phase of a seed (`with timer("fit"):`), in the order first seen."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.start = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add({phase: time.perf_counter() - start})

    def add(self, seconds: dict[str, float]) -> None:
        for phase, value in seconds.items():
            self.seconds[phase] = self.seconds.get(phase, 0.0) + value

    def summary(self) -> dict[str, float]:
        """The phases, `other` (set-up, GFLOPs, writing) and `total` (wall seconds of the seed)."""
        total = time.perf_counter() - self.start
        return {**self.seconds, "other": max(0.0, total - sum(self.seconds.values())), "total": total}


def format_timings(timings: Sequence[dict[str, Any]]) -> str:
    """A table of seconds per phase (fit, fuse, score, seg, det, ...) per method and seed, with a total line."""
    if not timings:
        return ""
    order = ["fit", "evaluate", "fuse", "score", "native_seg", "fuse_train", "fuse_val", "seg", "det", "gflops"]
    phases = [p for p in order if any(p in t["seconds"] for t in timings)]
    phases += [p for t in timings for p in t["seconds"] if p not in phases and p not in ("other", "total")]
    phases = list(dict.fromkeys(phases)) + ["other", "total"]
    labels = [f"{t['method']} {t['dataset']} seed{t['seed']}" for t in timings]
    width = max(len(x) for x in labels + ["all"])
    lines = ["seconds".ljust(width) + "".join(f"{p:>11}" for p in phases)]
    for label, t in zip(labels, timings):
        lines.append(label.ljust(width) + "".join(
            f"{t['seconds'][p]:>11.1f}" if p in t["seconds"] else f"{'-':>11}" for p in phases))
    lines.append("all".ljust(width) + "".join(f"{sum(t['seconds'].get(p, 0.0) for t in timings):>11.1f}"
                                               for p in phases))
    return "\n".join(lines)
