"""Detection heads: heatmaps, keypoints and long-tail classes.

CenterNet's penalty-reduced focal loss on Gaussian heatmaps
(:func:`gaussian_focal_loss`), YOLO-pose's keypoint loss, one minus the
object keypoint similarity (:func:`keypoint_oks_loss`, with COCO's keypoint
sigmas in ``COCO_KEYPOINT_SIGMAS``), and two classification losses that
re-weight their terms from statistics of the data: Seesaw for long-tailed
classes (:func:`seesaw_loss`) and the gradient-harmonized GHM-C
(:func:`ghm_classification_loss`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss import _focal
from jaxloss import _numerics

#: The 17 per-keypoint constants :math:`\sigma_k` of COCO's person keypoints,
#: in COCO's order: nose, left and right eye, ear, shoulder, elbow, wrist,
#: hip, knee and ankle (left before right): the spread of human annotators'
#: placements of each keypoint relative to the object's scale, measured by
#: COCO on redundantly annotated images and used by its keypoint evaluation.
#: Pass them as ``sigmas=`` to :func:`keypoint_oks_loss` for COCO's 17
#: keypoints. A tuple of Python floats, so it cannot be changed in place.
COCO_KEYPOINT_SIGMAS: tuple[float, ...] = (
  0.026,
  0.025,
  0.025,
  0.035,
  0.035,
  0.079,
  0.079,
  0.072,
  0.072,
  0.062,
  0.062,
  0.107,
  0.107,
  0.087,
  0.087,
  0.089,
  0.089,
)


def _sigmoid_power(log_s: jax.Array, s: jax.Array, exponent) -> jax.Array:
  """``s ** exponent`` for a sigmoid ``s`` with ``log(s) = log_s``: products
  for a whole exponent, else ``exp(exponent * log_s)`` (finite gradients for
  ``exponent < 1`` where ``s`` underflows)."""
  if _numerics.is_whole(exponent):
    return lax.integer_pow(s, int(exponent))
  return jnp.exp(exponent * log_s)


def gaussian_focal_loss(
  logits: ArrayLike,
  heatmap: ArrayLike,
  *,
  alpha: float = 2.0,
  gamma: float = 4.0,
  where: ArrayLike | None = None,
) -> jax.Array:
  r"""Penalty-reduced focal loss on a Gaussian heatmap (CornerNet, CenterNet).

  With :math:`p = \sigma(x)` and a heatmap target :math:`y \in [0, 1]`
  (1 at the object centres, a Gaussian bump around each, 0 far away),

  .. math::
    \ell = \begin{cases}
      -(1 - p)^\alpha \log p & y = 1, \\
      -(1 - y)^\gamma \, p^\alpha \log(1 - p) & \text{otherwise.}
    \end{cases}

  Only the peaks are positives; every other location is a negative whose
  penalty is reduced by :math:`(1 - y)^\gamma` near a peak, so a prediction
  one pixel off costs little.

  Args:
    logits: Float logits of any shape, e.g. ``[B, H, W, C]`` (one heatmap a
      class, channels last).
    heatmap: Targets of the same shape, in ``[0, 1]``; exactly 1 at the
      peaks (the positives).
    alpha: Focusing exponent of the prediction, ``>= 0``; the papers use 2.
    gamma: Exponent of the penalty reduction of the negatives, ``>= 0``; the
      papers use 4.
    where: Optional boolean mask broadcastable to ``logits.shape``; masked
      entries return 0.

  Returns:
    The loss of each element, shape ``logits.shape``, in float32 (float64 for
    float64 logits). Reduce it yourself: the papers divide the sum by the
    number of positives, ``loss.sum() / max(num_pos, 1)``.

  Convention:
    Takes **logits**, as every log-space loss here: mmdetection's
    ``gaussian_focal_loss`` takes probabilities and adds ``eps=1e-12``
    inside its logarithms; here :math:`\log p = -\mathrm{sp}(-x)`,
    :math:`\log(1 - p) = -\mathrm{sp}(x)`, :math:`(1 - p)^\alpha =
    \sigma(-x)^\alpha` and :math:`p^\alpha = \sigma(x)^\alpha` are formed
    from one ``exp`` without cancellation (a whole ``alpha`` as a product,
    any other as :math:`e^{\alpha \log \sigma}`), so logits of
    :math:`\pm 10^4` give finite values and gradients and saturated logits
    keep their relative accuracy (at ``x = 17`` a positive's loss is about
    :math:`10^{-22}`, not 0). A positive is an entry equal to 1; a heatmap
    drawn in bf16 or through a resize should set its peaks to exactly 1.
    The loss is differentiated with respect to the logits and the heatmap
    (pass a heatmap without gradient). Masked entries carry no gradient,
    even with ``inf`` or NaN logits. Targets outside [0, 1] are reported
    under ``checkify`` inside :func:`jaxloss.value_checks`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # p = 1/2: the peak costs (1/2)^2 log 2, a negative at y = 1/2
    >>> # (1/2)^4 (1/2)^2 log 2, one at y = 0 (1/2)^2 log 2.
    >>> heatmap = jnp.array([1.0, 0.5, 0.0])
    >>> loss = jaxloss.gaussian_focal_loss(jnp.zeros(3), heatmap)
    >>> loss
    Array([0.1732868 , 0.01083042, 0.1732868 ], dtype=float32)
    >>> num_pos = jnp.sum(heatmap == 1, dtype=jnp.float32)
    >>> loss.sum() / jnp.maximum(num_pos, 1)
    Array(0.357404, dtype=float32)

  References:
    Law, Deng, "CornerNet: Detecting Objects as Paired Keypoints", ECCV 2018.
    https://arxiv.org/abs/1808.01244

    Zhou, Wang, Krähenbühl, "Objects as Points", 2019.
    https://arxiv.org/abs/1904.07850
  """
  fn = "gaussian_focal_loss"
  alpha = _checks.nonnegative(fn, "alpha", alpha)
  gamma = _checks.nonnegative(fn, "gamma", gamma)
  x, y, mask = _focal.elementwise_inputs(
    fn, logits, heatmap, where, name="heatmap"
  )
  sig = _focal.sigmoid_terms(x, differentiable=True)
  log_p = sig.log_sigmoid(x)
  log_not_p = sig.log_sigmoid_neg(x)
  positive = -_sigmoid_power(log_not_p, sig.s_neg, alpha) * log_p
  negative = (
    -_numerics.power(1 - y, gamma)
    * _sigmoid_power(log_p, sig.s, alpha)
    * log_not_p
  )
  loss = jnp.where(y == 1, positive, negative)
  if mask is not None:
    loss = jnp.where(mask, loss, 0)
  return loss


# Added to the area as COCO's evaluation does (NumPy's spacing(1)): a set of
# area 0 has similarity 0 at every displaced keypoint instead of NaN.
_AREA_EPS = float(np.spacing(1))


def _real(fn: str, name: str, x) -> jax.Array:
  x = jnp.asarray(x)
  if not (
    jnp.issubdtype(x.dtype, jnp.floating)
    or jnp.issubdtype(x.dtype, jnp.integer)
  ):
    _checks.fail(
      fn, f"{name} must be real numbers, got dtype {x.dtype}", TypeError
    )
  return x


def _broadcasts_to(
  fn: str, name: str, x: jax.Array, shape, what: str
) -> jax.Array:
  """``x`` broadcast to ``shape`` (never growing it), or a named error."""
  try:
    ok = np.broadcast_shapes(x.shape, shape) == tuple(shape)
  except ValueError:
    ok = False
  if not ok:
    _checks.fail(
      fn,
      f"{name}.shape {x.shape} must broadcast to {what} {tuple(shape)}",
    )
  return jnp.broadcast_to(x, shape)


def keypoint_oks_loss(
  pred: ArrayLike,
  target: ArrayLike,
  *,
  visible: ArrayLike,
  area: ArrayLike,
  sigmas: ArrayLike,
) -> jax.Array:
  r"""One minus the object keypoint similarity (OKS) of a keypoint set.

  With keypoints :math:`k = 1, \dots, K`, squared distances
  :math:`d_k^2 = \|\hat z_k - z_k\|^2` between predicted and target
  coordinates, the object's scale :math:`s^2` (its area), the per-keypoint
  constant :math:`\kappa_k = 2 \sigma_k` and visibility weights
  :math:`v_k \ge 0`,

  .. math::
    \ell = 1 - \mathrm{OKS}
         = \frac{\sum_k v_k \big(1 - e^{-d_k^2 / (2 s^2 \kappa_k^2)}\big)}
                {\sum_k v_k} ,

  COCO's keypoint similarity averaged over the visible keypoints; a set
  without a visible keypoint has loss 0.

  Args:
    pred: Predicted keypoints ``[..., K, 2]``, (x, y) on the last axis.
    target: Target keypoints, the same shape and units.
    visible: Which keypoints count, ``[..., K]`` (broadcastable to
      ``pred.shape[:-1]``): booleans (COCO's visibility flag ``v > 0``) or
      float weights ``>= 0``.
    area: The object's area :math:`s^2` in squared coordinate units,
      ``[...]`` (broadcastable to ``pred.shape[:-2]``), ``> 0``. COCO uses
      the segment's area; YOLO-pose the box's ``w * h``.
    sigmas: Per-keypoint constants :math:`\sigma_k`, ``[K]``, ``> 0``;
      ``jaxloss.COCO_KEYPOINT_SIGMAS`` for COCO's 17 person keypoints.

  Returns:
    The loss of each keypoint set, shape ``pred.shape[:-2]``, in ``[0, 1]``,
    float32 (float64 for float64 ``pred``). ``.mean()`` over the positive
    anchors' sets is YOLO-pose's keypoint loss (before its gain).

  Convention:
    The similarity is COCO's (``cocoeval``: ``e = d^2 / (2 s^2 (2
    \sigma)^2)``, ``s^2`` the area plus NumPy's ``spacing(1)``), and the
    loss is YOLO-pose's: ultralytics' ``KeypointLoss`` averages
    :math:`1 - e^{-e_k}` over the K keypoints of a set and scales it by
    ``K / num_visible`` (its ``kpt_loss_factor``), which is the mean over
    the visible keypoints written here. Float weights generalise the flag
    to a weighted mean (0/1 weights equal the booleans). No visible
    keypoint gives 0 with zero, finite gradients; the coordinates of
    invisible keypoints carry no gradient, even if they are ``inf`` or NaN.
    :math:`1 - e^{-e}` is ``-expm1(-e)``, accurate for a nearly perfect
    prediction. The loss is smooth in the coordinates (no square root);
    ``area``, ``sigmas`` and ``visible`` take gradients too, but are
    usually constants. Inside :func:`jaxloss.value_checks`, ``checkify``
    reports negative ``visible`` weights and an ``area <= 0`` of a set with
    a visible keypoint.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # One set of 2 keypoints, sigma = 0.5 (kappa = 1), area 1: a
    >>> # keypoint off by sqrt(2) has similarity e^-1, the other 1.
    >>> pred = jnp.array([[1.0, 1.0], [3.0, 4.0]])
    >>> target = jnp.array([[0.0, 0.0], [3.0, 4.0]])
    >>> jaxloss.keypoint_oks_loss(pred, target, visible=jnp.array([True, True]),
    ...                           area=1.0, sigmas=jnp.array([0.5, 0.5]))
    Array(0.316060, dtype=float32)
    >>> # Only the second keypoint visible: it is exact, loss 0.
    >>> jaxloss.keypoint_oks_loss(pred, target,
    ...                           visible=jnp.array([False, True]),
    ...                           area=1.0, sigmas=jnp.array([0.5, 0.5]))
    Array(0., dtype=float32)

  References:
    Maji, Nagori, Mathew, Poddar, "YOLO-Pose: Enhancing YOLO for Multi
    Person Pose Estimation Using Object Keypoint Similarity Loss", CVPR
    Workshops 2022. https://arxiv.org/abs/2204.06806

    Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014 (the
    keypoint similarity of its evaluation). https://arxiv.org/abs/1405.0312
  """
  fn = "keypoint_oks_loss"
  pred = _checks.coordinates(
    fn, "pred", pred, 2, meaning="(x, y) of each keypoint", rows="K"
  )
  target = _checks.coordinates(
    fn, "target", target, 2, meaning="(x, y) of each keypoint", rows="K"
  )
  target = _checks.same_shape(fn, ("pred", "target"), pred, target)
  num_keypoints = pred.shape[-2]
  dtype = _numerics.accum_dtype(pred.dtype)

  flags = jnp.asarray(visible)
  if not (
    flags.dtype == jnp.bool_ or jnp.issubdtype(flags.dtype, jnp.floating)
  ):
    _checks.fail(
      fn,
      f"visible must be boolean flags or float weights, got dtype "
      f"{flags.dtype} (for COCO's visibility v in {{0, 1, 2}} pass "
      "visible=v > 0)",
      TypeError,
    )
  flags = _broadcasts_to(
    fn, "visible", flags, pred.shape[:-1], "pred.shape[:-1]"
  )
  areas = _broadcasts_to(
    fn, "area", _real(fn, "area", area), pred.shape[:-2], "pred.shape[:-2]"
  ).astype(dtype)
  sigma = _real(fn, "sigmas", sigmas)
  if sigma.shape != (num_keypoints,):
    _checks.fail(
      fn,
      f"sigmas.shape {sigma.shape} must be ({num_keypoints},), one "
      f"constant a keypoint (pred.shape {pred.shape})",
    )
  if not _checks.is_traced(sigma):
    values = np.asarray(sigma, np.float64)
    if not np.all(np.isfinite(values) & (values > 0)):
      _checks.fail(fn, f"sigmas must be finite and > 0, got {values.tolist()}")
  sigma = sigma.astype(dtype)

  weights = flags.astype(dtype)
  counts = weights > 0
  if _checks.checks_enabled():
    _checks.value_check(
      ~jnp.any(weights < 0), f"{fn}: visible weights must be >= 0"
    )
    _checks.value_check(
      ~jnp.any((areas <= 0) & jnp.any(counts, axis=-1)),
      f"{fn}: area must be > 0 where a keypoint is visible",
    )
  # Double where: the coordinates of invisible keypoints get no gradient.
  keep = counts[..., None]
  p = jnp.where(keep, pred.astype(dtype), 0)
  t = jnp.where(keep, target.astype(dtype), 0)
  d2 = jnp.sum(lax.integer_pow(p - t, 2), axis=-1)
  kappa2 = lax.integer_pow(2 * sigma, 2).reshape(
    (1,) * (d2.ndim - 1) + (num_keypoints,)
  )
  scale = 2 * kappa2 * (areas[..., None] + _AREA_EPS)
  dissimilarity = -jnp.expm1(-d2 / scale)
  total = jnp.sum(weights, axis=-1)
  return _numerics.safe_div(jnp.sum(weights * dissimilarity, axis=-1), total, 0)


def _class_ids(fn: str, logits: jax.Array, labels) -> jax.Array:
  """Integer class ids of shape ``logits.shape[:-1]``."""
  labels = jnp.asarray(labels)
  if labels.shape != logits.shape[:-1]:
    _checks.fail(
      fn,
      f"labels.shape {labels.shape} must equal logits.shape[:-1] "
      f"{logits.shape[:-1]} (one class id each); got logits.shape "
      f"{logits.shape}",
    )
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    _checks.fail(
      fn,
      f"labels must be integer class ids, got dtype {labels.dtype}",
      TypeError,
    )
  return labels


def seesaw_loss(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  class_counts: ArrayLike,
  p: float = 0.8,
  q: float = 2.0,
  eps: float = 1e-2,
  where: ArrayLike | None = None,
) -> jax.Array:
  r"""Seesaw loss: softmax cross-entropy re-balanced for long-tailed classes.

  For a sample of class :math:`i` with logits :math:`z` over :math:`C`
  classes, the negative classes' terms of the softmax are scaled by
  :math:`S_{ij} = M_{ij} C_{ij}`:

  .. math::
    \ell = -\log \frac{e^{z_i}}{e^{z_i} + \sum_{j \ne i} S_{ij} e^{z_j}},
    \qquad
    M_{ij} = \min\Big(1, \frac{N_j}{N_i}\Big)^p,
    \qquad
    C_{ij} = \max\Big(1, \frac{\sigma_j}{\max(\sigma_i, \epsilon)}\Big)^q,

  with :math:`N` the number of samples of each class seen so far and
  :math:`\sigma = \mathrm{softmax}(z)`. The mitigation factor :math:`M`
  shrinks the penalty that a frequent class's samples put on a rarer class;
  the compensation factor :math:`C` restores it where the rarer class is
  wrongly scored above the true one. ``p = q = 0`` is softmax
  cross-entropy.

  The caller keeps the counts (the function is pure), adding each batch's
  labels before computing the loss, as the reference implementation does::

    def loss_fn(model, images, labels, counts):
      logits = model(images)  # [B, C]
      return jaxloss.seesaw_loss(logits, labels, class_counts=counts).mean()

    @nnx.jit
    def train_step(model, optimizer, images, labels, counts):
      counts = counts + jnp.bincount(labels, length=counts.shape[0])
      loss, grads = nnx.value_and_grad(loss_fn)(model, images, labels, counts)
      optimizer.update(model, grads)
      return loss, counts

  starting from ``counts = jnp.zeros(C, jnp.int32)`` (or float32 beyond
  :math:`2^{31}` samples), kept across steps like the optimizer's state.

  Args:
    logits: Float logits ``[..., C]``.
    labels: Integer class ids ``[...]`` (``logits.shape[:-1]``).
    class_counts: Samples seen per class, ``[C]``, ``>= 0`` (integer or
      float); counts below 1 count as 1.
    p: Exponent of the mitigation factor, ``>= 0``.
    q: Exponent of the compensation factor, ``>= 0``.
    eps: Floor of the true class's probability in the compensation factor,
      ``> 0``; it bounds :math:`C_{ij}` by :math:`\epsilon^{-q}`.
    where: Optional boolean mask broadcastable to ``logits.shape[:-1]``;
      masked samples return 0. For an ignore label use
      ``where=labels != 255`` (and leave them out of the counts).

  Returns:
    The loss of each sample, shape ``logits.shape[:-1]``, in float32 (float64
    for float64 logits). Reduce it yourself (``.mean()``, or a sum over the
    valid samples divided by their number).

  Convention:
    As the reference implementation (mmdetection's ``seesaw_ce_loss``): the
    counts are clamped below at 1, :math:`M` and :math:`C` are constants of
    the gradient (the softmax inside :math:`C` is taken with
    ``stop_gradient``; ``class_counts`` carries no gradient), and
    :math:`S_{ij}` enters as :math:`z_j + \log S_{ij}` with
    :math:`\log C_{ij} = q \max(0, \log \sigma_j - \max(\log \sigma_i,
    \log \epsilon))` from ``log_softmax``, so logits of :math:`\pm 10^4`
    give finite values and gradients. mmdetection's objectness branch (two
    extra logits, background against foreground, trained by a separate
    cross-entropy) is not part of this loss: pass the foreground samples'
    class logits, and train the objectness with a cross-entropy of its own.
    A class id outside ``[0, C)`` gives 0 (reported under ``checkify``
    inside :func:`jaxloss.value_checks`). Masked samples carry no gradient,
    even with ``inf`` or NaN logits.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Equal logits over 3 classes; class 2 is ten times rarer. A class-0
    >>> # sample pushes class 2 down with weight (1/10)^0.8 only:
    >>> # log(1 + 1 + 0.158); a class-2 sample is plain cross-entropy, log 3.
    >>> counts = jnp.array([10, 10, 1])
    >>> jaxloss.seesaw_loss(jnp.zeros((2, 3)), jnp.array([0, 2]),
    ...                     class_counts=counts)
    Array([0.769409, 1.098612], dtype=float32)

  References:
    Wang, Zhang, Zang, Cao, Pang, Gong, Chen, Liu, Loy, Lin, "Seesaw Loss
    for Long-Tailed Instance Segmentation", CVPR 2021.
    https://arxiv.org/abs/2008.10032
  """
  fn = "seesaw_loss"
  logits = _checks.as_float(fn, "logits", logits, min_rank=1)
  labels = _class_ids(fn, logits, labels)
  num_classes = logits.shape[-1]
  counts = _checks.nonnegative_vector(
    fn, "class_counts", class_counts, num_classes
  )
  p = _checks.nonnegative(fn, "p", p)
  q = _checks.nonnegative(fn, "q", q)
  eps = _checks.scalar(fn, "eps", eps, low=0.0, above=True)
  mask = _checks.mask_for(fn, where, logits.shape[:-1], broadcast=True)
  dtype = _numerics.accum_dtype(logits.dtype)
  x = logits.astype(dtype)
  if mask is not None:
    x = jnp.where(mask[..., None], x, 0)
  _checks.debug_labels_in_range(fn, labels, num_classes, mask)
  ids = _numerics.class_ids(labels)
  inside = (ids >= 0) & (ids < num_classes)
  ids = jnp.where(inside, ids, 0)[..., None]

  log_counts = jnp.log(jnp.maximum(lax.stop_gradient(counts).astype(dtype), 1))
  # log(N_j / N_i), [..., C].
  log_ratio = (
    log_counts.reshape((1,) * (ids.ndim - 1) + (num_classes,)) - log_counts[ids]
  )
  log_sigma = lax.stop_gradient(jax.nn.log_softmax(x, axis=-1))
  floor = jnp.maximum(
    jnp.take_along_axis(log_sigma, ids, axis=-1),
    jnp.log(jnp.asarray(eps, dtype)),
  )
  # log M_ij + log C_ij; both are 0 at j = i.
  log_seesaw = p * jnp.minimum(log_ratio, 0) + q * jnp.maximum(
    log_sigma - floor, 0
  )
  z = x + log_seesaw
  loss = (
    jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(x, ids, axis=-1)[..., 0]
  )
  loss = jnp.where(inside, loss, 0)
  if mask is not None:
    loss = jnp.where(mask, loss, 0)
  return loss


def ghm_classification_loss(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  bins: int = 10,
  where: ArrayLike | None = None,
) -> jax.Array:
  r"""Gradient harmonizing classification loss (GHM-C), elementwise.

  Sigmoid binary cross-entropy, each entry weighted by the inverse density of
  its gradient norm :math:`g = |\sigma(x) - y|` over the input: with
  :math:`[0, 1]` cut into ``bins`` equal bins, :math:`N_b` valid entries in
  bin :math:`b` and :math:`n` non-empty bins,

  .. math::
    \ell_e = \frac{\mathrm{bce}(x_e, y_e)}{n \, N_{b(e)}},
    \qquad
    \sum_e \ell_e = \frac{1}{n} \sum_{b : N_b > 0}
      \frac{1}{N_b} \sum_{e \in b} \mathrm{bce}(x_e, y_e),

  so the sum is the mean, over the non-empty bins, of each bin's mean
  cross-entropy: the many easy negatives (small :math:`g`) and the few
  outliers (:math:`g` near 1) each weigh as much as one bin.

  Args:
    logits: Float logits of any shape, e.g. ``[N, C]`` per anchor and class.
    labels: Binary targets of the same shape (float, bool or integer 0/1;
      soft targets in ``[0, 1]`` are accepted), or integer class ids of shape
      ``logits.shape[:-1]``, expanded to one-hot rows, where an id outside
      ``[0, C)`` is a background row of zeros (mmdetection's ``labels ==
      num_classes``).
    bins: Number of bins, a Python int ``>= 1`` (static: it sets a shape).
    where: Optional boolean mask broadcastable to ``logits.shape``; masked
      entries return 0, are not counted in the histogram, and carry no
      gradient (mmdetection's ``label_weight > 0``). A mask per anchor is
      ``where=valid[..., None]``.

  Returns:
    The weighted loss of each element, shape ``logits.shape``, in float32
    (float64 for float64 logits). Its ``.sum()`` is mmdetection's ``GHMC``
    loss (``momentum=0``, ``loss_weight=1``); do not divide it again.

  Convention:
    The histogram is taken over the whole input, every axis pooled: call it
    on the whole batch (or ``jax.vmap`` it for one histogram an image). The
    weights are constants of the gradient: :math:`g` is taken with
    ``stop_gradient``, as in the paper and mmdetection, and the bins are
    mmdetection's (:math:`b = \#\{i \ge 1 : g \ge i / \text{bins}\}`, so
    :math:`g = 1` is in the last bin). The paper's weight
    :math:`\beta = N / (M R_b)` divides by the number of bins :math:`M`;
    mmdetection, and this function, by the number :math:`n` of non-empty
    bins, so that the weights of the :math:`N` valid entries sum to
    :math:`N` and the loss keeps the scale of a mean cross-entropy.
    mmdetection multiplies by :math:`N` and then divides by it; that cancels
    and is left out.
    The histogram is a sum of one-hot rows over a static number of bins:
    no data-dependent shapes, ``jit``-safe. Without the paper's moving
    average of the bin counts (``momentum``), which needs state across
    steps. The cross-entropy is computed from logits without cancellation
    (finite at :math:`\pm 10^4`). Float targets outside [0, 1] are
    reported under ``checkify`` inside :func:`jaxloss.value_checks` (class
    ids outside ``[0, C)`` are background by design). A NaN logit gives NaN
    at its entry.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> # Two bins. g = 1/2 for the two logits at 0 (bin 1); the confident
    >>> # right one (g ~ 0) is alone in bin 0. Each bin weighs 1/2 in all.
    >>> logits = jnp.array([0.0, 0.0, -20.0])
    >>> loss = jaxloss.ghm_classification_loss(logits, jnp.zeros(3), bins=2)
    >>> loss  # log 2 / (2 * 2), log 2 / (2 * 2), ~0
    Array([1.732868e-01, 1.732868e-01, 1.030576e-09], dtype=float32)

  References:
    Li, Liu, Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019.
    https://arxiv.org/abs/1811.05181
  """
  fn = "ghm_classification_loss"
  if (
    not isinstance(bins, (int, np.integer))
    or isinstance(bins, (bool, np.bool_))
    or bins < 1
  ):
    _checks.fail(
      fn,
      f"bins must be a Python int >= 1 (it sets a shape), got {bins!r}",
      ValueError
      if isinstance(bins, (int, np.integer))
      and not isinstance(bins, (bool, np.bool_))
      else TypeError,
    )
  bins = int(bins)
  logits = _checks.as_float(fn, "logits", logits)
  labels = _checks.labels_for(fn, "logits", logits, labels)
  mask = _checks.mask_for(fn, where, logits.shape, broadcast=True)
  dtype = _numerics.accum_dtype(logits.dtype)
  x = logits.astype(dtype)
  if labels.shape != logits.shape:
    y = _numerics.one_hot_mask(labels, logits.shape[-1]).astype(dtype)
  else:
    y = labels.astype(dtype)
    _checks.debug_unit_interval(fn, "labels", y, mask)
  if mask is not None:  # Double where: masked entries get no gradient at all.
    x = jnp.where(mask, x, 0)
    y = jnp.where(mask, y, 0)

  sig = _focal.sigmoid_terms(x, differentiable=True)
  g = lax.stop_gradient(jnp.abs(sig.minus(y)))
  edges = jnp.arange(1, bins, dtype=dtype).reshape((1,) * x.ndim + (-1,)) / bins
  index = jnp.sum(g[..., None] >= edges, axis=-1, dtype=jnp.int32)
  one_hot = jax.nn.one_hot(index, bins, dtype=jnp.int32)
  if mask is not None:
    one_hot = jnp.where(mask[..., None], one_hot, 0)
  counts = jnp.sum(one_hot, axis=tuple(range(x.ndim)))  # [bins]
  nonempty = jnp.sum(counts > 0)
  per_bin = _numerics.safe_div(1, (counts * nonempty).astype(dtype), 0)
  loss = per_bin[index] * sig.bce(x, y)
  if mask is not None:
    loss = jnp.where(mask, loss, 0)
  return loss
