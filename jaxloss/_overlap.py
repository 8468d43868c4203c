"""Overlap (region) losses: Dice, soft IoU / Jaccard, Tversky, generalized Dice.

Each loss pools three statistics per class over the pooled axes and the valid
pixels, :math:`I = \\sum p t`, :math:`P = \\sum p`, :math:`T = \\sum t`, turns
them into a per-class loss and averages over the selected classes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics
from jaxloss import _region
from jaxloss._checks import Activation
from jaxloss._checks import Axis
from jaxloss._checks import AxisName
from jaxloss._checks import Classes


def _smooth(fn, smooth):
  return _checks.nonnegative(fn, "smooth", smooth)


# Scores below this are clamped in the log form (smp's clamp_min(eps)).
LOG_FLOOR = 1e-7


def _score_loss(fn: str, score: jax.Array, log_loss) -> jax.Array:
  """``1 - score``, or with ``log_loss`` ``-log(max(score, 1e-7))``."""
  if _checks.flag(fn, "log_loss", log_loss):
    return -jnp.log(jnp.maximum(score, LOG_FLOOR))
  return 1 - score


def _stats(fn, probs, labels, *, axis, axis_name, where, activation, **kw):
  """The pooled ``(I, P, T)`` (and ``N`` with ``count=True``) of a loss of
  this family; ``kw``: ``squared``, ``soft``, ``count``."""
  region = _region.inputs(
    fn, probs, labels, axis=axis, where=where, activation=activation
  )
  return _region.pooled_stats(fn, region, axis_name=axis_name, **kw)


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
  log_loss: bool = False,
  classes: Classes = "all",
  class_weights: ArrayLike | None = None,
  activation: Activation = None,
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
    probs: Probabilities ``[..., C]``, or logits with ``activation``.
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
    log_loss: Return :math:`-\log` of each class's score instead of
      :math:`1 -` score (segmentation_models_pytorch's ``log_loss``): its
      gradient is the Dice loss's divided by the score, largest while the
      overlap is poor. The score is clamped below at ``1e-7`` (smp's
      ``eps``), so a class with no overlap and ``smooth=0`` stays finite,
      with zero gradient.
    classes: ``"all"``, ``"present"`` (classes with :math:`T_c > 0` in the
      pooled group) or an integer array of class ids to average over.
    class_weights: Optional ``[C]`` weights :math:`w_c` of the class mean.
    activation: None (default): ``probs`` holds probabilities.
      ``"softmax"`` (exclusive classes) or ``"sigmoid"`` (multi-label, or a
      binary mask ``[..., 1]``): ``probs`` holds logits and the loss applies
      the activation over the class axis itself (see "Logits or
      probabilities" in the guide).

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

    From logits (``activation``), value and gradient equal those of the
    same loss of ``jax.nn.softmax(x)`` or ``jax.nn.sigmoid(x)`` to float
    rounding. The activation shares the custom JVP of the sums: with class
    ids the backward pass recomputes the probabilities from the logits (it
    keeps none), with float targets it keeps them (one array the size of the
    logits), where autodiff of ``softmax`` keeps about two. The logits of a
    masked pixel count for nothing, NaN included; with ``"softmax"`` and a
    pixel-and-class mask, the softmax of a partly valid pixel reads all its
    logits, as ``jax.nn.softmax`` would.
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
    >>> # From logits: the loss applies the activation itself.
    >>> logits = jnp.array([[[2.0, -1.0], [0.0, 3.0]]])  # [1, 2, C=2]
    >>> ids = jnp.array([[0, 1]])
    >>> jaxloss.dice_loss(logits, ids, activation="softmax", smooth=0.0)
    Array(0.04742587, dtype=float32)

  References:
    Milletari, Navab, Ahmadi, "V-Net: Fully Convolutional Neural Networks for
    Volumetric Medical Image Segmentation", 3DV 2016.
    https://arxiv.org/abs/1606.04797
  """
  fn = "dice_loss"
  smooth = _smooth(fn, smooth)
  inter, pred, true = _stats(
    fn,
    probs,
    labels,
    axis=axis,
    axis_name=axis_name,
    where=where,
    activation=activation,
    squared=squared,
    soft=soft_labels,
  )
  score = _numerics.safe_div(2 * inter + smooth, pred + true + smooth, 1)
  per_class = _score_loss(fn, score, log_loss)
  return _region.class_mean(fn, per_class, true, classes, class_weights)


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
  log_loss: bool = False,
  classes: Classes = "all",
  class_weights: ArrayLike | None = None,
  activation: Activation = None,
) -> jax.Array:
  r"""Soft IoU (Jaccard) loss, pooled over ``axis``, averaged over classes.

  Per class, with :math:`I, P, T` as in :func:`dice_loss`,

  .. math::
    \ell_c = 1 - \frac{I_c + s}{P_c + T_c - I_c + s}.

  Args:
    probs: Probabilities ``[..., C]``, or logits with ``activation``.
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
    log_loss: :math:`-\log` of each class's score instead of
      :math:`1 -` score; see :func:`dice_loss`.
    classes: ``"all"``, ``"present"`` or an integer array of class ids.
    class_weights: Optional ``[C]`` weights of the class mean.
    activation: None, ``"softmax"`` or ``"sigmoid"``: the first argument
      holds logits; see :func:`dice_loss`.

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
  inter, pred, true = _stats(
    fn,
    probs,
    labels,
    axis=axis,
    axis_name=axis_name,
    where=where,
    activation=activation,
    squared=squared,
    soft=soft_labels,
  )
  score = _numerics.safe_div(inter + smooth, pred + true - inter + smooth, 1)
  per_class = _score_loss(fn, score, log_loss)
  return _region.class_mean(fn, per_class, true, classes, class_weights)


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
  activation: Activation = None,
) -> jax.Array:
  r"""Tversky loss and focal Tversky loss, pooled over ``axis``.

  Per class, with :math:`I, P, T` as in :func:`dice_loss`, false positives
  :math:`P - I` and false negatives :math:`T - I`,

  .. math::
    \ell_c = \left(1 - \frac{I_c + s}
      {I_c + \alpha (P_c - I_c) + \beta (T_c - I_c) + s}\right)^{\gamma}.

  Args:
    probs: Probabilities ``[..., C]``, or logits with ``activation``.
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
    activation: None, ``"softmax"`` or ``"sigmoid"``: the first argument
      holds logits; see :func:`dice_loss`.

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
  inter, pred, true = _stats(
    fn,
    probs,
    labels,
    axis=axis,
    axis_name=axis_name,
    where=where,
    activation=activation,
    squared=squared,
    soft=soft_labels,
  )
  den = inter + alpha * (pred - inter) + beta * (true - inter) + smooth
  per_class = 1 - _numerics.safe_div(inter + smooth, den, 1)
  if _checks.is_traced(gamma) or gamma != 1:
    # Rounding can make 1 - (I + s) / den slightly negative; NaN stays NaN.
    per_class = _numerics.power(jnp.where(per_class < 0, 0, per_class), gamma)
  return _region.class_mean(fn, per_class, true, classes, class_weights)


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
  activation: Activation = None,
) -> jax.Array:
  r"""Generalized Dice loss (Sudre et al.), pooled over ``axis``.

  With :math:`I, P, T` as in :func:`dice_loss`,

  .. math::
    \ell = 1 - \frac{2 \sum_c w_c I_c + s}{\sum_c w_c (P_c + T_c) + s},
    \qquad w_c = 1 / T_c^2 \ \text{("square")},\ 1 / T_c \
    \text{("simple")},\ 1 \ \text{("uniform")}.

  Args:
    probs: Probabilities ``[..., C]``, or logits with ``activation``.
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
    activation: None, ``"softmax"`` or ``"sigmoid"``: the first argument
      holds logits; see :func:`dice_loss`.

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
  stats = _stats(
    fn,
    probs,
    labels,
    axis=axis,
    axis_name=axis_name,
    where=where,
    activation=activation,
    squared=squared,
    soft=soft_labels,
  )
  (inter, pred, true), selected = _region.select_classes(
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
  activation: Activation = None,
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
    probs: Probabilities ``[..., C]`` (or logits with ``activation``); for a binary mask, ``[..., 1]``
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
    activation: None, ``"softmax"`` or ``"sigmoid"``: the first argument
      holds logits; see :func:`dice_loss`.

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
  inter, pred, true, count = _stats(
    fn,
    probs,
    labels,
    axis=axis,
    axis_name=axis_name,
    where=where,
    activation=activation,
    count=True,
  )
  num = count * inter - pred * true
  den = (
    _numerics.safe_sqrt(pred * (count - pred))
    * _numerics.safe_sqrt(true * (count - true))
    + smooth
  )
  # No valid pixel (everything masked): nothing to get wrong, loss 0.
  per_class = jnp.where(count > 0, 1 - _numerics.safe_div(num, den, 0), 0)
  return _region.class_mean(fn, per_class, true, classes, class_weights)
