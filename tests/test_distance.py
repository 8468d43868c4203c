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
  @jax.jit
  def run(mask):
    return dt(mask), dt(mask, sampling=0.5)

  plain, half = run(np.array([True, True, False, True, True, True]))
  np.testing.assert_array_equal(plain, [2, 1, 0, 1, 2, 3])
  np.testing.assert_array_equal(half, [1, 0.5, 0, 0.5, 1, 1.5])


def test_two_by_three_by_hand():
  @jax.jit
  def run(mask):
    return (
      dt(mask),
      dt(mask, sampling=(2.0, 1.0)),
      dt(mask, axis=1),
      dt(mask, axis=0),
    )

  mask = np.array([[True, True, True], [False, True, True]])
  plain, spaced, rows, columns = jax.device_get(run(mask))
  want = [[1, np.sqrt(2), np.sqrt(5)], [0, 1, 2]]
  np.testing.assert_allclose(plain, want, rtol=1e-7)
  # Rows 2 apart: the pixel above the background is 2 away.
  want = [[2, np.sqrt(5), np.sqrt(8)], [0, 1, 2]]
  np.testing.assert_allclose(spaced, want, rtol=1e-7)
  # Each row on its own: the first row has no background.
  np.testing.assert_array_equal(rows, [[np.inf] * 3, [0, 1, 2]])
  np.testing.assert_array_equal(
    columns, [[1, np.inf, np.inf], [0, np.inf, np.inf]]
  )


def test_far_corner_of_a_single_background_pixel():
  # The slow case: one False element, distances up to the image diagonal.
  mask = np.ones((2, 70, 90), bool)
  mask[0, 0, 0] = False
  mask[1, 69, 45] = False
  got = np.asarray(dt(mask, axis=(1, 2)))
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
  got = np.asarray(dt(mask, axis=axis, sampling=sampling))
  assert got.dtype == np.float32 and got.shape == shape
  axes = tuple(range(len(shape))) if axis is None else axis
  want = ref.edt_groups(mask, axes, sampling)
  np.testing.assert_allclose(got, want, rtol=2e-7, atol=2e-6)


def test_sampling_follows_the_order_of_axis():
  @jax.jit
  def run(mask):
    return (
      dt(mask, axis=(2, 1), sampling=(3.0, 0.5)),
      dt(mask, axis=(-1, -2), sampling=(3.0, 0.5)),
    )

  mask = _random_mask((2, 9, 8), seed=3)
  got, negative = run(mask)
  want = ref.edt_groups(mask, (1, 2), sampling=(0.5, 3.0))
  np.testing.assert_allclose(got, want, rtol=2e-7, atol=2e-6)
  np.testing.assert_allclose(negative, want, rtol=2e-7, atol=2e-6)


BLOCKS = (7, 30, 100)


def test_blocks_with_remainders_match_scipy(monkeypatch):
  # Blocks smaller than one line (lines split across the inner axis), whole
  # lines with a remainder, and several lines a block. The block size is
  # read while tracing: one program, traced once for each size.
  def run(masks):
    out = []
    for block, mask in zip(BLOCKS, masks):
      monkeypatch.setattr(_distance, "BLOCK_ELEMENTS", block)
      out.append(
        jaxloss.distance_transform(mask, axis=(1, 2), sampling=(1.0, 1.7))
      )
    return out

  masks = [_random_mask((3, 11, 13, 2), p_true=0.9, seed=b) for b in BLOCKS]
  for mask, got in zip(masks, jax.jit(run)(masks)):
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
  np.testing.assert_allclose(dt(mask), want, rtol=2e-7, atol=2e-6)


# 3. Conventions and edge cases.


def test_group_without_background_is_inf_and_leaves_others_alone():
  mask = np.ones((3, 4, 5), bool)
  mask[1, 2, 3] = False
  mask[2] = False
  got = np.asarray(dt(mask, axis=(1, 2)))
  assert np.all(np.isinf(got[0])) and not np.any(np.isnan(got))
  np.testing.assert_allclose(
    got[1], ndimage.distance_transform_edt(mask[1]), rtol=1e-7
  )
  np.testing.assert_array_equal(got[2], 0)


def test_empty_and_single_element():
  @jax.jit
  def run(empty_rows, empty_columns, background, foreground):
    return (
      dt(empty_rows),
      dt(empty_columns, axis=1),
      dt(background),
      dt(foreground),
    )

  empty_rows, empty_columns, background, foreground = run(
    np.zeros((0, 5), bool),
    np.zeros((3, 0), bool),
    np.array([False]),
    np.array([[True]]),
  )
  assert empty_rows.shape == (0, 5)
  assert empty_columns.shape == (3, 0)
  np.testing.assert_array_equal(background, [0])
  np.testing.assert_array_equal(foreground, [[np.inf]])


def test_large_distances_are_exact():
  # A 1 x 3000 line: squared distances up to 9e6, exact in float32.
  mask = np.ones(3000, bool)
  mask[0] = False
  np.testing.assert_array_equal(dt(mask), np.arange(3000))


# 4. Transforms: jit, vmap, constant under autodiff, export.


def test_jit_and_vmap_agree_with_the_batch_axis():
  @jax.jit
  def run(mask):
    """Grouped over axes 1 and 2; the first image alone; vmapped over
    the batch; grouped with spacing 2."""
    return (
      dt(mask, axis=(1, 2)),
      dt(mask[0]),
      jax.vmap(dt)(mask),
      dt(mask, axis=(1, 2), sampling=2.0),
    )

  batched, first, mapped, spaced = jax.device_get(
    run(_random_mask((3, 8, 9), seed=5))
  )
  np.testing.assert_array_equal(first, batched[0])
  np.testing.assert_array_equal(mapped, batched)
  np.testing.assert_array_equal(spaced, 2 * batched)


def test_is_a_constant_of_the_mask_under_every_autodiff_mode():
  @jax.jit
  def run(x, ones):
    """The distances, then grad, jvp, jacfwd and a Hessian-vector product
    of f(x) = sum(x * distance(x > 0))."""
    f = lambda x: jnp.sum(x * dt(x > 0))
    return (
      dt(x > 0),
      jax.grad(f)(x),
      jax.jvp(f, (x,), (ones,))[1],
      jax.jacfwd(f)(x),
      jax.jvp(jax.grad(f), (x,), (ones,))[1],
    )

  x = np.random.default_rng(0).standard_normal((6, 7)).astype(np.float32)
  distance, grad, tangent, jac, hvp = jax.device_get(run(x, np.ones_like(x)))
  np.testing.assert_allclose(grad, distance)
  np.testing.assert_allclose(tangent, np.sum(distance), rtol=1e-6)
  np.testing.assert_allclose(jac, distance)
  np.testing.assert_array_equal(hvp, 0)


def test_export_round_trip_and_accelerator_platforms():
  mask = _random_mask((2, 9, 10), seed=6)
  f = jax.jit(lambda m: dt(m, axis=(1, 2), sampling=(1.0, 0.5)))
  exported = jax.export.export(f)(mask)
  back = jax.export.deserialize(exported.serialize())
  np.testing.assert_array_equal(back.call(mask), f(mask))
  assert jax.export.export(f, platforms=("cuda", "tpu"))(mask).serialize()


# 5. Bad input.


def test_errors_name_function_and_argument():
  dt = jaxloss.distance_transform  # errors are raised while tracing
  mask = np.ones((4, 5), bool)
  with pytest.raises(
    TypeError,
    match=r"distance_transform: mask must be a "
    r"boolean array, got dtype float32",
  ):
    dt(np.ones((4, 5), np.float32))
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
    dt(np.array(True))
  with pytest.raises(
    ValueError,
    match=r"distance_transform: axis \(1, 1\) "
    r"repeats axis 1",
  ):
    dt(mask, axis=(1, 1))
