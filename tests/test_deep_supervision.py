"""deep_supervision_loss: resizing, weights, references, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from tests import reference_segmentation as ref
from tests import references

SHAPES = [(2, 8, 8, 3), (2, 4, 4, 3), (2, 3, 5, 3)]


def _outputs(shapes=SHAPES, seed=0):
  """float32 logits, one array a shape, drawn with NumPy."""
  rng = np.random.default_rng(seed)
  return [(2 * rng.standard_normal(s)).astype(np.float32) for s in shapes]


def _labels(seed=11):
  return np.random.default_rng(seed).integers(0, 3, (2, 8, 8)).astype(np.int32)


def _dice(p, y):
  return jaxloss.dice_loss(jax.nn.softmax(p), y)


def _focal(p, y):
  return jaxloss.softmax_focal_loss(p, y).mean()


@jax.jit
def _value_and_grads(outputs, labels, resized, weights):
  """Per loss: the value and gradients of the deep supervision loss, and
  each level's gradient of its own term against the given resized labels."""
  out = {}
  for name, fn in (("dice", _dice), ("focal", _focal)):
    total = lambda o: jaxloss.deep_supervision_loss(
      fn, o, labels, weights=weights
    )
    terms = [
      w * jax.grad(fn)(o, y) for w, o, y in zip(weights, outputs, resized)
    ]
    out[name] = (*jax.value_and_grad(total)(outputs), terms)
  return out


def test_class_ids_match_reference():
  outputs = _outputs()
  labels = _labels()
  weights = np.array([1.0, 0.5, 0.25], np.float32)
  resized = [ref.nearest_resize(labels, o.shape[1:-1]) for o in outputs]
  got = jax.device_get(_value_and_grads(outputs, labels, resized, weights))
  probs = [np.exp(ref.log_softmax(o)) for o in outputs]
  targets = [references.one_hot(y, 3) for y in resized]
  want = {
    "dice": sum(
      w * references.dice(p, t, (0, 1, 2))
      for w, p, t in zip((1, 0.5, 0.25), probs, targets)
    ),
    "focal": sum(
      w * references.softmax_focal(o, t).mean()
      for w, o, t in zip((1, 0.5, 0.25), outputs, targets)
    ),
  }
  for name in ("dice", "focal"):
    value, grads, terms = got[name]
    np.testing.assert_allclose(value, want[name], rtol=1e-5, err_msg=name)
    # Each level's gradient: that of its own term, against resized labels.
    for grad, term in zip(grads, terms):
      np.testing.assert_allclose(grad, term, rtol=1e-5, atol=1e-8)


def test_resizing():
  @jax.jit
  def run(ids, targets, ignore):
    """The labels each output's loss is handed, for class ids, float
    targets and an ignore id."""
    seen = [], [], []

    def call(outputs, labels, seen):
      record = lambda p, y: (seen.append(y), jnp.sum(p))[1]
      jaxloss.deep_supervision_loss(record, outputs, labels)

    zeros = lambda *shape: jnp.zeros(shape)
    call(
      [zeros(1, 2, 4, 1), zeros(1, 1, 2, 1), zeros(1, 4, 3, 1)], ids, seen[0]
    )
    call([zeros(1, 1, 2, 3)], targets, seen[1])
    call([zeros(1, 1, 2, 1)], ignore, seen[2])
    return seen

  ids = np.arange(8, dtype=np.int32).reshape(1, 2, 4)  # [[0 1 2 3] [4 5 6 7]]
  # Float targets: block means; an ignore id survives nearest resizing.
  targets = references.one_hot([[[0, 1, 1, 1], [0, 0, 1, 2]]], 3)
  targets = targets.astype(np.float32)
  ignore = np.full((1, 3, 4), 255, np.int32)
  seen, seen_targets, seen_ignore = jax.device_get(run(ids, targets, ignore))
  np.testing.assert_array_equal(seen[0], ids)  # full size: unchanged
  np.testing.assert_array_equal(seen[1], [[[5, 7]]])  # cell centres
  np.testing.assert_array_equal(  # up-sampling and odd ratios, as numpy
    seen[2], ref.nearest_resize(ids, (4, 3))
  )
  (got,) = seen_targets
  np.testing.assert_allclose(got, ref.area_resize(targets, (1, 2)))
  np.testing.assert_allclose(got[0, 0], [[0.75, 0.25, 0], [0, 0.75, 0.25]])
  assert np.all(seen_ignore[0] == 255)


def test_weights():
  outputs = _outputs(SHAPES[:2], seed=1)
  labels = _labels()
  resized = [ref.nearest_resize(labels, o.shape[1:-1]) for o in outputs]

  @jax.jit
  def run(outputs, labels, resized, traced):
    call = lambda w: jaxloss.deep_supervision_loss(
      _dice, outputs, labels, weights=w
    )
    terms = [_dice(o, y) for o, y in zip(outputs, resized)]
    return terms, [call("exp"), call("same"), call((0.0, 3.0)), call(traced)]

  (full, half), (exp, same, listed, traced) = jax.device_get(
    run(outputs, labels, resized, np.array([2.0, 1.0], np.float32))
  )
  np.testing.assert_allclose(exp, full + half / 2, rtol=1e-6)
  np.testing.assert_allclose(same, full + half, rtol=1e-6)
  np.testing.assert_allclose(listed, 3 * half, rtol=1e-6)
  np.testing.assert_allclose(traced, 2 * full + half, rtol=1e-6)


@pytest.mark.parametrize(
  "args, kwargs, error, message",
  [
    (
      (_dice, _outputs()[0], "ids"),
      {},
      TypeError,
      "outputs must be a non-empty",
    ),
    ((_dice, [], "ids"), {}, TypeError, "outputs must be a non-empty"),
    ((None, _outputs(), "ids"), {}, TypeError, "loss_fn must be callable"),
    (
      (_dice, [_outputs()[0], np.zeros((2, 4, 4, 2), np.float32)], "ids"),
      {},
      ValueError,
      r"outputs\[1\].shape \(2, 4, 4, 2\) must have the rank",
    ),
    (
      (_dice, [np.zeros((2, 8, 8, 3), np.int32)], "ids"),
      {},
      TypeError,
      r"outputs\[0\] must have a floating",
    ),
    (
      (_dice, _outputs(), np.zeros((2, 8, 8), np.float32)),
      {},
      ValueError,
      "labels as float targets",
    ),
    (
      (_dice, _outputs(), np.zeros((2, 8), np.int32)),
      {},
      ValueError,
      "labels as class ids",
    ),
    (
      (_dice, _outputs(), np.zeros((2, 8, 8, 3), np.float32)),
      {},
      ValueError,
      r"outputs\[2\] has spatial shape \(3, 5\), which does not divide",
    ),
    (
      (_dice, _outputs(), "ids"),
      {"weights": "linear"},
      ValueError,
      "weights must be one of",
    ),
    (
      (_dice, _outputs(), "ids"),
      {"weights": (1.0, 0.5)},
      ValueError,
      r"weights must have one entry per output, shape \(3,\), got shape \(2,\)",
    ),
    (
      (_dice, _outputs(), "ids"),
      {"weights": (1.0, -0.5, 1.0)},
      ValueError,
      r"weights\[1\] must be >= 0",
    ),
    (
      (_dice, _outputs(), "ids"),
      {"weights": None},
      TypeError,
      "weights must be",
    ),
    (
      (lambda p, y: jaxloss.softmax_focal_loss(p, y), _outputs(), "ids"),
      {},
      ValueError,
      r"loss_fn must return a scalar, got shape \(2, 8, 8\)",
    ),
  ],
)
def test_bad_input_is_named(args, kwargs, error, message):
  loss_fn, outputs, labels = args
  if isinstance(labels, str):
    labels = np.zeros((2, 8, 8), np.int32)
  # Raised while tracing: an abstract evaluation runs no computation.
  call = lambda: jaxloss.deep_supervision_loss(
    loss_fn, outputs, labels, **kwargs
  )
  with pytest.raises(error, match=f"deep_supervision_loss: {message}"):
    jax.eval_shape(call)
