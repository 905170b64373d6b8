"""Method configuration and overrides: the preset of a method's config.yaml (sections model, optim, train) with
`--config FILE.yaml` and `--set SECTION.KEY=VALUE` merged in, the keys an override may set (the preset's, the
constructor's parameters, the runner's TRAIN_KEYS), and the row's `overrides` text. The effective overrides enter
the config hash and the row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from fusion_bench.base.method import MultimodalClassifier, load_method_config
from fusion_bench.benchmark.checks import check_device
from fusion_bench.benchmark.override_types import check_method_overrides
from fusion_bench.benchmark.protocol import CONFIG_PRESET, load_yaml
from fusion_bench.benchmark.spec import BenchSpec
from fusion_bench.benchmark.trainer_settings import resolve_train_precision
from fusion_bench.errors import BenchError
from fusion_bench.registry import EVALUATORS

SECTIONS = ("model", "optim", "train")
EVALUATOR_SECTIONS = tuple(EVALUATORS)  # `--set seg.KEY=V`, `det.KEY=V`: a downstream evaluator's config


TRAIN_KEYS = (
    # the `train` keys the runner reads (datamodule, Trainer, callbacks); a preset's own train keys are valid too
    "max_steps", "max_epochs", "batch_size", "crop_size", "augment", "val_fraction", "precision", "early_stopping",
    "limit_val_batches", "val_check_interval", "check_val_every_n_epoch", "log_every_n_steps",
    "devices", "strategy", "num_nodes", "find_unused_parameters", "compile", "channels_last",
    "checkpoint_every_n_steps", "gradient_clip_val", "gradient_clip_algorithm", "accumulate_grad_batches", "callbacks",
)


RUNNER_KWARGS = ("modalities",)  # constructor arguments the runner passes itself (and num_classes where it applies)


def constructor_parameters(method_cls: type) -> set[str]:
    """The keyword parameters of a method's constructor, following `**kwargs` up the class hierarchy."""
    import inspect

    names: set[str] = set()
    for cls in method_cls.__mro__:
        if cls in (L.LightningModule, torch.nn.Module, object):
            break
        if "__init__" not in vars(cls):
            continue
        params = inspect.signature(cls.__init__).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def valid_keys(method_cls: type, config: dict[str, Any]) -> dict[str, list[str]]:
    """Per section, the keys an override may set: the preset's keys, plus the constructor's parameters (model,
    optim) or the runner's TRAIN_KEYS (train)."""
    params = constructor_parameters(method_cls) - set(RUNNER_KWARGS)
    if issubclass(method_cls, MultimodalClassifier) or getattr(method_cls, "needs_class_labels", False):
        params.discard("num_classes")
    extra = {"model": params, "optim": params, "train": set(TRAIN_KEYS)}
    return {section: sorted(set(config.get(section) or {}) | extra[section]) for section in SECTIONS}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """`--config FILE.yaml`: a preset section ({model: {...}, optim: {...}, train: {...}}) as dotted overrides
    (`{"model.width": 8, ...}`); a value replaces the preset's value of that key (a mapping replaces a mapping)."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--config {path}: no such file")
    try:
        loaded = load_yaml(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise BenchError(f"--config {path}: not valid YAML: {yaml_problem(err)}") from err
    if loaded is None:
        return {}
    if not isinstance(loaded, dict) or set(loaded) - set(SECTIONS):
        extra = sorted(set(loaded) - set(SECTIONS)) if isinstance(loaded, dict) else type(loaded).__name__
        raise BenchError(f"--config {path}: expected a mapping with the sections {', '.join(SECTIONS)} (a preset of a "
                         f"method's config.yaml), got {extra}")
    out = {}
    for section, values in loaded.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise BenchError(f"--config {path}: section {section!r} must be a mapping of keys to values")
        out.update({f"{section}.{key}": value for key, value in values.items()})
    return out


def yaml_problem(err: Exception) -> str:
    """A YAML error in one line: what is wrong and where (`line 3: expected ...`)."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return where + " ".join(f"{err.context or ''} {err.problem}".split())
    return " ".join(str(err).split())


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any], method: str,
                    valid: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The preset with dotted overrides merged in (`section.key=value`, section: model, optim or train;
    `section.key.sub=value` sets one entry of a mapping value). With `valid` (see `valid_keys`) an unknown key is a
    BenchError naming the valid ones."""
    config = {section: dict(config.get(section) or {}) for section in SECTIONS}
    for key, value in overrides.items():
        section, _, rest = str(key).partition(".")
        parts = rest.split(".") if rest else []
        if section not in config or not parts or not all(parts):
            raise BenchError(f"method {method!r}: --set {key}={value}: expected SECTION.KEY with SECTION one of "
                             f"{', '.join(SECTIONS + EVALUATOR_SECTIONS)} (seg, det: the downstream evaluators)")
        if valid is not None and parts[0] not in valid[section]:
            raise BenchError(f"method {method!r}: --set {key}: unknown key {parts[0]!r} in section {section}; valid "
                             f"{section} keys: {', '.join(valid[section]) or '-'}")
        target = config[section]
        for i, part in enumerate(parts[:-1]):
            inner = target.get(part)
            if inner is None:
                inner = {}
            elif not isinstance(inner, dict):
                raise BenchError(f"method {method!r}: --set {key}: {section}.{'.'.join(parts[:i + 1])} is {inner!r}, "
                                 "not a mapping")
            target[part] = inner = dict(inner)
            target = inner
        target[parts[-1]] = value
    return config


def overrides_text(overrides: dict[str, Any]) -> str:
    """The row's `overrides` column: canonical JSON of the dotted overrides (sorted keys), empty when none."""
    return json.dumps(overrides, sort_keys=True, separators=(",", ":"), default=str) if overrides else ""


def config_section(method_cls: type, name: str) -> str:
    """The section of the method's config.yaml to read: the one named like the method (its registered or
    entry-point name, or the `module:Class` path), else the one named like its class, else the file's only section
    (so a plug-in's `SaliencyAvg:` section is found whether the method is named by its entry point `sal_avg` or by
    `myplug.fusion:SaliencyAvg`)."""
    import inspect

    from fusion_bench.registry import METHODS

    path = Path(inspect.getfile(method_cls)).parent / "config.yaml"
    if name in METHODS or not path.is_file():  # a built-in: its own section (a missing one is an error)
        return name
    sections = list(yaml.safe_load(path.read_text()) or {})
    if name in sections:
        return name
    if method_cls.__name__ in sections:
        return method_cls.__name__
    return sections[0] if len(sections) == 1 else name


def evaluator_overrides(overrides: dict[str, Any], name: str) -> dict[str, Any]:
    """The `--set <evaluator>.KEY=VALUE` overrides of downstream evaluator `name` (seg, det) as {KEY: VALUE}."""
    return {str(k).split(".", 1)[1]: v for k, v in overrides.items() if str(k).startswith(f"{name}.")}


def method_config(method_cls: type, spec: BenchSpec, dataset: str | None,
                  recipe: dict[str, dict[str, Any]] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the preset of the method's config.yaml with `--config` and `--set` merged in, the effective dotted
    overrides). A method without a config.yaml (a plug-in) takes its whole preset from --config / --set. Overrides
    of a downstream evaluator's config (`seg.KEY`, `det.KEY`) stay in the effective overrides; the request's
    validation applies them to the evaluators (`evaluator_overrides`). Preset `released` reads the `paper` section
    (CONFIG_PRESET) without its pretrained initialisations (`zoo:NAME` set to None): the released weights replace
    them. `recipe`: a protocol variant's shared recipe (fusion_bench.benchmark.balance), applied over the preset
    before the overrides (it is not an override: not in the returned overrides)."""
    overrides = {**(read_config_file(spec.config) if spec.config is not None else {}), **spec.overrides}
    if not getattr(method_cls, "trainable", True):  # nothing to train: train.* cannot change a number
        overrides = {k: v for k, v in overrides.items() if not str(k).startswith("train.")}
    method_overrides = {k: v for k, v in overrides.items() if str(k).partition(".")[0] not in EVALUATOR_SECTIONS}
    try:
        config = load_method_config(method_cls, config_section(method_cls, spec.method),
                                    CONFIG_PRESET.get(spec.preset, spec.preset), dataset)
    except yaml.YAMLError as err:  # a plug-in's config.yaml that does not parse, or asks for a Python object
        import inspect

        path = Path(inspect.getfile(method_cls)).parent / "config.yaml"
        raise BenchError(f"method {spec.method!r}: its config file {path} is not valid YAML: {yaml_problem(err)}"
                         ) from err
    except FileNotFoundError as err:
        if not overrides:
            raise BenchError(f"{err}: pass the preset with --config FILE.yaml (sections model, optim, train)"
                             ) from err
        config = {section: {} for section in SECTIONS}
    except KeyError as err:
        raise BenchError(str(err)) from err
    if recipe is not None:
        from fusion_bench.benchmark.balance import apply_recipe

        config = apply_recipe(config, recipe, spec.method, valid_keys(method_cls, config))
    preset = config
    config = apply_overrides(config, method_overrides, spec.method, valid_keys(method_cls, config))
    check_method_overrides(method_cls, preset, method_overrides, spec.method,
                           lambda key: "--set" if key in spec.overrides else f"--config {spec.config}")
    if spec.preset == "released":  # the released weights replace every pretrained initialisation
        from fusion_bench.weights import without_pretrained

        config = without_pretrained(config)
    return resolve_train_precision(config, overrides, check_device(spec.device), spec.method)
