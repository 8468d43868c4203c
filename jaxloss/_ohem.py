"""Online hard example mining: cross-entropy on the hardest pixels."""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics


def _kth_smallest(scores: jax.Array, k: int) -> jax.Array:
  """The ``k``-th smallest (1-based) of the nonnegative ``scores`` (``+inf``
  allowed, no NaN), over all entries.

  Nonnegative floats order as their bit patterns do, so this sorts one
  integer operand: XLA:CPU sorts integers several times faster than floats
  (whose comparator handles NaN and signed zeros).
  """
  bits = jnp.int32 if scores.dtype.itemsize == 4 else jnp.int64
  keys = lax.sort(lax.bitcast_convert_type(scores.ravel(), bits))
  return lax.bitcast_convert_type(keys[k - 1], scores.dtype)


def _min_kept(fn: str, min_kept) -> int:
  if isinstance(min_kept, (bool, np.bool_)) or not isinstance(
    min_kept, (int, np.integer)
  ):
    _checks.fail(
      fn,
      f"min_kept must be a Python int (it sets a static shape), got "
      f"{min_kept!r}",
      TypeError,
    )
  if min_kept < 0:
    _checks.fail(fn, f"min_kept must be >= 0, got {min_kept}")
  return operator.index(min_kept)


def ohem_cross_entropy_loss(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  threshold: float = 0.7,
  min_kept: int = 100_000,
  where: ArrayLike | None = None,
  class_weights: ArrayLike | None = None,
) -> jax.Array:
  r"""Softmax cross-entropy on the hard pixels only (online hard example
  mining, OHEM), per pixel.

  With :math:`p_i` the softmax probability of pixel :math:`i`'s true class,
  :math:`\tau` the ``threshold`` and :math:`p_{(k)}` the :math:`k`-th
  smallest :math:`p_i` over the valid pixels (:math:`k` = ``min_kept``),
  pixel :math:`i` is kept if

  .. math::
    p_i < \tau \quad\text{or}\quad p_i \le p_{(k)},

  so every pixel predicted below :math:`\tau` is kept, and at least the
  :math:`k` hardest pixels whatever :math:`\tau`. A kept pixel has the loss
  :math:`-w_{y_i} \log p_i`, any other 0.

  Args:
    logits: Float logits ``[..., C]``.
    labels: Integer class ids of shape ``logits.shape[:-1]``.
    threshold: :math:`\tau`: pixels whose true-class probability is below
      it are hard. ``0`` keeps exactly the ``min_kept`` hardest (up to
      ties); ``1`` keeps every pixel not predicted with certainty.
    min_kept: The least number of valid pixels kept (all of them if there
      are fewer), over the whole input. A Python int: it sets a static
      shape. mmseg's ``min_kept`` counts per image: pass ``min_kept * B``.
    where: Optional boolean mask broadcastable to ``logits.shape[:-1]``; a
      masked pixel is never kept and never counted. For an ignore label:
      ``where=labels != 255``.
    class_weights: Optional ``[C]`` weights :math:`w_c` of the kept pixels'
      losses (default 1).

  Returns:
    The loss of each pixel, shape ``logits.shape[:-1]``, float32 (float64 for
    float64 logits); 0 where the pixel is not kept or masked. Reduce it
    yourself: ``.mean()`` is mmseg's default (the sum over the kept pixels
    divided by the number of pixels), ``.sum() / where.sum()`` mmseg's
    ``avg_non_ignore=True``.

  Convention:
    As mmseg's ``OHEMPixelSampler`` with a threshold followed by its
    cross-entropy: the selection reads the unweighted softmax probabilities,
    and the class weight multiplies the kept losses. The selection is a
    constant of the derivative (``stop_gradient``): the gradient is that of
    the masked cross-entropy. Shapes are static: the :math:`k`-th smallest
    probability comes from a sort of all pixels (masked ones sorted last)
    at a static :math:`k = \min(\text{min\_kept}, \text{pixels})`, no
    boolean indexing, so it runs under ``jit`` and ``vmap`` (under ``vmap``,
    ``min_kept`` counts per mapped example). mmseg keeps the pixels strictly
    below :math:`\max(\tau, p_{(k+1)})`; this is the same set unless
    probabilities tie at :math:`p_{(k)}` (here all of the tied pixels are
    kept, so never fewer than ``min_kept``) or ``min_kept`` reaches the
    number of valid pixels (here all are kept; mmseg drops the easiest). A
    class id outside ``[0, C)`` at a valid pixel is treated as masked, and
    reported under ``checkify`` inside :func:`jaxloss.value_checks`. NaN
    logits at a valid pixel give NaN there. bf16/fp16 logits are computed
    in float32.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # True-class probabilities 1/2, 0.88 and 0.98: only the first is
    >>> # below 0.7, and min_kept=2 keeps the second too.
    >>> logits = jnp.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
    >>> jaxloss.ohem_cross_entropy_loss(logits, jnp.zeros(3, jnp.int32),
    ...                                 min_kept=2)
    Array([0.6931472 , 0.12692805, 0.        ], dtype=float32)

  References:
    Shrivastava, Gupta, Girshick, "Training Region-based Object Detectors
    with Online Hard Example Mining", CVPR 2016.
    https://arxiv.org/abs/1604.03540 ;
    Wu, Shen, van den Hengel, "High-performance Semantic Segmentation Using
    Very Deep Fully Convolutional Networks", 2016.
    https://arxiv.org/abs/1604.04339
  """
  fn = "ohem_cross_entropy_loss"
  logits = _checks.as_float(fn, "logits", logits, min_rank=1)
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    _checks.fail(
      fn,
      f"labels must be integer class ids (the selection needs each "
      f"pixel's true class), got dtype {labels.dtype}",
      TypeError,
    )
  if labels.shape != logits.shape[:-1]:
    _checks.fail(
      fn,
      f"labels.shape {labels.shape} must equal logits.shape[:-1] "
      f"{logits.shape[:-1]} (one class id a pixel)",
    )
  mask = _checks.mask_for(fn, where, labels.shape, broadcast=True)
  threshold = _checks.scalar(fn, "threshold", threshold, low=0.0, high=1.0)
  min_kept = _min_kept(fn, min_kept)
  num_classes = logits.shape[-1]
  dtype = _numerics.accum_dtype(logits.dtype)
  weights = None
  if class_weights is not None:
    weights = _checks.nonnegative_vector(
      fn, "class_weights", class_weights, num_classes
    ).astype(dtype)
  _checks.debug_labels_in_range(fn, labels, num_classes, mask)

  x = logits.astype(dtype)
  ids = _numerics.class_ids(labels)
  valid = (ids >= 0) & (ids < num_classes)
  if mask is not None:
    valid = valid & mask
    x = jnp.where(mask[..., None], x, 0)  # masked pixels: no gradient
  ids = jnp.where(valid, ids, 0)
  log_p = jnp.take_along_axis(
    jax.nn.log_softmax(x, axis=-1), ids[..., None], axis=-1
  )[..., 0]

  prob = lax.stop_gradient(jnp.exp(log_p))
  nan = jnp.isnan(prob)
  kept = prob < threshold
  k = min(min_kept, prob.size)
  if k:
    # Invalid (and NaN) pixels sort last; fewer than k valid pixels give
    # +inf: all valid pixels are kept.
    scores = jnp.where(valid & ~nan, prob, jnp.inf)
    kept = kept | (prob <= _kth_smallest(scores, k))
  kept = valid & (kept | nan)
  loss = -log_p if weights is None else -weights[ids] * log_p
  return jnp.where(kept, loss, 0)
