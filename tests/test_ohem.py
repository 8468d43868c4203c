"""ohem_cross_entropy_loss: hand cases, reference, mmseg's rule, edges."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss
from tests import reference_segmentation as ref
from tests import references

KEY = jax.random.PRNGKey(3)


def _inputs(shape=(2, 3, 4, 5), seed=0, scale=2.0):
  k1, k2 = jax.random.split(jax.random.fold_in(KEY, seed))
  logits = scale * jax.random.normal(k1, shape)
  ids = jax.random.randint(k2, shape[:-1], 0, shape[-1])
  return logits, ids


@functools.partial(jax.jit, static_argnames=("min_kept",))
def _value_and_grad(logits, ids, threshold, where, weights, *, min_kept):
  def total(x):
    loss = jaxloss.ohem_cross_entropy_loss(
      x,
      ids,
      threshold=threshold,
      min_kept=min_kept,
      where=where,
      class_weights=weights,
    )
    return loss.sum(), loss

  (_, loss), grad = jax.value_and_grad(total, has_aux=True)(logits)
  return loss, grad


def test_hand_case():
  # Probabilities of the true class: 1/2, 3/4, 3/4, 9/10 (logits log(p / (1-p))).
  p = np.array([0.5, 0.75, 0.75, 0.9])
  logits = jnp.asarray(np.stack([np.log(p / (1 - p)), 0 * p], -1), jnp.float32)
  ids = jnp.zeros(4, jnp.int32)
  ce = -np.log(p)
  run = lambda **kw: jaxloss.ohem_cross_entropy_loss(logits, ids, **kw)
  # Only 1/2 is below 0.7; min_kept=1 adds nothing.
  np.testing.assert_allclose(run(min_kept=1), [ce[0], 0, 0, 0], rtol=1e-6)
  # min_kept=2: the second hardest is 3/4, tied with the third: both kept.
  np.testing.assert_allclose(run(min_kept=2), [*ce[:3], 0], rtol=1e-6)
  # Threshold 0.8, no minimum: 1/2, 3/4, 3/4.
  np.testing.assert_allclose(
    run(threshold=0.8, min_kept=0), [*ce[:3], 0], rtol=1e-6
  )
  # More than there are: all of them.
  np.testing.assert_allclose(run(min_kept=9), ce, rtol=1e-6)


CASES = [  # threshold, min_kept, masked, class weights
  (0.7, 5, False, None),
  (0.0, 7, True, None),
  (0.5, 0, True, (0.5, 1.0, 2.0, 0.0, 1.5)),
  (0.3, 1000, True, (1.0, 2.0, 3.0, 4.0, 5.0)),
]


@pytest.mark.parametrize("threshold, min_kept, masked, weights", CASES)
def test_matches_reference(threshold, min_kept, masked, weights):
  logits, ids = _inputs(seed=1)
  where = jax.random.bernoulli(jax.random.PRNGKey(5), 0.7, ids.shape)
  where = where if masked else jnp.ones(ids.shape, bool)
  w = None if weights is None else jnp.asarray(weights)
  loss, grad = _value_and_grad(
    logits, ids, threshold, where, w, min_kept=min_kept
  )
  reference = lambda x: ref.ohem_cross_entropy(
    x, ids, threshold, min_kept, np.asarray(where), weights
  )
  want = reference(logits)
  np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-7)
  kept = int(np.sum(want != 0))
  valid = int(np.sum(where))
  assert kept >= min(min_kept, valid)
  np.testing.assert_allclose(
    grad,
    references.numerical_grad(lambda x: reference(x).sum(), logits),
    rtol=1e-4,
    atol=1e-6,
  )


def test_selection_equals_mmseg_rule_without_ties():
  logits, ids = _inputs((64, 4), seed=2)
  for threshold, min_kept in ((0.7, 10), (0.2, 30), (0.9, 5), (0.0, 63)):
    got = jaxloss.ohem_cross_entropy_loss(
      logits, ids, threshold=threshold, min_kept=min_kept
    )
    want = ref.ohem_mmseg_selection(logits, ids, threshold, min_kept)
    np.testing.assert_array_equal(np.asarray(got) != 0, want)


def test_identities():
  @jax.jit
  def run(logits, ids):
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, ids)
    loss = lambda x: jaxloss.ohem_cross_entropy_loss(x, ids, min_kept=20)
    kept = loss(logits) != 0
    masked_ce = lambda x: jnp.sum(
      jnp.where(
        kept, optax.softmax_cross_entropy_with_integer_labels(x, ids), 0
      )
    )
    per_image = lambda x, y: jaxloss.ohem_cross_entropy_loss(x, y, min_kept=3)
    return (
      ce,
      # Threshold 1 keeps every pixel not predicted with certainty.
      jaxloss.ohem_cross_entropy_loss(logits, ids, threshold=1.0, min_kept=0),
      # min_kept = every pixel: plain cross-entropy whatever the threshold.
      jaxloss.ohem_cross_entropy_loss(
        logits, ids, threshold=0.0, min_kept=ids.size
      ),
      # The selection is a constant: the gradient is that of the masked CE.
      jax.grad(lambda x: loss(x).sum())(logits),
      jax.grad(masked_ce)(logits),
      # vmap: min_kept counts per mapped example.
      jax.vmap(per_image)(logits, ids),
      jnp.stack([per_image(logits[b], ids[b]) for b in range(2)]),
    )

  ce, all_hard, all_kept, grad, want_grad, mapped, looped = run(
    *_inputs(seed=3)
  )
  np.testing.assert_allclose(all_hard, ce, rtol=1e-6)
  np.testing.assert_allclose(all_kept, ce, rtol=1e-6)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(mapped, looped)


def test_edge_cases():
  @jax.jit
  def run(x, ids, where):
    f = lambda x, w: jaxloss.ohem_cross_entropy_loss(
      x, ids, min_kept=4, where=w
    ).sum()
    return jax.value_and_grad(f)(x, where), jax.value_and_grad(f)(
      x, jnp.zeros_like(where)
    )

  logits = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [0.0, 0.0, 0.0]])
  logits = jnp.concatenate([logits, -logits])
  ids = jnp.array([0, 0, 2, 1, 2, 0])
  # An ignored pixel holding NaN changes nothing.
  bad = logits.at[5].set(jnp.nan)
  where = ids != 0
  (value, grad), (empty, empty_grad) = run(bad, ids, where.at[5].set(False))
  assert np.isfinite(value) and bool(jnp.all(jnp.isfinite(grad)))
  assert not np.any(grad[5])
  assert float(empty) == 0 and not np.any(empty_grad)
  # NaN at a valid pixel: NaN there.
  got = jaxloss.ohem_cross_entropy_loss(bad, ids, min_kept=1)
  assert np.isnan(got[5])
  # bf16 in: float32 out, close.
  x, y = _inputs(seed=4)
  want = jaxloss.ohem_cross_entropy_loss(x, y, min_kept=10)
  got = jaxloss.ohem_cross_entropy_loss(x.astype(jnp.bfloat16), y, min_kept=10)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=5e-2, atol=5e-2)
  # Empty input.
  assert jaxloss.ohem_cross_entropy_loss(
    jnp.zeros((0, 3)), jnp.zeros(0, jnp.int32)
  ).shape == (0,)


@pytest.mark.parametrize(
  "kwargs, error, message",
  [
    ({"labels": jnp.zeros((2, 3))}, TypeError, "labels must be integer"),
    ({"labels": jnp.zeros(3, jnp.int32)}, ValueError, r"labels.shape \(3,\)"),
    ({"min_kept": 2.0}, TypeError, "min_kept must be a Python int"),
    ({"min_kept": True}, TypeError, "min_kept must be a Python int"),
    ({"min_kept": -1}, ValueError, "min_kept must be >= 0"),
    ({"threshold": 1.5}, ValueError, "threshold must be <= 1"),
    ({"threshold": None}, TypeError, "threshold must be a real number"),
    ({"class_weights": jnp.ones(2)}, ValueError, r"class_weights.shape"),
    ({"where": jnp.ones(2)}, TypeError, "where must be a boolean"),
    ({"where": jnp.ones(3, bool)}, ValueError, r"where.shape \(3,\)"),
  ],
)
def test_bad_input_is_named_at_trace_time(kwargs, error, message):
  kwargs = dict(kwargs)
  labels = kwargs.pop("labels", jnp.zeros(2, jnp.int32))
  call = jax.jit(lambda x, y: jaxloss.ohem_cross_entropy_loss(x, y, **kwargs))
  with pytest.raises(error, match=f"ohem_cross_entropy_loss: {message}"):
    call(jnp.zeros((2, 3)), labels)
  with pytest.raises(TypeError, match="logits must have a floating"):
    jaxloss.ohem_cross_entropy_loss(jnp.zeros((2, 3), jnp.int32), labels)
