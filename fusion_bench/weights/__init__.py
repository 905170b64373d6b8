"""Weights that come from outside a run: released checkpoints of the papers and pretrained initialisations.

This package owns
- `zoo`: the catalogue `benchmarks/zoo.yaml` (schema-checked), the local cache (`$FUSION_BENCH_CACHE`, default
  `~/.cache/fusion_bench`), the offline switch (`FUSION_BENCH_OFFLINE=1`) and `fetch`: a cached file whose hash
  matches, else a download to a temporary file that is hash-checked and renamed into place;
- `released`: reading an authors' checkpoint safely (`torch.load(weights_only=True)` or safetensors), unwrapping
  the usual containers, and `load_released_weights(method, module, path)`, which hands the state dict to the
  method's converter (`methods/<name>/convert.py`, listed in `fusion_bench.registry.CONVERTERS`);
- `pretrained`: `zoo:NAME` references in presets (`pretrained: zoo:mit_b4`), their resolution through the cache,
  the Hugging Face hub cache or a download, and the check a `paper` preset runs before any work
  (`check_pretrained`);
- `segformer`: key layouts of MiT/SegFormer weights (the SegFormer release, transformers 4 and transformers 5).

Every failure a user can fix (no file, no network, a wrong hash, a file of another network) is a `WeightsError`
(a ValueError) whose message names the file, the URL and what to do; the CLI maps it to exit code 2.
Nothing here runs at import time, and only `released`, `segformer` and the loaders import torch.
"""

from __future__ import annotations

from fusion_bench.lazy import lazy_exports

_EXPORTS = {
    "WeightsError": "fusion_bench.weights.zoo",
    "ZooEntry": "fusion_bench.weights.zoo",
    "load_catalogue": "fusion_bench.weights.zoo",
    "find_released": "fusion_bench.weights.zoo",
    "find_pretrained": "fusion_bench.weights.zoo",
    "fetch": "fusion_bench.weights.zoo",
    "cache_dir": "fusion_bench.weights.zoo",
    "is_offline": "fusion_bench.weights.zoo",
    "sha256_file": "fusion_bench.weights.zoo",
    "ConversionError": "fusion_bench.weights.released",
    "load_released_weights": "fusion_bench.weights.released",
    "resolve_released": "fusion_bench.weights.released",
    "read_state_dict": "fusion_bench.weights.released",
    "methods_with_converters": "fusion_bench.weights.released",
    "Requirement": "fusion_bench.weights.pretrained",
    "ResolvedWeights": "fusion_bench.weights.zoo",
    "required_pretrained": "fusion_bench.weights.pretrained",
    "check_pretrained": "fusion_bench.weights.pretrained",
    "resolve_pretrained": "fusion_bench.weights.pretrained",
    "is_zoo_ref": "fusion_bench.weights.pretrained",
    "without_pretrained": "fusion_bench.weights.pretrained",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
