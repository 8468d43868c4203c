"""Distribution focal loss and its integral: hand cases, references, edges.

Each check runs on one compiled program (``jax.jit``), inputs as arguments;
cases of one shape and dtype share it."""

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
dfl = jaxloss.distribution_focal_loss
f32 = lambda a: np.asarray(a, np.float32)


def bin_logits(seed, shape=SHAPE, n=N, scale=2.0):
  return np.random.default_rng(seed).normal(0, scale, shape + (n,))


def targets(seed, shape=SHAPE, n=N):
  y = np.random.default_rng(seed).uniform(0, n - 1, shape)
  y.flat[0], y.flat[1], y.flat[2] = 0.0, n - 1.0, 3.0  # ends and a bin
  return y


@jax.jit
def run(x, y, w):
  """The loss, the gradients of its sum in (logits, labels), the integral
  of the logits and the gradient of ``sum(w * integral)``."""
  total = lambda a, b: jnp.sum(dfl(a, b))
  weighted = lambda a: jnp.sum(w * jaxloss.distribution_integral(a))
  return (
    dfl(x, y),
    jax.grad(total, argnums=(0, 1))(x, y),
    jaxloss.distribution_integral(x),
    jax.grad(weighted)(x),
  )


@jax.jit
def masked(x, y, where):
  """The masked loss and the gradients of its sum."""
  fn = lambda a, b: dfl(a, b, where=where)
  return fn(x, y), jax.grad(lambda a, b: jnp.sum(fn(a, b)), (0, 1))(x, y)


def ones(x):
  """Integral weights for ``run``: ones, float32 at least."""
  return np.ones(
    x.shape[:-1], np.float64 if x.dtype == np.float64 else np.float32
  )


# 1. Hand cases ------------------------------------------------------------------


def test_hand_cases():
  # Bins 0..3 with S = (0.1, 0.2, 0.3, 0.4); y = 1.25: 0.75 on bin 1, 0.25
  # on bin 2. A target on a bin (the last included) is the cross-entropy
  # to it. One logits vector, scalar targets (vmap).
  s = np.array([0.1, 0.2, 0.3, 0.4])
  ys = f32([1.25, 0, 1, 2, 3])
  got, integral = jax.device_get(
    jax.jit(
      lambda x, ys: (
        jax.vmap(dfl, in_axes=(None, 0))(x, ys),
        jaxloss.distribution_integral(x),
      )
    )(f32(np.log(s)), ys)
  )
  np.testing.assert_allclose(
    got[0], -(0.75 * np.log(0.2) + 0.25 * np.log(0.3)), rtol=1e-6
  )
  np.testing.assert_allclose(got[1:], -np.log(s), rtol=1e-6)
  np.testing.assert_allclose(integral, 0.2 + 0.6 + 1.2, rtol=1e-6)


# 2. References: values and gradients --------------------------------------------


def test_values_and_gradients_match_reference():
  x, y = bin_logits(0), targets(1)
  out = run(f32(x), f32(y), ones(f32(x)))
  assert out[0].shape == SHAPE and out[0].dtype == jnp.float32
  np.testing.assert_allclose(out[0], ref.dfl(x, y), rtol=1e-5, atol=1e-6)
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
    got64, (gx, gy), _, _ = run(x, y, ones(x))
    assert got64.dtype == jnp.float64
    got64, gx, gy = jax.device_get((got64, gx, gy))
  np.testing.assert_allclose(got64, ref.dfl(x, y), rtol=1e-12, atol=1e-13)
  np.testing.assert_allclose(gx, want_x, rtol=1e-6, atol=1e-8)
  np.testing.assert_allclose(np.ravel(gy)[3:], want_y, rtol=1e-6, atol=1e-8)
  assert np.abs(want_y).min() > 0


def test_integral_matches_reference_and_gradient():
  x = bin_logits(2)
  w = np.random.default_rng(3).normal(size=SHAPE)
  _, _, got, _ = run(f32(x), f32(targets(4)), f32(w))
  assert got.shape == SHAPE and got.dtype == jnp.float32
  np.testing.assert_allclose(got, ref.integral(x), rtol=1e-5, atol=1e-6)
  want = references.numerical_grad(lambda x: np.sum(w * ref.integral(x)), x)
  with jax.enable_x64(True):
    g = jax.device_get(run(x, targets(4), w)[3])
  np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-9)


# 3. Identities ------------------------------------------------------------------


def test_minimum_is_the_two_bin_distribution_whose_integral_is_the_target():
  y = f32([0.0, 0.3, 2.5, 6.9, 7.0])
  mass = np.maximum(0, 1 - np.abs(np.arange(N)[None, :] - y[:, None]))
  x = f32(np.log(np.maximum(mass, 1e-30)))  # the optimum
  value, (gx, _), integral, _ = jax.device_get(run(x, y, ones(x)))
  np.testing.assert_allclose(integral, y, atol=1e-6)
  # At the optimum the loss is the entropy of the two-bin split, and the
  # gradient in the logits (softmax - weights) vanishes.
  entropy = -np.sum(
    np.where(mass > 0, mass * np.log(np.where(mass > 0, mass, 1)), 0), -1
  )
  np.testing.assert_allclose(value, entropy, atol=1e-6)
  np.testing.assert_allclose(gx, 0, atol=1e-6)


def test_gradient_in_the_logits_is_softmax_minus_the_two_bin_target():
  x, y = bin_logits(4), targets(5)
  _, (gx, _), _, _ = jax.device_get(run(f32(x), f32(y), ones(f32(x))))
  weights = np.maximum(0, 1 - np.abs(np.arange(N) - y[..., None]))
  np.testing.assert_allclose(
    gx, np.exp(ref._log_softmax(x)) - weights, atol=1e-6
  )


def test_equals_softmax_cross_entropy_on_bins():
  x = f32(bin_logits(6))
  k = np.random.default_rng(7).integers(0, N, SHAPE)
  want = -np.take_along_axis(ref._log_softmax(x), k[..., None], -1)[..., 0]
  got = jax.device_get(run(x, f32(k), ones(x))[0])
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_mask_equals_slicing_and_blocks_nan():
  x, y = f32(bin_logits(8)), f32(targets(9))
  keep = np.random.default_rng(10).uniform(size=SHAPE) < 0.6
  x_bad = np.where(keep[..., None], x, np.nan).astype(np.float32)
  y_bad = np.where(keep, y, np.nan).astype(np.float32)
  value, full, _, _ = jax.device_get(run(x, y, ones(x)))
  got, (gx, gy) = jax.device_get(masked(x_bad, y_bad, keep))
  np.testing.assert_allclose(got, np.where(keep, value, 0), rtol=1e-6)
  np.testing.assert_allclose(
    gx, np.where(keep[..., None], full[0], 0), atol=1e-7
  )
  np.testing.assert_allclose(gy, np.where(keep, full[1], 0), atol=1e-7)
  # A mask broadcasts: one flag per row.
  rows = np.array([True, False, True, True, False])[:, None]
  got = jax.jit(lambda a, b, w: dfl(a, b, where=w))(x, y, rows)
  np.testing.assert_allclose(got, np.where(rows, value, 0), rtol=1e-6)


# 4. Edge cases ------------------------------------------------------------------


def test_extreme_logits_nan_and_all_masked():
  x = f32([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, 1e4]])
  y = f32([0.5, 3.0])
  x_nan, y_nan = x.copy(), y.copy()
  x_nan[0, 0], y_nan[1] = np.nan, np.nan
  all_in, none_in = np.ones(2, bool), np.zeros(2, bool)
  # One program: the masked loss (mask all True, then all False) and its
  # gradients, on finite and on NaN inputs.
  v, g = jax.device_get(masked(x, y, all_in))
  assert np.all(np.isfinite(v))
  assert all(np.all(np.isfinite(a)) for a in g)
  np.testing.assert_allclose(v[1], 0.0, atol=1e-6)  # all mass on bin 3
  # NaN in gives NaN out.
  assert np.isnan(jax.device_get(masked(x_nan, y, all_in)[0])[0])
  assert np.isnan(jax.device_get(masked(x, y_nan, all_in)[0])[1])
  # All masked: zero loss, zero finite gradients.
  loss, (gx, gy) = jax.device_get(masked(x_nan, y_nan, none_in))
  assert np.abs(loss).max() == 0 and np.abs(gx).max() == 0
  assert np.abs(gy).max() == 0
  # The integral; two bins, one entry; an empty batch.
  integral, two_bins, empty = jax.device_get(
    jax.jit(
      lambda x, two, half, none, no_y: (
        jaxloss.distribution_integral(x),
        dfl(two, half),
        dfl(none, no_y),
      )
    )(x, np.zeros(2, np.float32), np.float32(0.5), np.zeros((0, 3)), f32([]))
  )
  assert np.all(np.isfinite(integral))
  np.testing.assert_allclose(integral[1], 3.0)
  np.testing.assert_allclose(two_bins, np.log(2), rtol=1e-6)
  assert empty.shape == (0,)


def test_forward_mode_and_hessian_vector_product():
  x, y = f32(bin_logits(11)), f32(targets(12))
  d = f32(np.random.default_rng(13).normal(size=x.shape))

  @jax.jit
  def directional(a, y, d):
    scalar = lambda a: jnp.sum(dfl(a, y) ** 2)
    return (
      jax.jvp(scalar, (a,), (d,))[1],
      jnp.sum(jax.grad(scalar)(a) * d),
      jax.jvp(jax.grad(scalar), (a,), (d,))[1],
    )

  forward, reverse, hvp = jax.device_get(directional(x, y, d))
  np.testing.assert_allclose(forward, reverse, rtol=1e-4)
  assert np.all(np.isfinite(hvp)) and np.abs(hvp).max() > 0
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
    hvp, fd = jax.device_get(
      check(np.asarray(x, np.float64), np.asarray(d, np.float64))
    )
  np.testing.assert_allclose(hvp, fd, rtol=1e-5, atol=1e-8)


def test_bf16_is_finite_and_close():
  x = bin_logits(14).astype(jnp.bfloat16)
  y = targets(15).astype(jnp.bfloat16)
  got, (gx, _), integral, _ = run(x, y, ones(x))
  assert got.dtype == jnp.float32 and integral.dtype == jnp.float32
  assert gx.dtype == jnp.bfloat16
  want, _, want_integral, _ = jax.device_get(run(f32(x), f32(y), ones(f32(x))))
  got, gx, integral = jax.device_get((got, gx, integral))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert np.all(np.isfinite(np.asarray(gx, np.float32)))
  np.testing.assert_allclose(integral, want_integral, rtol=1e-6)


def test_targets_outside_the_bins_are_reported():
  x = np.zeros((3, N), np.float32)
  checked = jax.jit(checkify.checkify(dfl))
  with jaxloss.value_checks():
    err, _ = checked(x, f32([0.0, 7.0, 7.5]))
    assert "distribution_focal_loss: labels must lie in [0, 7]" in str(
      err.get()
    )
    err, _ = checked(x, f32([0.0, -0.1, 3.0]))
    assert err.get() is not None
    err, _ = checked(x, f32([0.0, 7.0, 3.0]))
    assert err.get() is None
    # Not at masked entries.
    err, _ = jax.jit(checkify.checkify(lambda a, b, w: dfl(a, b, where=w)))(
      x, f32([0.0, 9.0, 3.0]), np.array([True, False, True])
    )
    assert err.get() is None
  # Outside the context, nothing is traced: the program exports.
  exported = jax.export.export(jax.jit(dfl))(x, np.zeros(3, np.float32))
  assert exported.serialize()


# 5. Bad input -------------------------------------------------------------------


def test_bad_input_names_function_and_argument():
  fn = dfl
  zeros = lambda *shape: np.zeros(shape, np.float32)
  with pytest.raises(
    ValueError,
    match=r"distribution_focal_loss: logits must "
    r"have at least 2 bins",
  ):
    fn(zeros(3, 1), zeros(3))
  with pytest.raises(
    ValueError,
    match=r"distribution_focal_loss: logits must "
    r"have rank >= 1",
  ):
    fn(zeros(), zeros())
  with pytest.raises(
    ValueError,
    match=r"distribution_focal_loss: "
    r"labels.shape \(4,\) must equal logits.shape\[:-1\]",
  ):
    fn(zeros(3, 5), zeros(4))
  with pytest.raises(ValueError, match=r"distribution_focal_loss: labels"):
    fn(zeros(3, 5), zeros(3, 5))
  with pytest.raises(
    TypeError,
    match=r"distribution_focal_loss: labels must "
    r"have a floating dtype",
  ):
    fn(zeros(3, 5), np.zeros(3, np.int32))
  with pytest.raises(
    TypeError,
    match=r"distribution_focal_loss: logits must "
    r"have a floating dtype",
  ):
    fn(np.zeros((3, 5), np.int32), zeros(3))
  with pytest.raises(
    TypeError,
    match=r"distribution_focal_loss: where must "
    r"be a boolean",
  ):
    fn(zeros(3, 5), zeros(3), where=np.ones(3, np.float32))
  with pytest.raises(ValueError, match=r"distribution_focal_loss: where.shape"):
    fn(zeros(3, 5), zeros(3), where=np.ones(4, bool))
  with pytest.raises(
    ValueError,
    match=r"distribution_integral: logits must "
    r"have at least 2 bins",
  ):
    jaxloss.distribution_integral(zeros(3, 1))
  with pytest.raises(
    TypeError,
    match=r"distribution_integral: logits must "
    r"have a floating dtype",
  ):
    jaxloss.distribution_integral(np.zeros((3, 4), np.int32))
