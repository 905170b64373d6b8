"""Side-by-side drawing of a sample's modalities, mask, boxes and prediction (matplotlib, lazily imported)."""

from __future__ import annotations

from typing import Any

import torch

from fusion_bench.types import BOXES, LABELS, MASK


def _as_image(t: torch.Tensor):
    t = t.detach().cpu().float()
    if t.ndim == 3 and t.shape[0] == 1:
        return t[0].numpy(), "gray"
    if t.ndim == 3:
        return t[:3].permute(1, 2, 0).clamp(0, 1).numpy(), None
    return t.numpy(), "gray"


def plot_sample(sample: dict[str, Any], modalities: tuple[str, ...], class_names=None, box_class_names=None,
                prediction: torch.Tensor | None = None, title: str | None = None):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels: list[tuple[str, Any, str | None]] = []
    for key in modalities:
        if key in sample and isinstance(sample[key], torch.Tensor):
            img, cmap = _as_image(sample[key])
            panels.append((key, img, cmap))
    for key in ("gt", "fused"):
        if key in sample:
            img, cmap = _as_image(sample[key])
            panels.append((key, img, cmap))
    n_cls = len(class_names) if class_names else None
    if MASK in sample:
        panels.append(("mask", sample[MASK].cpu().numpy(), "tab20"))
    if prediction is not None:
        panels.append(("prediction", prediction.detach().cpu().numpy(), "tab20"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3), squeeze=False)
    for ax, (label, img, cmap) in zip(axes[0], panels):
        kwargs = {"vmin": 0, "vmax": max(n_cls - 1, 1)} if cmap == "tab20" and n_cls else {}
        ax.imshow(img, cmap=cmap, **kwargs)
        ax.set_title(label)
        ax.axis("off")
        if label == modalities[-1] and BOXES in sample:
            for box, lab in zip(sample[BOXES].tolist(), sample[LABELS].tolist()):
                x0, y0, x1, y1 = box
                ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="yellow", linewidth=1))
                name = box_class_names[lab] if box_class_names else str(lab)
                ax.text(x0, y0, name, color="yellow", fontsize=6)
    if title or "name" in sample:
        fig.suptitle(title or str(sample["name"]))
    fig.tight_layout()
    return fig
