"""What a run is: `BenchSpec` (one `fusion-bench bench` request for a method and a dataset, as the user gave it;
`PublishedSpec` for rows of published fused images), `PreparedRun` (what `request.prepare` resolved it to: classes,
config, protocol, device, the test split's identity, the built datasets, released weights or published images) and
`SeedSetup` (what one seed trains and scores). Data only: nothing here builds or checks anything, and importing it
loads neither torch nor Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusion_bench.benchmark.results import run_directory

if TYPE_CHECKING:
    import lightning as L
    import torch

    from fusion_bench.base.datamodule import PairedDataModule
    from fusion_bench.data.base import FusionDataset
    from fusion_bench.types import Task


SEED_MAX = 2**32 - 1  # numpy's seed range, which Lightning's seed_everything enforces
LOGGERS = ("csv", "tensorboard", "wandb")


@dataclass(frozen=True)
class PublishedSpec:
    """Where the fused images of a `published:NAME` row are (`bench --fused-dir ...`): the test split's
    (`fused_dir`), optionally the training split's for the downstream evaluators (`train_fused_dir`; a val split's
    images are looked up there too), how files are named (`pattern`, `{stem}` = the sample name; default: by stem)
    and whether a test split only partly covered is scored as a subset (`allow_subset`). Where they come from is
    `BenchSpec.source`."""

    fused_dir: Path
    train_fused_dir: Path | None = None
    pattern: str | None = None
    allow_subset: bool = False


@dataclass
class BenchSpec:
    """One `fusion-bench bench` request for a single method and dataset."""

    method: str
    dataset: str
    root: str | Path | None = None
    preset: str = "smoke"
    seeds: Sequence[int] = (0,)
    out: Path = Path("runs")
    leaderboard_dir: Path | None = Path("leaderboards")
    device: str = "auto"
    num_workers: int = 0
    progress: bool = True
    logger: str = "csv"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # {"model.alpha": 0.0, ...} over the preset (`--set`)
    config: str | Path | None = None  # a YAML preset section (model/optim/train) over the preset (`--config`)
    downstream: str | Sequence[str] | None = None  # protocol (None), none, or evaluator names: see downstream.py
    downstream_baselines: bool = True  # also bench source_a/source_b downstream when missing from the raw CSV
    resume: bool = False  # reuse complete seeds; continue an interrupted seed from <run_dir>.partial/checkpoints
    # downstream evaluators' numerics: "pinned", "native" (oneDNN kernels, see fusion_bench.numerics) or None (as
    # this process: pinned when it is); the CLI's `bench` defaults to "native"
    downstream_numerics: str | None = None
    # released weights (`--weights FILE|zoo|zoo:NAME`, preset `released`): the authors' file in their own format,
    # loaded through the method's converter instead of training
    weights: str | Path | None = None
    published: PublishedSpec | None = None  # `--method published:NAME`: the fused images to score (preset `published`)
    source: str | None = None  # `--source`: where the published images / released weights come from (row column)
    # `--protocol NAME`: a protocol variant (protocol.PROTOCOL_VARIANTS) instead of the standard clean protocol
    # (None); each variant's logic lives in its own module (balance: fusion_bench.benchmark.balance, AV datasets;
    # robust: fusion_bench.benchmark.robust, image fusion)
    protocol_variant: str | None = None
    # `--protocol FILE`: a user's protocol file merged over the dataset's (protocol.read_protocol_file); the variant
    # its `variant:` key names is `protocol_variant`
    protocol_file: str | Path | None = None
    # as the command line's `--protocol NAME|FILE` (the Python API's name for it): resolved into protocol_variant and
    # protocol_file by `request.resolve_protocol_argument`
    protocol: str | Path | None = None


@dataclass(frozen=True)
class ReleasedWeights:
    """Released weights a run loads instead of training: the file, its sha256 and where it comes from."""

    path: Path
    sha256: str
    source: str


@dataclass
class PreparedRun:
    """A checked BenchSpec with everything a run needs resolved (see `request.prepare`); the datasets of its splits
    are built once and shared by every seed."""

    spec: BenchSpec
    method_cls: type
    datamodule_cls: type[PairedDataModule]
    task: Task
    config: dict[str, Any]
    protocol: dict[str, Any]
    root: Path
    config_hash: str
    device: torch.device
    metric_names: list[str] | None = field(default=None)
    evaluators: dict[str, Any] = field(default_factory=dict)  # downstream evaluator name -> config
    split_hash: str = ""  # the test split's identity: part of the run directory
    datasets: dict[str, FusionDataset] = field(default_factory=dict)  # split -> Dataset, built once per run
    timings: list[dict[str, Any]] = field(default_factory=list)  # timings.json of every seed run so far
    overrides: dict[str, Any] = field(default_factory=dict)  # effective dotted overrides (--config, then --set)
    released: ReleasedWeights | None = None  # preset `released`: loaded into the method, which is not trained
    # preset `published`: split -> sample name -> the published fused image scored instead of a method's output
    fused_files: dict[str, dict[str, Path]] = field(default_factory=dict)
    # provenance columns of every row: source, weights_sha256, pretrained_sha256, fused_sha256 (results.py)
    provenance: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the command prints about the request (e.g. empty columns)
    # the resolved configuration as YAML (protocol.config_text): config_hash is its hash, each run directory keeps
    # it as config.yaml and `bench --print-config` prints it
    config_text: str = ""

    @property
    def trains(self) -> bool:
        """Whether a seed fits the method: a trainable method that neither loads released weights nor stands for
        published images."""
        return bool(getattr(self.method_cls, "trainable", False)) and self.released is None and not self.fused_files

    @property
    def dialect(self) -> str | None:
        return self.protocol.get("metric_dialect")

    def run_dir(self, seed: int) -> Path:
        s = self.spec
        return run_directory(s.out, s.method, s.dataset, s.preset, self.config_hash, self.split_hash, seed)


@dataclass(frozen=True)
class RowTarget:
    """One row a seed writes: the run it belongs to (its dataset, config hash and raw CSV), the sub-folder of the
    seed's directory that holds its outputs ("" for the directory itself) and its `train_mixture` column."""

    run: PreparedRun
    folder: str = ""
    train_mixture: str = ""


@dataclass
class SeedSetup:
    """What one seed trains and scores: the datamodule the method trains on, the method, and for each of the seed's
    RowTargets the datamodule whose test split it scores (a plain run: the one it trains on; a mixture: each
    dataset's own)."""

    datamodule: L.LightningDataModule
    model: L.LightningModule
    scored: list[PairedDataModule]
