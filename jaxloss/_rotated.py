"""Losses of rotated (oriented) boxes through their Gaussians.

A rotated box is ``[..., 5]`` = ``(cx, cy, w, h, theta)``: centre, width,
height and the angle in radians (counter-clockwise in a y-up frame) from the
x axis to the side of length ``w``. Each loss models a box as the Gaussian

.. math::
  \\mathcal{N}\\big(\\mu, \\Sigma\\big), \\qquad \\mu = (c_x, c_y), \\qquad
  \\Sigma = R_\\theta \\operatorname{diag}\\Big(\\frac{w^2}{k} + \\epsilon,
    \\frac{h^2}{k} + \\epsilon\\Big) R_\\theta^\\top,

(:math:`k = 12`, the variance of a uniform box, for ProbIoU; :math:`k = 4`,
:math:`\\Sigma^{1/2} = R \\operatorname{diag}(w/2, h/2) R^\\top`, for GWD and
KLD) and compares the two Gaussians. The Gaussian of a square does not depend
on ``theta``, and ``(w, h, theta)`` gives the Gaussian of ``(h, w, theta +
pi/2)`` and of ``(w, h, theta + pi)``: the losses inherit these symmetries,
which is why they need no angle wrapping.

Every distance is written in closed form from ``w``, ``h``, the angle
difference and the centre offset, as sums of non-negative terms (no 2x2
inverse, no determinant of a difference), so the distance of two equal boxes
is exactly 0 and near-equal boxes keep their accuracy in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _numerics

_FUNS = ("log1p", "sqrt")


# --------------------------------------------------------------------------
# Checks


def _pair(fn: str, pred, target, eps) -> tuple[jax.Array, jax.Array]:
  # A 6-number box is most likely a 3-D box: say that these are 2-D.
  note = "; rotated boxes are 2-D only (no 3-D rotated box loss)"
  pred = _checks.coordinates(
    fn, "pred", pred, 5, meaning="cx, cy, w, h, theta", note=note
  )
  target = _checks.coordinates(
    fn, "target", target, 5, meaning="cx, cy, w, h, theta", note=note
  )
  _checks.scalar(fn, "eps", eps, low=0.0, above=True)
  shape = _checks.broadcast_shapes(
    fn, ("pred", "target"), pred.shape[:-1], target.shape[:-1], "leading axes"
  )
  dtype = _numerics.accum_dtype(pred.dtype)
  shape = shape + (5,)
  return (
    jnp.broadcast_to(pred.astype(dtype), shape),
    jnp.broadcast_to(target.astype(dtype), shape),
  )


def _normalisation(fn: str, fun: str, tau) -> None:
  _checks.option(fn, "fun", fun, _FUNS)
  _checks.scalar(fn, "tau", tau, low=1.0)


# --------------------------------------------------------------------------
# Gaussians


class _Pair:
  """The two Gaussians' parameters, every field ``[...]``.

  ``p`` and ``q`` are the variances along a box's ``w`` and ``h`` sides,
  ``u1``, ``v1`` (``u2``, ``v2``) the centre offset ``mu_1 - mu_2`` projected
  on box 1's (box 2's) ``w`` and ``h`` directions, and ``c2``, ``s2`` the
  squared cosine and sine of the angle difference.
  """

  def __init__(self, a: jax.Array, b: jax.Array, k: float, eps):
    self.p1 = a[..., 2] * a[..., 2] / k + eps
    self.q1 = a[..., 3] * a[..., 3] / k + eps
    self.p2 = b[..., 2] * b[..., 2] / k + eps
    self.q2 = b[..., 3] * b[..., 3] / k + eps
    # Differences of variances without the cancellation of p1 - p2: box 1's
    # w (h) side against box 2's w (h) side, and against its h (w) side.
    diff = lambda x, y: (x - y) * (x + y) / k
    self.dp = diff(a[..., 2], b[..., 2])
    self.dq = diff(a[..., 3], b[..., 3])
    self.dp_cross = diff(a[..., 2], b[..., 3])
    self.dq_cross = diff(a[..., 3], b[..., 2])
    self.hw1 = (a[..., 3] - a[..., 2]) * (a[..., 3] + a[..., 2]) / k  # q1 - p1
    self.hw2 = (b[..., 3] - b[..., 2]) * (b[..., 3] + b[..., 2]) / k
    dx = a[..., 0] - b[..., 0]
    dy = a[..., 1] - b[..., 1]
    self.d2 = dx * dx + dy * dy
    cos1, sin1 = jnp.cos(a[..., 4]), jnp.sin(a[..., 4])
    cos2, sin2 = jnp.cos(b[..., 4]), jnp.sin(b[..., 4])
    self.u1 = dx * cos1 + dy * sin1
    self.v1 = dy * cos1 - dx * sin1
    self.u2 = dx * cos2 + dy * sin2
    self.v2 = dy * cos2 - dx * sin2
    # Of the angle difference itself (exactly 0 for equal angles; a product
    # formula would leave a rounding residue under fused multiply-adds).
    delta = a[..., 4] - b[..., 4]
    cos_d, sin_d = jnp.cos(delta), jnp.sin(delta)
    self.c2 = cos_d * cos_d
    self.s2 = sin_d * sin_d


def _bhattacharyya(g: _Pair) -> jax.Array:
  """Bhattacharyya distance of the two Gaussians, ``>= 0``."""
  sp1, sq1, sp2, sq2 = (jnp.sqrt(x) for x in (g.p1, g.q1, g.p2, g.q2))
  r1, r2 = sp1 * sq1, sp2 * sq2
  det = (
    g.p1 * g.q1
    + g.p2 * g.q2
    + (g.q1 * g.p2 + g.p1 * g.q2) * g.c2
    + (g.q1 * g.q2 + g.p1 * g.p2) * g.s2
  )  # det(S1 + S2)
  mahalanobis = (
    g.q1 * g.u1 * g.u1
    + g.p1 * g.v1 * g.v1
    + g.q2 * g.u2 * g.u2
    + g.p2 * g.v2 * g.v2
  )  # d^T adj d
  # det(S1 + S2) - 4 sqrt(det S1 det S2) as a sum of squares.
  excess = (
    (r1 - r2) ** 2
    + g.c2 * (sq1 * sp2 - sp1 * sq2) ** 2
    + g.s2 * (sq1 * sq2 - sp1 * sp2) ** 2
  )
  return mahalanobis / (4 * det) + 0.5 * jnp.log1p(excess / (4 * r1 * r2))


def _kl_terms(dp, dq, p2, q2, hw1, hw2, s2):
  """``tr(S2^-1 S1) - 2 - ln(det S1 / det S2)`` as
  ``(x - ln(1 + x)) + (y - ln(1 + y)) + s2 (q1 - p1)(q2 - p2) / (p2 q2)``,
  with ``x = p1 / p2 - 1``, ``y = q1 / q2 - 1``: exact when the two boxes'
  sides are matched so that ``s2`` (the squared sine of their angle
  difference) is at most 1/2."""
  x = dp / p2
  y = dq / q2
  return (x - jnp.log1p(x)) + (y - jnp.log1p(y)) + s2 * hw1 * hw2 / (p2 * q2)


def _kullback_leibler(g: _Pair) -> jax.Array:
  """``KL(N_1 || N_2)``, box 1 the prediction, ``>= 0`` up to rounding."""
  # Box 2 described as (h, w, theta + pi/2) is the same Gaussian; of the two
  # descriptions take the one whose angle difference to box 1 is within
  # pi/4, where the terms stay small (the other cancels large terms).
  aligned = _kl_terms(g.dp, g.dq, g.p2, g.q2, g.hw1, g.hw2, g.s2)
  crossed = _kl_terms(g.dp_cross, g.dq_cross, g.q2, g.p2, g.hw1, -g.hw2, g.c2)
  shape = jnp.where(g.c2 >= g.s2, aligned, crossed)
  centre = g.u2 * g.u2 / g.p2 + g.v2 * g.v2 / g.q2
  return jnp.maximum(0.5 * (centre + shape), 0)


def _wasserstein2(g: _Pair) -> jax.Array:
  """Squared 2-Wasserstein distance of the two Gaussians, ``>= 0``."""
  s1, t1, s2, t2 = (jnp.sqrt(x) for x in (g.p1, g.q1, g.p2, g.q2))
  total = g.p1 + g.q1 + g.p2 + g.q2
  cross = (
    g.c2 * (s1 * s2 + t1 * t2) ** 2 + g.s2 * (s1 * t2 + t1 * s2) ** 2
  )  # (tr sqrt(..))^2
  # total - 2 sqrt(cross) = (total^2 - 4 cross) / (total + 2 sqrt(cross)),
  # the numerator a sum of non-negative products.
  aligned = ((s1 - s2) ** 2 + (t1 - t2) ** 2) * (
    (s1 + s2) ** 2 + (t1 + t2) ** 2
  )
  crossed = ((s1 - t2) ** 2 + (t1 - s2) ** 2) * (
    (s1 + t2) ** 2 + (t1 + s2) ** 2
  )
  shape = (g.c2 * aligned + g.s2 * crossed) / (total + 2 * jnp.sqrt(cross))
  return g.d2 + shape


def _normalise(distance: jax.Array, fun: str, tau) -> jax.Array:
  f = jnp.log1p(distance) if fun == "log1p" else _numerics.safe_sqrt(distance)
  return 1 - 1 / (tau + f)


def rotated_box_probiou_loss(
  pred: ArrayLike,
  target: ArrayLike,
  *,
  eps: float = 1e-7,
) -> jax.Array:
  r"""ProbIoU loss of rotated boxes: the Hellinger distance of their Gaussians.

  A box ``(cx, cy, w, h, theta)`` is the Gaussian with mean
  :math:`\mu = (c_x, c_y)` and covariance
  :math:`\Sigma = R_\theta \operatorname{diag}(w^2/12 + \epsilon,
  h^2/12 + \epsilon) R_\theta^\top` (the variance of a uniform box). With
  :math:`\Sigma = (\Sigma_1 + \Sigma_2) / 2`, the Bhattacharyya distance

  .. math::
    B = \frac{1}{8} (\mu_1 - \mu_2)^\top \Sigma^{-1} (\mu_1 - \mu_2)
      + \frac{1}{2} \ln \frac{\det \Sigma}
        {\sqrt{\det \Sigma_1 \det \Sigma_2}},

  and the loss is the Hellinger distance
  :math:`\ell = \sqrt{1 - e^{-B}} = 1 - \mathrm{ProbIoU}`.

  Args:
    pred: Predicted rotated boxes ``[..., 5]`` as ``(cx, cy, w, h, theta)``,
      ``theta`` in radians, floating.
    target: Target rotated boxes ``[..., 5]``, broadcastable against
      ``pred`` over the leading axes.
    eps: Added to every variance, ``> 0``.

  Returns:
    The loss of each box pair, shape: the broadcast leading shape ``[...]``,
    in ``[0, 1]``, in float32 (float64 for float64 ``pred``).

  Convention:
    The paper's :math:`L_1` loss (YOLOv8-OBB's); :math:`-\ln(1 - \ell^2) = B`
    is its :math:`L_2`. Symmetric in ``pred`` and ``target`` and invariant to
    translation and scale (up to ``eps``). Equal boxes give 0; there the
    distance has a cone-shaped minimum and the gradient is taken as 0
    (double ``where``), finite everywhere else.

    ``pred`` and ``target`` broadcast against each other over the leading
    axes; bf16/fp16 boxes are computed in float32. Widths and heights enter
    squared, so a negative size acts as its absolute value. ``eps > 0`` is
    added to both variances of every box (:math:`\Sigma + \epsilon I`):
    a zero-size box is a small Gaussian instead of a singular one, so
    degenerate boxes give finite values and gradients; it is in squared
    coordinate units, keep it well below the squared size of the smallest
    box. NaN in gives NaN out.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # A 2 x 1 box against itself turned by 90 degrees around its centre:
    >>> # B = ln(25 / 16) / 2, loss = sqrt(1 - 4/5).
    >>> jaxloss.rotated_box_probiou_loss(
    ...     jnp.array([0., 0., 2., 1., 0.]),
    ...     jnp.array([0., 0., 2., 1., jnp.pi / 2]), eps=1e-9)
    Array(0.447214, dtype=float32)

  References:
    Llerena, Zeni, Kristen, Jung, "Gaussian Bounding Boxes and Probabilistic
    Intersection-over-Union for Object Detection", 2021.
    https://arxiv.org/abs/2106.06072
  """
  pred, target = _pair("rotated_box_probiou_loss", pred, target, eps)
  b = _bhattacharyya(_Pair(pred, target, 12.0, eps))
  return _numerics.safe_sqrt(-jnp.expm1(-b))


def rotated_box_kld_loss(
  pred: ArrayLike,
  target: ArrayLike,
  *,
  fun: str = "log1p",
  tau: float = 1.0,
  eps: float = 1e-7,
) -> jax.Array:
  r"""KLD loss of rotated boxes: Kullback-Leibler divergence of their Gaussians.

  A box ``(cx, cy, w, h, theta)`` is the Gaussian with mean
  :math:`\mu = (c_x, c_y)` and covariance
  :math:`\Sigma = R_\theta \operatorname{diag}(w^2/4 + \epsilon,
  h^2/4 + \epsilon) R_\theta^\top` (:math:`\Sigma^{1/2}` has the half sides). With prediction
  :math:`p` and target :math:`t`,

  .. math::
    D = \tfrac{1}{2} (\mu_p - \mu_t)^\top \Sigma_t^{-1} (\mu_p - \mu_t)
      + \tfrac{1}{2} \operatorname{tr}(\Sigma_t^{-1} \Sigma_p)
      + \tfrac{1}{2} \ln \frac{\det \Sigma_t}{\det \Sigma_p} - 1,
    \qquad \ell = 1 - \frac{1}{\tau + f(D)},

  with :math:`f` = ``log1p`` (:math:`\ln(1 + D)`) or ``sqrt``.

  Args:
    pred: Predicted rotated boxes ``[..., 5]`` as ``(cx, cy, w, h, theta)``,
      ``theta`` in radians, floating.
    target: Target rotated boxes ``[..., 5]``, broadcastable against
      ``pred`` over the leading axes.
    fun: ``"log1p"`` (the default, as the paper's experiments) or
      ``"sqrt"``.
    tau: :math:`\tau \ge 1`; the loss lies in ``[1 - 1/tau, 1)``.
    eps: Added to every variance, ``> 0``.

  Returns:
    The loss of each box pair, shape: the broadcast leading shape ``[...]``,
    in float32 (float64 for float64 ``pred``).

  Convention:
    :math:`D = \mathrm{KL}(\mathcal{N}_p \,\|\, \mathcal{N}_t)`, the paper's
    direction: the centre offset is measured in the target's covariance, so
    the pull along a side is scaled by the target's size along it. Not
    symmetric. Invariant to translation and scale (up to ``eps``). With
    ``"sqrt"``, equal boxes give the gradient 0 at the cone of
    :math:`\sqrt{D}` (double ``where``).

    ``pred`` and ``target`` broadcast against each other over the leading
    axes; bf16/fp16 boxes are computed in float32. Widths and heights enter
    squared, so a negative size acts as its absolute value. ``eps > 0`` is
    added to both variances of every box (:math:`\Sigma + \epsilon I`):
    a zero-size box is a small Gaussian instead of a singular one, so
    degenerate boxes give finite values and gradients; it is in squared
    coordinate units, keep it well below the squared size of the smallest
    box. NaN in gives NaN out.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Same box, centre moved by half its width along w: D = 1/2.
    >>> loss = jaxloss.rotated_box_kld_loss(
    ...     jnp.array([1., 0., 2., 1., 0.]), jnp.array([0., 0., 2., 1., 0.]))
    >>> loss  # 1 - 1 / (1 + log(1.5))
    Array(0.288492, dtype=float32)

  References:
    Yang, Yang, Yan, Zhang, Zhang, Tian, "Learning High-Precision Bounding
    Box for Rotated Object Detection via Kullback-Leibler Divergence",
    NeurIPS 2021. https://arxiv.org/abs/2106.01883
  """
  fn = "rotated_box_kld_loss"
  pred, target = _pair(fn, pred, target, eps)
  _normalisation(fn, fun, tau)
  return _normalise(_kullback_leibler(_Pair(pred, target, 4.0, eps)), fun, tau)


def rotated_box_gwd_loss(
  pred: ArrayLike,
  target: ArrayLike,
  *,
  fun: str = "log1p",
  tau: float = 1.0,
  eps: float = 1e-7,
) -> jax.Array:
  r"""GWD loss of rotated boxes: Wasserstein distance of their Gaussians.

  A box ``(cx, cy, w, h, theta)`` is the Gaussian with mean
  :math:`\mu = (c_x, c_y)` and covariance
  :math:`\Sigma = R_\theta \operatorname{diag}(w^2/4 + \epsilon,
  h^2/4 + \epsilon) R_\theta^\top` (:math:`\Sigma^{1/2}` has the half sides). With the two boxes'
  Gaussians,

  .. math::
    d^2 = \|\mu_1 - \mu_2\|^2 + \operatorname{tr}\Big(\Sigma_1 + \Sigma_2
      - 2 \big(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}\big)^{1/2}\Big),
    \qquad \ell = 1 - \frac{1}{\tau + f(d^2)},

  with :math:`f` = ``log1p`` (:math:`\ln(1 + d^2)`) or ``sqrt``
  (:math:`d`).

  Args:
    pred: Predicted rotated boxes ``[..., 5]`` as ``(cx, cy, w, h, theta)``,
      ``theta`` in radians, floating.
    target: Target rotated boxes ``[..., 5]``, broadcastable against
      ``pred`` over the leading axes.
    fun: ``"log1p"`` (the default) or ``"sqrt"``.
    tau: :math:`\tau \ge 1`; the loss lies in ``[1 - 1/tau, 1)``.
    eps: Added to every variance, ``> 0``.

  Returns:
    The loss of each box pair, shape: the broadcast leading shape ``[...]``,
    in float32 (float64 for float64 ``pred``).

  Convention:
    For 2 x 2 matrices the trace of the matrix square root is
    :math:`\sqrt{\operatorname{tr}(\Sigma_1 \Sigma_2) + 2 \sqrt{\det
    \Sigma_1 \det \Sigma_2}}`, used in closed form; for axis-aligned boxes
    :math:`d^2` is :math:`\|\mu_1 - \mu_2\|^2 + ((w_1 - w_2)^2 + (h_1 -
    h_2)^2) / 4`. Symmetric in ``pred`` and ``target``, invariant to
    translation but not to scale: :math:`d^2` is in squared coordinate
    units, as in the paper (which normalises with :math:`f` and
    :math:`\tau` only). With ``"sqrt"``, equal boxes give the gradient 0 at
    the cone of :math:`d` (double ``where``).

    ``pred`` and ``target`` broadcast against each other over the leading
    axes; bf16/fp16 boxes are computed in float32. Widths and heights enter
    squared, so a negative size acts as its absolute value. ``eps > 0`` is
    added to both variances of every box (:math:`\Sigma + \epsilon I`):
    a zero-size box is a small Gaussian instead of a singular one, so
    degenerate boxes give finite values and gradients; it is in squared
    coordinate units, keep it well below the squared size of the smallest
    box. NaN in gives NaN out.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Axis-aligned, centres 1 apart, widths 2 and 4: d^2 = 1 + 1 = 2.
    >>> jaxloss.rotated_box_gwd_loss(jnp.array([1., 0., 2., 1., 0.]),
    ...                              jnp.array([0., 0., 4., 1., 0.]),
    ...                              eps=1e-9)  # 1 - 1 / (1 + log 3)
    Array(0.523495, dtype=float32)

  References:
    Yang, Yan, Ming, Zhang, Zhang, Tian, "Rethinking Rotated Object
    Detection with Gaussian Wasserstein Distance Loss", ICML 2021.
    https://arxiv.org/abs/2101.11952
  """
  fn = "rotated_box_gwd_loss"
  pred, target = _pair(fn, pred, target, eps)
  _normalisation(fn, fun, tau)
  return _normalise(_wasserstein2(_Pair(pred, target, 4.0, eps)), fun, tau)
