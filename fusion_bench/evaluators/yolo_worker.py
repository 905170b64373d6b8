"""Child process of the detection evaluator: train and test one ultralytics YOLO model from a request file.

Run as ``python -m fusion_bench.evaluators.yolo_worker <run>/det/yolo_request.json`` with ``YOLO_CONFIG_DIR``
pointing into the run directory and ``YOLO_OFFLINE=1`` (set by :func:`detection._run_worker`). Writes
``yolo_result.json`` beside the request. Kept in its own process because ultralytics reads its settings once at
import, changes global state (threads, logging) and must never reach the network.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any


def _offline_ultralytics(threads: int | None) -> None:
    """Settings with every integration off; no font downloads; no AMP self-check (it downloads YOLO weights)."""
    import ultralytics.data.utils as data_utils
    import ultralytics.engine.trainer as trainer_module
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False,
                     "raytune": False, "tensorboard": False, "wandb": False, "vscode_msg": False,
                     "openvino_msg": False})
    data_utils.check_font = lambda *args, **kwargs: None  # plots are off: no font is needed
    trainer_module.check_amp = lambda *args, **kwargs: True  # AMP is asked for only on CUDA, where it works
    import ultralytics.utils.torch_utils as torch_utils

    from fusion_bench import numerics

    if numerics.is_pinned():  # the parent's pinned numerics hold here too: one thread, oneDNN/NNPACK off
        torch_utils.NUM_THREADS = 1  # select_device() sets torch's threads to this for CPU training
        numerics.apply_runtime()
    elif threads:  # the parent's choice (its other evaluators may be using the other cores)
        torch_utils.NUM_THREADS = threads


def _float64_ultralytics() -> None:
    """Train and validate in float64 in this process (the request's ``dtype: float64``).

    Ultralytics casts to float32 by name in about ten places (the training batches, the validator's batches, the
    PyTorch backend's model before inference, checkpoint loading); here, in this child process only, those casts
    (``Tensor.float`` and ``Module.float``) produce float64 and torch's default dtype is float64, so the detector is
    built, trained and run in float64 throughout. Checkpoints are still written in float16 by ultralytics (a
    deterministic rounding of the float64 weights) and read back into float64. In float64 the summation-order
    differences between CPUs' kernels start near 1e-16 and stay far below anything that changes a detection.
    """
    import torch

    torch.set_default_dtype(torch.float64)

    def tensor_float(self: torch.Tensor, memory_format: torch.memory_format = torch.preserve_format) -> torch.Tensor:
        return self.to(torch.float64, memory_format=memory_format)

    def module_float(self: torch.nn.Module) -> torch.nn.Module:
        return self.double()

    torch.Tensor.float = tensor_float  # type: ignore[method-assign]
    torch.nn.Module.float = module_float  # type: ignore[method-assign]


def _epoch_log(save_dir: Path) -> list[dict[str, str]]:
    path = save_dir / "results.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(fh)]


def run(request: dict[str, Any]) -> dict[str, Any]:
    _offline_ultralytics(request.get("threads"))
    if request.get("dtype", "float32") == "float64":
        _float64_ultralytics()
    import torch
    from ultralytics import YOLO

    common = {"data": request["data"], "imgsz": request["imgsz"], "batch": request["batch"],
              "device": request["device"], "workers": request["workers"], "plots": False,
              "project": request["project"], "exist_ok": True}
    model = YOLO(request["model_yaml"])
    if request.get("pretrained"):
        model.load(request["pretrained"])
    # Without validation there is no best checkpoint to keep: save=False writes last.pt once, after the final epoch,
    # instead of after every epoch (those copies took about a quarter of the smoke budget's time; no number changes).
    # With validation every epoch is saved, so that best.pt is the best epoch's weights.
    train_args = {"save": request["validate"], **request.get("train_args", {})}  # a protocol's `save` wins
    model.train(epochs=request["epochs"], seed=request["seed"], deterministic=True, name="train",
                val=request["validate"], amp=request["amp"], **common, **train_args)
    trainer = model.trainer
    weights = Path(trainer.best) if request["validate"] and Path(trainer.best).is_file() else Path(trainer.last)
    # save_txt: each test image's predicted boxes (normalised xywh + confidence) go to test/labels/<name>.txt
    metrics = YOLO(str(weights)).val(split="test", name="test", verbose=False, save_txt=True, save_conf=True, **common)
    box = metrics.box
    names = request["class_names"]
    ap50: dict[str, float | None] = {n: None for n in names}
    ap: dict[str, float | None] = {n: None for n in names}
    for j, cls in enumerate(box.ap_class_index.tolist()):
        ap50[names[int(cls)]] = float(box.ap50[j])
        ap[names[int(cls)]] = float(box.ap[j])
    peak_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() and request["device"] != "cpu" \
        else None
    epochs = _epoch_log(Path(trainer.save_dir))
    # the last epoch's mean training loss (box + cls + dfl) at full precision (results.csv keeps 5 digits): a
    # continuous check of the training itself, which the regression suite compares
    tloss = getattr(trainer, "tloss", None)  # {loss: running mean over the last epoch}; older versions: a tensor
    train_loss = math.nan if tloss is None else float(sum(tloss.values()) if isinstance(tloss, dict) else tloss.sum())
    trained_dtype = str(next(trainer.model.parameters()).dtype).removeprefix("torch.")
    seconds = float(epochs[-1]["time"]) if epochs and "time" in epochs[-1] else math.nan
    extra = {}  # the same weights on each extra test set (its own data file; labels are the test split's)
    for index, (label, data) in enumerate(request.get("extra_tests", {}).items()):
        scored = YOLO(str(weights)).val(split="test", name=f"test-extra{index}", verbose=False,
                                        **{**common, "data": data}).box
        extra[label] = {"det_map50": float(scored.map50), "det_map50_95": float(scored.map),
                        "det_precision": float(scored.mp), "det_recall": float(scored.mr)}
    return {
        "det_map50": float(box.map50), "det_map50_95": float(box.map), "det_precision": float(box.mp),
        "det_recall": float(box.mr), "det_ap50_per_class": ap50, "det_ap50_95_per_class": ap,
        "det_epochs_run": len(epochs), "det_train_seconds": seconds,
        "det_seconds_per_epoch": seconds / len(epochs) if epochs else math.nan,
        "det_train_loss": train_loss, "det_dtype": trained_dtype,
        "det_peak_mem_mb": peak_mb, "det_weights": str(weights), "det_model": request["model_yaml"],
        "det_image_size": request["imgsz"], **({"det_extra": extra} if extra else {}),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m fusion_bench.evaluators.yolo_worker REQUEST.json", file=sys.stderr)
        return 2
    request_path = Path(argv[0])
    result = run(json.loads(request_path.read_text()))
    out = request_path.with_name("yolo_result.json")
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
