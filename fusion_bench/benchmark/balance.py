"""The `balance` protocol variant (`fusion-bench bench --protocol balance`): a controlled comparison of the
audio-visual methods, where every method (late fusion and the unimodal models included) trains with the same
recipe, so that the rows differ only by the balancing mechanism.

A dataset supports the variant when its protocol file has a `variants: {balance: ...}` block:

    variants:
      balance:
        seeds: [0, 1, 2, 3, 4]         # the variant's default seeds (5: a paired test needs them)
        recipe:                        # per preset: the sections model / optim / train every method takes
          smoke: {model: {...}, optim: {...}, train: {...}}
          paper: {...}

The recipe replaces the matching keys of each method's own preset (its own method hyper-parameters, e.g. OGM-GE's
alpha, stay); a recipe that gives the training budget as max_steps (max_epochs) also removes the preset's
max_epochs (max_steps), so every method trains for the same number of steps. `--config` and `--set` still apply
over the recipe (and are recorded in the row as usual). Besides the protocol's columns every row of an
audio-visual model carries the linear probes of its frozen encoders (`probe_<modality>`, fusion_bench.benchmark.
probes); the rows carry `protocol: balance`, and the variant enters the config hash.
"""

from __future__ import annotations

import copy
from typing import Any

from fusion_bench.errors import BenchError
from fusion_bench.types import Task

BALANCE = "balance"

RECIPE_SECTIONS = ("model", "optim", "train")
BUDGET_KEYS = ("max_steps", "max_epochs")


def variant_block(protocol: dict[str, Any], variant: str) -> dict[str, Any] | None:
    """The `variants: {<variant>: ...}` block of a dataset's protocol, or None when the dataset does not offer it."""
    block = (protocol.get("variants") or {}).get(variant)
    return block if isinstance(block, dict) else None


def check_variant(variant: str | None, dataset: str, protocol: dict[str, Any], task: Task) -> None:
    """BenchError naming --protocol when `variant` is balance and the dataset is not an AV dataset whose protocol
    offers it (names and tasks of every variant are checked by `request.prepare`; robust needs no block here: its
    corruption list is benchmarks/protocols/robust.yaml)."""
    if variant != BALANCE:
        return
    if task is not Task.CLASSIFICATION:
        raise BenchError(f"--protocol balance: dataset {dataset!r} is {task.value}; the balance protocol is for "
                         "audio-visual classification datasets (e.g. synthetic-av, cremad, ave)")
    if variant_block(protocol, variant) is None:
        offered = sorted(protocol.get("variants") or {})
        raise BenchError(f"--protocol {variant}: dataset {dataset!r} does not offer this protocol variant (its "
                         f"protocol file offers: {', '.join(offered) or 'none'})")


def recipe(protocol: dict[str, Any], preset: str) -> dict[str, dict[str, Any]]:
    """The balance recipe of a dataset's protocol for `preset` ({section: {key: value}}); BenchError naming
    --protocol when the protocol has none for the preset or it is malformed."""
    block = variant_block(protocol, BALANCE) or {}
    recipes = block.get("recipe") or {}
    chosen = recipes.get(preset)
    if not isinstance(chosen, dict):
        raise BenchError(f"--protocol balance: the protocol of dataset {protocol.get('dataset')!r} has no balance "
                         f"recipe for preset {preset!r} (recipes: {', '.join(sorted(recipes)) or 'none'})")
    bad = sorted(set(chosen) - set(RECIPE_SECTIONS))
    if bad or not all(isinstance(v, dict) for v in chosen.values()):
        raise BenchError(f"--protocol balance: recipe {preset!r} of dataset {protocol.get('dataset')!r} must map "
                         f"sections {', '.join(RECIPE_SECTIONS)} to key: value mappings (got {bad or chosen})")
    return {section: dict(chosen.get(section) or {}) for section in RECIPE_SECTIONS}


def apply_recipe(config: dict[str, Any], shared: dict[str, dict[str, Any]], method: str,
                 valid: dict[str, list[str]]) -> dict[str, Any]:
    """A copy of a method's preset `config` with the shared recipe's keys in place of its own; a recipe that sets
    one budget key (max_steps / max_epochs) removes the other. `valid`: the keys each section accepts for the
    method (config.valid_keys); a recipe key outside them is a BenchError naming --protocol and the method."""
    out = copy.deepcopy(config)
    for section, values in shared.items():
        unknown = sorted(set(values) - set(valid.get(section, ())))
        if unknown:
            raise BenchError(f"--protocol balance: method {method!r} does not take the shared recipe's "
                             f"{section}.{unknown[0]} (is it an audio-visual method built on methods/av_balance?)")
        target = out.setdefault(section, {})
        if section == "train" and any(k in values for k in BUDGET_KEYS):
            for key in BUDGET_KEYS:
                target.pop(key, None)
        target.update(copy.deepcopy(values))
    return out


def variant_seeds(protocol: dict[str, Any], variant: str) -> list[int] | None:
    """The default seeds a variant lists (`variants: {<variant>: {seeds: [...]}}`), or None."""
    block = variant_block(protocol, variant) or {}
    seeds = block.get("seeds")
    return [int(s) for s in seeds] if seeds is not None else None


__all__ = ["BALANCE", "apply_recipe", "check_variant", "recipe", "variant_block", "variant_seeds"]
