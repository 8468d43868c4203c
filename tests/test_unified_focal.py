"""asymmetric_unified_focal_loss: hand case, reference, identities, edges."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from tests import reference_segmentation as ref
from tests import references
from tests.test_docs import _recipes

loss_fn = jaxloss.asymmetric_unified_focal_loss


def _inputs(shape=(2, 3, 4, 4), seed=0):
  """float32 softmax probabilities and int32 class ids, drawn with NumPy."""
  rng = np.random.default_rng(seed)
  logits = 2 * rng.standard_normal(shape)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  ids = rng.integers(0, shape[-1], shape[:-1])
  return probs.astype(np.float32), ids.astype(np.int32)


def test_hand_case():
  # Pixel 0: background, p_0 = 0.8; pixel 1: foreground, p_1 = 0.6.
  probs = np.array([[0.8, 0.2], [0.4, 0.6]], np.float32)
  labels = np.array([0, 1], np.int32)
  focal = (0.4 * math.sqrt(1 - 0.8) * -math.log(0.8) + 0.6 * -math.log(0.6)) / 2
  # Class 0: TP 0.8, FN 0.2, FP 0.4; class 1: TP 0.6, FN 0.4, FP 0.2.
  ti_0 = 0.8 / (0.8 + 0.6 * 0.2 + 0.4 * 0.4)
  ti_1 = 0.6 / (0.6 + 0.6 * 0.4 + 0.4 * 0.2)
  tversky = ((1 - ti_0) + math.sqrt(1 - ti_1)) / 2
  got = jax.jit(loss_fn)(probs, labels, weight=0.3, smooth=0.0)
  np.testing.assert_allclose(got, 0.3 * focal + 0.7 * tversky, rtol=1e-6)


CASES = [  # axis, masked, soft targets, (weight, delta, gamma)
  (None, False, False, (0.5, 0.6, 0.5)),
  ((1, 2), True, False, (0.2, 0.7, 0.3)),
  ((0, 1), True, True, (0.8, 0.4, 0.9)),
  (None, False, False, (0.5, 0.6, 0.0)),
]


@functools.partial(jax.jit, static_argnames=("axis", "options"))
def _value_and_grad(probs, labels, where, *, axis, options):
  """The loss and the gradient of its sum. ``options`` (weight, delta,
  gamma) stay static: a whole ``gamma`` takes its own code path."""
  weight, delta, gamma = options
  f = lambda p: loss_fn(
    p, labels, axis=axis, where=where, weight=weight, delta=delta, gamma=gamma
  )
  return f(probs), jax.grad(lambda p: f(p).sum())(probs)


@pytest.mark.parametrize("axis, masked, soft, options", CASES)
def test_matches_reference(axis, masked, soft, options):
  probs, ids = _inputs(seed=1)
  weight, delta, gamma = options
  where = np.random.default_rng(2).random(ids.shape) < 0.7
  where = where if masked else None
  targets = references.one_hot(ids, 4)
  if soft:
    targets = 0.8 * targets + 0.05
  labels = targets.astype(np.float32) if soft else ids
  kwargs = {"weight": weight, "delta": delta, "gamma": gamma}

  value, grad = jax.device_get(
    _value_and_grad(probs, labels, where, axis=axis, options=options)
  )
  axes = (0, 1, 2) if axis is None else axis
  reference = lambda p: ref.asymmetric_unified_focal(
    p, targets, axes, where=where, **kwargs
  )
  np.testing.assert_allclose(value, reference(probs), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(
    grad,
    references.numerical_grad(lambda p: reference(p).sum(), probs),
    rtol=1e-4,
    atol=1e-6,
  )


def test_identities():
  probs, ids = _inputs(seed=3)
  keep = np.ones(ids.shape, bool)
  keep[0] = False

  @jax.jit
  def run(probs, ids, keep):
    per_image = loss_fn(probs, ids, axis=(1, 2))
    bad = probs.at[0].set(jnp.nan)
    return (
      per_image,
      jax.vmap(loss_fn)(probs, ids),
      loss_fn(bad, ids, where=keep),
      loss_fn(probs[1:], ids[1:]),
      jax.grad(lambda p: loss_fn(p, ids, where=keep))(bad),
      loss_fn(probs, ids, weight=1.0),
      loss_fn(probs, jax.nn.one_hot(ids, 4), weight=1.0),
    )

  per_image, mapped, masked, sliced, grad, ids_focal, hot_focal = (
    jax.device_get(run(probs, ids, keep))
  )
  np.testing.assert_allclose(per_image, mapped, rtol=1e-6)
  np.testing.assert_allclose(masked, sliced, rtol=1e-6)
  assert np.all(np.isfinite(grad)) and not np.any(grad[0])
  np.testing.assert_allclose(ids_focal, hot_focal, rtol=1e-6)


def test_equals_the_binary_recipe_of_the_docs():
  # The recipe gives `weight` to the Tversky term, as the authors' code.
  recipe = _recipes()["unified_focal_loss"]
  rng = np.random.default_rng(21)
  logits = (2 * rng.standard_normal((2, 4, 5, 2))).astype(np.float32)
  labels = rng.integers(0, 2, (2, 4, 5)).astype(np.int32)
  want, got = jax.jit(
    lambda x, y: (
      recipe(x, y, weight=0.7),
      loss_fn(
        jax.nn.softmax(x), y, weight=0.3, axis=(1, 2), smooth=1e-6
      ).mean(),
    )
  )(logits, labels)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_edge_cases():
  @jax.jit
  def run(logits, ids, p, y):
    probs = jax.nn.softmax(logits)
    f = lambda p, w: loss_fn(p, ids, where=w)
    none = jnp.zeros(ids.shape, bool)
    return (
      jax.value_and_grad(f)(probs, None),
      jax.value_and_grad(f)(probs, none),
      # A perfect prediction: 0 (the gradient with respect to the
      # probabilities is that of -log p, not 0).
      jax.value_and_grad(f)(jnp.eye(3)[ids], None),
      # NaN in, NaN out; bf16 in, float32 out.
      f(probs.at[0, 0].set(jnp.nan), None),
      loss_fn(p.astype(jnp.bfloat16), y),
      loss_fn(p, y),
    )

  # Saturated softmax: exact zeros and ones.
  logits = np.array(
    [[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [0.0, 1e4, -1e4]], np.float32
  )
  ids = np.array([0, 1, 2], np.int32)
  saturated, empty, perfect, nan, bf16, f32 = jax.device_get(
    run(logits, ids, *_inputs(seed=4))
  )
  for value, grad in (saturated, perfect):
    assert np.isfinite(value) and np.all(np.isfinite(grad))
  assert float(empty[0]) == 0 and not np.any(empty[1])
  assert float(perfect[0]) == 0
  assert np.isnan(nan)
  assert bf16.dtype == jnp.float32
  np.testing.assert_allclose(bf16, f32, rtol=2e-2)


@pytest.mark.parametrize(
  "kwargs, error, message",
  [
    (
      {"probs": np.ones((2, 3, 1), np.float32)},
      ValueError,
      "probs must have at least 2",
    ),
    ({"weight": 1.5}, ValueError, "weight must be <= 1"),
    ({"delta": -0.1}, ValueError, "delta must be >= 0"),
    ({"gamma": 2.0}, ValueError, "gamma must be <= 1"),
    ({"smooth": "1"}, TypeError, "smooth must be a real number"),
    ({"where": np.ones((2, 3, 4), bool)}, ValueError, r"where.shape"),
    ({"labels": np.zeros((2, 4), np.int32)}, ValueError, r"labels.shape"),
    ({"labels": np.zeros((2, 3), np.float32)}, TypeError, "labels of shape"),
    (
      {"probs": np.ones((2, 3, 4), np.int32)},
      TypeError,
      "probs must have a floating",
    ),
  ],
)
def test_bad_input_is_named_at_trace_time(kwargs, error, message):
  kwargs = dict(kwargs)
  probs = kwargs.pop("probs", np.full((2, 3, 4), 0.25, np.float32))
  labels = kwargs.pop("labels", np.zeros((2, 3), np.int32))
  call = jax.jit(lambda p, y: loss_fn(p, y, **kwargs))
  with pytest.raises(error, match=f"asymmetric_unified_focal_loss: {message}"):
    call(probs, labels)
