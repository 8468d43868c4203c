"""Box losses (the IoU family) and box helpers.

Boxes are ``[..., 4]`` arrays of corners ``(x1, y1, x2, y2)`` with
``x1 <= x2`` and ``y1 <= y2`` unless said otherwise. The losses are
elementwise over the leading axes; :func:`box_iou` and
:func:`generalized_box_iou` compare every box of one set with every box of
another.

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
* Zero-area boxes have IoU 0 with every box (itself included), so two
  identical points have IoU loss 1, as in torchvision.
* An invalid box (``x2 < x1`` or ``y2 < y1``) is not repaired: no clamping,
  no swapping of corners. Its width and height enter the formulas with their
  sign, as in torchvision: it intersects nothing, its "area" is negative when
  one side is inverted, and the loss stays finite but is no longer bounded or
  meaningful. Parameterise predictions so that they stay valid (e.g. decode
  ``(cx, cy, exp(tw), exp(th))``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics

_FORMATS = ("xyxy", "xywh", "cxcywh")


# --------------------------------------------------------------------------
# Checks


def _boxes(fn: str, name: str, x, *, min_rank: int = 1) -> jax.Array:
  """``x`` as a floating array of boxes ``[..., 4]``."""
  x = _checks.as_float(fn, name, x)
  if x.ndim < min_rank or x.shape[-1] != 4:
    want = "[..., 4]" if min_rank == 1 else "[..., N, 4]"
    _checks.fail(fn, f"{name} must have shape {want} (boxes on the last "
                  f"axis), got {name}.shape {x.shape}")
  return x


def _broadcast(fn: str, names: tuple[str, str], a_shape, b_shape, what: str):
  try:
    return tuple(np.broadcast_shapes(tuple(a_shape), tuple(b_shape)))
  except ValueError:
    _checks.fail(fn, f"the {what} of {names[0]}.shape and {names[1]}.shape "
                  f"must broadcast, got {a_shape} and {b_shape}")


def _pair(fn: str, pred, target, eps) -> tuple[jax.Array, jax.Array]:
  """Checked ``pred`` and ``target``, broadcast to one shape, in one dtype."""
  pred = _boxes(fn, "pred", pred)
  target = _boxes(fn, "target", target)
  _checks.nonnegative(fn, "eps", eps)
  shape = _broadcast(fn, ("pred", "target"), pred.shape[:-1],
                     target.shape[:-1], "leading axes") + (4,)
  dtype = _numerics.accum_dtype(pred.dtype)
  return (jnp.broadcast_to(pred.astype(dtype), shape),
          jnp.broadcast_to(target.astype(dtype), shape))


# --------------------------------------------------------------------------
# Geometry


def _geometry(a: jax.Array, b: jax.Array) -> dict[str, jax.Array]:
  """Widths, heights, intersection, union and enclosing box of ``a`` vs ``b``.

  ``a`` and ``b`` have one shape ``[..., 4]``; every entry has shape
  ``[...]``.
  """
  ax1, ay1, ax2, ay2 = (a[..., i] for i in range(4))
  bx1, by1, bx2, by2 = (b[..., i] for i in range(4))
  aw, ah = ax2 - ax1, ay2 - ay1
  bw, bh = bx2 - bx1, by2 - by1
  iw = jnp.minimum(ax2, bx2) - jnp.maximum(ax1, bx1)
  ih = jnp.minimum(ay2, by2) - jnp.maximum(ay1, by1)
  # As torchvision: the intersection counts only where both sides are
  # positive. A where (not a clip) gives exact zeros and zero gradients.
  inter = jnp.where((iw > 0) & (ih > 0), iw * ih, 0)
  union = aw * ah + bw * bh - inter
  cw = jnp.maximum(ax2, bx2) - jnp.minimum(ax1, bx1)
  ch = jnp.maximum(ay2, by2) - jnp.minimum(ay1, by1)
  # Squared distance of the centres: ((a1 + a2) - (b1 + b2))^2 / 4.
  dx = (ax1 + ax2) - (bx1 + bx2)
  dy = (ay1 + ay2) - (by1 + by2)
  return dict(aw=aw, ah=ah, bw=bw, bh=bh, inter=inter, union=union, cw=cw,
              ch=ch, rho2=(dx * dx + dy * dy) / 4)


def _iou(g: dict[str, jax.Array], eps) -> jax.Array:
  return _numerics.safe_div(g["inter"], g["union"] + eps, 0)


def _distance_term(g: dict[str, jax.Array], eps) -> jax.Array:
  diagonal2 = g["cw"] * g["cw"] + g["ch"] * g["ch"] + eps
  return _numerics.safe_div(g["rho2"], diagonal2, 0)


def _angle_difference(g: dict[str, jax.Array]) -> jax.Array:
  """``arctan(w_b / h_b) - arctan(w_a / h_a)`` with one ``atan2``.

  For sizes >= 0 both angles lie in ``[0, pi/2]`` and their difference is
  ``atan2(w_b h_a - w_a h_b, w_b w_a + h_b h_a)``: exact for ``h > 0``, the
  ``pi/2`` limit for a flat box (``h = 0``, where ``arctan(w / 0)`` gives NaN
  gradients), and 0 with zero gradient (double ``where``) when either box is
  a point (no aspect ratio, no penalty). One ``atan2`` instead of two halves
  the cost of CIoU (``atan2`` is the expensive op on CPU).
  """
  num = g["bw"] * g["ah"] - g["aw"] * g["bh"]
  den = g["bw"] * g["aw"] + g["bh"] * g["ah"]
  origin = (num == 0) & (den == 0)
  return jnp.where(origin, 0, jnp.arctan2(jnp.where(origin, 1, num),
                                          jnp.where(origin, 1, den)))


# --------------------------------------------------------------------------
# Losses


def box_iou_loss(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    eps: float = 1e-7,
) -> jax.Array:
  r"""IoU loss of boxes, elementwise: one minus intersection over union.

  With :math:`I` the area of the intersection and :math:`U` the area of the
  union of a predicted and a target box,

  .. math::
    \ell = 1 - \frac{I}{U + \epsilon}.

  Args:
    pred: Predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, floating.
    target: Target boxes ``[..., 4]``, broadcastable against ``pred`` over
      the leading axes.
    eps: Added to the union, ``>= 0``.

  Returns:
    The loss of each box pair, shape: the broadcast leading shape ``[...]``,
    in float32 (float64 for float64 ``pred``). In ``[0, 1]`` for valid boxes.

  Convention:
    Same IoU and ``eps`` placement as torchvision's box losses (torchvision
    has no plain IoU loss). Boxes that do not overlap give loss 1 and zero
    gradient: the IoU loss cannot pull a disjoint box towards its target
    (GIoU, DIoU, CIoU and EIoU can). A zero-area box has IoU 0.

    ``pred`` and ``target`` broadcast against each other over the leading
    axes (explicitly: it works with ``jax_numpy_rank_promotion="raise"``);
    bf16/fp16 boxes are computed in float32. An invalid box (``x2 < x1`` or ``y2 < y1``) is used
    as given, as in torchvision (no clamping, no swapped corners): it
    intersects nothing, its area is the signed product :math:`w h`, and the
    loss stays finite but leaves its usual range; keep predictions valid by
    construction (e.g. decode sizes with ``exp``).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # 2x2 boxes shifted by (1, 1): I = 1, U = 4 + 4 - 1 = 7, loss = 6/7.
    >>> jaxloss.box_iou_loss(jnp.array([0., 0., 2., 2.]),
    ...                      jnp.array([1., 1., 3., 3.]))
    Array(0.857143, dtype=float32)

  References:
    Yu, Jiang, Wang, Cao, Huang, "UnitBox: An Advanced Object Detection
    Network", ACM MM 2016. https://arxiv.org/abs/1608.01471
  """
  pred, target = _pair("box_iou_loss", pred, target, eps)
  return 1 - _iou(_geometry(pred, target), eps)


def box_giou_loss(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    eps: float = 1e-7,
) -> jax.Array:
  r"""Generalized IoU loss of boxes, elementwise (Rezatofighi et al. 2019).

  With :math:`C` the area of the smallest box enclosing both boxes,

  .. math::
    \ell = 1 - \frac{I}{U + \epsilon} + \frac{C - U}{C + \epsilon}.

  Args:
    pred: Predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, floating.
    target: Target boxes ``[..., 4]``, broadcastable against ``pred`` over
      the leading axes.
    eps: Added to the union and to the enclosing area, ``>= 0``.

  Returns:
    The loss of each box pair, shape: the broadcast leading shape ``[...]``,
    in float32 (float64 for float64 ``pred``). In ``[0, 2]`` for valid boxes.

  Convention:
    Same formula and ``eps`` placement as
    ``torchvision.ops.generalized_box_iou_loss``. When the enclosing box is
    the union (nested boxes, or boxes that share a full side) it equals the
    IoU loss. Disjoint boxes get a gradient that grows the predicted box
    towards the target.

    ``pred`` and ``target`` broadcast against each other over the leading
    axes (explicitly: it works with ``jax_numpy_rank_promotion="raise"``);
    bf16/fp16 boxes are computed in float32. An invalid box (``x2 < x1`` or ``y2 < y1``) is used
    as given, as in torchvision (no clamping, no swapped corners): it
    intersects nothing, its area is the signed product :math:`w h`, and the
    loss stays finite but leaves its usual range; keep predictions valid by
    construction (e.g. decode sizes with ``exp``).

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
  pred, target = _pair("box_giou_loss", pred, target, eps)
  g = _geometry(pred, target)
  enclosing = g["cw"] * g["ch"]
  return (1 - _iou(g, eps)
          + _numerics.safe_div(enclosing - g["union"], enclosing + eps, 0))


def box_diou_loss(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    eps: float = 1e-7,
) -> jax.Array:
  r"""Distance IoU loss of boxes, elementwise (Zheng et al. 2020).

  With :math:`\rho` the distance between the box centres and :math:`c` the
  diagonal of the smallest enclosing box,

  .. math::
    \ell = 1 - \frac{I}{U + \epsilon} + \frac{\rho^2}{c^2 + \epsilon}.

  Args:
    pred: Predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, floating.
    target: Target boxes ``[..., 4]``, broadcastable against ``pred`` over
      the leading axes.
    eps: Added to the union and to :math:`c^2`, ``>= 0``.

  Returns:
    The loss of each box pair, shape: the broadcast leading shape ``[...]``,
    in float32 (float64 for float64 ``pred``). In ``[0, 2)`` for valid boxes.

  Convention:
    Same formula and ``eps`` placement as
    ``torchvision.ops.distance_box_iou_loss``. Concentric boxes give the IoU
    loss. The centre term pulls disjoint boxes straight towards the target
    and keeps a finite gradient however far apart the boxes are.

    ``pred`` and ``target`` broadcast against each other over the leading
    axes (explicitly: it works with ``jax_numpy_rank_promotion="raise"``);
    bf16/fp16 boxes are computed in float32. An invalid box (``x2 < x1`` or ``y2 < y1``) is used
    as given, as in torchvision (no clamping, no swapped corners): it
    intersects nothing, its area is the signed product :math:`w h`, and the
    loss stays finite but leaves its usual range; keep predictions valid by
    construction (e.g. decode sizes with ``exp``).

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
  pred, target = _pair("box_diou_loss", pred, target, eps)
  g = _geometry(pred, target)
  return 1 - _iou(g, eps) + _distance_term(g, eps)


def box_ciou_loss(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    eps: float = 1e-7,
) -> jax.Array:
  r"""Complete IoU loss of boxes, elementwise (Zheng et al. 2020).

  The DIoU loss plus an aspect-ratio term:

  .. math::
    \ell = \ell_\mathrm{DIoU} + \alpha v, \qquad
    v = \frac{4}{\pi^2} \Big(\arctan\frac{w^{gt}}{h^{gt}}
      - \arctan\frac{w}{h}\Big)^2, \qquad
    \alpha = \frac{v}{1 - \mathrm{IoU} + v + \epsilon}.

  Args:
    pred: Predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, floating.
    target: Target boxes ``[..., 4]``, broadcastable against ``pred`` over
      the leading axes.
    eps: Added to the union, to :math:`c^2` and to the denominator of
      :math:`\alpha`, ``>= 0``.

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
    equal aspect ratio give the DIoU loss.

    ``pred`` and ``target`` broadcast against each other over the leading
    axes (explicitly: it works with ``jax_numpy_rank_promotion="raise"``);
    bf16/fp16 boxes are computed in float32. An invalid box (``x2 < x1`` or ``y2 < y1``) is used
    as given, as in torchvision (no clamping, no swapped corners): it
    intersects nothing, its area is the signed product :math:`w h`, and the
    loss stays finite but leaves its usual range; keep predictions valid by
    construction (e.g. decode sizes with ``exp``).

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
  pred, target = _pair("box_ciou_loss", pred, target, eps)
  g = _geometry(pred, target)
  iou = _iou(g, eps)
  delta = _angle_difference(g)
  v = (4 / math.pi**2) * (delta * delta)
  alpha = lax.stop_gradient(_numerics.safe_div(v, 1 - iou + v + eps, 0))
  return 1 - iou + _distance_term(g, eps) + alpha * v


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
    pred: Predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, floating.
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

    ``pred`` and ``target`` broadcast against each other over the leading
    axes (explicitly: it works with ``jax_numpy_rank_promotion="raise"``);
    bf16/fp16 boxes are computed in float32. An invalid box (``x2 < x1`` or ``y2 < y1``) is used
    as given, as in torchvision (no clamping, no swapped corners): it
    intersects nothing, its area is the signed product :math:`w h`, and the
    loss stays finite but leaves its usual range; keep predictions valid by
    construction (e.g. decode sizes with ``exp``).

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
  dw = g["aw"] - g["bw"]
  dh = g["ah"] - g["bh"]
  return (1 - _iou(g, eps) + _distance_term(g, eps)
          + _numerics.safe_div(dw * dw, g["cw"] * g["cw"] + eps, 0)
          + _numerics.safe_div(dh * dh, g["ch"] * g["ch"] + eps, 0))


# --------------------------------------------------------------------------
# Helpers


def _pairwise(fn: str, a, b) -> dict[str, jax.Array]:
  """Geometry of every box of ``a`` ``[..., N, 4]`` with every box of ``b``."""
  a = _boxes(fn, "a", a, min_rank=2)
  b = _boxes(fn, "b", b, min_rank=2)
  batch = _broadcast(fn, ("a", "b"), a.shape[:-2], b.shape[:-2],
                     "batch axes (all but the last two)")
  shape = batch + (a.shape[-2], b.shape[-2], 4)
  dtype = _numerics.accum_dtype(a.dtype)
  a = jnp.broadcast_to(a.astype(dtype)[..., :, None, :], shape)
  b = jnp.broadcast_to(b.astype(dtype)[..., None, :, :], shape)
  return _geometry(a, b)


def box_iou(a: ArrayLike, b: ArrayLike) -> jax.Array:
  r"""Pairwise IoU of two sets of boxes (batched over leading axes).

  .. math::
    \mathrm{IoU}_{ij} = \frac{|a_i \cap b_j|}{|a_i \cup b_j|}.

  Args:
    a: Boxes ``[..., N, 4]`` as ``(x1, y1, x2, y2)``, floating.
    b: Boxes ``[..., M, 4]``; the batch axes ``[...]`` broadcast against
      ``a``'s.

  Returns:
    ``[..., N, M]``, the IoU of every pair, in float32 (float64 for float64
    ``a``).

  Convention:
    As ``torchvision.ops.box_iou`` (no ``eps``), but a pair whose union is 0
    (two zero-area boxes) has IoU 0 instead of NaN, with finite gradients.
    Use it for matching (e.g. DETR's Hungarian cost, or anchor assignment);
    for a loss on matched pairs use :func:`box_iou_loss`.

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
  g = _pairwise("box_iou", a, b)
  return _numerics.safe_div(g["inter"], g["union"], 0)


def generalized_box_iou(a: ArrayLike, b: ArrayLike) -> jax.Array:
  r"""Pairwise generalized IoU of two sets of boxes (batched over leading axes).

  .. math::
    \mathrm{GIoU}_{ij} = \mathrm{IoU}_{ij} - \frac{C_{ij} - U_{ij}}{C_{ij}},

  with :math:`U` the union and :math:`C` the area of the smallest box
  enclosing both.

  Args:
    a: Boxes ``[..., N, 4]`` as ``(x1, y1, x2, y2)``, floating.
    b: Boxes ``[..., M, 4]``; the batch axes ``[...]`` broadcast against
      ``a``'s.

  Returns:
    ``[..., N, M]``, in ``[-1, 1]``, in float32 (float64 for float64 ``a``).

  Convention:
    As ``torchvision.ops.generalized_box_iou`` (no ``eps``); a zero union or
    enclosing area gives 0 for that fraction instead of NaN. DETR's matching
    cost is ``-generalized_box_iou(pred, target)``.

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
  g = _pairwise("generalized_box_iou", a, b)
  enclosing = g["cw"] * g["ch"]
  return (_numerics.safe_div(g["inter"], g["union"], 0)
          - _numerics.safe_div(enclosing - g["union"], enclosing, 0))


def box_convert(boxes: ArrayLike, *, source: str, target: str) -> jax.Array:
  r"""Converts boxes between ``"xyxy"``, ``"xywh"`` and ``"cxcywh"``.

  ``"xyxy"`` is ``(x1, y1, x2, y2)`` (corners, the format of the losses),
  ``"xywh"`` is ``(x1, y1, w, h)`` (COCO), ``"cxcywh"`` is
  ``(cx, cy, w, h)`` (centre and size; DETR, YOLO).

  .. math::
    x_2 = x_1 + w, \qquad c_x = \tfrac{1}{2}(x_1 + x_2), \qquad
    x_1 = c_x - \tfrac{1}{2} w, \quad \text{and the same in } y.

  Args:
    boxes: Floating boxes ``[..., 4]``.
    source: Format of ``boxes``: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"``.
    target: Format to return, same choices.

  Returns:
    Boxes ``[..., 4]`` in ``target`` format, in the dtype of ``boxes``.

  Convention:
    Both formats are required keywords (no default), so a call always says
    which way it converts. Integer boxes are refused (cast them first: the
    centre of an integer box is a half-integer). Nothing is clamped or
    validated: a negative size gives an invalid ``xyxy`` box.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> b = jnp.array([1., 2., 3., 4.])
    >>> jaxloss.box_convert(b, source="xywh", target="xyxy")
    Array([1., 2., 4., 6.], dtype=float32)
    >>> jaxloss.box_convert(b, source="xyxy", target="cxcywh")
    Array([2., 3., 2., 2.], dtype=float32)

  References:
    Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014 (the
    ``xywh`` format). https://arxiv.org/abs/1405.0312
  """
  fn = "box_convert"
  boxes = _boxes(fn, "boxes", boxes)
  _checks.option(fn, "source", source, _FORMATS)
  _checks.option(fn, "target", target, _FORMATS)
  if source == target:
    return boxes
  p, q, r, s = (boxes[..., i] for i in range(4))
  if source == "xywh":
    p, q, r, s = p, q, p + r, q + s
  elif source == "cxcywh":
    p, q, r, s = p - r / 2, q - s / 2, p + r / 2, q + s / 2
  # Now corners (x1, y1, x2, y2).
  if target == "xywh":
    p, q, r, s = p, q, r - p, s - q
  elif target == "cxcywh":
    p, q, r, s = (p + r) / 2, (q + s) / 2, r - p, s - q
  return jnp.stack([p, q, r, s], axis=-1)
