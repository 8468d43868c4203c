"""Box losses (the IoU family, bounded IoU, balanced L1) and box helpers.

Boxes are ``[..., 4]`` arrays of corners ``(x1, y1, x2, y2)`` with
``x1 <= x2`` and ``y1 <= y2`` unless said otherwise. The losses are
elementwise over the leading axes; :func:`box_iou` and
:func:`generalized_box_iou` compare every box of one set with every box of
another. :func:`balanced_l1_loss` is elementwise on regression offsets of
any shape.

3-D boxes are ``[..., 6]`` arrays ``(x1, y1, z1, x2, y2, z2)`` (MONAI's
``"xyzxyz"``). The size of the last axis picks 2-D or 3-D in
:func:`box_iou_loss`, :func:`box_giou_loss`, :func:`box_diou_loss`,
:func:`box_iou`, :func:`generalized_box_iou`, :func:`distance_box_iou` and
:func:`box_convert`: areas become volumes, the enclosing box and its
diagonal are taken in 3-D, and the centre distance too. The functions whose
extra terms are 2-D by definition (CIoU's aspect ratio, EIoU's widths and
heights, SIoU's angle, the bounded IoU's four terms, rotated boxes) take
``[..., 4]`` only, and say so when given ``[..., 6]``.

Shared conventions of the losses:

* ``pred`` and ``target`` broadcast against each other over their leading axes
  (``[N, 4]`` against ``[4]`` compares N boxes with one); the broadcast is
  explicit, so it also works with ``jax_numpy_rank_promotion="raise"``.
* The maths runs in ``pred``'s dtype, at least float32 (bf16/fp16 boxes are
  upcast); ``target`` is cast to it.
* ``eps`` goes where torchvision puts it: :math:`\\mathrm{IoU} = I / (U +
  \\epsilon)`, :math:`(C - U) / (C + \\epsilon)`, :math:`\\rho^2 / (c^2 +
  \\epsilon)` and :math:`\\alpha = v / (1 - \\mathrm{IoU} + v + \\epsilon)`.
  Every division is guarded, so ``eps=0`` with a zero-area box still gives a
  finite value and finite gradients.
* Zero-area (zero-volume) boxes have IoU 0 with every box (itself
  included), so two identical points have IoU loss 1, as in torchvision.
* An invalid box (``x2 < x1`` or ``y2 < y1``, or ``z2 < z1``) is not
  repaired: no clamping, no swapping of corners. Its width and height enter the formulas with their
  sign, as in torchvision: it intersects nothing, its "area" is negative when
  one side is inverted, and the loss stays finite but is no longer bounded or
  meaningful. Parameterise predictions so that they stay valid (e.g. decode
  ``(cx, cy, exp(tw), exp(th))``).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics

_FORMATS = ("xyxy", "xywh", "cxcywh")
_THREE_D_LOSSES = "box_iou_loss, box_giou_loss and box_diou_loss"
_THREE_D_PAIRWISE = "box_iou, generalized_box_iou and distance_box_iou"


# --------------------------------------------------------------------------
# Checks


def _boxes(fn: str, name: str, x, three_d: bool, rows: str | None = None):
  """A checked box array: ``[..., 4]``, or also ``[..., 6]`` with
  ``three_d`` (a 2-D-only function says so when it is given 3-D boxes)."""
  note = ""
  if not three_d and jnp.shape(x)[-1:] == (6,):
    shape, peers = (
      ("[..., N, 6]", _THREE_D_PAIRWISE)
      if rows
      else ("[..., 6]", _THREE_D_LOSSES)
    )
    note = f"; {fn} is 2-D only (3-D boxes {shape} work with {peers})"
  sizes = (4, 6) if three_d else 4
  return _checks.coordinates(
    fn, name, x, sizes, meaning="boxes", rows=rows, note=note
  )


def _same_dimension(fn: str, names: tuple[str, str], a, b) -> None:
  if a.shape[-1] != b.shape[-1]:
    _checks.fail(
      fn,
      f"{names[1]}.shape[-1] {b.shape[-1]} must equal {names[0]}.shape[-1] "
      f"{a.shape[-1]} (2-D boxes have 4 numbers, 3-D boxes 6; they do not "
      "mix)",
    )


def _pair(
  fn: str, pred, target, eps, *, three_d: bool = False
) -> tuple[jax.Array, jax.Array]:
  """Checked ``pred`` and ``target``, broadcast to one shape, in one dtype.

  With ``three_d``, 3-D boxes ``[..., 6]`` are accepted too.
  """
  pred = _boxes(fn, "pred", pred, three_d)
  target = _boxes(fn, "target", target, three_d)
  _same_dimension(fn, ("pred", "target"), pred, target)
  _checks.nonnegative(fn, "eps", eps)
  shape = (
    _checks.broadcast_shapes(
      fn, ("pred", "target"), pred.shape[:-1], target.shape[:-1], "leading axes"
    )
    + pred.shape[-1:]
  )
  dtype = _numerics.accum_dtype(pred.dtype)
  return (
    jnp.broadcast_to(pred.astype(dtype), shape),
    jnp.broadcast_to(target.astype(dtype), shape),
  )


def _pow(x: jax.Array, power) -> jax.Array:
  """``x ** power`` for alpha-IoU; ``power == 1`` returns ``x`` unchanged.

  A negative base (only invalid boxes produce one: GIoU's penalty) counts as
  0, so that every power is defined; 0 has gradient 0 (double ``where``) and
  NaN stays NaN.
  """
  if isinstance(power, (int, float)) and power == 1:
    return x
  if isinstance(power, (jax.Array, np.ndarray, np.number)):
    power = jnp.asarray(power, x.dtype)
  return _numerics.power(jnp.maximum(x, 0), power)


# --------------------------------------------------------------------------
# Geometry


def _product(xs: tuple[jax.Array, ...]) -> jax.Array:
  out = xs[0]
  for x in xs[1:]:
    out = out * x
  return out


def _total(xs: tuple[jax.Array, ...]) -> jax.Array:
  out = xs[0]
  for x in xs[1:]:
    out = out + x
  return out


def _geometry(a: jax.Array, b: jax.Array) -> dict[str, Any]:
  """Sizes, intersection, union and enclosing box of ``a`` vs ``b``.

  ``a`` and ``b`` have one shape ``[..., 2 d]`` (``d = 2`` or 3 axes: lower
  corner, then upper corner). ``a_size``, ``b_size``, ``sides`` (of the
  enclosing box) and ``offset`` (centre of ``a`` minus centre of ``b``) are
  tuples of ``d`` arrays ``[...]``, one an axis; every other entry is one
  array ``[...]``: the intersection, the union and the enclosing box's
  measure (areas in 2-D, volumes in 3-D), its squared diagonal and the
  squared distance of the centres.
  """
  d = a.shape[-1] // 2
  a_lo, a_hi = [a[..., i] for i in range(d)], [a[..., d + i] for i in range(d)]
  b_lo, b_hi = [b[..., i] for i in range(d)], [b[..., d + i] for i in range(d)]
  axes = range(d)
  a_size = tuple(a_hi[i] - a_lo[i] for i in axes)
  b_size = tuple(b_hi[i] - b_lo[i] for i in axes)
  inner = tuple(
    jnp.minimum(a_hi[i], b_hi[i]) - jnp.maximum(a_lo[i], b_lo[i]) for i in axes
  )
  # As torchvision: the intersection counts only where every side is
  # positive. A where (not a clip) gives exact zeros and zero gradients.
  overlap = inner[0] > 0
  for side in inner[1:]:
    overlap = overlap & (side > 0)
  inter = jnp.where(overlap, _product(inner), 0)
  sides = tuple(
    jnp.maximum(a_hi[i], b_hi[i]) - jnp.minimum(a_lo[i], b_lo[i]) for i in axes
  )
  # Twice the centre offset: (a1 + a2) - (b1 + b2); rho^2 is its square / 4.
  twice = tuple((a_lo[i] + a_hi[i]) - (b_lo[i] + b_hi[i]) for i in axes)
  return dict(
    a_size=a_size,
    b_size=b_size,
    inter=inter,
    union=_product(a_size) + _product(b_size) - inter,
    sides=sides,
    enclosing=_product(sides),
    diagonal2=_total(tuple(c * c for c in sides)),
    rho2=_total(tuple(t * t for t in twice)) / 4,
    offset=tuple(t / 2 for t in twice),
  )


def _iou(g: dict[str, Any], eps) -> jax.Array:
  return _numerics.safe_div(g["inter"], g["union"] + eps, 0)


def _distance_term(g: dict[str, Any], eps) -> jax.Array:
  return _numerics.safe_div(g["rho2"], g["diagonal2"] + eps, 0)


def _angle_difference(g: dict[str, Any]) -> jax.Array:
  """``arctan(w_b / h_b) - arctan(w_a / h_a)`` with one ``atan2``.

  For sizes >= 0 both angles lie in ``[0, pi/2]`` and their difference is
  ``atan2(w_b h_a - w_a h_b, w_b w_a + h_b h_a)``: exact for ``h > 0``, the
  ``pi/2`` limit for a flat box (``h = 0``, where ``arctan(w / 0)`` gives NaN
  gradients), and 0 with zero gradient (double ``where``) when either box is
  a point (no aspect ratio, no penalty). One ``atan2`` instead of two halves
  the cost of CIoU (``atan2`` is the expensive op on CPU).
  """
  (aw, ah), (bw, bh) = g["a_size"], g["b_size"]
  num = bw * ah - aw * bh
  den = bw * aw + bh * ah
  origin = (num == 0) & (den == 0)
  return jnp.where(
    origin, 0, jnp.arctan2(jnp.where(origin, 1, num), jnp.where(origin, 1, den))
  )


def _aspect_term(g: dict[str, Any], iou: jax.Array, eps):
  """CIoU's ``v`` and its weight ``alpha`` (held constant in the gradient)."""
  delta = _angle_difference(g)
  v = (4 / math.pi**2) * (delta * delta)
  alpha = lax.stop_gradient(_numerics.safe_div(v, 1 - iou + v + eps, 0))
  return v, alpha


# --------------------------------------------------------------------------
# Losses


def box_iou_loss(
  pred: ArrayLike,
  target: ArrayLike,
  *,
  eps: float = 1e-7,
  power: float = 1.0,
) -> jax.Array:
  r"""IoU loss of boxes, elementwise: one minus intersection over union.

  With :math:`I` the area of the intersection and :math:`U` the area of the
  union of a predicted and a target box (volumes for 3-D boxes),

  .. math::
    \ell = 1 - \Big(\frac{I}{U + \epsilon}\Big)^{\alpha},

  with :math:`\alpha` = ``power`` (1 by default; alpha-IoU otherwise).

  Args:
    pred: Predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, or 3-D boxes
      ``[..., 6]`` as ``(x1, y1, z1, x2, y2, z2)``, floating.
    target: Target boxes with ``pred``'s last axis, broadcastable against
      ``pred`` over the leading axes.
    eps: Added to the union, ``>= 0``.
    power: The exponent :math:`\alpha` of alpha-IoU (He et al. 2021),
      ``> 0``; see the formula. ``power=1`` (the default) is the plain loss;
      the paper recommends 3.

  Returns:
    The loss of each box pair, shape: the broadcast leading shape ``[...]``,
    in float32 (float64 for float64 ``pred``). In ``[0, 1]`` for valid boxes.

  Convention:
    Same IoU and ``eps`` placement as torchvision's box losses (torchvision
    has no plain IoU loss). Boxes that do not overlap give loss 1 and zero
    gradient: the IoU loss cannot pull a disjoint box towards its target
    (GIoU, DIoU, CIoU and EIoU can). A zero-area box has IoU 0.
    3-D boxes ``[..., 6]`` use volumes; with ``eps=2**-23`` (float32's
    machine epsilon, which MONAI adds to the union) one minus this loss is
    the IoU of each pair that MONAI's ``box_iou`` gives.
    ``power``: alpha-IoU; see "Box losses: shared conventions" in the
    guide.

    Broadcasting, dtypes, ``eps`` and invalid boxes: see "Box losses:
    shared conventions" in the guide.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # 2x2 boxes shifted by (1, 1): I = 1, U = 4 + 4 - 1 = 7, loss = 6/7.
    >>> jaxloss.box_iou_loss(jnp.array([0., 0., 2., 2.]),
    ...                      jnp.array([1., 1., 3., 3.]))
    Array(0.857143, dtype=float32)
    >>> # 3-D: unit cubes shifted by 0.5 along x: I = 0.5, U = 1.5.
    >>> jaxloss.box_iou_loss(jnp.array([0., 0., 0., 1., 1., 1.]),
    ...                      jnp.array([0.5, 0., 0., 1.5, 1., 1.]))
    Array(0.666667, dtype=float32)

  References:
    Yu, Jiang, Wang, Cao, Huang, "UnitBox: An Advanced Object Detection
    Network", ACM MM 2016. https://arxiv.org/abs/1608.01471
  """
  fn = "box_iou_loss"
  pred, target = _pair(fn, pred, target, eps, three_d=True)
  _checks.scalar(fn, "power", power, low=0.0, above=True)
  return 1 - _pow(_iou(_geometry(pred, target), eps), power)


def box_giou_loss(
  pred: ArrayLike,
  target: ArrayLike,
  *,
  eps: float = 1e-7,
  power: float = 1.0,
) -> jax.Array:
  r"""Generalized IoU loss of boxes, elementwise (Rezatofighi et al. 2019).

  With :math:`C` the area of the smallest box enclosing both boxes (volumes
  for 3-D boxes),

  .. math::
    \ell = 1 - \Big(\frac{I}{U + \epsilon}\Big)^{\alpha}
      + \Big(\frac{C - U}{C + \epsilon}\Big)^{\alpha},

  with :math:`\alpha` = ``power`` (1 by default; alpha-GIoU otherwise).

  Args:
    pred: Predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, or 3-D boxes
      ``[..., 6]`` as ``(x1, y1, z1, x2, y2, z2)``, floating.
    target: Target boxes with ``pred``'s last axis, broadcastable against
      ``pred`` over the leading axes.
    eps: Added to the union and to the enclosing area, ``>= 0``.
    power: The exponent :math:`\alpha` of alpha-IoU (He et al. 2021),
      ``> 0``; see the formula. ``power=1`` (the default) is the plain loss;
      the paper recommends 3.

  Returns:
    The loss of each box pair, shape: the broadcast leading shape ``[...]``,
    in float32 (float64 for float64 ``pred``). In ``[0, 2]`` for valid boxes.

  Convention:
    Same formula and ``eps`` placement as
    ``torchvision.ops.generalized_box_iou_loss``. When the enclosing box is
    the union (nested boxes, or boxes that share a full side) it equals the
    IoU loss. Disjoint boxes get a gradient that grows the predicted box
    towards the target. 3-D boxes ``[..., 6]`` use volumes and the
    enclosing cuboid; with ``eps=2**-23`` (float32's machine epsilon, which
    MONAI adds to the union and to the enclosing volume) the values are
    those of MONAI's ``BoxGIoULoss`` with ``reduction="none"``, in 2-D and
    3-D. MONAI computes in float32 and raises on invalid boxes and on
    non-finite results; this returns values (float64 too) and leaves
    reductions to the caller.
    ``power``: alpha-IoU; see "Box losses: shared conventions" in the
    guide.

    Broadcasting, dtypes, ``eps`` and invalid boxes: see "Box losses:
    shared conventions" in the guide.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # I = 1, U = 7, C = 3 * 3 = 9: loss = 1 - 1/7 + 2/9 = 68/63.
    >>> jaxloss.box_giou_loss(jnp.array([0., 0., 2., 2.]),
    ...                       jnp.array([1., 1., 3., 3.]))
    Array(1.079365, dtype=float32)

  References:
    Rezatofighi, Tsoi, Gwak, Sadeghian, Reid, Savarese, "Generalized
    Intersection over Union: A Metric and A Loss for Bounding Box Regression",
    CVPR 2019. https://arxiv.org/abs/1902.09630
  """
  fn = "box_giou_loss"
  pred, target = _pair(fn, pred, target, eps, three_d=True)
  _checks.scalar(fn, "power", power, low=0.0, above=True)
  g = _geometry(pred, target)
  enclosing = g["enclosing"]
  penalty = _numerics.safe_div(enclosing - g["union"], enclosing + eps, 0)
  return 1 - _pow(_iou(g, eps), power) + _pow(penalty, power)


def box_diou_loss(
  pred: ArrayLike,
  target: ArrayLike,
  *,
  eps: float = 1e-7,
  power: float = 1.0,
) -> jax.Array:
  r"""Distance IoU loss of boxes, elementwise (Zheng et al. 2020).

  With :math:`\rho` the distance between the box centres and :math:`c` the
  diagonal of the smallest enclosing box (both in 3-D for 3-D boxes),

  .. math::
    \ell = 1 - \Big(\frac{I}{U + \epsilon}\Big)^{\alpha}
      + \Big(\frac{\rho^2}{c^2 + \epsilon}\Big)^{\alpha},

  with :math:`\alpha` = ``power`` (1 by default; alpha-DIoU otherwise).

  Args:
    pred: Predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, or 3-D boxes
      ``[..., 6]`` as ``(x1, y1, z1, x2, y2, z2)``, floating.
    target: Target boxes with ``pred``'s last axis, broadcastable against
      ``pred`` over the leading axes.
    eps: Added to the union and to :math:`c^2`, ``>= 0``.
    power: The exponent :math:`\alpha` of alpha-IoU (He et al. 2021),
      ``> 0``; see the formula. ``power=1`` (the default) is the plain loss;
      the paper recommends 3.

  Returns:
    The loss of each box pair, shape: the broadcast leading shape ``[...]``,
    in float32 (float64 for float64 ``pred``). In ``[0, 2)`` for valid boxes.

  Convention:
    Same formula and ``eps`` placement as
    ``torchvision.ops.distance_box_iou_loss``. Concentric boxes give the IoU
    loss. The centre term pulls disjoint boxes straight towards the target
    and keeps a finite gradient however far apart the boxes are. 3-D boxes
    ``[..., 6]`` use volumes, the 3-D centre distance and the 3-D diagonal
    of the enclosing cuboid (the paper's definition in three dimensions;
    MONAI has no DIoU).
    ``power``: alpha-IoU; see "Box losses: shared conventions" in the
    guide.

    Broadcasting, dtypes, ``eps`` and invalid boxes: see "Box losses:
    shared conventions" in the guide.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # IoU = 1/7, centres (1, 1) and (2, 2): rho^2 = 2, c^2 = 9 + 9 = 18,
    >>> # loss = 6/7 + 2/18.
    >>> jaxloss.box_diou_loss(jnp.array([0., 0., 2., 2.]),
    ...                       jnp.array([1., 1., 3., 3.]))
    Array(0.968254, dtype=float32)

  References:
    Zheng, Wang, Liu, Li, Ye, Ren, "Distance-IoU Loss: Faster and Better
    Learning for Bounding Box Regression", AAAI 2020.
    https://arxiv.org/abs/1911.08287
  """
  fn = "box_diou_loss"
  pred, target = _pair(fn, pred, target, eps, three_d=True)
  _checks.scalar(fn, "power", power, low=0.0, above=True)
  g = _geometry(pred, target)
  return 1 - _pow(_iou(g, eps), power) + _pow(_distance_term(g, eps), power)


def box_ciou_loss(
  pred: ArrayLike,
  target: ArrayLike,
  *,
  eps: float = 1e-7,
  power: float = 1.0,
) -> jax.Array:
  r"""Complete IoU loss of boxes, elementwise (Zheng et al. 2020).

  The DIoU loss plus an aspect-ratio term:

  .. math::
    \ell = \ell_\mathrm{DIoU} + (\alpha v)^{a}, \qquad
    v = \frac{4}{\pi^2} \Big(\arctan\frac{w^{gt}}{h^{gt}}
      - \arctan\frac{w}{h}\Big)^2, \qquad
    \alpha = \frac{v}{1 - \mathrm{IoU} + v + \epsilon},

  with :math:`a` = ``power`` (1 by default; alpha-CIoU otherwise), which
  also raises the IoU and the distance term of :math:`\ell_\mathrm{DIoU}`
  (see :func:`box_diou_loss`).

  Args:
    pred: Predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, floating;
      2-D only (3-D boxes ``[..., 6]`` are refused).
    target: Target boxes ``[..., 4]``, broadcastable against ``pred`` over
      the leading axes.
    eps: Added to the union, to :math:`c^2` and to the denominator of
      :math:`\alpha`, ``>= 0``.
    power: The exponent :math:`a` of alpha-CIoU (He et al. 2021), ``> 0``;
      ``power=1`` (the default) is the plain loss; the paper recommends 3.

  Returns:
    The loss of each box pair, shape: the broadcast leading shape ``[...]``,
    in float32 (float64 for float64 ``pred``).

  Convention:
    Same formula and ``eps`` placement as
    ``torchvision.ops.complete_box_iou_loss``; :math:`\alpha` is a constant
    in the gradient (``stop_gradient``), as in the paper and torchvision.
    The difference of the two angles is one ``atan2``:
    :math:`\operatorname{atan2}(w^{gt} h - w h^{gt}, w^{gt} w + h^{gt} h)`,
    equal to the formula for :math:`h, h^{gt} > 0`, its :math:`\pi/2` limit
    for a flat box (:math:`h = 0`, where ``arctan(w / 0)`` would give NaN
    gradients), and 0 with zero gradient when either box is a point (its
    aspect ratio is undefined). For an invalid box with :math:`h < 0` it
    differs from torchvision's ``arctan(w / h)`` by :math:`\pm\pi`. Boxes of
    equal aspect ratio give the DIoU loss. With ``power``, the aspect term
    is :math:`(\alpha v)^a` with the same constant :math:`\alpha` (computed
    from the plain IoU), as in the alpha-IoU paper's code.
    ``power``: alpha-IoU; see "Box losses: shared conventions" in the
    guide.

    Broadcasting, dtypes, ``eps`` and invalid boxes: see "Box losses:
    shared conventions" in the guide.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Two squares: v = 0, so CIoU = DIoU = 6/7 + 2/18.
    >>> jaxloss.box_ciou_loss(jnp.array([0., 0., 2., 2.]),
    ...                       jnp.array([1., 1., 3., 3.]))
    Array(0.968254, dtype=float32)

  References:
    Zheng, Wang, Liu, Li, Ye, Ren, "Distance-IoU Loss: Faster and Better
    Learning for Bounding Box Regression", AAAI 2020.
    https://arxiv.org/abs/1911.08287
  """
  fn = "box_ciou_loss"
  pred, target = _pair(fn, pred, target, eps)
  _checks.scalar(fn, "power", power, low=0.0, above=True)
  g = _geometry(pred, target)
  iou = _iou(g, eps)
  v, alpha = _aspect_term(g, iou, eps)
  return (
    1
    - _pow(iou, power)
    + _pow(_distance_term(g, eps), power)
    + _pow(alpha * v, power)
  )


def box_eiou_loss(
  pred: ArrayLike,
  target: ArrayLike,
  *,
  eps: float = 1e-7,
) -> jax.Array:
  r"""Efficient IoU loss of boxes, elementwise (Zhang et al. 2022).

  The DIoU loss with separate width and height terms, each normalised by the
  enclosing box's side (:math:`c_w`, :math:`c_h`, with
  :math:`c^2 = c_w^2 + c_h^2`):

  .. math::
    \ell = 1 - \frac{I}{U + \epsilon} + \frac{\rho^2}{c^2 + \epsilon}
      + \frac{(w - w^{gt})^2}{c_w^2 + \epsilon}
      + \frac{(h - h^{gt})^2}{c_h^2 + \epsilon}.

  Args:
    pred: Predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, floating;
      2-D only (3-D boxes ``[..., 6]`` are refused).
    target: Target boxes ``[..., 4]``, broadcastable against ``pred`` over
      the leading axes.
    eps: Added to the union and to every squared side of the enclosing box,
      ``>= 0``.

  Returns:
    The loss of each box pair, shape: the broadcast leading shape ``[...]``,
    in float32 (float64 for float64 ``pred``). In ``[0, 4)`` for valid boxes.

  Convention:
    torchvision has no EIoU loss; ``eps`` is placed as in its DIoU loss, on
    every denominator. This is the plain EIoU loss; Focal-EIoU (the same
    paper) multiplies it by :math:`\mathrm{IoU}^\gamma`, which the caller can
    do.

    Broadcasting, dtypes, ``eps`` and invalid boxes: see "Box losses:
    shared conventions" in the guide.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # IoU = 4/8; enclosing box 4 x 2, c^2 = 20; rho^2 = 1; widths 2 vs 4:
    >>> # loss = 1/2 + 1/20 + 4/16 + 0 = 0.8.
    >>> jaxloss.box_eiou_loss(jnp.array([0., 0., 2., 2.]),
    ...                       jnp.array([0., 0., 4., 2.]))
    Array(0.8, dtype=float32)

  References:
    Zhang, Ren, Zhang, Jia, Wang, Tan, "Focal and Efficient IOU Loss for
    Accurate Bounding Box Regression", Neurocomputing 2022.
    https://arxiv.org/abs/2101.08158
  """
  pred, target = _pair("box_eiou_loss", pred, target, eps)
  g = _geometry(pred, target)
  (aw, ah), (bw, bh), (cw, ch) = g["a_size"], g["b_size"], g["sides"]
  dw = aw - bw
  dh = ah - bh
  return (
    1
    - _iou(g, eps)
    + _distance_term(g, eps)
    + _numerics.safe_div(dw * dw, cw * cw + eps, 0)
    + _numerics.safe_div(dh * dh, ch * ch + eps, 0)
  )


def box_siou_loss(
  pred: ArrayLike,
  target: ArrayLike,
  *,
  eps: float = 1e-7,
) -> jax.Array:
  r"""SCYLLA-IoU (SIoU) loss of boxes, elementwise (Gevorgyan 2022).

  The IoU loss plus half the sum of an angle-aware distance cost
  :math:`\Delta` and a shape cost :math:`\Omega`. With the centre offset
  :math:`(d_x, d_y)`, :math:`\sigma^2 = d_x^2 + d_y^2`, the enclosing box
  :math:`c_w \times c_h` and the sizes :math:`w, h` (prediction) and
  :math:`w^{gt}, h^{gt}`:

  .. math::
    \ell = 1 - \frac{I}{U + \epsilon} + \frac{\Delta + \Omega}{2},

    \Lambda = 1 - 2 \sin^2\!\Big(\arcsin\frac{|d_y|}{\sigma}
      - \frac{\pi}{4}\Big) = \frac{2 |d_x d_y|}{\sigma^2}, \qquad
    \Delta = \sum_{t \in \{x, y\}} \big(1 - e^{-(2 - \Lambda) \rho_t}\big),
    \quad \rho_x = \frac{d_x^2}{c_w^2 + \epsilon},
    \ \rho_y = \frac{d_y^2}{c_h^2 + \epsilon},

    \Omega = \sum_{t \in \{w, h\}} \big(1 - e^{-\omega_t}\big)^4, \qquad
    \omega_w = \frac{|w - w^{gt}|}{\max(w, w^{gt}) + \epsilon},
    \ \omega_h = \frac{|h - h^{gt}|}{\max(h, h^{gt}) + \epsilon}.

  The angle cost :math:`\Lambda` is 0 when the centres are aligned on an
  axis and 1 on a diagonal; it lowers the weight of the distance cost
  (:math:`2 - \Lambda`) along the diagonal, so the prediction first moves
  onto the nearer axis.

  Args:
    pred: Predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, floating;
      2-D only (3-D boxes ``[..., 6]`` are refused).
    target: Target boxes ``[..., 4]``, broadcastable against ``pred`` over
      the leading axes.
    eps: Added to the union, to :math:`c_w^2`, :math:`c_h^2` and to the
      larger width and height in :math:`\omega`, ``>= 0``.

  Returns:
    The loss of each box pair, shape: the broadcast leading shape ``[...]``,
    in float32 (float64 for float64 ``pred``). In ``[0, 3)`` for valid boxes.

  Convention:
    The shape exponent is the paper's :math:`\theta = 4`. The angle cost is
    computed as :math:`2 |d_x d_y| / \sigma^2`, equal to the paper's
    arcsine form (and to the form that switches to :math:`\beta = \pi/2 -
    \alpha` above 45 degrees), without a square root or an arcsine; at
    coincident centres it is 0 with zero gradient (double ``where``), where
    the distance cost vanishes anyway. Every division is guarded, so
    ``eps=0`` with zero-area boxes stays finite, gradients included. There is
    no torchvision SIoU; YOLOv6 and MMYOLO compute the same terms.

    Broadcasting, dtypes, ``eps`` and invalid boxes: see "Box losses:
    shared conventions" in the guide.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Same size, shifted by 1 along x: IoU = 1/3, Lambda = 0 (aligned),
    >>> # rho_x = 1/9, rho_y = 0, Omega = 0:
    >>> # loss = 2/3 + (1 - exp(-2/9)) / 2.
    >>> jaxloss.box_siou_loss(jnp.array([0., 0., 2., 2.]),
    ...                       jnp.array([1., 0., 3., 2.]))
    Array(0.766298, dtype=float32)

  References:
    Gevorgyan, "SIoU Loss: More Powerful Learning for Bounding Box
    Regression", 2022. https://arxiv.org/abs/2205.12740
  """
  pred, target = _pair("box_siou_loss", pred, target, eps)
  g = _geometry(pred, target)
  (aw, ah), (bw, bh), (cw, ch) = g["a_size"], g["b_size"], g["sides"]
  dx, dy = g["offset"]
  sigma2 = dx * dx + dy * dy
  angle = _numerics.safe_div(2 * jnp.abs(dx * dy), sigma2, 0)
  gamma = 2 - angle
  rho_x = _numerics.safe_div(dx * dx, cw * cw + eps, 0)
  rho_y = _numerics.safe_div(dy * dy, ch * ch + eps, 0)
  distance = -jnp.expm1(-gamma * rho_x) - jnp.expm1(-gamma * rho_y)
  omega_w = _numerics.safe_div(jnp.abs(aw - bw), jnp.maximum(aw, bw) + eps, 0)
  omega_h = _numerics.safe_div(jnp.abs(ah - bh), jnp.maximum(ah, bh) + eps, 0)
  shape = lax.integer_pow(-jnp.expm1(-omega_w), 4) + lax.integer_pow(
    -jnp.expm1(-omega_h), 4
  )
  return 1 - _iou(g, eps) + (distance + shape) / 2


def bounded_iou_loss(
  pred: ArrayLike,
  target: ArrayLike,
  *,
  beta: float = 0.2,
  eps: float = 1e-3,
) -> jax.Array:
  r"""Bounded IoU loss of boxes, elementwise (Tychsen-Smith & Petersson 2018).

  Each of the four box parameters is scored on its own, by the bound on the
  IoU that it leaves when the other three are right, and the four costs go
  through a smooth L1. With the centres :math:`x, y` and sizes :math:`w, h`
  of the predicted box, :math:`x_t, y_t, w_t, h_t` of the target and
  :math:`\Delta x = x_t - x`, :math:`\Delta y = y_t - y`,

  .. math::
    c_x = 1 - \max\Big(0, \frac{w_t - 2 |\Delta x|}
      {w_t + 2 |\Delta x| + \epsilon}\Big), \qquad
    c_w = 1 - \min\Big(\frac{w_t}{w + \epsilon},
      \frac{w}{w_t + \epsilon}\Big),

  :math:`c_y` and :math:`c_h` the same in :math:`y`, and

  .. math::
    \ell = \sum_{i \in \{x, y, w, h\}} s_\beta(c_i), \qquad
    s_\beta(c) = \begin{cases}
      c^2 / (2 \beta), & c < \beta, \\
      c - \beta / 2, & \text{otherwise.}
    \end{cases}

  Args:
    pred: Predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, floating;
      2-D only (3-D boxes ``[..., 6]`` are refused).
    target: Target boxes ``[..., 4]``, broadcastable against ``pred`` over
      the leading axes.
    beta: Where the smooth L1 turns from quadratic to linear, ``> 0``.
    eps: Added to the denominators, ``>= 0``.

  Returns:
    The loss of each box pair, the sum of its four terms, shape: the
    broadcast leading shape ``[...]``, in float32 (float64 for float64
    ``pred``). In ``[0, 4)`` for valid boxes.

  Convention:
    The terms, ``eps`` placement and smooth L1 of mmdetection's
    ``bounded_iou_loss`` (``BoundedIoULoss``), whose defaults ``beta=0.2``
    and ``eps=1e-3`` are these. mmdetection returns the four terms of each
    box, ``[N, 4]``, and reduces them together with the boxes; this returns
    their sum, so ``loss.sum()`` is mmdetection's ``reduction="sum"`` and
    ``loss.mean() / 4`` its default ``reduction="mean"``.

    Gradients with respect to ``target``: mmdetection computes the target's
    centre and size under ``torch.no_grad()``. In JAX a derivative is only
    computed for the arguments one asks for, and the gradient with respect
    to ``pred`` is the same either way, so this loss stays a plain function
    of both: ``jax.grad(..., argnums=1)`` gives its true derivative with
    respect to the target (useful when the target is itself a prediction,
    as in self-distillation). Pass ``jax.lax.stop_gradient(target)`` for
    mmdetection's behaviour.

    With ``eps > 0`` identical boxes do not give exactly 0: each size term
    is :math:`\epsilon / (w + \epsilon)`, about
    :math:`(\epsilon / w)^2 / (2 \beta)` after the smooth L1 (``eps=0``
    gives 0). A position term stops at 1, with zero gradient, once
    :math:`2 |\Delta x| \geq w_t`; the size terms still pull. Every
    division is guarded: ``eps=0`` with a zero-width box stays finite,
    gradients included (a zero width counts as a size ratio of 0, a term of
    1). Invalid boxes are used as given, as in the other box losses;
    ``pred`` and ``target`` broadcast over the leading axes and bf16/fp16
    boxes are computed in float32.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Half as wide, same left edge: centres 0.5 apart in x, so
    >>> # c_x = 1 - (2 - 1) / (2 + 1) = 2/3 and c_w = 1 - 1/2; both above
    >>> # beta: loss = (2/3 - 0.1) + (1/2 - 0.1) = 29/30.
    >>> jaxloss.bounded_iou_loss(jnp.array([0., 0., 1., 2.]),
    ...                          jnp.array([0., 0., 2., 2.]), eps=0.0)
    Array(0.966667, dtype=float32)

  References:
    Tychsen-Smith, Petersson, "Improving Object Localization with Fitness
    NMS and Bounded IoU Loss", CVPR 2018. https://arxiv.org/abs/1711.00164
  """
  fn = "bounded_iou_loss"
  pred, target = _pair(fn, pred, target, eps)
  beta = _checks.scalar(fn, "beta", beta, low=0.0, above=True)
  g = _geometry(pred, target)
  terms = []
  for size, size_t, offset in zip(g["a_size"], g["b_size"], g["offset"]):
    shift = 2 * jnp.abs(offset)  # 2 |centre of the target - centre of pred|
    position = 1 - jnp.maximum(
      _numerics.safe_div(size_t - shift, size_t + shift + eps, 0), 0
    )
    scale = 1 - jnp.minimum(
      _numerics.safe_div(size_t, size + eps, 0),
      _numerics.safe_div(size, size_t + eps, 0),
    )
    terms += [_smooth_l1(position, beta), _smooth_l1(scale, beta)]
  return _total(tuple(terms))


def _smooth_l1(c: jax.Array, beta) -> jax.Array:
  """``c^2 / (2 beta)`` below ``beta``, ``c - beta / 2`` above."""
  return jnp.where(c < beta, c * c / (2 * beta), c - beta / 2)


def balanced_l1_loss(
  pred: ArrayLike,
  target: ArrayLike,
  *,
  alpha: float = 0.5,
  gamma: float = 1.5,
  beta: float = 1.0,
  where: ArrayLike | None = None,
) -> jax.Array:
  r"""Balanced L1 loss, elementwise (Pang et al. 2019, Libra R-CNN).

  With :math:`x = |p - t|` the error of each regression output and
  :math:`b` fixed by :math:`\alpha \ln(b + 1) = \gamma`, that is
  :math:`b = e^{\gamma / \alpha} - 1`,

  .. math::
    \ell = \begin{cases}
      \frac{\alpha}{b} (b x + 1) \ln\!\Big(\frac{b x}{\beta} + 1\Big)
        - \alpha x, & x < \beta, \\
      \gamma x + \frac{\gamma}{b} - \alpha \beta, & x \geq \beta.
    \end{cases}

  With :math:`\beta = 1` (the default) this is the paper's Eq. 8: the
  gradient :math:`\alpha \ln(b x + 1)` of the inliers (:math:`x < 1`) grows
  to :math:`\gamma`, the slope of the outliers, so the two parts meet with
  equal value and slope; small errors get a larger gradient than under the
  smooth L1 loss.

  Args:
    pred: Predicted regression outputs of any shape, floating (e.g. box
      offsets ``[..., 4]``).
    target: Targets of the same shape (no broadcasting), floating.
    alpha: :math:`\alpha`, ``> 0``: smaller values raise the gradient of the
      inliers further.
    gamma: :math:`\gamma`, ``> 0``: the slope for large errors.
    beta: :math:`\beta`, ``> 0``: where the two parts meet.
    where: Optional boolean mask broadcastable to ``pred.shape``; masked
      entries return 0.

  Returns:
    The loss of each element, shape ``pred.shape``, in float32 (float64 for
    float64 ``pred``). Reduce it yourself, e.g. ``.sum() / num_positives``.

  Convention:
    :math:`\beta` enters as in mmdetection's ``balanced_l1_loss`` (same
    defaults, same values): as the threshold, as :math:`\alpha \beta` in the
    constant, and inside the logarithm as :math:`b x / \beta`, but not in the
    factor :math:`b x + 1`. The two parts are continuous at
    :math:`x = \beta` for every :math:`\beta`, but for :math:`\beta \neq 1`
    the slope jumps there (from :math:`\gamma + \alpha ((b \beta + 1) /
    (\beta (b + 1)) - 1)` to :math:`\gamma`) and the loss has a kink at
    :math:`x = 0` (slope :math:`\alpha (1 / \beta - 1)`); the paper uses
    :math:`\beta = 1`, where the loss is smooth except for the second
    derivative at :math:`x = 1`. The gradient at :math:`p = t` is 0.
    Masked entries carry no gradient, even if they hold ``inf`` or NaN;
    the logarithm only ever sees errors below :math:`\beta`, so huge errors
    give finite gradients :math:`\pm\gamma`. NaN in gives NaN out.
    bf16/fp16 inputs are computed in float32. ``alpha``, ``gamma`` and
    ``beta`` may be traced (not differentiated).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # At x = beta = 1 both parts give gamma + gamma / b - alpha,
    >>> # b = e^3 - 1: 1 + 1.5 / (e^3 - 1).
    >>> jaxloss.balanced_l1_loss(jnp.array([0., 1.]), jnp.array([0., 0.]))
    Array([0.      , 1.078593], dtype=float32)

  References:
    Pang, Chen, Shi, Feng, Ouyang, Lin, "Libra R-CNN: Towards Balanced
    Learning for Object Detection", CVPR 2019.
    https://arxiv.org/abs/1904.02701
  """
  fn = "balanced_l1_loss"
  pred = _checks.as_float(fn, "pred", pred)
  target = _checks.same_shape(fn, ("pred", "target"), pred, target)
  target = _checks.as_float(fn, "target", target)
  alpha = _checks.scalar(fn, "alpha", alpha, low=0.0, above=True)
  gamma = _checks.scalar(fn, "gamma", gamma, low=0.0, above=True)
  beta = _checks.scalar(fn, "beta", beta, low=0.0, above=True)
  mask = _checks.mask_for(fn, where, pred.shape, broadcast=True)
  dtype = _numerics.accum_dtype(pred.dtype)
  p, t = pred.astype(dtype), target.astype(dtype)
  if mask is not None:  # Double where: masked entries get no gradient at all.
    p = jnp.where(mask, p, 0)
    t = jnp.where(mask, t, 0)
  a, c, s = (jnp.asarray(v, dtype) for v in (alpha, gamma, beta))
  b = jnp.expm1(c / a)
  x = jnp.abs(p - t)
  inlier = x < s
  # The logarithm sees inliers only (another where), so that a huge error
  # cannot reach it and give an inf times 0 in the gradient.
  xi = jnp.where(inlier, x, 0)
  # alpha / b * (b x + 1) written as alpha * (x + 1 / b): no overflow of b x.
  small = a * (xi + 1 / b) * jnp.log1p(b * xi / s) - a * xi
  large = c * x + c / b - a * s
  loss = jnp.where(inlier, small, large)
  if mask is not None:
    loss = jnp.where(mask, loss, 0)
  return loss


# --------------------------------------------------------------------------
# Helpers


def _pairwise(
  fn: str, boxes1, boxes2, *, three_d: bool = False
) -> dict[str, Any]:
  """Geometry of every box of ``boxes1`` ``[..., N, 4]`` with every box of
  ``boxes2``; with ``three_d``, 3-D boxes ``[..., N, 6]`` too."""
  a = _boxes(fn, "boxes1", boxes1, three_d, rows="N")
  b = _boxes(fn, "boxes2", boxes2, three_d, rows="M")
  _same_dimension(fn, ("boxes1", "boxes2"), a, b)
  batch = _checks.broadcast_shapes(
    fn,
    ("boxes1", "boxes2"),
    a.shape[:-2],
    b.shape[:-2],
    "batch axes (all but the last two)",
  )
  shape = batch + (a.shape[-2], b.shape[-2], a.shape[-1])
  dtype = _numerics.accum_dtype(a.dtype)
  a = jnp.broadcast_to(a.astype(dtype)[..., :, None, :], shape)
  b = jnp.broadcast_to(b.astype(dtype)[..., None, :, :], shape)
  return _geometry(a, b)


def box_iou(boxes1: ArrayLike, boxes2: ArrayLike) -> jax.Array:
  r"""Pairwise IoU of two sets of boxes (batched over leading axes).

  .. math::
    \mathrm{IoU}_{ij} = \frac{|a_i \cap b_j|}{|a_i \cup b_j|},

  with :math:`|\cdot|` the area, or the volume for 3-D boxes.

  Args:
    boxes1: Boxes ``[..., N, 4]`` as ``(x1, y1, x2, y2)``, or 3-D boxes
      ``[..., N, 6]`` as ``(x1, y1, z1, x2, y2, z2)``, floating.
    boxes2: Boxes ``[..., M, 4]`` (``[..., M, 6]`` with 3-D ``boxes1``);
      the batch axes ``[...]`` broadcast against ``boxes1``'s.

  Returns:
    ``[..., N, M]``, the IoU of every pair, in float32 (float64 for float64
    ``boxes1``).

  Convention:
    As ``torchvision.ops.box_iou`` (no ``eps``), but a pair whose union is 0
    (two zero-area boxes) has IoU 0 instead of NaN, with finite gradients.
    Use it for matching (e.g. DETR's Hungarian cost, or anchor assignment);
    for a loss on matched pairs use :func:`box_iou_loss`. On 2-D and 3-D
    boxes it gives the values of MONAI's ``box_iou`` up to MONAI's ``eps``:
    MONAI divides by :math:`U + 2^{-23}`, a relative difference of
    :math:`2^{-23} / U` (below float32's rounding for :math:`U \geq 1`, as
    in voxel or millimetre coordinates; not for tiny volumes in normalised
    coordinates, where ``1 - box_iou_loss(a, b, eps=2**-23)`` on matched
    pairs gives MONAI's value).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> a = jnp.array([[0., 0., 2., 2.]])
    >>> b = jnp.array([[1., 1., 3., 3.], [0., 0., 2., 2.]])
    >>> jaxloss.box_iou(a, b)  # 1/7 and 1
    Array([[0.142857, 1.      ]], dtype=float32)

  References:
    Carion, Massa, Synnaeve, Usunier, Kirillov, Zagoruyko, "End-to-End
    Object Detection with Transformers", ECCV 2020.
    https://arxiv.org/abs/2005.12872
  """
  g = _pairwise("box_iou", boxes1, boxes2, three_d=True)
  return _numerics.safe_div(g["inter"], g["union"], 0)


def generalized_box_iou(boxes1: ArrayLike, boxes2: ArrayLike) -> jax.Array:
  r"""Pairwise generalized IoU of two sets of boxes (batched over leading axes).

  .. math::
    \mathrm{GIoU}_{ij} = \mathrm{IoU}_{ij} - \frac{C_{ij} - U_{ij}}{C_{ij}},

  with :math:`U` the union and :math:`C` the area of the smallest box
  enclosing both (volumes for 3-D boxes).

  Args:
    boxes1: Boxes ``[..., N, 4]`` as ``(x1, y1, x2, y2)``, or 3-D boxes
      ``[..., N, 6]`` as ``(x1, y1, z1, x2, y2, z2)``, floating.
    boxes2: Boxes ``[..., M, 4]`` (``[..., M, 6]`` with 3-D ``boxes1``);
      the batch axes ``[...]`` broadcast against ``boxes1``'s.

  Returns:
    ``[..., N, M]``, in ``[-1, 1]``, in float32 (float64 for float64
    ``boxes1``).

  Convention:
    As ``torchvision.ops.generalized_box_iou`` (no ``eps``); a zero union or
    enclosing area gives 0 for that fraction instead of NaN. DETR's matching
    cost is ``-generalized_box_iou(pred, target)``. On 2-D and 3-D boxes it
    gives the values of MONAI's ``box_giou`` up to MONAI's ``eps``
    (:math:`2^{-23}` added to :math:`U` and :math:`C`; see
    :func:`box_iou`).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> a = jnp.array([[0., 0., 2., 2.]])
    >>> b = jnp.array([[1., 1., 3., 3.], [0., 0., 2., 2.]])
    >>> jaxloss.generalized_box_iou(a, b)  # 1/7 - 2/9 and 1
    Array([[-0.079365, 1.      ]], dtype=float32)

  References:
    Rezatofighi, Tsoi, Gwak, Sadeghian, Reid, Savarese, "Generalized
    Intersection over Union: A Metric and A Loss for Bounding Box Regression",
    CVPR 2019. https://arxiv.org/abs/1902.09630
  """
  g = _pairwise("generalized_box_iou", boxes1, boxes2, three_d=True)
  enclosing = g["enclosing"]
  return _numerics.safe_div(g["inter"], g["union"], 0) - _numerics.safe_div(
    enclosing - g["union"], enclosing, 0
  )


def distance_box_iou(
  boxes1: ArrayLike, boxes2: ArrayLike, *, eps: float = 1e-7
) -> jax.Array:
  r"""Pairwise distance IoU (DIoU) of two sets of boxes (batched).

  With :math:`\rho` the distance of the centres and :math:`c` the diagonal
  of the smallest box enclosing both (in 3-D for 3-D boxes),

  .. math::
    \mathrm{DIoU}_{ij} = \mathrm{IoU}_{ij}
      - \frac{\rho_{ij}^2}{c_{ij}^2 + \epsilon}.

  Args:
    boxes1: Boxes ``[..., N, 4]`` as ``(x1, y1, x2, y2)``, or 3-D boxes
      ``[..., N, 6]`` as ``(x1, y1, z1, x2, y2, z2)``, floating.
    boxes2: Boxes ``[..., M, 4]`` (``[..., M, 6]`` with 3-D ``boxes1``);
      the batch axes ``[...]`` broadcast against ``boxes1``'s.
    eps: Added to :math:`c^2`, ``>= 0``.

  Returns:
    ``[..., N, M]``, in ``(-1, 1]`` for valid boxes, in float32 (float64 for
    float64 ``boxes1``).

  Convention:
    The values of ``torchvision.ops.distance_box_iou``: the IoU has no
    ``eps`` (as :func:`box_iou`: a zero union gives 0, not NaN), ``eps`` is
    added to :math:`c^2`. ``1 - distance_box_iou(boxes1, boxes2)`` on
    matched pairs is :func:`box_diou_loss` up to the ``eps`` in its IoU; use it for matching
    costs and for NMS (DIoU-NMS).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> a = jnp.array([[0., 0., 2., 2.]])
    >>> b = jnp.array([[1., 1., 3., 3.], [0., 0., 2., 2.]])
    >>> jaxloss.distance_box_iou(a, b)  # 1/7 - 2/18 and 1
    Array([[0.031746, 1.      ]], dtype=float32)

  References:
    Zheng, Wang, Liu, Li, Ye, Ren, "Distance-IoU Loss: Faster and Better
    Learning for Bounding Box Regression", AAAI 2020.
    https://arxiv.org/abs/1911.08287
  """
  fn = "distance_box_iou"
  _checks.nonnegative(fn, "eps", eps)
  g = _pairwise(fn, boxes1, boxes2, three_d=True)
  return _numerics.safe_div(g["inter"], g["union"], 0) - _distance_term(g, eps)


def complete_box_iou(
  boxes1: ArrayLike, boxes2: ArrayLike, *, eps: float = 1e-7
) -> jax.Array:
  r"""Pairwise complete IoU (CIoU) of two sets of boxes (batched).

  The DIoU minus the aspect-ratio term of CIoU, with ``boxes1`` in the role
  of the prediction and ``boxes2`` of the target:

  .. math::
    \mathrm{CIoU}_{ij} = \mathrm{DIoU}_{ij} - \alpha_{ij} v_{ij}, \qquad
    v = \frac{4}{\pi^2} \Big(\arctan\frac{w_b}{h_b}
      - \arctan\frac{w_a}{h_a}\Big)^2, \qquad
    \alpha = \frac{v}{1 - \mathrm{IoU} + v + \epsilon}.

  Args:
    boxes1: Boxes ``[..., N, 4]`` as ``(x1, y1, x2, y2)``, floating; 2-D
      only (3-D boxes ``[..., N, 6]`` are refused).
    boxes2: Boxes ``[..., M, 4]``; the batch axes ``[...]`` broadcast
      against ``boxes1``'s.
    eps: Added to :math:`c^2` and to the denominator of :math:`\alpha`,
      ``>= 0``.

  Returns:
    ``[..., N, M]``, in float32 (float64 for float64 ``boxes1``).

  Convention:
    The values of ``torchvision.ops.complete_box_iou`` (IoU without
    ``eps``); :math:`\alpha` is a constant in the gradient
    (``stop_gradient``), as in :func:`box_ciou_loss` and torchvision. The
    angle difference is one ``atan2``, finite for flat boxes and 0 for
    points, as in :func:`box_ciou_loss`. Symmetric in ``boxes1`` and
    ``boxes2``
    (:math:`v` is a square).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> a = jnp.array([[0., 0., 2., 2.]])
    >>> b = jnp.array([[1., 1., 3., 3.], [0., 0., 2., 2.]])
    >>> jaxloss.complete_box_iou(a, b)  # squares: v = 0, the DIoU
    Array([[0.031746, 1.      ]], dtype=float32)

  References:
    Zheng, Wang, Liu, Li, Ye, Ren, "Distance-IoU Loss: Faster and Better
    Learning for Bounding Box Regression", AAAI 2020.
    https://arxiv.org/abs/1911.08287
  """
  fn = "complete_box_iou"
  _checks.nonnegative(fn, "eps", eps)
  g = _pairwise(fn, boxes1, boxes2)
  iou = _numerics.safe_div(g["inter"], g["union"], 0)
  v, alpha = _aspect_term(g, iou, eps)
  return iou - _distance_term(g, eps) - alpha * v


def box_convert(
  boxes: ArrayLike, *, in_format: str, out_format: str
) -> jax.Array:
  r"""Converts boxes between ``"xyxy"``, ``"xywh"`` and ``"cxcywh"``.

  ``"xyxy"`` is ``(x1, y1, x2, y2)`` (corners, the format of the losses),
  ``"xywh"`` is ``(x1, y1, w, h)`` (COCO), ``"cxcywh"`` is
  ``(cx, cy, w, h)`` (centre and size; DETR, YOLO). 3-D boxes ``[..., 6]``
  take the same names: ``(x1, y1, z1, x2, y2, z2)``, ``(x1, y1, z1, w, h,
  d)`` and ``(cx, cy, cz, w, h, d)`` (MONAI's ``"xyzxyz"``, ``"xyzwhd"``
  and ``"cccwhd"``).

  .. math::
    x_2 = x_1 + w, \qquad c_x = \tfrac{1}{2}(x_1 + x_2), \qquad
    x_1 = c_x - \tfrac{1}{2} w, \quad \text{and the same in } y
    \text{ (and } z\text{)}.

  Args:
    boxes: Floating boxes ``[..., 4]`` (2-D) or ``[..., 6]`` (3-D).
    in_format: Format of ``boxes``: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"``.
    out_format: Format to return, same choices.

  Returns:
    Boxes of the shape of ``boxes`` in ``out_format``, in the dtype of
    ``boxes``.

  Convention:
    Both formats are required keywords (no default), so a call always says
    which way it converts. Integer boxes are refused (cast them first: the
    centre of an integer box is a half-integer). Nothing is clamped or
    validated: a negative size gives an invalid ``xyxy`` box.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> b = jnp.array([1., 2., 3., 4.])
    >>> jaxloss.box_convert(b, in_format="xywh", out_format="xyxy")
    Array([1., 2., 4., 6.], dtype=float32)
    >>> jaxloss.box_convert(b, in_format="xyxy", out_format="cxcywh")
    Array([2., 3., 2., 2.], dtype=float32)
    >>> cube = jnp.array([0., 0., 0., 2., 2., 2.])  # 3-D: a 2 x 2 x 2 cube
    >>> jaxloss.box_convert(cube, in_format="xyxy", out_format="cxcywh")
    Array([1., 1., 1., 2., 2., 2.], dtype=float32)

  References:
    Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014 (the
    ``xywh`` format). https://arxiv.org/abs/1405.0312
  """
  fn = "box_convert"
  boxes = _checks.coordinates(fn, "boxes", boxes, (4, 6), meaning="boxes")
  _checks.option(fn, "in_format", in_format, _FORMATS)
  _checks.option(fn, "out_format", out_format, _FORMATS)
  if in_format == out_format:
    return boxes
  d = boxes.shape[-1] // 2
  p, q = boxes[..., :d], boxes[..., d:]
  if in_format == "xywh":
    p, q = p, p + q
  elif in_format == "cxcywh":
    p, q = p - q / 2, p + q / 2
  # Now corners: lower p, upper q.
  if out_format == "xywh":
    p, q = p, q - p
  elif out_format == "cxcywh":
    p, q = (p + q) / 2, q - p
  return jnp.concatenate([p, q], axis=-1)
