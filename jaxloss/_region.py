"""The region contract: what every region loss shares.

A region loss (Dice, IoU, Tversky, generalized Dice, MCC, Wasserstein Dice,
Lovász-softmax, the boundary losses) takes predictions ``[..., C]`` and
labels, pools statistics over ``axis`` and the valid pixels, and averages a
per-class loss over the selected classes. This module holds every step of
that but the formula: the checks and casts of the inputs, the masks, the
activation (``None``, ``"softmax"`` or ``"sigmoid"``), the pooled sums and
their sum across devices, and the class selection and weighted class mean.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss import _numerics
from jaxloss import _sums


class Region(NamedTuple):
  """The checked inputs of a region loss.

  Attributes:
    x: Probabilities, or logits when ``activation`` is set, ``[..., C]`` in
      the accumulation dtype; 0 at masked pixels (whatever they held).
    labels: Float targets of the shape of ``x`` in its dtype, 0 at masked
      entries, or integer class ids ``x.shape[:-1]`` (int32, or int64).
    valid: The mask with the rank of ``x`` (a pixel mask has a trailing axis
      of size 1), or None.
    axes: The pooled axes.
    activation: None, ``"softmax"`` or ``"sigmoid"``.
  """

  x: jax.Array
  labels: jax.Array
  valid: jax.Array | None
  axes: tuple[int, ...]
  activation: str | None

  @property
  def ids(self) -> bool:
    """Whether the labels are class ids."""
    return self.labels.ndim < self.x.ndim

  def targets(self) -> jax.Array:
    """Float targets, or class ids as boolean one-hot rows; masked entries
    are 0 (False)."""
    if not self.ids:
      return self.labels
    hot = _numerics.one_hot_mask(self.labels, self.x.shape[-1])
    return hot if self.valid is None else hot & self.valid

  def probabilities(self) -> jax.Array:
    """The probabilities, 0 at masked entries; with an activation, its
    backward pass recomputes them from the logits."""
    p = _sums.activate(self.x, self.activation)
    if self.activation is not None and self.valid is not None:
      p = jnp.where(self.valid, p, 0)
    return p


def inputs(
  fn: str,
  probs,
  labels,
  *,
  axis,
  where,
  activation=None,
  per_element: bool = True,
  ids_only: bool = False,
) -> Region:
  """Checks and casts a region loss's arguments into a :class:`Region`.

  ``probs`` holds probabilities, or logits when ``activation`` names one.
  Labels are class ids ``probs.shape[:-1]`` or targets ``probs.shape``
  (``ids_only``: class ids only). ``where`` is a pixel mask
  ``probs.shape[:-1]`` or, with ``per_element``, a pixel-and-class mask
  ``probs.shape``. Value checks (probabilities in ``[0, 1]``, labels in
  range) run under :func:`jaxloss.value_checks`, at valid entries only.
  """
  activation = check_activation(fn, activation)
  probs = _checks.as_float(fn, "probs", probs, min_rank=1)
  if activation == "softmax" and probs.shape[-1] < 2:
    _checks.fail(
      fn,
      f'activation="softmax" needs at least 2 classes on the last axis, '
      f"got probs.shape {probs.shape}; for a binary mask [..., 1] use "
      f'activation="sigmoid"',
    )
  if ids_only:
    labels = _checks.class_ids_for(fn, "probs", probs, labels)
  else:
    labels = _checks.labels_for(fn, "probs", probs, labels)
  if per_element:
    valid = _checks.region_mask(fn, where, probs.shape)
  else:
    mask = _checks.mask_for(fn, where, probs.shape[:-1])
    valid = None if mask is None else mask[..., None]
  axes = _checks.pooled_axes(fn, axis, probs.ndim)
  targets = labels.shape == probs.shape  # else class ids
  if activation is None:
    _checks.debug_unit_interval(fn, "probs", probs, valid)
  if targets:
    _checks.debug_unit_interval(fn, "labels", labels, valid)
  else:
    _checks.debug_labels_in_range(fn, labels, probs.shape[-1], valid)
  x = probs.astype(_numerics.accum_dtype(probs.dtype))
  if targets:
    labels = labels.astype(x.dtype)
    if valid is not None:
      labels = jnp.where(valid, labels, 0)
  else:
    labels = _numerics.class_ids(labels)
  if valid is not None:
    # A masked entry gives nothing, NaN included. The softmax of a pixel
    # reads all its logits: a pixel-and-class mask zeroes the logits of
    # fully masked pixels only (as softmax(x) would, a NaN logit of a
    # partly valid pixel reaches that pixel's other classes).
    keep = valid
    if activation == "softmax" and valid.shape[-1] > 1:
      keep = jnp.any(valid, axis=-1, keepdims=True)
    x = jnp.where(keep, x, 0)
  return Region(x, labels, valid, axes, activation)


def check_activation(fn: str, activation) -> str | None:
  if activation is not None and not (
    isinstance(activation, str) and activation in ("softmax", "sigmoid")
  ):
    _checks.fail(
      fn,
      f'activation must be None, "softmax" or "sigmoid", got {activation!r}',
    )
  return activation


def pooled_stats(
  fn: str,
  region: Region,
  *,
  squared=False,
  soft=False,
  axis_name=None,
  count: bool = False,
) -> tuple[jax.Array, ...]:
  """``(I, P, T)``, each of shape ``kept axes + [C]``, accumulated, and
  with ``count`` also ``N``, the number of valid entries per class.

  With ``axis_name``, the statistics are summed over that mapped axis.
  """
  squared = _checks.flag(fn, "squared", squared)
  soft = _checks.flag(fn, "soft_labels", soft)
  x, labels, valid, axes, activation = region
  stats: tuple[jax.Array, ...]
  stats = _sums.pooled_sums(x, labels, valid, axes, activation, squared, soft)
  if count:
    if valid is None:
      size = math.prod(x.shape[a] for a in axes)
      n = jnp.full(stats[0].shape, size, x.dtype)
    else:
      n = jnp.sum(jnp.broadcast_to(valid, x.shape), axis=axes, dtype=x.dtype)
    stats = stats + (n,)
  return sum_across(stats, axis_name)


def sum_across(stats, axis_name):
  """The pooled statistics summed over the mapped ``axis_name`` (if any);
  each device keeps its own share of the gradient."""
  if axis_name is None:
    return stats
  return _numerics.psum_own_share(stats, axis_name)


# ---------------------------------------------------------------------------
# Classes: selection and the weighted class mean.


def select_classes(fn, classes, class_weights, *stats):
  """The per-class statistics ``[..., C]`` of the selected classes, and their
  weights in the class mean.

  ``"all"`` and ``"present"`` keep every class (``"present"`` weighs a class
  with ``T_c = 0`` by 0; ``stats[-1]`` is ``T``); an index array selects as
  slicing the class axis would (a repeated id counts twice). A traced id
  outside ``[0, C)`` selects NaN statistics (the loss is NaN, never silently
  another class's); a concrete one is refused at trace time.
  """
  num_classes = stats[0].shape[-1]
  selection = _checks.class_selection(fn, classes, num_classes)
  weights = selected_weights(
    fn, selection, class_weights, num_classes, stats[0].dtype
  )
  if not isinstance(selection, str):
    stats = tuple(take_classes(s, selection) for s in stats)
  weights = jnp.broadcast_to(weights, stats[-1].shape)
  if selection == "present":
    weights = jnp.where(stats[-1] > 0, weights, 0)
  return stats, weights


def take_classes(a: jax.Array, selection: jax.Array, fill_value=jnp.nan):
  """``a[..., selection]``, as slicing the class axis would; a traced id
  outside ``[0, C)`` takes ``fill_value`` (never another class)."""
  index = jnp.where(selection < 0, a.shape[-1], selection)
  return jnp.take(a, index, axis=-1, mode="fill", fill_value=fill_value)


def selected_weights(fn, selection, class_weights, num_classes, dtype):
  """The checked ``[C]`` class weights (ones by default), taken at the
  selected classes when ``selection`` is an index array."""
  weights = jnp.ones((num_classes,), dtype)
  if class_weights is not None:
    weights = _checks.nonnegative_vector(
      fn, "class_weights", class_weights, num_classes
    ).astype(dtype)
  if not isinstance(selection, str):
    weights = take_classes(weights, selection)
  return weights


def weighted_mean(per_class: jax.Array, weights: jax.Array) -> jax.Array:
  """``sum(w l) / sum(w)`` over the class axis; 0 when every weight is 0."""
  return _numerics.safe_div(
    jnp.sum(weights * per_class, axis=-1), jnp.sum(weights, axis=-1), 0
  )


def class_mean(fn, per_class, true, classes, class_weights) -> jax.Array:
  """Weighted mean over the selected classes; 0 when none is selected."""
  (per_class, _), weights = select_classes(
    fn, classes, class_weights, per_class, true
  )
  return weighted_mean(per_class, weights)
