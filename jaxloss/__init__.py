"""Segmentation and detection losses for JAX."""

from jaxloss._focal import focal_loss
from jaxloss._focal import softmax_focal_loss
from jaxloss._overlap import dice_loss
from jaxloss._overlap import generalized_dice_loss
from jaxloss._overlap import iou_loss
from jaxloss._overlap import tversky_loss

__version__ = "0.1.0"

__all__ = (
    "dice_loss",
    "focal_loss",
    "generalized_dice_loss",
    "iou_loss",
    "softmax_focal_loss",
    "tversky_loss",
)
