"""float64 NumPy references for the box losses, written from the papers.

Boxes are ``[..., 4]`` arrays of corners ``(x1, y1, x2, y2)``, or 3-D boxes
``[..., 6]`` ``(x1, y1, z1, x2, y2, z2)`` for IoU, GIoU and DIoU (the
papers' definitions with volumes, the 3-D enclosing box and the 3-D centre
distance). Each loss is written the way its paper states it; ``eps`` sits
where torchvision puts it (the papers have no ``eps``), so ``eps=0`` gives
the papers' formulas.

* IoU: Yu et al. 2016 (UnitBox), ``1 - |A ∩ B| / |A ∪ B|``.
* GIoU: Rezatofighi et al. 2019, Alg. 1: ``1 - IoU + |C \\ (A ∪ B)| / |C|``,
  C the smallest enclosing box.
* DIoU: Zheng et al. 2020, Eq. 6: ``1 - IoU + ρ²(b, b_gt) / c²``, ρ the
  distance of the centres, c the diagonal of C.
* CIoU: Zheng et al. 2020, Eqs. 8-11: ``DIoU + α v``,
  ``v = 4/π² (arctan(w_gt/h_gt) - arctan(w/h))²``, ``α = v / ((1 - IoU) + v)``.
* EIoU: Zhang et al. 2022, Eq. 9: ``1 - IoU + ρ²/c² + ρ²(w, w_gt)/C_w² +
  ρ²(h, h_gt)/C_h²``.
* MONAI's ``box_iou``, ``box_giou`` and ``BoxGIoULoss``: the same with
  float32's machine epsilon added to the union and the enclosing volume.
* Bounded IoU: Tychsen-Smith & Petersson 2018, the IoU bounds of each
  coordinate through a smooth L1, with mmdetection's ``eps``.
* Balanced L1: Pang et al. 2019, Eq. 8, with mmdetection's ``beta``.
"""

import numpy as np


def _split(b):
  """The four numbers of 2-D boxes."""
  b = np.asarray(b, np.float64)
  return b[..., 0], b[..., 1], b[..., 2], b[..., 3]


def _corners(b):
  """Lower and upper corners ``[..., d]`` of 2-D or 3-D boxes."""
  b = np.asarray(b, np.float64)
  d = b.shape[-1] // 2
  return b[..., :d], b[..., d:]


def area(b):
  """Area of 2-D boxes, volume of 3-D boxes."""
  lo, hi = _corners(b)
  return np.prod(hi - lo, axis=-1)


def intersection(a, b):
  """Area (volume) of the overlap; 0 when the boxes do not overlap."""
  alo, ahi = _corners(a)
  blo, bhi = _corners(b)
  sides = np.clip(np.minimum(ahi, bhi) - np.maximum(alo, blo), 0, None)
  return np.prod(sides, axis=-1)


def enclosing_sides(a, b):
  """Sides ``[..., d]`` of the smallest box that holds both."""
  alo, ahi = _corners(a)
  blo, bhi = _corners(b)
  return np.maximum(ahi, bhi) - np.minimum(alo, blo)


def enclosing(a, b):
  """Width and height (and depth) of the smallest box that holds both."""
  return tuple(np.moveaxis(enclosing_sides(a, b), -1, 0))


def centre(b):
  lo, hi = _corners(b)
  return tuple(np.moveaxis((lo + hi) / 2, -1, 0))


def iou(a, b, eps=0.0):
  inter = intersection(a, b)
  union = area(a) + area(b) - inter
  return inter / (union + eps)


def iou_loss(pred, target, eps=1e-7):
  return 1 - iou(pred, target, eps)


def giou_loss(pred, target, eps=1e-7):
  inter = intersection(pred, target)
  union = area(pred) + area(target) - inter
  c = np.prod(enclosing_sides(pred, target), axis=-1)
  return 1 - inter / (union + eps) + (c - union) / (c + eps)


def _rho2(pred, target):
  """Squared distance of the centres, in 2-D or 3-D."""
  return sum((p - t) ** 2 for p, t in zip(centre(pred), centre(target)))


def diou_loss(pred, target, eps=1e-7):
  c2 = np.sum(enclosing_sides(pred, target) ** 2, axis=-1)
  return 1 - iou(pred, target, eps) + _rho2(pred, target) / (c2 + eps)


def ciou_v(pred, target):
  px1, py1, px2, py2 = _split(pred)
  tx1, ty1, tx2, ty2 = _split(target)
  return (4 / np.pi**2) * (
    np.arctan((tx2 - tx1) / (ty2 - ty1)) - np.arctan((px2 - px1) / (py2 - py1))
  ) ** 2


def ciou_alpha(pred, target, eps=1e-7):
  v = ciou_v(pred, target)
  return v / (1 - iou(pred, target, eps) + v + eps)


def ciou_loss(pred, target, eps=1e-7, alpha=None):
  """CIoU; ``alpha`` fixes the trade-off weight (the paper treats it as a
  constant when differentiating), default: its value at ``pred``."""
  if alpha is None:
    alpha = ciou_alpha(pred, target, eps)
  return diou_loss(pred, target, eps) + alpha * ciou_v(pred, target)


def eiou_loss(pred, target, eps=1e-7):
  px1, py1, px2, py2 = _split(pred)
  tx1, ty1, tx2, ty2 = _split(target)
  cw, ch = enclosing(pred, target)
  return (
    diou_loss(pred, target, eps)
    + ((px2 - px1) - (tx2 - tx1)) ** 2 / (cw**2 + eps)
    + ((py2 - py1) - (ty2 - ty1)) ** 2 / (ch**2 + eps)
  )


def pairwise(fn, a, b):
  """``fn`` of every box of ``a`` ``[N, 4]`` with every box of ``b`` ``[M, 4]``."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  return np.array([[fn(x, y) for y in b] for x in a])


def giou(a, b):
  """GIoU itself (Rezatofighi et al. 2019, Alg. 1), no eps."""
  inter = intersection(a, b)
  union = area(a) + area(b) - inter
  c = np.prod(enclosing_sides(a, b), axis=-1)
  return inter / union - (c - union) / c


# MONAI (monai.data.box_utils): float32's machine epsilon on the union in
# box_iou, on the union and the (clamped) enclosing volume in box_giou;
# BoxGIoULoss is 1 - the GIoU of each pair.
MONAI_EPS = 2.0**-23


def monai_box_iou(a, b):
  inter = intersection(a, b)
  return inter / (area(a) + area(b) - inter + MONAI_EPS)


def monai_box_giou(a, b):
  inter = intersection(a, b)
  union = area(a) + area(b) - inter
  c = np.prod(np.clip(enclosing_sides(a, b), 0, None), axis=-1)
  return inter / (union + MONAI_EPS) - (c - union) / (c + MONAI_EPS)


def monai_giou_loss(pred, target):
  return 1 - monai_box_giou(target, pred)


# Bounded IoU (Tychsen-Smith & Petersson 2018) ---------------------------------


def smooth_l1(c, beta):
  c = np.asarray(c, np.float64)
  return np.where(c < beta, 0.5 * c**2 / beta, c - 0.5 * beta)


def bounded_iou_costs(pred, target, eps=1e-3):
  """``[..., 4]``: 1 - the IoU bound of x, y (position: the target's size
  against twice the centre shift) and of w, h (size ratio)."""
  p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
  costs = []
  for lo, hi in ((0, 2), (1, 3)):
    size_p, size_t = p[..., hi] - p[..., lo], t[..., hi] - t[..., lo]
    shift = np.abs(
      (t[..., lo] + t[..., hi]) / 2 - (p[..., lo] + p[..., hi]) / 2
    )
    costs.append(
      1 - np.maximum((size_t - 2 * shift) / (size_t + 2 * shift + eps), 0)
    )
    costs.append(
      1 - np.minimum(size_t / (size_p + eps), size_p / (size_t + eps))
    )
  return np.stack(costs, axis=-1)


def bounded_iou_loss(pred, target, beta=0.2, eps=1e-3):
  return smooth_l1(bounded_iou_costs(pred, target, eps), beta).sum(-1)


# Balanced L1 (Pang et al. 2019) -------------------------------------------------


def balanced_l1(pred, target, alpha=0.5, gamma=1.5, beta=1.0):
  """Eq. 8, ``b`` from ``alpha ln(b + 1) = gamma``; ``beta`` as mmdetection
  places it (the threshold, ``alpha beta`` and ``b x / beta`` in the log)."""
  x = np.abs(np.asarray(pred, np.float64) - np.asarray(target, np.float64))
  b = np.exp(gamma / alpha) - 1
  inlier = alpha / b * (b * x + 1) * np.log(b * x / beta + 1) - alpha * x
  outlier = gamma * x + gamma / b - alpha * beta
  return np.where(x < beta, inlier, outlier)


def balanced_l1_gradient(pred, target, alpha=0.5, gamma=1.5):
  """Eq. 7 (``beta = 1``): the gradient ``alpha ln(b |x| + 1)`` for
  ``|x| < 1``, ``gamma`` beyond, with the sign of ``x = pred - target``."""
  x = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
  b = np.exp(gamma / alpha) - 1
  magnitude = np.where(np.abs(x) < 1, alpha * np.log(b * np.abs(x) + 1), gamma)
  return np.sign(x) * magnitude


def convert(b, source, target):
  """Box format conversion through corners, one format at a time."""
  b = np.asarray(b, np.float64)
  p, q, r, s = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
  if source == "xyxy":
    x1, y1, x2, y2 = p, q, r, s
  elif source == "xywh":
    x1, y1, x2, y2 = p, q, p + r, q + s
  else:  # cxcywh
    x1, y1, x2, y2 = p - r / 2, q - s / 2, p + r / 2, q + s / 2
  if target == "xyxy":
    out = (x1, y1, x2, y2)
  elif target == "xywh":
    out = (x1, y1, x2 - x1, y2 - y1)
  else:
    out = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
  return np.stack(out, axis=-1)
