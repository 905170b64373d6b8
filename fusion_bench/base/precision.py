"""The floating-point type a model computes in, and running code in it.

A method trained with ``train.precision: 64-true`` holds float64 weights (Lightning converts the module before the
fit and runs every step with float64 as torch's default dtype). Everything that calls the model outside the fit
(fusing a split, classifying, the methods' own segmentation heads, counting GFLOPs) must feed it inputs of the same
type and create its intermediate tensors in it: :func:`model_dtype` tells the type, :func:`computing_in` sets
torch's default dtype for a block, and :func:`cast_floating` casts the floating-point tensors of a batch.
Non-floating tensors (labels, masks, boxes) are never cast.

``64-true`` is what makes trained numbers independent of the CPU's kernels (the regression suite trains in it):
summation-order differences between MKL/ATen code paths start near 1e-16 in float64 and stay far below what a
changed setting moves, while in float32 they start near 1e-7 and training amplifies them to 1e-3 and more.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

DOUBLE_PRECISIONS = ("64-true", "64", 64)  # Lightning's names of full float64 training


def is_double(precision: Any) -> bool:
    """Whether a `train.precision` value means float64 weights and computation."""
    return type(precision) in (str, int) and precision in DOUBLE_PRECISIONS


def model_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype of a module's first floating-point parameter (or buffer); float32 for a module without any."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


@contextmanager
def computing_in(dtype: torch.dtype) -> Iterator[None]:
    """Within the block, torch's default dtype is `dtype` when it is float64 (tensors a method creates, e.g. a
    kernel or a zeros buffer, then match float64 weights); any other dtype leaves the default as it is."""
    if dtype != torch.float64:
        yield
        return
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def cast_floating(batch: Any, dtype: torch.dtype) -> Any:
    """`batch` (a tensor, or a dict/list/tuple of them) with every floating-point tensor cast to `dtype`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(dtype) if batch.is_floating_point() and batch.dtype != dtype else batch
    if isinstance(batch, dict):
        return {key: cast_floating(value, dtype) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(cast_floating(value, dtype) for value in batch)
    return batch


def upcast(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32, or as it is when it is float64: where code lifts half-precision values to float32 for a
    stable reduction (a loss, a normalisation), this keeps float64 training in float64 throughout."""
    return x if x.dtype == torch.float64 else x.float()
