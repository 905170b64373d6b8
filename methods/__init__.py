"""One package per fusion / multimodal method; see fusion_bench.registry.METHODS."""
