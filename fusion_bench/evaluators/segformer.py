"""SegFormer for the segmentation evaluator (and the methods that train one): the MiT-B0..B5 variants, building
``transformers``' ``SegformerForSemanticSegmentation`` from a config (never downloaded), and loading local or
catalogued pretrained weights into it (`zoo:NAME` through fusion_bench.weights).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from fusion_bench.errors import DownstreamError
from fusion_bench.evaluators.common import require_extra
from fusion_bench.types import IGNORE_INDEX

if TYPE_CHECKING:
    from fusion_bench.evaluators.segmentation import SegEvalConfig

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Mix Transformer encoders of the SegFormer paper (Xie et al. 2021, Table 6 / the released configs).
MIT_VARIANTS: dict[str, dict[str, Any]] = {
    "b0": {"hidden_sizes": (32, 64, 160, 256), "depths": (2, 2, 2, 2), "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": (64, 128, 320, 512), "depths": (2, 2, 2, 2), "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": (64, 128, 320, 512), "depths": (3, 4, 6, 3), "decoder_hidden_size": 768},
    "b3": {"hidden_sizes": (64, 128, 320, 512), "depths": (3, 4, 18, 3), "decoder_hidden_size": 768},
    "b4": {"hidden_sizes": (64, 128, 320, 512), "depths": (3, 8, 27, 3), "decoder_hidden_size": 768},
    "b5": {"hidden_sizes": (64, 128, 320, 512), "depths": (3, 6, 40, 3), "decoder_hidden_size": 768},
}
MIT_HEADS = (1, 2, 5, 8)



def _transformers():
    require_extra("transformers", "segmentation", "transformers")
    import transformers

    return transformers


def build_segformer(config: SegEvalConfig, num_classes: int) -> nn.Module:
    """A randomly initialised (current torch RNG) SegformerForSemanticSegmentation, then local weights if set."""
    tf = _transformers()
    arch = dict(MIT_VARIANTS[config.variant])
    for key in ("hidden_sizes", "depths", "decoder_hidden_size"):
        if getattr(config, key) is not None:
            arch[key] = getattr(config, key)
    hidden = tuple(arch["hidden_sizes"])
    heads = tuple(config.num_attention_heads or MIT_HEADS)
    if any(h % n for h, n in zip(hidden, heads, strict=True)):
        raise ValueError(f"hidden_sizes {hidden} must be divisible by num_attention_heads {heads}")
    hf_config = tf.SegformerConfig(
        num_channels=3, num_encoder_blocks=4, depths=list(arch["depths"]), hidden_sizes=list(hidden),
        num_attention_heads=list(heads), decoder_hidden_size=int(arch["decoder_hidden_size"]),
        drop_path_rate=config.drop_path_rate, num_labels=num_classes, semantic_loss_ignore_index=IGNORE_INDEX,
    )
    pretrained = resolve_weights(config.pretrained)
    if pretrained and Path(pretrained).expanduser().is_dir():
        # a save_pretrained / hub-snapshot folder: transformers maps old key names; the class head is re-initialised
        return tf.SegformerForSemanticSegmentation.from_pretrained(
            str(Path(pretrained).expanduser()), config=hf_config, local_files_only=True,
            ignore_mismatched_sizes=True)
    model = tf.SegformerForSemanticSegmentation(hf_config)
    if pretrained:
        load_pretrained(model, pretrained)
    return model


def resolve_weights(pretrained: str | None) -> str | None:
    """A `zoo:NAME` reference (e.g. `zoo:mit_b3`, ImageNet MiT-B3) resolved to its file through the weights cache, the
    Hugging Face cache or a download (fusion_bench.weights.pretrained; DownstreamError naming the file when none of
    them can serve it); a path or None unchanged."""
    from fusion_bench.weights.pretrained import is_zoo_ref, resolve_pretrained
    from fusion_bench.weights.zoo import WeightsError

    if not is_zoo_ref(pretrained):
        return pretrained
    try:
        return str(resolve_pretrained(pretrained).path)
    except WeightsError as err:
        raise DownstreamError(f"segmentation pretrained weights: {err}") from err


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load a local state-dict file (.safetensors or torch) into `model`; tensors whose shape differs are skipped.

    Keys may be those of ``SegformerForSemanticSegmentation`` or of its ``SegformerModel`` backbone (no
    ``segformer.`` prefix), under transformers 4 or 5 names (the hub's ``nvidia/mit-b*`` files have the former), or
    the SegFormer release's ``mit_b*.pth`` names. Never downloads.
    """
    from fusion_bench.weights.released import load_file
    from fusion_bench.weights.segformer import to_model_layout
    from fusion_bench.weights.zoo import WeightsError

    path = Path(path).expanduser()
    if not path.is_file():
        raise DownstreamError(f"pretrained weights {path} not found")
    try:
        state = load_file(path)  # safetensors or torch.load(weights_only=True), told apart by content
    except WeightsError as err:
        raise DownstreamError(str(err)) from err
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = model.state_dict()
    state = to_model_layout(state, own)  # transformers 4 / 5 key names, or the SegFormer release's mit_b*.pth
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        for candidate in (key, f"segformer.{key}", key.removeprefix("model.")):
            if candidate in own and own[candidate].shape == value.shape:
                mapped[candidate] = value
                break
    if not any(k.startswith("segformer.") for k in mapped):
        raise DownstreamError(f"{path}: no SegFormer encoder weights matched this {type(model).__name__} "
                              "(wrong variant, or a non-transformers checkpoint)")
    model.load_state_dict(mapped, strict=False)
    skipped = len(own) - len(mapped)
    log.info("loaded %d tensors from %s (%d left at their initialisation, e.g. the class head)",
             len(mapped), path, skipped)
