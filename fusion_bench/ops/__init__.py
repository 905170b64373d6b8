"""Method-agnostic building blocks shared by methods (e.g. the Mamba selective scan)."""

from fusion_bench.ops.selective_scan import (
    IMPLS,
    mamba_available,
    selective_scan,
    selective_scan_chunked,
    selective_scan_flops,
    selective_scan_ref,
)

__all__ = ["IMPLS", "mamba_available", "selective_scan", "selective_scan_chunked", "selective_scan_flops",
           "selective_scan_ref"]
