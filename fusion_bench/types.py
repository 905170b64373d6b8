"""Sample-key vocabulary and task enums shared by datasets, methods and the runner."""

from __future__ import annotations

from enum import Enum


class Task(str, Enum):
    """What a dataset is for; decides which metrics and evaluators apply."""

    IVIF = "ivif"  # infrared-visible image fusion
    MFIF = "mfif"  # multi-focus image fusion
    MEIF = "meif"  # multi-exposure image fusion
    MEDICAL = "medical"  # medical image fusion
    CLASSIFICATION = "classification"  # multimodal (audio-visual) classification

    @property
    def is_fusion(self) -> bool:
        return self is not Task.CLASSIFICATION


# Sample dictionary keys. Modalities keep their own names; they are never stacked into channels.
VIS = "vis"  # visible image, float [0, 1], 3xHxW (or 1xHxW for gray visible)
IR = "ir"  # infrared/thermal image, float [0, 1], 1xHxW
GT = "gt"  # all-in-focus / well-exposed reference image, float [0, 1]
MASK = "mask"  # long HxW class indices, IGNORE_INDEX where unlabeled
VALID = "valid"  # float HxW, 1 on the source image and 0 on padding added by a training crop (optional)
BOXES = "boxes"  # float Nx4 absolute pixel xyxy
LABELS = "labels"  # long N box class indices
AUDIO = "audio"  # float spectrogram 1xFxT
FRAMES = "frames"  # float video frames TxCxHxW (or CxHxW for a single frame)
TARGET = "target"  # long scalar class index (classification)
NAME = "name"  # str sample identifier (file stem)

IGNORE_INDEX = 255
