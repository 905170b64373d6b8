"""Explicit registries of methods, datasets and evaluators.

Entries are import paths ("package.module:Class") so that listing names never imports heavy optional
dependencies. `get_*` imports the entry; an unknown name raises UnknownNameError listing the valid ones.
"""

from __future__ import annotations

import importlib
from typing import Any

METHODS: dict[str, str] = {
    # training-free baselines
    "mean": "methods.baselines.model:MeanFusion",
    "max": "methods.baselines.model:MaxFusion",
    "source_a": "methods.baselines.model:SourceA",
    "source_b": "methods.baselines.model:SourceB",
    "laplacian": "methods.baselines.model:LaplacianPyramidFusion",
    # learned baselines
    "fusion_cnn": "methods.fusion_cnn.module:FusionCNNModule",
    "late_fusion": "methods.late_fusion.module:LateFusionClassifier",
    # paper methods
    "cfi": "methods.cfi.module:CFIFusion",
    "amdanet": "methods.amdanet.module:AMDANet",
    "seafusion": "methods.seafusion.module:SeAFusion",  # published semantic-aware training (needs seg labels)
    "seafusion_content": "methods.seafusion.module:SeAFusionContent",  # content loss only, not the published method
    "swinfusion": "methods.swinfusion.module:SwinFusion",
    "ssvif": "methods.ssvif.module:SSVIF",
    "cmd_cta": "methods.cmd_cta.module:CMDCTAFusion",
    # audio-visual classification: InfoBridge and the balanced-multimodal-learning baselines (shared recipe:
    # methods/av_balance)
    "infobridge": "methods.infobridge.module:InfoBridgeClassifier",
    "unimodal": "methods.unimodal.module:UnimodalClassifier",
    "infonce": "methods.infonce.module:InfoNCEClassifier",
    "ogm_ge": "methods.ogm_ge.module:OGMGEClassifier",
    "pmr": "methods.pmr.module:PMRClassifier",
    "agm": "methods.agm.module:AGMClassifier",
    "mmpareto": "methods.mmpareto.module:MMParetoClassifier",
}

DATASETS: dict[str, str] = {
    # embedded synthetic datasets (generated offline on first use)
    "synthetic-ivif": "fusion_bench.data.synthetic:SyntheticIVIFDataModule",
    "synthetic-mfif": "fusion_bench.data.synthetic:SyntheticMFIFDataModule",
    "synthetic-meif": "fusion_bench.data.synthetic:SyntheticMEIFDataModule",
    "synthetic-av": "fusion_bench.data.synthetic:SyntheticAVDataModule",
    # public datasets (users download them; see README, datasets table)
    "llvip": "datamodules.llvip:LLVIPDataModule",
    "tno": "datamodules.tno:TNODataModule",
    "roadscene": "datamodules.roadscene:RoadSceneDataModule",
    "msrs": "datamodules.msrs:MSRSDataModule",
    "m3fd": "datamodules.m3fd:M3FDDataModule",
    "fmb": "datamodules.fmb:FMBDataModule",
    "mfnet": "datamodules.mfnet:MFNetDataModule",
    "pst900": "datamodules.pst900:PST900DataModule",
    "lytro": "datamodules.lytro:LytroDataModule",
    "mfi_whu": "datamodules.mfi_whu:MFIWHUDataModule",
    "mefb": "datamodules.mefb:MEFBDataModule",
    "sice": "datamodules.sice:SICEDataModule",
    "harvard_ct_mri": "datamodules.harvard:HarvardCTMRIDataModule",
    "harvard_pet_mri": "datamodules.harvard:HarvardPETMRIDataModule",
    "harvard_spect_mri": "datamodules.harvard:HarvardSPECTMRIDataModule",
    "cremad": "datamodules.cremad:CREMADDataModule",
    "ave": "datamodules.ave:AVEDataModule",
}

EVALUATORS: dict[str, str] = {
    # downstream evaluators (fusion_bench.evaluators.spec.EvaluatorSpec): `bench` and `fusion-bench downstream`
    "seg": "fusion_bench.evaluators.segmentation:SEGMENTATION",
    "det": "fusion_bench.evaluators.detection:DETECTION",
}


class UnknownNameError(KeyError):
    """An unknown method/dataset/evaluator name; the message lists the valid choices."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


def _lookup(kind: str, registry: dict[str, str], name: str) -> Any:
    if name not in registry:
        raise UnknownNameError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(registry))}")
    module_name, attr = registry[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def get_method(name: str) -> Any:
    """The method class (a FusionMethod or MultimodalClassifier subclass) registered as `name`."""
    return _lookup("method", METHODS, name)


def get_datamodule(name: str) -> Any:
    """The DataModule class registered as `name` (its `.dataset_class` is the Dataset)."""
    return _lookup("dataset", DATASETS, name)


def get_evaluator(name: str) -> Any:
    return _lookup("evaluator", EVALUATORS, name)
