"""float64 NumPy references for the box losses, written from the papers.

Boxes are ``[..., 4]`` arrays of corners ``(x1, y1, x2, y2)``. Each loss is
written the way its paper states it; ``eps`` sits where torchvision puts it
(the papers have no ``eps``), so ``eps=0`` gives the papers' formulas.

* IoU: Yu et al. 2016 (UnitBox), ``1 - |A ∩ B| / |A ∪ B|``.
* GIoU: Rezatofighi et al. 2019, Alg. 1: ``1 - IoU + |C \\ (A ∪ B)| / |C|``,
  C the smallest enclosing box.
* DIoU: Zheng et al. 2020, Eq. 6: ``1 - IoU + ρ²(b, b_gt) / c²``, ρ the
  distance of the centres, c the diagonal of C.
* CIoU: Zheng et al. 2020, Eqs. 8-11: ``DIoU + α v``,
  ``v = 4/π² (arctan(w_gt/h_gt) - arctan(w/h))²``, ``α = v / ((1 - IoU) + v)``.
* EIoU: Zhang et al. 2022, Eq. 9: ``1 - IoU + ρ²/c² + ρ²(w, w_gt)/C_w² +
  ρ²(h, h_gt)/C_h²``.
"""

import numpy as np


def _split(b):
  b = np.asarray(b, np.float64)
  return b[..., 0], b[..., 1], b[..., 2], b[..., 3]


def area(b):
  x1, y1, x2, y2 = _split(b)
  return (x2 - x1) * (y2 - y1)


def intersection(a, b):
  """Area of the overlap; 0 when the boxes do not overlap."""
  ax1, ay1, ax2, ay2 = _split(a)
  bx1, by1, bx2, by2 = _split(b)
  w = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
  h = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
  return w * h


def enclosing(a, b):
  """Width and height of the smallest box that holds both."""
  ax1, ay1, ax2, ay2 = _split(a)
  bx1, by1, bx2, by2 = _split(b)
  return (
    np.maximum(ax2, bx2) - np.minimum(ax1, bx1),
    np.maximum(ay2, by2) - np.minimum(ay1, by1),
  )


def centre(b):
  x1, y1, x2, y2 = _split(b)
  return (x1 + x2) / 2, (y1 + y2) / 2


def iou(a, b, eps=0.0):
  inter = intersection(a, b)
  union = area(a) + area(b) - inter
  return inter / (union + eps)


def iou_loss(pred, target, eps=1e-7):
  return 1 - iou(pred, target, eps)


def giou_loss(pred, target, eps=1e-7):
  inter = intersection(pred, target)
  union = area(pred) + area(target) - inter
  cw, ch = enclosing(pred, target)
  c = cw * ch
  return 1 - inter / (union + eps) + (c - union) / (c + eps)


def _rho2(pred, target):
  px, py = centre(pred)
  tx, ty = centre(target)
  return (px - tx) ** 2 + (py - ty) ** 2


def diou_loss(pred, target, eps=1e-7):
  cw, ch = enclosing(pred, target)
  return (
    1 - iou(pred, target, eps) + _rho2(pred, target) / (cw**2 + ch**2 + eps)
  )


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
  cw, ch = enclosing(a, b)
  c = cw * ch
  return inter / union - (c - union) / c


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
