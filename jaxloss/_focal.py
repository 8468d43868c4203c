"""Focal losses: sigmoid (binary / multi-label) and softmax (exclusive classes)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics


def _log_add_exp(a: jax.Array, b: jax.Array) -> jax.Array:
  """``log(exp(a) + exp(b))`` where either may be ``-inf`` (not both)."""
  return jnp.maximum(a, b) + jnp.log1p(jnp.exp(-jnp.abs(a - b)))


def _safe_log(x: jax.Array) -> jax.Array:
  """``log(x)`` for ``x >= 0``: ``-inf`` at 0, with a zero (not NaN) gradient."""
  positive = x > 0
  return jnp.where(positive, jnp.log(jnp.where(positive, x, 1)), -jnp.inf)


def _minus_one(u: jax.Array) -> jax.Array:
  """``u - 1`` for ``u`` in [1, 2], exactly, read from the bits of ``u``.

  ``u - 1`` is exact in floating point, but XLA's simplifier rewrites
  ``(1 + e) - 1`` to ``e``, which would drop the rounding error of
  ``1 + e`` that :func:`_log1p` needs. The difference of the bit patterns of
  ``u`` and 1 is ``(u - 1) / eps``, an integer no simplifier sees through.
  """
  bits = jnp.int32 if u.dtype == jnp.float32 else jnp.int64
  one = jnp.ones((), u.dtype)
  ulps = lax.bitcast_convert_type(u, bits) - lax.bitcast_convert_type(one, bits)
  return ulps.astype(u.dtype) * jnp.finfo(u.dtype).eps


def _log1p(e: jax.Array, u: jax.Array, r: jax.Array) -> jax.Array:
  """``log1p(e)`` for ``e`` in [0, 1], given ``u = 1 + e`` and ``r = 1 / u``.

  ``log(u)`` corrected by the rounding error of ``u``, ``e - (u - 1)``
  (exact, by Fast2Sum), times ``d log(u) / du = r``: accurate to a few ulps,
  down to the smallest ``e``, and cheaper than ``log1p`` in XLA:CPU's
  elementwise loops. Not for differentiation (the correction's
  derivative would count twice): :func:`sigmoid_terms` with
  ``differentiable=True`` uses ``jnp.log1p``.
  """
  return jnp.log(u) + (e - _minus_one(u)) * r


class _Sigmoid(NamedTuple):
  r""":math:`\sigma(x)`, :math:`\sigma(-x)`, :math:`\log(1 + e^{-|x|})` and
  ``x >= 0``: every term of the binary cross-entropy without cancellation."""

  s: jax.Array
  s_neg: jax.Array
  log1p_e: jax.Array
  nonnegative: jax.Array

  def bce(self, x: jax.Array, y: jax.Array) -> jax.Array:
    r""":math:`y\,\mathrm{sp}(-x) + (1 - y)\,\mathrm{sp}(x)`, summed from
    nonnegative terms: ``sp(x) - x y`` cancels where ``x`` is large and
    ``y = 1`` (at ``x = 10`` it is 1% off, at 17 it is 0)."""
    return self.log1p_e + jnp.where(self.nonnegative, (1 - y) * x, -y * x)

  def log_sigmoid(self, x: jax.Array) -> jax.Array:
    r""":math:`\log \sigma(x) = -\mathrm{sp}(-x)`."""
    return jnp.where(self.nonnegative, 0, x) - self.log1p_e

  def log_sigmoid_neg(self, x: jax.Array) -> jax.Array:
    r""":math:`\log \sigma(-x) = \log(1 - \sigma(x)) = -\mathrm{sp}(x)`."""
    return jnp.where(self.nonnegative, -x, 0) - self.log1p_e

  def minus(self, y: jax.Array) -> jax.Array:
    r""":math:`\sigma(x) - y`, accurate where :math:`\sigma(x)` rounds to 1."""
    return (1 - y) * self.s - y * self.s_neg


def sigmoid_terms(x: jax.Array, differentiable: bool = False) -> _Sigmoid:
  """:class:`_Sigmoid` from one ``exp``, one division and one ``log``.

  Every select takes the branch ``x >= 0`` at 0 and each branch is the exact
  formula on its closed half-line, so with ``differentiable=True`` autodiff
  derivatives of any order come out right, at 0 too (``abs`` would give a
  zero derivative there).
  """
  nonnegative = x >= 0
  e = jnp.exp(jnp.where(nonnegative, -x, x))
  if differentiable:
    # 1 / u, bit for bit, but written unlike the value's, so that XLA shares
    # only e between the value and the gradient passes: XLA:CPU writes a
    # shared division to memory and reads it back, which costs more than
    # dividing again, and one more temporary the size of the logits.
    r = 0.5 / (0.5 + 0.5 * e)
    log1p_e = jnp.log1p(e)
  else:
    u = 1 + e
    r = 1 / u
    log1p_e = _log1p(e, u, r)
  return _Sigmoid(
    jnp.where(nonnegative, r, e * r),
    jnp.where(nonnegative, e * r, r),
    log1p_e,
    nonnegative,
  )


def elementwise_inputs(fn, logits, labels, where, name="labels"):
  """Checked, masked logits and targets (``name``) for the elementwise losses."""
  logits = _checks.as_float(fn, "logits", logits)
  labels = _checks.same_shape(fn, ("logits", name), logits, labels)
  mask = _checks.mask_for(fn, where, logits.shape, broadcast=True)
  dtype = _numerics.accum_dtype(logits.dtype)
  x = logits.astype(dtype)
  y = labels.astype(dtype)
  _checks.debug_unit_interval(fn, name, y, mask)
  if mask is not None:  # Double where: masked entries get no gradient at all.
    x = jnp.where(mask, x, 0)
    y = jnp.where(mask, y, 0)
  return x, y, mask


def _closed_form(value, partials):
  r"""An elementwise loss ``f(x, y, param)`` with a closed-form JVP.

  ``value(x, y, param)`` computes the loss; ``partials(x, y, param, f)``
  returns :math:`(\partial_x f, \partial_y f)`, written with the loss ``f``
  itself where that saves work: the gradient pass then reads the loss that
  the value pass wrote anyway, instead of computing its ``log`` again. The
  tangent :math:`\partial_x f\,\dot x + \partial_y f\,\dot y` is linear in
  the input tangents, so JAX transposes it for reverse mode, and it is
  differentiable (``f`` through this same rule), so second derivatives
  (Hessian-vector products, ``jacfwd`` of ``grad``) come from the partials.
  """

  @functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
  def core(x, y, param):
    out = value(x, y, param)
    # A select (the identity: where x is NaN, out is NaN too) ends the value:
    # XLA:CPU then computes it in one elementwise loop and writes it once,
    # instead of pulling part of it into the caller's reduction and writing
    # the intermediates to memory.
    return jnp.where(x == x, out, x)

  @functools.partial(core.defjvp, symbolic_zeros=True)
  def core_jvp(param, primals, tangents):
    x, y = primals
    out = core(x, y, param)
    d_x, d_y = partials(x, y, param, out)
    tangent = jnp.zeros_like(out)
    for d, dot in ((d_x, tangents[0]), (d_y, tangents[1])):
      if not isinstance(dot, jax.custom_derivatives.SymbolicZero):
        tangent = tangent + d * dot
    return out, tangent

  return core


def _focal_value(x, y, params) -> jax.Array:
  gamma, alpha = params
  sig = sigmoid_terms(x)
  q = y * sig.s_neg + (1 - y) * sig.s  # 1 - p_t, no cancellation
  loss = lax.integer_pow(q, gamma) * sig.bce(x, y)
  if alpha is None:
    return loss
  return (alpha * y + (1 - alpha) * (1 - y)) * loss


def _focal_partials(x, y, params, loss):
  r"""With :math:`q = 1 - p_t = y \sigma(-x) + (1 - y) \sigma(x)` and
  :math:`\ell = \alpha_t q^\gamma\,\mathrm{bce}`,

  .. math::
    \partial_x = \gamma (1 - 2y) \frac{\sigma(x) \sigma(-x)}{q}\, \ell
      + \alpha_t q^\gamma (\sigma(x) - y), \quad
    \partial_y = \alpha_t \big(\gamma q^{\gamma - 1}
      (\sigma(-x) - \sigma(x))\, \mathrm{bce} - q^\gamma x\big)
      + (2 \alpha - 1) q^\gamma \mathrm{bce},

  with :math:`\alpha_t = (1 - \alpha) + (2 \alpha - 1) y` (1 without
  ``alpha``). :math:`q \ge \sigma(x) \sigma(-x)`, so the ratio is in
  [0, 1] (0 where :math:`q` underflows).
  """
  gamma, alpha = params
  sig = sigmoid_terms(x, differentiable=True)
  q = y * sig.s_neg + (1 - y) * sig.s
  weight = lax.integer_pow(q, gamma)
  alpha_t = 1 if alpha is None else (1 - alpha) + (2 * alpha - 1) * y
  d_x = alpha_t * weight * sig.minus(y)
  if gamma:
    ratio = _numerics.safe_div(sig.s * sig.s_neg, q, 0)
    d_x = d_x + gamma * (1 - 2 * y) * ratio * loss
  bce = sig.bce(x, y)
  d_weight = gamma * lax.integer_pow(q, gamma - 1) if gamma else 0
  d_y = alpha_t * (d_weight * (sig.s_neg - sig.s) * bce - weight * x)
  if alpha is not None:
    d_y = d_y + (2 * alpha - 1) * weight * bce
  return d_x, d_y


# alpha_t (1 - p_t)^gamma bce for a whole gamma.
_focal_core = _closed_form(_focal_value, _focal_partials)


def _sigmoid_power(x, gamma, sig: _Sigmoid) -> jax.Array:
  """``sigma(x) ** gamma`` (whole ``gamma``: products; else in log space)."""
  if _numerics.is_whole(gamma):
    return lax.integer_pow(sig.s, int(gamma))
  return jnp.exp(gamma * sig.log_sigmoid(x))


def _varifocal_value(x, q, params) -> jax.Array:
  alpha, gamma, iou_weighted = params
  sig = sigmoid_terms(x)
  positive_weight = q if iou_weighted else 1
  weight = jnp.where(
    q > 0, positive_weight, alpha * _sigmoid_power(x, gamma, sig)
  )
  return weight * sig.bce(x, q)


def _varifocal_partials(x, q, params, loss):
  r"""Positives (:math:`q > 0`, :math:`\ell = q\,\mathrm{bce}`):
  :math:`\partial_x = q (\sigma - q)`, :math:`\partial_q = \ell / q - q x`;
  without ``iou_weighted`` (:math:`\ell = \mathrm{bce}`):
  :math:`\partial_x = \sigma - q`, :math:`\partial_q = -x`.
  Negatives (:math:`\ell = w\,\mathrm{bce}` with :math:`w = \alpha
  \sigma^\gamma`): :math:`\partial_x = \gamma \sigma(-x)\, \ell + w
  \sigma`, :math:`\partial_q = -w x`.
  """
  alpha, gamma, iou_weighted = params
  sig = sigmoid_terms(x, differentiable=True)
  w = alpha * _sigmoid_power(x, gamma, sig)
  positive = q > 0
  if iou_weighted:
    d_x_positive = q * sig.minus(q)
    d_q_positive = _numerics.safe_div(loss, q, 0) - q * x
  else:
    d_x_positive = sig.minus(q)
    d_q_positive = -x
  d_x = jnp.where(positive, d_x_positive, gamma * sig.s_neg * loss + w * sig.s)
  d_q = jnp.where(positive, d_q_positive, -w * x)
  return d_x, d_q


_varifocal_core = _closed_form(_varifocal_value, _varifocal_partials)


def _quality_weight(distance, beta) -> jax.Array:
  if _numerics.is_whole(beta) and int(beta) % 2 == 0:
    return lax.integer_pow(distance, int(beta))
  return _numerics.power(jnp.abs(distance), beta)


def _quality_value(x, y, beta) -> jax.Array:
  sig = sigmoid_terms(x)
  distance = -sig.minus(y)  # y - sigma(x)
  return _quality_weight(distance, beta) * sig.bce(x, y)


def _quality_partials(x, y, beta, loss):
  r"""With :math:`d = y - \sigma(x)`, :math:`w = |d|^\beta` and
  :math:`\ell = w\,\mathrm{bce}`: :math:`\partial_x = -\beta \sigma(x)
  \sigma(-x)\, \ell / d + w (\sigma - y)`, :math:`\partial_y = \beta\,
  \ell / d - w x`, where :math:`\ell / d = |d|^{\beta - 1}
  \mathrm{sign}(d)\,\mathrm{bce}` is taken as 0 at :math:`d = 0` (its limit
  for any :math:`\beta > 1`, and the subgradient 0 otherwise).
  """
  sig = sigmoid_terms(x, differentiable=True)
  distance = -sig.minus(y)
  weight = _quality_weight(distance, beta)
  # loss / d, or 0 where beta = 0 (where loss / d may overflow to inf).
  per_distance = _numerics.safe_div(loss, distance, 0) if beta else 0
  d_x = -beta * sig.s * sig.s_neg * per_distance - weight * distance
  d_y = beta * per_distance - weight * x
  return d_x, d_y


_quality_core = _closed_form(_quality_value, _quality_partials)


def _log_one_minus_pt(x: jax.Array, y: jax.Array) -> jax.Array:
  r""":math:`\log(1 - p_t) = \log(y \sigma(-x) + (1 - y) \sigma(x))`,
  formed in log space: finite, with finite derivatives, where :math:`1 - p_t`
  underflows."""
  log_sigmoid = jax.nn.log_sigmoid(x)
  return _log_add_exp(
    _safe_log(y) + log_sigmoid - x, _safe_log(1 - y) + log_sigmoid
  )


def _sigmoid_factor(x, y, gamma, threshold) -> jax.Array:
  r"""The modulating factor of the sigmoid focal loss, differentiable:
  :math:`(1 - p_t)^\gamma`, or with a ``threshold`` :math:`t_r` (reduced
  focal loss) 1 where :math:`p_t < t_r` and
  :math:`((1 - p_t) / t_r)^\gamma` elsewhere."""
  if _numerics.is_whole(gamma):
    sig = sigmoid_terms(x, differentiable=True)
    q = y * sig.s_neg + (1 - y) * sig.s  # 1 - p_t, no cancellation
    scaled = q if threshold is None else q / threshold
    factor = lax.integer_pow(scaled, int(gamma))
  else:
    log_q = _log_one_minus_pt(x, y)
    if threshold is not None:
      log_q = log_q - jnp.log(threshold)
    factor = jnp.exp(gamma * log_q)
  if threshold is None:
    return factor
  sig = sigmoid_terms(x, differentiable=True)
  p_t = y * sig.s + (1 - y) * sig.s_neg
  return jnp.where(p_t < threshold, 1, factor)


def _sigmoid_alpha(fn: str, alpha, logits: jax.Array):
  """``alpha`` checked: None, a scalar in [0, 1], or one such weight per
  class on the last axis of ``logits`` (returned with the rank of
  ``logits``, so that it broadcasts without rank promotion)."""
  if alpha is None:
    return None
  if np.ndim(alpha) == 0:
    alpha = _checks.scalar(fn, "alpha", alpha, low=0.0, high=1.0)
    return jnp.asarray(alpha, _numerics.accum_dtype(logits.dtype))
  shape = np.shape(alpha)
  if logits.ndim == 0 or shape != logits.shape[-1:]:
    _checks.fail(
      fn,
      f"alpha must be a scalar or have shape {logits.shape[-1:]} (one "
      f"weight per class on the last axis of logits), got shape {shape} "
      f"for logits.shape {logits.shape}",
    )
  vector = _checks.nonnegative_vector(fn, "alpha", alpha, logits.shape[-1])
  if not _checks.is_traced(vector):
    values = np.asarray(vector, np.float64)
    if np.any(values > 1):
      _checks.fail(
        fn,
        f"alpha must be <= 1 (a weight of the positives), got "
        f"{values.tolist()}",
      )
  vector = vector.astype(_numerics.accum_dtype(logits.dtype))
  return vector.reshape((1,) * (logits.ndim - 1) + vector.shape)


def _normalize(loss, factor, mask) -> jax.Array:
  """``loss`` divided by the sum of ``factor`` over the valid entries (0
  where that sum is 0: every entry masked, or every factor 0)."""
  if mask is not None:
    factor = jnp.where(mask, factor, 0)
  return _numerics.safe_div(loss, jnp.sum(factor), 0)


def _reduced_threshold(fn: str, threshold):
  if threshold is None:
    return None
  return _checks.scalar(
    fn, "reduced_threshold", threshold, low=0.0, above=True, high=1.0
  )


def _softmax_focal_value(x, w, gamma: int):
  log_p = jax.nn.log_softmax(x, axis=-1)
  q = -jnp.expm1(log_p)  # 1 - p, accurate near 1
  return -jnp.sum(w * lax.integer_pow(q, gamma) * log_p, axis=-1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _softmax_focal_core(x: jax.Array, w: jax.Array, gamma: int) -> jax.Array:
  r""":math:`-\sum_c w_c (1 - p_c)^\gamma \log p_c`, :math:`p = \mathrm{softmax}(x)`,
  for a whole ``gamma``, with a closed-form JVP.

  With :math:`h_c = -w_c \big((1 - p_c)^\gamma - \gamma (1 - p_c)^{\gamma - 1}
  p_c \log p_c\big)`, the partials are :math:`\partial_{x_j} = h_j - p_j
  \sum_c h_c` and :math:`\partial_{w_c} = -(1 - p_c)^\gamma \log p_c`: the
  tangent is linear in the input tangents (JAX transposes it for reverse
  mode) and differentiable (second order). One pass over the classes gives
  the value and the gradient, instead of autodiff's chain through
  ``log_softmax`` and the power.
  """
  return _softmax_focal_value(x, w, gamma)


@functools.partial(_softmax_focal_core.defjvp, symbolic_zeros=True)
def _softmax_focal_core_jvp(gamma, primals, tangents):
  x, w = primals
  x_dot, w_dot = tangents
  value = _softmax_focal_value(x, w, gamma)
  log_p = jax.nn.log_softmax(x, axis=-1)
  p = jnp.exp(log_p)
  q = -jnp.expm1(log_p)
  weight = lax.integer_pow(q, gamma)
  d_weight = gamma * lax.integer_pow(q, gamma - 1) if gamma else 0
  tangent = jnp.zeros_like(value)
  if not isinstance(x_dot, jax.custom_derivatives.SymbolicZero):
    h = -w * (weight - d_weight * p * log_p)
    d_x = h - p * jnp.sum(h, axis=-1, keepdims=True)
    tangent = jnp.sum(d_x * x_dot, axis=-1)
  if not isinstance(w_dot, jax.custom_derivatives.SymbolicZero):
    tangent = tangent - jnp.sum(weight * log_p * w_dot, axis=-1)
  return value, tangent


def _softmax_factor(log_p, gamma, threshold) -> jax.Array:
  r""":math:`(1 - p)^\gamma` from :math:`\log p`, or with a ``threshold``
  :math:`t_r` 1 where :math:`p < t_r` and :math:`((1 - p) / t_r)^\gamma`
  elsewhere; :math:`1 - p` is ``-expm1(log p)``, accurate near 1."""
  q = -jnp.expm1(log_p)
  if threshold is None:
    return _numerics.power(q, gamma)
  reduced = _numerics.power(q / threshold, gamma)
  return jnp.where(jnp.exp(log_p) < threshold, 1, reduced)


def focal_loss(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  alpha: float | ArrayLike | None = 0.25,
  gamma: float = 2.0,
  where: ArrayLike | None = None,
  normalized: bool = False,
  reduced_threshold: float | None = None,
) -> jax.Array:
  r"""Sigmoid focal loss, elementwise (binary and multi-label).

  With :math:`p = \sigma(x)` and a target :math:`y \in [0, 1]`,

  .. math::
    \ell = -\alpha_t \, (1 - p_t)^\gamma \,
      \big(y \log p + (1 - y) \log(1 - p)\big),
    \qquad p_t = y p + (1 - y)(1 - p),
    \qquad \alpha_t = \alpha y + (1 - \alpha)(1 - y).

  For a hard label this is :math:`-\alpha_t (1 - p_t)^\gamma \log p_t`.
  With ``reduced_threshold`` :math:`t_r` (reduced focal loss) the factor
  :math:`(1 - p_t)^\gamma` becomes

  .. math::
    f = \begin{cases} 1 & p_t < t_r, \\
      \big((1 - p_t) / t_r\big)^\gamma & p_t \ge t_r, \end{cases}

  and with ``normalized=True`` every element is divided by the sum of the
  factors over all valid elements, :math:`\ell_i / \sum_j f_j`.

  Args:
    logits: Float logits of any shape.
    labels: Targets of the same shape, in ``[0, 1]`` (hard or soft; bool and
      integer 0/1 are accepted).
    alpha: Weight of the positives; negatives get ``1 - alpha``. A scalar,
      or one weight per class ``[C]`` for ``logits`` of shape ``[..., C]``
      (multi-label). ``None`` drops :math:`\alpha_t`. RetinaNet uses 0.25.
    gamma: Focusing exponent, ``>= 0``. ``gamma=0`` is binary cross-entropy.
    where: Optional boolean mask broadcastable to ``logits.shape``; masked
      entries return 0.
    normalized: Divide each element by the sum of the modulating factors
      of all valid elements (the normalized focal loss of
      segmentation_models_pytorch).
    reduced_threshold: Optional :math:`t_r \in (0, 1]`: the reduced focal
      loss (no down-weighting below :math:`p_t = t_r`).

  Returns:
    The loss of each element, shape ``logits.shape``, in float32 (float64 for
    float64 logits). Reduce it yourself, e.g. ``.sum() / num_positives``
    (with ``normalized=True``, ``.sum()``).

  Convention:
    A vector ``alpha`` gives class :math:`c` the balance
    :math:`\alpha_{t,c} = \alpha_c y + (1 - \alpha_c)(1 - y)`, each
    :math:`\alpha_c \in [0, 1]`. MONAI's ``FocalLoss(weight=w)`` is a
    different thing, a factor on the whole loss of each class: that is
    ``w * focal_loss(...)``, which broadcasts over the last axis.

    ``normalized=True`` is ``segmentation_models_pytorch``'s
    ``focal_loss_with_logits(normalized=True)`` written elementwise: its
    normalizer, the sum of every factor :math:`f` (without
    :math:`\alpha_t`), is taken over all valid elements of the call, and
    each element is divided by it, so ``.sum()`` is smp's ``"sum"``
    reduction. The normalizer is part of the loss and is differentiated,
    as in smp (there it is not detached). smp clamps the sum at 1e-6; here a
    sum of 0 gives 0, and the value is :math:`\sum \ell / \sum f`, a
    weighted mean of the cross-entropies, so it cannot overflow. Under
    ``jax.vmap`` the sum is per mapped example.

    ``reduced_threshold`` follows Sergievskiy and Ponamarev and smp: factor 1
    where :math:`p_t < t_r` (strictly), :math:`((1 - p_t) / t_r)^\gamma`
    from :math:`t_r` up (continuous only at :math:`t_r = 1/2`). For soft
    targets :math:`p_t = y p + (1 - y)(1 - p)` as above (smp takes
    :math:`e^{-\mathrm{bce}}`; equal on hard labels). The choice of branch
    is not differentiated.

    Equal to ``optax.sigmoid_focal_loss`` (same soft-label definition), but
    computed from one ``exp``, one division and one ``log`` per element, and
    without cancellation: the cross-entropy is summed from nonnegative terms
    and :math:`1 - p_t` is :math:`y \sigma(-x) + (1 - y) \sigma(x)`, so
    saturated logits keep their relative accuracy (at ``x = 17``, ``y = 1``
    the loss is about 4e-8, not 0). A whole ``gamma`` is a product, any other
    is ``exp(gamma * log(1 - p_t))`` with
    :math:`\log(1 - p_t)` formed in log space, so gradients stay finite for
    ``gamma < 1`` at saturated logits. ``alpha`` goes to the positives, as in
    RetinaNet. Masked entries carry no gradient, even if their logits are
    ``inf`` or NaN. bf16/fp16 logits are computed in float32. For a whole
    ``gamma`` the derivative (with respect to logits and labels) is written in
    closed form as a ``jax.custom_jvp``: every AD mode works (``grad``,
    ``jvp``, ``jacfwd``, Hessians), and the gradient reads the loss the
    value pass wrote instead of computing its ``log`` again. ``alpha`` and
    ``gamma`` may be traced (not differentiated). Targets outside [0, 1] at
    entries ``where`` keeps are reported under ``checkify`` inside
    :func:`jaxloss.value_checks`.

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
    ICCV 2017. https://arxiv.org/abs/1708.02002 ;
    Sergievskiy, Ponamarev, "Reduced Focal Loss: 1st Place Solution to xView
    object detection in Satellite Imagery", 2019.
    https://arxiv.org/abs/1903.01347
  """
  fn = "focal_loss"
  gamma = _checks.nonnegative(fn, "gamma", gamma)
  normalized = _checks.flag(fn, "normalized", normalized)
  threshold = _reduced_threshold(fn, reduced_threshold)
  x, y, mask = elementwise_inputs(fn, logits, labels, where, name="labels")
  alpha_t = _sigmoid_alpha(fn, alpha, x)
  factor = None
  if threshold is not None:
    # The reduced factor times alpha_t bce (gamma 0: the closed-form core).
    factor = _sigmoid_factor(x, y, gamma, threshold)
    loss = factor * _focal_core(x, y, (0, alpha_t))
  elif _numerics.is_whole(gamma):
    loss = _focal_core(x, y, (int(gamma), alpha_t))
  else:
    # (1 - p_t)^gamma = exp(gamma * log(1 - p_t)), log(1 - p_t) in log space.
    bce = sigmoid_terms(x, differentiable=True).bce(x, y)
    loss = jnp.exp(gamma * _log_one_minus_pt(x, y)) * bce
    if alpha_t is not None:
      loss = (alpha_t * y + (1 - alpha_t) * (1 - y)) * loss
  if normalized:
    if factor is None:
      factor = _sigmoid_factor(x, y, gamma, None)
    loss = _normalize(loss, factor, mask)
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
  normalized: bool = False,
  reduced_threshold: float | None = None,
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
    normalized: Divide each pixel's loss by the sum of the modulating
      factors :math:`(1 - p_c)^\gamma` of the target classes over all valid
      pixels (segmentation_models_pytorch's normalized focal loss).
    reduced_threshold: Optional :math:`t_r \in (0, 1]`: the reduced focal
      loss, factor 1 where :math:`p_c < t_r` and
      :math:`((1 - p_c) / t_r)^\gamma` elsewhere; see :func:`focal_loss`.

  Returns:
    The loss of each pixel, shape ``logits.shape[:-1]``, in float32 (float64
    for float64 logits).

  Convention:
    ``normalized`` and ``reduced_threshold`` as in :func:`focal_loss` (smp's
    ``softmax_focal_loss_with_logits``): with class ids the normalizer is
    :math:`\sum_i f(p_{i, y_i})` over the valid pixels, and with soft
    targets :math:`\sum_i \sum_c t_{ic} f(p_{ic})` (the same on one-hot
    rows); ``alpha`` is not part of it, and it is differentiated.
    :math:`\log p` is ``log_softmax``; :math:`1 - p_c` is ``-expm1(log p_c)``,
    accurate for confident predictions. ``gamma < 1`` keeps finite gradients
    where :math:`p_c` rounds to 1. A class id outside ``[0, C)`` at a valid
    pixel gives a zero target row (loss 0); ``checkify`` reports it inside
    :func:`jaxloss.value_checks`. Masked
    pixels carry no gradient, even with ``inf`` or NaN logits.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Two equal logits: p = 1/2, loss = (1/2)^2 * log 2.
    >>> jaxloss.softmax_focal_loss(jnp.zeros((1, 2)), jnp.array([1]))
    Array([0.1732868], dtype=float32)
    >>> # Reduced at 1/2: p = 1/2 is not below it, factor (1/2 / 1/2)^2 = 1.
    >>> jaxloss.softmax_focal_loss(jnp.zeros((1, 2)), jnp.array([1]),
    ...                            reduced_threshold=0.5)
    Array([0.6931472], dtype=float32)

  References:
    Lin, Goyal, Girshick, He, Dollár, "Focal Loss for Dense Object Detection",
    ICCV 2017. https://arxiv.org/abs/1708.02002 ;
    Sergievskiy, Ponamarev, "Reduced Focal Loss: 1st Place Solution to xView
    object detection in Satellite Imagery", 2019.
    https://arxiv.org/abs/1903.01347
  """
  fn = "softmax_focal_loss"
  logits = _checks.as_float(fn, "logits", logits, min_rank=1)
  labels = _checks.labels_for(fn, "logits", logits, labels)
  mask = _checks.mask_for(fn, where, logits.shape[:-1], broadcast=True)
  gamma = _checks.nonnegative(fn, "gamma", gamma)
  normalized = _checks.flag(fn, "normalized", normalized)
  threshold = _reduced_threshold(fn, reduced_threshold)
  num_classes = logits.shape[-1]
  dtype = _numerics.accum_dtype(logits.dtype)
  x = logits.astype(dtype)
  if mask is not None:
    x = jnp.where(mask[..., None], x, 0)
  if alpha is not None:
    if not _checks.is_traced(alpha) and jnp.ndim(alpha) == 0:
      alpha = _checks.nonnegative(fn, "alpha", alpha)
    alpha = jnp.asarray(alpha, dtype)
    if alpha.ndim:
      alpha = _checks.nonnegative_vector(
        fn, "alpha", alpha, num_classes
      ).astype(dtype)

  if labels.shape != logits.shape:
    # Class ids: only the labelled class has a target, so the loss is
    # -alpha_y (1 - p_y)^gamma log p_y with log p_y gathered from
    # log_softmax (cheaper than the sum over one-hot rows). An id outside
    # [0, C) has no target: loss 0.
    _checks.debug_labels_in_range(fn, labels, num_classes, mask)
    ids = _numerics.class_ids(labels)
    inside = (ids >= 0) & (ids < num_classes)
    ids = jnp.where(inside, ids, 0)
    log_p = jnp.take_along_axis(
      jax.nn.log_softmax(x, axis=-1), ids[..., None], axis=-1
    )[..., 0]
    factor = _softmax_factor(log_p, gamma, threshold)
    loss = -factor * log_p
    if alpha is not None:
      loss = (alpha[ids] if alpha.ndim else alpha) * loss
    loss = jnp.where(inside, loss, 0)
    if normalized:
      valid = inside if mask is None else inside & mask
      loss = _normalize(loss, factor, valid)
  else:
    t = labels.astype(dtype)
    if mask is not None:
      t = jnp.where(mask[..., None], t, 0)
    weighted = t
    if alpha is not None:
      weighted = (
        alpha.reshape((1,) * (x.ndim - 1) + (num_classes,))
        if alpha.ndim
        else alpha
      ) * t
    if _numerics.is_whole(gamma) and threshold is None:
      loss = _softmax_focal_core(x, weighted, int(gamma))
      factor = None
    else:
      log_p = jax.nn.log_softmax(x, axis=-1)
      factor = _softmax_factor(log_p, gamma, threshold)
      loss = -jnp.sum(weighted * factor * log_p, axis=-1)
    if normalized:
      if factor is None:
        factor = _softmax_factor(jax.nn.log_softmax(x, axis=-1), gamma, None)
      # The factors of the target classes, each by its target mass.
      loss = _normalize(loss, jnp.sum(t * factor, axis=-1), None)
  if mask is not None:
    loss = jnp.where(mask, loss, 0)
  return loss


def varifocal_loss(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  alpha: float = 0.75,
  gamma: float = 2.0,
  iou_weighted: bool = True,
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
  With ``iou_weighted=False`` the positives weigh 1 instead of :math:`q`:
  :math:`\ell = -\big(q \log p + (1 - q) \log(1 - p)\big)` for
  :math:`q > 0`.

  Args:
    logits: Float logits of any shape (e.g. ``[..., C]`` per anchor and
      class).
    labels: IoU-aware targets of the same shape, in ``[0, 1]``.
    alpha: Weight of the negatives, ``>= 0``. VarifocalNet uses 0.75.
    gamma: Focusing exponent of the negatives, ``>= 0``.
    iou_weighted: Whether a positive's loss is weighted by its target
      :math:`q` (VarifocalNet, the default) or by 1 (mmdetection's
      ``iou_weighted=False``).
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
    the reference implementation, which does not detach it). ``labels``
    should carry no gradient (wrap computed IoUs in ``jax.lax.stop_gradient``).
    Masked entries carry no gradient, even with ``inf`` or NaN logits.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # p = 1/2: q = 1 gives log 2; q = 1/2 gives (1/2) log 2; q = 0 gives
    >>> # alpha (1/2)^2 log 2 = 0.75 / 4 * 0.6931.
    >>> jaxloss.varifocal_loss(jnp.zeros(3), jnp.array([1.0, 0.5, 0.0]))
    Array([0.693147, 0.346574, 0.129965], dtype=float32)
    >>> # Positives weighing 1: q = 1/2 gives the whole log 2.
    >>> jaxloss.varifocal_loss(jnp.zeros(2), jnp.array([0.5, 0.0]),
    ...                        iou_weighted=False)
    Array([0.693147, 0.129965], dtype=float32)

  References:
    Zhang, Wang, Dayoub, Sünderhauf, "VarifocalNet: An IoU-aware Dense Object
    Detector", CVPR 2021. https://arxiv.org/abs/2008.13367
  """
  fn = "varifocal_loss"
  alpha = _checks.nonnegative(fn, "alpha", alpha)
  gamma = _checks.nonnegative(fn, "gamma", gamma)
  iou_weighted = _checks.flag(fn, "iou_weighted", iou_weighted)
  x, q, mask = elementwise_inputs(fn, logits, labels, where)
  loss = _varifocal_core(x, q, (alpha, gamma, iou_weighted))
  if mask is not None:
    loss = jnp.where(mask, loss, 0)
  return loss


def quality_focal_loss(
  logits: ArrayLike,
  labels: ArrayLike,
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
    labels: Quality targets of the same shape, in ``[0, 1]``.
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
  beta = _checks.nonnegative(fn, "beta", beta)
  x, y, mask = elementwise_inputs(fn, logits, labels, where)
  loss = _quality_core(x, y, beta)
  if mask is not None:
    loss = jnp.where(mask, loss, 0)
  return loss
