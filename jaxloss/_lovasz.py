"""Lovász losses: the convex Lovász extension of the Jaccard (IoU) loss.

Both losses sort per-pixel errors in decreasing order and take the dot product
of the sorted errors with the Lovász gradient of the Jaccard loss (Berman,
Rannen Triki, Blaschko 2018, Algorithm 1). This module holds the losses: their
checks, their errors (``|fg - p|`` for the softmax loss, ``relu(1 - s x)`` for
the hinge), the layout of the rows (one row per kept index and class, the
pooled pixels along it) and the custom derivative. The sort, the Lovász
weights and the derivative with respect to the predictions come from the
sort engine, :func:`jaxloss._lovasz_engine.sort_engine`.

The derivative is a ``jax.custom_jvp`` around one call of the engine: the
forward pass of a differentiated call also returns the derivative of the loss
with respect to the predictions, in their layout; that one array dotted with
the tangent is the JVP, linear in the tangent: reverse mode transposes it into
a product with the cotangent, and second derivatives are 0. Nothing is
differentiated through the sort.

The engine has two cores, chosen per call: the host core (NumPy, through a
callback) in programs lowered for the CPU, the XLA core elsewhere and in
exported programs. The public losses take this automatic choice; tests and
benchmarks choose with :func:`softmax_with_engine` and
:func:`hinge_with_engine`.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics
from jaxloss import _region
from jaxloss._checks import Activation
from jaxloss._checks import Axis
from jaxloss._checks import AxisName
from jaxloss._checks import Classes
from jaxloss._lovasz_engine import sort_engine

ENGINES = ("host", "xla")


# ---------------------------------------------------------------------------
# Layout: one row per (kept index, class), the pooled pixels along it.


class Layout(NamedTuple):
  """Where the axes of an input go when it becomes rows.

  Attributes:
    kept: Axes that stay (leading axes of the rows), in order.
    pooled: Axes flattened into each row, in order.
    class_axis: The class axis, which goes after the kept ones, or None.
  """

  kept: tuple[int, ...]
  pooled: tuple[int, ...]
  class_axis: int | None

  @property
  def order(self) -> tuple[int, ...]:
    """The transposition: kept axes, then the class axis, then pooled ones."""
    classes = () if self.class_axis is None else (self.class_axis,)
    return self.kept + classes + self.pooled

  def to_rows(self, x: jax.Array) -> jax.Array:
    """``x`` (or flags broadcastable to it, of the same rank) as rows."""
    x = jnp.transpose(x, self.order)
    lead = x.shape[: x.ndim - len(self.pooled)]
    return x.reshape(lead + (math.prod(x.shape[len(lead) :]),))

  def from_rows(self, rows: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Inverse of :meth:`to_rows` for an input of ``shape``."""
    rows = rows.reshape(tuple(shape[a] for a in self.order))
    return jnp.transpose(rows, tuple(int(a) for a in np.argsort(self.order)))


def _as_rows(layout, preds, fg, valid):
  """The inputs of :func:`_lovasz_rows` as rows: the one place they move."""
  return (
    layout.to_rows(preds),
    layout.to_rows(fg),
    None if valid is None else layout.to_rows(valid),
  )


def _errors(preds, fg, hinge):
  """Errors ``>= 0``: ``relu(1 - s x)`` (hinge) or ``|fg - p|`` (softmax)."""
  if hinge:
    return jax.nn.relu(jnp.where(fg, 1 - preds, 1 + preds))
  return jnp.abs(fg.astype(preds.dtype) - preds)


# ---------------------------------------------------------------------------
# The custom derivative, shared by both losses.


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5, 6, 7))
def _lovasz_rows(preds, fg, valid, layout, hinge, skip_empty, host, axis_name):
  """Lovász extension of the Jaccard loss, per row.

  Args:
    preds: Float predictions (float32 or float64) in their own layout:
      logits with ``hinge`` (errors ``relu(1 - (2 fg - 1) x)``), otherwise
      probabilities (errors ``|fg - p|``).
    fg: Boolean foreground flags, the shape of ``preds``.
    valid: Boolean flags broadcastable to ``preds`` (same rank, size 1 on
      the class axis if they are per pixel), or None (all valid); invalid
      pixels carry no weight and should have ``fg`` False.
    layout: The :class:`Layout` of the three inputs; static.
    hinge: Hinge errors (True) or softmax errors (False).
    skip_empty: The loss of a row without foreground will not be used (the
      host core skips such rows).
    host: The automatic engine (True) or the XLA core (False); see
      :func:`jaxloss._lovasz_engine.sort_engine`.
    axis_name: Mapped axis (or None) whose devices' rows are pooled.

  Returns:
    ``(loss, total)``, each ``[...]`` (the kept axes, then the class axis):
    the sorted errors dotted with the Lovász gradient, and the number of
    valid foreground pixels (float; no gradient).
  """
  loss, total, _ = _sort_rows(
    preds, fg, valid, layout, hinge, skip_empty, host, axis_name, False
  )
  return loss, total


def _sort_rows(
  preds, fg, valid, layout, hinge, skip_empty, host, axis_name, with_grad
):
  """The engine on the rows of the inputs: ``(loss, total, grad)``, with
  ``grad`` in the layout of ``preds`` (None without ``with_grad``)."""
  p, f, v = _as_rows(layout, preds, fg, valid)
  loss, total, grad = sort_engine(
    _errors(p, f, hinge),
    f,
    v,
    with_grad=with_grad,
    skip_empty=skip_empty,
    host=host,
    axis_name=axis_name,
  )
  if grad is not None:
    grad = layout.from_rows(grad, preds.shape)
  return loss, total, grad


@_lovasz_rows.defjvp
def _lovasz_rows_jvp(
  layout, hinge, skip_empty, host, axis_name, primals, tangents
):
  r"""One sort gives the value and :math:`\partial \ell / \partial` preds.

  The loss is linear in the errors between ties, so its tangent is the
  derivative dotted with the tangent of the predictions, summed over the
  pooled axes: linear, so JAX transposes it for reverse mode (the backward
  pass is the cotangent times the saved derivative, nothing is
  differentiated through the sort), and its own derivative is 0 (the
  Hessian of a piecewise-linear function, almost everywhere).

  The engine's derivative is the Lovász weight with the sign of the error's
  derivative: the error is :math:`1 - p` or :math:`1 - x` at a foreground
  pixel and :math:`p` or :math:`1 + x` at a background one, and ``|.|`` and
  ``relu`` are taken to have derivative 0 where the error is 0.

  With ``axis_name`` the derivative is this device's slice of the global
  one, and the tangent is this device's share of the global tangent: the
  transpose is then exactly the device's slice of the global gradient (no
  sum over devices).
  """
  preds, fg, valid = primals
  preds_dot = tangents[0]
  loss, total, grad = _sort_rows(
    preds, fg, valid, layout, hinge, skip_empty, host, axis_name, True
  )
  loss_dot = jnp.sum(grad * preds_dot, axis=layout.pooled)
  if axis_name is not None:
    loss_dot = _numerics.global_tangent(loss_dot, axis_name)
  return (loss, total), (loss_dot, jnp.zeros_like(total))


# ---------------------------------------------------------------------------
# The losses, with the engine as an argument.


def _softmax(
  probs,
  labels,
  *,
  axis=None,
  where=None,
  classes="present",
  class_weights=None,
  axis_name=None,
  activation=None,
  host=True,
):
  fn = "lovasz_softmax"
  region = _region.inputs(
    fn,
    probs,
    labels,
    axis=axis,
    where=where,
    activation=activation,
    ids_only=True,
  )
  num_classes = region.x.shape[-1]
  selection = _checks.class_selection(fn, classes, num_classes)
  weights = _region.selected_weights(
    fn, selection, class_weights, num_classes, region.x.dtype
  )
  p, labels, mask = region.probabilities(), region.labels, region.valid
  if isinstance(selection, str):
    class_ids = jnp.arange(num_classes, dtype=labels.dtype)
  else:
    # Selecting is slicing the class axis; a traced id outside [0, C)
    # selects NaN probabilities and weights (a NaN loss, never another
    # class).
    class_ids = selection.astype(labels.dtype)
    p = _region.take_classes(p, selection)
    if mask is not None and mask.shape[-1] == num_classes:
      mask = _region.take_classes(mask, selection, fill_value=False)
  fg = labels[..., None] == class_ids.reshape((1,) * labels.ndim + (-1,))
  if mask is not None:
    # Masked entries of p are 0 already (region.probabilities), so no value
    # and no gradient even for NaN probabilities; no foreground there either.
    fg = fg & mask
  layout = Layout(
    tuple(a for a in range(p.ndim - 1) if a not in region.axes),
    region.axes,
    p.ndim - 1,
  )
  losses, totals = _lovasz_rows(
    p, fg, mask, layout, False, selection == "present", host, axis_name
  )
  weights = jnp.broadcast_to(weights, losses.shape)
  if selection == "present":
    weights = jnp.where(totals > 0, weights, 0)
  return _region.weighted_mean(losses, weights)


def _hinge(logits, labels, *, axis=None, where=None, axis_name=None, host=True):
  fn = "lovasz_hinge"
  logits = _checks.as_float(fn, "logits", logits)
  labels = _checks.same_shape(fn, ("logits", "labels"), logits, labels)
  if not (
    jnp.issubdtype(labels.dtype, jnp.integer)
    or jnp.issubdtype(labels.dtype, jnp.floating)
    or labels.dtype == jnp.bool_
  ):
    _checks.fail(
      fn,
      f"labels must be bool, integer or float 0/1, got dtype {labels.dtype}",
      TypeError,
    )
  mask = _checks.mask_for(fn, where, logits.shape)
  axes = _checks.pooled_axes(fn, axis, logits.ndim, class_axis=False)
  if labels.dtype != jnp.bool_ and _checks.checks_enabled():
    bad = (labels != 0) & (labels != 1)
    if mask is not None:
      bad = bad & mask
    _checks.value_check(
      ~jnp.any(bad), f"{fn}: labels must be 0 or 1 where where is True"
    )

  x = logits.astype(_numerics.accum_dtype(logits.dtype))
  fg = labels.astype(bool)
  if mask is not None:
    x = jnp.where(mask, x, 0)  # masked pixels: no value, no gradient
    fg = fg & mask
  layout = Layout(
    tuple(a for a in range(logits.ndim) if a not in axes), axes, None
  )
  losses, _ = _lovasz_rows(x, fg, mask, layout, True, False, host, axis_name)
  return losses


def _host(fn: str, engine: str) -> bool:
  return _checks.option(fn, "engine", engine, ENGINES) == "host"


def softmax_with_engine(
  probs: ArrayLike, labels: ArrayLike, *, engine: str, **options
) -> jax.Array:
  """:func:`lovasz_softmax` with the sort engine chosen by the caller.

  The one way to pick the engine, for tests and benchmarks; the loss is the
  same either way (to rounding).

  Args:
    probs: As in :func:`lovasz_softmax`.
    labels: As in :func:`lovasz_softmax`.
    engine: ``"host"``: the automatic choice of :func:`lovasz_softmax`, the
      NumPy core through a host callback in programs lowered for the CPU, the
      XLA core in programs lowered for another platform or for
      ``jax.export``. ``"xla"``: the XLA core everywhere (what GPU and TPU
      run, here on any platform).
    **options: The keyword options of :func:`lovasz_softmax`.

  Returns:
    The loss, as :func:`lovasz_softmax` returns it.
  """
  return _softmax(
    probs, labels, host=_host("softmax_with_engine", engine), **options
  )


def hinge_with_engine(
  logits: ArrayLike, labels: ArrayLike, *, engine: str, **options
) -> jax.Array:
  """:func:`lovasz_hinge` with the sort engine chosen by the caller.

  Args:
    logits: As in :func:`lovasz_hinge`.
    labels: As in :func:`lovasz_hinge`.
    engine: ``"host"`` or ``"xla"``, as in :func:`softmax_with_engine`.
    **options: The keyword options of :func:`lovasz_hinge`.

  Returns:
    The loss, as :func:`lovasz_hinge` returns it.
  """
  return _hinge(
    logits, labels, host=_host("hinge_with_engine", engine), **options
  )


# ---------------------------------------------------------------------------
# Public losses.


def lovasz_softmax(
  probs: ArrayLike,
  labels: ArrayLike,
  *,
  axis: Axis = None,
  where: ArrayLike | None = None,
  classes: Classes = "present",
  class_weights: ArrayLike | None = None,
  axis_name: AxisName = None,
  activation: Activation = None,
) -> jax.Array:
  r"""Lovász-softmax loss: the Lovász extension of the multiclass IoU loss.

  For each class :math:`c`, over the pooled valid pixels :math:`i`, the
  errors :math:`e_i = |\mathbb{1}[y_i = c] - p_{ic}|` are sorted in decreasing
  order, :math:`e_{\pi_1} \ge e_{\pi_2} \ge \dots`, and

  .. math::
    \ell_c = \sum_k e_{\pi_k} \big(J_c(k) - J_c(k - 1)\big),
    \qquad J_c(k) = 1 - \frac{T_c - F_k}{T_c + B_k},

  with :math:`T_c` the number of pixels of class :math:`c`, and :math:`F_k`,
  :math:`B_k` the pixels of class :math:`c` and of other classes among the
  first :math:`k` (:math:`J_c(k)` is the Jaccard loss of getting exactly
  those :math:`k` pixels wrong; :math:`J_c(0) = 0`). The loss is the mean of
  :math:`\ell_c` over the selected classes, or with ``class_weights`` the
  weighted mean :math:`\sum_c w_c \ell_c / \sum_c w_c`.

  Args:
    probs: Probabilities ``[..., C]``, or logits with ``activation``.
    labels: Integer class ids of shape ``probs.shape[:-1]``.
    axis: Axes to pool over; default every axis but the class axis (the
      whole batch is one example, the reference's ``per_image=False``).
      ``axis=(1, 2)`` on ``[B, H, W, C]`` gives the per-image losses ``[B]``,
      equal to ``jax.vmap``; their mean is the reference's
      ``per_image=True``.
    where: Optional boolean mask of shape ``probs.shape[:-1]`` (one flag a
      pixel) or ``probs.shape`` (one a pixel and class: class :math:`c` is
      sorted over its own valid pixels); a masked entry counts for nothing.
      For an ignore label: ``where=labels != 255``.
    classes: ``"present"`` (classes with a pixel among the valid pooled
      pixels), ``"all"``, or an integer array of class ids to average over.
    class_weights: Optional non-negative weights ``[C]``, one per class of
      ``probs``: the loss is then the weighted mean of the selected classes'
      losses instead of their mean.
    axis_name: Name (or tuple of names) of a ``jax.shard_map`` / ``jax.pmap``
      axis whose devices split the pooled pixels (typically the batch): the
      loss is then the Lovász-softmax of the global batch, the same on every
      device, and each device's gradient is its slice of the global gradient.
    activation: None (default): ``probs`` holds probabilities.
      ``"softmax"`` or ``"sigmoid"``: ``probs`` holds logits and the loss
      applies the activation itself, with a backward pass that recomputes the
      probabilities from the logits instead of keeping them; see
      :func:`jaxloss.dice_loss`.

  Returns:
    The loss with the pooled axes and the class axis removed (a scalar by
    default), float32 (float64 for float64 probabilities).

  Convention:
    Equal to Algorithm 1 of Berman et al. in value and gradient. A class
    absent from its pooled group, when selected (``"all"`` or an index
    array), has :math:`J_c = 1` from the first pixel on, so its loss is its
    largest probability. No valid pixel, or no present class with
    ``"present"``, gives 0 with a zero gradient. Masked pixels sort last with
    zero weight (shapes never depend on the mask). Tied errors give the
    reference's value (the Lovász extension does not depend on how ties are
    ordered) and the gradient of one tie order, a valid subgradient. The
    derivative of :math:`|t - p|` at :math:`p = t` is taken as 0, and as
    :math:`\mp 1` elsewhere (probabilities are assumed in [0, 1]; reported
    under ``checkify`` inside :func:`jaxloss.value_checks`, as labels out of
    range, at valid pixels). bf16/fp16
    probabilities are sorted and summed in float32. The sort runs once per
    call; the gradient reuses its order and saves one float per pixel and
    class. On CPU the sort runs in NumPy (a host callback), elsewhere and in
    programs lowered for ``jax.export`` in XLA; both give the same results.
    Every AD mode works: the derivative is a ``jax.custom_jvp`` linear in the
    tangent (``grad``, ``jvp``, ``jacfwd``; Hessian-vector products are 0,
    the loss being piecewise linear). Classes: an index array selects as
    slicing the class axis (a repeated id counts twice); concrete ids must
    lie in ``[0, C)``, a traced id outside gives NaN. NaN in any selected or
    unselected row's probabilities gives a NaN loss.

    Class weights, as in :func:`jaxloss.dice_loss`: with ``"present"`` an
    absent class weighs 0 whatever its weight; an index array selects the
    weights as it selects the classes (a repeated id counts its weight
    twice); no selected weight above 0 gives 0 with a zero gradient. All
    weights equal give the unweighted loss. Concrete weights must be finite
    and >= 0 (checked at trace time); traced ones are not checked. The
    weights apply after the sort and leave its cost unchanged.

    Across devices (``axis_name``): every device gathers the sort keys of all
    devices (4 bytes per pixel and class) and sorts the global rows itself,
    so the result is exact, equal to the single-device loss on the global
    batch (ties included, when the devices split the leading pooled axis in
    order); each device's gradient is its slice of the global one (for
    replicated parameters ``shard_map`` returns the sum of the devices'
    shares, which is the global gradient; under ``pmap`` sum them with
    ``lax.psum``). The per-image loss (``axis=(1, 2)``) needs no
    communication: shard the batch and leave ``axis_name`` out. Outside
    ``shard_map`` / ``pmap`` an ``axis_name`` raises JAX's ``NameError``
    (unbound axis name). Forward mode with ``axis_name``: inside a
    type-checked ``shard_map`` (the default) the tangent is the global one;
    under ``pmap`` or ``check_vma=False`` each device's tangent is its own
    share (``lax.psum`` them).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> labels = jnp.array([0, 1])
    >>> # A perfect prediction costs nothing.
    >>> jaxloss.lovasz_softmax(jnp.eye(2), labels)
    Array(0., dtype=float32)
    >>> # Every error is 1/4: each class loses 1/4 times the Jaccard loss of
    >>> # getting both pixels wrong, which is 1.
    >>> probs = jnp.array([[0.75, 0.25], [0.25, 0.75]])
    >>> jaxloss.lovasz_softmax(probs, labels)
    Array(0.25, dtype=float32)

  References:
    Berman, Rannen Triki, Blaschko, "The Lovász-Softmax loss: A tractable
    surrogate for the optimization of the intersection-over-union measure in
    neural networks", CVPR 2018. https://arxiv.org/abs/1705.08790
  """
  return _softmax(
    probs,
    labels,
    axis=axis,
    where=where,
    classes=classes,
    class_weights=class_weights,
    axis_name=axis_name,
    activation=activation,
  )


def lovasz_hinge(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  axis: Axis = None,
  where: ArrayLike | None = None,
  axis_name: AxisName = None,
) -> jax.Array:
  r"""Lovász hinge loss: the Lovász extension of the binary IoU loss.

  Over the pooled valid pixels, with signs :math:`s_i = 2 y_i - 1`, the hinge
  errors :math:`e_i = 1 - s_i x_i` are sorted in decreasing order and

  .. math::
    \ell = \sum_k \max(e_{\pi_k}, 0) \big(J(k) - J(k - 1)\big),
    \qquad J(k) = 1 - \frac{T - F_k}{T + B_k},

  with :math:`T` the number of foreground pixels and :math:`F_k, B_k` the
  foreground and background pixels among the first :math:`k`.

  Args:
    logits: Float logits of any shape (one per pixel, no class axis).
    labels: Binary labels of the same shape (bool, integer or float, 0 or 1).
    axis: Axes to pool over; default every axis (the whole batch is one
      example). ``axis=(1, 2)`` on ``[B, H, W]`` gives the per-image losses
      ``[B]``, equal to ``jax.vmap``.
    where: Optional boolean mask of the shape of ``logits``; a masked pixel
      counts for nothing.
    axis_name: Name (or tuple of names) of a ``jax.shard_map`` / ``jax.pmap``
      axis whose devices split the pooled pixels: the global-batch loss on
      every device, and each device's gradient its slice of the global one.

  Returns:
    The loss with the pooled axes removed (a scalar by default), float32
    (float64 for float64 logits).

  Convention:
    Equal to the binary Lovász hinge of Berman et al. in value and gradient.
    An image without foreground has :math:`J = 1` from the first pixel on,
    so its loss is the largest hinge error (as in the reference; it is not
    0). No valid pixel gives 0 with a zero gradient. Masked pixels sort last
    with zero weight. Ties: the reference's value and a valid subgradient.
    bf16/fp16 logits are computed in float32. The gradient reuses the
    forward sort (one saved float per pixel); every AD mode works (see
    :func:`lovasz_softmax`). Labels other than 0 or 1 at valid pixels are
    reported under ``checkify`` inside :func:`jaxloss.value_checks`. ``axis_name`` as in
    :func:`lovasz_softmax` (per-image losses need no communication).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> labels = jnp.array([1, 0])
    >>> # Margins of 2 on both pixels: every hinge error is <= 0.
    >>> jaxloss.lovasz_hinge(jnp.array([2.0, -2.0]), labels)
    Array(0., dtype=float32)
    >>> # Both errors are 1/2 and the Jaccard loss of missing both is 1.
    >>> jaxloss.lovasz_hinge(jnp.array([0.5, -0.5]), labels)
    Array(0.5, dtype=float32)

  References:
    Berman, Rannen Triki, Blaschko, "The Lovász-Softmax loss: A tractable
    surrogate for the optimization of the intersection-over-union measure in
    neural networks", CVPR 2018. https://arxiv.org/abs/1705.08790
  """
  return _hinge(logits, labels, axis=axis, where=where, axis_name=axis_name)
