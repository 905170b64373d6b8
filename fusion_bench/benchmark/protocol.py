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


def load_protocol(dataset: str, task: Task, user_file: str | Path | None = None) -> dict[str, Any]:
    """The dataset's protocol file merged over the task defaults, then a user's protocol file (`bench --protocol
    FILE`, see `read_protocol_file`) merged over that: mappings key by key, any other value replaced. ProtocolError
    when a built-in dataset's file is missing or does not parse, or the user's file does not fit the dataset. A
    plug-in dataset without a protocol file gets the task defaults."""
    protocol = default_protocol(dataset, task)
    path = protocol_path(dataset)
    if path is not None:
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
    if user_file is not None:
        user = read_protocol_file(user_file)
        for key, value in (("dataset", dataset), ("task", task.value)):
            if user.get(key) not in (None, value):
                raise ProtocolError(f"{user_file}: {key} {user[key]!r} does not match the dataset's {key} {value!r} "
                                    f"(--dataset {dataset})")
        protocol = merge_protocol(protocol, {k: v for k, v in user.items() if k != "variant"})
        protocol["user_file"] = str(user_file)
    return protocol


# `bench --protocol FILE`: the keys a user's protocol file may set, with the type each must have. `variant` picks a
# protocol variant (PROTOCOL_VARIANTS); the others are those of benchmarks/protocols/<dataset>.yaml.
USER_PROTOCOL_KEYS: dict[str, tuple[type, ...]] = {
    "variant": (str,),
    "dataset": (str,),
    "task": (str,),
    "metric_dialect": (str, type(None)),
    "metrics": (list, type(None)),
    "downstream": (list,),
    "presets": (dict,),
    "variants": (dict,),
    "robust": (dict,),
}
# settings of the robust tables (the mCE baseline and metric): read from the dataset's protocol whenever the tables
# are regenerated (`fusion-bench leaderboard` too), so one run's file cannot change them
ROBUST_TABLE_KEYS = ("baseline", "mce_metric", "mce_best")

# `bench --protocol NAME`: balance (AV datasets: fusion_bench.benchmark.balance), robust (image fusion:
# fusion_bench.benchmark.robust)
PROTOCOL_VARIANTS = ("balance", "robust")


def read_protocol_file(path: str | Path) -> dict[str, Any]:
    """A user's protocol file (`bench --protocol FILE`), checked: a YAML mapping of USER_PROTOCOL_KEYS with their
    types, presets among PRESETS, a known `variant`. ProtocolError naming the file and key otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(f"--protocol {path}: no such file (a protocol variant: "
                            f"{', '.join(PROTOCOL_VARIANTS)}; or a YAML protocol file)")
    try:
        loaded = load_yaml(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ProtocolError(f"--protocol {path}: cannot read it ({err})") from err
    except yaml.YAMLError as err:
        raise ProtocolError(f"--protocol {path}: not valid YAML ({' '.join(str(err).split())})") from err
    if not isinstance(loaded, dict) or not loaded:
        raise ProtocolError(f"--protocol {path}: expected a mapping of protocol settings (keys: "
                            f"{', '.join(USER_PROTOCOL_KEYS)})")
    for key, value in loaded.items():
        if key not in USER_PROTOCOL_KEYS:
            raise ProtocolError(f"--protocol {path}: unknown key {key!r} (keys: {', '.join(USER_PROTOCOL_KEYS)})")
        expected = USER_PROTOCOL_KEYS[key]
        if not isinstance(value, expected):
            names = " or ".join("null" if t is type(None) else {"dict": "mapping"}.get(t.__name__, t.__name__)
                                for t in expected)
            raise ProtocolError(f"--protocol {path}: {key} must be a {names}, got {value!r}")
    if loaded.get("variant") is not None and loaded["variant"] not in PROTOCOL_VARIANTS:
        raise ProtocolError(f"--protocol {path}: variant {loaded['variant']!r} is not a protocol variant (known: "
                            f"{', '.join(PROTOCOL_VARIANTS)})")
    from fusion_bench.registry import EVALUATORS  # names only: imports no evaluator

    preset_keys = ("seeds", *EVALUATORS)  # a protocol preset's settings: its seeds and each evaluator's
    for preset, block in (loaded.get("presets") or {}).items():
        if preset not in PRESETS or not isinstance(block, dict):
            raise ProtocolError(f"--protocol {path}: presets.{preset} must be one of {', '.join(PRESETS)} mapped to "
                                f"its settings ({', '.join(preset_keys)})")
        unknown = sorted(set(block) - set(preset_keys))
        if unknown or not all(isinstance(block.get(k) or {}, dict) for k in EVALUATORS):
            raise ProtocolError(f"--protocol {path}: presets.{preset} takes {', '.join(preset_keys)} (evaluators: "
                                f"mappings of their settings), got {unknown[0] if unknown else block!r}")
        _check_seeds(block.get("seeds"), f"--protocol {path}: presets.{preset}.seeds")
    for variant, block in (loaded.get("variants") or {}).items():
        if variant not in PROTOCOL_VARIANTS or not isinstance(block, dict):
            raise ProtocolError(f"--protocol {path}: variants.{variant} must be one of {', '.join(PROTOCOL_VARIANTS)} "
                                "mapped to its settings")
        unknown = sorted(set(block) - {"seeds", "recipe"})
        if unknown:
            raise ProtocolError(f"--protocol {path}: variants.{variant} takes seeds and recipe, got {unknown[0]!r}")
        _check_seeds(block.get("seeds"), f"--protocol {path}: variants.{variant}.seeds")
    fixed = sorted(set(loaded.get("robust") or {}) & set(ROBUST_TABLE_KEYS))
    if fixed:
        raise ProtocolError(f"--protocol {path}: robust.{fixed[0]} is a setting of the robust tables, read from the "
                            "dataset's protocol file whenever they are regenerated; a run's protocol file may set "
                            "robust.corruptions")
    for key in ("metrics", "downstream"):
        if loaded.get(key) is not None and not all(isinstance(v, str) for v in loaded[key]):
            raise ProtocolError(f"--protocol {path}: {key} must be a list of names, got {loaded[key]!r}")
    return loaded


def _check_seeds(seeds: Any, where: str) -> None:
    """ProtocolError naming `where` unless `seeds` is None or a non-empty list of non-negative integers."""
    if seeds is not None and (not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise ProtocolError(f"{where} must be a list of non-negative integers, got {seeds!r}")


def protocol_option(value: str | Path | None) -> tuple[str | None, Path | None]:
    """`bench --protocol NAME|FILE` as (variant, user protocol file): a variant name alone, or a file and the variant
    its `variant:` key names (None: the standard protocol). ProtocolError when it is neither."""
    if value is None:
        return None, None
    if str(value) in PROTOCOL_VARIANTS:
        return str(value), None
    path = Path(value)
    if not path.is_file() and path.suffix.lower() not in (".yaml", ".yml") and "/" not in str(value):
        raise ProtocolError(f"--protocol {value}: neither a protocol variant ({', '.join(PROTOCOL_VARIANTS)}) nor "
                            "a YAML protocol file")
    return read_protocol_file(path).get("variant"), path


def merge_protocol(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: mappings key by key (recursively), any other value replaced."""
    merged = dict(base)
    for key, value in over.items():
        merged[key] = merge_protocol(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


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


def protocol_seeds(dataset: str, preset: str, variant: str | None = None,
                   user_file: str | Path | None = None) -> list[int]:
    """The seeds a dataset's protocol lists for a preset (`presets: {<preset>: {seeds: [...]}}`), else [0]; with a
    protocol variant (`--protocol`), the variant's own seeds when it lists them (`variants: {<variant>: {seeds}}`).
    `user_file`: a user's protocol file merged over the dataset's (`load_protocol`)."""
    from fusion_bench.registry import get_datamodule

    protocol = load_protocol(dataset, get_datamodule(dataset).dataset_class.task, user_file)
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
