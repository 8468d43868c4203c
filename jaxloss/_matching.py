"""Pairwise cost matrices for bipartite matching (DETR-style set prediction).

Each function compares every one of ``N`` predictions with every one of ``M``
targets and returns ``[..., N, M]``; leading (batch) axes broadcast. A
matching cost is a weighted sum of them, for example DETR's

.. code-block:: python

  cost = (softmax_class_cost(class_logits, labels)
          + 5 * box_l1_cost(pred_boxes, boxes)
          - 2 * generalized_box_iou(to_xyxy(pred_boxes), to_xyxy(boxes)))

which a solver (``optax.assignment.hungarian_algorithm``, per image under
``jax.vmap``) turns into an assignment. Costs are ordinary differentiable
functions, but matching uses them as constants (``stop_gradient``); the loss
on the matched pairs is computed afterwards with the losses of this library.

The mask costs compare masks sampled at ``P`` points and are written as
matrix products, as Mask2Former computes them: an ``[N, P] x [P, M]``
product instead of an ``[N, M, P]`` tensor. The products run at
``Precision.HIGHEST`` so that TPU and GPU give float32 costs (an assignment
can flip on a rounding error).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics

# --------------------------------------------------------------------------
# Checks


def _exp_power(log_x: jax.Array, gamma, x: jax.Array) -> jax.Array:
  """``x ** gamma`` given both ``x`` and ``log x``.

  Whole, static ``gamma``: multiplications of ``x``; otherwise
  ``exp(gamma * log x)``, which keeps gradients finite where ``x``
  underflows, as long as ``log x`` itself is finite.
  """
  if _numerics.is_whole(gamma):
    return lax.integer_pow(x, int(gamma))
  return jnp.exp(gamma * log_x)


def _sets(
  fn: str, names: tuple[str, str], a: jax.Array, b: jax.Array, last: str
) -> tuple[int, ...]:
  """Broadcast batch shape of ``a`` ``[..., N, K]`` and ``b`` ``[..., M, K]``.

  ``last`` names the last axis: ``"4"`` (boxes) or ``"P"`` (points).
  """
  for name, rows, x in zip(names, "NM", (a, b)):
    if x.ndim < 2 or (last == "4" and x.shape[-1] != 4):
      _checks.fail(
        fn,
        f"{name} must have shape [..., {rows}, {last}], got "
        f"{name}.shape {x.shape}",
      )
  if a.shape[-1] != b.shape[-1]:
    _checks.fail(
      fn,
      f"the last axes of {names[0]}.shape {a.shape} and "
      f"{names[1]}.shape {b.shape} must be equal (the same "
      "points)",
    )
  return _checks.broadcast_shapes(
    fn, names, a.shape[:-2], b.shape[:-2], "batch axes"
  )


def _focal_options(fn: str, alpha, gamma) -> None:
  _checks.scalar(fn, "alpha", alpha, low=0.0, high=1.0)
  _checks.scalar(fn, "gamma", gamma, low=0.0)


def _class_inputs(fn: str, logits, labels) -> tuple[jax.Array, jax.Array]:
  """Logits ``[..., N, C]`` and labels ``[..., M]``, gathered to ``[..., N, M]``."""
  logits = _checks.as_float(fn, "logits", logits)
  labels = jnp.asarray(labels)
  if logits.ndim < 2:
    _checks.fail(
      fn,
      "logits must have shape [..., N, C] (N predictions, C "
      f"classes), got logits.shape {logits.shape}",
    )
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    _checks.fail(
      fn,
      f"labels must be integer class ids, got dtype {labels.dtype}",
      TypeError,
    )
  if labels.ndim < 1:
    _checks.fail(
      fn,
      "labels must have shape [..., M] (M targets), got "
      f"labels.shape {labels.shape}",
    )
  batch = _checks.broadcast_shapes(
    fn, ("logits", "labels"), logits.shape[:-2], labels.shape[:-1], "batch axes"
  )
  n, c = logits.shape[-2:]
  m = labels.shape[-1]
  _checks.debug_labels_in_range(fn, labels, c, None)
  labels = _numerics.class_ids(labels)  # uint8 ids with C > 256 clip right
  x = jnp.broadcast_to(
    logits.astype(_numerics.accum_dtype(logits.dtype)), batch + (n, c)
  )
  idx = jnp.broadcast_to(
    jnp.clip(labels, 0, c - 1)[..., None, :], batch + (n, m)
  )
  return x, idx


def _mask_inputs(fn: str, logits, labels) -> tuple[jax.Array, jax.Array]:
  logits = _checks.as_float(fn, "logits", logits)
  labels = jnp.asarray(labels)
  if not (
    jnp.issubdtype(labels.dtype, jnp.floating) or labels.dtype == jnp.bool_
  ):
    _checks.fail(
      fn,
      f"labels must be float or bool masks, got dtype {labels.dtype}",
      TypeError,
    )
  batch = _sets(fn, ("logits", "labels"), logits, labels, "P")
  dtype = _numerics.accum_dtype(logits.dtype)
  x = jnp.broadcast_to(logits.astype(dtype), batch + logits.shape[-2:])
  t = jnp.broadcast_to(labels.astype(dtype), batch + labels.shape[-2:])
  _checks.debug_unit_interval(fn, "labels", t)
  return x, t


def _rows_by_cols(a: jax.Array, b: jax.Array) -> jax.Array:
  """``a [..., N, P] @ b[..., M, P]^T`` at full float32 precision."""
  return jnp.einsum("...np,...mp->...nm", a, b, precision=lax.Precision.HIGHEST)


# --------------------------------------------------------------------------
# Class costs


def softmax_class_cost(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  r"""Pairwise class cost from softmax logits: minus the target's probability.

  .. math::
    C_{ij} = -\mathrm{softmax}(x_i)_{y_j}.

  Args:
    logits: Class logits ``[..., N, C]`` of ``N`` predictions (DETR adds a
      "no object" class; it is one of the ``C``).
    labels: Integer class ids ``[..., M]`` of ``M`` targets; the batch axes
      broadcast against ``logits``'s.

  Returns:
    ``[..., N, M]``, in ``[-1, 0]``, in float32 (float64 for float64
    logits).

  Convention:
    DETR's class cost (the probability, not its log, so that it is on the
    scale of the box costs). A class id outside ``[0, C)`` is clipped into
    it; inside ``jaxloss.value_checks()``, ``checkify`` reports it. Pad the
    targets of a batch with any valid id and mask their columns out of the
    assignment.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.log(jnp.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    >>> jaxloss.softmax_class_cost(logits, jnp.array([2, 0]))
    Array([[-0.1, -0.7 ],
           [-0.8 , -0.1 ]], dtype=float32)

  References:
    Carion, Massa, Synnaeve, Usunier, Kirillov, Zagoruyko, "End-to-End
    Object Detection with Transformers", ECCV 2020.
    https://arxiv.org/abs/2005.12872
  """
  x, idx = _class_inputs("softmax_class_cost", logits, labels)
  return -jnp.take_along_axis(jax.nn.softmax(x, axis=-1), idx, axis=-1)


def focal_class_cost(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  alpha: float = 0.25,
  gamma: float = 2.0,
) -> jax.Array:
  r"""Pairwise class cost of sigmoid classifiers, in the focal-loss form.

  With :math:`p = \sigma(x_{i, y_j})`, the probability prediction
  :math:`i` gives to target :math:`j`'s class, the focal loss of calling it
  positive minus that of calling it negative:

  .. math::
    C_{ij} = \alpha (1 - p)^\gamma (-\log p)
      - (1 - \alpha)\, p^\gamma (-\log(1 - p)).

  Args:
    logits: Sigmoid class logits ``[..., N, C]``.
    labels: Integer class ids ``[..., M]``; the batch axes broadcast against
      ``logits``'s.
    alpha: Weight of the positive term, in ``[0, 1]``.
    gamma: Focusing exponent, ``>= 0``.

  Returns:
    ``[..., N, M]``, in float32 (float64 for float64 logits). Negative for a
    confident correct class, positive for a confident wrong one.

  Convention:
    The class cost of Deformable DETR, DINO and Mask2Former-style matchers
    (with their defaults ``alpha=0.25``, ``gamma=2``). The logarithms are
    ``log_sigmoid`` (no ``+ 1e-8`` inside), the powers
    :math:`\exp(\gamma \log \sigma(\pm x))`: finite values and gradients
    for logits of :math:`\pm 10^4` and for ``gamma < 1``. Class ids outside
    ``[0, C)`` are clipped (reported under ``jaxloss.value_checks()``).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # p = 1/2: (0.25 - 0.75) (1/2)^2 log 2.
    >>> jaxloss.focal_class_cost(jnp.zeros((1, 3)), jnp.array([1]))
    Array([[-0.086643]], dtype=float32)

  References:
    Zhu, Su, Lu, Li, Wang, Dai, "Deformable DETR: Deformable Transformers
    for End-to-End Object Detection", ICLR 2021.
    https://arxiv.org/abs/2010.04159
  """
  fn = "focal_class_cost"
  _focal_options(fn, alpha, gamma)
  x, idx = _class_inputs(fn, logits, labels)
  z = jnp.take_along_axis(x, idx, axis=-1)
  log_p, log_q = jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)
  positive = alpha * _exp_power(log_q, gamma, jnp.exp(log_q)) * -log_p
  negative = (1 - alpha) * _exp_power(log_p, gamma, jnp.exp(log_p)) * -log_q
  return positive - negative


# --------------------------------------------------------------------------
# Box cost


def box_l1_cost(boxes1: ArrayLike, boxes2: ArrayLike) -> jax.Array:
  r"""Pairwise L1 distance of two sets of boxes.

  .. math::
    C_{ij} = \sum_{k=1}^{4} |a_{ik} - b_{jk}|.

  Args:
    boxes1: Boxes ``[..., N, 4]`` in any format (DETR: normalised
      ``(cx, cy, w, h)``), floating.
    boxes2: Boxes ``[..., M, 4]`` in the same format; the batch axes
      broadcast against ``boxes1``'s.

  Returns:
    ``[..., N, M]``, in float32 (float64 for float64 ``boxes1``).

  Convention:
    The L1 (``p = 1``) pairwise distance, DETR's box cost; its GIoU cost is
    ``-generalized_box_iou(a_xyxy, b_xyxy)`` (convert with
    :func:`box_convert`). The gradient of :math:`|a - b|` at a tie is 0.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> a = jnp.array([[0.5, 0.5, 0.2, 0.2]])
    >>> b = jnp.array([[0.5, 0.5, 0.2, 0.2], [0.4, 0.6, 0.3, 0.2]])
    >>> jaxloss.box_l1_cost(a, b)
    Array([[0. , 0.3]], dtype=float32)

  References:
    Carion, Massa, Synnaeve, Usunier, Kirillov, Zagoruyko, "End-to-End
    Object Detection with Transformers", ECCV 2020.
    https://arxiv.org/abs/2005.12872
  """
  fn = "box_l1_cost"
  a = _checks.as_float(fn, "boxes1", boxes1)
  b = _checks.as_float(fn, "boxes2", boxes2)
  batch = _sets(fn, ("boxes1", "boxes2"), a, b, "4")
  dtype = _numerics.accum_dtype(a.dtype)
  n, m = a.shape[-2], b.shape[-2]
  a = jnp.broadcast_to(a.astype(dtype)[..., :, None, :], batch + (n, m, 4))
  b = jnp.broadcast_to(b.astype(dtype)[..., None, :, :], batch + (n, m, 4))
  return jnp.sum(jnp.abs(a - b), axis=-1)


# --------------------------------------------------------------------------
# Mask costs


def mask_dice_cost(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  smooth: float = 1.0,
) -> jax.Array:
  r"""Pairwise Dice cost of predicted masks (logits) against target masks.

  With :math:`p_i = \sigma(x_i)` over the ``P`` points of prediction
  :math:`i` and target mask :math:`t_j`,

  .. math::
    C_{ij} = 1 - \frac{2 \langle p_i, t_j \rangle + s}
      {\sum p_i + \sum t_j + s}.

  Args:
    logits: Mask logits ``[..., N, P]`` (``P`` sampled points or pixels).
    labels: Target masks ``[..., M, P]``, float in ``[0, 1]`` or bool; the
      batch axes broadcast against ``logits``'s.
    smooth: :math:`s`, ``>= 0``; Mask2Former uses 1.

  Returns:
    ``[..., N, M]``, in float32 (float64 for float64 logits).

  Convention:
    Mask2Former's ``batch_dice_loss``: one matrix product for all pairs.
    Two empty masks with ``smooth=0`` cost 0. The intersection is the
    product :math:`\langle p_i, t_j \rangle`, as in
    ``dice_loss(..., soft_labels=False)`` (equal to the default on binary
    target masks, the usual case): the min form of soft targets is not a
    matrix product.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[1e4, 1e4, -1e4, -1e4]])   # p = (1, 1, 0, 0)
    >>> labels = jnp.array([[1., 1., 0., 0.], [0., 1., 1., 0.]])
    >>> jaxloss.mask_dice_cost(logits, labels, smooth=0.0)  # 0 and 1 - 2/4
    Array([[0. , 0.5]], dtype=float32)

  References:
    Cheng, Misra, Schwing, Kirillov, Girdhar, "Masked-attention Mask
    Transformer for Universal Image Segmentation", CVPR 2022.
    https://arxiv.org/abs/2112.01527
  """
  fn = "mask_dice_cost"
  _checks.nonnegative(fn, "smooth", smooth)
  x, t = _mask_inputs(fn, logits, labels)
  p = jax.nn.sigmoid(x)
  inter = _rows_by_cols(p, t)
  total = jnp.sum(p, -1)[..., :, None] + jnp.sum(t, -1)[..., None, :]
  return 1 - _numerics.safe_div(2 * inter + smooth, total + smooth, 1)


def mask_bce_cost(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  r"""Pairwise sigmoid cross-entropy cost of masks, averaged over points.

  .. math::
    C_{ij} = \frac{1}{P} \sum_{k=1}^{P}
      \mathrm{BCE}(x_{ik}, t_{jk}), \qquad
    \mathrm{BCE}(x, t) = \log(1 + e^{x}) - x t.

  Args:
    logits: Mask logits ``[..., N, P]``.
    labels: Target masks ``[..., M, P]``, float in ``[0, 1]`` or bool; the
      batch axes broadcast against ``logits``'s.

  Returns:
    ``[..., N, M]``, in float32 (float64 for float64 logits).

  Convention:
    Mask2Former's ``batch_sigmoid_ce_loss``: linear in the target, so it is
    two matrix products of nonnegative terms, :math:`(\mathrm{sp}(-x_i)
    \cdot t_j + \mathrm{sp}(x_i) \cdot (1 - t_j)) / P` with
    :math:`\mathrm{sp}(x) = \log(1 + e^x)`. The one-product form
    :math:`\sum_k \mathrm{sp}(x_{ik}) - x_i \cdot t_j` cancels where a mask is
    confident and right (its small cost would round to 0 or below).
    ``P = 0`` gives 0.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> jaxloss.mask_bce_cost(jnp.zeros((1, 4)), jnp.ones((1, 4)))  # log 2
    Array([[0.693147]], dtype=float32)

  References:
    Cheng, Misra, Schwing, Kirillov, Girdhar, "Masked-attention Mask
    Transformer for Universal Image Segmentation", CVPR 2022.
    https://arxiv.org/abs/2112.01527
  """
  x, t = _mask_inputs("mask_bce_cost", logits, labels)
  points = max(x.shape[-1], 1)
  positive, negative = jax.nn.softplus(-x), jax.nn.softplus(x)
  return (_rows_by_cols(positive, t) + _rows_by_cols(negative, 1 - t)) / points


def mask_focal_cost(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  alpha: float = 0.25,
  gamma: float = 2.0,
) -> jax.Array:
  r"""Pairwise sigmoid focal cost of masks, averaged over points.

  With :math:`p = \sigma(x_{ik})`, the focal losses of a positive and of a
  negative point, :math:`f^+ = \alpha (1 - p)^\gamma (-\log p)` and
  :math:`f^- = (1 - \alpha) p^\gamma (-\log(1 - p))`, weighted by the
  target:

  .. math::
    C_{ij} = \frac{1}{P} \sum_{k=1}^{P}
      \big(t_{jk} f^+_{ik} + (1 - t_{jk}) f^-_{ik}\big).

  Args:
    logits: Mask logits ``[..., N, P]``.
    labels: Target masks ``[..., M, P]``, float in ``[0, 1]`` or bool; the
      batch axes broadcast against ``logits``'s.
    alpha: Weight of positive points, in ``[0, 1]``.
    gamma: Focusing exponent, ``>= 0``.

  Returns:
    ``[..., N, M]``, in float32 (float64 for float64 logits).

  Convention:
    MaskFormer's ``batch_sigmoid_focal_loss``: linear in the target (for
    binary targets it is the mean :func:`focal_loss`), two matrix products
    of nonnegative terms, so a confident, right mask keeps its small cost
    (the one-product form :math:`\sum_k f^-_{ik} + (f^+_i - f^-_i) \cdot
    t_j` cancels there). The powers are :math:`\exp(\gamma \log
    \sigma(\pm x))`, finite for logits of :math:`\pm 10^4`. ``P = 0`` gives 0.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # p = 1/2 everywhere: 0.25 (1/2)^2 log 2 on positives.
    >>> jaxloss.mask_focal_cost(jnp.zeros((1, 4)), jnp.ones((1, 4)))
    Array([[0.043322]], dtype=float32)

  References:
    Cheng, Schwing, Kirillov, "Per-Pixel Classification is Not All You Need
    for Semantic Segmentation", NeurIPS 2021.
    https://arxiv.org/abs/2107.06278
  """
  fn = "mask_focal_cost"
  _focal_options(fn, alpha, gamma)
  x, t = _mask_inputs(fn, logits, labels)
  points = max(x.shape[-1], 1)
  log_p, log_q = jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x)
  positive = alpha * _exp_power(log_q, gamma, jnp.exp(log_q)) * -log_p
  negative = (1 - alpha) * _exp_power(log_p, gamma, jnp.exp(log_p)) * -log_q
  return (_rows_by_cols(positive, t) + _rows_by_cols(negative, 1 - t)) / points
