"""float64 NumPy references for the detection and set-prediction losses.

Each is written the way its paper states it, with matrices where the paper
uses matrices, so that it checks the closed forms of the library:

* DFL: Li et al. 2020 (GFL), Eq. 6, with ``floor`` and two cross-entropies.
* SIoU: Gevorgyan 2022, the angle cost ``1 - 2 sin^2(arcsin(x) - pi/4)``,
  distance, shape (theta = 4) and IoU costs.
* alpha-IoU: He et al. 2021, Eqs. 4-7.
* DIoU / CIoU pairwise: Zheng et al. 2020 with torchvision's ``eps``.
* Rotated boxes: Gaussians ``N(mu, R diag(w^2, h^2) R^T / k + eps I)``;
  ProbIoU (Llerena et al. 2021) from the Bhattacharyya distance; KLD (Yang
  et al. 2021b) ``KL(N_p || N_t)``; GWD (Yang et al. 2021a) with the matrix
  square roots from eigendecompositions.
* Matching costs: DETR, Deformable DETR and Mask2Former's cost definitions.
* Heatmaps: CornerNet's (Law & Deng 2018) Eq. 1, before the division by N.
* Keypoints: COCO's object keypoint similarity, set by set.
* Seesaw (Wang et al. 2021): the matrix S = M * C and the re-balanced
  softmax of Eq. 2, row by row.
* GHM-C (Li et al. 2019): the unit-region histogram of the gradient norm,
  bin by bin, with mmdetection's edges and its division by the number of
  non-empty bins.
"""

import numpy as np

from tests import reference_boxes as boxes


def _f64(x):
  return np.asarray(x, np.float64)


def _log_softmax(x):
  x = _f64(x)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def _log_sigmoid(x):
  return -np.logaddexp(0.0, -_f64(x))


# DFL ---------------------------------------------------------------------------


def dfl(logits, y):
  """GFL Eq. 6: -((y_{i+1} - y) log S_i + (y - y_i) log S_{i+1})."""
  log_s = _log_softmax(logits)
  y = _f64(y)
  n = log_s.shape[-1]
  left = np.minimum(np.floor(y), n - 2).astype(int)  # y = n - 1: last pair
  right = left + 1
  take = lambda i: np.take_along_axis(log_s, i[..., None], -1)[..., 0]
  return -((right - y) * take(left) + (y - left) * take(right))


def integral(logits):
  s = np.exp(_log_softmax(logits))
  return (s * np.arange(s.shape[-1])).sum(-1)


# SIoU -------------------------------------------------------------------------


def siou_loss(pred, target, eps=1e-7):
  """Gevorgyan 2022: 1 - IoU + (Delta + Omega) / 2."""
  pred, target = _f64(pred), _f64(target)
  pcx, pcy = boxes.centre(pred)
  tcx, tcy = boxes.centre(target)
  sigma = np.sqrt((tcx - pcx) ** 2 + (tcy - pcy) ** 2)
  c_h = np.abs(tcy - pcy)  # angle cost's c_h
  x = c_h / sigma
  angle = 1 - 2 * np.sin(np.arcsin(x) - np.pi / 4) ** 2
  cw, ch = boxes.enclosing(pred, target)
  gamma = 2 - angle
  rho_x = (tcx - pcx) ** 2 / (cw**2 + eps)
  rho_y = (tcy - pcy) ** 2 / (ch**2 + eps)
  distance = (1 - np.exp(-gamma * rho_x)) + (1 - np.exp(-gamma * rho_y))
  pw, ph = pred[..., 2] - pred[..., 0], pred[..., 3] - pred[..., 1]
  tw, th = target[..., 2] - target[..., 0], target[..., 3] - target[..., 1]
  omega_w = np.abs(pw - tw) / (np.maximum(pw, tw) + eps)
  omega_h = np.abs(ph - th) / (np.maximum(ph, th) + eps)
  shape = (1 - np.exp(-omega_w)) ** 4 + (1 - np.exp(-omega_h)) ** 4
  return 1 - boxes.iou(pred, target, eps) + (distance + shape) / 2


# alpha-IoU ----------------------------------------------------------------------


def alpha_iou_loss(pred, target, power, eps=1e-7):
  return 1 - boxes.iou(pred, target, eps) ** power


def alpha_giou_loss(pred, target, power, eps=1e-7):
  """2-D or 3-D boxes."""
  inter = boxes.intersection(pred, target)
  union = boxes.area(pred) + boxes.area(target) - inter
  c = np.prod(boxes.enclosing_sides(pred, target), axis=-1)
  return (
    1 - (inter / (union + eps)) ** power + ((c - union) / (c + eps)) ** power
  )


def alpha_diou_loss(pred, target, power, eps=1e-7):
  """2-D or 3-D boxes."""
  c2 = np.sum(boxes.enclosing_sides(pred, target) ** 2, axis=-1)
  rho2 = boxes._rho2(pred, target)
  return (
    1 - boxes.iou(pred, target, eps) ** power + (rho2 / (c2 + eps)) ** power
  )


def alpha_ciou_loss(pred, target, power, eps=1e-7, alpha=None):
  """``alpha`` (CIoU's trade-off weight) fixed as in the gradient."""
  if alpha is None:
    alpha = boxes.ciou_alpha(pred, target, eps)
  return (
    alpha_diou_loss(pred, target, power, eps)
    + (alpha * boxes.ciou_v(pred, target)) ** power
  )


# Pairwise DIoU / CIoU (torchvision's values) ------------------------------------


def distance_box_iou(a, b, eps=1e-7):
  """2-D or 3-D boxes."""
  c2 = np.sum(boxes.enclosing_sides(a, b) ** 2, axis=-1)
  return boxes.iou(a, b) - boxes._rho2(a, b) / (c2 + eps)


def complete_box_iou(a, b, eps=1e-7):
  iou = boxes.iou(a, b)
  v = boxes.ciou_v(a, b)
  alpha = v / (1 - iou + v + eps)
  return distance_box_iou(a, b, eps) - alpha * v


# Rotated boxes --------------------------------------------------------------------


def gaussian(box, k, eps):
  """Mean and covariance of a rotated box (cx, cy, w, h, theta)."""
  box = _f64(box)
  c, s = np.cos(box[4]), np.sin(box[4])
  rot = np.array([[c, -s], [s, c]])
  cov = rot @ np.diag([box[2] ** 2 / k, box[3] ** 2 / k]) @ rot.T
  return box[:2], cov + eps * np.eye(2)


def _each(fn, pred, target):
  pred, target = _f64(pred), _f64(target)
  shape = np.broadcast_shapes(pred.shape[:-1], target.shape[:-1])
  pred = np.broadcast_to(pred, shape + (5,)).reshape(-1, 5)
  target = np.broadcast_to(target, shape + (5,)).reshape(-1, 5)
  return np.array([fn(p, t) for p, t in zip(pred, target)]).reshape(shape)


def bhattacharyya(p, t, eps=1e-7):
  mu1, s1 = gaussian(p, 12, eps)
  mu2, s2 = gaussian(t, 12, eps)
  s = (s1 + s2) / 2
  d = mu1 - mu2
  return d @ np.linalg.solve(s, d) / 8 + 0.5 * np.log(
    np.linalg.det(s) / np.sqrt(np.linalg.det(s1) * np.linalg.det(s2))
  )


def probiou_loss(pred, target, eps=1e-7):
  """Hellinger distance sqrt(1 - exp(-B)) = 1 - ProbIoU."""
  return _each(
    lambda p, t: np.sqrt(1 - np.exp(-bhattacharyya(p, t, eps))), pred, target
  )


def kld(p, t, eps=1e-7):
  """KL(N_p || N_t)."""
  mu_p, s_p = gaussian(p, 4, eps)
  mu_t, s_t = gaussian(t, 4, eps)
  inv_t = np.linalg.inv(s_t)
  d = mu_p - mu_t
  return 0.5 * (
    d @ inv_t @ d
    + np.trace(inv_t @ s_p)
    + np.log(np.linalg.det(s_t) / np.linalg.det(s_p))
    - 2
  )


def _sqrtm(m):
  vals, vecs = np.linalg.eigh(m)
  return vecs @ np.diag(np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def gwd2(p, t, eps=1e-7):
  """Squared 2-Wasserstein distance of the two Gaussians."""
  mu_p, s_p = gaussian(p, 4, eps)
  mu_t, s_t = gaussian(t, 4, eps)
  root = _sqrtm(s_p)
  d = mu_p - mu_t
  return d @ d + np.trace(s_p + s_t - 2 * _sqrtm(root @ s_t @ root))


def _normalise(d, fun, tau):
  f = np.log1p(d) if fun == "log1p" else np.sqrt(d)
  return 1 - 1 / (tau + f)


def kld_loss(pred, target, fun="log1p", tau=1.0, eps=1e-7):
  return _normalise(_each(lambda p, t: kld(p, t, eps), pred, target), fun, tau)


def gwd_loss(pred, target, fun="log1p", tau=1.0, eps=1e-7):
  return _normalise(_each(lambda p, t: gwd2(p, t, eps), pred, target), fun, tau)


# Matching costs ---------------------------------------------------------------


def softmax_class_cost(logits, labels):
  """DETR: -p[label]."""
  p = np.exp(_log_softmax(logits))
  return -p[..., np.asarray(labels)]


def focal_class_cost(logits, labels, alpha=0.25, gamma=2.0):
  """Deformable DETR: focal cost of the positive minus that of the negative."""
  x = _f64(logits)
  p = 1 / (1 + np.exp(-x))
  pos = alpha * (1 - p) ** gamma * -_log_sigmoid(x)
  neg = (1 - alpha) * p**gamma * -_log_sigmoid(-x)
  labels = np.asarray(labels)
  return pos[..., labels] - neg[..., labels]


def box_l1_cost(a, b):
  return np.abs(_f64(a)[:, None, :] - _f64(b)[None, :, :]).sum(-1)


def mask_dice_cost(logits, targets, smooth=1.0):
  p = 1 / (1 + np.exp(-_f64(logits)))
  t = _f64(targets)
  out = np.zeros((p.shape[0], t.shape[0]))
  for i in range(p.shape[0]):
    for j in range(t.shape[0]):
      out[i, j] = 1 - (2 * (p[i] * t[j]).sum() + smooth) / (
        p[i].sum() + t[j].sum() + smooth
      )
  return out


def _bce(x, y):
  return -(y * _log_sigmoid(x) + (1 - y) * _log_sigmoid(-x))


def mask_bce_cost(logits, targets):
  x, t = _f64(logits), _f64(targets)
  return np.array([[_bce(xi, tj).mean() for tj in t] for xi in x])


def mask_focal_cost(logits, targets, alpha=0.25, gamma=2.0):
  """Mask2Former's focal cost: the focal loss of a positive pixel weighted by
  the target, that of a negative by one minus it, averaged over pixels."""
  x, t = _f64(logits), _f64(targets)
  p = 1 / (1 + np.exp(-x))
  pos = alpha * (1 - p) ** gamma * _bce(x, 1.0)
  neg = (1 - alpha) * p**gamma * _bce(x, 0.0)
  return np.array(
    [[(tj * pi + (1 - tj) * ni).mean() for tj in t] for pi, ni in zip(pos, neg)]
  )


# Heatmaps, keypoints, long-tail classes -------------------------------------------


def gaussian_focal(logits, heatmap, alpha=2.0, gamma=4.0):
  """CornerNet Eq. 1: -(1 - p)^a log p at y = 1, else
  -(1 - y)^b p^a log(1 - p)."""
  x, y = _f64(logits), _f64(heatmap)
  log_p, log_1mp = _log_sigmoid(x), _log_sigmoid(-x)
  p, one_minus_p = np.exp(log_p), np.exp(log_1mp)
  positive = -(one_minus_p**alpha) * log_p
  negative = -((1 - y) ** gamma) * p**alpha * log_1mp
  return np.where(y == 1, positive, negative)


def keypoint_oks_loss(pred, target, visible, area, sigmas):
  """1 - OKS of each set: COCO's sum over visible keypoints of
  exp(-d^2 / (2 s^2 k^2)), k = 2 sigma, s^2 = area (+ spacing(1)), divided
  by the number (weight) of visible keypoints; 0 without one."""
  pred, target = _f64(pred), _f64(target)
  shape = pred.shape[:-2]
  k = pred.shape[-2]
  visible = np.broadcast_to(_f64(visible), shape + (k,)).reshape(-1, k)
  area = np.broadcast_to(_f64(area), shape).reshape(-1)
  kappa = 2 * _f64(sigmas)
  out = []
  for p, t, v, s2 in zip(
    pred.reshape(-1, k, 2), target.reshape(-1, k, 2), visible, area
  ):
    if v.sum() == 0:
      out.append(0.0)
      continue
    d2 = ((p - t) ** 2).sum(-1)
    e = d2 / (2 * (s2 + np.spacing(1)) * kappa**2)
    out.append(1 - (v * np.exp(-e)).sum() / v.sum())
  return np.array(out).reshape(shape)


def seesaw(logits, labels, counts, p=0.8, q=2.0, eps=1e-2, frozen=None):
  """-log(e^{z_i} / (e^{z_i} + sum_{j != i} S_ij e^{z_j})), S = M * C with
  M_ij = (N_j / N_i)^p where N_j < N_i and C_ij = (s_j / max(s_i, eps))^q
  where that ratio exceeds 1, s = softmax of ``frozen`` (default: the
  logits; pass the point of evaluation to hold C constant, as the loss's
  gradient does)."""
  x = _f64(logits)
  frozen = x if frozen is None else _f64(frozen)
  c = x.shape[-1]
  n = np.maximum(_f64(counts), 1)
  sigma = np.exp(_log_softmax(frozen)).reshape(-1, c)
  out = []
  for z, s, i in zip(x.reshape(-1, c), sigma, np.ravel(labels)):
    if not 0 <= i < c:
      out.append(0.0)
      continue
    m = np.where(n < n[i], (n / n[i]) ** p, 1.0)
    ratio = s / max(s[i], eps)
    comp = np.where(ratio > 1, ratio**q, 1.0)
    weights = m * comp
    weights[i] = 1.0
    e = np.exp(z - z.max())
    out.append(-np.log(e[i] / (weights * e).sum()))
  return np.array(out).reshape(x.shape[:-1])


def ghm_c(logits, targets, bins=10, valid=None, frozen=None):
  """Per-element GHM-C: BCE * beta / N with beta = N / (n * R_b), R_b the
  valid entries whose g = |sigmoid(x) - y| falls in bin b (edges i / bins,
  the last one raised by 1e-6) and n the number of non-empty bins. g is
  taken at ``frozen`` (default: the logits), as the detached weights of the
  loss."""
  x, y = _f64(logits), _f64(targets)
  frozen = x if frozen is None else _f64(frozen)
  valid = np.ones(x.shape, bool) if valid is None else np.asarray(valid)
  g = np.abs(1 / (1 + np.exp(-frozen)) - y)
  total = max(valid.sum(), 1.0)
  edges = np.arange(bins + 1) / bins
  edges[-1] += 1e-6
  beta = np.zeros(x.shape)
  nonempty = 0
  for i in range(bins):
    inside = (g >= edges[i]) & (g < edges[i + 1]) & valid
    if inside.sum():
      beta[inside] = total / inside.sum()
      nonempty += 1
  if nonempty:
    beta /= nonempty
  return beta * _bce(x, y) / total
