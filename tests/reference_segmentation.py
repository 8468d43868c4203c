"""Float64 NumPy references for OHEM cross-entropy, deep supervision and the
asymmetric unified focal loss, written from their definitions (mmseg's OHEM
pixel sampler as described in its documentation; MONAI's and nnU-Net's deep
supervision; Yeung et al. 2022), with plain loops where that is clearer."""

import numpy as np


def log_softmax(x):
  x = np.asarray(x, np.float64)
  shifted = x - x.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


# OHEM (online hard example mining) cross-entropy.


def ohem_cross_entropy(
  logits, labels, threshold, min_kept, where=None, class_weights=None
):
  """Per pixel: -w_y log p_y where p_y < threshold or p_y is among the
  min_kept smallest true-class probabilities of the valid pixels (ties at
  the k-th all kept); 0 elsewhere."""
  log_p = log_softmax(logits)
  labels = np.asarray(labels)
  num_classes = log_p.shape[-1]
  valid = (labels >= 0) & (labels < num_classes)
  if where is not None:
    valid = valid & np.broadcast_to(np.asarray(where), labels.shape)
  ids = np.where(valid, labels, 0)
  log_py = np.take_along_axis(log_p, ids[..., None], -1)[..., 0]
  p = np.exp(log_py)
  kept = p < threshold
  valid_probs = np.sort(p[valid])
  if min_kept > 0 and valid_probs.size:
    if min_kept >= valid_probs.size:
      kept = np.ones_like(kept)
    else:
      kept = kept | (p <= valid_probs[min_kept - 1])
  kept = kept & valid
  w = 1.0 if class_weights is None else np.asarray(class_weights)[ids]
  return np.where(kept, -w * log_py, 0.0)


def ohem_mmseg_selection(logits, labels, threshold, min_kept):
  """mmseg's rule as its documentation states it: keep the pixels whose
  true-class probability is strictly below max(threshold, the sorted
  probability at index min(min_kept, n - 1))."""
  log_p = log_softmax(logits)
  p = np.exp(np.take_along_axis(log_p, np.asarray(labels)[..., None], -1))
  p = p[..., 0]
  sorted_p = np.sort(p.ravel())
  cut = max(threshold, sorted_p[min(min_kept, sorted_p.size - 1)])
  return p < cut


# Deep supervision: labels resized to each output.


def nearest_resize(labels, spatial):
  """Class ids [B, *S] to [B, *spatial]: each output cell takes the id at
  its centre, source index floor((j + 1/2) * n_in / n_out)."""
  out = np.asarray(labels)
  for axis, size in enumerate(spatial, start=1):
    n = out.shape[axis]
    index = np.floor((np.arange(size) + 0.5) * n / size).astype(int)
    out = np.take(out, np.minimum(index, n - 1), axis=axis)
  return out


def area_resize(targets, spatial):
  """Float targets [B, *S, C] to [B, *spatial, C]: the mean of each block."""
  t = np.asarray(targets, np.float64)
  factors = [n // s for n, s in zip(t.shape[1:-1], spatial)]
  out = np.zeros((t.shape[0], *spatial, t.shape[-1]))
  for cell in np.ndindex(*spatial):
    block = tuple(slice(c * f, (c + 1) * f) for c, f in zip(cell, factors))
    out[(slice(None), *cell)] = t[(slice(None), *block)].mean(
      axis=tuple(range(1, len(spatial) + 1))
    )
  return out


# Asymmetric unified focal loss (Yeung et al. 2022).


def asymmetric_unified_focal(
  probs,
  targets,
  axes,
  weight=0.5,
  delta=0.6,
  gamma=0.5,
  where=None,
  smooth=1e-7,
):
  """lambda L_maF + (1 - lambda) L_maFT, class 0 the background.

  L_maF: per pixel -(1 - delta) (1 - p_0)^gamma t_0 log p_0 - delta
  sum_{c >= 1} t_c log p_c, averaged over the valid pixels of each pooled
  group. L_maFT: the mean over classes of 1 - TI_0 and (1 - TI_c)^(1 - gamma)
  for c >= 1, TI_c = (TP + s) / (TP + delta FN + (1 - delta) FP + s).
  """
  p = np.asarray(probs, np.float64)
  t = np.asarray(targets, np.float64)
  valid = np.ones(p.shape[:-1]) if where is None else np.asarray(where) * 1.0
  num_classes = p.shape[-1]
  terms = []
  for c in range(num_classes):
    tp = np.sum(valid * p[..., c] * t[..., c], axis=axes)
    fn = np.sum(valid * (1 - p[..., c]) * t[..., c], axis=axes)
    fp = np.sum(valid * p[..., c] * (1 - t[..., c]), axis=axes)
    ti = (tp + smooth) / (tp + delta * fn + (1 - delta) * fp + smooth)
    terms.append(1 - ti if c == 0 else (1 - ti) ** (1 - gamma))
  tversky = np.mean(terms, axis=0)
  with np.errstate(divide="ignore"):
    log_p = np.log(p)
  ce = np.where(t > 0, -t * log_p, 0.0)
  focal = (1 - delta) * (1 - p[..., 0]) ** gamma * ce[..., 0]
  focal = focal + delta * ce[..., 1:].sum(-1)
  focal = np.sum(valid * focal, axis=axes) / np.sum(valid, axis=axes)
  return weight * focal + (1 - weight) * tversky
