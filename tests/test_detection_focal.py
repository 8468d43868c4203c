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


@functools.cache
def compiled(name, **kwargs):
  fn = getattr(jaxloss, name)
  kwargs = dict(kwargs)
  total = lambda x, y: jnp.sum(fn(x, y, **kwargs))
  return jax.jit(functools.partial(fn, **kwargs)), jax.jit(jax.grad(total))


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


# 1. Hand cases ------------------------------------------------------------------


def test_hand_cases():
  log2 = np.log(2.0)
  x = jnp.zeros(3)
  q = jnp.array([1.0, 0.5, 0.0])
  np.testing.assert_allclose(
    jaxloss.varifocal_loss(x, q),
    [log2, 0.5 * log2, 0.75 * 0.25 * log2],
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    jaxloss.quality_focal_loss(x, q), [0.25 * log2, 0.0, 0.25 * log2], rtol=1e-6
  )
  # logit log(3): p = 3/4. Negative: alpha p^2 log 4; QFL at y = 1:
  # (1/4)^2 log(4/3).
  x = jnp.array([np.log(3.0)])
  np.testing.assert_allclose(
    jaxloss.varifocal_loss(x, jnp.zeros(1)),
    [0.75 * 0.5625 * np.log(4.0)],
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    jaxloss.quality_focal_loss(x, jnp.ones(1)),
    [0.0625 * np.log(4 / 3)],
    rtol=1e-6,
  )


# 2. References: values and gradients --------------------------------------------


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_values_and_gradients_match_reference(name, kwargs):
  x, q = logits(0, SHAPE), soft_targets(1, SHAPE)
  reference = functools.partial(REFERENCES[name], **dict(kwargs))
  value, grad = compiled(name, **dict(kwargs))
  got = value(jnp.asarray(x, jnp.float32), jnp.asarray(q, jnp.float32))
  assert got.shape == SHAPE and got.dtype == jnp.float32
  np.testing.assert_allclose(got, reference(x, q), rtol=2e-5, atol=1e-6)
  want = references.numerical_grad(lambda x: np.sum(reference(x, q)), x)
  with jax.enable_x64(True):
    got64 = value(jnp.asarray(x), jnp.asarray(q))
    assert got64.dtype == jnp.float64
    np.testing.assert_allclose(got64, reference(x, q), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
      grad(jnp.asarray(x), jnp.asarray(q)), want, rtol=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_gradient_with_respect_to_soft_labels(name, kwargs):
  # Labels strictly inside (0, 1): the varifocal loss jumps at q = 0.
  x = logits(2, SHAPE)
  q = np.random.default_rng(3).uniform(0.05, 0.95, SHAPE)
  fn = functools.partial(getattr(jaxloss, name), **dict(kwargs))
  reference = functools.partial(REFERENCES[name], **dict(kwargs))
  with jax.enable_x64(True):
    got = jax.grad(lambda q: jnp.sum(fn(jnp.asarray(x), q)))(jnp.asarray(q))
  want = references.numerical_grad(lambda q: np.sum(reference(x, q)), q)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


# 3. Identities ------------------------------------------------------------------


def test_varifocal_target_zero_is_its_negative_term():
  x = jnp.asarray(logits(2, SHAPE), jnp.float32)
  p = jax.nn.sigmoid(x)
  for alpha, gamma in ((0.75, 2.0), (0.5, 1.5)):
    got = compiled("varifocal_loss", alpha=alpha, gamma=gamma)[0](
      x, jnp.zeros(SHAPE)
    )
    np.testing.assert_allclose(
      got, alpha * p**gamma * -jnp.log1p(-p), rtol=1e-5, atol=1e-7
    )


def test_varifocal_positive_is_target_weighted_bce():
  x = jnp.asarray(logits(3, SHAPE), jnp.float32)
  q = jnp.asarray(np.random.default_rng(4).uniform(0.1, 1, SHAPE), jnp.float32)
  bce = jaxloss.focal_loss(x, q, alpha=None, gamma=0.0)
  np.testing.assert_allclose(
    compiled("varifocal_loss")[0](x, q), q * bce, rtol=1e-6, atol=1e-7
  )


def test_varifocal_unweighted_positive_is_bce():
  # iou_weighted=False: a positive's loss is the soft-target BCE itself, a
  # negative's is unchanged.
  x = jnp.asarray(logits(12, SHAPE), jnp.float32)
  q = jnp.asarray(soft_targets(13, SHAPE), jnp.float32)
  bce = jaxloss.focal_loss(x, q, alpha=None, gamma=0.0)
  got = compiled("varifocal_loss", iou_weighted=False)[0](x, q)
  weighted = compiled("varifocal_loss")[0](x, q)
  np.testing.assert_allclose(
    got, jnp.where(q > 0, bce, weighted), rtol=1e-6, atol=1e-7
  )


def test_quality_focal_identities():
  x = jnp.asarray(logits(5, SHAPE), jnp.float32)
  q = jnp.asarray(soft_targets(6, SHAPE), jnp.float32)
  # beta = 0 is BCE with soft targets.
  np.testing.assert_allclose(
    compiled("quality_focal_loss", beta=0.0)[0](x, q),
    jaxloss.focal_loss(x, q, alpha=None, gamma=0.0),
    rtol=1e-6,
    atol=1e-7,
  )
  # Hard targets: the sigmoid focal loss without alpha, gamma = beta.
  hard = (q > 0.5).astype(jnp.float32)
  np.testing.assert_allclose(
    compiled("quality_focal_loss")[0](x, hard),
    jaxloss.focal_loss(x, hard, alpha=None, gamma=2.0),
    rtol=1e-5,
    atol=1e-7,
  )
  # Zero loss and zero gradient where sigma(x) equals the target.
  y = jnp.array([0.2, 0.5, 0.9])
  at = jnp.log(y) - jnp.log1p(-y)
  value, grad = compiled("quality_focal_loss")
  np.testing.assert_allclose(value(at, y), 0, atol=1e-6)
  np.testing.assert_allclose(grad(at, y), 0, atol=1e-5)
  # A fractional beta: |y - sigma|^beta has an infinite slope at 0; exactly
  # there (sigma(0) = 1/2) the double-where power gives 0, not NaN.
  value, grad = compiled("quality_focal_loss", beta=0.5)
  half = jnp.full((3,), 0.5)
  np.testing.assert_array_equal(value(jnp.zeros(3), half), 0)
  np.testing.assert_array_equal(grad(jnp.zeros(3), half), 0)


@pytest.mark.parametrize("name", ["varifocal_loss", "quality_focal_loss"])
def test_masked_equals_sliced_and_blocks_nan(name):
  x = jnp.asarray(logits(7, SHAPE), jnp.float32)
  q = jnp.asarray(soft_targets(8, SHAPE), jnp.float32)
  where = jnp.asarray(np.random.default_rng(9).uniform(size=SHAPE) < 0.6)
  fn = jax.jit(lambda x, q, where: getattr(jaxloss, name)(x, q, where=where))
  grad = jax.jit(jax.grad(lambda x, q, where: jnp.sum(fn(x, q, where))))
  plain = compiled(name)[0](x, q)
  np.testing.assert_allclose(
    fn(x, q, where), jnp.where(where, plain, 0), rtol=1e-6
  )
  g = grad(jnp.where(where, x, jnp.nan), q, where)
  assert bool(jnp.all(jnp.isfinite(g)))
  assert bool(jnp.all(jnp.where(where, True, g == 0)))
  # A row mask broadcasts.
  row = where[:, :1]
  np.testing.assert_allclose(
    fn(x, q, row), jnp.where(jnp.broadcast_to(row, SHAPE), plain, 0), rtol=1e-6
  )
  # All masked: zero loss, zero finite gradient.
  none = jnp.zeros(SHAPE, bool)
  assert float(jnp.abs(fn(x, q, none)).max()) == 0
  assert float(jnp.abs(grad(x, q, none)).max()) == 0


# 4. Edges -----------------------------------------------------------------------


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_extreme_logits_are_finite(name, kwargs):
  x = jnp.array([[-1e4, -50.0, 0.0, 50.0, 1e4]] * 3)
  q = jnp.array([[0.0] * 5, [0.7] * 5, [1.0] * 5])
  value, grad = compiled(name, **dict(kwargs))
  v, g = value(x, q), grad(x, q)
  assert bool(jnp.all(jnp.isfinite(v))) and bool(jnp.all(jnp.isfinite(g)))
  # Confident and right costs nothing.
  assert float(v[0, 0]) == 0 and float(v[2, 4]) == 0
  # NaN in, NaN out.
  assert bool(jnp.isnan(value(jnp.full((1,), jnp.nan), jnp.ones(1))[0]))


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
  value, grad = compiled(name, **dict(kwargs))
  for y in (0.0, 1.0, 0.25):
    y = np.full_like(x, y)
    step = 1e-6
    slope = (reference(x + step, y) - reference(x - step, y)) / (2 * step)
    np.testing.assert_allclose(value(x, y), reference(x, y), rtol=1e-5)
    np.testing.assert_allclose(grad(x, y), slope, rtol=1e-4)


@pytest.mark.parametrize("name", ["varifocal_loss", "quality_focal_loss"])
def test_bf16(name):
  x = jnp.asarray(logits(10, SHAPE), jnp.bfloat16)
  q = jnp.asarray(soft_targets(11, SHAPE), jnp.bfloat16)
  value, grad = compiled(name)
  got = value(x, q)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(
    got, value(x.astype(jnp.float32), q.astype(jnp.float32)), rtol=1e-6
  )
  g = grad(x, q)
  assert g.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(g)))


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
  ok = jnp.zeros((2, 3))
  with pytest.raises(TypeError, match=rf"{name}: logits must have a floating"):
    fn(jnp.zeros((2, 3), jnp.int32), ok)
  with pytest.raises(
    ValueError,
    match=rf"{name}: labels.shape \(3,\) must "
    r"equal logits.shape \(2, 3\)",
  ):
    fn(ok, jnp.zeros(3))
  with pytest.raises(ValueError, match=rf"{name}: {option} must be >= 0"):
    fn(ok, ok, **{option: -1.0})
  if name == "varifocal_loss":
    with pytest.raises(
      TypeError, match=r"varifocal_loss: iou_weighted must be True or False"
    ):
      fn(ok, ok, iou_weighted="no")
  with pytest.raises(TypeError, match=rf"{name}: where must be a boolean"):
    fn(ok, ok, where=jnp.ones((2, 3)))
  with jaxloss.value_checks():
    err, _ = checkify.checkify(fn)(ok, jnp.full((2, 3), 1.5))
  with pytest.raises(checkify.JaxRuntimeError, match=r"labels must lie in"):
    err.throw()
