"""fusion_bench: a PyTorch Lightning benchmark suite for multi-modal image fusion."""

__version__ = "0.1.0"
