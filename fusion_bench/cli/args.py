"""The argument types and option groups the command modules share (seeds, KEY=VALUE options, the run options of
bench/train/fuse, --set/--config overrides) and the parser whose usage errors fit on one line (exit 2)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fusion_bench.benchmark.protocol import METHOD_PRESETS, PRESETS
from fusion_bench.benchmark.spec import SEED_MAX


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


DOWNSTREAM_NUMERICS_HELP = ("downstream evaluators' numerics: native (default; SegFormer with oneDNN, YOLO "
                             "unpinned: about 2x faster, scores repeat on this machine) or pinned (as `regress`: the "
                             "same scores on every x86-64 CPU)")


def parse_seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected an integer in 0..{SEED_MAX}, got {text!r}")
    return value


def parse_seeds(text: str) -> list[int]:
    items = csv_list(text)
    if not items:
        raise argparse.ArgumentTypeError("expected comma-separated integers (e.g. 0,1,2), got nothing")
    try:
        return [parse_seed(t) for t in items]
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers in 0..{SEED_MAX}, got {text!r}") from err


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def parse_option(text: str) -> tuple[str, object]:
    """KEY=VALUE with the value parsed as YAML (so classes=14 is an int, lr=1e-4 a float, layout=flat a string)."""
    import yaml

    from fusion_bench.benchmark.protocol import load_yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), load_yaml(value)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not valid YAML ({' '.join(str(err).split())})"
                                         ) from err


def parse_sweep(text: str) -> tuple[str, list[object]]:
    """`--sweep KEY=v1,v2,...`: a dotted override key and its values (each parsed as YAML; a value that holds a comma
    is written as a YAML list of the values instead: `KEY=[[1,2],[3,4]]`)."""
    import yaml

    from fusion_bench.benchmark.protocol import load_yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip() or "." not in key:
        raise argparse.ArgumentTypeError(f"expected SECTION.KEY=v1,v2,..., got {text!r}")
    if not value.strip().startswith("[") and any(not v.strip() for v in value.split(",")):
        raise argparse.ArgumentTypeError(f"expected SECTION.KEY=v1,v2,... with no empty value, got {text!r}")
    try:
        parsed = load_yaml(value) if value.strip().startswith("[") else [load_yaml(v) for v in value.split(",")]
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: a value is not valid YAML ({' '.join(str(err).split())})"
                                         ) from err
    if not isinstance(parsed, list) or not parsed:
        raise argparse.ArgumentTypeError(f"expected SECTION.KEY=v1,v2,... with at least one value, got {text!r}")
    return key.strip(), parsed


def add_dataset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset-arg", dest="dataset_options", type=parse_option, action="append", default=[],
                   metavar="KEY=VALUE", help="dataset option, repeatable (e.g. layout=flat, classes=14, "
                                             "subset=detection); recorded in the config hash")


def add_run_arguments(p: argparse.ArgumentParser, *, many: bool = False, released: bool = False) -> None:
    """The options of bench/train/fuse; `released`: presets `released`/`published` too, and --preset defaults to None
    (resolved by `protocol.request_preset`: published for published:NAME, released with --weights, else smoke)."""
    what = " (comma-separated for several)" if many else ""
    p.add_argument("--method", required=True, help=f"method name{what}; see `fusion-bench list`")
    p.add_argument("--dataset", required=True, help=f"dataset name{what}")
    p.add_argument("--root", default=None, help="dataset root (default: $FUSION_BENCH_DATA/<name>, else data/<name>; "
                                                 "synthetic datasets: the user cache)")
    p.add_argument("--preset", default=None if released else "smoke", choices=PRESETS if released else METHOD_PRESETS,
                   help="smoke (CPU, tiny), paper (what produced the published numbers: the authors' code) or "
                        "paper_text (a method's reading of its paper's text where the code differs)"
                        + ("; released (the authors' weights, --weights) and published (their fused images, "
                           "--method published:NAME) follow from those options (default: smoke)" if released else ""))
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--num-workers", type=non_negative_int, default=0, help="DataLoader workers")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--logger", default="csv", choices=("csv", "tensorboard", "wandb"),
                   help="Lightning logger for training (wandb runs offline unless WANDB_MODE is set)")
    add_override_arguments(p)
    add_dataset_options(p)


class TrainAlias(argparse.Action):
    """`--devices X` = `--set train.devices=X` (likewise --strategy, --num-nodes): appended to the overrides."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        from fusion_bench.benchmark.protocol import load_yaml

        items = list(getattr(namespace, self.dest) or [])
        items.append((self.const, load_yaml(values)))
        setattr(namespace, self.dest, items)


def add_override_arguments(p: argparse.ArgumentParser, devices: bool = True) -> None:
    if devices:
        p.add_argument("--devices", dest="overrides", action=TrainAlias, const="train.devices", default=[],
                       metavar="N|LIST",
                       help="= --set train.devices=N: devices of one fit (e.g. 4, [0,2], auto); see --strategy")
        p.add_argument("--strategy", dest="overrides", action=TrainAlias, const="train.strategy", default=[],
                       metavar="auto|ddp|ddp_spawn|fsdp", help="= --set train.strategy=...")
        p.add_argument("--num-nodes", dest="overrides", action=TrainAlias, const="train.num_nodes", default=[],
                       metavar="N",
                       help="= --set train.num_nodes=N (one process per device on every node, e.g. SLURM srun)")
    p.add_argument("--set", dest="overrides", type=parse_option, nargs="+", action="extend", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="override preset values (values parsed as YAML), e.g. --set train.max_epochs=5 optim.lr=1e-4 "
                        "model.encoder=b2; an unknown key is an error listing the valid ones; recorded in the config "
                        "hash and the row's overrides column")
    p.add_argument("--config", type=Path, default=None, metavar="FILE.yaml",
                   help="a preset section (model: {...}, optim: {...}, train: {...}) over the preset, before --set; "
                        "read with yaml.safe_load (a plug-in method without config.yaml takes its preset from here)")


class Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (`fusion-bench bench: error: argument --seeds: ...`), exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
