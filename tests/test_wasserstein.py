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
  """float32 softmax probabilities and int32 class ids, drawn with NumPy."""
  rng = np.random.default_rng(seed)
  logits = 2 * rng.standard_normal(shape + (num_classes,))
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  ids = rng.integers(0, num_classes, shape)
  return probs.astype(np.float32), ids.astype(np.int32)


def _one_hot(ids, num_classes=C):
  return ref.one_hot(ids, num_classes).astype(np.float32)


def _close(got, want, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@functools.partial(jax.jit, static_argnames=("axis", "weighting", "grad"))
def _compiled(probs, labels, matrix, where, smooth, *, axis, weighting, grad):
  loss = lambda p: FN(
    p,
    labels,
    distance_matrix=matrix,
    axis=axis,
    where=where,
    smooth=smooth,
    weighting=weighting,
  )
  if not grad:
    return loss(probs)
  return loss(probs), jax.grad(lambda p: jnp.sum(loss(p)))(probs)


def _run(
  probs,
  labels,
  matrix=None,
  where=None,
  *,
  smooth=1.0,
  axis=None,
  weighting="default",
  grad=False,
):
  """The loss (and, with ``grad``, the gradient of its sum) in one compiled
  program: ``matrix``, ``where`` and ``smooth`` are traced arguments, so the
  cases of equal shapes, ``axis`` and ``weighting`` share it."""
  out = _compiled(
    probs,
    labels,
    matrix,
    where,
    smooth,
    axis=axis,
    weighting=weighting,
    grad=grad,
  )
  return jax.device_get(out)


# 1. Hand-computed cases with the default matrix.

HAND_LABELS = np.array([1, 2, 0], np.int32)


def _hard(predicted):
  return np.eye(3, dtype=np.float32)[predicted]


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
  _close(_run(_hard(predicted), HAND_LABELS, smooth=smooth), want)


def test_hand_case_gdl_weighting():
  # Every class once: alpha_l = 1 / (1 + 1). W = (1/2, 0, 0), so
  # TP = (1/2 + 1 + 1) / 2 and the weighted error is (1/2) / 2.
  got = _run(_hard([2, 2, 0]), HAND_LABELS, weighting="gdl", smooth=0.0)
  _close(got, 1 - 2.5 / (2.5 + 0.25))


def test_hand_case_soft_prediction():
  # One pixel of class 1 predicted (0.2, 0.3, 0.5):
  # W = 0.2 * 1 + 0.3 * 0 + 0.5 * 0.5 = 0.45, TP = 1 - W = 0.55.
  probs = np.array([[0.2, 0.3, 0.5]], np.float32)
  got = _run(probs, np.array([1], np.int32), smooth=0.0)
  _close(got, 1 - 1.1 / (1.1 + 0.45))


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
    labels = _batch(seed=2)[0]  # soft targets
    targets = labels.astype(np.float64)
  else:
    labels, targets = ids, ref.one_hot(ids, C)
  where = None
  if variant.pop("where", False):
    where = np.random.default_rng(3).random(ids.shape) < 0.7
  matrix = variant.pop("matrix", DEFAULT_3)
  axis = variant.pop("axis", None)
  smooth = variant.pop("smooth", 1.0)
  weighting = variant.pop("weighting", "default")
  assert not variant
  axes = (
    (0, 1, 2) if axis is None else ((axis,) if isinstance(axis, int) else axis)
  )
  reference = lambda p: ref.generalized_wasserstein_dice(
    p, targets, matrix, axes, weighting, where=where, smooth=smooth
  )

  value, grad = _run(
    probs,
    labels,
    matrix.astype(np.float32),
    where,
    axis=axis,
    smooth=smooth,
    weighting=weighting,
    grad=True,
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
  if matrix is not None:
    matrix = matrix.astype(np.float32)
  value, grad = _run(
    _one_hot(ids), ids, matrix, smooth=0.0, weighting=weighting, grad=True
  )
  _close(value, 0.0)
  assert np.all(np.isfinite(grad))


def test_one_minus_identity_with_two_classes_is_foreground_dice():
  @jax.jit
  def run(probs, ids, matrix):
    """With M = 1 - I, with the default matrix, and class 1's Dice loss."""
    return (
      FN(probs, ids, distance_matrix=matrix, smooth=0.5),
      FN(probs, ids, smooth=0.5),
      jaxloss.dice_loss(probs, ids, classes=jnp.array([1]), smooth=0.5),
    )

  probs, ids = _batch(num_classes=2, seed=3)
  got, default, want = run(probs, ids, 1 - np.eye(2, dtype=np.float32))
  _close(got, want)
  # With two classes the default matrix is 1 - I.
  _close(default, got)


def test_one_minus_identity_from_the_dice_statistics():
  # M = 1 - I, hard labels: W_i = 1 - p_{i, l_i}, so TP = sum_{c >= 1} I_c
  # and sum_i W_i = sum_c (T_c - I_c).
  probs, ids = _batch(shape=(2, 5), num_classes=4, seed=4)
  inter, _, true = ref.overlap_stats(probs, ref.one_hot(ids, 4), (0, 1))
  true_pos = inter[1:].sum()
  want = 1 - 2 * true_pos / (2 * true_pos + (true - inter).sum())
  got = _run(probs, ids, 1 - np.eye(4, dtype=np.float32), smooth=0.0)
  _close(got, want)


def test_where_equals_slicing():
  probs, ids = _batch(seed=5)
  where = np.broadcast_to(np.arange(4) < 3, ids.shape)
  poisoned = np.where(where[..., None], probs, np.nan)  # hidden NaN
  matrix = DEFAULT_3.astype(np.float32)
  masked, grad = _run(poisoned, ids, matrix, where, grad=True)
  sliced, sliced_grad = _run(probs[:, :, :3], ids[:, :, :3], matrix, grad=True)
  _close(masked, sliced)
  _close(grad[:, :, :3], sliced_grad)
  assert np.max(np.abs(grad[:, :, 3:])) == 0


def test_per_image_axis_equals_vmap():
  @jax.jit
  def run(probs, labels):
    return FN(probs, labels, axis=(1, 2)), jax.vmap(FN)(probs, labels)

  probs, ids = _batch(seed=6)
  labels = _one_hot(ids) * 0.8 + 0.2 / C  # soft targets
  per_image, mapped = run(probs, labels)
  assert per_image.shape == (2,)
  _close(per_image, mapped)


def test_class_ids_equal_one_hot_targets():
  probs, ids = _batch(seed=7)
  for matrix, weighting in ((DEFAULT_3, "default"), (SKEWED_3, "gdl")):
    matrix = matrix.astype(np.float32)
    by_id = _run(probs, ids, matrix, weighting=weighting, grad=True)
    by_target = _run(
      probs, _one_hot(ids), matrix, weighting=weighting, grad=True
    )
    for got, want in zip(by_id, by_target):
      _close(got, want)


def test_class_id_out_of_range_counts_for_nothing():
  probs, ids = _batch(seed=8)
  bad = ids.copy()
  bad[0, 0, 0], bad[1, 2, 3] = 9, -1
  keep = (bad >= 0) & (bad < C)
  matrix = DEFAULT_3.astype(np.float32)
  _close(
    _run(probs, bad, matrix, grad=True)[0],
    _run(probs, ids, matrix, keep, grad=True)[0],
  )


def test_default_matrix_and_scale():
  probs, ids = _batch(seed=9)
  loss = _run(probs, ids, grad=True)[0]
  with_matrix = lambda m: _run(probs, ids, m, grad=True)[0]
  _close(with_matrix(DEFAULT_3.astype(np.float32)), loss)
  _close(with_matrix(4 * DEFAULT_3.astype(np.float32)), loss)  # normalised
  _close(
    with_matrix(np.array([[0, 2, 2], [2, 0, 1], [2, 1, 0]], np.int32)),
    loss,
  )


def test_traced_matrix_is_not_checked_by_value():
  probs, ids = _batch(seed=10)
  value, _ = _run(probs, ids, SKEWED_3.astype(np.float32), grad=True)
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
  none = np.zeros(ids.shape, bool)
  matrix = DEFAULT_3.astype(np.float32)
  value, grad = _run(probs, ids, matrix, none, smooth=smooth, grad=True)
  _close(value, 0.0)
  assert np.all(grad == 0)
  # Only background, predicted as such: nothing to find, nothing wrong.
  background = np.zeros_like(ids)
  value, grad = _run(_one_hot(background), background, smooth=smooth, grad=True)
  _close(value, 0.0)
  assert np.all(grad == 0)


def test_errors_on_an_image_without_foreground_cost_almost_everything():
  probs, _ = _batch(seed=12)
  background = np.zeros(probs.shape[:-1], np.int32)
  _close(_run(probs, background, smooth=0.0, grad=True)[0], 1.0)


def test_bfloat16_input_is_accumulated_in_float32():
  probs, ids = _batch(shape=(2, 8, 8), seed=13)
  low = probs.astype(jnp.bfloat16)
  value, grad = _run(low, ids, grad=True)
  assert value.dtype == jnp.float32 and grad.dtype == jnp.bfloat16
  assert np.isfinite(value) and np.all(np.isfinite(grad.astype(np.float32)))
  reference = lambda p: ref.generalized_wasserstein_dice(
    p.astype(np.float32), ref.one_hot(ids, C), DEFAULT_3, (0, 1, 2)
  )
  _close(value, reference(low), rtol=1e-5)  # float32 sums of bf16 input
  _close(value, reference(probs), rtol=2e-2, atol=1e-2)


def test_float64_input_gives_float64():
  with jax.enable_x64(True):
    probs, ids = _batch(seed=14)
    value = jax.eval_shape(FN, probs.astype(np.float64), ids)
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
    probs = (probs > 0.5).astype(np.int32)
  labels = {"short": ids[:, :, 0], "float": ids.astype(np.float32), None: ids}[
    change.pop("labels", None)
  ]
  if change.get("where") == "short":
    change["where"] = np.ones((2, 3), bool)
  with pytest.raises(error, match=f"{NAME}: {match}"):
    FN(probs, labels, **change)
