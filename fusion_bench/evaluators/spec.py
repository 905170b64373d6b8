"""One description per downstream evaluator, so the runner and the CLI never branch on an evaluator's name.

An implementation module (e.g. :mod:`fusion_bench.evaluators.segmentation`) provides three functions:

- ``preset_config(preset, **overrides)``: its config dataclass for the ``smoke`` / ``paper`` preset;
- ``validates(config)``: whether it validates during training (then a dataset's val split is fused for it);
- ``start(config, fused, datasets, *, seed, device, log_dir, progress, pinned, threads)``: begin the evaluation
  and return a :class:`Pending` whose ``result()`` gives the evaluator's result dict. An evaluator that trains in a
  child process (``child_process=True``) starts it here and returns at once, so an in-process evaluator can run
  meanwhile. ``pinned``: keep the process's pinned numerics (fusion_bench.numerics); False runs the libraries' own
  kernels (a pinned process's in-process evaluator inside ``numerics.native_kernels()``, a child process with
  ``numerics.native_environment(threads)``). ``threads``: intra-op threads of a child process.

``fused`` maps split -> folder of ``<sample name>.png``; ``datasets`` maps split -> a dataset (or a label view with
the dataset's ``samples``, class lists and labels) for the same samples.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class Pending(Protocol):
    """An evaluation under way: `result()` waits for it and returns the evaluator's result dict."""

    seconds: float  # wall seconds from start to the end of `result()` (NaN before)

    def result(self) -> dict[str, Any]: ...


class Deferred:
    """A Pending for an in-process evaluator: the work runs when `result()` is called."""

    def __init__(self, work: Callable[[], dict[str, Any]]):
        self._work = work
        self._result: dict[str, Any] | None = None
        self.seconds = math.nan

    def result(self) -> dict[str, Any]:
        if self._result is None:
            start = time.perf_counter()
            self._result = self._work()
            self.seconds = time.perf_counter() - start
        return self._result


@dataclass(frozen=True)
class EvaluatorSpec:
    """A downstream evaluator: what it needs, what it writes into a result row, and how to run it."""

    name: str
    description: str
    module: str  # the implementation module, imported when the evaluator is used
    row_columns: tuple[str, ...]  # result keys copied into the result row
    per_class: tuple[tuple[str, str], ...]  # (metric, result key holding {class: value}) for downstream_per_class
    label_attribute: str  # the dataset attribute that must be set for the evaluator to apply
    labels: str  # what that attribute means, for error messages ("segmentation masks")
    label_keys: tuple[str, ...]  # the sample keys the evaluator reads
    child_process: bool = False  # trains in a child process (can overlap with an in-process evaluator)

    def _impl(self) -> Any:
        return importlib.import_module(self.module)

    def preset_config(self, preset: str, **overrides: Any) -> Any:
        return self._impl().preset_config(preset, **overrides)

    def validates(self, config: Any) -> bool:
        return bool(self._impl().validates(config))

    def not_applicable(self, dataset: Any) -> str | None:
        """None when the evaluator can run on `dataset`, else why not."""
        if getattr(dataset, self.label_attribute, None) is None:
            return f"dataset {dataset.name!r} has no {self.labels}"
        return None

    def start(self, config: Any, fused: dict[str, Path], datasets: dict[str, Any], *, seed: int, device: Any,
              log_dir: Path, progress: bool, pinned: bool = True, threads: int | None = None) -> Pending:
        return self._impl().start(config, fused, datasets, seed=seed, device=device, log_dir=log_dir,
                                  progress=progress, pinned=pinned, threads=threads)

    def row(self, result: dict[str, Any]) -> dict[str, float]:
        return {col: float(result[col]) for col in self.row_columns}

    def per_class_records(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"evaluator": self.name, "class": c, "metric": metric, "value": v}
                for metric, key in self.per_class for c, v in result[key].items()]
