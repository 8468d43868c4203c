"""focal_loss and softmax_focal_loss: hand cases, references, optax, edges.

Each check runs on one compiled program (``jax.jit``), inputs as arguments:
what a train step runs, fused as XLA fuses it."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify

import jaxloss
from tests import references as ref


def _inputs(shape, soft, scale=3.0, seed=0):
  """float32 logits (``scale`` times normal) and labels, soft or hard."""
  rng = np.random.default_rng(seed)
  logits = (scale * rng.standard_normal(shape)).astype(np.float32)
  labels = rng.uniform(size=shape).astype(np.float32)
  if not soft:
    labels = (labels > 0.6).astype(np.float32)
  return logits, labels


def _softmax_inputs(rows, seed):
  """float32 logits ``[rows, 3]``, class ids and soft targets (rows of a
  softmax)."""
  rng = np.random.default_rng(seed)
  logits = (3 * rng.standard_normal((rows, 3))).astype(np.float32)
  ids = rng.integers(0, 3, rows).astype(np.int32)
  z = 2 * rng.standard_normal((rows, 3))
  soft = np.exp(z - z.max(-1, keepdims=True))
  return logits, ids, (soft / soft.sum(-1, keepdims=True)).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("name", "options", "wrt"))
def _compiled(x, y, arrays, *, name, options, wrt):
  fn = lambda x, y: getattr(jaxloss, name)(x, y, **dict(options), **arrays)
  total = lambda x, y: fn(x, y).sum()
  return fn(x, y), jax.grad(total, argnums=wrt)(x, y) if wrt else ()


def _run(name, x, y, arrays=None, wrt=(0,), **options):
  """``jaxloss.<name>(x, y, **options, **arrays)`` and the gradients of its
  sum with respect to the arguments ``wrt`` (0: logits, 1: labels), in one
  compiled program. ``options`` are part of the program (cases with equal
  options and shapes share it); ``arrays`` (alpha, where) are data."""
  options = tuple(sorted(options.items()))
  out = _compiled(x, y, arrays or {}, name=name, options=options, wrt=wrt)
  return jax.device_get(out)


# 1. Hand-computed cases.


def test_focal_hand_case():
  # logit log 3: p = 3/4. Positive: p_t = 3/4, (1 - p_t)^2 = 1/16.
  # Negative: p_t = 1/4, (1 - p_t)^2 = 9/16, -log(1/4).
  x = np.full((2,), math.log(3.0), np.float32)
  got, _ = _run("focal_loss", x, np.array([1.0, 0.0], np.float32), wrt=())
  want = [0.25 / 16 * -math.log(0.75), 0.75 * 9 / 16 * -math.log(0.25)]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_softmax_focal_hand_case():
  # Logits (log 3, 0): p = (3/4, 1/4). Class 1: (3/4)^2 * log 4, times alpha_1.
  x = np.array([[math.log(3.0), 0.0]], np.float32)
  alpha = {"alpha": np.array([1.0, 0.5], np.float32)}
  got, _ = _run("softmax_focal_loss", x, np.array([1]), alpha, wrt=())
  np.testing.assert_allclose(got, [0.5 * 9 / 16 * math.log(4.0)], rtol=1e-6)


# 2. Float64 references, values and gradients.


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_matches_reference(soft, gamma, alpha):
  x, y = _inputs((3, 4), soft)
  value, (grad,) = _run("focal_loss", x, y, alpha=alpha, gamma=gamma)
  np.testing.assert_allclose(
    value, ref.sigmoid_focal(x, y, alpha, gamma), rtol=2e-5, atol=1e-6
  )
  want = ref.numerical_grad(
    lambda x: ref.sigmoid_focal(x, y, alpha, gamma).sum(), x
  )
  np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.5, (0.2, 0.3, 0.5)])
def test_softmax_focal_matches_reference(soft, gamma, alpha):
  x, ids, soft_labels = _softmax_inputs(4, seed=0)
  labels = soft_labels if soft else ids
  targets = soft_labels if soft else ref.one_hot(ids, 3)
  if isinstance(alpha, tuple):  # Per-class weights: data.
    value, (grad,) = _run(
      "softmax_focal_loss",
      x,
      labels,
      {"alpha": np.array(alpha, np.float32)},
      gamma=gamma,
    )
  else:
    value, (grad,) = _run(
      "softmax_focal_loss", x, labels, alpha=alpha, gamma=gamma
    )
  want = ref.softmax_focal(x, targets, alpha, gamma)
  np.testing.assert_allclose(value, want, rtol=2e-5, atol=1e-6)
  want_grad = ref.numerical_grad(
    lambda x: ref.softmax_focal(x, targets, alpha, gamma).sum(), x
  )
  np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_focal_gradient_with_respect_to_soft_labels(gamma):
  x, y = _inputs((3, 4), soft=True, seed=3)
  _, (got,) = _run("focal_loss", x, y, wrt=(1,), gamma=gamma)
  want = ref.numerical_grad(
    lambda y: ref.sigmoid_focal(x, y, 0.25, gamma).sum(), y
  )
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


# Per-class alpha, normalized and reduced focal loss (smp's options).


def test_focal_reduced_hand_case():
  # logit log 3: p = 3/4. Positive: p_t = 3/4 >= 1/2, factor (1/4 / 1/2)^2.
  # Negative: p_t = 1/4 < 1/2, factor 1 (plain cross-entropy).
  @jax.jit
  def run(x, y):
    reduced = functools.partial(
      jaxloss.focal_loss, alpha=None, reduced_threshold=0.5
    )
    return reduced(x, y), reduced(x, y, normalized=True)

  x = np.full((2,), math.log(3.0), np.float32)
  got, normalized = run(x, np.array([1.0, 0.0], np.float32))
  want = [0.25 * -math.log(0.75), -math.log(0.25)]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # Normalized: each divided by the factor sum 1/4 + 1.
  np.testing.assert_allclose(normalized, np.array(want) / 1.25, rtol=1e-6)


def _matches_reference(value, grad, reference, x):
  """Values and gradients against the float64 ``reference``."""
  np.testing.assert_allclose(value, reference(x), rtol=2e-5, atol=1e-7)
  np.testing.assert_allclose(
    grad,
    ref.numerical_grad(lambda x: reference(x).sum(), x),
    rtol=1e-4,
    atol=1e-6,
  )


SMP_CASES = [  # (options, gamma, soft labels)
  ({"normalized": True}, 2.0, False),
  ({"normalized": True}, 0.5, True),
  ({"reduced_threshold": 0.5}, 0.5, False),
  ({"reduced_threshold": 0.5}, 2.0, True),
  ({"reduced_threshold": 0.3, "normalized": True}, 2.0, True),
  ({"reduced_threshold": 0.3, "normalized": True}, 0.5, False),
]


@pytest.mark.parametrize("options, gamma, soft", SMP_CASES)
def test_focal_normalized_and_reduced_match_reference(options, gamma, soft):
  x, y = _inputs((3, 4), soft, seed=4)
  alpha = np.array([0.2, 0.5, 0.7, 1.0], np.float32)
  where = np.arange(4) != 2
  value, (grad,) = _run(
    "focal_loss",
    x,
    y,
    {"alpha": alpha, "where": where},
    gamma=gamma,
    **options,
  )
  reference = lambda x: ref.sigmoid_focal(
    x, y, alpha, gamma, where=where, **options
  )
  _matches_reference(value, grad, reference, x)


@pytest.mark.parametrize("options, gamma, soft", SMP_CASES)
def test_softmax_focal_normalized_and_reduced_match_reference(
  options, gamma, soft
):
  x, ids, soft_labels = _softmax_inputs(5, seed=5)
  labels = soft_labels if soft else ids
  targets = soft_labels if soft else ref.one_hot(ids, 3)
  alpha = (0.2, 0.3, 0.5)
  value, (grad,) = _run(
    "softmax_focal_loss",
    x,
    labels,
    {"alpha": np.array(alpha, np.float32)},
    gamma=gamma,
    **options,
  )
  reference = lambda x: ref.softmax_focal(x, targets, alpha, gamma, **options)
  _matches_reference(value, grad, reference, x)


def test_per_class_alpha_equals_one_column_at_a_time():
  x, y = _inputs((4, 3), soft=True, seed=6)
  alpha = np.array([0.1, 0.6, 0.9], np.float32)

  @jax.jit
  def run(x, y, alpha):
    """Traced alpha: the loss and, through the closed-form derivative, its
    gradient; alpha a list; each column with its own scalar alpha."""
    total = lambda x: jaxloss.focal_loss(x, y, alpha=alpha).sum()
    return (
      jaxloss.focal_loss(x, y, alpha=alpha),
      jax.grad(total)(x),
      jaxloss.focal_loss(x, y, alpha=[0.1, 0.6, 0.9]),
      [
        jaxloss.focal_loss(x[:, c], y[:, c], alpha=float(alpha_c))
        for c, alpha_c in enumerate((0.1, 0.6, 0.9))
      ],
    )

  got, grad, listed, columns = jax.device_get(run(x, y, alpha))
  np.testing.assert_array_equal(listed, got)
  for c in range(3):
    np.testing.assert_allclose(got[:, c], columns[c], rtol=1e-6)
  np.testing.assert_allclose(
    grad,
    ref.numerical_grad(lambda x: ref.sigmoid_focal(x, y, alpha).sum(), x),
    rtol=1e-4,
    atol=1e-6,
  )


def test_normalized_masked_equals_sliced_and_sums_to_a_weighted_mean():
  @jax.jit
  def run(x, y, keep, ids, rows):
    sigmoid = lambda x: jaxloss.focal_loss(
      x, y, where=keep, normalized=True
    ).sum()
    softmax = lambda x: jaxloss.softmax_focal_loss(
      x, ids, where=ids != 255, normalized=True
    ).sum()
    return (
      jax.value_and_grad(sigmoid)(x.at[:, 4:].set(jnp.nan)),
      jaxloss.focal_loss(x[:, :4], y[:, :4], normalized=True).sum(),
      jax.value_and_grad(softmax)(x.at[2].set(jnp.inf)),
      jaxloss.softmax_focal_loss(x[rows], ids[rows], normalized=True).sum(),
      # gamma=0: sum(loss) / sum(factor) is the mean cross-entropy.
      jaxloss.focal_loss(x, y, alpha=None, gamma=0.0, normalized=True).sum(),
      optax.sigmoid_binary_cross_entropy(x, y).mean(),
    )

  x, y = _inputs((4, 6), soft=False, seed=7)
  keep = np.arange(6) < 4  # broadcasts over rows
  ids = np.array([0, 2, 255, 1], np.int32)
  rows = np.array([0, 1, 3])
  (value, grad), want, (value_s, grad_s), want_s, ce, want_ce = jax.device_get(
    run(x, y, keep, ids, rows)
  )
  np.testing.assert_allclose(value, want, rtol=1e-6)
  assert np.all(np.isfinite(grad)) and not np.any(grad[:, 4:])
  np.testing.assert_allclose(value_s, want_s, rtol=1e-6)
  assert np.all(np.isfinite(grad_s)) and not np.any(grad_s[2])
  np.testing.assert_allclose(ce, want_ce, rtol=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_smp_options_derivatives_and_edge_cases(gamma):
  options = {"normalized": True, "reduced_threshold": 0.4}
  sigmoid = lambda x, y, **kw: jaxloss.focal_loss(
    x, y, gamma=gamma, **options, **kw
  )
  softmax = lambda x, y, **kw: jaxloss.softmax_focal_loss(
    x, y, gamma=gamma, **options, **kw
  )

  @jax.jit
  def run(x, y, t, extreme, x_bf16, x_f32, y_hard):
    f = lambda x: sigmoid(x, y).sum()
    ys = (extreme > 0).astype(jnp.int32)
    xs = jnp.stack([extreme, -extreme], -1)
    none = jnp.zeros(extreme.shape, bool)
    return (
      jax.grad(f)(x),
      jax.jvp(f, (x,), (t,))[1],
      jax.jacfwd(f)(x),
      # +-1e4 logits, all masked, NaN in.
      jax.value_and_grad(lambda e: sigmoid(e, ys).sum())(extreme),
      jax.value_and_grad(lambda e: softmax(e, ys).sum())(xs),
      jax.value_and_grad(lambda e: sigmoid(e, ys, where=none).sum())(extreme),
      jax.value_and_grad(lambda e: softmax(e, ys, where=none).sum())(xs),
      sigmoid(extreme.at[3].set(jnp.nan), ys),
      softmax(xs.at[3, 0].set(jnp.nan), ys),
      # bf16 in, and float32 in.
      sigmoid(x_bf16, y_hard),
      sigmoid(x_f32, y_hard),
    )

  x, y = _inputs((3, 4), soft=True, seed=8)
  t = np.random.default_rng(9).standard_normal(x.shape).astype(np.float32)
  extreme = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], np.float32)
  x8, y8 = _inputs((8, 8), soft=False, seed=10)
  out = jax.device_get(run(x, y, t, extreme, x8.astype(jnp.bfloat16), x8, y8))
  grad, tangent, jac, *finite, masked, masked_soft, nan, nan_soft = out[:9]
  np.testing.assert_allclose(tangent, np.vdot(grad, t), rtol=1e-4)
  np.testing.assert_allclose(jac, grad, rtol=1e-4, atol=1e-7)
  for value, g in finite:
    assert np.isfinite(value) and np.all(np.isfinite(g))
  for value, g in (masked, masked_soft):
    assert float(value) == 0 and not np.any(g)
  assert np.isnan(nan[3]) and np.isnan(nan_soft[3])
  # bf16 in: float32 out, close to float32 in.
  got, want = out[9:]
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=5e-2, atol=5e-3)


# optax.sigmoid_focal_loss is the anchor: equal values and gradients.


@functools.partial(jax.jit, static_argnames=("alpha", "gamma"))
def _focal_and_optax(x, y, *, alpha, gamma):
  """Values and gradients (of the sum) of ours and optax's."""
  ours = lambda x: jaxloss.focal_loss(x, y, alpha=alpha, gamma=gamma)
  theirs = lambda x: optax.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma)
  return [(f(x), jax.grad(lambda x: f(x).sum())(x)) for f in (ours, theirs)]


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_equals_optax(soft, gamma, alpha):
  x, y = _inputs((64,), soft, scale=30.0, seed=1)
  (ours, grad), (theirs, their_grad) = _focal_and_optax(
    x, y, alpha=alpha, gamma=gamma
  )
  np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grad, their_grad, rtol=1e-4, atol=1e-6)


# 3. Identities.


def test_focal_gamma_zero_is_binary_cross_entropy():
  @jax.jit
  def run(x, y):
    return (
      jaxloss.focal_loss(x, y, alpha=None, gamma=0.0),
      optax.sigmoid_binary_cross_entropy(x, y),
    )

  got, want = run(*_inputs((5, 3), soft=True))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_softmax_focal_gamma_zero_is_cross_entropy():
  @jax.jit
  def run(x, ids):
    return (
      jaxloss.softmax_focal_loss(x, ids, gamma=0.0),
      optax.softmax_cross_entropy_with_integer_labels(x, ids),
      jaxloss.softmax_focal_loss(x, ids, gamma=2.0),
      jaxloss.softmax_focal_loss(x, jax.nn.one_hot(ids, 5), gamma=2.0),
    )

  x = (3 * np.random.default_rng(0).standard_normal((6, 5))).astype(np.float32)
  got, want, ids_loss, one_hot_loss = run(x, np.arange(6, dtype=np.int32) % 5)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(ids_loss, one_hot_loss, rtol=1e-6)


def test_masked_equals_sliced_and_masked_entries_are_inert():
  @jax.jit
  def run(x, y, where, xs, ids, rows):
    """Sigmoid then softmax: masked loss on NaN/inf at the masked entries,
    its gradient, and the loss of the kept entries sliced out."""
    sigmoid = lambda x: jaxloss.focal_loss(x, y, where=where)
    softmax = lambda x: jaxloss.softmax_focal_loss(x, ids, where=ids != 255)
    x_bad = x.at[:, 4:].set(jnp.nan)  # masked entries: NaN
    xs_bad = xs.at[2].set(jnp.inf)
    return (
      sigmoid(x_bad),
      jax.grad(lambda x: sigmoid(x).sum())(x_bad),
      jaxloss.focal_loss(x[:, :4], y[:, :4]),
      softmax(xs_bad),
      jax.grad(lambda x: softmax(x).sum())(xs_bad),
      jaxloss.softmax_focal_loss(xs[rows], ids[rows]),
    )

  x, y = _inputs((4, 6), soft=False)
  where = np.arange(6) < 4  # broadcasts over rows
  xs = (2 * np.random.default_rng(1).standard_normal((4, 3))).astype(np.float32)
  ids = np.array([0, 2, 255, 1], np.int32)
  rows = np.array([0, 1, 3])
  loss, grad, sliced, got, grad_s, sliced_s = jax.device_get(
    run(x, y, where, xs, ids, rows)
  )
  np.testing.assert_allclose(loss[:, :4], sliced)
  np.testing.assert_array_equal(loss[:, 4:], 0)
  np.testing.assert_array_equal(grad[:, 4:], 0)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(got[rows], sliced_s)
  assert float(got[2]) == 0
  np.testing.assert_array_equal(grad_s[2], 0)


# 5. Edge cases.


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_extreme_logits_are_finite(gamma):
  @jax.jit
  def run(x, ys, xs, ids):
    """Value and gradient for each row of labels ``ys``, then softmax's."""
    sigmoid = lambda x, y: jaxloss.focal_loss(x, y, gamma=gamma).sum()
    softmax = lambda x: jaxloss.softmax_focal_loss(x, ids, gamma=gamma).sum()
    return [jax.value_and_grad(sigmoid)(x, y) for y in ys] + [
      jax.value_and_grad(softmax)(xs)
    ]

  x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], np.float32)
  ys = np.array([0.0, 1.0, 0.3], np.float32)[:, None] * np.ones_like(x)
  xs = np.array([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]], np.float32)
  for value, grad in run(x, ys, xs, np.array([0, 1], np.int32)):
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_nan_in_nan_out():
  @jax.jit
  def run(x):
    return (
      jaxloss.focal_loss(x, jnp.ones(2)),
      jaxloss.softmax_focal_loss(x[None], jnp.array([0])),
    )

  sigmoid, softmax = jax.device_get(run(np.array([0.0, np.nan], np.float32)))
  assert np.isnan(sigmoid[1]) and np.isnan(softmax[0])


def test_single_element_and_single_class():
  @jax.jit
  def run(x, y, xs, ids):
    return jaxloss.focal_loss(x, y), jaxloss.softmax_focal_loss(xs, ids)

  single, one_class = run(
    np.float32(0.0),
    np.float32(1.0),
    np.ones((3, 1), np.float32),
    np.zeros(3, np.int32),
  )
  assert single.shape == ()
  # One class: p = 1 always, the loss is 0.
  np.testing.assert_array_equal(one_class, 0)


# 6. Reduced precision in, float32 out.


def test_bf16_and_fp16_inputs():
  @jax.jit
  def run(x, y, ids):
    return jaxloss.focal_loss(x, y), jaxloss.softmax_focal_loss(x, ids)

  x, y = _inputs((8, 8), soft=False)
  ids = np.arange(8, dtype=np.int32) % 8
  want, want_softmax = run(x, y, ids)
  for dtype in (jnp.bfloat16, jnp.float16):
    got, got_softmax = run(x.astype(dtype), y.astype(dtype), ids)
    assert got.dtype == jnp.float32 and got_softmax.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=5e-2, atol=5e-3)
    np.testing.assert_allclose(got_softmax, want_softmax, rtol=5e-2, atol=5e-3)


# Bad input.


def test_errors_name_function_and_argument():
  x = jnp.zeros((2, 3))
  with pytest.raises(
    TypeError, match=r"focal_loss: logits must have a floating"
  ):
    jaxloss.focal_loss(jnp.zeros((2, 3), jnp.int32), x)
  with pytest.raises(ValueError, match=r"focal_loss: labels.shape \(3,\)"):
    jaxloss.focal_loss(x, jnp.zeros(3))
  with pytest.raises(ValueError, match=r"focal_loss: where.shape \(4,\)"):
    jaxloss.focal_loss(x, x, where=jnp.ones(4, bool))
  with pytest.raises(TypeError, match=r"focal_loss: where must be a boolean"):
    jaxloss.focal_loss(x, x, where=jnp.ones((2, 3)))
  with pytest.raises(
    ValueError, match=r"softmax_focal_loss: alpha.shape \(2,\)"
  ):
    jaxloss.softmax_focal_loss(x, jnp.zeros(2, jnp.int32), alpha=jnp.ones(2))
  with pytest.raises(TypeError, match=r"softmax_focal_loss: labels of shape"):
    jaxloss.softmax_focal_loss(x, jnp.zeros(2))
  with pytest.raises(
    ValueError, match=r"softmax_focal_loss: logits must have rank"
  ):
    jaxloss.softmax_focal_loss(jnp.float32(1.0), jnp.int32(0))
  with pytest.raises(ValueError, match=r"gamma must be >= 0"):
    jaxloss.focal_loss(x, x, gamma=-1.0)
  with pytest.raises(
    ValueError, match=r"focal_loss: alpha must be a scalar or have shape \(3,\)"
  ):
    jax.jit(lambda x: jaxloss.focal_loss(x, x, alpha=jnp.ones(2)))(x)
  with pytest.raises(ValueError, match=r"focal_loss: alpha must be a scalar"):
    jaxloss.focal_loss(x[0, 0], x[0, 0], alpha=jnp.ones(1))
  with pytest.raises(TypeError, match=r"focal_loss: reduced_threshold must be"):
    jaxloss.focal_loss(x, x, reduced_threshold="0.5")
  with pytest.raises(
    ValueError, match=r"softmax_focal_loss: reduced_threshold must be > 0"
  ):
    jaxloss.softmax_focal_loss(x, x, reduced_threshold=-0.5)
  with pytest.raises(TypeError, match=r"focal_loss: normalized must be True"):
    jaxloss.focal_loss(x, x, normalized="yes")


def test_checkify_reports_bad_values():
  with jaxloss.value_checks():
    x = jnp.zeros((3, 4))
    checked = checkify.checkify(jax.jit(jaxloss.softmax_focal_loss))
    err, _ = checked(x, jnp.array([0, 4, 1]))
    with pytest.raises(
      checkify.JaxRuntimeError, match=r"labels must lie in \[0, 4\)"
    ):
      err.throw()
    err, _ = checked(x, jnp.array([0, 3, 1]))
    err.throw()  # In range: nothing to report.
    err, _ = checkify.checkify(jax.jit(jaxloss.focal_loss))(x, x + 2)
    assert "labels must lie in [0, 1]" in err.get()
