"""Activations and pooled sums of the region losses, with their derivatives.

Two functions with a custom JVP that is linear in the tangents (JAX
transposes it for reverse mode and differentiates it for second order):

- :func:`activate`: ``softmax`` or ``sigmoid`` of logits (or the identity),
  whose backward pass recomputes the probabilities from the logits instead of
  keeping them;
- :func:`pooled_sums`: the three sums ``(I, P, T)`` of the Dice family from
  probabilities or logits, the activation included, so that the backward
  pass of a region loss is one elementwise loop over the logits.

Why custom rules: autodiff of ``softmax`` followed by the sums keeps the
probabilities, the exponentials and a broadcast normaliser (about two arrays
the size of the logits); the rules below keep at most one, and none for
class ids, whose one-hot rows are rebuilt in the backward pass from the ids.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _numerics


def _forward(x, activation):
  """``(p, lse)``: the probabilities, and for ``softmax`` the per-pixel
  normaliser ``logsumexp(x)`` (keepdims) from the same exponentials (one an
  entry; the max is a constant of the derivative, as in ``jax.nn.softmax``);
  ``lse`` is None otherwise."""
  if activation is None:
    return x, None
  if activation == "sigmoid":
    return jax.nn.sigmoid(x), None
  m = lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
  m = jnp.where(jnp.isfinite(m), m, 0)
  e = jnp.exp(x - m)
  total = jnp.sum(e, axis=-1, keepdims=True)
  return e / total, m + jnp.log(total)


def _recompute(x, lse, activation):
  """The probabilities from the logits (and ``lse``, the softmax
  normaliser), entry by entry."""
  if activation is None:
    return x
  if activation == "sigmoid":
    return jax.nn.sigmoid(x)
  return jnp.exp(x - lse)


def _tangent_of(x, lse, x_dot, activation, p=None):
  """``(p, dp)``: the probabilities and their tangent, linear in ``x_dot``;
  ``p`` is recomputed from the logits unless given."""
  if activation is None:
    return x, x_dot
  if p is None:
    p = _recompute(x, lse, activation)
  if activation == "sigmoid":
    # sigma(x) sigma(-x) = e / (1 + e)^2 with e = exp(-|x|): no cancellation
    # at saturated logits.
    e = jnp.exp(-jnp.abs(x))
    return p, (e / jnp.square(1 + e)) * x_dot
  return p, p * (x_dot - jnp.sum(p * x_dot, axis=-1, keepdims=True))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def activate(x: jax.Array, activation: str | None) -> jax.Array:
  """``softmax(x)`` over the last axis, ``sigmoid(x)``, or ``x`` (None).

  The tangent is recomputed from ``x`` in the backward pass (a rematerialised
  linear map): a loss of ``activate(x)`` keeps no array of probabilities for
  its gradient, only what the loss itself needs.
  """
  return _forward(x, activation)[0]


@activate.defjvp
def _activate_jvp(activation, primals, tangents):
  (x,), (x_dot,) = primals, tangents
  p, lse = _forward(x, activation)
  if activation is None:
    return p, x_dot
  tangent = jax.checkpoint(
    lambda x, lse, dx: _tangent_of(x, lse, dx, activation)[1]
  )
  return p, tangent(x, lse, x_dot)


def _targets(labels, num_classes):
  """Float targets as they are; class ids as boolean one-hot rows."""
  if jnp.issubdtype(labels.dtype, jnp.floating):
    return labels
  return _numerics.one_hot_mask(labels, num_classes)


def _masked(p, t, valid):
  if valid is None:
    return p, t
  return jnp.where(valid, p, 0), jnp.where(valid, t, jnp.zeros((), t.dtype))


def _sums(p, t, valid, axes, squared, soft, variadic=False):
  """``(I, P, T)`` of probabilities ``p`` and targets ``t`` (float, or
  boolean one-hot rows), masked entries dropped: three plain reductions
  (each a vectorised loop on XLA:CPU), or with ``variadic`` one variadic
  reduction that reads the inputs once (a scalar loop, faster where a compare
  in the terms keeps XLA:CPU from vectorising anyway)."""
  p, t = _masked(p, t, valid)
  hard = t.dtype == jnp.bool_
  if hard:
    inter = jnp.where(t, p, 0)
  elif soft and not squared:
    inter = jnp.minimum(p, t)
  else:
    inter = p * t
  pred = p * p if squared else p
  true = t.astype(p.dtype) if hard else (t * t if squared else t)
  if variadic:
    zero = jnp.zeros((), p.dtype)
    return tuple(
      lax.reduce(
        (inter, pred, true),
        (zero,) * 3,
        lambda a, b: tuple(u + v for u, v in zip(a, b)),
        axes,
      )
    )
  return (
    jnp.sum(inter, axis=axes),
    jnp.sum(pred, axis=axes),
    jnp.sum(true, axis=axes),
  )


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5, 6))
def pooled_sums(
  x: jax.Array,
  labels: jax.Array,
  valid: jax.Array | None,
  axes: tuple[int, ...],
  activation: str | None,
  squared: bool,
  soft: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""``(I, P, T)`` over ``axes``, per class, of ``p = activation(x)``.

  :math:`I = \sum p t` (:math:`\sum \min(p, t)` with ``soft`` and float,
  unsquared targets; equal on 0/1 targets), :math:`P = \sum p`,
  :math:`T = \sum t` (:math:`\sum p^2`, :math:`\sum t^2` if ``squared``).

  Args:
    x: Probabilities (``activation=None``) or logits ``[..., C]``, float32 or
      float64.
    labels: Float targets of the shape of ``x`` (in its dtype), or integer
      class ids ``x.shape[:-1]`` (an id outside ``[0, C)`` has no class).
    valid: Boolean mask broadcastable to ``x`` (same rank), or None; masked
      entries count for nothing, and ``x`` should be finite there.
    axes: The pooled axes.
    activation: None, ``"softmax"`` (over the last axis) or ``"sigmoid"``.
    squared: Square ``p`` and ``t`` in ``P`` and ``T``.
    soft: The ``min`` intersection for float targets.

  The tangent is written as plain sums, linear in the tangents of ``x`` and
  of float ``labels``: JAX transposes it into one elementwise expression that
  XLA fuses into the caller's backward pass. With an activation, the
  backward pass keeps one array the size of ``x`` for float targets (the
  probabilities, with the sign of the ``min`` slope folded in) and none for
  class ids: it recomputes the probabilities from ``x`` and the per-pixel
  normaliser, and the one-hot rows from the ids (XLA:CPU writes one such
  array in the backward pass). With class ids the forward pass builds no
  one-hot rows either (see :func:`_id_sums`).
  """
  p, lse = _forward(x, activation)
  return _all_sums(x, p, lse, labels, valid, axes, activation, squared, soft)


def _all_sums(x, p, lse, labels, valid, axes, activation, squared, soft):
  """Float targets, or class ids given probabilities: :func:`_sums`; class
  ids given logits: :func:`_id_sums` (no one-hot rows)."""
  ids = not jnp.issubdtype(labels.dtype, jnp.floating)
  if ids and activation is not None:
    return _id_sums(x, lse, labels, valid, axes, activation, squared)
  # Given probabilities, one-hot rows or the min intersection compare.
  variadic = activation is None and (ids or (soft and not squared))
  t = _targets(labels, x.shape[-1])
  return _sums(p, t, valid, axes, squared, soft, variadic)


def _id_sums(x, lse, ids, valid, axes, activation, squared):
  """``(I, P, T)`` for class ids without one-hot rows: ``P`` reduces the
  probabilities recomputed from ``x`` (one fused loop), ``I`` and ``T`` sum
  each pixel's probability of its own class, and 1, by class (an id outside
  ``[0, C)`` has no class)."""
  num_classes = x.shape[-1]
  p = _recompute(x, lse, activation)
  if valid is not None:
    p = jnp.where(valid, p, 0)
  pred = jnp.sum(p * p if squared else p, axis=axes)
  known = (ids >= 0) & (ids < num_classes)
  ids = jnp.where(known, ids, 0)[..., None]
  if valid is not None:  # a pixel mask, or the flag of each pixel's class
    flags = jnp.broadcast_to(valid, x.shape[:-1] + (valid.shape[-1],))
    known = (
      known
      & jnp.take_along_axis(
        flags, jnp.minimum(ids, flags.shape[-1] - 1), axis=-1
      )[..., 0]
    )
  own = _recompute(jnp.take_along_axis(x, ids, axis=-1), lse, activation)
  own = jnp.where(known, own[..., 0], 0)
  return (
    _class_sums(own, ids[..., 0], axes, num_classes),
    pred,
    _class_sums(known.astype(x.dtype), ids[..., 0], axes, num_classes),
  )


def _class_sums(values, ids, axes, num_classes):
  """``sum(values where ids == c)`` over ``axes`` for each class ``c``:
  shape ``kept axes + [C]``."""
  kept = tuple(a for a in range(values.ndim) if a not in axes)
  order = kept + tuple(axes)
  values, ids = jnp.transpose(values, order), jnp.transpose(ids, order)
  lead = values.shape[: len(kept)]
  rows = math.prod(lead)
  values, ids = values.reshape(rows, -1), ids.reshape(rows, -1)
  segments = ids + num_classes * jnp.arange(rows, dtype=ids.dtype)[:, None]
  sums = jax.ops.segment_sum(
    values.ravel(), segments.ravel(), num_segments=rows * num_classes
  )
  return sums.reshape(lead + (num_classes,))


def _inter_slope(p, t, soft, squared):
  """d I / d p entrywise: ``t``, or for the ``min`` intersection 1 below the
  target, 0 above, and ``t`` at a tie (the product's, a valid
  subgradient; with an activation the gradient is 0 there on 0/1 targets)."""
  if t.dtype == jnp.bool_ or not soft or squared:
    return t
  return jnp.where(p < t, 1, jnp.where(p > t, 0, t)).astype(p.dtype)


def _folded_x_part(p, t, valid, x_dot, axes):
  r"""The x tangent of ``(I, P)`` for ``softmax`` and the ``min``
  intersection, from one array: the probabilities with the sign of the
  slope of :math:`\min(p, t)` folded in, ``r = p`` below the target and
  ``-p`` elsewhere (0 at a tie: on 0/1 targets the gradient is 0 there
  anyway). ``|r|`` and ``relu(r)`` are all the backward pass reads, so XLA
  keeps that one array (a separate slope would be a second one)."""
  if valid is not None:
    t = jnp.where(valid, t, 0)
  r = jnp.where(p < t, p, -p)
  p, slope_p = jnp.abs(r), jax.nn.relu(r)
  # The softmax tangent reads every class of a pixel, masked or not.
  k = x_dot - jnp.sum(p * x_dot, axis=-1, keepdims=True)
  if valid is not None:
    k = jnp.where(valid, k, 0)
  return jnp.sum(slope_p * k, axis=axes), jnp.sum(p * k, axis=axes)


@functools.partial(pooled_sums.defjvp, symbolic_zeros=True)
def _pooled_sums_jvp(axes, activation, squared, soft, primals, tangents):
  x, labels, valid = primals
  x_dot, labels_dot, _ = tangents
  ids = not jnp.issubdtype(labels.dtype, jnp.floating)
  p, lse = _forward(x, activation)
  # The primal is the function itself, so that differentiating this rule
  # (second order) uses this rule again (a variadic reduction has no JVP).
  out = pooled_sums(x, labels, valid, axes, activation, squared, soft)
  zero = jnp.zeros_like(out[0])
  d_inter, d_pred, d_true = zero, zero, zero
  # Softmax of logits against float targets with the min intersection.
  folded = activation == "softmax" and not ids and soft and not squared

  def x_part(x, lse, labels, valid, x_dot, p=None):
    if folded:
      return _folded_x_part(p, labels, valid, x_dot, axes)
    p, p_dot = _tangent_of(x, lse, x_dot, activation, p)
    p, t = _masked(p, _targets(labels, x.shape[-1]), valid)
    if valid is not None:
      p_dot = jnp.where(valid, p_dot, 0)
    slope = _inter_slope(p, t, soft, squared)
    inter = jnp.where(slope, p_dot, 0) if ids else slope * p_dot
    pred = 2 * p * p_dot if squared else p_dot
    return jnp.sum(inter, axis=axes), jnp.sum(pred, axis=axes)

  if not isinstance(x_dot, jax.custom_derivatives.SymbolicZero):
    if ids and activation is not None:
      # Class ids: the backward pass recomputes the probabilities from x and
      # lse, and the one-hot rows from the ids, instead of keeping them.
      d_inter, d_pred = jax.checkpoint(x_part)(x, lse, labels, valid, x_dot)
    else:
      d_inter, d_pred = x_part(x, lse, labels, valid, x_dot, p)
  if not ids and not isinstance(
    labels_dot, jax.custom_derivatives.SymbolicZero
  ):
    p, t = _masked(p, labels, valid)
    if valid is not None:
      labels_dot = jnp.where(valid, labels_dot, 0)
    if soft and not squared:
      slope = 1 - _inter_slope(p, t, soft, squared)
    else:
      slope = p
    d_inter = d_inter + jnp.sum(slope * labels_dot, axis=axes)
    d_true = jnp.sum(2 * t * labels_dot if squared else labels_dot, axis=axes)
  return out, (d_inter, d_pred, d_true)
