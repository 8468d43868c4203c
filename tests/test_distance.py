"""distance_transform: hand cases, scipy, blocks, conventions, transforms, errors."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import jaxloss
from jaxloss import _distance
from tests import reference_boundary as ref

# Jitted once a shape and option set: one compilation instead of one a
# primitive.
dt = jax.jit(jaxloss.distance_transform, static_argnames=("axis", "sampling"))
RNG = np.random.default_rng(0)


def _random_mask(shape, p_true=0.8, seed=0):
  return np.random.default_rng(seed).random(shape) < p_true


# 1. Hand cases.


def test_one_line_by_hand():
  mask = jnp.array([True, True, False, True, True, True])
  np.testing.assert_array_equal(dt(mask), [2, 1, 0, 1, 2, 3])
  np.testing.assert_array_equal(
    dt(mask, sampling=0.5), [1, 0.5, 0, 0.5, 1, 1.5]
  )


def test_two_by_three_by_hand():
  mask = jnp.array([[True, True, True], [False, True, True]])
  want = [[1, np.sqrt(2), np.sqrt(5)], [0, 1, 2]]
  np.testing.assert_allclose(dt(mask), want, rtol=1e-7)
  # Rows 2 apart: the pixel above the background is 2 away.
  want = [[2, np.sqrt(5), np.sqrt(8)], [0, 1, 2]]
  np.testing.assert_allclose(dt(mask, sampling=(2.0, 1.0)), want, rtol=1e-7)
  # Each row on its own: the first row has no background.
  np.testing.assert_array_equal(dt(mask, axis=1), [[np.inf] * 3, [0, 1, 2]])
  np.testing.assert_array_equal(
    dt(mask, axis=0), [[1, np.inf, np.inf], [0, np.inf, np.inf]]
  )


def test_far_corner_of_a_single_background_pixel():
  # The slow case: one False element, distances up to the image diagonal.
  mask = np.ones((2, 70, 90), bool)
  mask[0, 0, 0] = False
  mask[1, 69, 45] = False
  got = np.asarray(dt(jnp.asarray(mask), axis=(1, 2)))
  yy, xx = np.mgrid[:70, :90]
  np.testing.assert_allclose(got[0], np.hypot(yy, xx), rtol=1e-6)
  np.testing.assert_allclose(got[1], np.hypot(yy - 69, xx - 45), rtol=1e-6)


# 2. Against scipy.


@pytest.mark.parametrize(
  "shape, axis, sampling",
  [
    ((13, 17), None, None),
    ((13, 17), None, (0.7, 2.5)),
    ((3, 9, 11), (1, 2), None),
    ((3, 9, 11), (1, 2), 1.5),
    ((2, 6, 7, 5), (1, 2, 3), (2.5, 0.8, 1.1)),
    ((6, 5, 4, 3), (0, 1, 2), None),  # channels last: one group a class
    ((4, 40), (1,), 0.5),
    ((37,), None, None),
    ((1, 1), None, None),
  ],
)
def test_matches_scipy(shape, axis, sampling):
  mask = _random_mask(shape, seed=len(shape))
  mask.reshape(-1)[0] = False  # every group below has a False element
  got = dt(jnp.asarray(mask), axis=axis, sampling=sampling)
  assert got.dtype == jnp.float32 and got.shape == shape
  axes = tuple(range(len(shape))) if axis is None else axis
  want = ref.edt_groups(mask, axes, sampling)
  np.testing.assert_allclose(got, want, rtol=2e-7, atol=2e-6)


def test_sampling_follows_the_order_of_axis():
  mask = _random_mask((2, 9, 8), seed=3)
  got = dt(jnp.asarray(mask), axis=(2, 1), sampling=(3.0, 0.5))
  want = ref.edt_groups(mask, (1, 2), sampling=(0.5, 3.0))
  np.testing.assert_allclose(got, want, rtol=2e-7, atol=2e-6)
  np.testing.assert_allclose(
    dt(jnp.asarray(mask), axis=(-1, -2), sampling=(3.0, 0.5)),
    want,
    rtol=2e-7,
    atol=2e-6,
  )


@pytest.mark.parametrize("block", [7, 30, 100])
def test_blocks_with_remainders_match_scipy(monkeypatch, block):
  # Blocks smaller than one line (lines split across the inner axis), whole
  # lines with a remainder, and several lines a block.
  monkeypatch.setattr(_distance, "BLOCK_ELEMENTS", block)
  mask = _random_mask((3, 11, 13, 2), p_true=0.9, seed=block)
  got = dt(jnp.asarray(mask), axis=(1, 2), sampling=(1.0, 1.7))
  want = ref.edt_groups(mask, (1, 2), sampling=(1.0, 1.7))
  np.testing.assert_allclose(got, want, rtol=2e-7, atol=2e-6)


@hypothesis.settings(max_examples=5, deadline=None)
@hypothesis.given(
  shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
  p_true=st.floats(0.3, 0.97),
  seed=st.integers(0, 1000),
)
def test_property_equals_scipy_per_group(shape, p_true, seed):
  mask = _random_mask(tuple(shape), p_true, seed)
  axes = tuple(range(len(shape)))
  want = ref.edt_groups(mask, axes)
  np.testing.assert_allclose(dt(jnp.asarray(mask)), want, rtol=2e-7, atol=2e-6)


# 3. Conventions and edge cases.


def test_group_without_background_is_inf_and_leaves_others_alone():
  mask = np.ones((3, 4, 5), bool)
  mask[1, 2, 3] = False
  mask[2] = False
  got = np.asarray(dt(jnp.asarray(mask), axis=(1, 2)))
  assert np.all(np.isinf(got[0])) and not np.any(np.isnan(got))
  np.testing.assert_allclose(
    got[1], ndimage.distance_transform_edt(mask[1]), rtol=1e-7
  )
  np.testing.assert_array_equal(got[2], 0)


def test_empty_and_single_element():
  assert dt(jnp.zeros((0, 5), bool)).shape == (0, 5)
  assert dt(jnp.zeros((3, 0), bool), axis=1).shape == (3, 0)
  np.testing.assert_array_equal(dt(jnp.array([False])), [0])
  np.testing.assert_array_equal(dt(jnp.array([[True]])), [[np.inf]])


def test_large_distances_are_exact():
  # A 1 x 3000 line: squared distances up to 9e6, exact in float32.
  mask = np.ones(3000, bool)
  mask[0] = False
  np.testing.assert_array_equal(dt(jnp.asarray(mask)), np.arange(3000))


# 4. Transforms: jit, vmap, constant under autodiff, export.


def test_jit_and_vmap_agree_with_the_batch_axis():
  mask = jnp.asarray(_random_mask((3, 8, 9), seed=5))
  batched = dt(mask, axis=(1, 2))
  np.testing.assert_array_equal(jax.jit(dt)(mask[0]), batched[0])
  np.testing.assert_array_equal(jax.vmap(dt)(mask), batched)
  np.testing.assert_array_equal(
    jax.jit(lambda m: dt(m, axis=(1, 2), sampling=2.0))(mask), 2 * batched
  )


def test_is_a_constant_of_the_mask_under_every_autodiff_mode():
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 7))
  f = lambda x: jnp.sum(x * dt(x > 0))
  distance = dt(x > 0)
  np.testing.assert_allclose(jax.grad(f)(x), distance)
  _, tangent = jax.jvp(f, (x,), (jnp.ones_like(x),))
  np.testing.assert_allclose(tangent, jnp.sum(distance), rtol=1e-6)
  np.testing.assert_allclose(jax.jacfwd(f)(x), distance)
  hvp = jax.jvp(jax.grad(f), (x,), (jnp.ones_like(x),))[1]
  np.testing.assert_array_equal(hvp, 0)


def test_export_round_trip_and_accelerator_platforms():
  mask = jnp.asarray(_random_mask((2, 9, 10), seed=6))
  f = jax.jit(lambda m: dt(m, axis=(1, 2), sampling=(1.0, 0.5)))
  exported = jax.export.export(f)(mask)
  back = jax.export.deserialize(exported.serialize())
  np.testing.assert_array_equal(back.call(mask), f(mask))
  assert jax.export.export(f, platforms=("cuda", "tpu"))(mask).serialize()


# 5. Bad input.


def test_errors_name_function_and_argument():
  dt = jaxloss.distance_transform  # errors are raised while tracing
  mask = jnp.ones((4, 5), bool)
  with pytest.raises(
    TypeError,
    match=r"distance_transform: mask must be a "
    r"boolean array, got dtype float32",
  ):
    dt(jnp.ones((4, 5)))
  with pytest.raises(
    ValueError,
    match=r"distance_transform: sampling must be "
    r"one number or 2 numbers .* got 3",
  ):
    dt(mask, sampling=(1.0, 1.0, 1.0))
  with pytest.raises(
    ValueError,
    match=r"distance_transform: sampling must be "
    r"one number or 1 numbers",
  ):
    dt(mask, axis=1, sampling=(1.0, 2.0))
  for bad in (0.0, -1.0, (1.0, np.nan), (1.0, np.inf)):
    with pytest.raises(
      ValueError,
      match=r"distance_transform: sampling must "
      r"be positive and finite",
    ):
      dt(mask, sampling=bad)
  with pytest.raises(
    TypeError,
    match=r"distance_transform: sampling must be "
    r"a positive number",
  ):
    dt(mask, sampling="iso")
  with pytest.raises(
    TypeError,
    match=r"distance_transform: sampling must be "
    r"concrete",
  ):
    jax.jit(lambda s: dt(mask, sampling=s))(1.0)
  with pytest.raises(
    ValueError,
    match=r"distance_transform: axis 2 is out of "
    r"range",
  ):
    dt(mask, axis=2)
  with pytest.raises(
    ValueError,
    match=r"distance_transform: axis must name at "
    r"least one axis",
  ):
    dt(mask, axis=())
  with pytest.raises(
    ValueError,
    match=r"distance_transform: axis must name at "
    r"least one axis",
  ):
    dt(jnp.array(True))
  with pytest.raises(
    ValueError,
    match=r"distance_transform: axis \(1, 1\) "
    r"repeats axis 1",
  ):
    dt(mask, axis=(1, 1))
