"""Benchmark protocols (benchmarks/protocols/<dataset>.yaml) and the config hash of a run.

`benchmarks/` (protocols, suites, the papers' reported numbers) is read from the source checkout when there is one,
else from the copy the wheel ships inside the package (`fusion_bench/_benchmarks`, put there by setup.py's build
step). A built-in dataset without its protocol file is an error (a broken install), never a silent default.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fusion_bench.errors import ProtocolError
from fusion_bench.types import Task


class _Loader(yaml.SafeLoader):
    """yaml.safe_load, plus YAML 1.2's floats without a dot (`1e-4` is a number, not the string '1e-4')."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse user-written YAML (--set values, --config and --grid files): safe (no object construction), with
    `1e-4` read as a float."""
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader: no object construction


REPO_ROOT = Path(__file__).resolve().parents[2]  # the source checkout (or site-packages when installed)


def benchmarks_dir() -> Path:
    """`benchmarks/` of the source checkout, else the copy shipped in the installed package."""
    checkout = REPO_ROOT / "benchmarks"
    if (checkout / "protocols").is_dir():
        return checkout
    return Path(str(resources.files("fusion_bench") / "_benchmarks"))


BENCHMARKS_DIR = benchmarks_dir()
PROTOCOL_DIR = BENCHMARKS_DIR / "protocols"
SUITE_DIR = BENCHMARKS_DIR / "suites"
REPORTED_DIR = BENCHMARKS_DIR / "reported"


METHOD_PRESETS = ("smoke", "paper", "paper_text")  # presets a method trains (or runs) with, from its config.yaml
PRESETS = (*METHOD_PRESETS, "released", "published")
# Presets that run under the protocol settings (seeds, downstream evaluator configs) of a base preset: `paper_text` is
# a method's reading of its paper's text where the authors' code (`paper`) differs; `released` scores the authors'
# released weights (the method's `paper` settings, `--weights`); `published` scores the authors' own fused images
# (`--method published:NAME --fused-dir DIR`).
PRESET_BASE = {"paper_text": "paper", "released": "paper", "published": "paper"}
# The method config section a preset reads (`released` builds the network of the paper preset, then loads the weights)
CONFIG_PRESET = {"released": "paper"}
PUBLISHED_PREFIX = "published:"  # `--method published:NAME`: rows of the fused images an author published
BASELINE_METHODS = ("source_a", "source_b")  # the single-source rows every downstream table carries


def default_protocol(dataset: str, task: Task) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "task": task.value,
        "metric_dialect": None if task is Task.CLASSIFICATION else "mmif",
        "metrics": None,
        "downstream": [],
        "presets": {p: {} for p in PRESETS},
    }


def protocol_path(dataset: str) -> Path | None:
    """The protocol file of a dataset: benchmarks/protocols/<name>.yaml for a built-in dataset (required); for a
    plug-in dataset, `protocols/<name>.yaml` beside its datamodule's module when it ships one, else None."""
    from fusion_bench.registry import BUILTIN_DATASETS, get_datamodule

    if dataset in BUILTIN_DATASETS:
        return PROTOCOL_DIR / f"{dataset}.yaml"
    try:
        own = Path(inspect.getfile(get_datamodule(dataset))).parent / "protocols" / f"{dataset}.yaml"
    except (KeyError, TypeError, OSError):
        return None
    return own if own.is_file() else None


def load_protocol(dataset: str, task: Task) -> dict[str, Any]:
    """The dataset's protocol file merged over the task defaults; ProtocolError when a built-in dataset's file is
    missing or does not parse. A plug-in dataset without a protocol file gets the task defaults."""
    protocol = default_protocol(dataset, task)
    path = protocol_path(dataset)
    if path is None:
        return protocol
    if not path.is_file():
        raise ProtocolError(f"the protocol of dataset {dataset!r} is missing: {path} (a broken install: reinstall "
                            "mmfusion-bench, or restore benchmarks/protocols in a source checkout)")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ProtocolError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from err
    if not isinstance(loaded, dict):
        raise ProtocolError(f"{path}: expected a mapping of protocol settings")
    if loaded.get("task") not in (None, task.value):
        raise ProtocolError(f"{path}: task {loaded['task']!r} does not match the dataset's task {task.value!r}")
    protocol.update({k: v for k, v in loaded.items() if v is not None or k == "metric_dialect"})
    return protocol


def config_text(payload: dict[str, Any]) -> str:
    """The resolved configuration of a run as YAML (keys sorted; tuples as lists, other non-YAML values such as
    paths as their text): what `bench --print-config` prints and every run directory keeps as `config.yaml`."""
    plain = json.loads(json.dumps(payload, sort_keys=True, default=str))
    return yaml.safe_dump(plain, sort_keys=True, default_flow_style=False, allow_unicode=True, width=120)


def config_hash(payload: dict[str, Any]) -> str:
    """12 hex digits of sha256 over `config_text(payload)`, the text of everything that defines a run except the
    seed (so a run directory's config.yaml turns its hash back into the settings: `hash_of_text(config.yaml)`)."""
    return hash_of_text(config_text(payload))


def hash_of_text(text: str) -> str:
    """The config hash of a config.yaml's text."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def protocol_preset(preset: str) -> str:
    """The preset whose protocol settings (seeds, evaluator configs) a method preset uses."""
    return PRESET_BASE.get(preset, preset)


def protocol_seeds(dataset: str, preset: str, variant: str | None = None) -> list[int]:
    """The seeds a dataset's protocol lists for a preset (`presets: {<preset>: {seeds: [...]}}`), else [0]; with a
    protocol variant (`--protocol`), the variant's own seeds when it lists them (`variants: {<variant>: {seeds}}`)."""
    from fusion_bench.registry import get_datamodule

    protocol = load_protocol(dataset, get_datamodule(dataset).dataset_class.task)
    if variant is not None:
        block = (protocol.get("variants") or {}).get(variant)
        if isinstance(block, dict) and block.get("seeds") is not None:
            return [int(s) for s in block["seeds"]]
    return [int(s) for s in ((protocol.get("presets") or {}).get(protocol_preset(preset)) or {}).get("seeds", [0])]


def check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")


def is_published(method: str) -> bool:
    """`published:NAME`: a row of published fused images, not a method of the registry."""
    return str(method).startswith(PUBLISHED_PREFIX)


def request_preset(preset: str | None, methods: list[str], weights: object = None) -> str:
    """The preset of a request: as given, else `published` for `published:NAME` methods, `released` with
    `--weights`, else `smoke`. A preset that contradicts them is a ValueError naming both."""
    published = any(is_published(m) for m in methods)
    implied = "published" if published else "released" if weights is not None else None
    if preset is None:
        return implied or "smoke"
    if implied is not None and preset != implied:
        what = "--method published:NAME" if published else "--weights"
        raise ValueError(f"--preset {preset}: {what} runs under preset {implied}; leave out --preset (or pass "
                         f"--preset {implied})")
    return preset


def load_suite(name: str) -> tuple[dict[str, Any], Path]:
    path = SUITE_DIR / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))
        raise ValueError(f"unknown suite {name!r}; valid suites: {', '.join(available)}")
    return yaml.safe_load(path.read_text()), path
