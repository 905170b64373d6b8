"""`--logger wandb`: one wandb run per seed holds the training curves (Lightning's WandbLogger on the same run), the
result row, the downstream evaluators' training curves and a few fused images.

Offline by default (WANDB_MODE=offline unless set; `wandb sync <run_dir>/wandb/...` uploads later); the project is
$WANDB_PROJECT, else `fusion_bench`; the run is named `<method>-<dataset>-<preset>-seed<k>` and grouped by
`<method>/<dataset>/<preset>/<config_hash>`. wandb is an optional extra (`pip install 'mmfusion-bench[wandb]'`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

N_SAMPLES = 4  # fused images logged per run (the first test images by name)
CURVE_FILES = ("seg_train_log.csv", "results.csv")  # SegFormer's and ultralytics' per-epoch logs


def _wandb() -> Any:
    from fusion_bench.errors import BenchError

    try:
        import wandb
    except ModuleNotFoundError as err:
        raise BenchError("--logger wandb needs the wandb extra: pip install 'mmfusion-bench[wandb]'") from err
    return wandb


def start_run(prep: Any, seed: int, run_dir: Path) -> Any:
    """A new wandb run for one seed of `prep` (files under run_dir/wandb)."""
    wandb = _wandb()
    os.environ.setdefault("WANDB_MODE", "offline")
    spec = prep.spec
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"method": spec.method, "dataset": spec.dataset, "preset": spec.preset, "seed": seed,
              "config_hash": prep.config_hash, "overrides": prep.overrides}
    config.update({f"{section}/{key}": value for section, values in prep.config.items()
                   for key, value in values.items()})
    return wandb.init(project=os.environ.get("WANDB_PROJECT", "fusion_bench"), dir=str(run_dir),
                      name=f"{spec.method}-{spec.dataset}-{spec.preset}-seed{seed}",
                      group=f"{spec.method}/{spec.dataset}/{spec.preset}/{prep.config_hash}", job_type="bench",
                      config=config)


def lightning_logger(run: Any) -> Any:
    """Lightning's WandbLogger writing into `run` (the training curves land in the same run as the results)."""
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(experiment=run)


def _scalar(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def curves(run_dir: Path) -> dict[str, pd.DataFrame]:
    """`downstream/<evaluator>/...` per-epoch training logs of the downstream evaluators, by evaluator name."""
    found: dict[str, pd.DataFrame] = {}
    root = run_dir / "downstream"
    for name in sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for path in sorted((root / name).rglob("*.csv")):
            if path.name in CURVE_FILES:
                frame = pd.read_csv(path)
                frame.columns = [str(c).strip() for c in frame.columns]  # ultralytics pads its headers
                found[name] = frame
                break
    return found


def log_results(run: Any, row: dict[str, Any], run_dir: Path, n_samples: int = N_SAMPLES) -> None:
    """The row (run summary and a one-row table), the downstream curves (one table per evaluator) and the first
    `n_samples` fused images of the test split (by name)."""
    wandb = _wandb()
    clean = {k: _scalar(v) for k, v in row.items() if not k.startswith("_")}
    run.summary.update(clean)
    payload: dict[str, Any] = {"result/row": wandb.Table(dataframe=pd.DataFrame([clean]))}
    for name, frame in curves(run_dir).items():
        payload[f"downstream/{name}_curve"] = wandb.Table(dataframe=frame)
    fused = sorted((run_dir / "fused").glob("*.png"))[:n_samples] if (run_dir / "fused").is_dir() else []
    if fused:
        payload["fused/samples"] = [wandb.Image(str(p), caption=p.stem) for p in fused]
    run.log(payload)
