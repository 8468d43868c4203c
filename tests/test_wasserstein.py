"""Generalised Wasserstein Dice loss: hand cases, reference, identities,
edges and errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from tests import references as ref

FN = jaxloss.generalized_wasserstein_dice_loss
NAME = "generalized_wasserstein_dice_loss"
C = 3
# The default for three classes: background at 1, foreground pairs at 1/2.
DEFAULT_3 = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.5], [1.0, 0.5, 0.0]])
# Asymmetric, largest entry 2 (the loss divides by it), background not
# farthest from every class.
SKEWED_3 = np.array([[0.0, 2.0, 0.4], [1.0, 0.0, 0.3], [1.5, 0.7, 0.0]])


def _batch(shape=(2, 3, 4), num_classes=C, seed=0):
  """Softmax probabilities and class ids, drawn with NumPy (no compilation)."""
  rng = np.random.default_rng(seed)
  logits = 2 * rng.standard_normal(shape + (num_classes,))
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  ids = rng.integers(0, num_classes, shape)
  return jnp.asarray(probs, jnp.float32), jnp.asarray(ids, jnp.int32)


def _one_hot(ids, num_classes=C):
  return jnp.asarray(ref.one_hot(ids, num_classes), jnp.float32)


def _close(got, want, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(
    np.asarray(got), np.asarray(want), rtol=rtol, atol=atol
  )


@functools.partial(jax.jit, static_argnames=("axis", "smooth", "weighting"))
def _value_and_grad(
  probs,
  labels,
  matrix=None,
  where=None,
  axis=None,
  smooth=1.0,
  weighting="default",
):
  """The loss and the gradient of its sum; ``matrix`` is traced here."""
  loss = lambda p: FN(
    p,
    labels,
    distance_matrix=matrix,
    axis=axis,
    where=where,
    smooth=smooth,
    weighting=weighting,
  )
  return loss(probs), jax.grad(lambda p: jnp.sum(loss(p)))(probs)


# Shared compiled programs: one per shape and static option.
_loss = jax.jit(FN, static_argnames=("axis", "smooth", "weighting"))
_dice = jax.jit(jaxloss.dice_loss, static_argnames=("smooth",))


# 1. Hand-computed cases with the default matrix.


@pytest.mark.parametrize(
  "predicted, smooth, want",
  [
    # Class 1 taken for class 2: W = 1/2, TP = 1/2 + 1, sum W = 1/2.
    ([2, 2, 0], 0.0, 1 - 3 / 3.5),
    ([2, 2, 0], 1.0, 1 - 4 / 4.5),
    # Class 1 taken for the background: W = 1, TP = 0 + 1, sum W = 1.
    ([0, 2, 0], 0.0, 1 - 2 / 3),
    # Background taken for class 1: W = 1 at a pixel of weight 0, TP = 2.
    ([1, 2, 1], 0.0, 1 - 4 / 5),
  ],
)
def test_hand_cases_hard(predicted, smooth, want):
  labels = jnp.array([1, 2, 0])
  probs = jnp.eye(3)[jnp.array(predicted)]
  _close(_loss(probs, labels, smooth=smooth), want)


def test_hand_case_gdl_weighting():
  # Every class once: alpha_l = 1 / (1 + 1). W = (1/2, 0, 0), so
  # TP = (1/2 + 1 + 1) / 2 and the weighted error is (1/2) / 2.
  labels = jnp.array([1, 2, 0])
  probs = jnp.eye(3)[jnp.array([2, 2, 0])]
  got = _loss(probs, labels, weighting="gdl", smooth=0.0)
  _close(got, 1 - 2.5 / (2.5 + 0.25))


def test_hand_case_soft_prediction():
  # One pixel of class 1 predicted (0.2, 0.3, 0.5):
  # W = 0.2 * 1 + 0.3 * 0 + 0.5 * 0.5 = 0.45, TP = 1 - W = 0.55.
  probs = jnp.array([[0.2, 0.3, 0.5]])
  _close(_loss(probs, jnp.array([1]), smooth=0.0), 1 - 1.1 / (1.1 + 0.45))


# 2. Float64 reference: values and gradients.


@pytest.mark.parametrize(
  "variant",
  [
    {},
    {"axis": (1, 2)},
    {"where": True, "smooth": 0.0},
    {"soft": True, "axis": 1, "smooth": 0.5},
    {"matrix": SKEWED_3, "axis": (0, 2)},
    {"matrix": 1 - np.eye(C), "soft": True},
    {"weighting": "gdl"},
    {"weighting": "gdl", "where": True, "axis": (1, 2), "smooth": 0.0},
    {"weighting": "gdl", "soft": True, "matrix": SKEWED_3, "axis": 0},
  ],
)
def test_matches_reference(variant):
  variant = dict(variant)
  probs, ids = _batch(seed=1)
  if variant.pop("soft", False):
    targets = np.asarray(_batch(seed=2)[0], np.float64)  # soft targets
    labels = jnp.asarray(targets, jnp.float32)
  else:
    labels, targets = ids, ref.one_hot(ids, C)
  where = None
  if variant.pop("where", False):
    where = jnp.asarray(np.random.default_rng(3).random(ids.shape) < 0.7)
  matrix = variant.pop("matrix", DEFAULT_3)
  axis = variant.pop("axis", None)
  smooth = variant.pop("smooth", 1.0)
  weighting = variant.pop("weighting", "default")
  assert not variant
  axes = (
    (0, 1, 2) if axis is None else ((axis,) if isinstance(axis, int) else axis)
  )
  reference = lambda p: ref.generalized_wasserstein_dice(
    p,
    targets,
    matrix,
    axes,
    weighting,
    where=None if where is None else np.asarray(where),
    smooth=smooth,
  )

  value, grad = _value_and_grad(
    probs,
    labels,
    jnp.asarray(matrix),
    where,
    axis=axis,
    smooth=smooth,
    weighting=weighting,
  )
  _close(value, reference(probs))
  want_grad = ref.numerical_grad(lambda p: reference(p).sum(), probs)
  _close(grad, want_grad, rtol=1e-3, atol=1e-5)


# 3. Identities.


@pytest.mark.parametrize(
  "matrix, weighting", [(None, "default"), (SKEWED_3, "gdl")]
)
def test_perfect_prediction_is_zero(matrix, weighting):
  _, ids = _batch(seed=2)
  value, grad = _value_and_grad(
    _one_hot(ids), ids, matrix, smooth=0.0, weighting=weighting
  )
  _close(value, 0.0)
  assert bool(jnp.all(jnp.isfinite(grad)))


def test_one_minus_identity_with_two_classes_is_foreground_dice():
  smooth = 0.5
  probs, ids = _batch(num_classes=2, seed=3)
  got = _loss(probs, ids, distance_matrix=1 - np.eye(2), smooth=smooth)
  want = _dice(probs, ids, classes=jnp.array([1]), smooth=smooth)
  _close(got, want)
  # With two classes the default matrix is 1 - I.
  _close(_loss(probs, ids, smooth=smooth), got)


def test_one_minus_identity_from_the_dice_statistics():
  # M = 1 - I, hard labels: W_i = 1 - p_{i, l_i}, so TP = sum_{c >= 1} I_c
  # and sum_i W_i = sum_c (T_c - I_c).
  probs, ids = _batch(shape=(2, 5), num_classes=4, seed=4)
  inter, _, true = ref.overlap_stats(probs, ref.one_hot(ids, 4), (0, 1))
  true_pos = inter[1:].sum()
  want = 1 - 2 * true_pos / (2 * true_pos + (true - inter).sum())
  _close(_loss(probs, ids, distance_matrix=1 - np.eye(4), smooth=0.0), want)


def test_where_equals_slicing():
  probs, ids = _batch(shape=(2, 3, 5), seed=5)
  where = jnp.broadcast_to(jnp.arange(5) < 3, ids.shape)
  poisoned = jnp.where(where[..., None], probs, jnp.nan)  # hidden NaN
  masked, grad = _value_and_grad(poisoned, ids, where=where)
  sliced, sliced_grad = _value_and_grad(probs[:, :, :3], ids[:, :, :3])
  _close(masked, sliced)
  _close(grad[:, :, :3], sliced_grad)
  assert float(jnp.max(jnp.abs(grad[:, :, 3:]))) == 0


def test_per_image_axis_equals_vmap():
  probs, ids = _batch(seed=6)
  labels = _one_hot(ids) * 0.8 + 0.2 / C  # soft targets
  per_image = _loss(probs, labels, axis=(1, 2))
  assert per_image.shape == (2,)
  _close(per_image, jax.jit(jax.vmap(FN))(probs, labels))


def test_class_ids_equal_one_hot_targets():
  probs, ids = _batch(seed=7)
  for matrix, weighting in ((DEFAULT_3, "default"), (SKEWED_3, "gdl")):
    by_id = _value_and_grad(probs, ids, matrix, weighting=weighting)
    by_target = _value_and_grad(
      probs, _one_hot(ids), matrix, weighting=weighting
    )
    for got, want in zip(by_id, by_target):
      _close(got, want)


def test_class_id_out_of_range_counts_for_nothing():
  probs, ids = _batch(seed=8)
  bad = ids.at[0, 0, 0].set(9).at[1, 2, 3].set(-1)
  keep = (bad >= 0) & (bad < C)
  _close(
    _value_and_grad(probs, bad, DEFAULT_3)[0],
    _value_and_grad(probs, ids, DEFAULT_3, keep)[0],
  )


def test_default_matrix_and_scale():
  probs, ids = _batch(seed=9)
  loss = _loss(probs, ids)
  with_matrix = lambda m: _value_and_grad(probs, ids, m)[0]
  _close(with_matrix(DEFAULT_3), loss)
  _close(with_matrix(4 * DEFAULT_3), loss)  # normalised
  _close(
    with_matrix(np.array([[0, 2, 2], [2, 0, 1], [2, 1, 0]])),  # integer
    loss,
  )


def test_traced_matrix_is_not_checked_by_value():
  probs, ids = _batch(seed=10)
  value, _ = _value_and_grad(probs, ids, jnp.asarray(SKEWED_3))
  _close(
    value,
    ref.generalized_wasserstein_dice(
      probs, ref.one_hot(ids, C), SKEWED_3, (0, 1, 2)
    ),
  )
  # A negative traced entry passes the checks (only its shape is known).
  traced = jax.eval_shape(
    lambda m: FN(probs, ids, distance_matrix=m), -DEFAULT_3
  )
  assert traced.shape == ()


# 4. Edges and precision.


def test_empty_inputs_give_zero_with_zero_gradient():
  smooth = 0.0  # no smoothing to hide a 0 / 0
  probs, ids = _batch(seed=11)
  none = jnp.zeros(ids.shape, bool)
  value, grad = _value_and_grad(probs, ids, DEFAULT_3, none, smooth=smooth)
  _close(value, 0.0)
  assert bool(jnp.all(grad == 0))
  # Only background, predicted as such: nothing to find, nothing wrong.
  background = jnp.zeros_like(ids)
  value, grad = _value_and_grad(_one_hot(background), background, smooth=smooth)
  _close(value, 0.0)
  assert bool(jnp.all(grad == 0))


def test_errors_on_an_image_without_foreground_cost_almost_everything():
  probs, _ = _batch(seed=12)
  _close(_loss(probs, jnp.zeros(probs.shape[:-1], jnp.int32), smooth=0.0), 1.0)


def test_bfloat16_input_is_accumulated_in_float32():
  probs, ids = _batch(shape=(2, 8, 8), seed=13)
  low = probs.astype(jnp.bfloat16)
  value, grad = _value_and_grad(low, ids)
  assert value.dtype == jnp.float32 and grad.dtype == jnp.bfloat16
  assert bool(jnp.isfinite(value)) and bool(jnp.all(jnp.isfinite(grad)))
  reference = lambda p: ref.generalized_wasserstein_dice(
    p.astype(jnp.float32), ref.one_hot(ids, C), DEFAULT_3, (0, 1, 2)
  )
  _close(value, reference(low), rtol=1e-5)  # float32 sums of bf16 input
  _close(value, reference(probs), rtol=2e-2, atol=1e-2)


def test_float64_input_gives_float64():
  with jax.enable_x64(True):
    probs, ids = _batch(seed=14)
    value = jax.eval_shape(FN, probs.astype(jnp.float64), ids)
    assert value.dtype == jnp.float64


# 5. Bad inputs: named errors at trace time.


@pytest.mark.parametrize(
  "change, error, match",
  [
    (
      {"distance_matrix": np.zeros((2, 3))},
      ValueError,
      r"distance_matrix.shape \(2, 3\) must be \(3, 3\)",
    ),
    (
      {"distance_matrix": np.zeros((3,))},
      ValueError,
      r"distance_matrix.shape \(3,\) must be \(3, 3\)",
    ),
    (
      {"distance_matrix": DEFAULT_3 - 0.75},
      ValueError,
      "distance_matrix must be finite and >= 0",
    ),
    (
      {"distance_matrix": np.where(np.eye(3) > 0, np.nan, DEFAULT_3)},
      ValueError,
      "distance_matrix must be finite",
    ),
    (
      {"distance_matrix": DEFAULT_3 + np.eye(3)},
      ValueError,
      "distance_matrix must have a zero diagonal",
    ),
    ({"distance_matrix": "euclidean"}, TypeError, "distance_matrix must be"),
    (
      {"distance_matrix": np.eye(3) < 0},
      TypeError,
      "distance_matrix must be real",
    ),
    ({"probs": "int"}, TypeError, "probs must have a floating dtype"),
    ({"labels": "short"}, ValueError, r"labels.shape \(2, 3\) must equal"),
    (
      {"labels": "float"},
      TypeError,
      r"labels of shape probs.shape\[:-1\] \(2, 3, 4\) are class ids",
    ),
    ({"smooth": -1.0}, ValueError, "smooth must be >= 0"),
    ({"weighting": "GDL"}, ValueError, "weighting must be one of"),
    ({"where": "short"}, ValueError, r"where.shape \(2, 3\) must equal"),
    ({"axis": 3}, ValueError, "axis 3 includes the class axis"),
  ],
)
def test_bad_inputs_raise_named_errors(change, error, match):
  probs, ids = _batch()
  change = dict(change)
  if change.pop("probs", None):
    probs = (probs > 0.5).astype(jnp.int32)
  labels = {"short": ids[:, :, 0], "float": ids.astype(jnp.float32), None: ids}[
    change.pop("labels", None)
  ]
  if change.get("where") == "short":
    change["where"] = jnp.ones((2, 3), bool)
  with pytest.raises(error, match=f"{NAME}: {match}"):
    FN(probs, labels, **change)
