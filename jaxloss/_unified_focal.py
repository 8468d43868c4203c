"""Unified focal loss: an asymmetric focal and focal Tversky loss in one."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics
from jaxloss import _region
from jaxloss._checks import Axis


def _unit(fn: str, name: str, value):
  return _checks.scalar(fn, name, value, low=0.0, high=1.0)


def asymmetric_unified_focal_loss(
  probs: ArrayLike,
  labels: ArrayLike,
  *,
  weight: float = 0.5,
  delta: float = 0.6,
  gamma: float = 0.5,
  axis: Axis = None,
  where: ArrayLike | None = None,
  smooth: float = 1e-7,
) -> jax.Array:
  r"""Asymmetric unified focal loss (Yeung et al.), pooled over ``axis``.

  Class 0 is the background, classes :math:`1, \dots, C - 1` the rare
  foreground. The asymmetric focal loss suppresses only the easy background
  pixels, the asymmetric focal Tversky loss enhances only the foreground
  classes:

  .. math::
    \mathcal{L}_{aF} = \frac{1}{N} \sum_i \Big( -(1 - \delta)
      (1 - p_{i0})^\gamma \, t_{i0} \log p_{i0}
      - \delta \sum_{c \ge 1} t_{ic} \log p_{ic} \Big),

  .. math::
    \mathcal{L}_{aFT} = \frac{1}{C} \Big( (1 - \mathrm{TI}_0)
      + \sum_{c \ge 1} (1 - \mathrm{TI}_c)^{1 - \gamma} \Big), \qquad
    \mathrm{TI}_c = \frac{I_c + s}{I_c + \delta (T_c - I_c)
      + (1 - \delta)(P_c - I_c) + s},

  over the :math:`N` valid pixels of a pooled group, with :math:`I, P, T`
  as in :func:`jaxloss.dice_loss` (product intersection), and the loss is
  :math:`\lambda \mathcal{L}_{aF} + (1 - \lambda) \mathcal{L}_{aFT}`.

  Args:
    probs: Probabilities ``[..., C]``, ``C >= 2``, class 0 the background
      (for one sigmoid channel ``q``, pass
      ``jnp.stack([1 - q, q], -1)``).
    labels: Integer class ids of shape ``probs.shape[:-1]``, or targets
      (one-hot or soft) of shape ``probs.shape``.
    weight: :math:`\lambda \in [0, 1]`, the weight of the focal term.
    delta: :math:`\delta \in [0, 1]`: the foreground's weight in the focal
      term and the false negatives' in the Tversky index (``> 0.5`` favours
      recall).
    gamma: :math:`\gamma \in [0, 1]`: background suppression in the focal
      term, foreground enhancement (exponent :math:`1 - \gamma`) in the
      Tversky term.
    axis: Axes to pool over; default every axis but the class axis (the
      whole batch is one group). ``axis=(1, 2)`` on ``[B, H, W, C]`` gives
      one loss an image, as the authors' code (which then takes the mean).
    where: Optional boolean mask of shape ``probs.shape[:-1]`` (one flag a
      pixel); a masked pixel counts for nothing. For an ignore label:
      ``where=labels != 255``.
    smooth: :math:`s`, added to the numerator and denominator of each
      Tversky index (the authors' code and MONAI use 1e-7).

  Returns:
    The loss with the pooled axes and the class axis removed (a scalar by
    default), float32 (float64 for float64 probabilities).

  Convention:
    The definition of the paper (Eqs. for :math:`\mathcal{L}_{maF}` and
    :math:`\mathcal{L}_{maFT}`), with the authors' normalisation: the focal
    term sums the classes of a pixel and averages the valid pixels, the
    Tversky term averages the classes. :math:`\lambda` weighs the focal
    term, as in the paper and MONAI; the authors' code gives it to the
    Tversky term instead (the same at the default 0.5). Compared with
    MONAI's ``AsymmetricUnifiedFocalLoss``: MONAI averages the focal term
    over the classes as well (so its focal term is :math:`1/C` of this one
    for :math:`C > 2`), clips the probabilities to
    :math:`[10^{-7}, 1 - 10^{-7}]` and only pools per image; its older
    releases were binary only. Here :math:`\log p` is taken at
    :math:`\max(p, \text{tiny})` (the smallest normal float), so a zero
    probability gives a large finite loss and a zero gradient instead of
    infinity, and probabilities are not clipped anywhere else; the
    background factor :math:`(1 - p_0)^\gamma` and the foreground
    :math:`(1 - \mathrm{TI})^{1 - \gamma}` have derivative 0, not infinity,
    where their base is 0 (MONAI's binary release gave NaN at a perfect
    foreground). A group with no valid pixel has focal term 0, and a class
    with :math:`I = P = T = 0` Tversky loss 0. ``axis=(1, 2)`` equals
    ``jax.vmap`` over the batch. Sums run in float32 for bf16/fp16 input.
    Probabilities outside [0, 1] and class ids outside ``[0, C)`` at valid
    pixels are reported under ``checkify`` inside
    :func:`jaxloss.value_checks`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # A perfect prediction: both terms vanish.
    >>> labels = jnp.array([[0, 1], [0, 0]])
    >>> jaxloss.asymmetric_unified_focal_loss(jnp.eye(2)[labels], labels)
    Array(0., dtype=float32)

  References:
    Yeung, Sala, Schönlieb, Rundo, "Unified Focal loss: Generalising Dice
    and cross entropy-based losses to handle class imbalanced medical image
    segmentation", Computerized Medical Imaging and Graphics 95, 2022.
    https://arxiv.org/abs/2102.04525
  """
  fn = "asymmetric_unified_focal_loss"
  weight = _unit(fn, "weight", weight)
  delta = _unit(fn, "delta", delta)
  gamma = _unit(fn, "gamma", gamma)
  smooth = _checks.nonnegative(fn, "smooth", smooth)
  region = _region.inputs(
    fn, probs, labels, axis=axis, where=where, per_element=False
  )
  p, t, valid, axes = (
    region.probabilities(),
    region.targets(),
    region.valid,
    region.axes,
  )
  num_classes = p.shape[-1]
  if num_classes < 2:
    _checks.fail(
      fn,
      f"probs must have at least 2 classes (class 0 is the background), "
      f"got probs.shape {p.shape}",
    )

  # Asymmetric focal Tversky: per class, pooled.
  inter, pred, true = _region.pooled_stats(fn, region)
  den = inter + delta * (true - inter) + (1 - delta) * (pred - inter) + smooth
  error = 1 - _numerics.safe_div(inter + smooth, den, 1)
  error = jnp.where(error < 0, 0, error)  # rounding; NaN stays NaN
  tversky = (
    error[..., 0] + jnp.sum(_numerics.power(error[..., 1:], 1 - gamma), axis=-1)
  ) / num_classes

  # Asymmetric focal: per pixel, averaged over the valid pixels.
  tiny = jnp.finfo(p.dtype).tiny
  minus_log_p = -jnp.log(jnp.where(p < tiny, tiny, p))
  if t.dtype == jnp.bool_:
    ce = jnp.where(t, minus_log_p, 0)
  else:
    ce = t * minus_log_p
  background = 1 - p[..., 0]
  background = jnp.where(background < 0, 0, background)
  focal = (1 - delta) * _numerics.power(background, gamma) * ce[..., 0]
  focal = focal + delta * jnp.sum(ce[..., 1:], axis=-1)
  if valid is None:
    count = jnp.asarray(math.prod(p.shape[a] for a in axes), p.dtype)
  else:
    count = jnp.sum(valid[..., 0], axis=axes, dtype=p.dtype)
  focal = _numerics.safe_div(jnp.sum(focal, axis=axes), count, 0)
  return weight * focal + (1 - weight) * tversky
