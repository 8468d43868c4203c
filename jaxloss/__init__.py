"""Segmentation and detection losses for JAX."""

from jaxloss._boundary import boundary_loss
from jaxloss._boundary import cldice_loss
from jaxloss._boundary import hausdorff_dt_loss
from jaxloss._boundary import hausdorff_er_loss
from jaxloss._boundary import log_hausdorff_dt_loss
from jaxloss._boundary import soft_skeleton
from jaxloss._boxes import balanced_l1_loss
from jaxloss._boxes import bounded_iou_loss
from jaxloss._boxes import box_ciou_loss
from jaxloss._boxes import box_convert
from jaxloss._boxes import box_diou_loss
from jaxloss._boxes import box_eiou_loss
from jaxloss._boxes import box_giou_loss
from jaxloss._boxes import box_iou
from jaxloss._boxes import box_iou_loss
from jaxloss._boxes import box_siou_loss
from jaxloss._boxes import complete_box_iou
from jaxloss._boxes import distance_box_iou
from jaxloss._boxes import generalized_box_iou
from jaxloss._checks import value_checks
from jaxloss._deep_supervision import deep_supervision_loss
from jaxloss._detection import COCO_KEYPOINT_SIGMAS
from jaxloss._detection import gaussian_focal_loss
from jaxloss._detection import ghm_classification_loss
from jaxloss._detection import keypoint_oks_loss
from jaxloss._detection import seesaw_loss
from jaxloss._dfl import distribution_focal_loss
from jaxloss._dfl import distribution_integral
from jaxloss._distance import distance_transform
from jaxloss._focal import focal_loss
from jaxloss._focal import quality_focal_loss
from jaxloss._focal import softmax_focal_loss
from jaxloss._focal import varifocal_loss
from jaxloss._lovasz import lovasz_hinge
from jaxloss._lovasz import lovasz_softmax
from jaxloss._matching import box_l1_cost
from jaxloss._matching import focal_class_cost
from jaxloss._matching import mask_bce_cost
from jaxloss._matching import mask_dice_cost
from jaxloss._matching import mask_focal_cost
from jaxloss._matching import softmax_class_cost
from jaxloss._ohem import ohem_cross_entropy_loss
from jaxloss._overlap import dice_loss
from jaxloss._overlap import generalized_dice_loss
from jaxloss._overlap import iou_loss
from jaxloss._overlap import mcc_loss
from jaxloss._overlap import tversky_loss
from jaxloss._rotated import rotated_box_gwd_loss
from jaxloss._rotated import rotated_box_kld_loss
from jaxloss._rotated import rotated_box_probiou_loss
from jaxloss._unified_focal import asymmetric_unified_focal_loss
from jaxloss._wasserstein import generalized_wasserstein_dice_loss

__version__ = "0.1.0"

__all__ = (
  "COCO_KEYPOINT_SIGMAS",
  "asymmetric_unified_focal_loss",
  "balanced_l1_loss",
  "boundary_loss",
  "bounded_iou_loss",
  "box_ciou_loss",
  "box_convert",
  "box_diou_loss",
  "box_eiou_loss",
  "box_giou_loss",
  "box_iou",
  "box_iou_loss",
  "box_l1_cost",
  "box_siou_loss",
  "cldice_loss",
  "complete_box_iou",
  "deep_supervision_loss",
  "dice_loss",
  "distance_box_iou",
  "distance_transform",
  "distribution_focal_loss",
  "distribution_integral",
  "focal_class_cost",
  "focal_loss",
  "gaussian_focal_loss",
  "generalized_box_iou",
  "generalized_dice_loss",
  "generalized_wasserstein_dice_loss",
  "ghm_classification_loss",
  "hausdorff_dt_loss",
  "hausdorff_er_loss",
  "iou_loss",
  "keypoint_oks_loss",
  "log_hausdorff_dt_loss",
  "lovasz_hinge",
  "lovasz_softmax",
  "mask_bce_cost",
  "mask_dice_cost",
  "mask_focal_cost",
  "mcc_loss",
  "ohem_cross_entropy_loss",
  "quality_focal_loss",
  "rotated_box_gwd_loss",
  "rotated_box_kld_loss",
  "rotated_box_probiou_loss",
  "seesaw_loss",
  "soft_skeleton",
  "softmax_class_cost",
  "softmax_focal_loss",
  "tversky_loss",
  "value_checks",
  "varifocal_loss",
)
