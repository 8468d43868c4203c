"""Rotated-box losses (ProbIoU, KLD, GWD): references, symmetries, edges.

Each check runs on one compiled program (``jax.jit``) per loss, options and
shape, inputs as arguments; inputs are built and outputs checked in NumPy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from tests import reference_detection as ref
from tests import references

LOSSES = {
  "probiou": (jaxloss.rotated_box_probiou_loss, ref.probiou_loss),
  "kld": (jaxloss.rotated_box_kld_loss, ref.kld_loss),
  "gwd": (jaxloss.rotated_box_gwd_loss, ref.gwd_loss),
}
# (name, options): every loss with its defaults, and the other f and tau.
CONFIGS = [
  ("probiou", ()),
  ("kld", ()),
  ("gwd", ()),
  ("kld", (("fun", "sqrt"), ("tau", 2.0))),
  ("gwd", (("fun", "sqrt"), ("tau", 2.0))),
]
NAMES = sorted(LOSSES)
PI = np.pi
K = 12  # boxes per test case: one shape, so the compiled functions are shared
SWAP = [0, 1, 3, 2, 4]  # (h, w) for (w, h)


def rotated_boxes(seed, n, close=0):
  """``n`` boxes (cx, cy, w, h, theta); the first ``close`` near ``seed+1``'s."""
  rng = np.random.default_rng(seed)
  b = np.concatenate(
    [
      rng.uniform(-2, 2, (n, 2)),
      rng.uniform(0.3, 3, (n, 2)),
      rng.uniform(-4, 4, (n, 1)),
    ],
    -1,
  )
  if close:
    other = rotated_boxes(seed + 1, n)
    b[:close] = other[:close] + rng.normal(0, 0.05, (close, 5))
  return b


def f32(a):
  return np.asarray(a, np.float32)


def turn(b, angle):
  """``b`` with ``angle`` added to its angles."""
  b = b.copy()
  b[..., 4] += angle
  return b


@functools.cache
def compiled(name, options=()):
  """The loss and the gradient of its sum, from one compiled program."""
  fn = functools.partial(LOSSES[name][0], **dict(options))
  total = lambda p, t: jnp.sum(fn(p, t))
  both = jax.jit(lambda p, t: (fn(p, t), jax.grad(total, argnums=(0, 1))(p, t)))
  value = lambda p, t: jax.device_get(both(p, t)[0])
  return value, lambda p, t: jax.device_get(both(p, t)[1])


# 1. Hand cases ------------------------------------------------------------------


def test_hand_cases():
  @jax.jit
  def run(box, turned):
    return (
      jaxloss.rotated_box_probiou_loss(box, turned, eps=1e-12),
      jaxloss.rotated_box_kld_loss(box, turned, eps=1e-12),
      jaxloss.rotated_box_gwd_loss(box, turned, eps=1e-12, fun="sqrt", tau=2.0),
      [LOSSES[name][0](box, box) for name in NAMES],
    )

  box = f32([0.0, 0.0, 2.0, 1.0, 0.0])
  probiou, kld, gwd, equal = jax.device_get(run(box, turn(box, PI / 2)))
  # ProbIoU (k = 12): det(S1 + S2) = 25/144, 4 sqrt(det S1 det S2) = 16/144.
  np.testing.assert_allclose(probiou, np.sqrt(1 - 4 / 5), rtol=1e-6)
  # KLD (k = 4) of the turned box: variances (1, 1/4) vs (1/4, 1):
  # D = (4 + 1/4 - 2) / 2 = 9/8 (the log-determinants cancel).
  np.testing.assert_allclose(kld, 1 - 1 / (1 + np.log1p(9 / 8)), rtol=1e-6)
  # GWD: sqrt-variances (1, 1/2) vs (1/2, 1): d^2 = 2 (1/2)^2 = 1/2.
  np.testing.assert_allclose(gwd, 1 - 1 / (2 + np.sqrt(0.5)), rtol=1e-6)
  # Concentric equal boxes: all zero (tau = 1).
  np.testing.assert_allclose(equal, 0, atol=1e-7)


# 2. References: values and gradients ----------------------------------------------


@pytest.mark.parametrize("name, options", CONFIGS)
def test_values_and_gradients_match_reference(name, options):
  pred = rotated_boxes(0, 12, close=4)
  target = rotated_boxes(1, 12)
  reference = functools.partial(LOSSES[name][1], **dict(options))
  want = reference(pred, target)
  value, grad = compiled(name, options)
  got = value(f32(pred), f32(target))
  assert got.shape == (12,) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
  want_p = references.numerical_grad(
    lambda p: np.sum(reference(p, target)), pred
  )
  want_t = references.numerical_grad(
    lambda t: np.sum(reference(pred, t)), target
  )
  with jax.enable_x64(True):
    got64 = value(pred, target)
    gp, gt = grad(pred, target)
  assert got64.dtype == np.float64
  np.testing.assert_allclose(got64, want, rtol=1e-11, atol=1e-12)
  np.testing.assert_allclose(gp, want_p, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(gt, want_t, rtol=1e-6, atol=1e-7)
  assert np.abs(want_p[:, 4]).min() > 0  # the angle gets a gradient


# 3. Symmetries and identities ------------------------------------------------------


@pytest.mark.parametrize("name, options", CONFIGS)
def test_angle_symmetries(name, options):
  """theta + pi, and (h, w, theta + pi/2): the same box, the same loss."""
  value, grad = compiled(name, options)
  pred = f32(rotated_boxes(2, 12))
  target = f32(rotated_boxes(3, 12))
  base = value(pred, target)
  swap = lambda b, k: turn(b[:, SWAP], np.float32(k * PI / 2))
  for other in (
    turn(pred, np.float32(PI)),
    turn(pred, np.float32(-3 * PI)),
    swap(pred, 1),
    swap(pred, -1),
  ):
    np.testing.assert_allclose(value(other, target), base, rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(
    value(pred, swap(target, 1)), base, rtol=2e-5, atol=2e-6
  )
  # The swapped description's gradient is the permuted gradient.
  g, _ = grad(pred, target)
  gs, _ = grad(swap(pred, 1), target)
  np.testing.assert_allclose(gs, g[:, SWAP], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name, options", CONFIGS)
def test_squares_ignore_their_angle(name, options):
  value, grad = compiled(name, options)
  target = f32(rotated_boxes(4, K))
  square = f32(rotated_boxes(5, K))
  square[:, 3] = square[:, 2]
  base = value(square, target)
  for angle in (0.3, PI / 4, 1.0, PI / 2):
    np.testing.assert_allclose(
      value(turn(square, np.float32(angle)), target), base, rtol=1e-5, atol=1e-6
    )
  g, gt = grad(square, target)
  assert np.all(np.isfinite(g))
  np.testing.assert_allclose(g[:, 4], 0, atol=1e-6)
  # A square target's angle is irrelevant too.
  sq_t = target.copy()
  sq_t[:, 3] = sq_t[:, 2]
  np.testing.assert_allclose(
    value(square, turn(sq_t, np.float32(0.7))),
    value(square, sq_t),
    rtol=1e-5,
    atol=1e-6,
  )
  assert np.abs(grad(square, sq_t)[1][:, 4]).max() < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_equal_boxes_give_zero_with_finite_gradients(name):
  boxes = f32(rotated_boxes(6, K))
  value, grad = compiled(name)
  np.testing.assert_allclose(value(boxes, boxes), 0, atol=1e-6)
  g = grad(boxes, boxes)
  assert all(np.all(np.isfinite(x)) for x in g)
  # The same box written differently (theta + pi, swapped sides) too.
  alias = turn(boxes[:, SWAP], np.float32(PI / 2 + PI))
  np.testing.assert_allclose(value(alias, boxes), 0, atol=1e-5)
  if name == "gwd":
    sqrt = jax.jit(functools.partial(LOSSES[name][0], fun="sqrt"))
    np.testing.assert_allclose(jax.device_get(sqrt(boxes, boxes)), 0, atol=1e-6)


def test_symmetry_and_invariances():
  pred = f32(rotated_boxes(7, 12))
  target = f32(rotated_boxes(8, 12))
  probiou, kld, gwd = (compiled(n)[0] for n in ("probiou", "kld", "gwd"))
  np.testing.assert_allclose(
    probiou(target, pred), probiou(pred, target), rtol=1e-5
  )
  np.testing.assert_allclose(gwd(target, pred), gwd(pred, target), rtol=1e-5)
  assert not np.allclose(kld(target, pred), kld(pred, target), rtol=1e-3)
  # Translation (all three); scale (ProbIoU and KLD; GWD's d^2 scales by s^2).
  move = f32([[3.0, -2.0, 0.0, 0.0, 0.0]])
  scale = f32([[2.5, 2.5, 2.5, 2.5, 1.0]])
  for fn in (probiou, kld, gwd):
    np.testing.assert_allclose(
      fn(pred + move, target + move), fn(pred, target), rtol=1e-4, atol=1e-6
    )
  for fn in (probiou, kld):
    np.testing.assert_allclose(
      fn(pred * scale, target * scale), fn(pred, target), rtol=1e-4, atol=1e-6
    )
  d2 = lambda loss: np.expm1(1 / (1 - np.asarray(loss, np.float64)) - 1)
  np.testing.assert_allclose(
    d2(gwd(pred * scale, target * scale)),
    2.5**2 * d2(gwd(pred, target)),
    rtol=2e-4,
  )


def test_axis_aligned_gwd_and_kld_closed_forms():
  rng = np.random.default_rng(9)
  pred = rotated_boxes(10, K)
  target = rotated_boxes(11, K)
  pred[:, 4] = rng.integers(0, 4, K) * PI  # aligned with target at 0 or pi
  target[:, 4] = 0.0
  d2 = ((pred[:, :2] - target[:, :2]) ** 2).sum(-1)
  gwd = (
    d2
    + ((pred[:, 2] - target[:, 2]) ** 2 + (pred[:, 3] - target[:, 3]) ** 2) / 4
  )
  got = compiled("gwd")[0](f32(pred), f32(target))
  np.testing.assert_allclose(got, 1 - 1 / (1 + np.log1p(gwd)), rtol=1e-5)
  # KLD of equal shapes: only the centre term, offsets in target sizes.
  same = target.copy()
  same[:, :2] = pred[:, :2]
  dx = same[:, :2] - target[:, :2]
  kld = 0.5 * (
    4 * dx[:, 0] ** 2 / target[:, 2] ** 2
    + 4 * dx[:, 1] ** 2 / target[:, 3] ** 2
  )
  got = compiled("kld")[0](f32(same), f32(target))
  np.testing.assert_allclose(got, 1 - 1 / (1 + np.log1p(kld)), rtol=1e-5)


# 4. Edge cases ------------------------------------------------------------------------

DEGENERATE = {
  "point vs box": ([1.0, 1.0, 0.0, 0.0, 0.3], [0.0, 0.0, 2.0, 1.0, 0.0]),
  "box vs point": ([0.0, 0.0, 2.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0, 0.3]),
  "same point": ([1.0, 1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0, 1.0]),
  "two points": ([0.0, 0.0, 0.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0, 0.0]),
  "segment vs box": ([0.0, 0.0, 2.0, 0.0, 0.5], [0.0, 0.0, 2.0, 1.0, 0.0]),
  "same segment": ([0.0, 0.0, 2.0, 0.0, 0.5], [0.0, 0.0, 2.0, 0.0, 0.5]),
  "segment turned": ([0.0, 0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0, PI / 2]),
  "far apart": ([0.0, 0.0, 1.0, 1.0, 0.0], [1e4, -1e4, 2.0, 1.0, 0.2]),
  "huge boxes": ([0.0, 0.0, 1e4, 5e3, 0.1], [10.0, 0.0, 1e4, 1e4, 0.0]),
  "negative size": ([0.0, 0.0, -2.0, 1.0, 0.0], [0.0, 0.0, 2.0, 1.0, 0.0]),
  "large angle": ([0.0, 0.0, 2.0, 1.0, 1e4], [0.0, 0.0, 2.0, 1.0, 0.0]),
  "square, any angle": ([0.0, 0.0, 1.0, 1.0, 0.7], [0.0, 0.0, 1.0, 1.0, -2.0]),
}


@pytest.mark.parametrize("name, options", CONFIGS)
def test_degenerate_boxes_are_finite(name, options):
  pred = f32([p for p, _ in DEGENERATE.values()])
  target = f32([t for _, t in DEGENERATE.values()])
  value, grad = compiled(name, options)
  v = value(pred, target)
  gp, gt = grad(pred, target)
  for what, arr in (
    ("value", v),
    ("grad pred", gp.sum(-1)),
    ("grad target", gt.sum(-1)),
  ):
    bad = [k for k, ok in zip(DEGENERATE, np.isfinite(arr)) if not ok]
    assert not bad, (what, bad)
  cases = list(DEGENERATE)
  lo = 1 - 1 / dict(options).get("tau", 1.0)
  for k in ("same point", "same segment", "square, any angle"):
    np.testing.assert_allclose(v[cases.index(k)], lo, atol=1e-6, err_msg=k)
  # pi/2 in float32 is off by 4e-8 rad, which an eps-thin segment of length
  # 2 resolves: ProbIoU's square root turns its Bhattacharyya distance of
  # 1e-9 into 3e-5.
  np.testing.assert_allclose(v[cases.index("segment turned")], lo, atol=1e-4)
  np.testing.assert_allclose(v[cases.index("negative size")], lo, atol=1e-6)
  assert v[cases.index("far apart")] > 0.9


@pytest.mark.parametrize("name", NAMES)
def test_nan_in_gives_nan_out_and_second_order(name):
  fn = LOSSES[name][0]
  pred = f32(rotated_boxes(12, K, close=2))
  target = f32(rotated_boxes(13, K))
  with_nan = pred.copy()
  with_nan[1, 4] = np.nan
  v = compiled(name)[0](with_nan, target)
  assert np.isnan(v[1]) and np.isnan(v).sum() == 1
  d = f32(np.random.default_rng(14).normal(size=pred.shape))

  @jax.jit
  def both(p, t, d):
    scalar = lambda p: jnp.sum(fn(p, t))
    return (
      jax.jvp(scalar, (p,), (d,))[1],
      jnp.sum(jax.grad(scalar)(p) * d),
      jax.jvp(jax.grad(scalar), (p,), (d,))[1],
    )

  forward, reverse, hvp = jax.device_get(both(pred, target, d))
  np.testing.assert_allclose(forward, reverse, rtol=1e-4, atol=1e-6)
  assert np.all(np.isfinite(hvp)) and np.abs(hvp).max() > 0
  # At equal boxes too (the cone of the Hellinger distance).
  _, _, hvp = jax.device_get(both(target, target, d))
  assert np.all(np.isfinite(hvp))


def test_bf16_and_broadcasting():
  # The three share their input handling; KLD, the asymmetric one, stands
  # for them.
  value, grad = compiled("kld")
  pred = rotated_boxes(15, K).astype(jnp.bfloat16)
  target = rotated_boxes(16, K).astype(jnp.bfloat16)
  got = value(pred, target)
  assert got.dtype == np.float32
  np.testing.assert_allclose(
    got, value(f32(pred), f32(target)), rtol=1e-5, atol=1e-6
  )
  g, _ = grad(pred, target)
  assert g.dtype == jnp.bfloat16 and np.all(np.isfinite(f32(g)))
  # [2, 6, 5] against one box [5].
  p = f32(pred).reshape(2, K // 2, 5)
  one = f32(target[0])
  got = jax.device_get(jax.jit(LOSSES["kld"][0])(p, one))
  assert got.shape == (2, K // 2)
  tiled = np.broadcast_to(one, (K, 5))
  np.testing.assert_allclose(
    got.reshape(K), value(p.reshape(K, 5), tiled), rtol=1e-6
  )


# 5. Bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_names_function_and_argument(name):
  fn = LOSSES[name][0]
  fname = fn.__name__
  ok = np.ones((3, 5), np.float32)
  with pytest.raises(
    ValueError,
    match=rf"{fname}: pred must have shape "
    r"\[\.\.\., 5\]",
  ):
    fn(np.ones((3, 4), np.float32), ok)
  with pytest.raises(ValueError, match=rf"{fname}: target must have shape"):
    fn(ok, np.float32(1))
  with pytest.raises(
    ValueError,
    match=rf"{fname}: the leading axes of "
    r"pred.shape and target.shape must broadcast",
  ):
    fn(ok, np.ones((2, 5), np.float32))
  with pytest.raises(TypeError, match=rf"{fname}: pred must have a floating"):
    fn(np.ones((3, 5), np.int32), ok)
  for bad in (0.0, -1e-7, float("nan")):
    with pytest.raises(
      ValueError,
      match=rf"{fname}: eps must be "
      r"(finite|> 0)",
    ):
      fn(ok, ok, eps=bad)
  with pytest.raises(TypeError, match=rf"{fname}: eps must be a real number"):
    fn(ok, ok, eps="1e-7")
  if name == "probiou":
    return
  with pytest.raises(ValueError, match=rf"{fname}: fun must be one of"):
    fn(ok, ok, fun="exp")
  for bad in (0.5, float("inf"), -1.0):
    with pytest.raises(
      ValueError,
      match=rf"{fname}: tau must be "
      r"(finite|>= 1)",
    ):
      fn(ok, ok, tau=bad)
  with pytest.raises(TypeError, match=rf"{fname}: tau must be a real number"):
    fn(ok, ok, tau=None)
  with pytest.raises(ValueError, match=rf"{fname}: tau must be >= 1"):
    jax.jit(lambda p: fn(p, p, tau=0.0))(ok)
