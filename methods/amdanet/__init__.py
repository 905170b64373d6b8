"""AMDANet: attention-driven multi-perspective discrepancy alignment for RGB-infrared fusion and segmentation
(Zhong et al., ICCV 2025)."""

from fusion_bench.methods.amdanet.model import (
    AMDANetModel,
    GlobalAlignment,
    LocalAlignment,
    SemanticConsistencyInference,
    mutual_feature_mask,
)
from fusion_bench.methods.amdanet.module import AMDANet

__all__ = ["AMDANet", "AMDANetModel", "GlobalAlignment", "LocalAlignment", "SemanticConsistencyInference",
           "mutual_feature_mask"]
