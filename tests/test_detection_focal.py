"""Varifocal and quality focal losses: hand cases, references, identities, edges."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxloss
from tests import references

# float64 references, written from the papers ---------------------------------


def _log_sigmoid(x):
  return -np.logaddexp(0.0, -x)


def varifocal_reference(x, q, alpha=0.75, gamma=2.0, iou_weighted=True):
  """VarifocalNet (Zhang et al. 2021), Eq. 2; ``iou_weighted=False`` gives
  the positives weight 1 (mmdetection's option)."""
  x = np.asarray(x, np.float64)
  q = np.asarray(q, np.float64)
  log_p, log_1mp = _log_sigmoid(x), _log_sigmoid(-x)
  weight = q if iou_weighted else 1.0
  positive = -weight * (q * log_p + (1 - q) * log_1mp)
  negative = -alpha * np.exp(gamma * log_p) * log_1mp
  return np.where(q > 0, positive, negative)


def quality_focal_reference(x, y, beta=2.0):
  """Generalized Focal Loss (Li et al. 2020), Eq. 5."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  # y - sigma(x) without cancellation: y sigma(-x) - (1 - y) sigma(x).
  distance = y * np.exp(_log_sigmoid(-x)) - (1 - y) * np.exp(_log_sigmoid(x))
  bce = -(y * _log_sigmoid(x) + (1 - y) * _log_sigmoid(-x))
  return np.abs(distance) ** beta * bce


def soft_targets(seed, shape):
  """Mostly 0, some IoUs in (0, 1), some exactly 1."""
  rng = np.random.default_rng(seed)
  q = rng.uniform(0.05, 1.0, shape)
  q = np.where(rng.uniform(size=shape) < 0.5, 0.0, q)
  return np.where(rng.uniform(size=shape) < 0.1, 1.0, q)


def logits(seed, shape, scale=4.0):
  return np.random.default_rng(seed).normal(0, scale, shape)


SHAPE = (6, 5)


@functools.partial(jax.jit, static_argnames=("name", "options"))
def _compiled(x, y, where, *, name, options):
  fn = lambda x, y: getattr(jaxloss, name)(x, y, where=where, **dict(options))
  total = lambda x, y: jnp.sum(fn(x, y))
  return fn(x, y), *jax.grad(total, argnums=(0, 1))(x, y)


def run(name, x, y, where=None, **options):
  """``jaxloss.<name>(x, y, where=where, **options)`` and the gradients of
  its sum with respect to ``x`` and ``y``: one compiled program for each
  loss, options, shapes and dtypes, the inputs its arguments."""
  options = tuple(sorted(options.items()))
  return jax.device_get(_compiled(x, y, where, name=name, options=options))


REFERENCES = {
  "varifocal_loss": varifocal_reference,
  "quality_focal_loss": quality_focal_reference,
}
CONFIGS = [
  ("varifocal_loss", ()),
  ("varifocal_loss", (("alpha", 0.25), ("gamma", 1.5))),
  ("varifocal_loss", (("gamma", 0.5),)),
  ("varifocal_loss", (("iou_weighted", False),)),
  ("varifocal_loss", (("iou_weighted", False), ("gamma", 0.5))),
  ("quality_focal_loss", ()),
  ("quality_focal_loss", (("beta", 1.5),)),
  ("quality_focal_loss", (("beta", 0.5),)),
]


def f32(x):
  return np.asarray(x, np.float32)


# 1. Hand cases ------------------------------------------------------------------


def test_hand_cases():
  @jax.jit
  def hand(x, q, x3):
    return (
      jaxloss.varifocal_loss(x, q),
      jaxloss.quality_focal_loss(x, q),
      jaxloss.varifocal_loss(x3, jnp.zeros(1)),
      jaxloss.quality_focal_loss(x3, jnp.ones(1)),
    )

  # logit log(3): p = 3/4. Negative: alpha p^2 log 4; QFL at y = 1:
  # (1/4)^2 log(4/3).
  vfl, qfl, vfl3, qfl3 = hand(
    np.zeros(3, np.float32), f32([1.0, 0.5, 0.0]), f32([np.log(3.0)])
  )
  log2 = np.log(2.0)
  np.testing.assert_allclose(
    vfl, [log2, 0.5 * log2, 0.75 * 0.25 * log2], rtol=1e-6
  )
  np.testing.assert_allclose(qfl, [0.25 * log2, 0.0, 0.25 * log2], rtol=1e-6)
  np.testing.assert_allclose(vfl3, [0.75 * 0.5625 * np.log(4.0)], rtol=1e-6)
  np.testing.assert_allclose(qfl3, [0.0625 * np.log(4 / 3)], rtol=1e-6)


# 2. References: values and gradients --------------------------------------------


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_values_and_gradients_match_reference(name, kwargs):
  x, q = logits(0, SHAPE), soft_targets(1, SHAPE)
  reference = functools.partial(REFERENCES[name], **dict(kwargs))
  got, _, _ = run(name, f32(x), f32(q), **dict(kwargs))
  assert got.shape == SHAPE and got.dtype == jnp.float32
  np.testing.assert_allclose(got, reference(x, q), rtol=2e-5, atol=1e-6)
  want = references.numerical_grad(lambda x: np.sum(reference(x, q)), x)
  with jax.enable_x64(True):
    got64, grad, _ = run(name, x, q, **dict(kwargs))
  assert got64.dtype == jnp.float64
  np.testing.assert_allclose(got64, reference(x, q), rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_gradient_with_respect_to_soft_labels(name, kwargs):
  # Labels strictly inside (0, 1): the varifocal loss jumps at q = 0.
  x = logits(2, SHAPE)
  q = np.random.default_rng(3).uniform(0.05, 0.95, SHAPE)
  reference = functools.partial(REFERENCES[name], **dict(kwargs))
  with jax.enable_x64(True):
    _, _, got = run(name, x, q, **dict(kwargs))
  want = references.numerical_grad(lambda q: np.sum(reference(x, q)), q)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


# 3. Identities ------------------------------------------------------------------


def test_varifocal_target_zero_is_its_negative_term():
  x = f32(logits(2, SHAPE))
  p = 1 / (1 + np.exp(-np.float64(x)))
  for options in ({}, {"alpha": 0.5, "gamma": 1.5}):
    alpha, gamma = options.get("alpha", 0.75), options.get("gamma", 2.0)
    got, _, _ = run("varifocal_loss", x, np.zeros(SHAPE, np.float32), **options)
    np.testing.assert_allclose(
      got, alpha * p**gamma * -np.log1p(-p), rtol=1e-5, atol=1e-7
    )


def bce(x, y):
  """focal_loss without alpha at gamma 0: the binary cross-entropy."""
  return run("focal_loss", x, y, alpha=None, gamma=0.0)[0]


def test_varifocal_positive_is_target_weighted_bce():
  x = f32(logits(3, SHAPE))
  q = f32(np.random.default_rng(4).uniform(0.1, 1, SHAPE))
  np.testing.assert_allclose(
    run("varifocal_loss", x, q)[0], q * bce(x, q), rtol=1e-6, atol=1e-7
  )


def test_varifocal_unweighted_positive_is_bce():
  # iou_weighted=False: a positive's loss is the soft-target BCE itself, a
  # negative's is unchanged.
  x = f32(logits(12, SHAPE))
  q = f32(soft_targets(13, SHAPE))
  got, _, _ = run("varifocal_loss", x, q, iou_weighted=False)
  weighted, _, _ = run("varifocal_loss", x, q)
  np.testing.assert_allclose(
    got, np.where(q > 0, bce(x, q), weighted), rtol=1e-6, atol=1e-7
  )


def test_quality_focal_identities():
  x = f32(logits(5, SHAPE))
  q = f32(soft_targets(6, SHAPE))
  # beta = 0 is BCE with soft targets.
  np.testing.assert_allclose(
    run("quality_focal_loss", x, q, beta=0.0)[0],
    bce(x, q),
    rtol=1e-6,
    atol=1e-7,
  )
  # Hard targets: the sigmoid focal loss without alpha, gamma = beta.
  hard = (q > 0.5).astype(np.float32)
  np.testing.assert_allclose(
    run("quality_focal_loss", x, hard)[0],
    run("focal_loss", x, hard, alpha=None, gamma=2.0)[0],
    rtol=1e-5,
    atol=1e-7,
  )
  # Zero loss and zero gradient where sigma(x) equals the target.
  y = f32([0.2, 0.5, 0.9])
  at = np.log(y) - np.log1p(-y)
  value, grad, _ = run("quality_focal_loss", at, y)
  np.testing.assert_allclose(value, 0, atol=1e-6)
  np.testing.assert_allclose(grad, 0, atol=1e-5)
  # A fractional beta: |y - sigma|^beta has an infinite slope at 0; exactly
  # there (sigma(0) = 1/2) the double-where power gives 0, not NaN.
  half = np.full((3,), 0.5, np.float32)
  value, grad, _ = run(
    "quality_focal_loss", np.zeros(3, np.float32), half, beta=0.5
  )
  np.testing.assert_array_equal(value, 0)
  np.testing.assert_array_equal(grad, 0)


@pytest.mark.parametrize("name", ["varifocal_loss", "quality_focal_loss"])
def test_masked_equals_sliced_and_blocks_nan(name):
  x = f32(logits(7, SHAPE))
  q = f32(soft_targets(8, SHAPE))
  where = np.random.default_rng(9).uniform(size=SHAPE) < 0.6
  plain, _, _ = run(name, x, q)
  masked, _, _ = run(name, x, q, where)
  np.testing.assert_allclose(masked, np.where(where, plain, 0), rtol=1e-6)
  _, g, _ = run(name, np.where(where, x, np.nan), q, where)
  assert np.all(np.isfinite(g))
  assert np.all(np.where(where, True, g == 0))
  # A row mask broadcasts.
  row = where[:, :1]
  np.testing.assert_allclose(
    run(name, x, q, row)[0],
    np.where(np.broadcast_to(row, SHAPE), plain, 0),
    rtol=1e-6,
  )
  # All masked: zero loss, zero finite gradient.
  value, g, _ = run(name, x, q, np.zeros(SHAPE, bool))
  assert float(np.abs(value).max()) == 0
  assert float(np.abs(g).max()) == 0


# 4. Edges -----------------------------------------------------------------------


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_extreme_logits_are_finite(name, kwargs):
  # Of SHAPE, as the references' inputs (one compiled program): three rows
  # of extreme logits, a row of NaN (target 1: NaN out), two rows of 0.
  x = np.zeros(SHAPE, np.float32)
  x[:3] = [-1e4, -50.0, 0.0, 50.0, 1e4]
  x[3] = np.nan
  q = np.zeros(SHAPE, np.float32)
  q[1:3] = [[0.7], [1.0]]
  q[3] = 1.0
  v, g, _ = run(name, x, q, **dict(kwargs))
  assert np.all(np.isfinite(v[:3])) and np.all(np.isfinite(g[:3]))
  # Confident and right costs nothing.
  assert float(v[0, 0]) == 0 and float(v[2, 4]) == 0
  assert np.all(np.isnan(v[3]))


SATURATED = [
  ("focal_loss", (("alpha", None), ("gamma", 0.0)), np.array([80.0, 30.0])),
  ("focal_loss", (), np.array([])),
  ("focal_loss", (("gamma", 0.5),), np.array([])),
  ("varifocal_loss", (), np.array([])),
  ("varifocal_loss", (("iou_weighted", False),), np.array([])),
  ("quality_focal_loss", (), np.array([])),
]


@pytest.mark.parametrize("name, kwargs, wider", SATURATED)
def test_saturated_logits_keep_relative_accuracy(name, kwargs, wider):
  # Where sigma(x) rounds to 0 or 1 in float32, sp(x) - x y and sigma(x) - y
  # cancel: the loss at x = 17, y = 1 came out 0 instead of 4e-8, at x = 10
  # 1% off, and its gradient 0. Compared elementwise, relative, no atol.
  x = np.concatenate([[-20.0, -17.0, -10.0, 10.0, 17.0, 20.0], wider, -wider])
  reference = functools.partial(
    {"focal_loss": references.sigmoid_focal, **REFERENCES}[name],
    **dict(kwargs),
  )
  for y in (0.0, 1.0, 0.25):
    y = np.full_like(x, y)
    step = 1e-6
    slope = (reference(x + step, y) - reference(x - step, y)) / (2 * step)
    value, grad, _ = run(name, f32(x), f32(y), **dict(kwargs))
    np.testing.assert_allclose(value, reference(x, y), rtol=1e-5)
    np.testing.assert_allclose(grad, slope, rtol=1e-4)


@pytest.mark.parametrize("name", ["varifocal_loss", "quality_focal_loss"])
def test_bf16(name):
  x = f32(logits(10, SHAPE)).astype(jnp.bfloat16)
  q = f32(soft_targets(11, SHAPE)).astype(jnp.bfloat16)
  got, g, _ = run(name, x, q)
  assert got.dtype == jnp.float32
  want, _, _ = run(name, x.astype(np.float32), q.astype(np.float32))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert g.dtype == jnp.bfloat16 and np.all(np.isfinite(g))


# 5. Bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
  "name, option",
  [
    ("varifocal_loss", "alpha"),
    ("varifocal_loss", "gamma"),
    ("quality_focal_loss", "beta"),
  ],
)
def test_bad_input(name, option):
  fn = getattr(jaxloss, name)
  ok = np.zeros((2, 3), np.float32)
  with pytest.raises(TypeError, match=rf"{name}: logits must have a floating"):
    fn(np.zeros((2, 3), np.int32), ok)
  with pytest.raises(
    ValueError,
    match=rf"{name}: labels.shape \(3,\) must "
    r"equal logits.shape \(2, 3\)",
  ):
    fn(ok, np.zeros(3, np.float32))
  with pytest.raises(ValueError, match=rf"{name}: {option} must be >= 0"):
    fn(ok, ok, **{option: -1.0})
  if name == "varifocal_loss":
    with pytest.raises(
      TypeError, match=r"varifocal_loss: iou_weighted must be True or False"
    ):
      fn(ok, ok, iou_weighted="no")
  with pytest.raises(TypeError, match=rf"{name}: where must be a boolean"):
    fn(ok, ok, where=np.ones((2, 3), np.float32))
  with jaxloss.value_checks():
    err, _ = checkify.checkify(jax.jit(fn))(
      ok, np.full((2, 3), 1.5, np.float32)
    )
  with pytest.raises(checkify.JaxRuntimeError, match=r"labels must lie in"):
    err.throw()
