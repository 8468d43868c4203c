"""focal_loss and softmax_focal_loss: hand cases, references, optax, edges."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify

import jaxloss
from tests import references as ref

KEY = jax.random.PRNGKey(42)


def _inputs(shape, soft, scale=3.0, seed=0):
  k1, k2 = jax.random.split(jax.random.fold_in(KEY, seed))
  logits = scale * jax.random.normal(k1, shape)
  labels = jax.random.uniform(k2, shape)
  if not soft:
    labels = (labels > 0.6).astype(jnp.float32)
  return logits, labels


# 1. Hand-computed cases.


def test_focal_hand_case():
  # logit log 3: p = 3/4. Positive: p_t = 3/4, (1 - p_t)^2 = 1/16.
  # Negative: p_t = 1/4, (1 - p_t)^2 = 9/16, -log(1/4).
  x = jnp.full((2,), math.log(3.0))
  got = jaxloss.focal_loss(x, jnp.array([1.0, 0.0]), alpha=0.25, gamma=2.0)
  want = [0.25 / 16 * -math.log(0.75), 0.75 * 9 / 16 * -math.log(0.25)]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_softmax_focal_hand_case():
  # Logits (log 3, 0): p = (3/4, 1/4). Class 1: (3/4)^2 * log 4, times alpha_1.
  x = jnp.array([[math.log(3.0), 0.0]])
  got = jaxloss.softmax_focal_loss(
    x, jnp.array([1]), alpha=jnp.array([1.0, 0.5])
  )
  np.testing.assert_allclose(got, [0.5 * 9 / 16 * math.log(4.0)], rtol=1e-6)


# 2. Float64 references, values and gradients.


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_matches_reference(soft, gamma, alpha):
  x, y = _inputs((3, 4), soft)
  loss = lambda x: jaxloss.focal_loss(x, y, alpha=alpha, gamma=gamma)
  np.testing.assert_allclose(
    loss(x), ref.sigmoid_focal(x, y, alpha, gamma), rtol=2e-5, atol=1e-6
  )
  want = ref.numerical_grad(
    lambda x: ref.sigmoid_focal(x, y, alpha, gamma).sum(), x
  )
  np.testing.assert_allclose(
    jax.grad(lambda x: loss(x).sum())(x), want, rtol=1e-4, atol=1e-6
  )


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.5, (0.2, 0.3, 0.5)])
def test_softmax_focal_matches_reference(soft, gamma, alpha):
  k1, k2 = jax.random.split(KEY)
  x = 3 * jax.random.normal(k1, (4, 3))
  ids = jax.random.randint(k2, (4,), 0, 3)
  labels = jax.nn.softmax(2 * jax.random.normal(k2, (4, 3))) if soft else ids
  targets = labels if soft else ref.one_hot(ids, 3)
  a = None if alpha is None else jnp.asarray(alpha)
  loss = lambda x: jaxloss.softmax_focal_loss(x, labels, alpha=a, gamma=gamma)
  want = ref.softmax_focal(x, targets, alpha, gamma)
  np.testing.assert_allclose(loss(x), want, rtol=2e-5, atol=1e-6)
  want_grad = ref.numerical_grad(
    lambda x: ref.softmax_focal(x, targets, alpha, gamma).sum(), x
  )
  np.testing.assert_allclose(
    jax.grad(lambda x: loss(x).sum())(x), want_grad, rtol=1e-4, atol=1e-5
  )


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_focal_gradient_with_respect_to_soft_labels(gamma):
  x, y = _inputs((3, 4), soft=True, seed=3)
  got = jax.grad(lambda y: jaxloss.focal_loss(x, y, gamma=gamma).sum())(y)
  want = ref.numerical_grad(
    lambda y: ref.sigmoid_focal(x, y, 0.25, gamma).sum(), y
  )
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


# Per-class alpha, normalized and reduced focal loss (smp's options).


def test_focal_reduced_hand_case():
  # logit log 3: p = 3/4. Positive: p_t = 3/4 >= 1/2, factor (1/4 / 1/2)^2.
  # Negative: p_t = 1/4 < 1/2, factor 1 (plain cross-entropy).
  x = jnp.full((2,), math.log(3.0))
  got = jaxloss.focal_loss(
    x, jnp.array([1.0, 0.0]), alpha=None, reduced_threshold=0.5
  )
  want = [0.25 * -math.log(0.75), -math.log(0.25)]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # Normalized: each divided by the factor sum 1/4 + 1.
  got = jaxloss.focal_loss(
    x,
    jnp.array([1.0, 0.0]),
    alpha=None,
    reduced_threshold=0.5,
    normalized=True,
  )
  np.testing.assert_allclose(got, np.array(want) / 1.25, rtol=1e-6)


def _matches_reference(loss, reference, x):
  """Values and gradients of ``loss`` against the float64 ``reference``."""
  np.testing.assert_allclose(loss(x), reference(x), rtol=2e-5, atol=1e-7)
  np.testing.assert_allclose(
    jax.grad(lambda x: loss(x).sum())(x),
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
  alpha = jnp.array([0.2, 0.5, 0.7, 1.0])
  where = jnp.arange(4) != 2
  loss = lambda x: jaxloss.focal_loss(
    x, y, alpha=alpha, gamma=gamma, where=where, **options
  )
  reference = lambda x: ref.sigmoid_focal(
    x, y, np.asarray(alpha), gamma, where=np.asarray(where), **options
  )
  _matches_reference(loss, reference, x)


@pytest.mark.parametrize("options, gamma, soft", SMP_CASES)
def test_softmax_focal_normalized_and_reduced_match_reference(
  options, gamma, soft
):
  k1, k2 = jax.random.split(jax.random.fold_in(KEY, 5))
  x = 3 * jax.random.normal(k1, (5, 3))
  ids = jax.random.randint(k2, (5,), 0, 3)
  labels = jax.nn.softmax(2 * jax.random.normal(k2, (5, 3))) if soft else ids
  targets = labels if soft else ref.one_hot(ids, 3)
  alpha = (0.2, 0.3, 0.5)
  loss = lambda x: jaxloss.softmax_focal_loss(
    x, labels, alpha=jnp.asarray(alpha), gamma=gamma, **options
  )
  reference = lambda x: ref.softmax_focal(x, targets, alpha, gamma, **options)
  _matches_reference(loss, reference, x)


def test_per_class_alpha_equals_one_column_at_a_time():
  x, y = _inputs((4, 3), soft=True, seed=6)
  alpha = jnp.array([0.1, 0.6, 0.9])
  got = jaxloss.focal_loss(x, y, alpha=alpha)
  np.testing.assert_array_equal(
    jaxloss.focal_loss(x, y, alpha=[0.1, 0.6, 0.9]), got
  )
  for c in range(3):
    np.testing.assert_allclose(
      got[:, c],
      jaxloss.focal_loss(x[:, c], y[:, c], alpha=float(alpha[c])),
      rtol=1e-6,
    )
  # Traced under jit, and through the closed-form derivative.
  traced = jax.jit(
    jax.grad(lambda x, a: jaxloss.focal_loss(x, y, alpha=a).sum())
  )
  np.testing.assert_allclose(
    traced(x, alpha),
    ref.numerical_grad(
      lambda x: ref.sigmoid_focal(x, y, np.asarray(alpha)).sum(), x
    ),
    rtol=1e-4,
    atol=1e-6,
  )


def test_normalized_masked_equals_sliced_and_sums_to_a_weighted_mean():
  keep = jnp.arange(6) < 4  # broadcasts over rows
  ids = jnp.array([0, 2, 255, 1])
  rows = jnp.array([0, 1, 3])

  @jax.jit
  def run(x, y):
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
  (value, grad), want, (value_s, grad_s), want_s, ce, want_ce = run(x, y)
  np.testing.assert_allclose(value, want, rtol=1e-6)
  assert bool(jnp.all(jnp.isfinite(grad))) and not np.any(grad[:, 4:])
  np.testing.assert_allclose(value_s, want_s, rtol=1e-6)
  assert bool(jnp.all(jnp.isfinite(grad_s))) and not np.any(grad_s[2])
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
  def run(x, y, t, extreme):
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
    )

  x, y = _inputs((3, 4), soft=True, seed=8)
  t = jax.random.normal(jax.random.PRNGKey(9), x.shape)
  extreme = jnp.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4])
  grad, tangent, jac, *finite, masked, masked_soft, nan, nan_soft = run(
    x, y, t, extreme
  )
  np.testing.assert_allclose(tangent, jnp.vdot(grad, t), rtol=1e-4)
  np.testing.assert_allclose(jac, grad, rtol=1e-4, atol=1e-7)
  for value, g in finite:
    assert np.isfinite(value) and bool(jnp.all(jnp.isfinite(g)))
  for value, g in (masked, masked_soft):
    assert float(value) == 0 and not np.any(g)
  assert np.isnan(nan[3]) and np.isnan(nan_soft[3])
  # bf16 in: float32 out, close to float32 in.
  xs, ys = _inputs((8, 8), soft=False, seed=10)
  got = jax.jit(sigmoid)(xs.astype(jnp.bfloat16), ys)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, sigmoid(xs, ys), rtol=5e-2, atol=5e-3)


# optax.sigmoid_focal_loss is the anchor: equal values and gradients.


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_equals_optax(soft, gamma, alpha):
  x, y = _inputs((64,), soft, scale=30.0, seed=1)
  ours = lambda x: jnp.sum(jaxloss.focal_loss(x, y, alpha=alpha, gamma=gamma))
  theirs = lambda x: jnp.sum(
    optax.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma)
  )
  np.testing.assert_allclose(
    jaxloss.focal_loss(x, y, alpha=alpha, gamma=gamma),
    optax.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma),
    rtol=1e-5,
    atol=1e-6,
  )
  np.testing.assert_allclose(
    jax.grad(ours)(x), jax.grad(theirs)(x), rtol=1e-4, atol=1e-6
  )


# 3. Identities.


def test_focal_gamma_zero_is_binary_cross_entropy():
  x, y = _inputs((5, 3), soft=True)
  np.testing.assert_allclose(
    jaxloss.focal_loss(x, y, alpha=None, gamma=0.0),
    optax.sigmoid_binary_cross_entropy(x, y),
    rtol=1e-5,
    atol=1e-6,
  )


def test_softmax_focal_gamma_zero_is_cross_entropy():
  x = 3 * jax.random.normal(KEY, (6, 5))
  ids = jnp.arange(6) % 5
  np.testing.assert_allclose(
    jaxloss.softmax_focal_loss(x, ids, gamma=0.0),
    optax.softmax_cross_entropy_with_integer_labels(x, ids),
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    jaxloss.softmax_focal_loss(x, ids, gamma=2.0),
    jaxloss.softmax_focal_loss(x, jax.nn.one_hot(ids, 5), gamma=2.0),
    rtol=1e-6,
  )


def test_masked_equals_sliced_and_masked_entries_are_inert():
  x, y = _inputs((4, 6), soft=False)
  where = jnp.arange(6) < 4  # broadcasts over rows
  x_bad = x.at[:, 4:].set(jnp.nan)  # masked entries: NaN
  loss = jaxloss.focal_loss(x_bad, y, where=where)
  np.testing.assert_allclose(
    loss[:, :4], jaxloss.focal_loss(x[:, :4], y[:, :4])
  )
  np.testing.assert_array_equal(loss[:, 4:], 0)
  grad = jax.grad(lambda x: jaxloss.focal_loss(x, y, where=where).sum())(x_bad)
  np.testing.assert_array_equal(grad[:, 4:], 0)
  assert bool(jnp.all(jnp.isfinite(grad)))

  ids = jnp.array([0, 2, 255, 1])
  xs = 2 * jax.random.normal(KEY, (4, 3))
  xs_bad = xs.at[2].set(jnp.inf)
  got = jaxloss.softmax_focal_loss(xs_bad, ids, where=ids != 255)
  np.testing.assert_allclose(
    got[jnp.array([0, 1, 3])],
    jaxloss.softmax_focal_loss(
      xs[jnp.array([0, 1, 3])], ids[jnp.array([0, 1, 3])]
    ),
  )
  assert float(got[2]) == 0
  grad = jax.grad(
    lambda x: jaxloss.softmax_focal_loss(x, ids, where=ids != 255).sum()
  )(xs_bad)
  np.testing.assert_array_equal(grad[2], 0)


# 5. Edge cases.


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_extreme_logits_are_finite(gamma):
  x = jnp.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4])
  for y in (jnp.zeros_like(x), jnp.ones_like(x), jnp.full_like(x, 0.3)):
    value, grad = jax.value_and_grad(
      lambda x: jaxloss.focal_loss(x, y, gamma=gamma).sum()
    )(x)
    assert np.isfinite(value) and bool(jnp.all(jnp.isfinite(grad)))
  xs = jnp.array([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]])
  value, grad = jax.value_and_grad(
    lambda x: jaxloss.softmax_focal_loss(
      x, jnp.array([0, 1]), gamma=gamma
    ).sum()
  )(xs)
  assert np.isfinite(value) and bool(jnp.all(jnp.isfinite(grad)))


def test_nan_in_nan_out():
  x = jnp.array([0.0, jnp.nan])
  assert np.isnan(jaxloss.focal_loss(x, jnp.ones(2))[1])
  assert np.isnan(jaxloss.softmax_focal_loss(x[None], jnp.array([0]))[0])


def test_single_element_and_single_class():
  assert jaxloss.focal_loss(jnp.float32(0.0), jnp.float32(1.0)).shape == ()
  # One class: p = 1 always, the loss is 0.
  np.testing.assert_array_equal(
    jaxloss.softmax_focal_loss(jnp.ones((3, 1)), jnp.zeros(3, jnp.int32)), 0
  )


# 6. Reduced precision in, float32 out.


def test_bf16_and_fp16_inputs():
  x, y = _inputs((8, 8), soft=False)
  want = jaxloss.focal_loss(x, y)
  for dtype in (jnp.bfloat16, jnp.float16):
    got = jaxloss.focal_loss(x.astype(dtype), y.astype(dtype))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=5e-2, atol=5e-3)
    got = jaxloss.softmax_focal_loss(x.astype(dtype), jnp.arange(8) % 8)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(
      got,
      jaxloss.softmax_focal_loss(x, jnp.arange(8) % 8),
      rtol=5e-2,
      atol=5e-3,
    )


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
