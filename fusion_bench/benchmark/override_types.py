"""Types and ranges of override values (`--set SECTION.KEY=VALUE`, `--config FILE.yaml`, `--set seg.KEY=VALUE`),
checked before any work. What a key expects comes from, in this order: the constructor's annotation of the
parameter (model, optim), the dataclass field's annotation (a downstream evaluator's config), the runner's own table
(TRAIN_TYPES, section train), else the type of the preset's value (int, float, bool, str, list, mapping; an int
fits where a float is expected, not the other way round); a key none of these describe takes any value. Range rules
by key name come on top: every number finite and within 64-bit integers, learning rates (`lr`, `*_lr`, `lr_*`)
above 0 (`min_*` at least 0), sizes, widths and depths integers in 1..SIZE_MAX, step and epoch counts within
STEPS_MAX, fractions in [0, 1). A value that does not fit is a BenchError naming the key, the value and what is
expected. Values are checked, never converted: a valid configuration reaches the run exactly as given.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

from fusion_bench.errors import BenchError

SIZE_MAX = 2**20  # widths, depths, crops, batches: far above anything that fits in memory
STEPS_MAX = 10**9  # optimiser steps or epochs: beyond this a run never ends
INT_MAX = 2**63 - 1  # what a tensor or Lightning's counters can hold

SIZE_WORDS = frozenset({"width", "widths", "depth", "depths", "channels", "levels", "heads", "blocks", "layers",
                        "size", "sizes"})  # the last word of a key that counts something (>= 1)
COUNT_WORDS = frozenset({"steps", "epochs"})  # the last word of a key that counts steps or epochs

TRAIN_TYPES: dict[str, Any] = {
    # the train keys the runner reads (config.TRAIN_KEYS) and the values they take
    "max_steps": int, "max_epochs": int | None, "batch_size": int, "crop_size": int | tuple[int, int] | None,
    "augment": dict[str, Any] | Literal[False] | None, "val_fraction": float, "precision": str | int,
    "early_stopping": dict[str, Any] | Literal[False] | None, "limit_val_batches": int | float,
    "val_check_interval": int | float | None, "check_val_every_n_epoch": int | None, "log_every_n_steps": int,
    "devices": int | list[int] | str, "strategy": str, "num_nodes": int, "find_unused_parameters": bool,
    "compile": bool | dict[str, Any] | None, "channels_last": bool, "checkpoint_every_n_steps": int | None,
    "gradient_clip_val": float | None, "gradient_clip_algorithm": Literal["norm", "value"] | None,
    "accumulate_grad_batches": int, "callbacks": list[dict[str, Any] | str] | None,
}
UNBOUNDED_BELOW = frozenset({"train.max_steps", "train.max_epochs"})  # -1: no limit (Lightning's convention)


# ------------------------------------------------------------------------------------------------ what a key expects


def _evaluate(annotation: Any, namespace: Mapping[str, Any]) -> Any:
    """An annotation as a type (string annotations evaluated in the defining module); None when unknown."""
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        try:
            return eval(annotation, dict(namespace), {})  # noqa: S307 - the method's own source, as typing does
        except Exception:  # noqa: BLE001 - e.g. a name imported for type checking only: the key takes any value
            return None
    return annotation


def constructor_types(method_cls: type) -> dict[str, Any]:
    """Parameter name -> its annotated type in the method's constructor (following `**kwargs` up the class
    hierarchy, as config.constructor_parameters does); unannotated parameters are left out."""
    import lightning as L
    import torch

    found: dict[str, Any] = {}
    for cls in method_cls.__mro__:
        if cls in (L.LightningModule, torch.nn.Module, object):
            break
        init = vars(cls).get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        namespace = getattr(init, "__globals__", {})
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in found:
                tp = _evaluate(p.annotation, namespace)
                if tp is not None:
                    found[p.name] = tp
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return found


def field_types(config: Any) -> dict[str, Any]:
    """Field name -> annotated type of a dataclass config (a downstream evaluator's)."""
    import dataclasses
    import sys

    namespace = vars(sys.modules.get(type(config).__module__, typing))
    return {f.name: tp for f in dataclasses.fields(config) if (tp := _evaluate(f.type, namespace)) is not None}


def preset_type(value: Any) -> Any:
    """The type a preset's value asks an override of its key to have (None: any)."""
    for kind in (bool, int, float, str):
        if type(value) is kind:
            return kind
    if isinstance(value, (list, tuple)):
        return list
    if isinstance(value, dict):
        return dict
    return None


# ------------------------------------------------------------------------------------------------ does a value fit


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _is_sequence(tp: Any) -> bool:
    return tp in (list, tuple) or typing.get_origin(tp) in (list, tuple, collections.abc.Sequence)


def _fixed_length(tp: Any) -> tuple[Any, ...] | None:
    """The element types of a fixed-length tuple annotation (`tuple[int, int]`), else None."""
    args = typing.get_args(tp)
    return args if typing.get_origin(tp) is tuple and args and args[-1] is not Ellipsis else None


def fits(value: Any, tp: Any) -> bool:
    """Whether `value` (as YAML reads it: lists for sequences and tuples) has the type `tp`; unknown types fit."""
    if tp is None or tp is Any:
        return True
    if tp is type(None):
        return value is None
    if _is_union(tp):
        return any(fits(value, arg) for arg in typing.get_args(tp))
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Literal:
        return any(type(value) is type(arg) and value == arg for arg in args)
    if _is_sequence(tp):
        if not isinstance(value, (list, tuple)):
            return False
        fixed = _fixed_length(tp)
        if fixed is not None:
            return len(value) == len(fixed) and all(fits(v, a) for v, a in zip(value, fixed))
        return not args or all(fits(v, args[0]) for v in value)
    if tp is dict or typing.get_origin(tp) in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return True  # a class of the method's own (a path, a dtype, ...): the constructor decides


_WORDS = {bool: ("true or false", "true or false values"), int: ("an integer", "integers"),
          float: ("a number", "numbers"), str: ("a string", "strings"), type(None): ("null", "nulls")}


def describe(tp: Any, plural: bool = False) -> str:
    """A type in words, e.g. `an integer or a list of 2 integers or null`."""
    if _is_union(tp):
        return " or ".join(dict.fromkeys(describe(arg, plural) for arg in typing.get_args(tp)))
    if tp in _WORDS:
        return _WORDS[tp][plural]
    if typing.get_origin(tp) is Literal:
        args = typing.get_args(tp)
        return shown(args[0]) if len(args) == 1 else "one of " + ", ".join(shown(a) for a in args)
    if _is_sequence(tp):
        fixed, args = _fixed_length(tp), typing.get_args(tp)
        if fixed is not None:
            inner = f" of {len(fixed)} " + " or ".join(dict.fromkeys(describe(a, True) for a in fixed))
        else:
            inner = f" of {describe(args[0], True)}" if args else ""
        return ("lists" if plural else "a list") + inner
    if tp is dict or typing.get_origin(tp) in (dict, collections.abc.Mapping):
        return "mappings" if plural else "a mapping"
    return getattr(tp, "__name__", str(tp))


def shown(value: Any) -> str:
    """A value as it would be written after `--set KEY=`."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    return json.dumps(value, default=str)


def _kind(value: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a decimal number", bool: "true/false", list: "a list",
             tuple: "a list", dict: "a mapping", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# ------------------------------------------------------------------------------------------------ ranges by key name


def _numbers(value: Any) -> list[int | float]:
    """The numbers of a value (itself, or the elements of a list), bools left out."""
    items = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


def range_problem(key: str, value: Any) -> str | None:
    """What the number(s) of `value` must be for the dotted `key`, when they are not; None when they fit."""
    name = key.rsplit(".", 1)[-1]
    words = name.split("_")
    for v in _numbers(value):
        finite = math.isfinite(v) if isinstance(v, float) else abs(v) <= INT_MAX
        if "lr" in words:
            minimum = name.startswith("min_")
            if not (finite and (v >= 0 if minimum else v > 0)):
                return f"a finite learning rate {'>=' if minimum else '>'} 0"
        elif name == "val_fraction":
            if not (finite and 0 <= v < 1):
                return "a fraction in [0, 1)"
        elif words[-1] in SIZE_WORDS and isinstance(v, int):
            if not 1 <= v <= SIZE_MAX:
                return f"an integer in 1..{SIZE_MAX}"
        elif words[-1] in COUNT_WORDS and isinstance(v, int):
            low = -1 if key in UNBOUNDED_BELOW else 0
            if not low <= v <= STEPS_MAX:
                return f"an integer in {low}..{STEPS_MAX}" + (" (-1: no limit)" if low < 0 else "")
        if not finite:
            return "a finite number" if isinstance(v, float) else f"an integer within ±{INT_MAX}"
    return None


# ------------------------------------------------------------------------------------------------ the checks


def value_problem(key: str, value: Any, tp: Any) -> str | None:
    """What `value` of the dotted `key` should be (its type, then its range), or None when it fits."""
    if not fits(value, tp):
        return f"expected {describe(tp)}, got {_kind(value)}"
    problem = range_problem(key, value)
    return f"expected {problem}" if problem else None


def expected_type(preset: Mapping[str, Any], key: str, annotations: Mapping[str, Any]) -> Any:
    """The type a dotted model/optim/train override key expects (None: any), see the module docstring;
    `annotations`: `constructor_types` of the method."""
    section, *parts = key.split(".")
    if len(parts) == 1:
        if section in ("model", "optim") and parts[0] in annotations:
            return annotations[parts[0]]
        if section == "train" and parts[0] in TRAIN_TYPES:
            return TRAIN_TYPES[parts[0]]
    value: Any = preset.get(section) or {}
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    tp = preset_type(value)
    if tp is str and "pretrained" in parts[-1]:  # an initialisation can always be switched off: the from-scratch
        return str | None                      # ablation (`--set model.segformer.pretrained=null`)
    return tp


def check_method_overrides(method_cls: type, preset: Mapping[str, Any], overrides: Mapping[str, Any], method: str,
                           option: Callable[[str], str]) -> None:
    """Every dotted model/optim/train override of `method` against what its key expects (`preset`: the method's
    preset before the overrides; `option(key)`: how the user gave it, e.g. `--set`). BenchError on the first that
    does not fit, naming the key, the value and what is expected."""
    annotations = constructor_types(method_cls)
    for key, value in overrides.items():
        problem = value_problem(key, value, expected_type(preset, key, annotations))
        if problem:
            raise BenchError(f"method {method!r}: {option(key)} {key}={shown(value)}: {problem}")


def check_evaluator_overrides(config: Any, overrides: Mapping[str, Any], name: str) -> None:
    """`--set <name>.KEY=VALUE` overrides of a downstream evaluator's dataclass config against its fields'
    annotations and the range rules; BenchError naming the key, the value and what is expected."""
    fields = field_types(config)
    for key, value in overrides.items():
        problem = value_problem(f"{name}.{key}", value, fields.get(key))
        if problem:
            raise BenchError(f"--set {name}.{key}={shown(value)}: {problem}")


__all__ = ["SIZE_MAX", "STEPS_MAX", "TRAIN_TYPES", "check_evaluator_overrides", "check_method_overrides",
           "constructor_types", "describe", "expected_type", "fits", "range_problem", "shown", "value_problem"]
