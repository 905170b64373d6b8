"""The Dialect class (a named set of metrics with the conventions of one reference kit) and `Inputs`, what its metric
functions read: one batch as float64 levels with a cache of derived arrays (gray images, histograms, ...), and the
registry `DIALECTS` / `get_dialect`. The dialects themselves are built in _mmif.py, _vifb.py and _tang.py and
registered by dialects.py."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from fusion_bench.errors import MetricsInputError
from fusion_bench.metrics._common import check_inputs, to_levels


class Inputs:
    """Levels (float64, 0..255, Bx{1,3}xHxW) of one batch plus a cache for derived arrays."""

    def __init__(self, a: Tensor, b: Tensor, fused: Tensor, gt: Tensor | None,
                 gray: Callable[[Tensor], Tensor]) -> None:
        self._raw = {"a": a, "b": b, "f": fused, "gt": gt}
        self._gray = gray
        self.cache: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}

    def _levels(self, key: str) -> Tensor | None:
        raw = self._raw[key]
        return None if raw is None else self.get(key, lambda: to_levels(raw))

    @property
    def a(self) -> Tensor:
        """Source a as float64 levels 0..255, Bx{1,3}xHxW (converted on first use)."""
        return self._levels("a")

    @property
    def b(self) -> Tensor:
        return self._levels("b")

    @property
    def f(self) -> Tensor:
        return self._levels("f")

    @property
    def gt(self) -> Tensor | None:
        return self._levels("gt")

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        """The cached value of key, made once (thread-safe: metrics may run on several threads)."""
        if key in self.cache:
            return self.cache[key]
        lock = self._locks.setdefault(key, threading.Lock())  # atomic under the GIL
        with lock:  # derived keys only depend on more basic ones, so the locks cannot deadlock
            if key not in self.cache:
                self.cache[key] = make()
        return self.cache[key]

    @property
    def ga(self) -> Tensor:
        """Gray source a (Bx1xHxW float64 levels, dialect rule)."""
        return self.get("ga", lambda: self._gray(self.a))

    @property
    def gb(self) -> Tensor:
        return self.get("gb", lambda: self._gray(self.b))

    @property
    def gf(self) -> Tensor:
        return self.get("gf", lambda: self._gray(self.f))

    @property
    def ggt(self) -> Tensor:
        if self.gt is None:
            raise MetricsInputError("this metric needs a reference image (gt)")
        return self.get("ggt", lambda: self._gray(self.gt))


MetricFn = Callable[[Inputs], Tensor]


@dataclass(frozen=True)
class MetricSpec:
    """One metric of a dialect."""

    name: str
    fn: MetricFn
    higher_is_better: bool
    description: str = ""
    needs_gt: bool = False
    cost: float = 1.0  # relative CPU cost, to start the slowest metrics first when metrics run in parallel


@dataclass
class Dialect:
    """A named set of metrics with the conventions of one reference kit."""

    name: str
    description: str
    gray: Callable[[Tensor], Tensor]
    specs: dict[str, MetricSpec] = field(default_factory=dict)
    default: tuple[str, ...] = ()

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The dialect's own metrics in report order (reference-based ones excluded)."""
        return self.default

    @property
    def all_metric_names(self) -> tuple[str, ...]:
        """Every metric this dialect can compute (extras and reference-based ones included)."""
        return tuple(self.specs)

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {n: s.higher_is_better for n, s in self.specs.items()}

    @property
    def reference_metric_names(self) -> tuple[str, ...]:
        return tuple(n for n, s in self.specs.items() if s.needs_gt)

    def add(self, name: str, fn: MetricFn, higher_is_better: bool, description: str = "",
            needs_gt: bool = False, default: bool = True, cost: float = 1.0) -> None:
        self.specs[name] = MetricSpec(name, fn, higher_is_better, description, needs_gt, cost)
        if default and not needs_gt:
            self.default = (*self.default, name)

    def set_costs(self, costs: dict[str, float]) -> None:
        """Relative CPU costs of some metrics (measured once on a 460x630 pair; only the order matters)."""
        for name, cost in costs.items():
            self.specs[name] = dataclasses.replace(self.specs[name], cost=cost)

    def resolve(self, metrics: Sequence[str] | str | None, with_gt: bool) -> list[str]:
        """Validate and order the requested metric names."""
        if metrics is None:
            names = list(self.default)
            if with_gt:
                names += [n for n in self.reference_metric_names if n not in names]
            return names
        if isinstance(metrics, str):
            metrics = [m.strip() for m in metrics.split(",") if m.strip()]
        unknown = [m for m in metrics if m not in self.specs]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown} for dialect {self.name!r}; valid: {', '.join(self.specs)}")
        if not with_gt:
            need = [m for m in metrics if self.specs[m].needs_gt]
            if need:
                raise ValueError(f"metric(s) {need} need a reference image: pass gt=")
        return list(dict.fromkeys(metrics))

    @torch.no_grad()
    def compute(self, a: Tensor, b: Tensor, fused: Tensor, metrics: Sequence[str] | None = None,
                gt: Tensor | None = None, workers: int | None = None) -> dict[str, Tensor]:
        """Score a batch. a, b, fused (and gt): Bx{1,3}xHxW floats in [0, 1], same B and HxW.

        Returns {metric: float64 tensor of shape (B,)} on the inputs' device.

        workers (CPU only): with N >= 2 the metrics run concurrently on N Python threads, each metric with one
        intra-op torch thread (the heavy kernels release the GIL); default ``torch.get_num_threads()``. This
        uses the cores better than intra-op threading for images of this size and does not busy-wait on a
        loaded machine; the numbers are the same for every N >= 2 and for a caller running torch on one thread
        (every metric runs single-threaded). With one worker (or one metric) the metrics run in order with the
        caller's torch threads.
        """
        names = self.resolve(metrics, gt is not None)
        check_inputs(a, b, fused, gt)
        inp = Inputs(a, b, fused, gt, self.gray)
        n_workers = torch.get_num_threads() if workers is None else workers
        if not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        n_workers = min(n_workers, len(names))
        if fused.device.type != "cpu" or n_workers < 2:
            return {n: self.specs[n].fn(inp).to(torch.float64).reshape(-1) for n in names}
        saved = torch.get_num_threads()
        pool = ThreadPoolExecutor(n_workers, thread_name_prefix="metric")
        try:
            order = sorted(names, key=lambda n: -self.specs[n].cost)  # longest first
            futures = {n: pool.submit(_run_single_threaded, self.specs[n].fn, inp) for n in order}
            return {n: futures[n].result().to(torch.float64).reshape(-1) for n in names}
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on an error, do not wait for the queued metrics
            torch.set_num_threads(saved)  # the workers set torch's global count to 1

    def __repr__(self) -> str:
        return f"Dialect({self.name!r}, metrics={self.metric_names})"

    def __reduce__(self) -> tuple:
        """Pickle by name (the registered dialects hold lambdas); unpickling looks the dialect up again."""
        return (get_dialect, (self.name,))

    def __deepcopy__(self, memo: dict) -> Dialect:
        return self


def _run_single_threaded(fn: MetricFn, inp: Inputs) -> Tensor:
    """Run one metric on a worker thread with one intra-op thread (a new thread reads torch's global setting,
    set here explicitly so that an earlier value in this thread cannot leak in)."""
    torch.set_num_threads(1)
    return fn(inp)


DIALECTS: dict[str, Dialect] = {}
"""The registered dialects by name, in report order (filled by fusion_bench.metrics.dialects, which the package
imports first)."""


def get_dialect(name: str) -> Dialect:
    """Look up a dialect by name (ValueError listing the valid ones otherwise)."""
    if isinstance(name, Dialect):
        return name
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown metric dialect {name!r}; valid: {', '.join(DIALECTS)}") from None
