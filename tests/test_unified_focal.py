"""asymmetric_unified_focal_loss: hand case, reference, identities, edges."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from tests import reference_segmentation as ref
from tests import references
from tests.test_docs import _recipes

KEY = jax.random.PRNGKey(21)
loss_fn = jaxloss.asymmetric_unified_focal_loss


def _inputs(shape=(2, 3, 4, 4), seed=0):
  k1, k2 = jax.random.split(jax.random.fold_in(KEY, seed))
  probs = jax.nn.softmax(2 * jax.random.normal(k1, shape), axis=-1)
  ids = jax.random.randint(k2, shape[:-1], 0, shape[-1])
  return probs, ids


def test_hand_case():
  # Pixel 0: background, p_0 = 0.8; pixel 1: foreground, p_1 = 0.6.
  probs = jnp.array([[0.8, 0.2], [0.4, 0.6]])
  labels = jnp.array([0, 1])
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


@pytest.mark.parametrize("axis, masked, soft, options", CASES)
def test_matches_reference(axis, masked, soft, options):
  probs, ids = _inputs(seed=1)
  weight, delta, gamma = options
  where = jax.random.bernoulli(jax.random.PRNGKey(2), 0.7, ids.shape)
  where = where if masked else None
  targets = references.one_hot(ids, 4)
  if soft:
    targets = 0.8 * targets + 0.05
  labels = jnp.asarray(targets, jnp.float32) if soft else ids
  kwargs = {"weight": weight, "delta": delta, "gamma": gamma}

  @jax.jit
  def run(p):
    f = lambda p: loss_fn(p, labels, axis=axis, where=where, **kwargs)
    return f(p), jax.grad(lambda p: f(p).sum())(p)

  value, grad = run(probs)
  axes = (0, 1, 2) if axis is None else axis
  mask = None if where is None else np.asarray(where)
  reference = lambda p: ref.asymmetric_unified_focal(
    p, targets, axes, where=mask, **kwargs
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
  keep = jnp.ones(ids.shape, bool).at[0].set(False)

  @jax.jit
  def run(probs, ids):
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

  per_image, mapped, masked, sliced, grad, ids_focal, hot_focal = run(
    probs, ids
  )
  np.testing.assert_allclose(per_image, mapped, rtol=1e-6)
  np.testing.assert_allclose(masked, sliced, rtol=1e-6)
  assert bool(jnp.all(jnp.isfinite(grad))) and not np.any(grad[0])
  np.testing.assert_allclose(ids_focal, hot_focal, rtol=1e-6)


def test_equals_the_binary_recipe_of_the_docs():
  # The recipe gives `weight` to the Tversky term, as the authors' code.
  recipe = _recipes()["unified_focal_loss"]
  logits = 2 * jax.random.normal(KEY, (2, 4, 5, 2))
  labels = jax.random.randint(KEY, (2, 4, 5), 0, 2)
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
  def run(probs, ids, p, y):
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
  logits = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [0.0, 1e4, -1e4]])
  ids = jnp.array([0, 1, 2])
  saturated, empty, perfect, nan, bf16, f32 = run(
    jax.nn.softmax(logits), ids, *_inputs(seed=4)
  )
  for value, grad in (saturated, perfect):
    assert np.isfinite(value) and bool(jnp.all(jnp.isfinite(grad)))
  assert float(empty[0]) == 0 and not np.any(empty[1])
  assert float(perfect[0]) == 0
  assert np.isnan(nan)
  assert bf16.dtype == jnp.float32
  np.testing.assert_allclose(bf16, f32, rtol=2e-2)


@pytest.mark.parametrize(
  "kwargs, error, message",
  [
    ({"probs": jnp.ones((2, 3, 1))}, ValueError, "probs must have at least 2"),
    ({"weight": 1.5}, ValueError, "weight must be <= 1"),
    ({"delta": -0.1}, ValueError, "delta must be >= 0"),
    ({"gamma": 2.0}, ValueError, "gamma must be <= 1"),
    ({"smooth": "1"}, TypeError, "smooth must be a real number"),
    ({"where": jnp.ones((2, 3, 4), bool)}, ValueError, r"where.shape"),
    ({"labels": jnp.zeros((2, 4), jnp.int32)}, ValueError, r"labels.shape"),
    ({"labels": jnp.zeros((2, 3))}, TypeError, "labels of shape"),
    (
      {"probs": jnp.ones((2, 3, 4), jnp.int32)},
      TypeError,
      "probs must have a floating",
    ),
  ],
)
def test_bad_input_is_named_at_trace_time(kwargs, error, message):
  kwargs = dict(kwargs)
  probs = kwargs.pop("probs", jnp.full((2, 3, 4), 0.25))
  labels = kwargs.pop("labels", jnp.zeros((2, 3), jnp.int32))
  call = jax.jit(lambda p, y: loss_fn(p, y, **kwargs))
  with pytest.raises(error, match=f"asymmetric_unified_focal_loss: {message}"):
    call(probs, labels)
