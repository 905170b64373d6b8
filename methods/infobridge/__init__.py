"""InfoBridge (ICCV 2025): concat late fusion + conditional NCE with a learned critic; see README.md."""

from fusion_bench.methods.infobridge.module import InfoBridgeClassifier

__all__ = ["InfoBridgeClassifier"]
