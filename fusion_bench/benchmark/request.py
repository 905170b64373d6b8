"""The request and its validation: `prepare` checks everything that can be wrong with a BenchSpec (unknown names,
preset, logger, an incompatible task, missing or malformed data, seeds, device, output folders, unreadable raw CSVs,
downstream evaluators that cannot run, released weights that cannot be read or converted, pretrained initialisations
that are neither cached nor downloadable, a method config its constructor or the Trainer rejects) before any work
starts, and resolves it to a PreparedRun: the method and datamodule classes, the effective config and its hash, the
protocol, the device and the test split (its identity names the run directory). `published:NAME` requests are
prepared by `published.prepare_published`.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import fusion_bench
from fusion_bench.base.method import MultimodalClassifier
from fusion_bench.benchmark.balance import BALANCE, check_variant
from fusion_bench.benchmark.balance import recipe as balance_recipe
from fusion_bench.benchmark.build import build_datamodule, check_method, method_kwargs
from fusion_bench.benchmark.checks import check_outside, check_run_options
from fusion_bench.benchmark.config import evaluator_overrides, method_config
from fusion_bench.benchmark.downstream import EVALUATOR_NAMES, evaluator_config, parse_downstream, resolve_evaluators
from fusion_bench.benchmark.leaderboard import check_owned
from fusion_bench.benchmark.protocol import (
    PROTOCOL_VARIANTS,
    check_preset,
    config_text,
    hash_of_text,
    is_published,
    load_protocol,
    protocol_option,
    protocol_preset,
    protocol_seeds,
    read_protocol_file,
    request_preset,
)
from fusion_bench.benchmark.published import prepare_published
from fusion_bench.benchmark.spec import LOGGERS, BenchSpec, PreparedRun
from fusion_bench.benchmark.trainer_settings import check_manual_optimization, check_train_settings
from fusion_bench.benchmark.weight_files import check_initialisations, resolve_released_weights
from fusion_bench.errors import BenchError, ProtocolError
from fusion_bench.registry import get_datamodule, get_method
from fusion_bench.types import Task


def prepare(spec: BenchSpec) -> PreparedRun:
    """Validate the request and resolve everything a run needs (no training, no fusing)."""
    spec = resolve_protocol_argument(spec)
    if is_published(spec.method) or spec.published is not None or spec.preset == "published":
        return prepare_published(spec)
    if (spec.weights is not None) != (spec.preset == "released"):
        raise BenchError("--weights loads released weights, which make rows of preset released; leave out --preset"
                         if spec.weights is not None else
                         "preset released scores the authors' released weights: pass --weights FILE, zoo or zoo:NAME")
    try:
        check_preset(spec.preset)
        if spec.logger not in LOGGERS:
            raise ValueError(f"unknown logger {spec.logger!r}; valid loggers: {', '.join(LOGGERS)}")
        if spec.logger in ("wandb", "tensorboard"):
            import importlib.util

            packages = ("wandb",) if spec.logger == "wandb" else ("tensorboard", "tensorboardX")
            if all(importlib.util.find_spec(p) is None for p in packages):
                raise ValueError(f"--logger {spec.logger} needs the {spec.logger} extra: pip install "
                                 f"'mmfusion-bench[{spec.logger}]'")
        method_cls = get_method(spec.method)
        datamodule_cls = get_datamodule(spec.dataset)
    except (KeyError, ValueError) as err:
        raise BenchError(str(err)) from err
    device = check_run_options(spec)
    if spec.leaderboard_dir is not None:
        check_owned(Path(spec.leaderboard_dir), [spec.dataset])
    task = datamodule_cls.dataset_class.task
    variant = check_protocol_request(spec)
    if variant != spec.protocol_variant:  # the variant a user protocol file names
        spec = replace(spec, protocol_variant=variant)
    option = f"--protocol {variant}" + (f" (variant of {spec.protocol_file})" if spec.protocol_file else "")
    if variant is not None and variant not in PROTOCOL_VARIANTS:
        raise BenchError(f"{option}: unknown protocol variant; known: {', '.join(PROTOCOL_VARIANTS)}")
    if variant is not None and (variant == "robust") != task.is_fusion:
        raise BenchError(f"{option}: dataset {spec.dataset!r} ({task.value}) does not support it (robust: "
                         "image-fusion datasets; balance: audio-visual classification datasets)")
    if task not in method_cls.tasks:
        valid = ", ".join(sorted(t.value for t in method_cls.tasks))
        raise BenchError(f"method {spec.method!r} handles {valid}; dataset {spec.dataset!r} is {task.value}")
    try:
        protocol = load_protocol(spec.dataset, task, spec.protocol_file)
    except ProtocolError as err:
        raise BenchError(str(err)) from err
    check_variant(spec.protocol_variant, spec.dataset, protocol, task)
    if task is not Task.CLASSIFICATION:
        check_protocol_metrics(protocol)
    shared = balance_recipe(protocol, protocol_preset(spec.preset)) if spec.protocol_variant == BALANCE else None
    config, overrides = method_config(method_cls, spec, spec.dataset, shared)
    released = resolve_released_weights(spec, task) if spec.weights is not None else None
    pretrained = check_initialisations(spec, config)  # a paper preset never starts from scratch silently
    try:
        root = datamodule_cls.resolve_root(spec.root)
    except (TypeError, ValueError) as err:  # e.g. synthetic generator parameters
        raise BenchError(f"dataset {spec.dataset!r}: {err}") from err
    check_outside(Path(spec.out), root, "--out")  # nothing a run writes goes into the dataset (as `fuse`)
    if spec.leaderboard_dir is not None:
        check_outside(Path(spec.leaderboard_dir), root, "--leaderboard-dir")
    # Instantiating the test split runs the integrity check now, before any training.
    try:
        test_set = datamodule_cls.dataset_class(root, "test", **spec.dataset_options)
    except (TypeError, ValueError) as err:
        raise BenchError(f"dataset {spec.dataset!r} does not take these options {spec.dataset_options}: {err}") from err
    if (getattr(method_cls, "needs_class_labels", False) or issubclass(method_cls, MultimodalClassifier)) \
            and test_set.class_names is None:
        raise BenchError(f"method {spec.method!r} needs class labels; dataset {spec.dataset!r} at {root} has none"
                         + ("" if task is Task.CLASSIFICATION else " (use one with segmentation masks, e.g. msrs, "
                            "fmb, mfnet, pst900, synthetic-ivif)"))
    if task is Task.CLASSIFICATION:  # every split's labels and files are checked now, not after training started
        for split in datamodule_cls.dataset_class.available_splits(root, **spec.dataset_options):
            if split != "test":
                datamodule_cls.dataset_class(root, split, **spec.dataset_options)
    evaluators: dict[str, Any] = {}  # evaluator name -> its effective config for this preset
    if task is not Task.CLASSIFICATION:
        try:
            splits = datamodule_cls.dataset_class.available_splits(root, **spec.dataset_options)
            names = resolve_evaluators(parse_downstream(spec.downstream), protocol, test_set, splits)
            evaluators = {name: evaluator_config(name, spec.preset, protocol, evaluator_overrides(overrides, name))
                          for name in names}
        except ValueError as err:
            raise BenchError(str(err)) from err
    idle = sorted({str(k).partition(".")[0] for k in overrides} & set(EVALUATOR_NAMES) - set(evaluators))
    if idle:
        raise BenchError(f"--set {idle[0]}.*: the downstream evaluator {idle[0]!r} does not run in this request "
                         f"(evaluators: {', '.join(evaluators) or 'none'}; choose them with --downstream)")
    built = check_method(method_cls, spec, method_kwargs(method_cls, spec, config,
                                                         datamodule_cls.dataset_class.modalities, test_set.class_names))
    payload = {
        "method": spec.method,
        "dataset": spec.dataset,
        "dataset_options": spec.dataset_options,
        "preset": spec.preset,
        "config": config,
        "protocol": {k: protocol.get(k) for k in ("metric_dialect", "metrics")},
        "protocol_preset": {k: v for k, v in
                            ((protocol.get("presets") or {}).get(protocol_preset(spec.preset)) or {}).items()
                            if k not in ("seeds", *EVALUATOR_NAMES)},
        "version": fusion_bench.__version__,
    }
    # downstream settings enter the hash only as the effective evaluator configs of the evaluators that run (the
    # protocol preset's seg/det blocks are left out above), so runs without downstream do not depend on them
    if evaluators:
        payload["downstream"] = {name: asdict(config) for name, config in evaluators.items()}
    if overrides:  # only when given, so that runs without overrides keep their hashes
        payload["overrides"] = overrides
    if spec.protocol_variant == BALANCE:  # its shared recipe trains another model; the standard protocol (and
        payload["protocol_variant"] = spec.protocol_variant  # robust, which corrupts only the test inputs of the
        # standard model) keep their hashes
    provenance = {}
    if released is not None:  # other weights are another leaderboard entry
        payload["weights_sha256"] = released.sha256
        provenance.update(source=released.source, weights_sha256=released.sha256)
    if pretrained:
        payload["pretrained"] = pretrained
        provenance["pretrained_sha256"] = ";".join(f"{key}={sha}" for key, sha in pretrained.items())
    text = config_text(payload)
    prep = PreparedRun(spec, method_cls, datamodule_cls, task, config, protocol, root, hash_of_text(text),
                       device, protocol.get("metrics"), evaluators, test_set.split_hash(), {"test": test_set},
                       overrides=overrides, released=released, provenance=provenance, config_text=text)
    build_datamodule(prep, 0)  # the method's train settings (crop, augment, val_fraction) against the datamodule
    if prep.trains:
        check_train_settings(prep)
        check_manual_optimization(built, config["train"], spec.method)
    return prep


def resolve_protocol_argument(spec: BenchSpec) -> BenchSpec:
    """`spec.protocol` (the API's `--protocol NAME|FILE`) as `protocol_variant` and `protocol_file`; BenchError when
    it is neither a variant nor a protocol file, or contradicts those fields."""
    if spec.protocol is None:
        return spec
    try:
        variant, path = protocol_option(spec.protocol)
    except ProtocolError as err:
        raise BenchError(str(err)) from err
    for name, given, resolved in (("protocol_variant", spec.protocol_variant, variant),
                                  ("protocol_file", spec.protocol_file, path)):
        if given is not None and (resolved is None or str(given) != str(resolved)):
            raise BenchError(f"protocol={spec.protocol!r} and {name}={given!r} disagree: give one of them")
    return replace(spec, protocol=None, protocol_variant=variant, protocol_file=path)


def check_protocol_metrics(protocol: dict[str, Any]) -> None:
    """BenchError naming the protocol file when its metric dialect or metric names are not the suite's."""
    from fusion_bench.metrics import get_dialect

    where = protocol.get("user_file") or f"the protocol of dataset {protocol.get('dataset')!r}"
    try:
        dialect = get_dialect(protocol.get("metric_dialect"))
        metrics = protocol.get("metrics")
        if metrics is not None:
            if not metrics:
                raise ValueError("metrics: [] names no metric (null: every metric of the dialect)")
            dialect.resolve(metrics, with_gt=True)
    except ValueError as err:
        raise BenchError(f"{where}: {err}") from err


def check_protocol_request(spec: BenchSpec) -> str | None:
    """The protocol variant of a request: the `variant:` of its user protocol file (`protocol_file`; `bench
    --protocol FILE`) or `protocol_variant` (`--protocol NAME`); when both are given they must agree (a job's command
    line carries the file alone). BenchError naming --protocol otherwise."""
    variant = spec.protocol_variant
    if spec.protocol_file is not None:
        try:
            named = read_protocol_file(spec.protocol_file).get("variant")
        except ProtocolError as err:
            raise BenchError(str(err)) from err
        if variant is not None and named != variant:
            raise BenchError(f"--protocol {spec.protocol_file}: the request is protocol {variant}, the file's "
                             f"variant is {named or 'none (the standard protocol)'}: set `variant: {variant}` in it")
        variant = named
    return variant


def default_seeds(dataset: str, preset: str, downstream: str | None = None, train_fused: bool = False,
                  variant: str | None = None, protocol_file: str | Path | None = None) -> list[int]:
    """The seeds of a request that names none: the protocol's for the preset (`protocol_seeds`). Rows that train
    nothing (presets released and published) repeat themselves over seeds unless downstream evaluators train on
    their fused images, so they get seed 0 alone unless some evaluator may run (`downstream` is not `none`, and a
    published row has `--train-fused-dir`)."""
    if preset in ("released", "published"):
        try:
            requested = parse_downstream(downstream)
        except ValueError:
            requested = None  # reported by prepare
        if requested == () or (preset == "published" and not train_fused):
            return [0]
    return protocol_seeds(dataset, preset, variant, protocol_file)


def bench_preset(preset: str | None, methods: list[str], datasets: list[str], weights: object = None,
                 published_options: list[str] | None = None, mixture: bool = False) -> str:
    """The preset of a `bench` command line (`protocol.request_preset`: published for published:NAME, released with
    --weights), after the checks that concern the whole command: released weights and published images score one
    method on one dataset and train no mixture; the published-image options (`published_options`, the names of those
    given) need --method published:NAME."""
    try:
        preset = request_preset(preset, methods, weights)
    except ValueError as err:
        raise BenchError(str(err)) from err
    if published_options and not any(is_published(m) for m in methods):
        raise BenchError(f"{published_options[0]} goes with --method published:NAME (published fused images)")
    if preset in ("released", "published"):
        what = "--weights" if preset == "released" else "--method published:NAME"
        if len(methods) > 1 or len(datasets) > 1:
            raise BenchError(f"{what} scores one method on one dataset; run one command per method and dataset")
        if mixture:
            raise BenchError(f"--mixture trains one model on several datasets; it does not go with {what}")
    return preset
