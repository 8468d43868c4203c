"""Lovász-softmax and Lovász hinge: reference, identities, edge cases, checks.

Every value and gradient test runs both engines: ``"host"`` (the default,
which on CPU is the NumPy core through ``jax.pure_callback``) and ``"xla"``
(the pure-XLA core, the default on GPU and TPU), chosen with
``_lovasz.softmax_with_engine`` and ``_lovasz.hinge_with_engine``.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxloss
from jaxloss import _lovasz
from tests import reference_lovasz as ref

ENGINES = ("host", "xla")


class Case(NamedTuple):
  """The options of one Lovász-softmax call (hashable: a static argument)."""

  engine: str
  axis: tuple[int, ...] | None = None
  classes: str | tuple[int, ...] = "present"
  masked: bool = False
  class_weights: tuple[float, ...] | None = None


class HingeCase(NamedTuple):
  engine: str
  axis: tuple[int, ...] | None = None
  masked: bool = False


BOTH = tuple(Case(engine) for engine in ENGINES)
HINGE_BOTH = tuple(HingeCase(engine) for engine in ENGINES)


def _value_and_grad(loss, x):
  """The loss and the gradient of its sum (per-image losses are summed)."""
  value, vjp = jax.vjp(loss, x)
  return value, vjp(jnp.ones_like(value))[0]


@functools.partial(jax.jit, static_argnums=0)
def _softmax(cases, probs, labels, where):
  """``(value, grad)`` of each case, in one program (one compilation for
  the tests that pass the same cases and shapes)."""
  out = []
  for case in cases:
    # Class ids and weights as NumPy arrays: concrete, as a caller's are.
    classes, weights = case.classes, case.class_weights
    if not isinstance(classes, str):
      classes = np.asarray(classes, np.int32)
    if weights is not None:
      weights = np.asarray(weights, np.float32)
    loss = lambda p: _lovasz.softmax_with_engine(
      p,
      labels,
      axis=case.axis,
      where=where if case.masked else None,
      classes=classes,
      class_weights=weights,
      engine=case.engine,
    )
    out.append(_value_and_grad(loss, probs))
  return out


@functools.partial(jax.jit, static_argnums=0)
def _hinge(cases, logits, labels, where):
  """``(value, grad)`` of each ``HingeCase``, in one program."""
  out = []
  for case in cases:
    loss = lambda x: _lovasz.hinge_with_engine(
      x,
      labels,
      axis=case.axis,
      where=where if case.masked else None,
      engine=case.engine,
    )
    out.append(_value_and_grad(loss, logits))
  return out


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


def _close(actual, expected, case=""):
  np.testing.assert_allclose(
    np.asarray(actual, np.float64),
    expected,
    rtol=1e-5,
    atol=1e-5,
    err_msg=str(case),
  )


def _classes(classes):
  """The class selection as the reference takes it."""
  return classes if isinstance(classes, str) else list(classes)


# ---------------------------------------------------------------------------
# 1. Hand-computed cases.


def test_softmax_three_pixels_by_hand():
  # Class 0: errors (0.1, 0.6, 0.3), fg (1, 1, 0), T = 2. Sorted: 0.6 (fg,
  # g = 1/2), 0.3 (bg, g = 1/(2*3)), 0.1 (fg, g = 1/3): loss 23/60.
  # Class 1: errors (0.1, 0.6, 0.3), fg (0, 0, 1), T = 1. Sorted: 0.6 (bg,
  # g = 1/2), 0.3 (fg, g = 1/2), 0.1 (bg, g = 0): loss 27/60. Mean 25/60.
  probs = jnp.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]])
  labels = jnp.array([0, 0, 1])
  for case, (value, grad) in zip(BOTH, _softmax(BOTH, probs, labels, None)):
    _close(value, 25 / 60, case)
    # d/dp = g * sign(p - fg) / 2 (two classes in the mean).
    _close(
      grad,
      np.array([[-1 / 3, 0.0], [-1 / 2, 1 / 2], [1 / 6, -1 / 2]]) / 2,
      case,
    )


def test_hinge_by_hand():
  # Errors 1 - s x: (0.5, 1.5, -1.0); T = 1. Sorted: 1.5 (bg, g = 1/2),
  # 0.5 (fg, g = 1/2), then a negative error (relu 0): loss 1.
  logits = jnp.array([0.5, 0.5, -2.0])
  labels = jnp.array([1, 0, 0])
  out = _hinge(HINGE_BOTH, logits, labels, None)
  for case, (value, grad) in zip(HINGE_BOTH, out):
    _close(value, 1.0, case)
    _close(grad, [-0.5, 0.5, 0.0], case)


# ---------------------------------------------------------------------------
# 2. The float64 reference, values and gradients.


def _softmax_matches_reference(cases, probs, labels, where):
  """Each case's value and gradient against the float64 reference, which
  takes the same options (mask, selection, pooling, class weights)."""
  for case, (value, grad) in zip(cases, _softmax(cases, probs, labels, where)):
    want, want_grad = ref.lovasz_softmax(
      probs,
      labels,
      where if case.masked else None,
      _classes(case.classes),
      case.axis is not None,
      class_weights=case.class_weights,
    )
    _close(value, want, case)
    _close(grad, want_grad, case)


def test_softmax_matches_reference():
  """Both engines, masked or not, pooled or per image, every selection."""
  probs, labels, where = _softmax_inputs(1)
  labels[0][labels[0] == 2] = 1  # class 2 absent from the first image
  cases = tuple(
    Case(engine, axis, classes, masked)
    for engine in ENGINES
    for masked in (False, True)
    for axis in (None, (1, 2))
    for classes in ("present", "all", (3, 0, 3))
  )
  _softmax_matches_reference(cases, probs, labels, where)


def test_hinge_matches_reference():
  logits, labels, where = _hinge_inputs(2)
  labels[1] = 0  # an image without foreground
  cases = tuple(
    HingeCase(engine, axis, masked)
    for engine in ENGINES
    for masked in (False, True)
    for axis in (None, (1, 2))
  )
  for case, (value, grad) in zip(cases, _hinge(cases, logits, labels, where)):
    want, want_grad = ref.lovasz_hinge(
      logits, labels, where if case.masked else None, case.axis is not None
    )
    _close(value, want, case)
    _close(grad, want_grad, case)


def test_larger_pooled_group_matches_reference():
  # A few thousand pixels: the closed-form weights keep their precision.
  probs, labels, _ = _softmax_inputs(3, shape=(4, 32, 32, 5), scale=1.0)
  want, want_grad = ref.lovasz_softmax(probs, labels)
  for case, (value, grad) in zip(BOTH, _softmax(BOTH, probs, labels, None)):
    _close(value, want, case)
    np.testing.assert_allclose(
      grad, want_grad, rtol=1e-4, atol=1e-8, err_msg=str(case)
    )


WEIGHTS = (0.5, 2.0, 0.0, 1.5)


def test_class_weights_match_reference():
  probs, labels, where = _softmax_inputs(21)
  labels[0][labels[0] == 3] = 1  # class 3 absent from the first image
  cases = tuple(
    Case(engine, axis, classes, True, WEIGHTS)
    for engine in ENGINES
    for axis in (None, (1, 2))
    for classes in ("present", "all", (3, 0, 3))
  )
  _softmax_matches_reference(cases, probs, labels, where)


def test_unit_class_weights_give_the_unweighted_loss():
  probs, labels, where = _softmax_inputs(22)
  plain = tuple(
    Case(engine, None, classes, True)
    for engine in ENGINES
    for classes in ("present", "all")
  )
  ones = tuple(case._replace(class_weights=(1.0,) * 4) for case in plain)
  out = _softmax(plain + ones, probs, labels, where)
  for case, a, b in zip(plain, out[: len(plain)], out[len(plain) :]):
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x, y, err_msg=str(case))


def test_a_zero_class_weight_drops_the_class():
  probs, labels, _ = _softmax_inputs(23)
  for engine in ENGINES:
    cases = (
      Case(engine, None, "all", False, (1.0, 0.0, 1.0, 1.0)),  # dropped
      Case(engine, None, (0, 2, 3)),  # kept
      Case(engine, None, "all", False, (3.0, 0.0, 3.0, 3.0)),  # scaled
    )
    dropped, kept, scaled = _softmax(cases, probs, labels, None)
    _close(dropped[0], kept[0], engine)
    grad = np.asarray(dropped[1])
    _close(grad, kept[1], engine)
    assert np.all(grad[..., 1] == 0)
    # Scaling every weight changes nothing.
    _close(scaled[0], kept[0], engine)


def test_no_selected_class_weight_gives_zero_and_zero_gradient():
  probs, labels, _ = _softmax_inputs(24)
  labels[labels == 2] = 0  # class 2 absent
  # Only the absent class weighs: nothing is selected with "present".
  weights = jnp.array([0.0, 0.0, 1.0, 0.0])
  f = jax.value_and_grad(
    lambda p, y: jaxloss.lovasz_softmax(p, y, class_weights=weights)
  )
  value, grad = jax.jit(f)(probs, labels)
  assert float(value) == 0.0 and np.all(np.asarray(grad) == 0)


def test_traced_class_weights_and_their_gradient():
  probs, labels, _ = _softmax_inputs(25)
  f = lambda w, p, y: jaxloss.lovasz_softmax(
    p, y, classes="all", class_weights=w
  )
  weights = jnp.array([1.0, 2.0, 3.0, 4.0])
  value, grad = jax.jit(jax.value_and_grad(f))(weights, probs, labels)
  _close(
    value,
    ref.lovasz_softmax(probs, labels, classes="all", class_weights=weights)[0],
  )
  # d/dw_c of sum_c w_c l_c / sum_c w_c = (l_c - loss) / sum_c w_c.
  per_class = np.array(
    [ref.lovasz_softmax(probs, labels, classes=[c])[0] for c in range(4)]
  )
  _close(grad, (per_class - value) / 10.0)


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


@jax.jit
def _rows_and_plain_sort(probs, logits, fg, cot):
  """For each engine, softmax rows then hinge rows: ``(value, grad)`` of
  the custom_vjp and of autodiff through the plain sort."""
  errors = {
    # Softmax rows: probabilities, errors |fg - p| (tie-free).
    False: lambda p: jnp.abs(fg.astype(p.dtype) - p),
    # Hinge rows: logits, errors relu(1 - s x).
    True: lambda x: jax.nn.relu(jnp.where(fg, 1 - x, 1 + x)),
  }
  out = []
  for engine in ENGINES:
    for hinge, x in ((False, probs), (True, logits)):
      ours = lambda x: jnp.sum(cot * _rows_loss(x, fg, hinge, engine))
      plain = lambda x: jnp.sum(cot * _plain_lovasz_rows(errors[hinge](x), fg))
      out.append((jax.value_and_grad(ours)(x), jax.value_and_grad(plain)(x)))
  return out


def test_custom_vjp_equals_autodiff_through_sort():
  rng = np.random.default_rng(4)
  cot = rng.standard_normal((3, 4)).astype(np.float32)
  fg = rng.random((3, 4, 50)) < 0.3
  probs = rng.random((3, 4, 50)).astype(np.float32)
  logits = (2 * rng.standard_normal((3, 4, 50))).astype(np.float32)
  out = _rows_and_plain_sort(probs, logits, fg, cot)
  cases = [(e, rows) for e in ENGINES for rows in ("softmax", "hinge")]
  for case, ((value, grad), (want, want_grad)) in zip(cases, out):
    np.testing.assert_allclose(value, want, rtol=1e-5, err_msg=str(case))
    np.testing.assert_allclose(
      grad, want_grad, rtol=1e-5, atol=1e-6, err_msg=str(case)
    )


def test_gradient_sorts_once_and_keeps_one_array():
  probs, labels, _ = _softmax_inputs(5)
  f = lambda p, y: _lovasz.softmax_with_engine(p, y, engine="xla")
  text = str(jax.make_jaxpr(jax.grad(f))(probs, labels))
  assert text.count(" sort[") == 1, text
  # The residual of the custom_vjp: one float per pixel and class.
  f_vjp = jax.eval_shape(
    lambda p, y: jax.vjp(lambda p: f(p, y), p)[1], probs, labels
  )
  leaves = jax.tree_util.tree_leaves(f_vjp)
  sizes = sorted(x.size for x in leaves if hasattr(x, "size"))
  assert sum(s for s in sizes if s >= probs.size) <= 3 * probs.size, sizes


# ---------------------------------------------------------------------------
# 4. Identities.


@jax.jit
def _per_image_and_vmap(probs, labels, where, logits, hlabels, hwhere):
  """For each engine and loss: ``axis=(1, 2)``, and the pooled loss under
  ``vmap``."""
  out = []
  for engine in ENGINES:
    f = functools.partial(_lovasz.softmax_with_engine, engine=engine)
    h = functools.partial(_lovasz.hinge_with_engine, engine=engine)
    out.append(
      (
        f(probs, labels, where=where, axis=(1, 2)),
        jax.vmap(lambda p, y, w: f(p, y, where=w))(probs, labels, where),
      )
    )
    out.append(
      (
        h(logits, hlabels, where=hwhere, axis=(1, 2)),
        jax.vmap(lambda x, y, w: h(x, y, where=w))(logits, hlabels, hwhere),
      )
    )
  return out


def test_per_image_equals_vmap():
  probs, labels, where = _softmax_inputs(6)
  logits, hlabels, hwhere = _hinge_inputs(7)
  out = _per_image_and_vmap(probs, labels, where, logits, hlabels, hwhere)
  cases = [(e, loss) for e in ENGINES for loss in ("softmax", "hinge")]
  for case, (per_image, mapped) in zip(cases, out):
    _close(per_image, mapped, case)


@jax.jit
def _masked_and_sliced(dirty, labels, where, sliced, sliced_labels):
  out = []
  for engine in ENGINES:
    f = functools.partial(_lovasz.softmax_with_engine, engine=engine)
    out.append(
      (
        jax.value_and_grad(lambda p: f(p, labels, where=where))(dirty),
        jax.value_and_grad(lambda p: f(p, sliced_labels))(sliced),
      )
    )
  return out


def test_masked_equals_sliced():
  probs, labels, _ = _softmax_inputs(8, shape=(1, 4, 6, 3))
  where = np.zeros(labels.shape, bool)
  where[:, :, :4] = True
  # Garbage (NaN) at masked pixels changes nothing, gradient there is 0.
  dirty = probs.copy()
  dirty[~where] = np.nan
  out = _masked_and_sliced(
    dirty, labels, where, probs[:, :, :4], labels[:, :, :4]
  )
  for engine, ((value, grad), (want, want_grad)) in zip(ENGINES, out):
    _close(value, want, engine)
    _close(grad[:, :, :4], want_grad, engine)
    assert np.all(np.asarray(grad)[:, :, 4:] == 0)


def test_the_two_cores_agree_on_ties():
  # Uniform probabilities: every error of a class is tied. Ties are broken
  # by pixel index in both cores, so the subgradients are identical.
  probs = jnp.full((2, 3, 4, 3), 1 / 3)
  labels = jnp.asarray(np.random.default_rng(9).integers(0, 3, (2, 3, 4)))
  (_, host), (_, xla) = _softmax(BOTH, probs, labels, None)
  np.testing.assert_array_equal(host, xla)


# ---------------------------------------------------------------------------
# 5. Edge cases.


def test_ties_give_reference_value_and_a_subgradient():
  labels = np.random.default_rng(10).integers(0, 3, (2, 3, 4))
  probs = np.full((2, 3, 4, 3), 1 / 3, np.float32)
  base = ref.lovasz_softmax(probs, labels)[0]
  for case, (value, grad) in zip(BOTH, _softmax(BOTH, probs, labels, None)):
    _close(value, base, case)
    grad = np.asarray(grad, np.float64)
    assert np.all(np.isfinite(grad))
    # The loss is convex in probs (errors are affine in p on [0, 1]), so a
    # subgradient satisfies L(p + d) >= L(p) + <grad, d>.
    rng = np.random.default_rng(11)
    for _ in range(20):
      d = 0.05 * rng.standard_normal(probs.shape)
      moved = ref.lovasz_softmax(probs + d, labels)[0]
      assert moved >= base + np.sum(grad * d) - 1e-6


def test_no_valid_pixel_gives_zero_and_zero_gradient():
  probs, labels, _ = _softmax_inputs(12)
  # Pooled with "present", then per image with "all": one program.
  cases = tuple(Case(e, masked=True) for e in ENGINES) + tuple(
    Case(e, (1, 2), "all", True) for e in ENGINES
  )
  where = np.zeros(labels.shape, bool)
  for value, grad in _softmax(cases, probs, labels, where)[:2]:
    assert float(value) == 0.0
    assert np.all(np.asarray(grad) == 0)
  where[1, 0, 0] = True
  for value, _ in _softmax(cases, probs, labels, where)[2:]:
    np.testing.assert_array_equal(value[0], 0.0)
  logits, hlabels, _ = _hinge_inputs(13)
  none = np.zeros(hlabels.shape, bool)
  cases = tuple(HingeCase(e, masked=True) for e in ENGINES)
  for value, grad in _hinge(cases, logits, hlabels, none):
    assert float(value) == 0.0
    assert np.all(np.asarray(grad) == 0)


def test_uint8_labels_with_many_classes():
  rng = np.random.default_rng(20)
  probs = rng.dirichlet(np.ones(300), size=(40,)).astype(np.float32)
  labels = rng.integers(250, 300, 40)
  small = rng.integers(0, 256, 40)
  got, got_small = jax.jit(
    lambda p, y, small: (
      jaxloss.lovasz_softmax(p, y),
      jaxloss.lovasz_softmax(p, small),
    )
  )(probs, labels.astype(np.int32), small.astype(np.uint8))
  _close(got, ref.lovasz_softmax(probs[None], labels[None])[0])
  _close(got_small, ref.lovasz_softmax(probs[None], small[None])[0])


@jax.jit
def _empty(probs, labels, logits, hlabels):
  out = []
  for engine in ENGINES:
    f = lambda p: _lovasz.softmax_with_engine(p, labels, engine=engine)
    h = _lovasz.hinge_with_engine(logits, hlabels, axis=1, engine=engine)
    out.append((jax.value_and_grad(f)(probs), h))
  return out


def test_empty_input_gives_zero():
  out = _empty(
    jnp.zeros((0, 3)),
    jnp.zeros((0,), int),
    jnp.zeros((2, 0)),
    jnp.zeros((2, 0)),
  )
  for (value, grad), hinge in out:
    assert float(value) == 0.0 and grad.shape == (0, 3)
    np.testing.assert_array_equal(hinge, [0.0, 0.0])


def test_absent_selected_class_is_its_largest_probability():
  probs, labels, _ = _softmax_inputs(14, shape=(1, 3, 3, 3))
  labels[:] = 0
  one = jnp.array([1])  # concrete under jit: checked at trace time
  out = jax.jit(
    lambda p, y: [
      _lovasz.softmax_with_engine(p, y, classes=one, engine=engine)
      for engine in ENGINES
    ]
  )(probs, labels)
  for engine, loss in zip(ENGINES, out):
    _close(loss, probs[..., 1].max(), engine)


def test_one_class_and_one_pixel():
  # One class: every pixel is foreground, errors 1 - p.
  probs = jnp.array([[0.2], [0.7]])
  want = ref.lovasz_softmax(probs[None], jnp.zeros((1, 2), int))[0]
  out = _softmax(BOTH, probs, jnp.zeros(2, int), None)
  for case, (value, _) in zip(BOTH, out):
    _close(value, want, case)
  # One pixel: the loss is its error.
  out = _hinge(HINGE_BOTH, jnp.array([0.25]), jnp.array([1]), None)
  for case, (value, _) in zip(HINGE_BOTH, out):
    _close(value, 0.75, case)


def test_extreme_logits_are_finite_and_nan_propagates():
  logits = jnp.array([1e4, -1e4, 1e4, -1e4])
  labels = jnp.array([1, 0, 0, 1])
  want = ref.lovasz_hinge(logits, labels)[0]
  nan = _hinge(HINGE_BOTH, logits.at[0].set(jnp.nan), labels, None)
  for case, (value, grad), (nan_value, _) in zip(
    HINGE_BOTH, _hinge(HINGE_BOTH, logits, labels, None), nan
  ):
    assert np.isfinite(value) and np.all(np.isfinite(grad)), case
    _close(value, want, case)
    assert np.isnan(nan_value), case
  # The softmax of +-1e4 logits: exactly one-hot.
  probs = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  labels = jnp.array([1, 1])
  nan = _softmax(BOTH, probs.at[0, 1].set(jnp.nan), labels, None)
  for case, (_, grad), (nan_value, _) in zip(
    BOTH, _softmax(BOTH, probs, labels, None), nan
  ):
    assert np.all(np.isfinite(grad)), case
    assert np.isnan(nan_value), case  # a present class


def test_bf16_accumulates_in_float32():
  probs, labels, _ = _softmax_inputs(15)
  low = jnp.asarray(probs, jnp.bfloat16)
  logits, hlabels, _ = _hinge_inputs(16)
  out = jax.jit(
    lambda p, y, x, hy: [
      (
        _lovasz.softmax_with_engine(p, y, engine=engine),
        _lovasz.hinge_with_engine(x, hy, engine=engine),
      )
      for engine in ENGINES
    ]
  )(low, labels, jnp.asarray(logits, jnp.float16), hlabels)
  for engine, (softmax, hinge) in zip(ENGINES, out):
    assert softmax.dtype == jnp.float32 and hinge.dtype == jnp.float32
    # Equal to the float32 loss of the rounded probabilities.
    _close(softmax, ref.lovasz_softmax(np.asarray(low, np.float32), labels)[0])
    np.testing.assert_allclose(
      hinge, ref.lovasz_hinge(logits, hlabels)[0], rtol=1e-2, err_msg=engine
    )


def test_float64_inputs_when_x64_is_enabled():
  with jax.enable_x64(True):
    probs, labels, where = _softmax_inputs(17)
    probs = probs.astype(np.float64)
    out = jax.jit(
      lambda p, y, w: [
        jax.value_and_grad(
          lambda p: _lovasz.softmax_with_engine(p, y, where=w, engine=e)
        )(p)
        for e in ENGINES
      ]
    )(probs, labels, where)
    want, want_grad = ref.lovasz_softmax(probs, labels, where)
    for engine, (value, grad) in zip(ENGINES, out):
      assert value.dtype == jnp.float64
      np.testing.assert_allclose(value, want, rtol=1e-12, err_msg=engine)
      np.testing.assert_allclose(
        grad, want_grad, rtol=1e-10, atol=1e-14, err_msg=engine
      )


def test_bool_and_float_hinge_labels():
  logits, labels, _ = _hinge_inputs(18)
  want, as_bool, as_float = jax.jit(
    lambda x, *ys: [jaxloss.lovasz_hinge(x, y) for y in ys]
  )(logits, labels, labels.astype(bool), labels.astype(np.float32))
  _close(as_bool, want)
  _close(as_float, want)


def test_public_default_is_the_cpu_core_and_matches():
  probs, labels, where = _softmax_inputs(19)
  fn = jax.jit(
    jax.value_and_grad(lambda p, y, w: jaxloss.lovasz_softmax(p, y, where=w))
  )
  _close(
    fn(probs, labels, where)[0], ref.lovasz_softmax(probs, labels, where)[0]
  )
  # Lowered for this CPU: the host sort (a callback); lowered for export
  # (which cannot serialize a callback): the XLA sort, with the same values.
  assert "callback" in fn.lower(probs, labels, where).as_text()
  exported = jax.export.export(fn)(probs, labels, where)
  assert "callback" not in exported.mlir_module()
  assert "sort" in exported.mlir_module()
  for got, want in zip(
    exported.call(probs, labels, where), fn(probs, labels, where)
  ):
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
    checked = jax.jit(
      checkify.checkify(lambda p, y, w: jaxloss.lovasz_softmax(p, y, where=w))
    )
    err, _ = checked(probs, jnp.array([0, 2, 1]), jnp.ones(3, bool))
    with pytest.raises(
      checkify.JaxRuntimeError, match="lovasz_softmax: labels"
    ):
      err.throw()
    err, _ = checked(
      probs, jnp.array([0, -1, 1]), jnp.array([True, False, True])
    )
    err.throw()  # the bad label is masked: nothing to report
    hinge = jax.jit(checkify.checkify(jaxloss.lovasz_hinge))
    err, _ = hinge(jnp.zeros(3), jnp.array([0, 2, 1]))
    with pytest.raises(checkify.JaxRuntimeError, match="lovasz_hinge: labels"):
      err.throw()


@jax.jit
def _per_element_mask(probs, labels, where):
  """For each engine: the loss of each class under the per-element mask and
  under its own pixel mask; a pixel mask given per element and per pixel;
  the value and gradient at NaN masked entries."""
  out = []
  for engine in _lovasz.ENGINES:
    loss = functools.partial(_lovasz.softmax_with_engine, engine=engine)
    per_class = [
      (
        loss(probs, labels, where=where, classes=np.array([c])),
        loss(probs, labels, where=where[..., c], classes=np.array([c])),
      )
      for c in range(3)
    ]
    pixel = where[..., 0]
    per_pixel = (
      loss(
        probs, labels, where=jnp.broadcast_to(pixel[..., None], probs.shape)
      ),
      loss(probs, labels, where=pixel),
    )
    bad = jnp.where(where, probs, jnp.nan)
    nan = jax.value_and_grad(
      lambda p: loss(p, labels, where=where, classes="all")
    )(bad)
    out.append((per_class, per_pixel, nan))
  return out


def test_per_element_mask_is_each_class_on_its_own_pixels():
  rng = np.random.default_rng(41)
  probs = jax.nn.softmax(
    jnp.asarray(rng.normal(size=(2, 4, 5, 3)), jnp.float32)
  )
  labels = jnp.asarray(rng.integers(0, 3, (2, 4, 5)), jnp.int32)
  where = jnp.asarray(rng.random(probs.shape) < 0.7)
  for engine, (per_class, per_pixel, nan) in zip(
    _lovasz.ENGINES, _per_element_mask(probs, labels, where)
  ):
    for got, want in [*per_class, per_pixel]:
      np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=engine)
    # Masked entries may hold NaN: no value, no gradient.
    value, grad = nan
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert np.all(np.asarray(grad)[~np.asarray(where)] == 0)
