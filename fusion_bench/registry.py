"""Registries of methods, datasets and evaluators: the explicit dicts, installed plug-ins, `module:Class` paths.

Entries are import paths ("package.module:Class") so that listing names never imports heavy optional
dependencies. `get_method` / `get_datamodule` resolve a name in this order:

1. the explicit dicts below (the built-in methods and datasets);
2. entry points of installed packages, groups `fusion_bench.methods` and `fusion_bench.datasets`
   (`pip install my-fusion-method` makes its methods appear in `fusion-bench list`); an entry point whose name is
   also a built-in name is an error naming both, as are two packages registering one name differently;
3. a `package.module:Class` path (`--method my_pkg.fusion:MyFusion`): the named module is imported from the Python
   path and nothing else is executed.

An unknown name raises UnknownNameError listing the valid ones.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from functools import lru_cache
from importlib import metadata
from typing import Any

from fusion_bench.errors import UnknownNameError

METHODS: dict[str, str] = {
    # training-free baselines
    "mean": "fusion_bench.methods.baselines.model:MeanFusion",
    "max": "fusion_bench.methods.baselines.model:MaxFusion",
    "source_a": "fusion_bench.methods.baselines.model:SourceA",
    "source_b": "fusion_bench.methods.baselines.model:SourceB",
    "laplacian": "fusion_bench.methods.baselines.model:LaplacianPyramidFusion",
    # learned baselines
    "fusion_cnn": "fusion_bench.methods.fusion_cnn.module:FusionCNNModule",
    "late_fusion": "fusion_bench.methods.late_fusion.module:LateFusionClassifier",
    # paper methods
    "cfi": "fusion_bench.methods.cfi.module:CFIFusion",
    "amdanet": "fusion_bench.methods.amdanet.module:AMDANet",
    # published semantic-aware training (needs seg labels); its content loss alone (not the published method)
    "seafusion": "fusion_bench.methods.seafusion.module:SeAFusion",
    "seafusion_content": "fusion_bench.methods.seafusion.module:SeAFusionContent",
    "swinfusion": "fusion_bench.methods.swinfusion.module:SwinFusion",
    "ssvif": "fusion_bench.methods.ssvif.module:SSVIF",
    "cmd_cta": "fusion_bench.methods.cmd_cta.module:CMDCTAFusion",
    # audio-visual classification: InfoBridge and the balanced-multimodal-learning baselines (shared recipe:
    # methods/av_balance)
    "infobridge": "fusion_bench.methods.infobridge.module:InfoBridgeClassifier",
    "unimodal": "fusion_bench.methods.unimodal.module:UnimodalClassifier",
    "infonce": "fusion_bench.methods.infonce.module:InfoNCEClassifier",
    "ogm_ge": "fusion_bench.methods.ogm_ge.module:OGMGEClassifier",
    "pmr": "fusion_bench.methods.pmr.module:PMRClassifier",
    "agm": "fusion_bench.methods.agm.module:AGMClassifier",
    "mmpareto": "fusion_bench.methods.mmpareto.module:MMParetoClassifier",
}

DATASETS: dict[str, str] = {
    # embedded synthetic datasets (generated offline on first use)
    "synthetic-ivif": "fusion_bench.data.synthetic.ivif:SyntheticIVIFDataModule",
    "synthetic-mfif": "fusion_bench.data.synthetic.mfif:SyntheticMFIFDataModule",
    "synthetic-meif": "fusion_bench.data.synthetic.meif:SyntheticMEIFDataModule",
    "synthetic-av": "fusion_bench.data.synthetic.av:SyntheticAVDataModule",
    # public datasets (users download them; see README, datasets table)
    "llvip": "fusion_bench.datamodules.llvip:LLVIPDataModule",
    "tno": "fusion_bench.datamodules.tno:TNODataModule",
    "roadscene": "fusion_bench.datamodules.roadscene:RoadSceneDataModule",
    "msrs": "fusion_bench.datamodules.msrs:MSRSDataModule",
    "vifb": "fusion_bench.datamodules.vifb:VIFBDataModule",
    "m3fd": "fusion_bench.datamodules.m3fd:M3FDDataModule",
    "fmb": "fusion_bench.datamodules.fmb:FMBDataModule",
    "mfnet": "fusion_bench.datamodules.mfnet:MFNetDataModule",
    "pst900": "fusion_bench.datamodules.pst900:PST900DataModule",
    "lytro": "fusion_bench.datamodules.lytro:LytroDataModule",
    "mfi_whu": "fusion_bench.datamodules.mfi_whu:MFIWHUDataModule",
    "mefb": "fusion_bench.datamodules.mefb:MEFBDataModule",
    "sice": "fusion_bench.datamodules.sice:SICEDataModule",
    "harvard_ct_mri": "fusion_bench.datamodules.harvard:HarvardCTMRIDataModule",
    "harvard_pet_mri": "fusion_bench.datamodules.harvard:HarvardPETMRIDataModule",
    "harvard_spect_mri": "fusion_bench.datamodules.harvard:HarvardSPECTMRIDataModule",
    "cremad": "fusion_bench.datamodules.cremad:CREMADDataModule",
    "ave": "fusion_bench.datamodules.ave:AVEDataModule",
}

EVALUATORS: dict[str, str] = {
    # downstream evaluators (fusion_bench.evaluators.spec.EvaluatorSpec): `bench` and `fusion-bench downstream`
    "seg": "fusion_bench.evaluators.segmentation:SEGMENTATION",
    "det": "fusion_bench.evaluators.detection:DETECTION",
}


# converters of the authors' released checkpoints (fusion_bench.weights.released): module with convert_released /
# load_released, per method name
CONVERTERS: dict[str, str] = {
    "cfi": "fusion_bench.methods.cfi.convert",
    "amdanet": "fusion_bench.methods.amdanet.convert",
    "seafusion": "fusion_bench.methods.seafusion.convert",
    "seafusion_content": "fusion_bench.methods.seafusion.convert",
    "swinfusion": "fusion_bench.methods.swinfusion.convert",
}

BUILTIN_DATASETS = frozenset(DATASETS)  # shipped with the package: each has a protocol file (protocol.load_protocol)
ENTRY_POINT_GROUPS = {"method": "fusion_bench.methods", "dataset": "fusion_bench.datasets"}
_REGISTRIES = {"method": METHODS, "dataset": DATASETS, "evaluator": EVALUATORS}


@lru_cache(maxsize=8)
def _entry_points(group: str, path: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """(name, value, distribution) of every entry point in `group` visible on `path` (= sys.path), one per name."""
    found: dict[str, tuple[str, str, str]] = {}
    for ep in metadata.entry_points(group=group):
        dist = ep.dist.name if getattr(ep, "dist", None) is not None else "?"
        if ep.name in found and found[ep.name][1] != ep.value:
            other = found[ep.name]
            raise UnknownNameError(f"plug-in name clash in entry-point group {group}: {ep.name!r} is {other[1]} "
                                   f"(package {other[2]}) and {ep.value} (package {dist}); uninstall or rename one")
        found.setdefault(ep.name, (ep.name, ep.value, dist))
    return tuple(found.values())


def plugins(kind: str) -> dict[str, tuple[str, str]]:
    """name -> (`module:attr`, distribution) of the installed plug-ins of a kind (method or dataset); a plug-in
    whose name is a built-in name is an UnknownNameError naming both."""
    group = ENTRY_POINT_GROUPS.get(kind)
    if group is None:
        return {}
    builtin = _REGISTRIES[kind]
    out = {}
    for name, value, dist in _entry_points(group, tuple(sys.path)):
        if name in builtin:
            raise UnknownNameError(f"plug-in name clash: package {dist} registers the {kind} {name!r} ({value}, "
                                   f"entry-point group {group}), which is the built-in {kind} {name!r} "
                                   f"({builtin[name]}); rename the plug-in's entry point")
        out[name] = (value, dist)
    return out


def names(kind: str) -> list[str]:
    """Built-in names, then installed plug-ins (sorted), of a kind: method, dataset or evaluator."""
    return [*_REGISTRIES[kind], *sorted(plugins(kind))]


def _where(err: BaseException) -> str:
    """`file:line` where an import failed: a syntax error's own place, else the innermost frame of real source."""
    if isinstance(err, SyntaxError) and err.filename:
        return f"{err.filename}:{err.lineno}"
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith("<")]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _import(kind: str, target: str, what: str, plugin: bool = False) -> Any:
    """The attribute `module:attr` names. A plug-in (`plugin`: an entry point or a `module:Class` path) whose module
    fails to import (a syntax error, a missing dependency, an error raised at import) is an UnknownNameError naming
    the plug-in, the file and the first line of the error; a built-in's failure keeps its traceback."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - anything a plug-in's module raises while it is imported
        if isinstance(err, ModuleNotFoundError) and err.name is not None and module_name.startswith(err.name):
            raise UnknownNameError(f"{what}: cannot import module {module_name!r} ({err}); a {kind} given as "
                                   "package.module:Class must be importable (installed, or on PYTHONPATH)") from err
        if not plugin:
            raise
        raise UnknownNameError(_import_failure(what, module_name, err)) from err
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UnknownNameError(f"{what}: module {module_name!r} ({getattr(module, '__file__', '?')}) has no "
                               f"attribute {attr!r}") from None


def _import_failure(what: str, module_name: str, err: BaseException) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return (f"{what}: importing module {module_name!r} failed at {_where(err)}: {type(err).__name__}"
            + (f": {first}" if first else "") + " (fix the plug-in or install what it needs)")


def _is_path(name: str) -> bool:
    module_name, sep, attr = name.partition(":")
    return bool(sep and attr.isidentifier() and all(p.isidentifier() for p in module_name.split(".")))


def check_name(kind: str, name: str) -> None:
    """An UnknownNameError listing the valid names unless `name` is a built-in, an installed plug-in or (methods,
    datasets) a `package.module:Class` path; imports nothing, so the command line reports a mistyped name without
    loading torch."""
    if name in _REGISTRIES[kind] or name in plugins(kind) or (kind in ENTRY_POINT_GROUPS and _is_path(name)):
        return
    hint = " or a package.module:Class path" if kind in ENTRY_POINT_GROUPS else ""
    raise UnknownNameError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(names(kind)))}{hint}")


def _lookup(kind: str, name: str) -> Any:
    check_name(kind, name)
    registry = _REGISTRIES[kind]
    if name in registry:
        return _import(kind, registry[name], f"{kind} {name!r}")
    found = plugins(kind).get(name)
    if found is not None:
        return _import(kind, found[0], f"{kind} {name!r} (plug-in package {found[1]})", plugin=True)
    return _import(kind, name, f"{kind} {name}", plugin=True)


def _check_class(kind: str, name: str, obj: Any, bases: tuple[type, ...]) -> Any:
    if not (isinstance(obj, type) and issubclass(obj, bases)):
        expected = " or ".join(b.__name__ for b in bases)
        raise UnknownNameError(f"{kind} {name!r} is {obj!r}, not a {expected} subclass")
    return obj


def get_method(name: str) -> Any:
    """The method class (a FusionMethod or MultimodalClassifier subclass) registered, installed or named as `name`."""
    from fusion_bench.base.method import FusionMethod, MultimodalClassifier

    return _check_class("method", name, _lookup("method", name), (FusionMethod, MultimodalClassifier))


def get_datamodule(name: str) -> Any:
    """The DataModule class registered, installed or named as `name` (its `.dataset_class` is the Dataset)."""
    from fusion_bench.base.datamodule import PairedDataModule

    return _check_class("dataset", name, _lookup("dataset", name), (PairedDataModule,))


def get_evaluator(name: str) -> Any:
    return _lookup("evaluator", name)
