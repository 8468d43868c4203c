"""Boundary- and topology-aware losses: boundary, Hausdorff (DT, ER), clDice.

Layout ``[B, *spatial, C]``, channels last: axis 0 is the batch, the axes
between it and the class axis are spatial (one for signals, two for images,
three for volumes). Distance maps and skeletons are taken per image and class
over the spatial axes, never across the batch; the loss terms are then pooled
over ``axis`` as in the region losses (default: everything but the class axis)
and averaged over the selected classes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _distance
from jaxloss import _numerics
from jaxloss import _region
from jaxloss._checks import Activation
from jaxloss._checks import Axis
from jaxloss._checks import Classes
from jaxloss._checks import Sampling


def _spatial(fn: str, name: str, x: jax.Array) -> tuple[int, ...]:
  """The spatial axes of ``[B, *spatial, C]``, requiring at least one."""
  if x.ndim < 3:
    _checks.fail(
      fn,
      f"{name} must have shape [B, *spatial, C] with at least "
      f"one spatial axis, got {name}.shape {x.shape}",
    )
  return tuple(range(1, x.ndim - 1))


def _inputs(fn, probs, labels, axis, where, activation):
  """Checked probabilities, targets, target masks, valid-pixel mask, axes.

  Returns ``(p, t, inside, mask, axes)``: ``p`` and ``t`` in the accumulation
  dtype, 0 at masked pixels; ``inside`` the boolean class masks (``t > 1/2``),
  False at masked entries; ``mask`` the valid entries, ``[B, *spatial, 1]``
  (a pixel mask) or ``[B, *spatial, C]`` (a pixel-and-class mask), or None;
  ``axes`` the pooled axes.
  """
  _spatial(fn, "probs", _checks.as_float(fn, "probs", probs))
  region = _region.inputs(
    fn, probs, labels, axis=axis, where=where, activation=activation
  )
  t = region.targets()
  if t.dtype == jnp.bool_:
    inside, t = t, t.astype(region.x.dtype)
  else:
    inside = t > 0.5
  return region.probabilities(), t, inside, region.valid, region.axes


def _sides(fn: str, inside: jax.Array, sampling, dtype):
  """Distances to a class mask's boundary from outside and from inside.

  Returns ``(outside, within, split)``: the distance of each pixel outside
  the class to the class, the distance of each pixel of the class to the
  nearest pixel outside it (each 0 on the other side), and whether the image
  holds both sides (``[B, 1, ..., 1, C]``). Where it does not (an absent or a
  full class), the distances are ``inf`` and must be replaced.
  """
  spatial = tuple(range(1, inside.ndim - 1))
  steps = _distance.steps(fn, sampling, len(spatial))
  both = jnp.concatenate([~inside, inside], axis=-1)
  dist = _distance.euclidean_distance(both, spatial, steps, dtype)
  num_classes = inside.shape[-1]
  outside, within = dist[..., :num_classes], dist[..., num_classes:]
  split = jnp.any(inside, axis=spatial, keepdims=True) & jnp.any(
    ~inside, axis=spatial, keepdims=True
  )
  return outside, within, split


def _pixel_mean(fn, terms, t, mask, axes, classes):
  """Mean of ``terms`` over the pooled valid pixels, then the class mean."""
  total = jnp.sum(terms, axis=axes)
  if mask is None:
    count = np.prod([terms.shape[a] for a in axes])
    count = jnp.asarray(count, terms.dtype)
  else:
    count = jnp.sum(mask.astype(terms.dtype), axis=axes)
  per_class = _numerics.safe_div(total, count, 0)
  return _region.class_mean(fn, per_class, jnp.sum(t, axis=axes), classes, None)


def boundary_loss(
  probs: ArrayLike,
  labels: ArrayLike,
  *,
  axis: Axis = None,
  where: ArrayLike | None = None,
  classes: Classes = "all",
  sampling: Sampling = None,
  activation: Activation = None,
) -> jax.Array:
  r"""Boundary loss (Kervadec et al.): probabilities weighted by a signed distance.

  Per image and class :math:`c`, with :math:`G_c` the ground-truth region,
  :math:`\phi_c` is its signed distance map,

  .. math::
    \phi_c(x) = \begin{cases}
      d(x, G_c) & x \notin G_c \\
      -\left(d(x, \overline{G_c}) - 1\right) & x \in G_c,
    \end{cases}
    \qquad
    \ell_c = \frac{1}{N} \sum_i p_{ic}\, \phi_c(x_i),

  :math:`d` the Euclidean distance (in units of ``sampling``) and :math:`N`
  the number of pooled valid pixels; the loss is the mean of
  :math:`\ell_c` over the selected classes. It is lowest when the
  probability mass sits inside the region, and a false positive costs its
  distance to the region.

  Args:
    probs: Probabilities ``[B, *spatial, C]``, channels last, or logits
      with ``activation``.
    labels: Integer class ids ``[B, *spatial]``, or targets of the shape of
      ``probs`` (a pixel belongs to class :math:`c` where its target is
      above 1/2). Binary masks with one channel: ``mask[..., None]``.
    axis: Axes the mean is pooled over; default every axis but the class
      axis (one scalar for the batch). ``axis=(1, 2)`` on ``[B, H, W, C]``
      gives one loss per image. The distances are per image either way.
    where: Optional boolean mask ``[B, *spatial]`` of valid pixels, or
      ``[B, *spatial, C]`` of valid (pixel, class) entries. For an
      ignore label: ``where=labels != 255``.
    classes: ``"all"``, ``"present"`` (classes with a target pixel in the
      pooled group) or an integer array of class ids to average over.
    sampling: Grid spacing of the spatial axes: one positive number or one
      per spatial axis (e.g. the voxel size). Default 1.
    activation: None, ``"softmax"`` or ``"sigmoid"``: the first argument
      holds logits; see :func:`dice_loss`.

  Returns:
    The loss with the pooled axes and the class axis removed (a scalar by
    default), float32 (float64 for float64 probabilities). It can be
    negative: a perfect prediction gives :math:`-\frac{1}{N}\sum_{G}
    (d - 1)`.

  Convention:
    A class absent from an image, or filling it, has :math:`\phi_c = 0` in
    that image: it adds nothing to the sum (its pixels still count in
    :math:`N`). :math:`\phi_c` is a constant of the labels (no gradient); the
    gradient is :math:`\phi_c / N`. A masked pixel adds nothing to the value
    or the gradient, and counts as outside every class in the distance maps
    (so an ignored region is measured across, not around). As in the
    authors' code, pixels on the inner edge of the region have
    :math:`\phi = 0` and the outer edge :math:`\phi = 1`. The paper pairs
    the loss with a region loss: ``(1 - a) * dice + a * boundary`` with
    ``a`` rising during training. ``classes="all"`` includes the
    background; the paper uses the foreground classes
    (``classes=jnp.arange(1, C)``).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # One 1-D image of 5 pixels, region = pixels 1..3:
    >>> # phi = (1, 0, -1, 0, 1); mean of p * phi = (0.2 - 1.0 + 0.1) / 5.
    >>> target = jnp.array([[0.0, 1.0, 1.0, 1.0, 0.0]])[..., None]
    >>> probs = jnp.array([[0.2, 0.9, 1.0, 0.8, 0.1]])[..., None]
    >>> jaxloss.boundary_loss(probs, target)
    Array(-0.14, dtype=float32)

  References:
    Kervadec, Bouchtiba, Desrosiers, Granger, Dolz, Ben Ayed, "Boundary loss
    for highly unbalanced segmentation", MIDL 2019 / Medical Image Analysis
    2021. https://arxiv.org/abs/1812.07032
  """
  fn = "boundary_loss"
  p, t, inside, mask, axes = _inputs(fn, probs, labels, axis, where, activation)
  outside, within, split = _sides(fn, inside, sampling, p.dtype)
  phi = jnp.where(inside, 1 - within, outside)
  phi = jnp.where(split, phi, 0)
  return _pixel_mean(fn, p * phi, t, mask, axes, classes)


def hausdorff_dt_loss(
  probs: ArrayLike,
  labels: ArrayLike,
  *,
  alpha: float = 2.0,
  axis: Axis = None,
  where: ArrayLike | None = None,
  classes: Classes = "all",
  sampling: Sampling = None,
  activation: Activation = None,
) -> jax.Array:
  r"""Hausdorff distance loss from distance transforms (Karimi & Salcudean).

  Per image and class, with :math:`d_t` the distance of each pixel to the
  boundary of the target region (from either side) and :math:`d_p` the same
  for the thresholded prediction :math:`p > 1/2`,

  .. math::
    \ell_c = \frac{1}{N} \sum_i (p_{ic} - t_{ic})^2
      \left(d_{p,c}(x_i)^{\alpha} + d_{t,c}(x_i)^{\alpha}\right),

  :math:`N` the number of pooled valid pixels; the loss is the mean of
  :math:`\ell_c` over the selected classes. Errors far from either boundary
  weigh most, which is what the Hausdorff distance measures.

  Args:
    probs: Probabilities ``[B, *spatial, C]``, channels last, or logits
      with ``activation``.
    labels: Integer class ids ``[B, *spatial]``, or targets of the shape of
      ``probs`` (the region of class :math:`c` is where its target is above
      1/2; the squared error uses the targets as given).
    alpha: Exponent :math:`\alpha \ge 0` of the distances (the paper's 2).
    axis: Axes the mean is pooled over; default every axis but the class
      axis. ``axis=(1, 2)`` on ``[B, H, W, C]`` gives one loss per image.
    where: Optional boolean mask ``[B, *spatial]`` of valid pixels, or
      ``[B, *spatial, C]`` of valid (pixel, class) entries.
    classes: ``"all"``, ``"present"`` or an integer array of class ids.
    sampling: Grid spacing of the spatial axes: one positive number or one
      per spatial axis. Default 1.
    activation: None, ``"softmax"`` or ``"sigmoid"``: the first argument
      holds logits; see :func:`dice_loss`.

  Returns:
    The loss with the pooled axes and the class axis removed (a scalar by
    default), float32 (float64 for float64 probabilities).

  Convention:
    :math:`d` is the distance field of MONAI's ``HausdorffDTLoss``: inside a
    region the distance to the nearest pixel outside it, outside the
    distance to the region, so it is at least 1 everywhere but 0 nowhere. In
    an image where a region is empty or fills the image there is no
    boundary and its field is 0. The fields are constants (the threshold has
    no gradient); the gradient is :math:`2 (p - t) (d_p^\alpha +
    d_t^\alpha) / N`. A masked pixel adds nothing to the value or the
    gradient and counts as outside every region in both fields.
    ``alpha=0`` gives twice the mean squared error.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Region = pixels 1..3 in both: d = (1, 1, 2, 1, 1) for p and t;
    >>> # mean of (p - t)^2 * 2 d^2 = 2 (0.04 + 0.01 + 0 + 0.04 + 0.01) / 5.
    >>> target = jnp.array([[0.0, 1.0, 1.0, 1.0, 0.0]])[..., None]
    >>> probs = jnp.array([[0.2, 0.9, 1.0, 0.8, 0.1]])[..., None]
    >>> jaxloss.hausdorff_dt_loss(probs, target)
    Array(0.04, dtype=float32)

  References:
    Karimi, Salcudean, "Reducing the Hausdorff Distance in Medical Image
    Segmentation with Convolutional Neural Networks", IEEE TMI 2019.
    https://arxiv.org/abs/1904.10030
  """
  return _hausdorff_dt(
    "hausdorff_dt_loss",
    probs,
    labels,
    alpha,
    axis,
    where,
    classes,
    sampling,
    activation,
  )


def _hausdorff_dt(
  fn, probs, labels, alpha, axis, where, classes, sampling, activation
):
  _checks.nonnegative(fn, "alpha", alpha)
  p, t, inside, mask, axes = _inputs(fn, probs, labels, axis, where, activation)
  predicted = lax.stop_gradient(p) > 0.5
  num_classes = p.shape[-1]
  outside, within, split = _sides(
    fn, jnp.concatenate([inside, predicted], axis=-1), sampling, p.dtype
  )
  field = jnp.where(split, outside + within, 0)
  field = _numerics.power(field, alpha)
  weight = field[..., :num_classes] + field[..., num_classes:]
  return _pixel_mean(fn, (p - t) ** 2 * weight, t, mask, axes, classes)


def log_hausdorff_dt_loss(
  probs: ArrayLike,
  labels: ArrayLike,
  *,
  alpha: float = 2.0,
  axis: Axis = None,
  where: ArrayLike | None = None,
  classes: Classes = "all",
  sampling: Sampling = None,
  activation: Activation = None,
) -> jax.Array:
  r"""Logarithm of the Hausdorff-DT loss: :math:`\log(1 + \ell_{HD})`.

  .. math::
    \ell = \log\left(1 + \ell_{HD}\right),

  :math:`\ell_{HD}` the value of :func:`hausdorff_dt_loss` with the same
  arguments (pooled and averaged over the selected classes). The log damps
  the large values of the distance-weighted loss early in training; the
  gradient is that of :func:`hausdorff_dt_loss` divided by
  :math:`1 + \ell_{HD}`.

  Args:
    probs: Probabilities ``[B, *spatial, C]``, channels last, or logits
      with ``activation``.
    labels: Integer class ids ``[B, *spatial]``, or targets of the shape of
      ``probs``.
    alpha: Exponent :math:`\alpha \ge 0` of the distances.
    axis: Axes the mean is pooled over; default every axis but the class
      axis. ``axis=(1, 2)`` on ``[B, H, W, C]`` gives one loss per image.
    where: Optional boolean mask ``[B, *spatial]`` of valid pixels, or
      ``[B, *spatial, C]`` of valid (pixel, class) entries.
    classes: ``"all"``, ``"present"`` or an integer array of class ids.
    sampling: Grid spacing of the spatial axes: one positive number or one
      per spatial axis. Default 1.
    activation: None, ``"softmax"`` or ``"sigmoid"``: the first argument
      holds logits; see :func:`dice_loss`.

  Returns:
    The loss with the pooled axes and the class axis removed (a scalar by
    default), float32 (float64 for float64 probabilities).

  Convention:
    The log is taken of the reduced loss, once per output element, after
    the pooling and the class mean, as MONAI's ``LogHausdorffDTLoss`` takes
    ``log(HausdorffDTLoss(...) + 1)`` of its reduced value: with its default
    ``reduction="mean"`` and the same classes (MONAI drops the background
    by default: ``classes=jnp.arange(1, C)``) the two agree. It is not the
    mean of per-class logs; MONAI's ``reduction="none"`` takes the log per
    image and class instead. Everything else is :func:`hausdorff_dt_loss`'s
    convention.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # The strip of hausdorff_dt_loss: log(1 + 0.04).
    >>> target = jnp.array([[0.0, 1.0, 1.0, 1.0, 0.0]])[..., None]
    >>> probs = jnp.array([[0.2, 0.9, 1.0, 0.8, 0.1]])[..., None]
    >>> jaxloss.log_hausdorff_dt_loss(probs, target)
    Array(0.03922071, dtype=float32)

  References:
    Karimi, Salcudean, "Reducing the Hausdorff Distance in Medical Image
    Segmentation with Convolutional Neural Networks", IEEE TMI 2019.
    https://arxiv.org/abs/1904.10030
  """
  return jnp.log1p(
    _hausdorff_dt(
      "log_hausdorff_dt_loss",
      probs,
      labels,
      alpha,
      axis,
      where,
      classes,
      sampling,
      activation,
    )
  )


def _cross_mean(x: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
  """Mean of each pixel and its neighbours along each axis (0 past the
  border): the convolution with the normalised cross."""
  weight = 1 / (2 * len(spatial) + 1)
  return functools.reduce(
    jnp.add, [weight * v for v in _neighbours(x, spatial, 0)]
  )


def hausdorff_er_loss(
  probs: ArrayLike,
  labels: ArrayLike,
  *,
  alpha: float = 2.0,
  erosions: int = 10,
  axis: Axis = None,
  where: ArrayLike | None = None,
  classes: Classes = "all",
  activation: Activation = None,
) -> jax.Array:
  r"""Hausdorff distance loss from soft erosions (Karimi & Salcudean).

  Per image and class, the squared error :math:`f_0 = (p - t)^2` is eroded
  :math:`K` times by the cross :math:`B` (the pixel and its two neighbours
  along each spatial axis, each weighing :math:`1 / (2d + 1)` in :math:`d`
  dimensions, 0 past the border), each time thresholded and rescaled to
  :math:`[0, 1]`:

  .. math::
    g_k = \max(f_{k-1} * B - \tfrac{1}{2},\ 0),\qquad
    f_k = \frac{g_k - \min g_k}{\max g_k - \min g_k},\qquad
    \ell_c = \frac{1}{N} \sum_i \sum_{k=1}^{K} k^{\alpha} f_k(x_i),

  the min and max over the image (:math:`f_k = g_k` where they are equal),
  :math:`N` the number of pooled valid pixels; the loss is the mean of
  :math:`\ell_c` over the selected classes. An error survives :math:`k`
  erosions when it is about :math:`k` pixels deep, so deep (far from
  boundary) errors weigh :math:`k^\alpha`, as the Hausdorff distance does.

  Args:
    probs: Probabilities ``[B, *spatial, C]`` (one or more spatial axes),
      channels last, or logits with ``activation``.
    labels: Integer class ids ``[B, *spatial]``, or targets of the shape of
      ``probs`` (used as given in the squared error).
    alpha: Exponent :math:`\alpha \ge 0` of the erosion count (the paper's
      2).
    erosions: :math:`K \ge 0`, the number of erosions (the paper's 10).
    axis: Axes the mean is pooled over; default every axis but the class
      axis. ``axis=(1, 2)`` on ``[B, H, W, C]`` gives one loss per image.
      The erosions are per image either way.
    where: Optional boolean mask ``[B, *spatial]`` of valid pixels, or
      ``[B, *spatial, C]`` of valid (pixel, class) entries.
    classes: ``"all"``, ``"present"`` or an integer array of class ids.
    activation: None, ``"softmax"`` or ``"sigmoid"``: the first argument
      holds logits; see :func:`dice_loss`.

  Returns:
    The loss with the pooled axes and the class axis removed (a scalar by
    default), float32 (float64 for float64 probabilities).

  Convention:
    Equals kornia's ``HausdorffERLoss`` (2-D) and ``HausdorffERLoss3D``
    (3-D) with ``k=erosions`` and ``reduction="mean"``: for their
    ``pred`` ``[B, C, *spatial]`` and integer ``target`` ``[B, 1,
    *spatial]``, ``hausdorff_er_loss(jnp.moveaxis(pred, 1, -1),
    target[:, 0])`` (kornia takes ``pred`` as given; pass probabilities).
    Other spatial ranks use the same cross. As in kornia nothing is
    detached: the gradient flows through every erosion, threshold and
    rescaling, its min and max included; where several pixels share the
    image's min or max the gradient is split among them (kornia's pooling
    gives it to one), and an image whose eroded map is constant is left as
    it is with finite gradients (kornia's division gives NaN there when
    another image in the batch is rescaled). A masked pixel counts as a
    pixel past the border: its error is 0 at every erosion, it takes no
    part in the min and max, and it leaves the mean.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # A 3 x 3 image wrong everywhere: the first erosion leaves
    >>> # (0, .5, 0 / .5, 1, .5 / 0, .5, 0) (sum 3), the second the centre
    >>> # (weight 2^2), the third nothing: (3 + 4) / 9.
    >>> probs = jnp.ones((1, 3, 3, 1))
    >>> jaxloss.hausdorff_er_loss(probs, jnp.zeros_like(probs))
    Array(0.7777778, dtype=float32)

  References:
    Karimi, Salcudean, "Reducing the Hausdorff Distance in Medical Image
    Segmentation with Convolutional Neural Networks", IEEE TMI 2019.
    https://arxiv.org/abs/1904.10030
  """
  fn = "hausdorff_er_loss"
  alpha = _checks.nonnegative(fn, "alpha", alpha)
  erosions = _count(fn, "erosions", erosions)
  p, t, _, mask, axes = _inputs(fn, probs, labels, axis, where, activation)
  spatial = tuple(range(1, p.ndim - 1))
  valid = True if mask is None else mask
  exponent = jnp.asarray(alpha, p.dtype)

  def erode(k, carry):
    error, total = carry
    eroded = _cross_mean(error, spatial) - 0.5
    eroded = jnp.where(valid, jnp.where(eroded < 0, 0, eroded), 0)
    high = jnp.max(
      jnp.where(valid, eroded, -jnp.inf), axis=spatial, keepdims=True
    )
    low = jnp.min(
      jnp.where(valid, eroded, jnp.inf), axis=spatial, keepdims=True
    )
    spread = high > low
    scaled = (eroded - low) / jnp.where(spread, high - low, 1)
    eroded = jnp.where(valid & spread, scaled, eroded)
    weight = jnp.asarray(k + 1, p.dtype) ** exponent
    return eroded, total + weight * eroded

  init = ((p - t) ** 2, jnp.zeros_like(p))
  total = lax.fori_loop(0, erosions, erode, init)[1]
  return _pixel_mean(fn, total, t, mask, axes, classes)


def _neighbours(x: jax.Array, axes: tuple[int, ...], fill) -> list[jax.Array]:
  """``x`` and its two neighbours along each axis (``fill`` past the border).

  The neighbours are slices of one copy of ``x`` padded along every axis.
  """
  widths = [(0, 0)] * x.ndim
  for axis in axes:
    widths[axis] = (1, 1)
  padded = jnp.pad(x, widths, constant_values=fill)
  inner = [slice(None)] * x.ndim
  for axis in axes:
    inner[axis] = slice(1, x.shape[axis] + 1)
  out = [x]
  for axis in axes:
    for start in (0, 2):
      index = list(inner)
      index[axis] = slice(start, start + x.shape[axis])
      out.append(padded[tuple(index)])
  return out


def _winner(x: jax.Array, axes: tuple[int, ...], largest: bool) -> jax.Array:
  """Which of ``_neighbours(x, axes, ...)`` holds the max (min) of each pixel.

  ``uint8`` positions in that list; on a tie the pixel itself, then the first
  neighbour in the list.
  """
  values = _neighbours(x, axes, -jnp.inf if largest else jnp.inf)
  best, winner = values[0], jnp.zeros(x.shape, jnp.uint8)
  for n, value in enumerate(values[1:], 1):
    wins = value > best if largest else value < best
    best = jnp.where(wins, value, best)
    winner = jnp.where(wins, jnp.uint8(n), winner)
  return winner


def _select(winner: jax.Array, t: jax.Array, axes: tuple[int, ...]):
  """The tangent of the winning neighbour of each pixel (0 past the border)."""
  return lax.select_n(winner, *_neighbours(t, axes, 0))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _extreme(x: jax.Array, axes: tuple[int, ...], largest: bool) -> jax.Array:
  """Max (``largest``) or min of each pixel and its neighbours along ``axes``.

  The derivative is written as a selection: the tangent of the winning
  neighbour (:func:`_winner`). It is linear in the tangent, so reverse mode
  transposes it into pads and slices of the cotangent; autodiff through
  chains of ``maximum`` would keep a mask a comparison.
  """
  op = jnp.maximum if largest else jnp.minimum
  return functools.reduce(
    op, _neighbours(x, axes, -jnp.inf if largest else jnp.inf)
  )


@_extreme.defjvp
def _extreme_jvp(axes, largest, primals, tangents):
  (x,), (t,) = primals, tangents
  return _extreme(x, axes, largest), _select(_winner(x, axes, largest), t, axes)


def _erode(x: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
  """Soft erosion: the minimum over the 3-wide cross of each pixel."""
  return _extreme(x, spatial, False)


def _dilate(x: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
  """Soft dilation: the maximum over the 3 x 3 (x 3) box of each pixel."""
  for axis in spatial:
    x = _extreme(x, (axis,), True)
  return x


def _thin(skeleton: jax.Array, delta: jax.Array) -> jax.Array:
  """One update of the skeleton by the residue of an opening."""
  return skeleton + jax.nn.relu(delta - skeleton * delta)


def _opening_residue(x: jax.Array, spatial: tuple[int, ...]):
  """``(E(x), relu(x - D(E(x))))``: one erosion and the residue of the
  opening."""
  eroded = _erode(x, spatial)
  return eroded, jax.nn.relu(x - _dilate(eroded, spatial))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _skeleton(x: jax.Array, iterations: int) -> jax.Array:
  """Soft skeleton of ``[B, *spatial, C]`` maps (see :func:`soft_skeleton`).

  Step ``k = 0..K`` erodes ``e_k = E(e_{k-1})`` (``e_{-1} = x``), takes the
  residue of the opening ``delta_k = relu(e_{k-1} - D(e_k))`` and folds it
  into the skeleton, ``s_0 = delta_0``, ``s_k = s_{k-1} + relu(delta_k -
  s_{k-1} delta_k)``.
  """
  spatial = tuple(range(1, x.ndim - 1))
  eroded, skeleton = _opening_residue(x, spatial)

  def step(_, carry):
    eroded, skeleton = carry
    eroded, delta = _opening_residue(eroded, spatial)
    return eroded, _thin(skeleton, delta)

  # A loop, not an unrolled chain: one compiled body whatever the count.
  return lax.fori_loop(0, iterations, step, (eroded, skeleton))[1]


@_skeleton.defjvp
def _skeleton_jvp(iterations, primals, tangents):
  """The skeleton, and its tangent from each step's residue and winners.

  Reverse mode keeps one float and one byte a pixel a step: the residue
  ``delta_k`` and a code of the winners of the step's erosion and of each
  pass of its dilation (mixed radix). Autodiff through the loop would keep
  every pooling's masks and the loop's carries.
  """
  (x,), (dx,) = primals, tangents
  spatial = tuple(range(1, x.ndim - 1))
  radix = 2 * len(spatial) + 1
  code_dtype = jnp.uint8 if radix * 3 ** len(spatial) <= 256 else jnp.int32

  def step(carry, k):
    previous, skeleton = carry
    code = _winner(previous, spatial, False).astype(code_dtype)
    eroded = opened = _erode(previous, spatial)
    scale = radix
    for axis in spatial:
      winner = _winner(opened, (axis,), True).astype(code_dtype)
      code = code + winner * code_dtype(scale)
      opened = _extreme(opened, (axis,), True)
      scale *= 3
    delta = jax.nn.relu(previous - opened)
    skeleton = jnp.where(k == 0, delta, _thin(skeleton, delta))
    return (eroded, skeleton), (delta, code)

  (_, skeleton), (deltas, codes) = lax.scan(
    step, (x, jnp.zeros_like(x)), jnp.arange(iterations + 1)
  )
  return skeleton, _skeleton_tangent(spatial, deltas, codes, dx)


def _skeleton_weight(deltas: jax.Array, k: jax.Array) -> jax.Array:
  """Derivative of the final skeleton in ``delta_k`` times ``delta_k``'s relu.

  The updates ``s_j = s_{j-1} + relu(u_j)``, ``u_j = delta_j - s_{j-1}
  delta_j`` are pointwise, so it is ``[u_k > 0] (1 - s_{k-1})`` times
  ``1 - [u_j > 0] delta_j`` for each later step ``j`` (``s_{-1} = 0``, where
  ``u_0 > 0`` is the relu of ``delta_0``). Recomputed from the residues, one
  pointwise pass a step.
  """

  def step(j, carry):
    skeleton, weight = carry
    delta = deltas[j]
    grows = delta - skeleton * delta > 0
    here = jnp.where(grows, 1 - skeleton, 0)
    later = jnp.where(grows, 1 - delta, 1)
    weight = weight * jnp.where(j < k, 1, jnp.where(j == k, here, later))
    skeleton = jnp.where(j == 0, delta, _thin(skeleton, delta))
    return skeleton, weight

  init = (jnp.zeros_like(deltas[0]), jnp.ones_like(deltas[0]))
  return lax.fori_loop(0, deltas.shape[0], step, init)[1]


def _skeleton_tangent(spatial, deltas, codes, dx):
  """Tangent of the skeleton, linear in ``dx``: ``sum_k w_k (d e_{k-1} -
  D'_k d e_k)`` with ``d e_k = E'_k d e_{k-1}`` (the selections of the step's
  winners) and ``w_k`` from :func:`_skeleton_weight`.

  Each step is rematerialised from ``k``: reverse mode keeps the residues and
  codes, and recomputes the weights and masks on its way back.
  """
  radix = 2 * len(spatial) + 1

  def step(carry, k):
    d_previous, d_skeleton = carry
    code = codes[k]
    d_eroded = _select(code % radix, d_previous, spatial)
    d_opened, code = d_eroded, code // radix
    for axis in spatial:
      d_opened = _select(code % 3, d_opened, (axis,))
      code = code // 3
    weight = _skeleton_weight(deltas, k)
    d_skeleton = d_skeleton + weight * (d_previous - d_opened)
    return (d_eroded, d_skeleton), None

  step = jax.checkpoint(step, prevent_cse=False)
  init = (dx, jnp.zeros_like(dx))
  return lax.scan(step, init, jnp.arange(deltas.shape[0]))[0][1]


def _count(fn: str, name: str, value) -> int:
  """A Python or NumPy integer option ``>= 0`` (a loop count)."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(
    value, (int, np.integer)
  ):
    _checks.fail(fn, f"{name} must be an int, got {value!r}", TypeError)
  if value < 0:
    _checks.fail(fn, f"{name} must be >= 0, got {value}")
  return int(value)


def soft_skeleton(probs: ArrayLike, *, iterations: int = 3) -> jax.Array:
  r"""Soft skeleton of probability maps by iterated min / max pooling.

  With :math:`E` the soft erosion (minimum over the 3-wide cross of each
  pixel, one arm a spatial axis), :math:`D` the soft dilation (maximum over
  the 3 × 3 or 3 × 3 × 3 box) and :math:`O = D \circ E` the opening, starting
  from :math:`x_0 = p`,

  .. math::
    s_0 = \mathrm{relu}(x_0 - O(x_0)),\quad
    x_{k} = E(x_{k-1}),\quad
    \delta_k = \mathrm{relu}(x_k - O(x_k)),\quad
    s_k = s_{k-1} + \mathrm{relu}(\delta_k - s_{k-1} \delta_k),

  and the skeleton is :math:`s_K`, :math:`K` = ``iterations``.

  Args:
    probs: Probabilities ``[B, *spatial, C]`` (1, 2 or 3 spatial axes),
      channels last; each image and channel is skeletonized on its own.
    iterations: :math:`K \ge 0`, the number of erosions: a structure thicker
      than about :math:`2K + 1` pixels is not thinned to a line.

  Returns:
    The skeleton, of the shape and dtype of ``probs``, in ``[0, 1]`` for
    probabilities.

  Convention:
    Pooling windows are clipped at the image border (as zero-padded
    ``max_pool`` with ``-inf`` padding in the authors' code): the border does
    not erode. Differentiable almost everywhere; at a tie of a min or max
    the gradient goes to one of the tied pixels. The derivative is written
    out (forward and reverse mode, any order): reverse mode keeps one float
    and one byte a pixel an iteration, not the loop's intermediate maps.
    Computed in float32 for bf16/fp16 input and cast back.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # A bar three pixels thick: its skeleton is the middle row.
    >>> bar = jnp.zeros((1, 5, 5, 1)).at[0, 1:4, :, 0].set(1.0)
    >>> jaxloss.soft_skeleton(bar)[0, :, :, 0]
    Array([[0., 0., 0., 0., 0.],
           [0., 0., 0., 0., 0.],
           [1., 1., 1., 1., 1.],
           [0., 0., 0., 0., 0.],
           [0., 0., 0., 0., 0.]], dtype=float32)

  References:
    Shit, Paetzold, Sekuboyina, Ezhov, Unger, Zhylka, Pluim, Bauer, Menze,
    "clDice - a Novel Topology-Preserving Loss Function for Tubular Structure
    Segmentation", CVPR 2021. https://arxiv.org/abs/2003.07311
  """
  fn = "soft_skeleton"
  iterations = _count(fn, "iterations", iterations)
  probs = _checks.as_float(fn, "probs", probs)
  _spatial(fn, "probs", probs)
  _checks.debug_unit_interval(fn, "probs", probs)
  x = probs.astype(_numerics.accum_dtype(probs.dtype))
  return _skeleton(x, iterations).astype(probs.dtype)


def cldice_loss(
  probs: ArrayLike,
  labels: ArrayLike,
  *,
  iterations: int = 3,
  smooth: float = 1.0,
  axis: Axis = None,
  where: ArrayLike | None = None,
  classes: Classes = "all",
  activation: Activation = None,
) -> jax.Array:
  r"""Soft clDice loss (Shit et al.): topology precision and sensitivity.

  Per class, with :math:`S_p`, :math:`S_t` the soft skeletons
  (:func:`soft_skeleton`) of the probabilities and of the targets, summed
  over the pooled valid pixels,

  .. math::
    T_{prec} = \frac{\sum S_p\, t + s}{\sum S_p + s},\quad
    T_{sens} = \frac{\sum S_t\, p + s}{\sum S_t + s},\quad
    \ell_c = 1 - \frac{2\, T_{prec}\, T_{sens}}{T_{prec} + T_{sens}},

  and the loss is the mean of :math:`\ell_c` over the selected classes.
  :math:`T_{prec}`: how much of the predicted skeleton lies in the target;
  :math:`T_{sens}`: how much of the target skeleton is covered.

  Args:
    probs: Probabilities ``[B, *spatial, C]``, channels last, or logits
      with ``activation``.
    labels: Integer class ids ``[B, *spatial]`` or targets of the shape of
      ``probs`` (skeletonized as given, soft targets included).
    iterations: Erosions of :func:`soft_skeleton`; at least the half width
      of the thickest structure.
    smooth: :math:`s \ge 0`, added to the numerators and denominators.
    axis: Axes the sums are pooled over; default every axis but the class
      axis. ``axis=(1, 2)`` on ``[B, H, W, C]`` gives one loss per image.
      The skeletons are per image either way.
    where: Optional boolean mask ``[B, *spatial]`` of valid pixels, or
      ``[B, *spatial, C]`` of valid (pixel, class) entries.
    classes: ``"all"``, ``"present"`` or an integer array of class ids.
    activation: None, ``"softmax"`` or ``"sigmoid"``: the first argument
      holds logits; see :func:`dice_loss`.

  Returns:
    The loss with the pooled axes and the class axis removed (a scalar by
    default), float32 (float64 for float64 probabilities).

  Convention:
    With ``smooth=0``, an empty skeleton gives a ratio of 1 (no predicted
    skeleton: nothing lies outside the target; no target skeleton: nothing
    to cover), so an empty prediction of an empty target has loss 0, and
    :math:`T_{prec} = T_{sens} = 0` gives loss 1; gradients stay finite. A
    masked pixel is 0 in both skeletons' inputs and leaves the sums.
    ``classes="all"`` includes the background; the authors' code drops the
    first channel (``classes=jnp.arange(1, C)``) and pools every class into
    one ratio. The paper trains with ``(1 - a) * dice + a * cldice``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Target: a bar 3 pixels thick, 5 long; the prediction covers the
    >>> # first 3 columns of it. Its skeleton lies in the target (T_prec = 1)
    >>> # and covers 3 of the 5 target-skeleton pixels (T_sens = 0.6).
    >>> target = jnp.zeros((1, 5, 5, 1)).at[0, 1:4, :, 0].set(1.0)
    >>> probs = target.at[0, :, 3:, 0].set(0.0)
    >>> jaxloss.cldice_loss(probs, target, smooth=0.0)  # 1 - 1.2 / 1.6
    Array(0.25, dtype=float32)

  References:
    Shit, Paetzold, Sekuboyina, Ezhov, Unger, Zhylka, Pluim, Bauer, Menze,
    "clDice - a Novel Topology-Preserving Loss Function for Tubular Structure
    Segmentation", CVPR 2021. https://arxiv.org/abs/2003.07311
  """
  fn = "cldice_loss"
  iterations = _count(fn, "iterations", iterations)
  _checks.nonnegative(fn, "smooth", smooth)
  p, t, _, _, axes = _inputs(fn, probs, labels, axis, where, activation)
  skel_p = _skeleton(p, iterations)
  skel_t = _skeleton(t, iterations)
  prec = _numerics.safe_div(
    jnp.sum(skel_p * t, axis=axes) + smooth,
    jnp.sum(skel_p, axis=axes) + smooth,
    1,
  )
  sens = _numerics.safe_div(
    jnp.sum(skel_t * p, axis=axes) + smooth,
    jnp.sum(skel_t, axis=axes) + smooth,
    1,
  )
  per_class = 1 - _numerics.safe_div(2 * prec * sens, prec + sens, 0)
  return _region.class_mean(fn, per_class, jnp.sum(t, axis=axes), classes, None)
