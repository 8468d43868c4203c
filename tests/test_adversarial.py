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


def _region(seed=0, shape=(2, 4, 5, 3)):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  probs = jax.nn.softmax(2 * jax.random.normal(k1, shape), axis=-1)
  ids = jax.random.randint(k2, shape[:-1], 0, shape[-1])
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
  with pytest.raises((TypeError, ValueError), match=rf"{name}: classes"):
    getattr(jaxloss, name)(probs, ids, classes=classes)


@pytest.mark.parametrize("name", REGION)
@pytest.mark.parametrize("classes", [[2, 0], [1], [1, 1, 2]])
def test_selecting_classes_equals_slicing_the_channels(name, classes):
  probs, ids = _region(1)
  fn = getattr(jaxloss, name)
  if name == "lovasz_softmax":
    # The reference's loop over the listed classes (repeats counted).
    want = ref_lovasz.lovasz_softmax(probs, ids, classes=classes)[0]
  else:
    targets = jax.nn.one_hot(ids, 3)
    want = fn(
      probs[..., jnp.array(classes)],
      targets[..., jnp.array(classes)],
      classes="all",
    )
  got = jax.jit(lambda p, y: fn(p, y, classes=classes))(probs, ids)
  _close(got, want, rtol=1e-5)


def test_traced_class_ids_out_of_range_give_nan_not_another_class():
  probs, ids = _region(2)
  for name in REGION:
    fn = getattr(jaxloss, name)
    got = jax.jit(lambda p, y, c: fn(p, y, classes=c))(
      probs, ids, jnp.array([0, 3])
    )
    assert np.isnan(got), name
    got = jax.jit(lambda p, y, c: fn(p, y, classes=c))(
      probs, ids, jnp.array([-1])
    )
    assert np.isnan(got), name


def test_generalized_dice_weights_come_from_the_selected_classes():
  # Class 2 is absent; the largest finite weight must be the one of the
  # selected classes [1, 2], not of class 0 (rare, so its weight is large).
  ids = jnp.array([[0, 1, 1, 1], [1, 1, 1, 1]])
  probs = jax.nn.softmax(
    jax.random.normal(jax.random.PRNGKey(3), (2, 4, 3)), -1
  )
  got = jaxloss.generalized_dice_loss(probs, ids, classes=[1, 2])
  targets = jax.nn.one_hot(ids, 3)
  want = ref.generalized_dice(
    np.asarray(probs)[..., 1:], np.asarray(targets)[..., 1:], (0, 1)
  )
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
  k1, k2 = jax.random.split(jax.random.PRNGKey(4))
  logits = jax.random.normal(k1, (2, 3, num_classes))
  ids = jax.random.randint(k2, (2, 3), 0, 256)
  x = logits if name == "softmax_focal_loss" else jax.nn.softmax(logits)
  fn = getattr(jaxloss, name)
  _close(fn(x, ids.astype(jnp.uint8)), fn(x, ids.astype(jnp.int32)))


# ---------------------------------------------------------------------------
# Exponents: NaN stays NaN, traced values work, fractional gamma has finite
# gradients everywhere, NumPy scalars take the fast path.


def test_focal_tversky_keeps_nan_and_takes_a_traced_gamma():
  probs, ids = _region(5)
  bad = probs.at[0, 0, 0, 0].set(jnp.nan)
  assert np.isnan(jaxloss.tversky_loss(bad, ids, gamma=0.75))
  assert np.isnan(jaxloss.tversky_loss(bad, ids, gamma=2.0))
  traced = jax.jit(lambda g: jaxloss.tversky_loss(probs, ids, gamma=g))
  _close(traced(0.75), jaxloss.tversky_loss(probs, ids, gamma=0.75))
  _close(traced(1.0), jaxloss.tversky_loss(probs, ids))


def test_focal_fractional_gamma_finite_target_gradient_at_hard_targets():
  x = jnp.array([-3.0, 0.0, 2.0, 40.0, -40.0, 0.5])
  y = jnp.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
  for gamma in (0.5, 1.5):
    grad = jax.grad(
      lambda x, y: jaxloss.focal_loss(x, y, gamma=gamma).sum(), argnums=(0, 1)
    )(x, y)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grad), gamma


def test_focal_traced_and_numpy_options_agree_with_python_ones():
  x = jax.random.normal(jax.random.PRNGKey(6), (4, 5)) * 3
  y = (x > 0.5).astype(jnp.float32)
  want = jaxloss.focal_loss(x, y, alpha=0.25, gamma=2.0)
  _close(
    jaxloss.focal_loss(x, y, alpha=np.float32(0.25), gamma=np.float64(2.0)),
    want,
  )
  traced = jax.jit(lambda a, g: jaxloss.focal_loss(x, y, alpha=a, gamma=g))
  _close(traced(0.25, 2.0), want, rtol=1e-5)
  _close(
    jax.jit(lambda g: jaxloss.varifocal_loss(x, y * 0.7, gamma=g))(1.5),
    jaxloss.varifocal_loss(x, y * 0.7, gamma=1.5),
  )
  _close(
    jax.jit(lambda b: jaxloss.quality_focal_loss(x, y * 0.7, beta=b))(2.0),
    jaxloss.quality_focal_loss(x, y * 0.7),
    rtol=1e-5,
  )


@pytest.mark.parametrize(
  "name", ["focal_loss", "varifocal_loss", "quality_focal_loss"]
)
def test_sigmoid_family_second_derivative_at_logit_zero(name):
  # Logit 0 is a common initialisation: the closed-form derivative must be
  # differentiable there too (a |x| formulation gives a wrong Hessian), and
  # so must the loss it reads.
  with jax.enable_x64(True):
    x = jnp.zeros(3, jnp.float64)
    y = jnp.array([0.0, 1.0, 0.3], jnp.float64)
    f = lambda x: getattr(jaxloss, name)(x, y).sum()
    hess = jnp.diag(jax.hessian(f)(x))
    eps = 1e-4
    fd = (jax.grad(f)(x + eps) - jax.grad(f)(x - eps)) / (2 * eps)
    _close(hess, fd, rtol=1e-6, atol=1e-9)


def test_sigmoid_family_float64_tails():
  # The log1p correction reads 1 + e - 1 from the bits, 64 of them here.
  with jax.enable_x64(True):
    x = jnp.array([17.0, 30.0, -30.0], jnp.float64)
    y = jnp.array([1.0, 1.0, 0.0], jnp.float64)
    want = np.log1p(np.exp(-np.array([17.0, 30.0, 30.0])))
    got = jaxloss.focal_loss(x, y, alpha=None, gamma=0.0)
    assert got.dtype == jnp.float64
    _close(got, want, rtol=1e-14, atol=0)


# ---------------------------------------------------------------------------
# Empty inputs: no crash, 0 and zero gradients.


def test_empty_inputs():
  probs, ids = _region(7)
  for name in ("lovasz_softmax",):
    fn = getattr(jaxloss, name)
    assert fn(probs[:0], ids[:0], axis=(1, 2)).shape == (0,)
    grad = jax.grad(lambda p: fn(p, ids[:0], axis=(1, 2)).sum())(probs[:0])
    assert grad.shape == (0, 4, 5, 3)
    assert float(fn(probs, ids, classes=[])) == 0
    assert (
      float(fn(probs[..., :0], jnp.zeros(ids.shape, jnp.int32), classes="all"))
      == 0
    )
  hinge = jaxloss.lovasz_hinge(
    jnp.zeros((0, 3, 3)), jnp.zeros((0, 3, 3)), axis=(1, 2)
  )
  assert hinge.shape == (0,)
  for name in REGION[:4]:
    fn = getattr(jaxloss, name)
    assert float(fn(probs[..., :0], jnp.zeros((2, 4, 5, 0)))) == 0, name
    assert float(fn(probs, ids, classes=[])) == 0, name


# ---------------------------------------------------------------------------
# Masked means ignored, also by the value checks; NaN in, NaN out on both
# Lovász engines.


def test_value_checks_ignore_masked_entries():
  x = jnp.zeros((2, 3))
  bad = jnp.array([[0.0, 255.0, 1.0], [1.0, 0.0, 0.0]])
  keep = bad != 255
  probs, ids = _region(8)
  hidden = probs.at[0, 0, 0, 0].set(1.5)
  keep_pixels = jnp.ones(ids.shape, bool).at[0, 0, 0].set(False)
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
    error, _ = checkify.checkify(loss)(probs, ids.at[0, 0, 0].set(7))
  assert "dice_loss: labels must lie in [0, 3)" in error.get()
  assert not jax.make_jaxpr(loss)(probs, ids).effects


@pytest.mark.parametrize("engine", _lovasz.ENGINES)
def test_lovasz_nan_in_an_absent_class_gives_nan_on_both_engines(engine):
  probs, ids = _region(10)
  ids = jnp.minimum(ids, 1)  # class 2 absent
  bad = probs.at[0, 0, 0, 2].set(jnp.nan)
  loss = _lovasz.softmax_with_engine(bad, ids, classes="present", engine=engine)
  assert np.isnan(loss)
  # Hidden by the mask: no NaN.
  keep = jnp.ones(ids.shape, bool).at[0, 0, 0].set(False)
  loss = _lovasz.softmax_with_engine(bad, ids, where=keep, engine=engine)
  assert np.isfinite(loss)


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
  probs, ids = _region(12)
  for s in (0.0, 0.5, 1.0):
    _close(
      jaxloss.tversky_loss(probs, ids, smooth=s),
      jaxloss.dice_loss(probs, ids, smooth=2 * s),
    )


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
  where = jax.random.bernoulli(jax.random.PRNGKey(14), 0.7, probs.shape)
  bad = jnp.where(where, probs, jnp.nan)

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
  bad = ids.at[0, 0, 0].set(7)
  keep = jnp.ones(probs.shape, bool)
  hidden = keep.at[0, 0, 0].set(False)
  partly = keep.at[0, 0, 0, 1:].set(False)
  checked = checkify.checkify(jax.jit(lambda p, y, w: fn(p, y, where=w)))
  with jaxloss.value_checks():
    error, _ = checked(probs, bad, hidden)
    error.throw()
    error, _ = checked(probs, bad, partly)
  with pytest.raises(checkify.JaxRuntimeError, match=f"{name}: labels must"):
    error.throw()
