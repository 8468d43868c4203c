"""Float64 NumPy reference of the Lovász losses, written from the paper.

Berman, Rannen Triki, Blaschko, "The Lovász-Softmax loss: A tractable surrogate
for the optimization of the intersection-over-union measure in neural
networks", CVPR 2018, Algorithm 1 and Equations (9)-(10):

  sort the errors in decreasing order (permutation pi);
  Jaccard loss of the first k sorted pixels predicted wrong:
    J(k) = 1 - |gt minus first-k foreground| / |gt union first-k background|,
  i.e. with T foreground pixels, F_k and B_k the foreground and background
  counts among the first k:  J(k) = 1 - (T - F_k) / (T + B_k);
  Lovász gradient g_k = J(k) - J(k - 1), with g_1 = J(1);
  loss = sum_k e_pi(k) g_k, and d loss / d e_pi(k) = g_k.

Each function returns the loss and its gradient with respect to its input,
computed analytically (no autodiff). Ignored pixels are removed by boolean
indexing, as in the paper's code; the gradient there is 0.
"""

import numpy as np


def lovasz_grad(gt_sorted):
  """g_k = J(k) - J(k - 1) for binary ground truth in sorted order."""
  gt_sorted = np.asarray(gt_sorted, np.float64)
  total = gt_sorted.sum()
  intersection = total - np.cumsum(gt_sorted)
  union = total + np.cumsum(1.0 - gt_sorted)
  jaccard = 1.0 - intersection / union
  jaccard[1:] = jaccard[1:] - jaccard[:-1]
  return jaccard


def lovasz_flat(errors, gt):
  """Loss and d loss / d errors of one group of pixels (errors not sorted)."""
  errors = np.asarray(errors, np.float64)
  if errors.size == 0:
    return 0.0, errors.copy()
  order = np.argsort(-errors, kind="stable")
  g = lovasz_grad(np.asarray(gt, np.float64)[order])
  grad = np.zeros_like(errors)
  grad[order] = g
  return float(errors[order] @ g), grad


def lovasz_softmax_flat(probs, labels, classes="present", class_weights=None):
  """Lovász-softmax of pixels ``probs [P, C]``, ``labels [P]``.

  The mean of the selected classes' losses, or with ``class_weights [C]``
  their weighted mean (0 when the selected weights sum to 0). Returns the
  loss and its gradient with respect to ``probs``.
  """
  probs = np.asarray(probs, np.float64)
  labels = np.asarray(labels)
  num_classes = probs.shape[1]
  if class_weights is None:
    class_weights = np.ones(num_classes)
  class_weights = np.asarray(class_weights, np.float64)
  if isinstance(classes, str):
    class_list = list(range(num_classes))
  else:
    class_list = [int(c) for c in classes]
  losses, grads, weights = [], [], []
  for c in class_list:
    fg = (labels == c).astype(np.float64)
    if classes == "present" and fg.sum() == 0:
      continue
    errors = np.abs(fg - probs[:, c])
    loss, d_errors = lovasz_flat(errors, fg)
    grad = np.zeros_like(probs)
    grad[:, c] = d_errors * np.sign(probs[:, c] - fg)
    losses.append(loss)
    grads.append(grad)
    weights.append(class_weights[c])
  if not losses or sum(weights) == 0:
    return 0.0, np.zeros_like(probs)
  weights = np.asarray(weights) / sum(weights)
  return float(weights @ losses), np.tensordot(weights, grads, axes=1)


def lovasz_softmax(
  probs,
  labels,
  where=None,
  classes="present",
  per_image=False,
  class_weights=None,
):
  """Lovász-softmax of ``probs [B, ..., C]`` with optional ``where [B, ...]``.

  ``per_image=False`` pools every pixel of the batch (one loss);
  ``per_image=True`` returns one loss per image ``[B]``. The gradient has the
  shape of ``probs``; with ``per_image=True`` it is that of the sum of the
  per-image losses.
  """
  probs = np.asarray(probs, np.float64)
  labels = np.asarray(labels)
  if where is None:
    where = np.ones(labels.shape, bool)
  where = np.asarray(where, bool)
  groups = range(probs.shape[0]) if per_image else [slice(None)]
  grad = np.zeros_like(probs)
  losses = []
  for b in groups:
    p, y, w = probs[b], labels[b], where[b]
    num_classes = p.shape[-1]
    flat_p = p.reshape(-1, num_classes)
    keep = w.reshape(-1)
    loss, g = lovasz_softmax_flat(
      flat_p[keep], y.reshape(-1)[keep], classes, class_weights
    )
    full = np.zeros_like(flat_p)
    full[keep] = g
    grad[b] = full.reshape(p.shape)
    losses.append(loss)
  return (np.array(losses) if per_image else losses[0]), grad


def lovasz_hinge_flat(logits, labels):
  """Binary Lovász hinge of pixels ``logits [P]``, ``labels [P]`` in {0, 1}."""
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels, np.float64)
  signs = 2.0 * labels - 1.0
  errors = 1.0 - logits * signs
  loss, d_relu = lovasz_flat(np.maximum(errors, 0.0), labels)
  return loss, d_relu * (errors > 0) * -signs


def lovasz_hinge(logits, labels, where=None, per_image=False):
  """Lovász hinge of ``logits [B, ...]``; pooled or one loss per image."""
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels, np.float64)
  if where is None:
    where = np.ones(labels.shape, bool)
  where = np.asarray(where, bool)
  groups = range(logits.shape[0]) if per_image else [slice(None)]
  grad = np.zeros_like(logits)
  losses = []
  for b in groups:
    x, y, w = logits[b], labels[b], where[b]
    keep = w.reshape(-1)
    loss, g = lovasz_hinge_flat(x.reshape(-1)[keep], y.reshape(-1)[keep])
    full = np.zeros(x.size)
    full[keep] = g
    grad[b] = full.reshape(x.shape)
    losses.append(loss)
  return (np.array(losses) if per_image else losses[0]), grad
