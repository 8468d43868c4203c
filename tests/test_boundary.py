"""Boundary loss, Hausdorff-DT and -ER losses, soft skeleton and clDice.

Hand cases, float64 references (tests/reference_boundary.py) for values and
gradients, identities, every transform, edge cases, bf16 and bad input.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxloss
from tests import reference_boundary as ref
from tests import references

STATIC = (
  "axis",
  "classes",
  "sampling",
  "iterations",
  "erosions",
  "alpha",
  "smooth",
)


def _jit(fn):
  """``jax.jit`` with the options that select the computation static (class
  ids as tuples): one compilation a shape and option set, shared by tests."""
  params = inspect.signature(fn).parameters
  return jax.jit(fn, static_argnames=tuple(a for a in STATIC if a in params))


boundary_loss = _jit(jaxloss.boundary_loss)
hausdorff_dt_loss = _jit(jaxloss.hausdorff_dt_loss)
log_hausdorff_dt_loss = _jit(jaxloss.log_hausdorff_dt_loss)
hausdorff_er_loss = _jit(jaxloss.hausdorff_er_loss)
cldice_loss = _jit(jaxloss.cldice_loss)
soft_skeleton = _jit(jaxloss.soft_skeleton)

KEY = jax.random.PRNGKey(11)
C = 3


def _batch(shape=(2, 7, 8), num_classes=C, seed=0):
  """Probabilities and blob-like class ids (regions, not salt and pepper)."""
  k1, k2 = jax.random.split(jax.random.fold_in(KEY, seed))
  probs = jax.nn.softmax(2 * jax.random.normal(k1, shape + (num_classes,)))
  coarse = jax.random.randint(
    k2, (shape[0],) + tuple((n + 2) // 3 for n in shape[1:]), 0, num_classes
  )
  for axis in range(1, len(shape)):
    coarse = jnp.repeat(coarse, 3, axis=axis)
  ids = coarse[(slice(None),) + tuple(slice(0, n) for n in shape[1:])]
  return probs, ids


LOSSES = {
  "boundary": (boundary_loss, ref.boundary),
  "hausdorff": (hausdorff_dt_loss, ref.hausdorff_dt),
  "log_hausdorff": (log_hausdorff_dt_loss, ref.log_hausdorff_dt),
  "hausdorff_er": (hausdorff_er_loss, ref.hausdorff_er),
  "cldice": (cldice_loss, ref.cldice),
}

# One jitted value-and-gradient a loss, shared by the tests (compiling the
# skeleton's gradient is the slow part of this file). Options that select
# the computation are static; class ids are passed as tuples.
STEP = {name: _jit(jax.value_and_grad(fn)) for name, (fn, _) in LOSSES.items()}

# 1. Hand cases.

STRIP = jnp.array([[0.0, 1.0, 1.0, 1.0, 0.0]])[..., None]
STRIP_P = jnp.array([[0.2, 0.9, 1.0, 0.8, 0.1]])[..., None]


def test_hand_cases_on_a_strip():
  # phi = (1, 0, -1, 0, 1); d_t = d_p = (1, 1, 2, 1, 1).
  np.testing.assert_allclose(
    boundary_loss(STRIP_P, STRIP), (0.2 - 1.0 + 0.1) / 5, rtol=1e-6
  )
  np.testing.assert_allclose(
    hausdorff_dt_loss(STRIP_P, STRIP),
    2 * (0.04 + 0.01 + 0.04 + 0.01) / 5,
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    hausdorff_dt_loss(STRIP_P, STRIP, alpha=1.0),
    (0.04 * 2 + 0.01 * 2 + 0.04 * 2 + 0.01 * 2) / 5,
    rtol=1e-5,
  )
  # Pixels 2 apart: every distance doubles.
  np.testing.assert_allclose(
    boundary_loss(STRIP_P, STRIP, sampling=2.0),
    (0.2 * 2 + 0.9 * -1 + 1.0 * -3 + 0.8 * -1 + 0.1 * 2) / 5,
    rtol=1e-6,
  )


def test_hand_case_prediction_off_target():
  # Target region at pixel 0; the prediction puts its mass at pixel 3.
  t = jnp.array([[1.0, 0.0, 0.0, 0.0]])[..., None]
  p = jnp.array([[0.0, 0.0, 0.0, 1.0]])[..., None]
  # phi = (0, 1, 2, 3): the false positive costs its distance, 3.
  np.testing.assert_allclose(boundary_loss(p, t), 3 / 4, rtol=1e-6)
  # d_t = (1, 1, 2, 3), d_p = (3, 2, 1, 1); errors at pixels 0 and 3.
  np.testing.assert_allclose(
    hausdorff_dt_loss(p, t), ((9 + 1) + (1 + 9)) / 4, rtol=1e-6
  )


def test_hausdorff_er_hand_case():
  # A 3 x 3 image wrong everywhere. Erosion 1: the cross means are 1 (centre),
  # 4/5 (edges), 3/5 (corners); minus 1/2 and rescaled: 1, 1/2, 0 (sum 3).
  # Erosion 2: 3/5, 3/10, 1/5, minus 1/2: only the centre is left (1).
  # Erosion 3: nothing. Weights k^alpha.
  wrong = jnp.ones((1, 3, 3, 1))
  right = jnp.zeros_like(wrong)
  for kwargs, total in [
    ({}, 3 + 4),
    ({"alpha": 1.0}, 3 + 2),
    ({"erosions": 1}, 3),
    ({"erosions": 0}, 0),
  ]:
    np.testing.assert_allclose(
      hausdorff_er_loss(wrong, right, **kwargs), total / 9, rtol=1e-6
    )
  # A single wrong pixel is gone after one erosion (its mean is 1/5).
  one = right.at[0, 1, 1, 0].set(1.0)
  assert float(hausdorff_er_loss(one, right)) == 0.0


@pytest.mark.parametrize("spatial", [(6, 7), (3, 4, 5)])
def test_hausdorff_er_in_kornia_layout(spatial):
  """The documented mapping: kornia's pred ``[B, C, *spatial]`` and integer
  target ``[B, 1, *spatial]``, the mean over B, C and the pixels."""
  key = jax.random.PRNGKey(len(spatial))
  pred = jax.nn.softmax(jax.random.normal(key, (2, 3) + spatial), axis=1)
  target = jax.random.randint(key, (2, 1) + spatial, 0, 3)
  terms = [
    ref.eroded_errors(
      (np.asarray(pred[b, c], np.float64) - (np.asarray(target[b, 0]) == c))
      ** 2,
      np.ones(spatial, bool),
      2.0,
      10,
    )
    for b in range(2)
    for c in range(3)
  ]
  np.testing.assert_allclose(
    hausdorff_er_loss(jnp.moveaxis(pred, 1, -1), target[:, 0]),
    np.mean(terms),
    rtol=1e-5,
  )


def test_soft_skeleton_of_a_bar_and_a_tube():
  bar = jnp.zeros((1, 5, 6, 1)).at[0, 1:4, :, 0].set(1.0)
  want = np.zeros((1, 5, 6, 1))
  want[0, 2, :, 0] = 1
  np.testing.assert_array_equal(soft_skeleton(bar), want)
  # A 3 x 3 tube along the depth axis of a volume: its axis.
  tube = jnp.zeros((1, 4, 5, 5, 1)).at[0, :, 1:4, 1:4, 0].set(1.0)
  want = np.zeros((1, 4, 5, 5, 1))
  want[0, :, 2, 2, 0] = 1
  np.testing.assert_array_equal(soft_skeleton(tube), want)
  # Zero iterations keep only what one opening removes: nothing here.
  np.testing.assert_array_equal(soft_skeleton(bar, iterations=0), 0)


def test_cldice_hand_case():
  target = jnp.zeros((1, 5, 5, 1)).at[0, 1:4, :, 0].set(1.0)
  probs = target.at[0, :, 3:, 0].set(0.0)
  # T_prec = 2 / 2, T_sens = 3 / 5; with smooth 1: 3 / 3 and 4 / 6.
  np.testing.assert_allclose(
    cldice_loss(probs, target, smooth=0.0), 1 - 2 * 0.6 / 1.6, rtol=1e-6
  )
  np.testing.assert_allclose(
    cldice_loss(probs, target), 1 - 2 * (4 / 6) / (1 + 4 / 6), rtol=1e-6
  )
  assert float(cldice_loss(target, target)) == 0.0


# 2. Float64 references, values and gradients.


VARIANTS = [
  {},
  {"axis": (1, 2), "classes": "present"},
  {"where": True, "classes": (0, 2)},
  {"soft": True, "sampling": (0.5, 1.5)},
]


@pytest.mark.parametrize(
  "name, variant",
  [
    (name, v)
    for name in sorted(LOSSES)
    for v in VARIANTS
    if name not in ("cldice", "hausdorff_er")
    or "sampling" not in v
    and (name != "cldice" or "axis" not in v)
  ],
)
def test_matches_reference(name, variant):
  fn, reference = LOSSES[name]
  variant = dict(variant)
  probs, ids = _batch(seed=1)
  ids = ids.at[0].set(jnp.where(ids[0] == 1, 0, ids[0]))  # class 1 absent
  if variant.pop("soft", False):
    labels = jax.nn.softmax(3 * jax.random.normal(KEY, probs.shape))
    targets = np.asarray(labels)
  else:
    labels, targets = ids, references.one_hot(ids, C)
  if variant.pop("where", False):
    variant["where"] = jax.random.bernoulli(KEY, 0.8, ids.shape)
  axis = variant.pop("axis", None)
  axes = (0, 1, 2) if axis is None else axis
  np_kwargs = {
    k: (np.asarray(v) if isinstance(v, jax.Array) else v)
    for k, v in variant.items()
  }

  want = reference(probs, targets, axes, **np_kwargs)
  if axis is not None:  # per image: values only
    got = jax.jit(lambda p: fn(p, labels, axis=axis, **variant))(probs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    return
  value, grad = STEP[name](probs, labels, **variant)
  np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6)
  _check_directional_derivatives(
    lambda p: reference(p, targets, axes, **np_kwargs), probs, grad
  )


def _check_directional_derivatives(reference, x, grad, eps=1e-6):
  """``<grad, v>`` against the reference's central difference along ``v``.

  Three random directions (a full central-difference gradient evaluates the
  reference twice an element).
  """
  x = np.asarray(x, np.float64)
  for seed in range(3):
    v = np.random.default_rng(seed).normal(size=x.shape)
    want = (reference(x + eps * v) - reference(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(
      np.vdot(np.asarray(grad, np.float64), v), want, rtol=1e-4, atol=1e-6
    )


def test_volumes_match_reference():
  probs, ids = _batch((1, 4, 5, 6), num_classes=2, seed=2)
  targets = references.one_hot(ids, 2)
  axes = (0, 1, 2, 3)
  spacing = (2.0, 1.0, 0.5)
  np.testing.assert_allclose(
    boundary_loss(probs, ids, sampling=spacing),
    ref.boundary(probs, targets, axes, sampling=spacing),
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    hausdorff_dt_loss(probs, ids, sampling=spacing, alpha=1.5),
    ref.hausdorff_dt(probs, targets, axes, sampling=spacing, alpha=1.5),
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    cldice_loss(probs, ids, iterations=2),
    ref.cldice(probs, targets, axes, iterations=2),
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    hausdorff_er_loss(probs, ids, erosions=3, alpha=1.5),
    ref.hausdorff_er(probs, targets, axes, erosions=3, alpha=1.5),
    rtol=1e-5,
  )


@pytest.mark.parametrize("iterations", [0, 3])
def test_soft_skeleton_matches_reference(iterations):
  probs, _ = _batch(seed=3)
  skeleton = jax.jit(lambda p: soft_skeleton(p, iterations=iterations))
  np.testing.assert_allclose(
    skeleton(probs), ref.soft_skeleton(probs, iterations), atol=1e-6
  )
  weights = np.asarray(jax.random.uniform(KEY, probs.shape))
  got_grad = jax.jit(jax.grad(lambda p: jnp.sum(weights * skeleton(p))))(probs)
  _check_directional_derivatives(
    lambda p: (weights * ref.soft_skeleton(p, iterations)).sum(),
    probs,
    got_grad,
  )


# 3. Identities.


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_masked_pixels_carry_nothing(name):
  fn, _ = LOSSES[name]
  probs, ids = _batch(seed=4)
  ids = ids.at[0, :2].set(255)  # an ignored band
  where = ids != 255
  bad = probs.at[0, :2].set(jnp.nan)  # ignored pixels may hold anything
  value, grad = STEP[name](bad, ids, where=where)
  clean_value, clean_grad = STEP[name](probs, ids, where=where)
  np.testing.assert_allclose(value, clean_value, rtol=1e-6)
  np.testing.assert_allclose(grad, clean_grad, rtol=1e-6)
  assert bool(jnp.all(grad[0, :2] == 0))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_per_element_mask_is_each_class_on_its_own_pixels(name):
  fn, _ = LOSSES[name]
  probs, ids = _batch(seed=6)
  where = jax.random.bernoulli(KEY, 0.7, probs.shape)
  targets = jax.nn.one_hot(ids, C)
  got = fn(probs, ids, where=where, classes=(1,))
  want = fn(probs[..., 1:2], targets[..., 1:2], where=where[..., 1])
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_hausdorff_alpha_zero_is_twice_the_mse():
  probs, ids = _batch(seed=5)
  t = jax.nn.one_hot(ids, C)
  np.testing.assert_allclose(
    hausdorff_dt_loss(probs, ids, alpha=0.0),
    2 * jnp.mean((probs - t) ** 2),
    rtol=1e-6,
  )


def test_log_hausdorff_is_log1p_of_hausdorff():
  probs, ids = _batch(seed=5)
  for kwargs in ({}, {"axis": (1, 2), "alpha": 1.0, "classes": "present"}):
    np.testing.assert_allclose(
      log_hausdorff_dt_loss(probs, ids, **kwargs),
      jnp.log1p(hausdorff_dt_loss(probs, ids, **kwargs)),
      rtol=1e-6,
    )


def test_perfect_predictions():
  _, ids = _batch(seed=6)
  hard = jax.nn.one_hot(ids, C)
  assert float(hausdorff_dt_loss(hard, ids)) == 0.0
  assert float(log_hausdorff_dt_loss(hard, ids)) == 0.0
  assert float(hausdorff_er_loss(hard, ids)) == 0.0
  assert float(cldice_loss(hard, ids)) == 0.0
  # The boundary loss of the target itself: minus the mean inner depth.
  depth = ref.edt_groups(np.asarray(hard) > 0.5, (1, 2))
  depth = np.where(np.isinf(depth), 1, depth)  # no background: phi = 0
  np.testing.assert_allclose(
    boundary_loss(hard, ids),
    -np.sum(np.where(hard > 0, depth - 1, 0)) / hard.size,
    rtol=1e-6,
  )


# 4. Transforms: jit, vmap, grad, jvp, jacfwd, HVP and export of every public
# function run in the API table (tests/test_api.py); here the value checks.


def test_value_checks_report_bad_probs_and_labels_at_valid_pixels_only():
  probs, ids = _batch(seed=8)
  checked = checkify.checkify(jax.jit(jaxloss.boundary_loss))
  with jaxloss.value_checks():
    err, _ = checked(probs * 2, ids)
    assert "boundary_loss: probs must lie in [0, 1]" in err.get()
    err, _ = checked(probs, ids.at[0, 0, 0].set(3))
    assert "boundary_loss: labels must lie in [0, 3)" in err.get()
    bad = ids.at[0, 0, 0].set(255)
    err, _ = checkify.checkify(
      jax.jit(lambda p, y: cldice_loss(p, y, where=y != 255))
    )(probs, bad)
    err.throw()


# 5. Edge cases.


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_absent_full_and_all_masked(name):
  fn, _ = LOSSES[name]
  probs, _ = _batch(seed=9)
  absent = jnp.zeros(probs.shape[:-1], jnp.int32)  # classes 1, 2 absent
  for keep in (True, False):
    where = jnp.full(absent.shape, keep)
    value, grad = STEP[name](probs, absent, where=where, classes="present")
    assert np.isfinite(value) and bool(jnp.all(jnp.isfinite(grad)))
    if not keep:
      assert float(value) == 0.0
      np.testing.assert_array_equal(grad, 0)
  if name == "boundary":
    # No class has a boundary (class 0 fills each image): phi = 0.
    assert float(fn(probs, absent)) == 0.0


def test_single_pixel_one_class_extremes_and_nan():
  one = jnp.array([[[0.7]]])
  probs, ids = _batch(seed=10)
  for name in LOSSES:
    value, grad = STEP[name](one, jnp.zeros((1, 1), jnp.int32))
    assert np.isfinite(value) and bool(jnp.all(jnp.isfinite(grad)))
    # Hard 0 / 1 probabilities: finite.
    value, grad = STEP[name](jnp.round(probs), ids)
    assert np.isfinite(value) and bool(jnp.all(jnp.isfinite(grad)))
    assert np.isnan(STEP[name](probs.at[0, 3, 3, 1].set(jnp.nan), ids)[0])
  assert np.isnan(soft_skeleton(one.at[0, 0, 0].set(jnp.nan))[0, 0, 0])


def test_cldice_empty_prediction_of_empty_target_is_zero():
  zeros = jnp.zeros((1, 4, 4, 1))
  value, grad = STEP["cldice"](zeros, zeros, smooth=0.0)
  assert float(value) == 0.0 and bool(jnp.all(jnp.isfinite(grad)))


# 6. Reduced precision.


def test_bf16_close_to_float32():
  probs, ids = _batch(seed=12)
  for fn, _ in LOSSES.values():
    got = fn(probs.astype(jnp.bfloat16), ids)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, fn(probs, ids), rtol=3e-2, atol=3e-3)
  skeleton = soft_skeleton(probs.astype(jnp.bfloat16))
  assert skeleton.dtype == jnp.bfloat16
  np.testing.assert_allclose(
    skeleton.astype(jnp.float32), soft_skeleton(probs), atol=2e-2
  )


# Bad input.


def test_errors_name_function_and_argument():
  probs, ids = _batch()
  with pytest.raises(
    ValueError,
    match=r"boundary_loss: probs must have shape "
    r"\[B, \*spatial, C\] with at least one spatial axis, got "
    r"probs.shape \(2, 3\)",
  ):
    boundary_loss(jnp.ones((2, 3)), jnp.zeros(2, jnp.int32))
  with pytest.raises(ValueError, match=r"soft_skeleton: probs must have shape"):
    soft_skeleton(jnp.ones((4, 3)))
  with pytest.raises(
    ValueError,
    match=r"cldice_loss: iterations must be >= 0, "
    r"got -1",
  ):
    cldice_loss(probs, ids, iterations=-1)
  with pytest.raises(
    TypeError,
    match=r"soft_skeleton: iterations must be an "
    r"int, got 2.0",
  ):
    soft_skeleton(probs, iterations=2.0)
  with pytest.raises(
    ValueError,
    match=r"hausdorff_dt_loss: sampling must be "
    r"one number or 2 numbers",
  ):
    hausdorff_dt_loss(probs, ids, sampling=(1.0, 1.0, 1.0))
  with pytest.raises(
    ValueError,
    match=r"boundary_loss: sampling must be "
    r"positive and finite, got \[1.0, 0.0\]",
  ):
    boundary_loss(probs, ids, sampling=(1.0, 0.0))
  with pytest.raises(
    ValueError, match=r"hausdorff_dt_loss: alpha must be >= 0"
  ):
    hausdorff_dt_loss(probs, ids, alpha=-1.0)
  with pytest.raises(
    ValueError, match=r"log_hausdorff_dt_loss: alpha must be >= 0"
  ):
    log_hausdorff_dt_loss(probs, ids, alpha=-1.0)
  with pytest.raises(
    ValueError, match=r"log_hausdorff_dt_loss: labels.shape \(2, 8\)"
  ):
    log_hausdorff_dt_loss(probs, ids[:, 0])
  with pytest.raises(
    ValueError, match=r"hausdorff_er_loss: alpha must be >= 0"
  ):
    hausdorff_er_loss(probs, ids, alpha=-0.5)
  with pytest.raises(
    ValueError, match=r"hausdorff_er_loss: erosions must be >= 0, got -1"
  ):
    hausdorff_er_loss(probs, ids, erosions=-1)
  with pytest.raises(
    TypeError, match=r"hausdorff_er_loss: erosions must be an int, got 2.0"
  ):
    hausdorff_er_loss(probs, ids, erosions=2.0)
  with pytest.raises(
    ValueError, match=r"hausdorff_er_loss: probs must have shape \[B, \*spatial"
  ):
    hausdorff_er_loss(jnp.ones((2, 3)), jnp.zeros(2, jnp.int32))
  with pytest.raises(ValueError, match=r"hausdorff_er_loss: where.shape"):
    hausdorff_er_loss(probs, ids, where=jnp.ones((2, 7, 9), bool))
  with pytest.raises(
    TypeError, match=r"hausdorff_er_loss: probs must have a floating dtype"
  ):
    hausdorff_er_loss(ids[..., None], ids)
  with pytest.raises(ValueError, match=r"cldice_loss: smooth must be >= 0"):
    cldice_loss(probs, ids, smooth=-1.0)
  with pytest.raises(
    TypeError,
    match=r"boundary_loss: probs must have a "
    r"floating dtype",
  ):
    boundary_loss(ids[..., None], ids)
  with pytest.raises(
    ValueError,
    match=r"hausdorff_dt_loss: labels.shape "
    r"\(2, 8\)",
  ):
    hausdorff_dt_loss(probs, ids[:, 0])
  with pytest.raises(ValueError, match=r"cldice_loss: where.shape \(2, 7\)"):
    cldice_loss(probs, ids, where=jnp.ones((2, 7), bool))
  with pytest.raises(ValueError, match=r"boundary_loss: classes must be"):
    boundary_loss(probs, ids, classes="some")
  with pytest.raises(
    ValueError,
    match=r"boundary_loss: axis -1 includes the "
    r"class axis",
  ):
    boundary_loss(probs, ids, axis=-1)
