"""Distribution focal loss and its integral: hand cases, references, edges."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxloss
from tests import reference_detection as ref
from tests import references

N = 8
SHAPE = (5, 4)


def bin_logits(seed, shape=SHAPE, n=N, scale=2.0):
  return np.random.default_rng(seed).normal(0, scale, shape + (n,))


def targets(seed, shape=SHAPE, n=N):
  y = np.random.default_rng(seed).uniform(0, n - 1, shape)
  y.flat[0], y.flat[1], y.flat[2] = 0.0, n - 1.0, 3.0  # ends and a bin
  return y


@functools.cache
def compiled(**kwargs):
  """The loss and the gradient of its sum, from one compiled program."""
  fn = functools.partial(jaxloss.distribution_focal_loss, **kwargs)
  total = lambda x, y: jnp.sum(fn(x, y))
  both = jax.jit(lambda x, y: (fn(x, y), jax.grad(total, argnums=(0, 1))(x, y)))
  return (lambda x, y: both(x, y)[0]), (lambda x, y: both(x, y)[1])


@jax.jit
def masked(x, y, where):
  """The masked loss and the gradients of its sum."""
  fn = lambda a, b: jaxloss.distribution_focal_loss(a, b, where=where)
  return fn(x, y), jax.grad(lambda a, b: jnp.sum(fn(a, b)), (0, 1))(x, y)


# 1. Hand cases ------------------------------------------------------------------


def test_hand_cases():
  # Bins 0..3 with S = (0.1, 0.2, 0.3, 0.4); y = 1.25: 0.75 on bin 1, 0.25
  # on bin 2.
  s = np.array([0.1, 0.2, 0.3, 0.4])
  x = jnp.asarray(np.log(s), jnp.float32)
  got = jaxloss.distribution_focal_loss(x, jnp.float32(1.25))
  np.testing.assert_allclose(
    got, -(0.75 * np.log(0.2) + 0.25 * np.log(0.3)), rtol=1e-6
  )
  # A target on a bin (the last included) is the cross-entropy to it.
  for k in range(4):
    got = jaxloss.distribution_focal_loss(x, jnp.float32(k))
    np.testing.assert_allclose(got, -np.log(s[k]), rtol=1e-6)
  np.testing.assert_allclose(
    jaxloss.distribution_integral(x), 0.2 + 0.6 + 1.2, rtol=1e-6
  )


# 2. References: values and gradients --------------------------------------------


def test_values_and_gradients_match_reference():
  x, y = bin_logits(0), targets(1)
  value, grad = compiled()
  got = value(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
  assert got.shape == SHAPE and got.dtype == jnp.float32
  np.testing.assert_allclose(got, ref.dfl(x, y), rtol=1e-5, atol=1e-6)
  want_x = references.numerical_grad(lambda x: np.sum(ref.dfl(x, y)), x)
  # The loss is linear in y between bins; away from the bins (the first
  # three entries sit on bins, where it has a kink) the slope is exact.
  off = y.ravel()[3:]
  want_y = references.numerical_grad(
    lambda v: np.sum(
      ref.dfl(x, np.concatenate([y.ravel()[:3], v]).reshape(SHAPE))
    ),
    off,
  )
  with jax.enable_x64(True):
    got64 = value(jnp.asarray(x), jnp.asarray(y))
    assert got64.dtype == jnp.float64
    np.testing.assert_allclose(got64, ref.dfl(x, y), rtol=1e-12, atol=1e-13)
    gx, gy = grad(jnp.asarray(x), jnp.asarray(y))
  np.testing.assert_allclose(gx, want_x, rtol=1e-6, atol=1e-8)
  np.testing.assert_allclose(np.ravel(gy)[3:], want_y, rtol=1e-6, atol=1e-8)
  assert np.abs(want_y).min() > 0


def test_integral_matches_reference_and_gradient():
  x = bin_logits(2)
  fn = jax.jit(jaxloss.distribution_integral)
  got = fn(jnp.asarray(x, jnp.float32))
  assert got.shape == SHAPE and got.dtype == jnp.float32
  np.testing.assert_allclose(got, ref.integral(x), rtol=1e-5, atol=1e-6)
  w = np.random.default_rng(3).normal(size=SHAPE)
  want = references.numerical_grad(lambda x: np.sum(w * ref.integral(x)), x)
  with jax.enable_x64(True):
    g = jax.grad(lambda x: jnp.sum(jnp.asarray(w) * fn(x)))(jnp.asarray(x))
  np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-9)


# 3. Identities ------------------------------------------------------------------


def test_minimum_is_the_two_bin_distribution_whose_integral_is_the_target():
  y = jnp.array([0.0, 0.3, 2.5, 6.9, 7.0])
  ids = jnp.arange(N, dtype=jnp.float32)
  mass = jnp.maximum(0, 1 - jnp.abs(ids[None, :] - y[:, None]))  # the optimum
  x = jnp.log(jnp.maximum(mass, 1e-30))
  np.testing.assert_allclose(jaxloss.distribution_integral(x), y, atol=1e-6)
  value, grad = compiled()
  # At the optimum the loss is the entropy of the two-bin split, and the
  # gradient in the logits (softmax - weights) vanishes.
  entropy = -jnp.sum(
    jnp.where(mass > 0, mass * jnp.log(jnp.where(mass > 0, mass, 1)), 0), -1
  )
  np.testing.assert_allclose(value(x, y), entropy, atol=1e-6)
  np.testing.assert_allclose(grad(x, y)[0], 0, atol=1e-6)


def test_gradient_in_the_logits_is_softmax_minus_the_two_bin_target():
  x, y = bin_logits(4), targets(5)
  gx, _ = compiled()[1](
    jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
  )
  weights = np.maximum(0, 1 - np.abs(np.arange(N) - y[..., None]))
  np.testing.assert_allclose(
    gx, np.exp(ref._log_softmax(x)) - weights, atol=1e-6
  )


def test_equals_softmax_cross_entropy_on_bins():
  x = jnp.asarray(bin_logits(6), jnp.float32)
  k = np.random.default_rng(7).integers(0, N, SHAPE)
  want = -jnp.take_along_axis(
    jax.nn.log_softmax(x), jnp.asarray(k)[..., None], -1
  )[..., 0]
  got = compiled()[0](x, jnp.asarray(k, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_mask_equals_slicing_and_blocks_nan():
  x = jnp.asarray(bin_logits(8), jnp.float32)
  y = jnp.asarray(targets(9), jnp.float32)
  keep = np.random.default_rng(10).uniform(size=SHAPE) < 0.6
  x_bad = np.where(keep[..., None], x, np.nan).astype(np.float32)
  y_bad = np.where(keep, y, np.nan).astype(np.float32)
  value, grad = compiled()
  got, (gx, gy) = masked(x_bad, y_bad, keep)
  np.testing.assert_allclose(got, np.where(keep, value(x, y), 0), rtol=1e-6)
  full = grad(x, y)
  np.testing.assert_allclose(
    gx, np.where(keep[..., None], full[0], 0), atol=1e-7
  )
  np.testing.assert_allclose(gy, np.where(keep, full[1], 0), atol=1e-7)
  # A mask broadcasts: one flag per row.
  rows = np.array([True, False, True, True, False])[:, None]
  got = jax.jit(lambda a, b, w: jaxloss.distribution_focal_loss(a, b, where=w))(
    x, y, rows
  )
  np.testing.assert_allclose(got, np.where(rows, value(x, y), 0), rtol=1e-6)


# 4. Edge cases ------------------------------------------------------------------


def test_extreme_logits_nan_and_all_masked():
  x = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, 1e4]], np.float32)
  y = np.array([0.5, 3.0], np.float32)
  x_nan, y_nan = x.copy(), y.copy()
  x_nan[0, 0], y_nan[1] = np.nan, np.nan
  # One program: the masked loss (mask all True, then all False) and its
  # gradients, on finite and on NaN inputs.
  v, g = masked(x, y, np.ones(2, bool))
  assert bool(jnp.all(jnp.isfinite(v)))
  assert all(bool(jnp.all(jnp.isfinite(a))) for a in g)
  np.testing.assert_allclose(v[1], 0.0, atol=1e-6)  # all mass on bin 3
  integral = jax.jit(jaxloss.distribution_integral)(x)
  assert bool(jnp.all(jnp.isfinite(integral)))
  np.testing.assert_allclose(integral[1], 3.0)
  # NaN in gives NaN out.
  assert bool(jnp.isnan(masked(x_nan, y, np.ones(2, bool))[0][0]))
  assert bool(jnp.isnan(masked(x, y_nan, np.ones(2, bool))[0][1]))
  # All masked: zero loss, zero finite gradients.
  loss, (gx, gy) = masked(x_nan, y_nan, np.zeros(2, bool))
  assert float(jnp.abs(loss).max()) == 0 and float(jnp.abs(gx).max()) == 0
  assert float(jnp.abs(gy).max()) == 0
  # Two bins, one entry, empty batch.
  np.testing.assert_allclose(
    jaxloss.distribution_focal_loss(jnp.zeros(2), jnp.float32(0.5)),
    np.log(2),
    rtol=1e-6,
  )
  assert jaxloss.distribution_focal_loss(
    jnp.zeros((0, 3)), jnp.zeros(0)
  ).shape == (0,)


def test_forward_mode_and_hessian_vector_product():
  x = jnp.asarray(bin_logits(11), jnp.float32)
  y = jnp.asarray(targets(12), jnp.float32)
  scalar = lambda a: jnp.sum(jaxloss.distribution_focal_loss(a, y) ** 2)
  d = jnp.asarray(np.random.default_rng(13).normal(size=x.shape), jnp.float32)
  forward, reverse, hvp = jax.jit(
    lambda a, d: (
      jax.jvp(scalar, (a,), (d,))[1],
      jnp.sum(jax.grad(scalar)(a) * d),
      jax.jvp(jax.grad(scalar), (a,), (d,))[1],
    )
  )(x, d)
  np.testing.assert_allclose(forward, reverse, rtol=1e-4)
  assert bool(jnp.all(jnp.isfinite(hvp))) and float(jnp.abs(hvp).max()) > 0
  # The HVP of the integral agrees with a difference of gradients.
  integ = lambda a: jnp.sum(jaxloss.distribution_integral(a) ** 2)
  h = 1e-6
  check = jax.jit(
    lambda a, d: (
      jax.jvp(jax.grad(integ), (a,), (d,))[1],
      (jax.grad(integ)(a + h * d) - jax.grad(integ)(a - h * d)) / (2 * h),
    )
  )
  with jax.enable_x64(True):
    hvp, fd = check(np.asarray(x, np.float64), np.asarray(d, np.float64))
  np.testing.assert_allclose(hvp, fd, rtol=1e-5, atol=1e-8)


def test_bf16_is_finite_and_close():
  x = jnp.asarray(bin_logits(14), jnp.bfloat16)
  y = jnp.asarray(targets(15), jnp.bfloat16)
  value, grad = compiled()
  got = value(x, y)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(
    got, value(x.astype(jnp.float32), y.astype(jnp.float32)), rtol=1e-6
  )
  gx, _ = grad(x, y)
  assert gx.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(gx)))
  integral = jaxloss.distribution_integral(x)
  assert integral.dtype == jnp.float32
  np.testing.assert_allclose(
    integral, jaxloss.distribution_integral(x.astype(jnp.float32)), rtol=1e-6
  )


def test_targets_outside_the_bins_are_reported():
  x = jnp.zeros((3, N))
  checked = checkify.checkify(jax.jit(jaxloss.distribution_focal_loss))
  with jaxloss.value_checks():
    err, _ = checked(x, jnp.array([0.0, 7.0, 7.5]))
    assert "distribution_focal_loss: labels must lie in [0, 7]" in str(
      err.get()
    )
    err, _ = checked(x, jnp.array([0.0, -0.1, 3.0]))
    assert err.get() is not None
    err, _ = checked(x, jnp.array([0.0, 7.0, 3.0]))
    assert err.get() is None
    # Not at masked entries.
    err, _ = checkify.checkify(
      jax.jit(lambda a, b, w: jaxloss.distribution_focal_loss(a, b, where=w))
    )(x, jnp.array([0.0, 9.0, 3.0]), jnp.array([True, False, True]))
    assert err.get() is None
  # Outside the context, nothing is traced: the program exports.
  exported = jax.export.export(jax.jit(jaxloss.distribution_focal_loss))(
    x, jnp.zeros(3)
  )
  assert exported.serialize()


# 5. Bad input -------------------------------------------------------------------


def test_bad_input_names_function_and_argument():
  fn = jaxloss.distribution_focal_loss
  with pytest.raises(
    ValueError,
    match=r"distribution_focal_loss: logits must "
    r"have at least 2 bins",
  ):
    fn(jnp.zeros((3, 1)), jnp.zeros(3))
  with pytest.raises(
    ValueError,
    match=r"distribution_focal_loss: logits must "
    r"have rank >= 1",
  ):
    fn(jnp.zeros(()), jnp.zeros(()))
  with pytest.raises(
    ValueError,
    match=r"distribution_focal_loss: "
    r"labels.shape \(4,\) must equal logits.shape\[:-1\]",
  ):
    fn(jnp.zeros((3, 5)), jnp.zeros(4))
  with pytest.raises(ValueError, match=r"distribution_focal_loss: labels"):
    fn(jnp.zeros((3, 5)), jnp.zeros((3, 5)))
  with pytest.raises(
    TypeError,
    match=r"distribution_focal_loss: labels must "
    r"have a floating dtype",
  ):
    fn(jnp.zeros((3, 5)), jnp.zeros(3, jnp.int32))
  with pytest.raises(
    TypeError,
    match=r"distribution_focal_loss: logits must "
    r"have a floating dtype",
  ):
    fn(jnp.zeros((3, 5), jnp.int32), jnp.zeros(3))
  with pytest.raises(
    TypeError,
    match=r"distribution_focal_loss: where must "
    r"be a boolean",
  ):
    fn(jnp.zeros((3, 5)), jnp.zeros(3), where=jnp.ones(3))
  with pytest.raises(ValueError, match=r"distribution_focal_loss: where.shape"):
    fn(jnp.zeros((3, 5)), jnp.zeros(3), where=jnp.ones(4, bool))
  with pytest.raises(
    ValueError,
    match=r"distribution_integral: logits must "
    r"have at least 2 bins",
  ):
    jaxloss.distribution_integral(jnp.zeros((3, 1)))
  with pytest.raises(
    TypeError,
    match=r"distribution_integral: logits must "
    r"have a floating dtype",
  ):
    jaxloss.distribution_integral(jnp.zeros((3, 4), jnp.int32))
