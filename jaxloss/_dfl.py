"""Distribution focal loss and its integral (Generalized Focal Loss).

A box side is predicted as a discrete distribution over ``n`` bins
``0, 1, ..., n - 1`` (the last axis of ``logits``); the coordinate is its
expected value (:func:`distribution_integral`), and the loss
(:func:`distribution_focal_loss`) puts the mass on the two bins around the
continuous target.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics


def _bin_logits(fn: str, logits) -> jax.Array:
  """``logits`` ``[..., n]`` with ``n >= 2``, floating, in the accumulation dtype."""
  logits = _checks.as_float(fn, "logits", logits, min_rank=1)
  if logits.shape[-1] < 2:
    _checks.fail(
      fn,
      "logits must have at least 2 bins on the last axis, got "
      f"logits.shape {logits.shape}",
    )
  return logits.astype(_numerics.accum_dtype(logits.dtype))


def _bins(n: int, ndim: int, dtype) -> jax.Array:
  """The bin values ``0, ..., n - 1``, shaped to broadcast on the last axis."""
  return jnp.arange(n, dtype=dtype).reshape((1,) * (ndim - 1) + (n,))


def distribution_focal_loss(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  where: ArrayLike | None = None,
) -> jax.Array:
  r"""Distribution focal loss (DFL) of bin logits against continuous targets.

  With :math:`S = \mathrm{softmax}(x)` over the :math:`n` bins
  :math:`0, \dots, n - 1` and a target :math:`y` between the bins
  :math:`y_i = \lfloor y \rfloor` and :math:`y_{i+1} = y_i + 1`,

  .. math::
    \ell = -\big((y_{i+1} - y) \log S_{y_i} + (y - y_i) \log S_{y_{i+1}}\big)
         = -\sum_{k=0}^{n-1} \max(0, 1 - |k - y|) \log S_k .

  The cross-entropy to the two neighbouring bins, each weighted by its
  closeness to the target; its minimum puts mass :math:`y_{i+1} - y` and
  :math:`y - y_i` on them, so the expected value
  (:func:`distribution_integral`) is :math:`y`.

  Args:
    logits: Float bin logits ``[..., n]``, ``n >= 2`` (GFL and YOLOv8 use
      ``n = 16`` or ``17`` per box side).
    labels: Float targets of shape ``logits.shape[:-1]``, in ``[0, n - 1]``
      (a box side's distance to the anchor point in units of the stride).
    where: Optional boolean mask broadcastable to ``logits.shape[:-1]``;
      masked entries return 0 and carry no gradient.

  Returns:
    The loss of each entry, shape ``logits.shape[:-1]``, in float32 (float64
    for float64 logits). Reduce it yourself: GFL averages over the four sides
    and weights each positive location by its quality score.

  Convention:
    The two-bin weights are the "hat" :math:`\max(0, 1 - |k - y|)`, so a
    target on a bin (:math:`y = k`, the last bin :math:`y = n - 1`
    included) is plain cross-entropy to that bin: no clamping of the target
    below :math:`n - 1` as some implementations need. The loss is linear in
    :math:`y` between bins, and its gradient with respect to ``labels`` is
    :math:`\log S_{y_i} - \log S_{y_{i+1}}`. A target outside
    ``[0, n - 1]`` keeps only the part of the hat that falls on a bin (0
    beyond one bin from either end); inside ``jaxloss.value_checks()``,
    ``checkify`` reports it. :math:`\log S` is ``log_softmax``, finite for
    logits of :math:`\pm 10^4`. Masked entries carry no gradient, even with
    NaN logits or targets.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Uniform over 4 bins: S = 1/4 on every bin, loss = log 4 for any y.
    >>> jaxloss.distribution_focal_loss(jnp.zeros((2, 4)),
    ...                                 jnp.array([1.25, 3.0]))
    Array([1.386294, 1.386294], dtype=float32)

  References:
    Li, Wang, Wu, Chen, Hu, Li, Tang, Yang, "Generalized Focal Loss: Learning
    Qualified and Distributed Bounding Boxes for Dense Object Detection",
    NeurIPS 2020. https://arxiv.org/abs/2006.04388
  """
  fn = "distribution_focal_loss"
  x = _bin_logits(fn, logits)
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.floating):
    _checks.fail(
      fn,
      "labels must have a floating dtype, got "
      f"{labels.dtype} (cast with labels.astype(jnp.float32))",
      TypeError,
    )
  if labels.shape != x.shape[:-1]:
    _checks.fail(
      fn,
      f"labels.shape {labels.shape} must equal "
      f"logits.shape[:-1] {x.shape[:-1]} (one target per entry, "
      "the bins on the last axis of logits)",
    )
  mask = _checks.mask_for(fn, where, x.shape[:-1], broadcast=True)
  n = x.shape[-1]
  y = labels.astype(x.dtype)
  if _checks.checks_enabled():
    bad = ~((y >= 0) & (y <= n - 1))
    if mask is not None:
      bad = bad & mask
    _checks.value_check(
      ~jnp.any(bad),
      f"{fn}: labels must lie in "
      f"[0, {n - 1}] (the bins of logits) where where is "
      "True",
    )
  if mask is not None:  # Double where: masked entries get no gradient at all.
    x = jnp.where(mask[..., None], x, 0)
    y = jnp.where(mask, y, 0)
  weights = jnp.maximum(
    0, 1 - jnp.abs(_bins(n, x.ndim, x.dtype) - y[..., None])
  )
  loss = -jnp.sum(weights * jax.nn.log_softmax(x, axis=-1), axis=-1)
  if mask is not None:
    loss = jnp.where(mask, loss, 0)
  return loss


def distribution_integral(logits: ArrayLike) -> jax.Array:
  r"""Expected bin value of bin logits: the coordinate a DFL head predicts.

  .. math::
    \hat y = \sum_{k=0}^{n-1} k \, \mathrm{softmax}(x)_k .

  Args:
    logits: Float bin logits ``[..., n]``, ``n >= 2``.

  Returns:
    ``[...]`` (``logits.shape[:-1]``), in ``[0, n - 1]``, in float32 (float64
    for float64 logits). Multiply by the stride and add it to (or subtract
    it from) the anchor point to get box corners.

  Convention:
    Bins are the integers ``0, ..., n - 1``, the targets of
    :func:`distribution_focal_loss`; GFL's "Integral" layer. Differentiable
    everywhere; finite for logits of :math:`\pm 10^4`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Equal mass on bins 1 and 2 of 4: expected value 1.5.
    >>> jaxloss.distribution_integral(jnp.array([-1e4, 0., 0., -1e4]))
    Array(1.5, dtype=float32)

  References:
    Li, Wang, Wu, Chen, Hu, Li, Tang, Yang, "Generalized Focal Loss: Learning
    Qualified and Distributed Bounding Boxes for Dense Object Detection",
    NeurIPS 2020. https://arxiv.org/abs/2006.04388
  """
  x = _bin_logits("distribution_integral", logits)
  n = x.shape[-1]
  return jnp.sum(
    jax.nn.softmax(x, axis=-1) * _bins(n, x.ndim, x.dtype), axis=-1
  )
