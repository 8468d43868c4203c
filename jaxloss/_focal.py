"""Focal losses: sigmoid (binary / multi-label) and softmax (exclusive classes)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics


def _log_add_exp(a: jax.Array, b: jax.Array) -> jax.Array:
  """``log(exp(a) + exp(b))`` where either may be ``-inf`` (not both)."""
  return jnp.maximum(a, b) + jnp.log1p(jnp.exp(-jnp.abs(a - b)))


def _sigmoid_terms(x: jax.Array, y: jax.Array, *, fast_log: bool = False):
  """Binary cross-entropy with logits and the two sigmoids, stably.

  Returns ``(bce, sigma(x), sigma(-x), log sigma(x))`` from one ``exp`` and one
  ``log1p``, the numerics of :func:`focal_loss`. ``fast_log`` takes
  ``log(1 + e)`` for ``log1p(e)`` (20 % faster on CPU; exact to rounding of
  ``1 + e``, so only where ``bce`` is multiplied by a factor of order ``e``).
  """
  e = jnp.exp(-jnp.abs(x))
  log1p_e = jnp.log(1 + e) if fast_log else jnp.log1p(e)
  positive = x >= 0
  inv = 1 / (1 + e)
  bce = jnp.maximum(x, 0) - x * y + log1p_e
  sigmoid = jnp.where(positive, 1, e) * inv
  sigmoid_neg = jnp.where(positive, e, 1) * inv
  return bce, sigmoid, sigmoid_neg, jnp.minimum(x, 0) - log1p_e


def _elementwise_inputs(fn, logits, targets, where, name="targets"):
  """Checked, masked logits and targets (``name``) for the elementwise losses."""
  logits = _checks.as_float(fn, "logits", logits)
  targets = _checks.same_shape(fn, ("logits", name), logits, targets)
  mask = _checks.mask_for(fn, where, logits.shape, broadcast=True)
  dtype = _numerics.accum_dtype(logits.dtype)
  x = logits.astype(dtype)
  y = targets.astype(dtype)
  _checks.debug_unit_interval(fn, name, y)
  if mask is not None:  # Double where: masked entries get no gradient at all.
    x = jnp.where(mask, x, 0)
    y = jnp.where(mask, y, 0)
  return x, y, mask


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _focal_core(x: jax.Array, y: jax.Array, gamma: int) -> jax.Array:
  r"""``(1 - p_t)^gamma * bce`` for a whole ``gamma``, with a closed-form VJP.

  The backward pass recomputes its terms from ``x`` and ``y`` (no residual
  beyond the inputs) in one fused elementwise loop:

  .. math::
    \partial_x = \gamma q^{\gamma - 1} (1 - 2y) \sigma(x) \sigma(-x)\,
      \mathrm{bce} + q^\gamma (\sigma(x) - y), \qquad
    \partial_y = \gamma q^{\gamma - 1} (\sigma(-x) - \sigma(x))\,
      \mathrm{bce} - q^\gamma x,

  with :math:`q = 1 - p_t = y \sigma(-x) + (1 - y) \sigma(x)`.
  """
  bce, sigmoid, sigmoid_neg, _ = _sigmoid_terms(x, y)
  return lax.integer_pow(y * sigmoid_neg + (1 - y) * sigmoid, gamma) * bce


def _focal_core_fwd(x, y, gamma):
  return _focal_core(x, y, gamma), (x, y)


def _focal_core_bwd(gamma, residuals, g):
  x, y = residuals
  # Fast log: bce only enters multiplied by sigma(x) sigma(-x) ~ e, so where
  # 1 + e rounds the absolute error of the gradient stays below e**2 * 1e-7.
  bce, sigmoid, sigmoid_neg, _ = _sigmoid_terms(x, y, fast_log=True)
  q = y * sigmoid_neg + (1 - y) * sigmoid
  weight = lax.integer_pow(q, gamma)
  d_weight = gamma * lax.integer_pow(q, gamma - 1) if gamma else 0
  d_x = d_weight * (1 - 2 * y) * sigmoid * sigmoid_neg * bce + weight * (
      sigmoid - y)
  d_y = d_weight * (sigmoid_neg - sigmoid) * bce - weight * x
  return g * d_x, g * d_y


_focal_core.defvjp(_focal_core_fwd, _focal_core_bwd)


def focal_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Sigmoid focal loss, elementwise (binary and multi-label).

  With :math:`p = \sigma(x)` and a target :math:`y \in [0, 1]`,

  .. math::
    \ell = -\alpha_t \, (1 - p_t)^\gamma \,
      \big(y \log p + (1 - y) \log(1 - p)\big),
    \qquad p_t = y p + (1 - y)(1 - p),
    \qquad \alpha_t = \alpha y + (1 - \alpha)(1 - y).

  For a hard label this is :math:`-\alpha_t (1 - p_t)^\gamma \log p_t`.

  Args:
    logits: Float logits of any shape.
    labels: Targets of the same shape, in ``[0, 1]`` (hard or soft; bool and
      integer 0/1 are accepted).
    alpha: Weight of the positives; negatives get ``1 - alpha``. ``None``
      drops :math:`\alpha_t`. RetinaNet uses 0.25.
    gamma: Focusing exponent, ``>= 0``. ``gamma=0`` is binary cross-entropy.
    where: Optional boolean mask broadcastable to ``logits.shape``; masked
      entries return 0.

  Returns:
    The loss of each element, shape ``logits.shape``, in float32 (float64 for
    float64 logits). Reduce it yourself, e.g. ``.sum() / num_positives``.

  Convention:
    Equal to ``optax.sigmoid_focal_loss`` (same soft-label definition), but
    computed from one ``exp`` and one ``log1p`` per element: a whole ``gamma``
    is a product, any other ``gamma`` is ``exp(gamma * log(1 - p_t))`` with
    :math:`\log(1 - p_t)` formed in log space, so gradients stay finite for
    ``gamma < 1`` at saturated logits. ``alpha`` goes to the positives, as in
    RetinaNet. Masked entries carry no gradient, even if their logits are
    ``inf`` or NaN. bf16/fp16 logits are computed in float32. For a whole
    ``gamma`` the gradient (with respect to logits and labels) is written in
    closed form, a ``jax.custom_vjp``: reverse mode only (``jax.grad``, not
    ``jax.jvp``).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # logit 0 means p = 1/2: with gamma=0 and no alpha, the loss is log 2.
    >>> jaxloss.focal_loss(jnp.zeros(2), jnp.array([0.0, 1.0]), alpha=None,
    ...                    gamma=0.0)
    Array([0.6931472, 0.6931472], dtype=float32)
    >>> # gamma=2 scales it by (1 - p_t)^2 = 1/4, alpha=0.25 by 1/4 more.
    >>> jaxloss.focal_loss(jnp.zeros(1), jnp.ones(1))
    Array([0.0433217], dtype=float32)

  References:
    Lin, Goyal, Girshick, He, Dollár, "Focal Loss for Dense Object Detection",
    ICCV 2017. https://arxiv.org/abs/1708.02002
  """
  fn = "focal_loss"
  _checks.nonnegative(fn, "gamma", gamma)
  x, y, mask = _elementwise_inputs(fn, logits, labels, where, name="labels")
  if _numerics.is_whole(gamma):
    loss = _focal_core(x, y, int(gamma))
  else:
    # (1 - p_t)^gamma = exp(gamma * log(1 - p_t)), with
    # log(1 - p_t) = log(y sigma(-x) + (1 - y) sigma(x)) formed in log space.
    bce, _, _, log_sigmoid = _sigmoid_terms(x, y)
    log_one_minus_pt = _log_add_exp(jnp.log(y) + log_sigmoid - x,
                                    jnp.log1p(-y) + log_sigmoid)
    loss = jnp.exp(gamma * log_one_minus_pt) * bce
  if alpha is not None:
    alpha = jnp.asarray(alpha, x.dtype)
    loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
  if mask is not None:
    loss = jnp.where(mask, loss, 0)
  return loss


def softmax_focal_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    alpha: float | ArrayLike | None = None,
    gamma: float = 2.0,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Softmax focal loss over the last (class) axis.

  With :math:`p = \mathrm{softmax}(x)` over the :math:`C` classes and targets
  :math:`t` (one-hot or soft),

  .. math::
    \ell = -\sum_{c=1}^{C} \alpha_c \, t_c \, (1 - p_c)^\gamma \log p_c .

  Args:
    logits: Float logits of shape ``[..., C]``.
    labels: Integer class ids of shape ``logits.shape[:-1]``, or targets of
      shape ``logits.shape`` (one-hot or soft, rows summing to 1).
    alpha: ``None`` (no weighting), a scalar, or per-class weights ``[C]``.
    gamma: Focusing exponent, ``>= 0``. ``gamma=0`` is softmax cross-entropy.
    where: Optional boolean mask broadcastable to ``logits.shape[:-1]``;
      masked pixels return 0. For an ignore label: ``where=labels != 255``.

  Returns:
    The loss of each pixel, shape ``logits.shape[:-1]``, in float32 (float64
    for float64 logits).

  Convention:
    :math:`\log p` is ``log_softmax``; :math:`1 - p_c` is ``-expm1(log p_c)``,
    accurate for confident predictions. ``gamma < 1`` keeps finite gradients
    where :math:`p_c` rounds to 1. A class id outside ``[0, C)`` at a valid
    pixel gives a zero target row (loss 0); ``checkify`` reports it. Masked
    pixels carry no gradient, even with ``inf`` or NaN logits.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Two equal logits: p = 1/2, loss = (1/2)^2 * log 2.
    >>> jaxloss.softmax_focal_loss(jnp.zeros((1, 2)), jnp.array([1]))
    Array([0.1732868], dtype=float32)

  References:
    Lin, Goyal, Girshick, He, Dollár, "Focal Loss for Dense Object Detection",
    ICCV 2017. https://arxiv.org/abs/1708.02002
  """
  fn = "softmax_focal_loss"
  logits = _checks.as_float(fn, "logits", logits, min_rank=1)
  labels = _checks.labels_for(fn, "logits", logits, labels)
  mask = _checks.mask_for(fn, where, logits.shape[:-1], broadcast=True)
  _checks.nonnegative(fn, "gamma", gamma)
  num_classes = logits.shape[-1]
  dtype = _numerics.accum_dtype(logits.dtype)
  if labels.shape != logits.shape:
    _checks.debug_labels_in_range(fn, labels, num_classes, mask)
  x = logits.astype(dtype)
  t = _numerics.targets(labels, logits.shape, dtype)
  if mask is not None:
    x = jnp.where(mask[..., None], x, 0)
    t = jnp.where(mask[..., None], t, 0)

  log_p = jax.nn.log_softmax(x, axis=-1)
  weight = _numerics.power(-jnp.expm1(log_p), gamma)
  if alpha is not None:
    alpha = jnp.asarray(alpha, dtype)
    if alpha.ndim:
      alpha = _checks.class_vector(fn, "alpha", alpha, num_classes)
      alpha = alpha.reshape((1,) * (x.ndim - 1) + (num_classes,))
    weight = alpha * weight
  loss = -jnp.sum(t * weight * log_p, axis=-1)
  if mask is not None:
    loss = jnp.where(mask, loss, 0)
  return loss


def varifocal_loss(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    alpha: float = 0.75,
    gamma: float = 2.0,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Varifocal loss, elementwise (VarifocalNet, Zhang et al. 2021).

  With :math:`p = \sigma(x)` and an IoU-aware target :math:`q \in [0, 1]`
  (the IoU of the predicted box with its ground truth at the true class,
  0 elsewhere),

  .. math::
    \ell = \begin{cases}
      -q \big(q \log p + (1 - q) \log(1 - p)\big) & q > 0, \\
      -\alpha \, p^\gamma \log(1 - p) & q = 0.
    \end{cases}

  Positives are weighted by their own target, so high-quality positives
  dominate; only negatives are down-weighted, by :math:`\alpha p^\gamma`.

  Args:
    logits: Float logits of any shape (e.g. ``[..., C]`` per anchor and
      class).
    targets: IoU-aware targets of the same shape, in ``[0, 1]``.
    alpha: Weight of the negatives, ``>= 0``. VarifocalNet uses 0.75.
    gamma: Focusing exponent of the negatives, ``>= 0``.
    where: Optional boolean mask broadcastable to ``logits.shape``; masked
      entries return 0.

  Returns:
    The loss of each element, shape ``logits.shape``, in float32 (float64 for
    float64 logits). Reduce it yourself; VarifocalNet divides the sum by the
    number of positives.

  Convention:
    The binary cross-entropy and :math:`p^\gamma` are computed from logits
    in log space (:math:`p^\gamma = e^{\gamma \log \sigma(x)}` for a
    fractional ``gamma``), so ±1e4 logits and ``gamma < 1`` give finite
    gradients. The weight :math:`q` or :math:`\alpha p^\gamma` is part of the
    loss, not a constant: the gradient flows through :math:`p^\gamma` (as in
    the reference implementation, which does not detach it). ``targets``
    should carry no gradient (wrap computed IoUs in ``jax.lax.stop_gradient``).
    Masked entries carry no gradient, even with ``inf`` or NaN logits.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # p = 1/2: q = 1 gives log 2; q = 1/2 gives (1/2) log 2; q = 0 gives
    >>> # alpha (1/2)^2 log 2 = 0.75 / 4 * 0.6931.
    >>> jaxloss.varifocal_loss(jnp.zeros(3), jnp.array([1.0, 0.5, 0.0]))
    Array([0.693147, 0.346574, 0.129965], dtype=float32)

  References:
    Zhang, Wang, Dayoub, Sünderhauf, "VarifocalNet: An IoU-aware Dense Object
    Detector", CVPR 2021. https://arxiv.org/abs/2008.13367
  """
  fn = "varifocal_loss"
  _checks.nonnegative(fn, "alpha", alpha)
  _checks.nonnegative(fn, "gamma", gamma)
  x, q, mask = _elementwise_inputs(fn, logits, targets, where)
  bce, sigmoid, _, log_sigmoid = _sigmoid_terms(x, q)
  negative = jnp.asarray(alpha, x.dtype) * _numerics.exp_power(
      log_sigmoid, gamma, sigmoid)
  loss = jnp.where(q > 0, q, negative) * bce
  if mask is not None:
    loss = jnp.where(mask, loss, 0)
  return loss


def quality_focal_loss(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    beta: float = 2.0,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Quality focal loss, elementwise (Generalized Focal Loss, Li et al. 2020).

  With :math:`\sigma = \sigma(x)` and a soft quality target
  :math:`y \in [0, 1]` (the IoU at the true class, 0 elsewhere),

  .. math::
    \ell = -|y - \sigma|^\beta \,
      \big(y \log \sigma + (1 - y) \log(1 - \sigma)\big).

  The focal factor is the distance to the soft target, so the loss is 0
  exactly when :math:`\sigma = y`.

  Args:
    logits: Float logits of any shape (e.g. ``[..., C]`` per anchor and
      class).
    targets: Quality targets of the same shape, in ``[0, 1]``.
    beta: Focusing exponent, ``>= 0``; GFL uses 2. ``beta=0`` is binary
      cross-entropy with soft targets.
    where: Optional boolean mask broadcastable to ``logits.shape``; masked
      entries return 0.

  Returns:
    The loss of each element, shape ``logits.shape``, in float32 (float64 for
    float64 logits). Reduce it yourself; GFL divides the sum by the number of
    positives.

  Convention:
    :math:`y - \sigma` is formed as :math:`y\,\sigma(-x) - (1 - y)\,\sigma(x)`,
    accurate when :math:`\sigma` is close to 1; a fractional ``beta`` uses
    the double-``where`` power, so the gradient at :math:`\sigma = y` is 0, not
    NaN. For hard targets (:math:`y \in \{0, 1\}`) it is the sigmoid focal
    loss without :math:`\alpha` and with :math:`\gamma = \beta`. Masked entries
    carry no gradient, even with ``inf`` or NaN logits.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # sigma = 1/2: y = 1 and y = 0 give (1/2)^2 log 2; y = 1/2 gives 0.
    >>> jaxloss.quality_focal_loss(jnp.zeros(3), jnp.array([1.0, 0.5, 0.0]))
    Array([0.173287, 0.      , 0.173287], dtype=float32)

  References:
    Li, Wang, Wu, Chen, Hu, Li, Tang, Yang, "Generalized Focal Loss: Learning
    Qualified and Distributed Bounding Boxes for Dense Object Detection",
    NeurIPS 2020. https://arxiv.org/abs/2006.04388
  """
  fn = "quality_focal_loss"
  _checks.nonnegative(fn, "beta", beta)
  x, y, mask = _elementwise_inputs(fn, logits, targets, where)
  bce, sigmoid, sigmoid_neg, _ = _sigmoid_terms(x, y)
  distance = jnp.abs(y * sigmoid_neg - (1 - y) * sigmoid)
  loss = _numerics.power(distance, beta) * bce
  if mask is not None:
    loss = jnp.where(mask, loss, 0)
  return loss
