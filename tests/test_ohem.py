"""ohem_cross_entropy_loss: hand cases, reference, mmseg's rule, edges.

Each check runs on one compiled program (``jax.jit``), inputs as arguments;
``min_kept`` is part of the program, the threshold, mask and weights are
data."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss
from tests import reference_segmentation as ref
from tests import references


def _inputs(shape=(2, 3, 4, 5), seed=0, scale=2.0):
  """float32 logits (``scale`` times normal) and int32 class ids."""
  rng = np.random.default_rng(seed)
  logits = (scale * rng.standard_normal(shape)).astype(np.float32)
  ids = rng.integers(0, shape[-1], shape[:-1]).astype(np.int32)
  return logits, ids


ohem = jaxloss.ohem_cross_entropy_loss


@functools.partial(jax.jit, static_argnames=("min_kept",))
def _value_and_grad(logits, ids, threshold, where, weights, *, min_kept):
  def total(x):
    loss = ohem(
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
  logits = np.stack([np.log(p / (1 - p)), 0 * p], -1).astype(np.float32)
  ce = -np.log(p)

  @jax.jit
  def run(x, ids):
    return (
      ohem(x, ids, min_kept=1),
      ohem(x, ids, min_kept=2),
      ohem(x, ids, threshold=0.8, min_kept=0),
      ohem(x, ids, min_kept=9),
    )

  one, two, below, more = run(logits, np.zeros(4, np.int32))
  # Only 1/2 is below 0.7; min_kept=1 adds nothing.
  np.testing.assert_allclose(one, [ce[0], 0, 0, 0], rtol=1e-6)
  # min_kept=2: the second hardest is 3/4, tied with the third: both kept.
  np.testing.assert_allclose(two, [*ce[:3], 0], rtol=1e-6)
  # Threshold 0.8, no minimum: 1/2, 3/4, 3/4.
  np.testing.assert_allclose(below, [*ce[:3], 0], rtol=1e-6)
  # More than there are: all of them.
  np.testing.assert_allclose(more, ce, rtol=1e-6)


CASES = [  # threshold, min_kept, masked, class weights
  (0.7, 5, False, None),
  (0.0, 7, True, None),
  (0.5, 0, True, (0.5, 1.0, 2.0, 0.0, 1.5)),
  (0.3, 1000, True, (1.0, 2.0, 3.0, 4.0, 5.0)),
]


@pytest.mark.parametrize("threshold, min_kept, masked, weights", CASES)
def test_matches_reference(threshold, min_kept, masked, weights):
  logits, ids = _inputs(seed=1)
  where = np.random.default_rng(5).uniform(size=ids.shape) < 0.7
  where = where if masked else np.ones(ids.shape, bool)
  w = None if weights is None else np.asarray(weights, np.float32)
  loss, grad = jax.device_get(
    _value_and_grad(
      logits, ids, np.float32(threshold), where, w, min_kept=min_kept
    )
  )
  reference = lambda x: ref.ohem_cross_entropy(
    x, ids, threshold, min_kept, where, weights
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
  cases = ((0.7, 10), (0.2, 30), (0.9, 5), (0.0, 63))

  @jax.jit
  def run(x, ids, thresholds):
    return [
      ohem(x, ids, threshold=t, min_kept=k)
      for t, (_, k) in zip(thresholds, cases)
    ]

  thresholds = [np.float32(t) for t, _ in cases]
  for got, (threshold, min_kept) in zip(
    jax.device_get(run(logits, ids, thresholds)), cases
  ):
    want = ref.ohem_mmseg_selection(logits, ids, threshold, min_kept)
    np.testing.assert_array_equal(got != 0, want)


def test_identities():
  @jax.jit
  def run(logits, ids):
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, ids)
    loss = lambda x: ohem(x, ids, min_kept=20)
    kept = loss(logits) != 0
    masked_ce = lambda x: jnp.sum(
      jnp.where(
        kept, optax.softmax_cross_entropy_with_integer_labels(x, ids), 0
      )
    )
    per_image = lambda x, y: ohem(x, y, min_kept=3)
    return (
      ce,
      # Threshold 1 keeps every pixel not predicted with certainty.
      ohem(logits, ids, threshold=1.0, min_kept=0),
      # min_kept = every pixel: plain cross-entropy whatever the threshold.
      ohem(logits, ids, threshold=0.0, min_kept=ids.size),
      # The selection is a constant: the gradient is that of the masked CE.
      jax.grad(lambda x: loss(x).sum())(logits),
      jax.grad(masked_ce)(logits),
      # vmap: min_kept counts per mapped example.
      jax.vmap(per_image)(logits, ids),
      jnp.stack([per_image(logits[b], ids[b]) for b in range(2)]),
    )

  ce, all_hard, all_kept, grad, want_grad, mapped, looped = jax.device_get(
    run(*_inputs(seed=3))
  )
  # atol: at a near-certain pixel the loss is small and optax's float32
  # logsumexp(x) - x_y keeps fewer relative digits than rtol 1e-6.
  np.testing.assert_allclose(all_hard, ce, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(all_kept, ce, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(mapped, looped)


def test_edge_cases():
  @jax.jit
  def run(x, ids, where, x32, x16, y, empty_x, empty_ids):
    f = lambda x, w: ohem(x, ids, min_kept=4, where=w).sum()
    return (
      # Masked value and gradient, then with every pixel masked.
      jax.value_and_grad(f)(x, where),
      jax.value_and_grad(f)(x, jnp.zeros_like(where)),
      # No mask.
      ohem(x, ids, min_kept=1),
      # float32 and bf16 in.
      ohem(x32, y, min_kept=10),
      ohem(x16, y, min_kept=10),
      # Empty input.
      ohem(empty_x, empty_ids),
    )

  logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [0.0, 0.0, 0.0]])
  logits = np.concatenate([logits, -logits]).astype(np.float32)
  ids = np.array([0, 0, 2, 1, 2, 0], np.int32)
  # An ignored pixel holding NaN changes nothing.
  bad = logits.copy()
  bad[5] = np.nan
  where = ids != 0
  where[5] = False
  x, y = _inputs(seed=4)
  out = run(
    bad,
    ids,
    where,
    x,
    x.astype(jnp.bfloat16),
    y,
    np.zeros((0, 3), np.float32),
    np.zeros(0, np.int32),
  )
  assert out[4].dtype == jnp.float32
  (value, grad), (empty, empty_grad), got, want, got16, got_empty = (
    jax.device_get(out)
  )
  assert np.isfinite(value) and np.all(np.isfinite(grad))
  assert not np.any(grad[5])
  assert float(empty) == 0 and not np.any(empty_grad)
  # NaN at a valid pixel: NaN there.
  assert np.isnan(got[5])
  # bf16 in: float32 out, close.
  np.testing.assert_allclose(got16, want, rtol=5e-2, atol=5e-2)
  assert got_empty.shape == (0,)


@pytest.mark.parametrize(
  "kwargs, error, message",
  [
    ({"labels": np.zeros((2, 3))}, TypeError, "labels must be integer"),
    ({"labels": np.zeros(3, np.int32)}, ValueError, r"labels.shape \(3,\)"),
    ({"min_kept": 2.0}, TypeError, "min_kept must be a Python int"),
    ({"min_kept": True}, TypeError, "min_kept must be a Python int"),
    ({"min_kept": -1}, ValueError, "min_kept must be >= 0"),
    ({"threshold": 1.5}, ValueError, "threshold must be <= 1"),
    ({"threshold": None}, TypeError, "threshold must be a real number"),
    ({"class_weights": np.ones(2)}, ValueError, r"class_weights.shape"),
    ({"where": np.ones(2)}, TypeError, "where must be a boolean"),
    ({"where": np.ones(3, bool)}, ValueError, r"where.shape \(3,\)"),
  ],
)
def test_bad_input_is_named_at_trace_time(kwargs, error, message):
  kwargs = dict(kwargs)
  labels = kwargs.pop("labels", np.zeros(2, np.int32))
  call = jax.jit(lambda x, y: ohem(x, y, **kwargs))
  with pytest.raises(error, match=f"ohem_cross_entropy_loss: {message}"):
    call(np.zeros((2, 3), np.float32), labels)
  with pytest.raises(TypeError, match="logits must have a floating"):
    ohem(np.zeros((2, 3), np.int32), labels)
