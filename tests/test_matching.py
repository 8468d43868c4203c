"""Pairwise matching costs: references, identities, edges, bad input.

Each check runs on one compiled program (``jax.jit``), inputs as arguments;
inputs are drawn and outputs checked in NumPy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify

import jaxloss
from tests import reference_detection as ref
from tests import references

N, M, C, P = 4, 3, 5, 6


def logits(seed, shape, scale=3.0):
  return np.random.default_rng(seed).normal(0, scale, shape)


def labels(seed, m=M, c=C):
  return np.random.default_rng(seed).integers(0, c, m)


def masks(seed, shape=(M, P)):
  rng = np.random.default_rng(seed)
  t = (rng.uniform(size=shape) < 0.5).astype(np.float64)
  t[0] = rng.uniform(size=shape[-1])  # one soft mask
  return t


def boxes(seed, n):
  return np.random.default_rng(seed).uniform(0, 1, (n, 4))


def f32(a):
  """float32 for float inputs; class ids as they are."""
  a = np.asarray(a)
  return a if a.dtype.kind in "iub" else a.astype(np.float32)


# name: (function, reference, make args: seed -> (pred, target), options)
COSTS = {
  "softmax_class_cost": (
    jaxloss.softmax_class_cost,
    ref.softmax_class_cost,
    lambda s: (logits(s, (N, C)), labels(s + 1)),
    {},
  ),
  "focal_class_cost": (
    jaxloss.focal_class_cost,
    ref.focal_class_cost,
    lambda s: (logits(s, (N, C)), labels(s + 1)),
    {},
  ),
  "focal_class_cost_options": (
    jaxloss.focal_class_cost,
    ref.focal_class_cost,
    lambda s: (logits(s, (N, C)), labels(s + 1)),
    {"alpha": 0.5, "gamma": 0.5},
  ),
  "box_l1_cost": (
    jaxloss.box_l1_cost,
    ref.box_l1_cost,
    lambda s: (boxes(s, N), boxes(s + 1, M)),
    {},
  ),
  "mask_dice_cost": (
    jaxloss.mask_dice_cost,
    ref.mask_dice_cost,
    lambda s: (logits(s, (N, P)), masks(s + 1)),
    {},
  ),
  "mask_dice_cost_options": (
    jaxloss.mask_dice_cost,
    ref.mask_dice_cost,
    lambda s: (logits(s, (N, P)), masks(s + 1)),
    {"smooth": 0.0},
  ),
  "mask_bce_cost": (
    jaxloss.mask_bce_cost,
    ref.mask_bce_cost,
    lambda s: (logits(s, (N, P)), masks(s + 1)),
    {},
  ),
  "mask_focal_cost": (
    jaxloss.mask_focal_cost,
    ref.mask_focal_cost,
    lambda s: (logits(s, (N, P)), masks(s + 1)),
    {},
  ),
  "mask_focal_cost_options": (
    jaxloss.mask_focal_cost,
    ref.mask_focal_cost,
    lambda s: (logits(s, (N, P)), masks(s + 1)),
    {"alpha": 0.75, "gamma": 1.5},
  ),
}
NAMES = sorted(COSTS)


@functools.cache
def compiled(name):
  """The cost and the gradient of its weighted sum, from one program."""
  fn, _, _, options = COSTS[name]
  call = functools.partial(fn, **options)
  return jax.jit(
    lambda x, t, w: (call(x, t), jax.grad(lambda x: jnp.sum(w * call(x, t)))(x))
  )


# 1. References: values and gradients ------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_values_and_gradients_match_reference(name):
  fn, reference, make, options = COSTS[name]
  pred, target = make(0)
  want = reference(pred, target, **options)
  weights = np.random.default_rng(1).normal(size=(N, M))
  got, _ = compiled(name)(f32(pred), f32(target), f32(weights))
  assert got.shape == (N, M) and got.dtype == jnp.float32
  got = jax.device_get(got)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
  scalar = lambda x: np.sum(weights * reference(x, target, **options))
  want_grad = references.numerical_grad(scalar, pred)
  with jax.enable_x64(True):
    got64, g = compiled(name)(pred, target, weights)
    assert got64.dtype == jnp.float64
    got64, g = jax.device_get((got64, g))
  np.testing.assert_allclose(got64, want, rtol=1e-11, atol=1e-12)
  np.testing.assert_allclose(g, want_grad, rtol=1e-6, atol=1e-8)
  assert np.abs(want_grad).max() > 0


@pytest.mark.parametrize(
  "name", [n for n in NAMES if not n.endswith("_options")]
)
def test_batch_axes_broadcast(name):
  fn, _, make, options = COSTS[name]
  pred0, target0 = make(2)
  pred1, _ = make(3)
  pred = f32(np.stack([pred0, pred1]))  # [2, N, K]
  target = f32(target0)  # shared
  got, vmapped = jax.device_get(
    jax.jit(
      lambda p, t: (
        fn(p, t, **options),
        jax.vmap(lambda q: fn(q, t, **options))(p),
      )
    )(pred, target)
  )
  assert got.shape == (2, N, M)
  # Each example alone: the program of the reference test.
  ones = np.ones((N, M), np.float32)
  for i in range(2):
    np.testing.assert_allclose(
      got[i],
      jax.device_get(compiled(name)(pred[i], target, ones)[0]),
      rtol=1e-6,
      atol=1e-7,
    )
  np.testing.assert_allclose(vmapped, got, rtol=1e-6, atol=1e-7)


# 2. Identities -----------------------------------------------------------------------


@jax.jit
def _mask_identities(x, t):
  """Each mask cost, and the same quantity from the elementwise losses."""
  hard = jnp.round(t)
  pairs = lambda fn, y: jax.vmap(lambda xi: jax.vmap(lambda tj: fn(xi, tj))(y))(
    x
  )
  mean = lambda loss: lambda a, b: jnp.mean(loss(a, b))
  dice = lambda a, b: jaxloss.dice_loss(
    jax.nn.sigmoid(a)[:, None], b[:, None], smooth=1.0, soft_labels=False
  )
  return {
    "bce": (
      jaxloss.mask_bce_cost(x, hard),
      pairs(
        mean(lambda a, b: jaxloss.focal_loss(a, b, alpha=None, gamma=0.0)), hard
      ),
    ),
    "focal": (
      jaxloss.mask_focal_cost(x, hard, alpha=0.3, gamma=1.5),
      pairs(
        mean(lambda a, b: jaxloss.focal_loss(a, b, alpha=0.3, gamma=1.5)), hard
      ),
    ),
    # gamma = 0, alpha = 1/2: half the cross-entropy, soft targets too.
    "half bce": (
      jaxloss.mask_focal_cost(x, t, alpha=0.5, gamma=0.0),
      0.5 * jaxloss.mask_bce_cost(x, t),
    ),
    "dice": (jaxloss.mask_dice_cost(x, t), pairs(dice, t)),
    # Bool targets are the same masks.
    "bool": (
      jaxloss.mask_dice_cost(x, hard > 0.5),
      jaxloss.mask_dice_cost(x, hard),
    ),
  }


def test_mask_costs_are_the_elementwise_losses_of_each_pair():
  x, t = f32(logits(4, (N, P))), f32(masks(5))
  for what, (got, want) in jax.device_get(_mask_identities(x, t)).items():
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=what)


def test_costs_recover_a_permutation_through_the_hungarian_solver():
  """Noisy copies of the targets, shuffled: the matching undoes the shuffle."""
  rng = np.random.default_rng(8)
  k = 6
  target_boxes = rng.uniform(0.1, 0.9, (k, 4))
  target_labels = rng.integers(0, C, k)
  target_masks = (rng.uniform(size=(k, 16)) < 0.4).astype(np.float32)
  perm = rng.permutation(k)
  pred_boxes = target_boxes[perm] + rng.normal(0, 0.01, (k, 4))
  pred_logits = 6.0 * np.eye(C)[target_labels[perm]] - 3.0
  mask_logits = 8.0 * target_masks[perm] - 4.0
  corners = lambda b: np.sort(b.reshape(k, 2, 2), 1).reshape(k, 4)

  @jax.jit
  def match(pred_logits, labels, pred_boxes, boxes, mask_logits, masks):
    cost = (
      jaxloss.softmax_class_cost(pred_logits, labels)
      + jaxloss.focal_class_cost(pred_logits, labels)
      + 5 * jaxloss.box_l1_cost(pred_boxes, boxes)
      - 2 * jaxloss.generalized_box_iou(corners_p, corners_t)
      + jaxloss.mask_dice_cost(mask_logits, masks)
      + jaxloss.mask_bce_cost(mask_logits, masks)
      + jaxloss.mask_focal_cost(mask_logits, masks)
    )
    return optax.assignment.hungarian_algorithm(cost)

  corners_p = corners(pred_boxes)
  corners_t = corners(target_boxes)
  rows, cols = jax.device_get(
    match(
      pred_logits,
      target_labels,
      pred_boxes,
      target_boxes,
      mask_logits,
      target_masks,
    )
  )
  np.testing.assert_array_equal(cols[np.argsort(rows)], perm)


# 3. Edge cases -----------------------------------------------------------------------


def test_extreme_logits_nan_and_empty():
  x = f32([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0]])
  y = np.array([0, 1, 2], np.int32)
  t = f32([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
  mask_costs = (
    jaxloss.mask_dice_cost,
    jaxloss.mask_bce_cost,
    jaxloss.mask_focal_cost,
  )
  costs = (
    (jaxloss.softmax_class_cost, "y"),
    (jaxloss.focal_class_cost, "y"),
    (functools.partial(jaxloss.focal_class_cost, gamma=0.5), "y"),
  ) + tuple((fn, "t") for fn in mask_costs)

  @jax.jit
  def run(x, targets, no_points, no_points_t, no_targets, low, zeros, boxes):
    """Per cost: value and gradient of the sum, and the cost with a NaN
    logit; per mask cost: no points, no targets; a -1e4 mask against an
    empty one; no boxes."""
    with_nan = x.at[0, 0].set(jnp.nan)
    finite = [
      (
        jax.value_and_grad(lambda a: jnp.sum(fn(a, targets[b])))(x),
        fn(with_nan, targets[b]),
      )
      for fn, b in costs
    ]
    empty = [
      (fn(no_points, no_points_t), fn(x, no_targets)) for fn in mask_costs
    ]
    return (
      finite,
      empty,
      jaxloss.mask_dice_cost(low, zeros, smooth=0.0),
      jaxloss.box_l1_cost(boxes, np.zeros((3, 4), np.float32)),
    )

  finite, empty, dice, no_boxes = jax.device_get(
    run(
      x,
      {"y": y, "t": t},
      np.zeros((2, 0), np.float32),
      np.zeros((3, 0), np.float32),
      np.zeros((0, 3), np.float32),
      np.full((1, 3), -1e4, np.float32),
      np.zeros((1, 3), np.float32),
      np.zeros((0, 4), np.float32),
    )
  )
  for (value, grad), with_nan in finite:
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # NaN in a prediction's logits: NaN in its row (its class, for the
    # class costs, which read one logit per target).
    assert np.isnan(with_nan[0, 0]) and np.all(np.isfinite(with_nan[1]))
  for no_points, no_targets in empty:
    # No points, no targets, no predictions.
    assert no_points.shape == (2, 3)
    np.testing.assert_allclose(no_points, 0)
    assert no_targets.shape == (2, 0)
  np.testing.assert_allclose(dice, [[0.0]])
  assert no_boxes.shape == (0, 3)


@pytest.mark.parametrize("name", ["mask_bce_cost", "mask_focal_cost"])
def test_confident_right_masks_keep_their_small_cost(name):
  # Logits of +-17 that agree with the target: the cost is about 4e-8 (BCE)
  # or far smaller (focal); the one-product forms cancelled it to 0 or below.
  t = masks(6)
  x = 17.0 * (2 * t - 1)
  fn, reference, _, options = COSTS[name]
  got = jax.device_get(jax.jit(fn)(f32(x), f32(t), **options))
  want = reference(x, t, **options)
  assert np.all(np.diag(want) > 0)
  np.testing.assert_allclose(np.diag(got), np.diag(want), rtol=1e-5, atol=0)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_bf16_inputs():
  x = logits(10, (N, P)).astype(jnp.bfloat16)
  t = masks(11).astype(jnp.bfloat16)
  c = logits(12, (N, C)).astype(jnp.bfloat16)
  y = labels(13)
  b = boxes(14, N).astype(jnp.bfloat16)

  @jax.jit
  def run(x, t, c, y, b):
    masks = [
      (fn(x, t), fn(x.astype(jnp.float32), t.astype(jnp.float32)))
      for fn in (
        jaxloss.mask_dice_cost,
        jaxloss.mask_bce_cost,
        jaxloss.mask_focal_cost,
      )
    ]
    classes = [
      (fn(c, y), fn(c.astype(jnp.float32), y))
      for fn in (jaxloss.softmax_class_cost, jaxloss.focal_class_cost)
    ]
    return (
      masks + classes + [(jaxloss.box_l1_cost(b, b), jaxloss.box_l1_cost(b, b))]
    )

  for got, want in jax.device_get(run(x, t, c, y, b)):
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_value_checks_report_bad_labels_and_targets():
  x = np.zeros((2, C), np.float32)
  checked = jax.jit(checkify.checkify(jaxloss.softmax_class_cost))
  with jaxloss.value_checks():
    err, _ = checked(x, np.array([0, C], np.int32))
    assert f"softmax_class_cost: labels must lie in [0, {C})" in str(err.get())
    err, _ = checked(x, np.array([0, C - 1], np.int32))
    assert err.get() is None
    # uint8 class ids with more than 256 classes are compared as integers.
    err, value = jax.jit(checkify.checkify(jaxloss.focal_class_cost))(
      np.zeros((2, 300), np.float32), np.array([1, 255], np.uint8)
    )
    assert err.get() is None and value.shape == (2, 2)
    err, _ = jax.jit(checkify.checkify(jaxloss.focal_class_cost))(
      np.zeros((2, 3), np.float32), np.array([1, -3], np.int8)
    )
    assert "focal_class_cost: labels must lie in [0, 3)" in str(err.get())
    err, _ = jax.jit(checkify.checkify(jaxloss.mask_dice_cost))(
      np.zeros((2, 3), np.float32), f32([[0.0, 1.0, 2.0]])
    )
    assert "mask_dice_cost: labels must lie in [0, 1]" in str(err.get())


# 4. Bad input ----------------------------------------------------------------------------


def test_bad_input_names_function_and_argument():
  zeros = lambda *shape: np.zeros(shape, np.float32)
  for fn in (jaxloss.softmax_class_cost, jaxloss.focal_class_cost):
    name = fn.__name__
    with pytest.raises(
      ValueError,
      match=rf"{name}: logits must have shape "
      r"\[\.\.\., N, C\]",
    ):
      fn(zeros(C), np.zeros(3, np.int32))
    with pytest.raises(TypeError, match=rf"{name}: labels must be integer"):
      fn(zeros(N, C), zeros(3))
    with pytest.raises(
      ValueError,
      match=rf"{name}: labels must have shape "
      r"\[\.\.\., M\]",
    ):
      fn(zeros(N, C), np.int32(3))
    with pytest.raises(
      ValueError,
      match=rf"{name}: the batch axes of logits.shape "
      r"and labels.shape must broadcast",
    ):
      fn(zeros(2, N, C), np.zeros((3, M), np.int32))
    with pytest.raises(
      TypeError,
      match=rf"{name}: logits must have a "
      "floating",
    ):
      fn(np.zeros((N, C), np.int32), np.zeros(3, np.int32))
  for fn in (
    jaxloss.mask_dice_cost,
    jaxloss.mask_bce_cost,
    jaxloss.mask_focal_cost,
  ):
    name = fn.__name__
    with pytest.raises(
      ValueError,
      match=rf"{name}: logits must have shape "
      r"\[\.\.\., N, P\]",
    ):
      fn(zeros(P), zeros(M, P))
    with pytest.raises(
      ValueError,
      match=rf"{name}: labels must have shape "
      r"\[\.\.\., M, P\]",
    ):
      fn(zeros(N, P), zeros(P))
    with pytest.raises(
      ValueError,
      match=rf"{name}: the last axes of "
      r"logits.shape \(4, 6\) and labels.shape \(3, 5\)",
    ):
      fn(zeros(N, P), zeros(M, P - 1))
    with pytest.raises(
      TypeError,
      match=rf"{name}: labels must be float or "
      "bool",
    ):
      fn(zeros(N, P), np.zeros((M, P), np.int32))
    with pytest.raises(ValueError, match=rf"{name}: the batch axes"):
      fn(zeros(2, N, P), zeros(3, M, P))
  with pytest.raises(
    ValueError,
    match=r"box_l1_cost: boxes1 must have shape "
    r"\[\.\.\., N, 4\]",
  ):
    jaxloss.box_l1_cost(zeros(N, 5), zeros(M, 4))
  with pytest.raises(
    ValueError,
    match=r"box_l1_cost: boxes2 must have shape "
    r"\[\.\.\., M, 4\]",
  ):
    jaxloss.box_l1_cost(zeros(N, 4), zeros(4))
  with pytest.raises(
    TypeError, match=r"box_l1_cost: boxes2 must have a floating"
  ):
    jaxloss.box_l1_cost(zeros(N, 4), np.zeros((M, 4), np.int32))
  for fn in (jaxloss.focal_class_cost, jaxloss.mask_focal_cost):
    name = fn.__name__
    args = (
      (zeros(N, C), np.zeros(M, np.int32))
      if fn is jaxloss.focal_class_cost
      else (zeros(N, P), zeros(M, P))
    )
    with pytest.raises(ValueError, match=rf"{name}: alpha must be <= 1"):
      fn(*args, alpha=1.5)
    with pytest.raises(ValueError, match=rf"{name}: gamma must be >= 0"):
      fn(*args, gamma=-1.0)
    with pytest.raises(ValueError, match=rf"{name}: gamma must be finite"):
      fn(*args, gamma=float("nan"))
    with pytest.raises(
      TypeError, match=rf"{name}: alpha must be a real number"
    ):
      fn(*args, alpha=None)
  with pytest.raises(ValueError, match=r"mask_dice_cost: smooth must be >= 0"):
    jaxloss.mask_dice_cost(zeros(N, P), zeros(M, P), smooth=-1.0)
