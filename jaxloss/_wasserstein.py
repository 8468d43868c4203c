"""Wasserstein losses: the generalised Wasserstein Dice loss.

A ground distance between classes turns a pixel's error into the cost of
moving its predicted probability mass onto its target class, so that some
mistakes (between two close classes) cost less than others (foreground
predicted as background).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics
from jaxloss import _region
from jaxloss._checks import Activation
from jaxloss._checks import Axis
from jaxloss._checks import AxisName


def default_distance_matrix(num_classes: int) -> np.ndarray:
  """The default ground distance: background (class 0) at distance 1 from
  every other class, two distinct foreground classes at distance 1/2."""
  m = np.full((num_classes, num_classes), 0.5)
  m[0, :] = 1.0
  m[:, 0] = 1.0
  np.fill_diagonal(m, 0.0)
  return m


def _distance_matrix(
  fn: str, distance_matrix, num_classes: int, dtype
) -> jax.Array:
  """The checked ``[C, C]`` matrix in ``dtype``, divided by its largest
  entry (an all-zero matrix stays zero)."""
  if distance_matrix is None:
    return jnp.asarray(default_distance_matrix(num_classes), dtype)
  if isinstance(distance_matrix, (str, bool, np.bool_)):
    _checks.fail(
      fn,
      f"distance_matrix must be a ({num_classes}, "
      f"{num_classes}) array, got {distance_matrix!r}",
      TypeError,
    )
  m = jnp.asarray(distance_matrix)
  if m.shape != (num_classes, num_classes):
    _checks.fail(
      fn,
      f"distance_matrix.shape {m.shape} must be "
      f"({num_classes}, {num_classes}), one row and one column per "
      "class of probs",
    )
  if not (
    jnp.issubdtype(m.dtype, jnp.floating)
    or jnp.issubdtype(m.dtype, jnp.integer)
  ):
    _checks.fail(
      fn, f"distance_matrix must be real, got dtype {m.dtype}", TypeError
    )
  if not _checks.is_traced(m):
    values = np.asarray(m, np.float64)
    if not np.all(np.isfinite(values) & (values >= 0)):
      _checks.fail(
        fn, f"distance_matrix must be finite and >= 0, got {values.tolist()}"
      )
    if np.any(np.diag(values) != 0):
      _checks.fail(
        fn,
        "distance_matrix must have a zero diagonal (a class is "
        f"at distance 0 from itself), got diagonal "
        f"{np.diag(values).tolist()}",
      )
  m = m.astype(dtype)
  return _numerics.safe_div(m, jnp.max(m), 0)


def generalized_wasserstein_dice_loss(
  probs: ArrayLike,
  labels: ArrayLike,
  *,
  distance_matrix: ArrayLike | None = None,
  weighting: str = "default",
  axis: Axis = None,
  axis_name: AxisName = None,
  where: ArrayLike | None = None,
  smooth: float = 1.0,
  activation: Activation = None,
) -> jax.Array:
  r"""Generalised Wasserstein Dice loss (Fidon et al.), pooled over ``axis``.

  With a ground distance :math:`M` between classes (rows: target class,
  columns: predicted class; divided by its largest entry), each pixel's
  error is the Wasserstein distance between its prediction :math:`p_i` and
  its target :math:`t_i`, which for a target of class :math:`l_i` is

  .. math::
    W_i = \sum_c M_{l_i c}\, p_{ic}
    \qquad \Bigl(\text{soft targets: } W_i = \sum_{l, c} t_{il} M_{lc}\,
    p_{ic}\Bigr).

  Over the pooled valid pixels, the generalised true positives weigh each
  pixel's agreement :math:`1 - W_i` by the distance of its target class to
  the background (class 0), :math:`\alpha_l = M_{l0}`:

  .. math::
    \mathrm{TP} = \sum_i \sum_l \alpha_l\, t_{il}\, (1 - W_i), \qquad
    \ell = 1 - \frac{2\,\mathrm{TP} + s}{2\,\mathrm{TP} + \sum_i W_i + s}.

  With ``weighting="gdl"`` (Tilborghs et al.), the weights are those of the
  generalised Dice loss, :math:`\alpha_l = 1 / (V_l + 1)` with the class
  volume :math:`V_l = \sum_i t_{il}`, and they weigh the errors too:
  :math:`\ell = 1 - (2\,\mathrm{TP} + s) / (2\,\mathrm{TP} +
  \sum_i \sum_l \alpha_l t_{il} W_i + s)`.

  Args:
    probs: Probabilities ``[..., C]`` that sum to 1 over the classes, or
      logits with ``activation="softmax"``.
    labels: Integer class ids of shape ``probs.shape[:-1]``, or targets
      (one-hot or soft distributions over the classes) of shape
      ``probs.shape``.
    distance_matrix: Ground distance :math:`M` between the classes,
      ``[C, C]``: non-negative, zero on the diagonal, row :math:`l` the
      target class and column :math:`c` the predicted one. Default: the
      background (class 0) at distance 1 from every other class and two
      distinct foreground classes at distance 1/2 (see Convention). May be
      traced.
    weighting: ``"default"`` (the paper's :math:`\alpha_l = M_{l0}`) or
      ``"gdl"`` (:math:`\alpha_l = 1 / (V_l + 1)`, errors weighted too).
    axis: Axes to pool over; default every axis but the class axis (the whole
      batch is one example). ``axis=(1, 2)`` on ``[B, H, W, C]`` is per-image.
    axis_name: Mapped axis (``shard_map`` / ``pmap``) to sum the pooled
      sums over, for the loss of the global batch; see :func:`dice_loss`.
    where: Optional boolean mask of shape ``probs.shape[:-1]``; a masked pixel
      counts for nothing. For an ignore label: ``where=labels != 255``. One
      flag a pixel only: :math:`W_i` couples every class of pixel
      :math:`i`, so a (pixel, class) mask has no meaning here.
    smooth: :math:`s`, added to numerator and denominator.
    activation: None or ``"softmax"``: the first argument holds logits; see
      :func:`dice_loss`. (No ``"sigmoid"``: the distance compares
      distributions over the classes.)

  Returns:
    The loss with the pooled axes and the class axis removed (a scalar by
    default), float32 (float64 for float64 probabilities).

  Convention:
    :math:`M` is divided by its largest entry, as the authors' code and
    MONAI do, so only the ratios of distances matter and
    :math:`0 \le W_i \le 1` for probabilities that sum to 1. The weights
    :math:`\alpha_l = M_{l0}` are the paper's (the background itself has
    weight 0, so a pixel of background adds nothing to TP, only its error
    to :math:`\sum_i W_i`);
    MONAI's ``weighting_mode="default"`` uses 1 for every foreground class,
    the same weights whenever the background is at the largest distance from
    every class, as with the default matrix. ``"gdl"`` is MONAI's
    ``weighting_mode="GDL"``: the volumes :math:`V_l` are pooled like the
    other sums (per pooled group, across devices with ``axis_name``), count
    the background too, and are constants of the gradient.

    Default matrix: the paper leaves :math:`M` to the task, asking only that
    the background be the class farthest from the others; the default here
    is the three-class example of the authors' reference code, extended to
    :math:`C` classes (:math:`M_{0c} = M_{c0} = 1`, :math:`M_{ab} = 1/2` for
    distinct foreground classes :math:`a, b`), so that confusing two
    foreground classes costs half as much as missing the foreground. With two
    classes it is :math:`1 - I`. Pass your own matrix when class 0 is not
    the background or the classes have a known hierarchy.

    Soft targets: the Wasserstein distance between two distributions is an
    optimal-transport problem; :math:`\sum_{l,c} t_{il} M_{lc} p_{ic}` is the
    cost of the plan that moves mass independently of its origin. It equals
    the Wasserstein distance when the target is one-hot (so class ids and
    one-hot targets give the same loss), and bounds it from above otherwise
    (a soft prediction equal to a soft target does not have :math:`W_i = 0`).

    With :math:`M = 1 - I` and hard labels, :math:`W_i = 1 - p_{i l_i}`, so
    with the per-class sums :math:`I_c, T_c` of :func:`dice_loss`,
    :math:`\mathrm{TP} = \sum_{c \ge 1} I_c` and
    :math:`\sum_i W_i = \sum_c (T_c - I_c)`. With two classes this is the
    Dice loss of class 1, :math:`1 - (2 I_1 + s) / (P_1 + T_1 + s)`.

    An input with no error and no foreground (all background predicted as
    such, or every pixel masked) has loss 0, with zero gradient, also at
    ``smooth=0``; a wrong prediction on an image with no foreground has loss
    close to 1 for a small ``smooth``. Sums run in float32 for bf16/fp16
    input. Plain JAX operations, so every transformation applies (``jit``,
    ``vmap``, ``grad``, ``jvp``, ``jacfwd``, Hessian-vector products,
    ``jax.export``). With ``axis_name``, the pooled sums (true positives,
    errors and, for ``"gdl"``, class volumes) are summed over the mapped
    axis before the ratio is formed, with the reverse rule of
    :func:`dice_loss` (so no ``jax.jvp`` there). A concrete
    ``distance_matrix`` is checked at trace time (shape, finite,
    non-negative, zero diagonal); a traced one only for its shape and
    dtype. Probabilities and targets outside [0, 1] and class ids
    outside ``[0, C)`` at valid pixels are reported under ``checkify``
    inside :func:`jaxloss.value_checks`; a class id outside ``[0, C)``
    counts for nothing in the value.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Pixels of classes 1, 2 and 0; the last two are predicted right.
    >>> labels = jnp.array([1, 2, 0])
    >>> # Pixel 0 predicted as class 2: W = M[1, 2] = 1/2, TP = 1/2 + 1.
    >>> probs = jnp.eye(3)[jnp.array([2, 2, 0])]
    >>> jaxloss.generalized_wasserstein_dice_loss(probs, labels, smooth=0.0)
    Array(0.14285713, dtype=float32)
    >>> # Predicted as background instead: W = M[1, 0] = 1, TP = 0 + 1.
    >>> probs = jnp.eye(3)[jnp.array([0, 2, 0])]
    >>> jaxloss.generalized_wasserstein_dice_loss(probs, labels, smooth=0.0)
    Array(0.3333333, dtype=float32)

  References:
    Fidon, Li, Garcia-Peraza-Herrera, Ekanayake, Kitchen, Ourselin,
    Vercauteren, "Generalised Wasserstein Dice Score for Imbalanced
    Multi-class Segmentation using Holistic Convolutional Networks",
    BrainLes 2017. https://arxiv.org/abs/1707.00478 ;
    Tilborghs et al., "Comparative study of deep learning
    methods for the automatic segmentation of lung, lesion and lesion type
    in CT scans of COVID-19 patients", 2020 (appendix: the ``"gdl"``
    weighting). https://arxiv.org/abs/2007.15546
  """
  fn = "generalized_wasserstein_dice_loss"
  _checks.option(fn, "weighting", weighting, ("default", "gdl"))
  smooth = _checks.nonnegative(fn, "smooth", smooth)
  if _region.check_activation(fn, activation) == "sigmoid":
    _checks.fail(
      fn,
      'activation must be None or "softmax": the Wasserstein distance '
      'compares distributions over the classes, got "sigmoid"',
    )
  region = _region.inputs(
    fn,
    probs,
    labels,
    axis=axis,
    where=where,
    activation=activation,
    per_element=False,
  )
  p, valid, axes = region.probabilities(), region.valid, region.axes
  num_classes = p.shape[-1]
  m = _distance_matrix(fn, distance_matrix, num_classes, p.dtype)
  # rows[i, c] = sum_l t_il M_lc: the cost of predicting class c at pixel i.
  if region.ids:  # a row of M (an id out of range: 0)
    ids = jnp.where(region.labels < 0, num_classes, region.labels)
    rows = jnp.take(m, ids, axis=0, mode="fill", fill_value=0)
    if valid is not None:
      rows = jnp.where(valid, rows, 0)
  else:  # masked targets are 0 already
    rows = jnp.einsum(
      "...l,lc->...c", region.labels, m, precision=lax.Precision.HIGHEST
    )
  error = jnp.sum(rows * p, axis=-1)  # W_i
  stats: tuple[jax.Array, ...]
  if weighting == "default":
    # sum_l alpha_l t_il = sum_l t_il M_l0 = rows[i, 0].
    stats = (
      jnp.sum(rows[..., 0] * (1 - error), axis=axes),
      jnp.sum(error, axis=axes),
    )
  else:  # Per class l: sum_i t_il (1 - W_i), sum_i t_il W_i, sum_i t_il.
    t = region.targets()
    per_class = lambda x: jnp.sum(
      jnp.where(t, x[..., None], 0)
      if t.dtype == jnp.bool_
      else t * x[..., None],
      axis=axes,
    )
    stats = (
      per_class(1 - error),
      per_class(error),
      per_class(jnp.ones_like(error)),
    )
  stats = _region.sum_across(stats, axis_name)
  if weighting == "default":
    true_pos, weighted_error = stats
  else:
    alpha = 1 / (lax.stop_gradient(stats[2]) + 1)
    true_pos = jnp.sum(alpha * stats[0], axis=-1)
    weighted_error = jnp.sum(alpha * stats[1], axis=-1)
  num = 2 * true_pos + smooth
  return 1 - _numerics.safe_div(num, num + weighted_error, 1)
