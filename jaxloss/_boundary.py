"""Boundary- and topology-aware losses: boundary loss, Hausdorff-DT loss, clDice.

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
  fn = "hausdorff_dt_loss"
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


def _neighbours(x: jax.Array, axes: tuple[int, ...], fill) -> list[jax.Array]:
  """``x`` and its two neighbours along each axis (``fill`` past the border)."""
  out = [x]
  for axis in axes:
    n = x.shape[axis]
    widths = [(0, 0)] * x.ndim
    widths[axis] = (1, 1)
    padded = jnp.pad(x, widths, constant_values=fill)
    out += [
      lax.slice_in_dim(padded, 0, n, axis=axis),
      lax.slice_in_dim(padded, 2, n + 2, axis=axis),
    ]
  return out


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _extreme(x: jax.Array, axes: tuple[int, ...], largest: bool) -> jax.Array:
  """Max (``largest``) or min of each pixel and its neighbours along ``axes``.

  The derivative is written as a selection: the tangent of the winning
  neighbour (the pixel itself on a tie, then the first neighbour). It is
  linear in the tangent, so reverse mode transposes it into pads and slices
  of the cotangent; autodiff through chains of ``maximum`` would keep a mask
  a comparison.
  """
  op = jnp.maximum if largest else jnp.minimum
  return functools.reduce(
    op, _neighbours(x, axes, -jnp.inf if largest else jnp.inf)
  )


@_extreme.defjvp
def _extreme_jvp(axes, largest, primals, tangents):
  (x,), (t,) = primals, tangents
  values = _neighbours(x, axes, -jnp.inf if largest else jnp.inf)
  slopes = _neighbours(t, axes, 0)
  best, slope = values[0], slopes[0]
  for value, other in zip(values[1:], slopes[1:]):
    wins = value > best if largest else value < best
    best = jnp.where(wins, value, best)
    slope = jnp.where(wins, other, slope)
  return _extreme(x, axes, largest), slope


def _erode(x: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
  """Soft erosion: the minimum over the 3-wide cross of each pixel."""
  return _extreme(x, spatial, False)


def _dilate(x: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
  """Soft dilation: the maximum over the 3 x 3 (x 3) box of each pixel."""
  for axis in spatial:
    x = _extreme(x, (axis,), True)
  return x


def _skeleton(x: jax.Array, iterations: int) -> jax.Array:
  spatial = tuple(range(1, x.ndim - 1))
  eroded = _erode(x, spatial)
  skeleton = jax.nn.relu(x - _dilate(eroded, spatial))

  def thin(_, carry):
    x, eroded, skeleton = carry
    x, eroded = eroded, _erode(eroded, spatial)
    delta = jax.nn.relu(x - _dilate(eroded, spatial))
    return x, eroded, skeleton + jax.nn.relu(delta - skeleton * delta)

  # A loop, not an unrolled chain: one compiled body whatever the count.
  return lax.fori_loop(0, iterations, thin, (x, eroded, skeleton))[2]


def _iterations(fn: str, iterations) -> int:
  if isinstance(iterations, (bool, np.bool_)) or not isinstance(
    iterations, (int, np.integer)
  ):
    _checks.fail(
      fn, f"iterations must be an int, got {iterations!r}", TypeError
    )
  if iterations < 0:
    _checks.fail(fn, f"iterations must be >= 0, got {iterations}")
  return int(iterations)


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
    the gradient goes to one of the tied pixels. Computed in float32 for
    bf16/fp16 input and cast back.

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
  iterations = _iterations(fn, iterations)
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
  iterations = _iterations(fn, iterations)
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
