"""Overlap (region) losses: Dice, soft IoU / Jaccard, Tversky, generalized Dice.

Each loss pools three statistics per class over the pooled axes and the valid
pixels, :math:`I = \\sum p t`, :math:`P = \\sum p`, :math:`T = \\sum t`, turns
them into a per-class loss and averages over the selected classes.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics
from jaxloss._checks import Axis
from jaxloss._checks import AxisName
from jaxloss._checks import Classes


def _sums(p, t, axes, squared, soft):
  """The three sums of :func:`overlap_sums` in one variadic reduction."""
  zero = jnp.zeros((), p.dtype)
  if t.dtype == jnp.bool_:
    inter = jnp.where(t, p, zero)
  elif soft and not squared:
    inter = jnp.minimum(p, t)
  else:
    inter = p * t
  terms = (
    inter,
    p * p if squared else p,
    t.astype(p.dtype) if t.dtype == jnp.bool_ else (t * t if squared else t),
  )
  return lax.reduce(
    terms, (zero,) * 3, lambda a, b: tuple(x + y for x, y in zip(a, b)), axes
  )


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def overlap_sums(
  p: jax.Array, t: jax.Array, axes: tuple[int, ...], squared: bool, soft: bool
) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""``(I, P, T)``: the intersection, :math:`\sum p` and :math:`\sum t`
  over ``axes`` (:math:`\sum p^2`, :math:`\sum t^2` if ``squared``).

  ``t`` is a float target or a boolean one-hot mask. The intersection is
  :math:`\sum p t`, or with ``soft`` (and float, unsquared targets)
  :math:`\sum \min(p, t) = \sum (p + t - |p - t|) / 2`, which equals
  :math:`\sum p t` on 0/1 targets. One variadic reduction reads the inputs
  once. The tangent is written as plain sums, linear in the input tangents:
  JAX transposes it into one elementwise expression, which XLA fuses into
  the caller's backward pass, and differentiates it for second order.
  (Autodiff of three separate ``jnp.sum`` calls makes XLA:CPU materialise
  several full-size temporaries.)
  """
  return _sums(p, t, axes, squared, soft)


@functools.partial(overlap_sums.defjvp, symbolic_zeros=True)
def _overlap_sums_jvp(axes, squared, soft, primals, tangents):
  p, t = primals
  p_dot, t_dot = tangents
  # The primal is the function itself, so that differentiating this rule
  # (second order) uses this rule again, never autodiff of lax.reduce.
  out = overlap_sums(p, t, axes, squared, soft)
  hard = t.dtype == jnp.bool_
  # d min(p, t) / dp: 1 below the target, 0 above, and t at a tie, so that
  # 0/1 targets get the derivative of p t exactly (a valid subgradient).
  if soft and not squared and not hard:
    d_p = jnp.where(p < t, 1, jnp.where(p > t, 0, t)).astype(p.dtype)
    d_t = 1 - d_p
  else:
    d_p, d_t = t, p
  zero = jnp.zeros_like(out[0])
  d_inter, d_pred, d_true = zero, zero, zero
  if not isinstance(p_dot, jax.custom_derivatives.SymbolicZero):
    if hard:
      d_inter = jnp.sum(jnp.where(t, p_dot, 0), axes)
    else:
      d_inter = jnp.sum(p_dot * d_p, axes)
    d_pred = jnp.sum(2 * p * p_dot if squared else p_dot, axes)
  if not hard and not isinstance(t_dot, jax.custom_derivatives.SymbolicZero):
    d_inter = d_inter + jnp.sum(d_t * t_dot, axes)
    d_true = jnp.sum(2 * t * t_dot if squared else t_dot, axes)
  return out, (d_inter, d_pred, d_true)


def region_inputs(fn, probs, labels, *, axis, where, per_element=True):
  """The checked inputs of a region loss: ``(p, t, valid, axes)``.

  ``p``: the probabilities in the accumulation dtype; ``t``: float targets
  in it, or class ids as a boolean one-hot mask (never a float one-hot
  array); ``valid``: the mask with the rank of ``probs`` (a pixel mask gets
  a trailing axis of size 1; without ``per_element`` only a pixel mask is
  accepted), or None; ``axes``: the pooled axes. Masked entries of ``p``
  and ``t`` are 0, whatever they held (NaN included).
  """
  probs = _checks.as_float(fn, "probs", probs, min_rank=1)
  labels = _checks.labels_for(fn, "probs", probs, labels)
  if per_element:
    valid = _checks.region_mask(fn, where, probs.shape)
  else:
    mask = _checks.mask_for(fn, where, probs.shape[:-1])
    valid = None if mask is None else mask[..., None]
  axes = _checks.pooled_axes(fn, axis, probs.ndim)
  dtype = _numerics.accum_dtype(probs.dtype)
  _checks.debug_unit_interval(fn, "probs", probs, valid)
  p = probs.astype(dtype)
  if labels.shape == probs.shape:
    _checks.debug_unit_interval(fn, "labels", labels, valid)
    t = labels.astype(dtype)
  else:
    _checks.debug_labels_in_range(fn, labels, probs.shape[-1], valid)
    t = _numerics.one_hot_mask(labels, probs.shape[-1])
  if valid is not None:
    p = jnp.where(valid, p, 0)
    t = jnp.where(valid, t, jnp.zeros((), t.dtype))
  return p, t, valid, axes


def _pooled_stats(
  fn,
  probs,
  labels,
  *,
  axis,
  where,
  squared=False,
  soft=False,
  axis_name=None,
  count=False,
):
  """Returns ``(I, P, T)``, each of shape ``kept axes + [C]``, accumulated,
  and with ``count`` also ``N``, the number of valid entries per class.

  With ``axis_name``, the statistics are summed over that mapped axis.
  """
  p, t, valid, axes = region_inputs(fn, probs, labels, axis=axis, where=where)
  squared = _checks.flag(fn, "squared", squared)
  soft = _checks.flag(fn, "soft_labels", soft)
  stats = overlap_sums(p, t, axes, squared, soft)
  if count:
    if valid is None:
      size = math.prod(p.shape[a] for a in axes)
      n = jnp.full(stats[0].shape, size, p.dtype)
    else:
      n = jnp.sum(jnp.broadcast_to(valid, p.shape), axis=axes, dtype=p.dtype)
    stats = stats + (n,)
  if axis_name is not None:
    stats = _numerics.psum_own_share(stats, axis_name)
  return stats


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


def _smooth(fn, smooth):
  return _checks.nonnegative(fn, "smooth", smooth)


def dice_loss(
  probs: ArrayLike,
  labels: ArrayLike,
  *,
  axis: Axis = None,
  axis_name: AxisName = None,
  where: ArrayLike | None = None,
  smooth: float = 1.0,
  squared: bool = False,
  soft_labels: bool = True,
  classes: Classes = "all",
  class_weights: ArrayLike | None = None,
) -> jax.Array:
  r"""Soft Dice loss, pooled over ``axis``, averaged over classes.

  Per class :math:`c`, over the pooled valid pixels,

  .. math::
    \ell_c = 1 - \frac{2 I_c + s}{P_c + T_c + s},
    \qquad I_c = \sum_i p_{ic} t_{ic},\ P_c = \sum_i p_{ic},\
    T_c = \sum_i t_{ic}

  (with ``squared=True``, :math:`P_c = \sum_i p_{ic}^2`,
  :math:`T_c = \sum_i t_{ic}^2`, as in V-Net), and the loss is
  :math:`\sum_c w_c \ell_c / \sum_c w_c` over the selected classes.

  Args:
    probs: Probabilities ``[..., C]`` (apply ``jax.nn.softmax`` or
      ``jax.nn.sigmoid`` to logits first).
    labels: Integer class ids of shape ``probs.shape[:-1]``, or targets
      (one-hot, multi-label or soft) of shape ``probs.shape``. Binary masks
      with one channel: ``mask[..., None]``.
    axis: Axes to pool over; default every axis but the class axis (the whole
      batch is one example). ``axis=(1, 2)`` on ``[B, H, W, C]`` is per-image.
    axis_name: Name (or tuple of names) of the ``jax.shard_map`` /
      ``jax.pmap`` axis over which the pooled axes are split across devices.
      The pooled statistics are summed over it, so every device returns the
      loss of the global batch. Default ``None``: no communication.
    where: Optional boolean mask of shape ``probs.shape[:-1]`` (one flag a
      pixel) or ``probs.shape`` (one a pixel and class, for partially
      annotated multi-label data); a masked entry counts for nothing. For an
      ignore label: ``where=labels != 255``.
    smooth: :math:`s`, added to numerator and denominator.
    squared: Square :math:`p` and :math:`t` in the denominator.
    soft_labels: Write the intersection as :math:`I_c = \sum_i \min(p_{ic},
      t_{ic})`, so that the loss of soft targets is 0 at, and only at,
      :math:`p = t`; equal to :math:`\sum_i p_{ic} t_{ic}` on hard labels.
      ``False``: the classic product.
    classes: ``"all"``, ``"present"`` (classes with :math:`T_c > 0` in the
      pooled group) or an integer array of class ids to average over.
    class_weights: Optional ``[C]`` weights :math:`w_c` of the class mean.

  Returns:
    The loss with the pooled axes and the class axis removed (a scalar by
    default), float32 (float64 for float64 probabilities).

  Convention:
    Sums run in float32 for bf16/fp16 input, so large fp16 volumes do not
    overflow. A class with :math:`P_c + T_c + s = 0` has loss 0 (empty
    prediction of an empty target is perfect), with zero gradient. No selected
    class (e.g. ``"present"`` on an empty target) gives 0. ``smooth=1`` is the
    common choice (optax's default); MONAI uses ``1e-5``. Default pooling is
    the batch-global Dice; optax's ``dice_loss`` defaults to per-image.

    Soft targets (``soft_labels=True``, the default): with
    :math:`I = \sum \min(p, t)` the loss is
    :math:`\sum |p - t| / (P + T + s)` up to smoothing, so it is 0 at, and
    only at, :math:`p = t` (Wang et al. 2023). The classic product
    (``soft_labels=False``, MONAI's and optax's form) is not: at
    :math:`t = 0.5` it is 0.5 at :math:`p = t` and 0.33 at :math:`p = 1`, so
    label smoothing, mixup or averaged annotations push the prediction away
    from the target. The two agree, value and gradient, on hard labels
    (class ids, or float targets that are 0 or 1), so the default costs
    nothing there. With ``squared=True`` the intersection stays
    :math:`\sum p t`: that loss is :math:`\sum (p - t)^2 / (P + T + s)` up
    to smoothing, already minimal at :math:`p = t`. At :math:`p = t` the
    derivative of :math:`\min` is taken as :math:`t` (that of the product).

    Per-element masks (``where`` of shape ``probs.shape``) drop single
    (pixel, class) entries from every sum: a class counts only the pixels
    annotated for it.

    Across devices (``axis_name``): :math:`I, P, T` are summed over the mapped
    axis before the loss is formed, so the value equals the single-device loss
    on the concatenated global batch (classes ``"present"`` and the
    generalized-Dice weights too), and the gradient with respect to each
    device's ``probs`` is that device's slice of the global gradient. The sum
    is transposed as the identity, not as another ``psum`` (which under
    ``pmap`` would scale each gradient by the number of devices). Gradients of
    replicated parameters: ``shard_map`` sums the devices' shares itself;
    under ``pmap`` sum them with ``lax.psum`` (not ``pmean``). The mapped axis
    must split pooled axes only: per-image losses (``axis=(1, 2)`` over a
    batch-split input) need no ``axis_name``. Outside ``shard_map`` / ``pmap``
    an ``axis_name`` raises JAX's ``NameError`` (unbound axis name). With
    ``axis_name`` the cross-device sum has a custom reverse rule, so forward
    mode (``jax.jvp``) is not available there.

    Differentiation: the three pooled sums have a custom JVP that is linear in
    the tangents, so ``grad``, ``jvp``, ``jacfwd`` and Hessian-vector
    products all work (the reverse pass is one fused elementwise loop).
    Classes: an index array selects as slicing the class axis would (a
    repeated id counts twice); concrete ids (Python, NumPy, also under
    ``jit``) must lie in ``[0, C)``; a traced id outside gives NaN.
    Probabilities outside [0, 1] and class ids outside ``[0, C)`` at valid
    pixels are reported under ``checkify`` inside
    :func:`jaxloss.value_checks`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # A 2x2 binary mask: I = 1, P = 2, T = 2, so Dice = 2 * 1 / (2 + 2).
    >>> probs = jnp.array([[1.0, 0.0], [1.0, 0.0]])[..., None]
    >>> mask = jnp.array([[1.0, 1.0], [0.0, 0.0]])[..., None]
    >>> jaxloss.dice_loss(probs, mask, smooth=0.0)
    Array(0.5, dtype=float32)

  References:
    Milletari, Navab, Ahmadi, "V-Net: Fully Convolutional Neural Networks for
    Volumetric Medical Image Segmentation", 3DV 2016.
    https://arxiv.org/abs/1606.04797
  """
  fn = "dice_loss"
  smooth = _smooth(fn, smooth)
  inter, pred, true = _pooled_stats(
    fn,
    probs,
    labels,
    axis=axis,
    where=where,
    squared=squared,
    soft=soft_labels,
    axis_name=axis_name,
  )
  per_class = 1 - _numerics.safe_div(
    2 * inter + smooth, pred + true + smooth, 1
  )
  return class_mean(fn, per_class, true, classes, class_weights)


def iou_loss(
  probs: ArrayLike,
  labels: ArrayLike,
  *,
  axis: Axis = None,
  axis_name: AxisName = None,
  where: ArrayLike | None = None,
  smooth: float = 1.0,
  squared: bool = False,
  soft_labels: bool = True,
  classes: Classes = "all",
  class_weights: ArrayLike | None = None,
) -> jax.Array:
  r"""Soft IoU (Jaccard) loss, pooled over ``axis``, averaged over classes.

  Per class, with :math:`I, P, T` as in :func:`dice_loss`,

  .. math::
    \ell_c = 1 - \frac{I_c + s}{P_c + T_c - I_c + s}.

  Args:
    probs: Probabilities ``[..., C]``.
    labels: Integer class ids ``probs.shape[:-1]`` or targets ``probs.shape``.
    axis: Pooled axes; default all but the class axis.
    axis_name: Mapped axis (``shard_map`` / ``pmap``) to sum the pooled
      statistics over, for the loss of the global batch; see
      :func:`dice_loss`.
    where: Optional boolean mask of shape ``probs.shape[:-1]`` or
      ``probs.shape``; see :func:`dice_loss`.
    smooth: :math:`s`, added to numerator and denominator.
    squared: Use :math:`\sum p^2` and :math:`\sum t^2` for :math:`P, T`.
    soft_labels: :math:`I_c = \sum_i \min(p_{ic}, t_{ic})`; see
      :func:`dice_loss`.
    classes: ``"all"``, ``"present"`` or an integer array of class ids.
    class_weights: Optional ``[C]`` weights of the class mean.

  Returns:
    The loss with the pooled axes and the class axis removed, float32
    (float64 for float64 probabilities).

  Convention:
    As :func:`dice_loss`, ``axis_name`` included. On hard labels and
    ``smooth=0``, per class :math:`\mathrm{IoU} = D / (2 - D)` with :math:`D`
    the Dice score.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # I = 1, union = 2 + 2 - 1 = 3: loss 1 - 1/3.
    >>> probs = jnp.array([[1.0, 0.0], [1.0, 0.0]])[..., None]
    >>> mask = jnp.array([[1.0, 1.0], [0.0, 0.0]])[..., None]
    >>> jaxloss.iou_loss(probs, mask, smooth=0.0)
    Array(0.6666666, dtype=float32)

  References:
    Rahman, Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks
    for Image Segmentation", ISVC 2016.
    https://doi.org/10.1007/978-3-319-50835-1_22
  """
  fn = "iou_loss"
  smooth = _smooth(fn, smooth)
  inter, pred, true = _pooled_stats(
    fn,
    probs,
    labels,
    axis=axis,
    where=where,
    squared=squared,
    soft=soft_labels,
    axis_name=axis_name,
  )
  per_class = 1 - _numerics.safe_div(
    inter + smooth, pred + true - inter + smooth, 1
  )
  return class_mean(fn, per_class, true, classes, class_weights)


def tversky_loss(
  probs: ArrayLike,
  labels: ArrayLike,
  *,
  alpha: float = 0.5,
  beta: float = 0.5,
  gamma: float = 1.0,
  axis: Axis = None,
  axis_name: AxisName = None,
  where: ArrayLike | None = None,
  smooth: float = 1.0,
  squared: bool = False,
  soft_labels: bool = True,
  classes: Classes = "all",
  class_weights: ArrayLike | None = None,
) -> jax.Array:
  r"""Tversky loss and focal Tversky loss, pooled over ``axis``.

  Per class, with :math:`I, P, T` as in :func:`dice_loss`, false positives
  :math:`P - I` and false negatives :math:`T - I`,

  .. math::
    \ell_c = \left(1 - \frac{I_c + s}
      {I_c + \alpha (P_c - I_c) + \beta (T_c - I_c) + s}\right)^{\gamma}.

  Args:
    probs: Probabilities ``[..., C]``.
    labels: Integer class ids ``probs.shape[:-1]`` or targets ``probs.shape``.
    alpha: Weight of false positives.
    beta: Weight of false negatives (``beta > alpha`` favours recall).
    gamma: Focal exponent; ``gamma=1`` is the Tversky loss.
    axis: Pooled axes; default all but the class axis.
    axis_name: Mapped axis (``shard_map`` / ``pmap``) to sum the pooled
      statistics over, for the loss of the global batch; see
      :func:`dice_loss`.
    where: Optional boolean mask of shape ``probs.shape[:-1]`` or
      ``probs.shape``; see :func:`dice_loss`.
    smooth: :math:`s`, added to numerator and denominator.
    squared: Use :math:`\sum p^2` and :math:`\sum t^2` for :math:`P, T`.
    soft_labels: :math:`I_c = \sum_i \min(p_{ic}, t_{ic})`; see
      :func:`dice_loss`.
    classes: ``"all"``, ``"present"`` or an integer array of class ids.
    class_weights: Optional ``[C]`` weights of the class mean.

  Returns:
    The loss with the pooled axes and the class axis removed, float32
    (float64 for float64 probabilities).

  Convention:
    As :func:`dice_loss` (``axis_name`` included). ``alpha = beta = 1/2``
    is the Dice loss with twice the smoothing (``tversky_loss(p, y, smooth=s)
    == dice_loss(p, y, smooth=2 * s)``, equal at ``smooth=0``) and
    ``alpha = beta = 1`` the IoU loss. ``gamma`` may be traced. ``gamma`` is the
    exponent itself: Abraham and Khan write :math:`\ell^{1/\gamma}`, so
    their :math:`\gamma = 4/3` is ``gamma=0.75`` here. For ``gamma < 1`` the
    gradient at a perfect class (loss 0) is 0, not infinite.
    With soft labels, the false positives :math:`P - I = \sum
    \max(p - t, 0)` and false negatives :math:`T - I = \sum \max(t - p, 0)`
    are both 0 at :math:`p = t`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # I = 1, one false positive, one false negative.
    >>> probs = jnp.array([[1.0, 0.0], [1.0, 0.0]])[..., None]
    >>> mask = jnp.array([[1.0, 1.0], [0.0, 0.0]])[..., None]
    >>> # Only false negatives count: 1 - 1 / (1 + 1).
    >>> jaxloss.tversky_loss(probs, mask, alpha=0.0, beta=1.0, smooth=0.0)
    Array(0.5, dtype=float32)

  References:
    Salehi, Erdogmus, Gholipour, "Tversky loss function for image segmentation
    using 3D fully convolutional deep networks", MLMI 2017.
    https://arxiv.org/abs/1706.05721 ;
    Abraham, Khan, "A Novel Focal Tversky loss function with improved
    Attention U-Net for lesion segmentation", ISBI 2019.
    https://arxiv.org/abs/1810.07842
  """
  fn = "tversky_loss"
  smooth = _smooth(fn, smooth)
  alpha = _checks.nonnegative(fn, "alpha", alpha)
  beta = _checks.nonnegative(fn, "beta", beta)
  gamma = _checks.scalar(fn, "gamma", gamma, low=0.0, above=True)
  inter, pred, true = _pooled_stats(
    fn,
    probs,
    labels,
    axis=axis,
    where=where,
    squared=squared,
    soft=soft_labels,
    axis_name=axis_name,
  )
  den = inter + alpha * (pred - inter) + beta * (true - inter) + smooth
  per_class = 1 - _numerics.safe_div(inter + smooth, den, 1)
  if _checks.is_traced(gamma) or gamma != 1:
    # Rounding can make 1 - (I + s) / den slightly negative; NaN stays NaN.
    per_class = _numerics.power(jnp.where(per_class < 0, 0, per_class), gamma)
  return class_mean(fn, per_class, true, classes, class_weights)


def generalized_dice_loss(
  probs: ArrayLike,
  labels: ArrayLike,
  *,
  weighting: str = "square",
  axis: Axis = None,
  axis_name: AxisName = None,
  where: ArrayLike | None = None,
  smooth: float = 1.0,
  squared: bool = False,
  soft_labels: bool = True,
  classes: Classes = "all",
  class_weights: ArrayLike | None = None,
) -> jax.Array:
  r"""Generalized Dice loss (Sudre et al.), pooled over ``axis``.

  With :math:`I, P, T` as in :func:`dice_loss`,

  .. math::
    \ell = 1 - \frac{2 \sum_c w_c I_c + s}{\sum_c w_c (P_c + T_c) + s},
    \qquad w_c = 1 / T_c^2 \ \text{("square")},\ 1 / T_c \
    \text{("simple")},\ 1 \ \text{("uniform")}.

  Args:
    probs: Probabilities ``[..., C]``.
    labels: Integer class ids ``probs.shape[:-1]`` or targets ``probs.shape``.
    weighting: ``"square"``, ``"simple"`` or ``"uniform"``.
    axis: Pooled axes; default all but the class axis.
    axis_name: Mapped axis (``shard_map`` / ``pmap``) to sum the pooled
      statistics over, for the loss of the global batch; see
      :func:`dice_loss`.
    where: Optional boolean mask of shape ``probs.shape[:-1]`` or
      ``probs.shape``; see :func:`dice_loss`.
    smooth: :math:`s`, added to numerator and denominator.
    squared: Use :math:`\sum p^2` and :math:`\sum t^2` for :math:`P, T`.
    soft_labels: :math:`I_c = \sum_i \min(p_{ic}, t_{ic})`; see
      :func:`dice_loss`.
    classes: ``"all"``, ``"present"`` or an integer array of class ids that
      enter the sums.
    class_weights: Optional ``[C]`` factors multiplied into :math:`w_c`.

  Returns:
    The loss with the pooled axes and the class axis removed, float32
    (float64 for float64 probabilities).

  Convention:
    A class absent from the target (:math:`T_c = 0`) takes the largest finite
    weight of its pooled group, so false positives on it still cost (MONAI's
    choice); if no class is present every weight is 1. The weights are
    constants of the gradient. :math:`w_c` uses :math:`T_c` as pooled (so
    :math:`\sum t^2` with ``squared=True``). With ``axis_name`` the weights
    come from the globally summed :math:`T_c`, as in :func:`dice_loss`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # A perfect prediction: loss 0.
    >>> labels = jnp.array([[0, 1], [1, 1]])
    >>> probs = jnp.eye(2)[labels]
    >>> jaxloss.generalized_dice_loss(probs, labels)
    Array(0., dtype=float32)

  References:
    Sudre, Li, Vercauteren, Ourselin, Cardoso, "Generalised Dice overlap as a
    deep learning loss function for highly unbalanced segmentations", DLMIA
    2017. https://arxiv.org/abs/1707.03237
  """
  fn = "generalized_dice_loss"
  _checks.option(fn, "weighting", weighting, ("square", "simple", "uniform"))
  smooth = _smooth(fn, smooth)
  stats = _pooled_stats(
    fn,
    probs,
    labels,
    axis=axis,
    where=where,
    squared=squared,
    soft=soft_labels,
    axis_name=axis_name,
  )
  (inter, pred, true), selected = select_classes(
    fn, classes, class_weights, *stats
  )
  true_const = lax.stop_gradient(true)
  if weighting == "uniform":
    weights = jnp.ones_like(true_const)
  else:
    power = 2 if weighting == "square" else 1
    weights = _numerics.safe_div(1, lax.integer_pow(true_const, power), jnp.inf)
    # The largest finite weight among the selected classes (no class: 1).
    finite = jnp.isfinite(weights) & (selected > 0)
    largest = jnp.max(
      jnp.where(finite, weights, 0), axis=-1, keepdims=True, initial=0
    )
    largest = jnp.where(jnp.any(finite, axis=-1, keepdims=True), largest, 1)
    weights = jnp.where(jnp.isinf(weights), largest, weights)
  weights = weights * selected
  num = 2 * jnp.sum(weights * inter, axis=-1) + smooth
  den = jnp.sum(weights * (pred + true), axis=-1) + smooth
  return 1 - _numerics.safe_div(num, den, 1)


def mcc_loss(
  probs: ArrayLike,
  labels: ArrayLike,
  *,
  axis: Axis = None,
  axis_name: AxisName = None,
  where: ArrayLike | None = None,
  smooth: float = 1.0,
  classes: Classes = "all",
  class_weights: ArrayLike | None = None,
) -> jax.Array:
  r"""Matthews correlation coefficient (MCC) loss, pooled over ``axis``.

  Per class, with the soft confusion counts over the :math:`N_c` pooled
  valid pixels, :math:`TP = I_c`, :math:`FP = P_c - I_c`,
  :math:`FN = T_c - I_c`, :math:`TN = N_c - P_c - T_c + I_c`
  (:math:`I, P, T` as in :func:`dice_loss`),

  .. math::
    \ell_c = 1 - \frac{TP \cdot TN - FP \cdot FN}
      {\sqrt{(TP + FP)(TP + FN)(TN + FP)(TN + FN)} + s}
    = 1 - \frac{N_c I_c - P_c T_c}
      {\sqrt{P_c (N_c - P_c)\, T_c (N_c - T_c)} + s},

  in :math:`[0, 2]`, and the loss is the weighted mean over the selected
  classes. Unlike Dice, the background pixels a class gets right
  (:math:`TN`) count.

  Args:
    probs: Probabilities ``[..., C]``; for a binary mask, ``[..., 1]``
      sigmoid probabilities.
    labels: Integer class ids ``probs.shape[:-1]`` or 0/1 targets
      ``probs.shape``.
    axis: Pooled axes; default all but the class axis.
    axis_name: Mapped axis (``shard_map`` / ``pmap``) to sum the pooled
      statistics over, for the loss of the global batch; see
      :func:`dice_loss`.
    where: Optional boolean mask of shape ``probs.shape[:-1]`` or
      ``probs.shape``; :math:`N_c` counts the valid entries of class
      :math:`c`.
    smooth: :math:`s`, added to the denominator (the authors use 1).
    classes: ``"all"``, ``"present"`` or an integer array of class ids.
    class_weights: Optional ``[C]`` weights of the class mean.

  Returns:
    The loss with the pooled axes and the class axis removed, float32
    (float64 for float64 probabilities).

  Convention:
    The denominator is written as two square roots,
    :math:`\sqrt{P(N - P)} \sqrt{T(N - T)}`, each of them
    :math:`\le N^2 / 4`, so float32 does not overflow below about
    :math:`10^{19}` pixels; a root of 0 has derivative 0, not infinity. A
    class absent from the target (:math:`T_c = 0`), or covering every pixel,
    has correlation 0 whatever the prediction (the numerator vanishes), so
    loss 1 and zero gradient: pool over the batch (the default) or use
    ``classes="present"``. With ``smooth=0`` such a class also has loss 1
    (0/0 is taken as 0). A class with no valid pixel (:math:`N_c = 0`,
    everything masked) has loss 0, as in :func:`dice_loss`. Soft targets enter the counts as they are (the
    correlation of soft targets is not minimised at :math:`p = t`; use
    :func:`dice_loss` with ``soft_labels`` for those). Pooling, masks,
    classes, ``axis_name`` and differentiation as in :func:`dice_loss`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # TP = 1, FP = 1, FN = 0, TN = 2: MCC = (1 * 2 - 0) / sqrt(2*1*3*2).
    >>> probs = jnp.array([1.0, 1.0, 0.0, 0.0])[:, None]
    >>> mask = jnp.array([1.0, 0.0, 0.0, 0.0])[:, None]
    >>> jaxloss.mcc_loss(probs, mask, smooth=0.0)
    Array(0.42264974, dtype=float32)

  References:
    Abhishek, Hamarneh, "Matthews Correlation Coefficient Loss for Deep
    Convolutional Networks: Application to Skin Lesion Segmentation", ISBI
    2021. https://arxiv.org/abs/2010.13454
  """
  fn = "mcc_loss"
  smooth = _smooth(fn, smooth)
  inter, pred, true, count = _pooled_stats(
    fn, probs, labels, axis=axis, where=where, axis_name=axis_name, count=True
  )
  num = count * inter - pred * true
  den = (
    _numerics.safe_sqrt(pred * (count - pred))
    * _numerics.safe_sqrt(true * (count - true))
    + smooth
  )
  # No valid pixel (everything masked): nothing to get wrong, loss 0.
  per_class = jnp.where(count > 0, 1 - _numerics.safe_div(num, den, 0), 0)
  return class_mean(fn, per_class, true, classes, class_weights)
