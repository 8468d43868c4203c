"""Lovász-softmax and Lovász hinge: reference, identities, edge cases, checks.

Every value and gradient test runs both engines: ``"host"`` (the default,
which on CPU is the NumPy core through ``jax.pure_callback``) and ``"xla"``
(the pure-XLA core, the default on GPU and TPU), chosen with
``_lovasz.softmax_with_engine`` and ``_lovasz.hinge_with_engine``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxloss
from jaxloss import _lovasz
from tests import reference_lovasz as ref

ENGINES = ("host", "xla")


def _value_and_grad(loss):
  """``(value, grad)`` functions sharing one compiled program; the gradient
  is that of the sum of the loss (per-image losses are summed)."""

  @jax.jit
  def both(x, *rest):
    value, vjp = jax.vjp(lambda x: loss(x, *rest), x)
    return value, vjp(jnp.ones_like(value))[0]

  return (lambda *a: both(*a)[0]), (lambda *a: both(*a)[1])


@functools.cache
def _softmax_fn(
  engine, axis=None, classes="present", masked=False, class_weights=None
):
  """Value and gradient functions; one compilation per option combination."""
  if not isinstance(classes, str):
    classes_arr = jnp.asarray(classes)
  weights = (
    None if class_weights is None else np.asarray(class_weights, np.float32)
  )

  def loss(probs, labels, where):
    return _lovasz.softmax_with_engine(
      probs,
      labels,
      axis=axis,
      where=where if masked else None,
      classes=classes if isinstance(classes, str) else classes_arr,
      class_weights=weights,
      engine=engine,
    )

  return _value_and_grad(loss)


@functools.cache
def _hinge_fn(engine, axis=None, masked=False):
  def loss(logits, labels, where):
    return _lovasz.hinge_with_engine(
      logits, labels, axis=axis, where=where if masked else None, engine=engine
    )

  return _value_and_grad(loss)


def _softmax_inputs(seed, shape=(2, 5, 6, 4), scale=3.0):
  rng = np.random.default_rng(seed)
  logits = scale * rng.standard_normal(shape)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs = (probs / probs.sum(-1, keepdims=True)).astype(np.float32)
  labels = rng.integers(0, shape[-1], shape[:-1]).astype(np.int32)
  where = rng.random(shape[:-1]) < 0.7
  return probs, labels, where


def _hinge_inputs(seed, shape=(3, 5, 7)):
  rng = np.random.default_rng(seed)
  logits = (2 * rng.standard_normal(shape)).astype(np.float32)
  labels = (rng.random(shape) < 0.4).astype(np.int32)
  where = rng.random(shape) < 0.7
  return logits, labels, where


def _close(actual, expected):
  np.testing.assert_allclose(
    np.asarray(actual, np.float64), expected, rtol=1e-5, atol=1e-5
  )


# ---------------------------------------------------------------------------
# 1. Hand-computed cases.


@pytest.mark.parametrize("engine", ENGINES)
def test_softmax_three_pixels_by_hand(engine):
  # Class 0: errors (0.1, 0.6, 0.3), fg (1, 1, 0), T = 2. Sorted: 0.6 (fg,
  # g = 1/2), 0.3 (bg, g = 1/(2*3)), 0.1 (fg, g = 1/3): loss 23/60.
  # Class 1: errors (0.1, 0.6, 0.3), fg (0, 0, 1), T = 1. Sorted: 0.6 (bg,
  # g = 1/2), 0.3 (fg, g = 1/2), 0.1 (bg, g = 0): loss 27/60. Mean 25/60.
  probs = jnp.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]])
  labels = jnp.array([0, 0, 1])
  loss, grad = _softmax_fn(engine)
  _close(loss(probs, labels, None), 25 / 60)
  # d/dp = g * sign(p - fg) / 2 (two classes in the mean).
  _close(
    grad(probs, labels, None),
    np.array([[-1 / 3, 0.0], [-1 / 2, 1 / 2], [1 / 6, -1 / 2]]) / 2,
  )


@pytest.mark.parametrize("engine", ENGINES)
def test_hinge_by_hand(engine):
  # Errors 1 - s x: (0.5, 1.5, -1.0); T = 1. Sorted: 1.5 (bg, g = 1/2),
  # 0.5 (fg, g = 1/2), then a negative error (relu 0): loss 1.
  logits = jnp.array([0.5, 0.5, -2.0])
  labels = jnp.array([1, 0, 0])
  loss, grad = _hinge_fn(engine)
  _close(loss(logits, labels, None), 1.0)
  _close(grad(logits, labels, None), [-0.5, 0.5, 0.0])


# ---------------------------------------------------------------------------
# 2. The float64 reference, values and gradients.


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("classes", ["present", "all", (3, 0, 3)])
def test_softmax_matches_reference(engine, masked, per_image, classes):
  probs, labels, where = _softmax_inputs(1)
  labels[0][labels[0] == 2] = 1  # class 2 absent from the first image
  axis = (1, 2) if per_image else None
  loss, grad = _softmax_fn(engine, axis, classes, masked)
  want, want_grad = ref.lovasz_softmax(
    probs,
    labels,
    where if masked else None,
    classes if isinstance(classes, str) else list(classes),
    per_image,
  )
  _close(loss(probs, labels, where), want)
  _close(grad(probs, labels, where), want_grad)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("per_image", [False, True])
def test_hinge_matches_reference(engine, masked, per_image):
  logits, labels, where = _hinge_inputs(2)
  labels[1] = 0  # an image without foreground
  axis = (1, 2) if per_image else None
  loss, grad = _hinge_fn(engine, axis, masked)
  want, want_grad = ref.lovasz_hinge(
    logits, labels, where if masked else None, per_image
  )
  _close(loss(logits, labels, where), want)
  _close(grad(logits, labels, where), want_grad)


def test_larger_pooled_group_matches_reference():
  # A few thousand pixels: the closed-form weights keep their precision.
  probs, labels, _ = _softmax_inputs(3, shape=(4, 32, 32, 5), scale=1.0)
  want, want_grad = ref.lovasz_softmax(probs, labels)
  for engine in ENGINES:
    loss, grad = _softmax_fn(engine, None, "present", False)
    _close(loss(probs, labels, None), want)
    np.testing.assert_allclose(
      grad(probs, labels, None), want_grad, rtol=1e-4, atol=1e-8
    )


WEIGHTS = (0.5, 2.0, 0.0, 1.5)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("classes", ["present", "all", (3, 0, 3)])
def test_class_weights_match_reference(engine, per_image, classes):
  probs, labels, where = _softmax_inputs(21)
  labels[0][labels[0] == 3] = 1  # class 3 absent from the first image
  axis = (1, 2) if per_image else None
  loss, grad = _softmax_fn(engine, axis, classes, True, WEIGHTS)
  want, want_grad = ref.lovasz_softmax(
    probs,
    labels,
    where,
    classes if isinstance(classes, str) else list(classes),
    per_image,
    class_weights=WEIGHTS,
  )
  _close(loss(probs, labels, where), want)
  _close(grad(probs, labels, where), want_grad)


@pytest.mark.parametrize("engine", ENGINES)
def test_unit_class_weights_give_the_unweighted_loss(engine):
  probs, labels, where = _softmax_inputs(22)
  for classes in ("present", "all"):
    plain = _softmax_fn(engine, None, classes, True)
    ones = _softmax_fn(engine, None, classes, True, (1.0,) * 4)
    for a, b in zip(plain, ones):
      np.testing.assert_array_equal(
        a(probs, labels, where), b(probs, labels, where)
      )


@pytest.mark.parametrize("engine", ENGINES)
def test_a_zero_class_weight_drops_the_class(engine):
  probs, labels, _ = _softmax_inputs(23)
  dropped = _softmax_fn(engine, None, "all", False, (1.0, 0.0, 1.0, 1.0))
  kept = _softmax_fn(engine, None, (0, 2, 3), False)
  _close(dropped[0](probs, labels, None), kept[0](probs, labels, None))
  grad = np.asarray(dropped[1](probs, labels, None))
  _close(grad, kept[1](probs, labels, None))
  assert np.all(grad[..., 1] == 0)
  # Scaling every weight changes nothing.
  scaled = _softmax_fn(engine, None, "all", False, (3.0, 0.0, 3.0, 3.0))
  _close(scaled[0](probs, labels, None), kept[0](probs, labels, None))


def test_no_selected_class_weight_gives_zero_and_zero_gradient():
  probs, labels, _ = _softmax_inputs(24)
  labels[labels == 2] = 0  # class 2 absent
  # Only the absent class weighs: nothing is selected with "present".
  f = jax.value_and_grad(
    lambda p: jaxloss.lovasz_softmax(
      p, labels, class_weights=jnp.array([0.0, 0.0, 1.0, 0.0])
    )
  )
  value, grad = f(probs)
  assert float(value) == 0.0 and np.all(np.asarray(grad) == 0)


def test_traced_class_weights_and_their_gradient():
  probs, labels, _ = _softmax_inputs(25)
  f = jax.jit(
    lambda w: jaxloss.lovasz_softmax(
      probs, labels, classes="all", class_weights=w
    )
  )
  weights = jnp.array([1.0, 2.0, 3.0, 4.0])
  _close(
    f(weights),
    ref.lovasz_softmax(probs, labels, classes="all", class_weights=weights)[0],
  )
  # d/dw_c of sum_c w_c l_c / sum_c w_c = (l_c - loss) / sum_c w_c.
  per_class = np.array(
    [ref.lovasz_softmax(probs, labels, classes=[c])[0] for c in range(4)]
  )
  _close(jax.grad(f)(weights), (per_class - f(weights)) / 10.0)


# ---------------------------------------------------------------------------
# 3. The custom_vjp against autodiff through a plain sort.


def _plain_lovasz_rows(errors, fg):
  """Sort-based Lovász, differentiated by JAX through argsort."""
  order = jnp.argsort(-errors, axis=-1)
  e = jnp.take_along_axis(errors, order, axis=-1)
  gt = jnp.take_along_axis(fg, order, axis=-1).astype(errors.dtype)
  total = jnp.sum(gt, axis=-1, keepdims=True)
  inter = total - jnp.cumsum(gt, axis=-1)
  union = total + jnp.cumsum(1 - gt, axis=-1)
  jac = 1 - inter / union
  g = jnp.concatenate([jac[..., :1], jac[..., 1:] - jac[..., :-1]], axis=-1)
  return jnp.sum(e * g, axis=-1)


ROWS = _lovasz.Layout((0, 1), (2,), None)  # [3, 4, n]: already rows


def _rows_loss(preds, fg, hinge, engine):
  return _lovasz._lovasz_rows(
    preds,
    fg,
    None,
    layout=ROWS,
    hinge=hinge,
    skip_empty=False,
    host=engine == "host",
    axis_name=None,
  )[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_custom_vjp_equals_autodiff_through_sort(engine):
  rng = np.random.default_rng(4)
  cot = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)
  fg = jnp.asarray(rng.random((3, 4, 50)) < 0.3)
  # Softmax rows: probabilities, errors |fg - p| (tie-free).
  probs = jnp.asarray(rng.random((3, 4, 50)), jnp.float32)
  ours = lambda p: jnp.sum(cot * _rows_loss(p, fg, False, engine))
  plain = lambda p: jnp.sum(
    cot * _plain_lovasz_rows(jnp.abs(fg.astype(p.dtype) - p), fg)
  )
  np.testing.assert_allclose(ours(probs), plain(probs), rtol=1e-5)
  np.testing.assert_allclose(
    jax.grad(ours)(probs), jax.grad(plain)(probs), rtol=1e-5, atol=1e-6
  )
  # Hinge rows: logits, errors relu(1 - s x).
  logits = jnp.asarray(2 * rng.standard_normal((3, 4, 50)), jnp.float32)
  ours = lambda x: jnp.sum(cot * _rows_loss(x, fg, True, engine))
  plain = lambda x: jnp.sum(
    cot * _plain_lovasz_rows(jax.nn.relu(jnp.where(fg, 1 - x, 1 + x)), fg)
  )
  np.testing.assert_allclose(ours(logits), plain(logits), rtol=1e-5)
  np.testing.assert_allclose(
    jax.grad(ours)(logits), jax.grad(plain)(logits), rtol=1e-5, atol=1e-6
  )


def test_gradient_sorts_once_and_keeps_one_array():
  probs, labels, _ = _softmax_inputs(5)
  f = lambda p: _lovasz.softmax_with_engine(p, labels, engine="xla")
  text = str(jax.make_jaxpr(jax.grad(f))(probs))
  assert text.count(" sort[") == 1, text
  # The residual of the custom_vjp: one float per pixel and class.
  _, f_vjp = jax.vjp(f, probs)
  leaves = jax.tree_util.tree_leaves(f_vjp)
  sizes = sorted(x.size for x in leaves if hasattr(x, "size"))
  assert sum(s for s in sizes if s >= probs.size) <= 3 * probs.size, sizes


# ---------------------------------------------------------------------------
# 4. Identities.


@pytest.mark.parametrize("engine", ENGINES)
def test_per_image_equals_vmap(engine):
  probs, labels, where = _softmax_inputs(6)
  f = lambda p, y, w: _lovasz.softmax_with_engine(p, y, where=w, engine=engine)
  per_image = _softmax_fn(engine, (1, 2), "present", True)[0]
  _close(
    per_image(probs, labels, where), jax.jit(jax.vmap(f))(probs, labels, where)
  )
  logits, hlabels, hwhere = _hinge_inputs(7)
  h = lambda x, y, w: _lovasz.hinge_with_engine(x, y, where=w, engine=engine)
  _close(
    _hinge_fn(engine, (1, 2), True)[0](logits, hlabels, hwhere),
    jax.jit(jax.vmap(h))(logits, hlabels, hwhere),
  )


@pytest.mark.parametrize("engine", ENGINES)
def test_masked_equals_sliced(engine):
  probs, labels, _ = _softmax_inputs(8, shape=(1, 4, 6, 3))
  where = np.zeros(labels.shape, bool)
  where[:, :, :4] = True
  # Garbage (NaN) at masked pixels changes nothing, gradient there is 0.
  dirty = probs.copy()
  dirty[~where] = np.nan
  f = jax.value_and_grad(
    lambda p: _lovasz.softmax_with_engine(p, labels, where=where, engine=engine)
  )
  g = jax.value_and_grad(
    lambda p: _lovasz.softmax_with_engine(p, labels[:, :, :4], engine=engine)
  )
  (value, grad), (want, want_grad) = (
    jax.jit(f)(dirty),
    jax.jit(g)(probs[:, :, :4]),
  )
  _close(value, want)
  _close(grad[:, :, :4], want_grad)
  assert np.all(np.asarray(grad)[:, :, 4:] == 0)


def test_the_two_cores_agree_on_ties():
  # Uniform probabilities: every error of a class is tied. Ties are broken
  # by pixel index in both cores, so the subgradients are identical.
  probs = jnp.full((2, 3, 4, 3), 1 / 3)
  labels = jnp.asarray(np.random.default_rng(9).integers(0, 3, (2, 3, 4)))
  grads = [
    jax.grad(lambda p: _lovasz.softmax_with_engine(p, labels, engine=e))(probs)
    for e in ENGINES
  ]
  np.testing.assert_array_equal(grads[0], grads[1])


# ---------------------------------------------------------------------------
# 5. Edge cases.


@pytest.mark.parametrize("engine", ENGINES)
def test_ties_give_reference_value_and_a_subgradient(engine):
  labels = np.random.default_rng(10).integers(0, 3, (2, 3, 4))
  probs = np.full((2, 3, 4, 3), 1 / 3, np.float32)
  f = lambda p: _lovasz.softmax_with_engine(p, labels, engine=engine)
  _close(f(probs), ref.lovasz_softmax(probs, labels)[0])
  grad = np.asarray(jax.grad(f)(probs), np.float64)
  assert np.all(np.isfinite(grad))
  # The loss is convex in probs (errors are affine in p on [0, 1]), so a
  # subgradient satisfies L(p + d) >= L(p) + <grad, d>.
  rng = np.random.default_rng(11)
  base = ref.lovasz_softmax(probs, labels)[0]
  for _ in range(20):
    d = 0.05 * rng.standard_normal(probs.shape)
    moved = ref.lovasz_softmax(probs + d, labels)[0]
    assert moved >= base + np.sum(grad * d) - 1e-6


@pytest.mark.parametrize("engine", ENGINES)
def test_no_valid_pixel_gives_zero_and_zero_gradient(engine):
  probs, labels, _ = _softmax_inputs(12)
  where = np.zeros(labels.shape, bool)
  loss, grad = _softmax_fn(engine, None, "present", True)
  assert float(loss(probs, labels, where)) == 0.0
  assert np.all(np.asarray(grad(probs, labels, where)) == 0)
  per_image = _softmax_fn(engine, (1, 2), "all", True)
  where[1, 0, 0] = True
  np.testing.assert_array_equal(per_image[0](probs, labels, where)[0], 0.0)
  logits, hlabels, _ = _hinge_inputs(13)
  hloss, hgrad = _hinge_fn(engine, None, True)
  none = np.zeros(hlabels.shape, bool)
  assert float(hloss(logits, hlabels, none)) == 0.0
  assert np.all(np.asarray(hgrad(logits, hlabels, none)) == 0)


def test_uint8_labels_with_many_classes():
  rng = np.random.default_rng(20)
  probs = rng.dirichlet(np.ones(300), size=(40,)).astype(np.float32)
  labels = rng.integers(250, 300, 40)
  want = ref.lovasz_softmax(probs[None], labels[None])[0]
  _close(jaxloss.lovasz_softmax(probs, labels.astype(np.int32)), want)
  small = rng.integers(0, 256, 40)
  _close(
    jaxloss.lovasz_softmax(probs, small.astype(np.uint8)),
    ref.lovasz_softmax(probs[None], small[None])[0],
  )


def test_empty_input_gives_zero():
  for engine in ENGINES:
    f = lambda p: _lovasz.softmax_with_engine(
      p, jnp.zeros((0,), int), engine=engine
    )
    value, grad = jax.value_and_grad(f)(jnp.zeros((0, 3)))
    assert float(value) == 0.0 and grad.shape == (0, 3)
    h = lambda x: _lovasz.hinge_with_engine(
      x, jnp.zeros((2, 0)), axis=1, engine=engine
    )
    np.testing.assert_array_equal(h(jnp.zeros((2, 0))), [0.0, 0.0])


@pytest.mark.parametrize("engine", ENGINES)
def test_absent_selected_class_is_its_largest_probability(engine):
  probs, labels, _ = _softmax_inputs(14, shape=(1, 3, 3, 3))
  labels[:] = 0
  loss = _lovasz.softmax_with_engine(
    probs, labels, classes=jnp.array([1]), engine=engine
  )
  _close(loss, probs[..., 1].max())


def test_one_class_and_one_pixel():
  for engine in ENGINES:
    # One class: every pixel is foreground, errors 1 - p.
    probs = jnp.array([[0.2], [0.7]])
    want = ref.lovasz_softmax(probs[None], jnp.zeros((1, 2), int))[0]
    _close(_softmax_fn(engine)[0](probs, jnp.zeros(2, int), None), want)
    # One pixel: the loss is its error.
    _close(_hinge_fn(engine)[0](jnp.array([0.25]), jnp.array([1]), None), 0.75)


@pytest.mark.parametrize("engine", ENGINES)
def test_extreme_logits_are_finite_and_nan_propagates(engine):
  logits = jnp.array([1e4, -1e4, 1e4, -1e4])
  labels = jnp.array([1, 0, 0, 1])
  f = jax.jit(
    jax.value_and_grad(
      lambda x: _lovasz.hinge_with_engine(x, labels, engine=engine)
    )
  )
  value, grad = f(logits)
  assert np.isfinite(value) and np.all(np.isfinite(grad))
  _close(value, ref.lovasz_hinge(logits, labels)[0])
  assert np.isnan(f(logits.at[0].set(jnp.nan))[0])
  probs = jax.nn.softmax(jnp.array([[1e4, -1e4], [-1e4, 1e4]]), axis=-1)
  g = jax.jit(
    jax.value_and_grad(
      lambda p: _lovasz.softmax_with_engine(p, jnp.array([1, 1]), engine=engine)
    )
  )
  assert np.all(np.isfinite(g(probs)[1]))
  assert np.isnan(g(probs.at[0, 1].set(jnp.nan))[0])  # a present class


@pytest.mark.parametrize("engine", ENGINES)
def test_bf16_accumulates_in_float32(engine):
  probs, labels, _ = _softmax_inputs(15)
  low = jnp.asarray(probs, jnp.bfloat16)
  out = _lovasz.softmax_with_engine(low, labels, engine=engine)
  assert out.dtype == jnp.float32
  # Equal to the float32 loss of the rounded probabilities.
  _close(out, ref.lovasz_softmax(np.asarray(low, np.float32), labels)[0])
  logits, hlabels, _ = _hinge_inputs(16)
  out = _lovasz.hinge_with_engine(
    jnp.asarray(logits, jnp.float16), hlabels, engine=engine
  )
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(
    out, ref.lovasz_hinge(logits, hlabels)[0], rtol=1e-2
  )


def test_float64_inputs_when_x64_is_enabled():
  with jax.enable_x64(True):
    probs, labels, where = _softmax_inputs(17)
    probs = probs.astype(np.float64)
    for engine in ENGINES:
      f = lambda p: _lovasz.softmax_with_engine(
        p, labels, where=where, engine=engine
      )
      out, grad = jax.jit(jax.value_and_grad(f))(probs)
      assert out.dtype == jnp.float64
      want, want_grad = ref.lovasz_softmax(probs, labels, where)
      np.testing.assert_allclose(out, want, rtol=1e-12)
      np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-14)


def test_bool_and_float_hinge_labels():
  logits, labels, _ = _hinge_inputs(18)
  want = jaxloss.lovasz_hinge(logits, labels)
  _close(jaxloss.lovasz_hinge(logits, labels.astype(bool)), want)
  _close(jaxloss.lovasz_hinge(logits, labels.astype(np.float32)), want)


def test_public_default_is_the_cpu_core_and_matches():
  probs, labels, where = _softmax_inputs(19)
  _close(
    jaxloss.lovasz_softmax(probs, labels, where=where),
    ref.lovasz_softmax(probs, labels, where)[0],
  )
  fn = jax.jit(jax.value_and_grad(lambda p: jaxloss.lovasz_softmax(p, labels)))
  # Lowered for this CPU: the host sort (a callback); lowered for export
  # (which cannot serialize a callback): the XLA sort, with the same values.
  assert "callback" in fn.lower(probs).as_text()
  exported = jax.export.export(fn)(probs)
  assert "callback" not in exported.mlir_module()
  assert "sort" in exported.mlir_module()
  for got, want in zip(exported.call(probs), fn(probs)):
    _close(got, want)


# ---------------------------------------------------------------------------
# 6. Bad input.


@pytest.mark.parametrize(
  "call, error, match",
  [
    (
      lambda: jaxloss.lovasz_softmax(
        jnp.ones((2, 3, 4)), jnp.zeros((2, 4), int)
      ),
      ValueError,
      r"lovasz_softmax: labels.shape \(2, 4\) must equal "
      r"probs.shape\[:-1\]",
    ),
    (
      lambda: jaxloss.lovasz_softmax(jnp.ones((2, 3)), jnp.zeros(2)),
      TypeError,
      "lovasz_softmax: labels must be integer class ids",
    ),
    (
      lambda: jaxloss.lovasz_softmax(jnp.ones((2, 3)), jnp.zeros((2, 3), int)),
      ValueError,
      r"labels.shape \(2, 3\) must equal probs.shape\[:-1\]",
    ),
    (
      lambda: jaxloss.lovasz_softmax(jnp.ones(()), jnp.zeros((), int)),
      ValueError,
      "lovasz_softmax: probs must have rank >= 1",
    ),
    (
      lambda: jaxloss.lovasz_softmax(
        jnp.ones((2, 3)), jnp.zeros(2, int), where=jnp.ones(3, bool)
      ),
      ValueError,
      r"lovasz_softmax: where.shape \(3,\) must equal probs.shape\[:-1\] \(2,\)",
    ),
    (
      lambda: jaxloss.lovasz_softmax(
        jnp.ones((2, 3)), jnp.zeros(2, int), axis=1
      ),
      ValueError,
      "lovasz_softmax: axis 1 includes the class axis",
    ),
    (
      lambda: jaxloss.lovasz_softmax(
        jnp.ones((2, 3)), jnp.zeros(2, int), classes="some"
      ),
      ValueError,
      "lovasz_softmax: classes must be",
    ),
    (
      lambda: jaxloss.lovasz_softmax(jnp.ones((2, 3), int), jnp.zeros(2, int)),
      TypeError,
      "lovasz_softmax: probs must have a floating dtype",
    ),
    (
      lambda: jaxloss.lovasz_softmax(
        jnp.ones((2, 3)), jnp.zeros(2, int), class_weights=jnp.ones(4)
      ),
      ValueError,
      r"lovasz_softmax: class_weights.shape \(4,\) must be "
      r"\(3,\)",
    ),
    (
      lambda: jaxloss.lovasz_softmax(
        jnp.ones((2, 3)), jnp.zeros(2, int), class_weights=[1.0, -1.0, 1.0]
      ),
      ValueError,
      "lovasz_softmax: class_weights must be finite and >= 0",
    ),
    (
      lambda: jaxloss.lovasz_softmax(
        jnp.ones((2, 3)), jnp.zeros(2, int), class_weights=jnp.ones(3, bool)
      ),
      TypeError,
      "lovasz_softmax: class_weights must be real, got dtype bool",
    ),
    (
      lambda: jaxloss.lovasz_softmax(
        jnp.ones((2, 3)), jnp.zeros(2, int), class_weights="balanced"
      ),
      TypeError,
      "lovasz_softmax: class_weights must be an array",
    ),
    (
      lambda: _lovasz.softmax_with_engine(
        jnp.ones((2, 3)), jnp.zeros(2, int), engine="numpy"
      ),
      ValueError,
      "softmax_with_engine: engine must be one of",
    ),
    (
      lambda: _lovasz.hinge_with_engine(
        jnp.ones(2), jnp.zeros(2), engine="auto"
      ),
      ValueError,
      "hinge_with_engine: engine must be one of",
    ),
    (
      lambda: jaxloss.lovasz_hinge(jnp.ones((2, 3)), jnp.zeros((2, 4))),
      ValueError,
      r"lovasz_hinge: labels.shape \(2, 4\) must equal "
      r"logits.shape \(2, 3\)",
    ),
    (
      lambda: jaxloss.lovasz_hinge(
        jnp.ones((2, 3)), jnp.zeros((2, 3)), where=jnp.ones(3, bool)
      ),
      ValueError,
      r"lovasz_hinge: where.shape \(3,\) must equal \(2, 3\)",
    ),
    (
      lambda: jaxloss.lovasz_hinge(jnp.ones((2, 3)), jnp.zeros((2, 3)), axis=2),
      ValueError,
      "lovasz_hinge: axis 2 is out of range",
    ),
    (
      lambda: jaxloss.lovasz_hinge(
        jnp.ones((2, 3)), jnp.zeros((2, 3)), axis=(1, -1)
      ),
      ValueError,
      "lovasz_hinge: axis .* repeats axis 1",
    ),
  ],
)
def test_bad_input_names_function_and_argument(call, error, match):
  with pytest.raises(error, match=match):
    call()


def test_labels_out_of_range_reported_under_checkify():
  with jaxloss.value_checks():
    probs = jnp.full((3, 2), 0.5)
    checked = checkify.checkify(
      lambda y, w: jaxloss.lovasz_softmax(probs, y, where=w)
    )
    err, _ = checked(jnp.array([0, 2, 1]), jnp.ones(3, bool))
    with pytest.raises(
      checkify.JaxRuntimeError, match="lovasz_softmax: labels"
    ):
      err.throw()
    err, _ = checked(jnp.array([0, -1, 1]), jnp.array([True, False, True]))
    err.throw()  # the bad label is masked: nothing to report
    hinge = checkify.checkify(lambda y: jaxloss.lovasz_hinge(jnp.zeros(3), y))
    err, _ = hinge(jnp.array([0, 2, 1]))
    with pytest.raises(checkify.JaxRuntimeError, match="lovasz_hinge: labels"):
      err.throw()


@pytest.mark.parametrize("engine", _lovasz.ENGINES)
def test_per_element_mask_is_each_class_on_its_own_pixels(engine):
  rng = np.random.default_rng(41)
  probs = jax.nn.softmax(
    jnp.asarray(rng.normal(size=(2, 4, 5, 3)), jnp.float32)
  )
  labels = jnp.asarray(rng.integers(0, 3, (2, 4, 5)), jnp.int32)
  where = jnp.asarray(rng.random(probs.shape) < 0.7)
  loss = functools.partial(_lovasz.softmax_with_engine, engine=engine)
  for c in range(3):
    np.testing.assert_allclose(
      loss(probs, labels, where=where, classes=jnp.array([c])),
      loss(probs, labels, where=where[..., c], classes=jnp.array([c])),
      rtol=1e-6,
    )
  pixel = where[..., 0]
  np.testing.assert_allclose(
    loss(probs, labels, where=jnp.broadcast_to(pixel[..., None], probs.shape)),
    loss(probs, labels, where=pixel),
    rtol=1e-6,
  )
  # Masked entries may hold NaN: no value, no gradient.
  bad = jnp.where(where, probs, jnp.nan)
  value, grad = jax.value_and_grad(
    lambda p: loss(p, labels, where=where, classes="all")
  )(bad)
  assert np.isfinite(value) and np.all(np.isfinite(grad))
  assert np.all(np.asarray(grad)[~np.asarray(where)] == 0)
