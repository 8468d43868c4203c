"""Float64 NumPy references for the focal and overlap losses, from the papers.

Written directly from the definitions (Lin et al. 2017; Milletari et al. 2016;
Rahman and Wang 2016; Salehi et al. 2017; Abraham and Khan 2019; Sudre et al.
2017), with plain loops over classes where that is clearer. Gradients of these
references are taken by central differences in float64: ``numerical_grad``,
the one the whole suite uses (the box, detection and Lovász references too).
"""

import numpy as np


def numerical_grad(f, x, eps=1e-6):
  """Central-difference gradient of the scalar ``f`` at ``x`` (float64)."""
  x = np.asarray(x, np.float64)
  grad = np.zeros_like(x)
  for i in np.ndindex(x.shape):
    up, down = x.copy(), x.copy()
    up[i] += eps
    down[i] -= eps
    grad[i] = (f(up) - f(down)) / (2 * eps)
  return grad


def one_hot(labels, num_classes):
  return (np.asarray(labels)[..., None] == np.arange(num_classes)).astype(
    np.float64
  )


# Focal (Lin et al. 2017).


def _focal_factor(p_t, gamma, reduced_threshold):
  """(1 - p_t)^gamma, or the reduced factor of Sergievskiy and Ponamarev
  (2019): 1 below p_t = threshold, ((1 - p_t) / threshold)^gamma above."""
  if reduced_threshold is None:
    return (1 - p_t) ** gamma
  reduced = ((1 - p_t) / reduced_threshold) ** gamma
  return np.where(p_t < reduced_threshold, 1.0, reduced)


def sigmoid_focal(
  logits,
  labels,
  alpha=0.25,
  gamma=2.0,
  normalized=False,
  reduced_threshold=None,
  where=None,
):
  """-alpha_t f(p_t) [y log p + (1 - y) log(1 - p)], elementwise, with
  f = (1 - p_t)^gamma (or the reduced factor); ``alpha`` a scalar or one per
  class on the last axis; ``normalized`` divides by the sum of f over the
  valid elements."""
  x = np.asarray(logits, np.float64)
  y = np.asarray(labels, np.float64)
  log_p = -np.logaddexp(0, -x)  # log sigmoid(x)
  log_1mp = -np.logaddexp(0, x)  # log sigmoid(-x)
  ce = -(y * log_p + (1 - y) * log_1mp)
  p, p_neg = np.exp(log_p), np.exp(log_1mp)
  p_t = y * p + (1 - y) * p_neg
  if reduced_threshold is None:
    # 1 - p_t without cancellation: y (1 - p) + (1 - y) p.
    factor = (y * p_neg + (1 - y) * p) ** gamma
  else:
    factor = _focal_factor(p_t, gamma, reduced_threshold)
  loss = factor * ce
  if alpha is not None:
    a = np.asarray(alpha, np.float64)
    loss = (a * y + (1 - a) * (1 - y)) * loss
  valid = np.ones(x.shape) if where is None else np.asarray(where) * 1.0
  valid = np.broadcast_to(valid, x.shape)
  if normalized:
    total = np.sum(valid * factor)
    loss = loss / total if total > 0 else 0 * loss
  return valid * loss


def softmax_focal(
  logits,
  targets,
  alpha=None,
  gamma=2.0,
  normalized=False,
  reduced_threshold=None,
):
  """-sum_c alpha_c t_c f(p_c) log p_c over the last axis, f as above;
  ``normalized`` divides by sum_i sum_c t_ic f(p_ic)."""
  x = np.asarray(logits, np.float64)
  t = np.asarray(targets, np.float64)
  log_p = (
    x
    - np.log(np.sum(np.exp(x - x.max(-1, keepdims=True)), -1, keepdims=True))
    - x.max(-1, keepdims=True)
  )
  p = np.exp(log_p)
  factor = _focal_factor(p, gamma, reduced_threshold)
  a = 1.0 if alpha is None else np.asarray(alpha, np.float64)
  loss = -np.sum(a * t * factor * log_p, axis=-1)
  if normalized:
    loss = loss / np.sum(t * factor)
  return loss


# Overlap losses: per-class statistics over the pooled valid pixels.


def overlap_stats(
  probs, targets, axes, where=None, squared=False, soft_labels=True
):
  """I, P, T per class, pooled over ``axes`` (a tuple of leading axes).

  ``where`` has one flag a pixel or one a pixel and class. With
  ``soft_labels`` (and not ``squared``) the intersection is Wang et al.'s
  (2023) ``(|p| + |t| - |p - t|) / 2`` with L1 norms over the pooled axes.
  """
  p = np.asarray(probs, np.float64)
  t = np.asarray(targets, np.float64)
  if where is not None:
    valid = np.asarray(where, np.float64)
    if valid.shape != p.shape:
      valid = valid[..., None]
    p, t = p * valid, t * valid
  if soft_labels and not squared:
    inter = (
      np.sum(np.abs(p), axis=axes)
      + np.sum(np.abs(t), axis=axes)
      - np.sum(np.abs(p - t), axis=axes)
    ) / 2
  else:
    inter = np.sum(p * t, axis=axes)
  pred = np.sum(p**2 if squared else p, axis=axes)
  true = np.sum(t**2 if squared else t, axis=axes)
  return inter, pred, true


def selected(true, classes="all"):
  """1 for each selected class, 0 otherwise, in the shape of ``true``."""
  num_classes = true.shape[-1]
  if isinstance(classes, str):
    keep = np.ones_like(true) if classes == "all" else (true > 0) * 1.0
  else:
    chosen = np.zeros(num_classes)
    chosen[np.asarray(classes)] = 1
    keep = np.broadcast_to(chosen, true.shape)
  return keep


def class_mean(per_class, true, classes="all", class_weights=None):
  """Weighted mean over the selected classes (0 if none), last axis."""
  w = selected(true, classes)
  if class_weights is not None:
    w = w * np.asarray(class_weights, np.float64)
  den = w.sum(-1)
  num = (w * per_class).sum(-1)
  return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def _ratio(num, den):
  """num / den, with 0/0 counted as a perfect score of 1."""
  return np.where(den == 0, 1.0, num / np.where(den == 0, 1, den))


def dice(
  probs,
  targets,
  axes,
  where=None,
  smooth=1.0,
  squared=False,
  classes="all",
  class_weights=None,
  soft_labels=True,
  log_loss=False,
):
  i, p, t = overlap_stats(probs, targets, axes, where, squared, soft_labels)
  score = _ratio(2 * i + smooth, p + t + smooth)
  # smp's log form: -log of the score, clamped below at 1e-7.
  per_class = -np.log(np.maximum(score, 1e-7)) if log_loss else 1 - score
  return class_mean(per_class, t, classes, class_weights)


def iou(
  probs,
  targets,
  axes,
  where=None,
  smooth=1.0,
  squared=False,
  classes="all",
  class_weights=None,
  soft_labels=True,
  log_loss=False,
):
  i, p, t = overlap_stats(probs, targets, axes, where, squared, soft_labels)
  score = _ratio(i + smooth, p + t - i + smooth)
  # smp's log form: -log of the score, clamped below at 1e-7.
  per_class = -np.log(np.maximum(score, 1e-7)) if log_loss else 1 - score
  return class_mean(per_class, t, classes, class_weights)


def tversky(
  probs,
  targets,
  axes,
  alpha=0.5,
  beta=0.5,
  gamma=1.0,
  where=None,
  smooth=1.0,
  squared=False,
  classes="all",
  class_weights=None,
  soft_labels=True,
):
  i, p, t = overlap_stats(probs, targets, axes, where, squared, soft_labels)
  fp, fn = p - i, t - i
  per_class = 1 - _ratio(i + smooth, i + alpha * fp + beta * fn + smooth)
  per_class = np.maximum(per_class, 0) ** gamma
  return class_mean(per_class, t, classes, class_weights)


def mcc(
  probs,
  targets,
  axes,
  where=None,
  smooth=1.0,
  classes="all",
  class_weights=None,
):
  """1 - Matthews correlation of the soft confusion counts (Abhishek and
  Hamarneh 2021), per class; 0/0 counts as correlation 0."""
  p = np.asarray(probs, np.float64)
  t = np.asarray(targets, np.float64)
  valid = np.ones(p.shape)
  if where is not None:
    w = np.asarray(where, np.float64)
    valid = valid * (w if w.shape == p.shape else w[..., None])
  tp = np.sum(valid * p * t, axis=axes)
  fp = np.sum(valid * p * (1 - t), axis=axes)
  fn = np.sum(valid * (1 - p) * t, axis=axes)
  tn = np.sum(valid * (1 - p) * (1 - t), axis=axes)
  num = tp * tn - fp * fn
  den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) + smooth
  per_class = 1 - np.where(den == 0, 0.0, num / np.where(den == 0, 1, den))
  per_class = np.where(np.sum(valid, axis=axes) > 0, per_class, 0.0)
  return class_mean(per_class, tp + fn, classes, class_weights)


def generalized_dice(
  probs,
  targets,
  axes,
  weighting="square",
  where=None,
  smooth=1.0,
  squared=False,
  classes="all",
  class_weights=None,
  soft_labels=True,
):
  """Sudre et al. 2017; an absent class takes the largest finite weight."""
  i, p, t = overlap_stats(probs, targets, axes, where, squared, soft_labels)
  if weighting == "uniform":
    w = np.ones_like(t)
  else:
    power = 2 if weighting == "square" else 1
    with np.errstate(divide="ignore"):
      w = 1.0 / t**power
    w = np.atleast_1d(w)
    flat = w.reshape(-1, w.shape[-1])
    for row in flat:
      finite = np.isfinite(row)
      row[~finite] = row[finite].max() if finite.any() else 1.0
    w = flat.reshape(w.shape)
  keep = selected(t, classes)
  if class_weights is not None:
    keep = keep * np.asarray(class_weights, np.float64)
  w = w * keep
  num = 2 * np.sum(w * i, -1) + smooth
  den = np.sum(w * (p + t), -1) + smooth
  return 1 - _ratio(num, den)


# Generalised Wasserstein Dice (Fidon et al. 2017; Tilborghs et al. 2020).


def generalized_wasserstein_dice(
  probs,
  targets,
  distance_matrix,
  axes,
  weighting="default",
  where=None,
  smooth=1.0,
):
  """1 - (2 TP + s) / (2 TP + E + s), pooled over ``axes``.

  M is divided by its largest entry; W_i = sum_{l,c} t_il M[l, c] p_ic (the
  Wasserstein distance for a one-hot target). Each pixel weighs
  a_i = sum_l alpha_l t_il, TP = sum_i a_i (1 - W_i). "default":
  alpha_l = M[l, 0] (the background is class 0) and E = sum_i W_i; "gdl":
  alpha_l = 1 / (V_l + 1) with V_l = sum_i t_il in the pooled group and
  E = sum_i a_i W_i.
  """
  p = np.asarray(probs, np.float64)
  t = np.asarray(targets, np.float64)
  m = np.asarray(distance_matrix, np.float64)
  if m.max() > 0:
    m = m / m.max()
  if where is not None:
    t = t * np.asarray(where, np.float64)[..., None]
  num_classes = p.shape[-1]
  w = np.zeros(p.shape[:-1])
  for l in range(num_classes):
    for c in range(num_classes):
      w += t[..., l] * m[l, c] * p[..., c]
  if weighting == "default":
    alpha = m[:, 0]
  else:  # one weight per class and pooled group, broadcast to the pixels
    alpha = np.expand_dims(1 / (np.sum(t, axis=axes) + 1), axes)
  a = np.sum(alpha * t, axis=-1)
  true_pos = np.sum(a * (1 - w), axis=axes)
  error = np.sum(w if weighting == "default" else a * w, axis=axes)
  return 1 - _ratio(2 * true_pos + smooth, 2 * true_pos + error + smooth)
