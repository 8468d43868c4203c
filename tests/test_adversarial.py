"""Hostile inputs: every case here once gave a silent wrong answer, a crash
or an unclear error. Options at their edges, masks hiding bad values, empty
inputs, NaN, uint8 ids, traced and NumPy option values."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxloss
from jaxloss import _lovasz
from tests import reference_lovasz as ref_lovasz
from tests import references as ref

REGION = (
  "dice_loss",
  "iou_loss",
  "tversky_loss",
  "generalized_dice_loss",
  "mcc_loss",
  "lovasz_softmax",
)


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _region(seed=0, shape=(2, 4, 5, 3)):
  """float32 probabilities (softmax rows) and int32 class ids, NumPy."""
  rng = np.random.default_rng(seed)
  probs = _softmax(2 * rng.standard_normal(shape))
  ids = rng.integers(0, shape[-1], shape[:-1]).astype(np.int32)
  return probs, ids


def _close(got, want, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(
    np.asarray(got), np.asarray(want), rtol=rtol, atol=atol
  )


# ---------------------------------------------------------------------------
# Class selection: concrete ids are checked under jit too; selecting equals
# slicing the class axis, for every region loss.


@pytest.mark.parametrize("name", REGION)
@pytest.mark.parametrize("classes", [[0, 3], [-1], np.array([5]), (0, 2, 9)])
def test_concrete_class_ids_out_of_range_refused_under_jit(name, classes):
  probs, ids = _region()
  loss = jax.jit(lambda p, y: getattr(jaxloss, name)(p, y, classes=classes))
  with pytest.raises(
    ValueError,
    match=rf"{name}: classes .* must lie in "
    r"\[0, 3\)",
  ):
    loss(probs, ids)


@pytest.mark.parametrize("name", REGION)
@pytest.mark.parametrize("classes", [None, 1.5, True, [0.5], "some"])
def test_class_selection_of_the_wrong_kind_is_named(name, classes):
  probs, ids = _region()
  loss = functools.partial(getattr(jaxloss, name), classes=classes)
  with pytest.raises((TypeError, ValueError), match=rf"{name}: classes"):
    jax.jit(loss)(probs, ids)


@functools.partial(jax.jit, static_argnames=("name", "classes"))
def _selected_and_sliced(probs, ids, *, name, classes):
  """The loss of the ``classes`` (a tuple, passed on as a list), and of the
  channels sliced out of probabilities and one-hot targets."""
  fn = getattr(jaxloss, name)
  got = fn(probs, ids, classes=list(classes))
  if name == "lovasz_softmax":
    return got, None
  index = np.array(classes)
  targets = jax.nn.one_hot(ids, 3)
  return got, fn(probs[..., index], targets[..., index], classes="all")


@pytest.mark.parametrize("name", REGION)
@pytest.mark.parametrize("classes", [[2, 0], [1], [1, 1, 2]])
def test_selecting_classes_equals_slicing_the_channels(name, classes):
  probs, ids = _region(1)
  got, want = _selected_and_sliced(
    probs, ids, name=name, classes=tuple(classes)
  )
  if name == "lovasz_softmax":
    # The reference's loop over the listed classes (repeats counted).
    want = ref_lovasz.lovasz_softmax(probs, ids, classes=classes)[0]
  _close(got, want, rtol=1e-5)


def test_traced_class_ids_out_of_range_give_nan_not_another_class():
  @jax.jit
  def run(probs, ids, above, below):
    return {
      name: [
        getattr(jaxloss, name)(probs, ids, classes=c) for c in (above, below)
      ]
      for name in REGION
    }

  probs, ids = _region(2)
  got = run(probs, ids, np.array([0, 3]), np.array([-1]))
  for name in REGION:
    assert np.isnan(got[name][0]) and np.isnan(got[name][1]), name


def test_generalized_dice_weights_come_from_the_selected_classes():
  # Class 2 is absent; the largest finite weight must be the one of the
  # selected classes [1, 2], not of class 0 (rare, so its weight is large).
  ids = np.array([[0, 1, 1, 1], [1, 1, 1, 1]], np.int32)
  probs = _softmax(np.random.default_rng(3).standard_normal((2, 4, 3)))
  got = jax.jit(
    functools.partial(jaxloss.generalized_dice_loss, classes=[1, 2])
  )(probs, ids)
  targets = ref.one_hot(ids, 3)
  want = ref.generalized_dice(probs[..., 1:], targets[..., 1:], (0, 1))
  _close(got, want)


# ---------------------------------------------------------------------------
# Integer ids: uint8 ids with more than 256 classes.


@pytest.mark.parametrize(
  "name",
  ("softmax_focal_loss",)
  + REGION
  + (
    "generalized_wasserstein_dice_loss",
    "boundary_loss",
    "hausdorff_dt_loss",
    "log_hausdorff_dt_loss",
    "hausdorff_er_loss",
    "cldice_loss",
  ),
)
def test_uint8_ids_with_many_classes_equal_int32(name):
  num_classes = 300
  rng = np.random.default_rng(4)
  logits = rng.standard_normal((2, 3, num_classes))
  ids = rng.integers(0, 256, (2, 3))
  if name == "softmax_focal_loss":
    x = logits.astype(np.float32)
  else:
    x = _softmax(logits)
  fn = getattr(jaxloss, name)
  narrow, wide = jax.jit(lambda x, a, b: (fn(x, a), fn(x, b)))(
    x, ids.astype(np.uint8), ids.astype(np.int32)
  )
  _close(narrow, wide)


# ---------------------------------------------------------------------------
# Exponents: NaN stays NaN, traced values work, fractional gamma has finite
# gradients everywhere, NumPy scalars take the fast path.


def test_focal_tversky_keeps_nan_and_takes_a_traced_gamma():
  @jax.jit
  def run(probs, bad, ids, traced):
    """NaN in at gamma 0.75 and 2; ``traced`` gammas (0.75 and 1) next to
    the same Python ones (1: the default)."""
    loss = functools.partial(jaxloss.tversky_loss, labels=ids)
    return (
      [loss(bad, gamma=0.75), loss(bad, gamma=2.0)],
      [loss(probs, gamma=traced[0]), loss(probs, gamma=0.75)],
      [loss(probs, gamma=traced[1]), loss(probs)],
    )

  probs, ids = _region(5)
  bad = probs.copy()
  bad[0, 0, 0, 0] = np.nan
  nan, fractional, one = run(probs, bad, ids, np.array([0.75, 1.0]))
  assert np.isnan(nan[0]) and np.isnan(nan[1])
  _close(*fractional)
  _close(*one)


def test_focal_fractional_gamma_finite_target_gradient_at_hard_targets():
  @jax.jit
  def run(x, y):
    return [
      jax.grad(
        lambda x, y: jaxloss.focal_loss(x, y, gamma=gamma).sum(),
        argnums=(0, 1),
      )(x, y)
      for gamma in (0.5, 1.5)
    ]

  x = np.array([-3.0, 0.0, 2.0, 40.0, -40.0, 0.5], np.float32)
  y = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0], np.float32)
  for gamma, grad in zip((0.5, 1.5), run(x, y)):
    assert all(np.all(np.isfinite(g)) for g in grad), gamma


def test_focal_traced_and_numpy_options_agree_with_python_ones():
  @jax.jit
  def run(x, y, a, g, g_varifocal, b):
    """Pairs: options given traced or as NumPy scalars, and as Python ones."""
    q = y * 0.7
    want = jaxloss.focal_loss(x, y, alpha=0.25, gamma=2.0)
    return (
      (
        jaxloss.focal_loss(x, y, alpha=np.float32(0.25), gamma=np.float64(2)),
        want,
      ),
      (jaxloss.focal_loss(x, y, alpha=a, gamma=g), want),
      (
        jaxloss.varifocal_loss(x, q, gamma=g_varifocal),
        jaxloss.varifocal_loss(x, q, gamma=1.5),
      ),
      (
        jaxloss.quality_focal_loss(x, q, beta=b),
        jaxloss.quality_focal_loss(x, q),
      ),
    )

  x = (np.random.default_rng(6).standard_normal((4, 5)) * 3).astype(np.float32)
  y = (x > 0.5).astype(np.float32)
  numpy, traced, varifocal, quality = run(x, y, 0.25, 2.0, 1.5, 2.0)
  _close(*numpy)
  _close(*traced, rtol=1e-5)
  _close(*varifocal)
  _close(*quality, rtol=1e-5)


@pytest.mark.parametrize(
  "name", ["focal_loss", "varifocal_loss", "quality_focal_loss"]
)
def test_sigmoid_family_second_derivative_at_logit_zero(name):
  # Logit 0 is a common initialisation: the closed-form derivative must be
  # differentiable there too (a |x| formulation gives a wrong Hessian), and
  # so must the loss it reads.
  @jax.jit
  def run(x, y):
    """The Hessian's diagonal, and central differences of the gradient."""
    f = lambda x: getattr(jaxloss, name)(x, y).sum()
    eps = 1e-4
    fd = (jax.grad(f)(x + eps) - jax.grad(f)(x - eps)) / (2 * eps)
    return jnp.diag(jax.hessian(f)(x)), fd

  with jax.enable_x64(True):
    hess, fd = run(np.zeros(3), np.array([0.0, 1.0, 0.3]))
  assert hess.dtype == jnp.float64
  _close(hess, fd, rtol=1e-6, atol=1e-9)


def test_sigmoid_family_float64_tails():
  # The log1p correction reads 1 + e - 1 from the bits, 64 of them here.
  loss = functools.partial(jaxloss.focal_loss, alpha=None, gamma=0.0)
  with jax.enable_x64(True):
    x = np.array([17.0, 30.0, -30.0])
    got = jax.jit(loss)(x, np.array([1.0, 1.0, 0.0]))
  assert got.dtype == jnp.float64
  want = np.log1p(np.exp(-np.array([17.0, 30.0, 30.0])))
  _close(got, want, rtol=1e-14, atol=0)


# ---------------------------------------------------------------------------
# Empty inputs: no crash, 0 and zero gradients.


def test_empty_inputs():
  @jax.jit
  def run(probs, ids):
    """No images; no classes selected; no channels. By loss name."""
    lovasz = functools.partial(jaxloss.lovasz_softmax, axis=(1, 2))
    out = {
      "lovasz_softmax": (
        lovasz(probs[:0], ids[:0]),
        jax.grad(lambda p: lovasz(p, ids[:0]).sum())(probs[:0]),
        jaxloss.lovasz_softmax(probs, ids, classes=[]),
        jaxloss.lovasz_softmax(
          probs[..., :0], jnp.zeros(ids.shape, jnp.int32), classes="all"
        ),
      ),
      "lovasz_hinge": jaxloss.lovasz_hinge(
        jnp.zeros((0, 3, 3)), jnp.zeros((0, 3, 3)), axis=(1, 2)
      ),
    }
    for name in REGION[:4]:
      fn = getattr(jaxloss, name)
      out[name] = (
        fn(probs[..., :0], jnp.zeros((2, 4, 5, 0))),
        fn(probs, ids, classes=[]),
      )
    return out

  got = run(*_region(7))
  value, grad, none_selected, no_channels = got["lovasz_softmax"]
  assert value.shape == (0,) and grad.shape == (0, 4, 5, 3)
  assert float(none_selected) == 0 and float(no_channels) == 0
  assert got["lovasz_hinge"].shape == (0,)
  for name in REGION[:4]:
    no_channels, none_selected = got[name]
    assert float(no_channels) == 0 and float(none_selected) == 0, name


# ---------------------------------------------------------------------------
# Masked means ignored, also by the value checks; NaN in, NaN out on both
# Lovász engines.


def test_value_checks_ignore_masked_entries():
  x = np.zeros((2, 3), np.float32)
  bad = np.array([[0.0, 255.0, 1.0], [1.0, 0.0, 0.0]], np.float32)
  keep = bad != 255
  probs, ids = _region(8)
  hidden = probs.copy()
  hidden[0, 0, 0, 0] = 1.5
  keep_pixels = np.ones(ids.shape, bool)
  keep_pixels[0, 0, 0] = False
  cases = [
    (jaxloss.focal_loss, (x, bad), {"where": keep}),
    (jaxloss.varifocal_loss, (x, bad), {"where": keep}),
    (jaxloss.dice_loss, (hidden, ids), {"where": keep_pixels}),
    (jaxloss.lovasz_softmax, (hidden, ids), {"where": keep_pixels}),
    (jaxloss.lovasz_hinge, (x, bad), {"where": keep}),
  ]
  for fn, args, kwargs in cases:
    checked = checkify.checkify(jax.jit(functools.partial(fn, **kwargs)))
    with jaxloss.value_checks():
      error, _ = checked(*args)
      error.throw()
      error, _ = checkify.checkify(jax.jit(fn))(*args)
    assert error.get() is not None, fn.__name__


def test_value_checks_context_retraces_a_jitted_function():
  probs, ids = _region(9)
  loss = jax.jit(jaxloss.dice_loss)
  loss(probs, ids)  # traced without the checks
  with jaxloss.value_checks():
    bad = ids.copy()
    bad[0, 0, 0] = 7
    error, _ = checkify.checkify(loss)(probs, bad)
  assert "dice_loss: labels must lie in [0, 3)" in error.get()
  assert not jax.make_jaxpr(loss)(probs, ids).effects


@pytest.mark.parametrize("engine", _lovasz.ENGINES)
def test_lovasz_nan_in_an_absent_class_gives_nan_on_both_engines(engine):
  @jax.jit
  def run(bad, ids, keep):
    """NaN in the absent class; the same, hidden by the mask."""
    loss = functools.partial(_lovasz.softmax_with_engine, engine=engine)
    return loss(bad, ids, classes="present"), loss(bad, ids, where=keep)

  probs, ids = _region(10)
  ids = np.minimum(ids, 1)  # class 2 absent
  bad = probs.copy()
  bad[0, 0, 0, 2] = np.nan
  keep = np.ones(ids.shape, bool)
  keep[0, 0, 0] = False
  present, hidden = run(bad, ids, keep)
  assert np.isnan(present)
  assert np.isfinite(hidden)


# ---------------------------------------------------------------------------
# Options: a clear error at trace time naming the function and the argument.


BAD_OPTIONS = [
  ("dice_loss", {"axis": 1.0}, TypeError, "axis must be None, an int"),
  ("dice_loss", {"axis": True}, TypeError, "axis must be None, an int"),
  ("dice_loss", {"smooth": -1.0}, ValueError, "smooth must be >= 0"),
  ("dice_loss", {"squared": "no"}, TypeError, "squared must be True or"),
  (
    "iou_loss",
    {"class_weights": -jnp.ones(3)},
    ValueError,
    "class_weights must be finite and >= 0",
  ),
  ("tversky_loss", {"alpha": -1.0}, ValueError, "alpha must be >= 0"),
  ("tversky_loss", {"gamma": 0.0}, ValueError, "gamma must be > 0"),
  ("tversky_loss", {"beta": float("nan")}, ValueError, "beta must be finite"),
  ("generalized_dice_loss", {"weighting": 2}, ValueError, "weighting must"),
  ("lovasz_softmax", {"axis": (0, 0)}, ValueError, r"axis \(0, 0\) repeats"),
  (
    "focal_loss",
    {"alpha": jnp.ones(5)},
    ValueError,
    r"alpha must be a scalar or have shape \(3,\) .* got shape \(5,\)",
  ),
  (
    "focal_loss",
    {"alpha": jnp.array([0.2, 1.5, 0.3])},
    ValueError,
    r"alpha must be <= 1",
  ),
  (
    "focal_loss",
    {"reduced_threshold": 0.0},
    ValueError,
    "reduced_threshold must be > 0",
  ),
  (
    "softmax_focal_loss",
    {"reduced_threshold": 1.5},
    ValueError,
    "reduced_threshold must be <= 1",
  ),
  (
    "softmax_focal_loss",
    {"normalized": 1},
    TypeError,
    "normalized must be True or False",
  ),
  ("focal_loss", {"gamma": "2"}, TypeError, "gamma must be a real number"),
  ("focal_loss", {"gamma": np.float32(-1)}, ValueError, "gamma must be >= 0"),
  (
    "focal_loss",
    {"gamma": np.float64("nan")},
    ValueError,
    "gamma must be finite",
  ),
  ("focal_loss", {"alpha": -0.25}, ValueError, "alpha must be >= 0"),
  ("focal_loss", {"alpha": 1.5}, ValueError, "alpha must be <= 1"),
  ("softmax_focal_loss", {"gamma": -0.5}, ValueError, "gamma must be >= 0"),
  ("varifocal_loss", {"alpha": "x"}, TypeError, "alpha must be a real"),
  ("quality_focal_loss", {"beta": None}, TypeError, "beta must be a real"),
  ("dice_loss", {"soft_labels": 1}, TypeError, "soft_labels must be True"),
  (
    "iou_loss",
    {"soft_labels": jnp.array(True)},
    TypeError,
    "soft_labels must be True",
  ),
  ("mcc_loss", {"smooth": float("inf")}, ValueError, "smooth must be finite"),
  (
    "lovasz_softmax",
    {"class_weights": jnp.ones(4)},
    ValueError,
    r"class_weights.shape \(4,\) must be \(3,\)",
  ),
  (
    "generalized_wasserstein_dice_loss",
    {"distance_matrix": jnp.ones(3)},
    ValueError,
    "distance_matrix",
  ),
  (
    "dice_loss",
    {"where": jnp.ones((2, 4, 5, 1), bool)},
    ValueError,
    r"where.shape \(2, 4, 5, 1\) must equal probs.shape\[:-1\]",
  ),
  (
    "mcc_loss",
    {"where": jnp.ones((2, 4, 5, 3))},
    TypeError,
    "where must be a boolean array",
  ),
  (
    "dice_loss",
    {"activation": "relu"},
    ValueError,
    'activation must be None, "softmax" or "sigmoid", got \'relu\'',
  ),
  ("lovasz_softmax", {"activation": True}, ValueError, "activation must be"),
  ("cldice_loss", {"activation": "Softmax"}, ValueError, "activation must be"),
  (
    "generalized_wasserstein_dice_loss",
    {"activation": "sigmoid"},
    ValueError,
    'activation must be None or "softmax"',
  ),
]


@pytest.mark.parametrize("name, options, error, message", BAD_OPTIONS)
def test_bad_options_are_named_at_trace_time(name, options, error, message):
  probs, ids = _region(11)
  fn = getattr(jaxloss, name)
  if name in ("focal_loss", "varifocal_loss", "quality_focal_loss"):
    args = (probs, probs)
  else:
    args = (probs, ids)
  with pytest.raises(error, match=f"{name}: {message}"):
    jax.jit(functools.partial(fn, **options))(*args)


def test_tversky_half_half_is_dice_with_twice_the_smoothing():
  @jax.jit
  def run(probs, ids):
    return [
      (
        jaxloss.tversky_loss(probs, ids, smooth=s),
        jaxloss.dice_loss(probs, ids, smooth=2 * s),
      )
      for s in (0.0, 0.5, 1.0)
    ]

  for tversky, dice in run(*_region(12)):
    _close(tversky, dice)


# ---------------------------------------------------------------------------
# Per-element masks (one flag a pixel and class): NaN under the mask, vmap.

ELEMENT_MASKED = REGION + (
  "boundary_loss",
  "hausdorff_dt_loss",
  "log_hausdorff_dt_loss",
  "hausdorff_er_loss",
  "cldice_loss",
)


@pytest.mark.parametrize("name", ELEMENT_MASKED)
def test_per_element_mask_hides_nan_and_commutes_with_vmap(name):
  fn = getattr(jaxloss, name)
  probs, ids = _region(13)
  where = np.random.default_rng(14).uniform(size=probs.shape) < 0.7
  bad = np.where(where, probs, np.nan)

  @jax.jit
  def run(bad, probs, ids, where):
    value, grad = jax.value_and_grad(lambda p: fn(p, ids, where=where))(bad)
    # Per image (a batch of one each: the boundary losses need a batch axis).
    per_image = jax.vmap(lambda p, y, w: fn(p[None], y[None], where=w[None]))(
      probs, ids, where
    )
    return (
      value,
      grad,
      fn(probs, ids, where=where),
      fn(probs, ids, where=where, axis=(1, 2)),
      per_image,
    )

  value, grad, clean, pooled, per_image = run(bad, probs, ids, where)
  assert np.isfinite(value) and np.all(np.isfinite(grad)), name
  assert not np.any(np.asarray(grad)[~np.asarray(where)]), name
  _close(value, clean)
  _close(pooled, per_image)


@pytest.mark.parametrize(
  "name", ["dice_loss", "lovasz_softmax", "boundary_loss"]
)
def test_value_checks_read_a_per_element_mask_per_pixel(name):
  """A bad class id is reported at a pixel with any entry kept, and not at a
  pixel whose every (pixel, class) entry is masked."""
  fn = getattr(jaxloss, name)
  probs, ids = _region(15)
  bad = ids.copy()
  bad[0, 0, 0] = 7
  hidden = np.ones(probs.shape, bool)
  hidden[0, 0, 0] = False
  partly = np.ones(probs.shape, bool)
  partly[0, 0, 0, 1:] = False
  checked = checkify.checkify(jax.jit(lambda p, y, w: fn(p, y, where=w)))
  with jaxloss.value_checks():
    error, _ = checked(probs, bad, hidden)
    error.throw()
    error, _ = checked(probs, bad, partly)
  with pytest.raises(checkify.JaxRuntimeError, match=f"{name}: labels must"):
    error.throw()
