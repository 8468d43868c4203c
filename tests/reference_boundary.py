"""Float64 NumPy references of the distance transform and boundary losses.

Written from the papers, one image and one class at a time, with
``scipy.ndimage.distance_transform_edt`` for the distances (what the authors'
code uses):

* Kervadec et al. 2019, boundary loss: the signed map of one class is
  ``neg * edt(neg) - (edt(pos) - 1) * pos`` (0 when the class is absent or
  fills the image), the loss the mean of ``p * phi``.
* Karimi & Salcudean 2019, Hausdorff-DT loss: the field of a region is
  ``edt(fg) + edt(bg)`` (0 without a boundary), the loss the mean of
  ``(p - t)^2 (d_p^alpha + d_t^alpha)``.
* Karimi & Salcudean 2019, Hausdorff-ER loss: the squared error of one image
  and class convolved with the normalised cross (``scipy.ndimage.convolve``,
  zeros past the border), minus 1/2, clipped at 0 and min-max rescaled, K
  times; the loss the mean of ``sum_k k^alpha f_k``. Masked pixels are 0 at
  every erosion and out of the min and max.
* Shit et al. 2021, clDice: soft erosion = min over the 3-wide cross, soft
  dilation = max over the 3^d box (windows clipped at the border), the
  iterated soft skeleton of their Algorithm 1, and 1 - the harmonic mean of
  topology precision and sensitivity.

Pooling follows the library: sums over the pooled axes ``axes`` of
``[B, *spatial, C]``, then the mean over the selected classes.
"""

import itertools

import numpy as np
from scipy import ndimage


def edt_groups(mask, axes, sampling=None):
  """scipy's transform of each group (the axes not in ``axes`` are a batch).

  A group without a False element is ``inf`` (the library's convention).
  """
  mask = np.asarray(mask, bool)
  axes = tuple(a % mask.ndim for a in axes)
  batch = [a for a in range(mask.ndim) if a not in axes]
  moved = np.moveaxis(mask, batch + list(axes), range(mask.ndim))
  out = np.zeros(moved.shape)
  for idx in np.ndindex(moved.shape[: len(batch)]):
    group = moved[idx]
    if group.all():
      out[idx] = np.inf
    else:
      out[idx] = ndimage.distance_transform_edt(group, sampling=sampling)
  return np.moveaxis(out, range(mask.ndim), batch + list(axes))


def _per_image_class(fn, masks, sampling):
  """Applies ``fn(mask_of_one_image_and_class, sampling)`` over ``[B, ..., C]``."""
  out = np.zeros(masks.shape)
  for b in range(masks.shape[0]):
    for c in range(masks.shape[-1]):
      out[b, ..., c] = fn(masks[b, ..., c], sampling)
  return out


def signed_distance(pos, sampling=None):
  """Kervadec's map of one region: outside d(x, G), inside -(d(x, bg) - 1)."""
  pos = np.asarray(pos, bool)
  neg = ~pos
  if not pos.any() or not neg.any():
    return np.zeros(pos.shape)
  return (
    neg * ndimage.distance_transform_edt(neg, sampling=sampling)
    - (ndimage.distance_transform_edt(pos, sampling=sampling) - 1) * pos
  )


def distance_field(fg, sampling=None):
  """Karimi's field of one region: distance to its boundary, either side."""
  fg = np.asarray(fg, bool)
  if not fg.any() or fg.all():
    return np.zeros(fg.shape)
  return ndimage.distance_transform_edt(
    fg, sampling=sampling
  ) + ndimage.distance_transform_edt(~fg, sampling=sampling)


def _class_mean(per_class, true, classes):
  """Mean over the selected classes of ``per_class`` (``[..., C]``)."""
  num_classes = per_class.shape[-1]
  if isinstance(classes, str):
    weights = np.ones(per_class.shape)
    if classes == "present":
      weights = (true > 0).astype(np.float64)
  else:
    weights = np.broadcast_to(
      np.isin(np.arange(num_classes), classes).astype(np.float64),
      per_class.shape,
    )
  total = weights.sum(-1)
  return np.where(
    total > 0,
    (weights * per_class).sum(-1) / np.where(total > 0, total, 1),
    0.0,
  )


def _prepare(probs, targets, where):
  """Float64 probabilities and targets (0 at masked pixels), regions, mask."""
  p = np.asarray(probs, np.float64)
  t = np.asarray(targets, np.float64)
  valid = (
    np.ones(p.shape[:-1], bool) if where is None else np.asarray(where, bool)
  )[..., None]
  return p * valid, t * valid, (t > 0.5) & valid, valid


def _pixel_mean(terms, t, valid, axes, classes):
  count = np.sum(np.broadcast_to(valid, terms.shape)[..., :1], axis=axes)
  per_class = np.where(
    count > 0, terms.sum(axis=axes) / np.where(count > 0, count, 1), 0.0
  )
  return _class_mean(per_class, t.sum(axis=axes), classes)


def boundary(probs, targets, axes, where=None, classes="all", sampling=None):
  p, t, regions, valid = _prepare(probs, targets, where)
  phi = _per_image_class(signed_distance, regions, sampling)
  return _pixel_mean(p * phi, t, valid, axes, classes)


def hausdorff_dt(
  probs, targets, axes, alpha=2.0, where=None, classes="all", sampling=None
):
  p, t, regions, valid = _prepare(probs, targets, where)
  d_t = _per_image_class(distance_field, regions, sampling)
  d_p = _per_image_class(distance_field, (p > 0.5) & valid, sampling)
  terms = (p - t) ** 2 * (d_p**alpha + d_t**alpha)
  return _pixel_mean(terms, t, valid, axes, classes)


def log_hausdorff_dt(probs, targets, axes, **kwargs):
  return np.log1p(hausdorff_dt(probs, targets, axes, **kwargs))


def cross_kernel(ndim):
  """The pixel and its two neighbours along each axis, each weighing
  ``1 / (2 ndim + 1)``."""
  kernel = np.zeros((3,) * ndim)
  kernel[(1,) * ndim] = 1
  for axis in range(ndim):
    for side in (0, 2):
      index = [1] * ndim
      index[axis] = side
      kernel[tuple(index)] = 1
  return kernel / kernel.sum()


def eroded_errors(error, valid, alpha, erosions):
  """``sum_k k^alpha f_k`` of one image's squared-error map ``f_0``."""
  kernel = cross_kernel(error.ndim)
  total = np.zeros(error.shape)
  for k in range(1, erosions + 1):
    error = ndimage.convolve(error, kernel, mode="constant", cval=0.0) - 0.5
    error = np.where(valid & ~(error < 0), error, 0.0)
    if valid.any():
      high, low = error[valid].max(), error[valid].min()
      if high > low:
        error = np.where(valid, (error - low) / (high - low), 0.0)
    total += k**alpha * error
  return total


def hausdorff_er(
  probs, targets, axes, alpha=2.0, erosions=10, where=None, classes="all"
):
  p, t, _, valid = _prepare(probs, targets, where)
  error = (p - t) ** 2
  total = np.zeros(error.shape)
  for b in range(error.shape[0]):
    for c in range(error.shape[-1]):
      total[b, ..., c] = eroded_errors(
        error[b, ..., c], valid[b, ..., 0], alpha, erosions
      )
  return _pixel_mean(total, t, valid, axes, classes)


def _window(x, offsets, reduce, fill):
  """``reduce`` over ``x`` shifted by each offset (``fill`` past the border)."""
  spatial = x.ndim - 2
  padded = np.pad(
    x, [(0, 0)] + [(1, 1)] * spatial + [(0, 0)], constant_values=fill
  )
  out = None
  for off in offsets:
    index = (
      (slice(None),)
      + tuple(slice(1 + o, 1 + o + n) for o, n in zip(off, x.shape[1:-1]))
      + (slice(None),)
    )
    out = padded[index] if out is None else reduce(out, padded[index])
  return out


def soft_erode(x):
  spatial = x.ndim - 2
  cross = [tuple(0 for _ in range(spatial))]
  for a in range(spatial):
    for s in (-1, 1):
      cross.append(tuple(s if b == a else 0 for b in range(spatial)))
  return _window(x, cross, np.minimum, np.inf)


def soft_dilate(x):
  box = list(itertools.product((-1, 0, 1), repeat=x.ndim - 2))
  return _window(x, box, np.maximum, -np.inf)


def soft_skeleton(x, iterations=3):
  """Algorithm 1 of Shit et al.: soft-skeletonize by iterated opening."""
  relu = lambda v: np.maximum(v, 0)
  img = np.asarray(x, np.float64)
  skel = relu(img - soft_dilate(soft_erode(img)))
  for _ in range(iterations):
    img = soft_erode(img)
    delta = relu(img - soft_dilate(soft_erode(img)))
    skel = skel + relu(delta - skel * delta)
  return skel


def cldice(
  probs, targets, axes, iterations=3, smooth=1.0, where=None, classes="all"
):
  p, t, _, _ = _prepare(probs, targets, where)
  skel_p, skel_t = soft_skeleton(p, iterations), soft_skeleton(t, iterations)

  def ratio(num, den):
    num, den = num + smooth, den + smooth
    return np.where(den == 0, 1.0, num / np.where(den == 0, 1, den))

  prec = ratio((skel_p * t).sum(axis=axes), skel_p.sum(axis=axes))
  sens = ratio((skel_t * p).sum(axis=axes), skel_t.sum(axis=axes))
  both = prec + sens
  per_class = 1 - np.where(
    both == 0, 0.0, 2 * prec * sens / np.where(both == 0, 1, both)
  )
  return _class_mean(per_class, t.sum(axis=axes), classes)
