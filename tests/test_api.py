"""The public surface: signatures, docstrings, and one transform table for all.

Every function in ``jaxloss.__all__`` has an entry in ``CASES``: a function of
two PRNG keys that returns the positional arguments (a batch of two examples
along the leading axis) and the keyword options. The table checks, for every
function: plain, ``jit`` and ``vmap`` agree; ``grad``, ``value_and_grad``,
``jvp``, ``linearize`` and ``jacfwd`` give one derivative; Hessian-vector
products (forward over reverse) match central differences of the gradient;
``jax.export`` round trips on CPU and serializes for CUDA and TPU; the value
checks leave no effect in a program traced outside ``jaxloss.value_checks``
and are reported by ``checkify`` inside it.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxloss


def _logits(key, shape):
  return 3 * jax.random.normal(key, shape)


def _probs(key, shape):
  return jax.nn.softmax(_logits(key, shape), axis=-1)


def _ids(key, shape, num_classes):
  return jax.random.randint(key, shape, 0, num_classes)


def _binary(key, shape):
  return jax.random.bernoulli(key, 0.3, shape).astype(jnp.float32)


def _quality(key, shape):
  """IoU-aware soft targets: 0 for most entries, an IoU in (0, 1] for some."""
  k1, k2 = jax.random.split(key)
  return _binary(k1, shape) * jax.random.uniform(k2, shape, minval=0.1)


def _heatmap(key, shape):
  """Heatmap targets in [0, 1): Gaussian-like values, a few peaks at 1."""
  k1, k2 = jax.random.split(key)
  peaks = jax.random.bernoulli(k1, 0.15, shape)
  return jnp.where(peaks, 1.0, jax.random.uniform(k2, shape, maxval=0.99))


def _keypoints(key, shape):
  """Keypoint sets ``shape + (2,)`` (x, y), coordinates in [0, 8)."""
  return jax.random.uniform(key, shape + (2,), maxval=8.0)


def _boxes(key, shape):
  """Valid (x1, y1, x2, y2) boxes of shape ``shape + (4,)``."""
  k1, k2 = jax.random.split(key)
  corner = jax.random.uniform(k1, shape + (2,), maxval=1.0)
  size = jax.random.uniform(k2, shape + (2,), minval=1.0, maxval=3.0)
  return jnp.concatenate([corner, corner + size], axis=-1)


def _box_pair(**kwargs):
  """Box-loss case: two sets of 2 x 5 boxes, elementwise."""

  def make(k1, k2):
    return (_boxes(k1, (2, 5)), _boxes(k2, (2, 5))), kwargs

  return make


def _rotated_pair(**kwargs):
  """Rotated-box case: two sets of 2 x 5 boxes (cx, cy, w, h, theta), the
  corners of _boxes as centre and size (sizes in [1, 4]), angles in [-3, 3]."""

  def make(k1, k2):
    def rotated(k):
      angles = jax.random.uniform(k, (2, 5, 1), minval=-3, maxval=3)
      return jnp.concatenate([_boxes(k, (2, 5)), angles], -1)

    return (rotated(k1), rotated(k2)), kwargs

  return make


def _pairwise(**kwargs):
  """Pairwise box case: 2 x 3 boxes against 2 x 5."""

  def make(k1, k2):
    return (_boxes(k1, (2, 3)), _boxes(k2, (2, 5))), kwargs

  return make


def _scores(**kwargs):
  """Sigmoid-score case: logits [2, 7, 3] and IoU-aware soft targets."""

  def make(k1, k2):
    return (_logits(k1, (2, 7, 3)), _quality(k2, (2, 7, 3))), kwargs

  return make


def _class_cost(**kwargs):
  """Class-cost case: logits of 4 queries over 5 classes, 3 target ids."""

  def make(k1, k2):
    return (_logits(k1, (2, 4, 5)), _ids(k2, (2, 3), 5)), kwargs

  return make


def _mask_cost(**kwargs):
  """Mask-cost case: logits of 4 masks and 3 binary targets, 6 points."""

  def make(k1, k2):
    return (_logits(k1, (2, 4, 6)), _binary(k2, (2, 3, 6))), kwargs

  return make


def _region(**kwargs):
  """Region-loss case: probs [2, 5, 6, 4] and class ids, per-image pooling."""

  def make(k1, k2):
    return (_probs(k1, (2, 5, 6, 4)), _ids(k2, (2, 5, 6), 4)), kwargs

  return make


def _from_logits(activation, shape=(2, 5, 6, 4), **kwargs):
  """Region-loss case from logits: class ids with "softmax", binary targets
  with "sigmoid"."""

  def make(k1, k2):
    if activation == "softmax":
      labels = _ids(k2, shape[:-1], shape[-1])
    else:
      labels = _binary(k2, shape)
    return (_logits(k1, shape), labels), {"activation": activation, **kwargs}

  return make


CASES = {
  "focal_loss": lambda k1, k2: (
    (_logits(k1, (2, 7, 3)), _binary(k2, (2, 7, 3))),
    {},
  ),
  "softmax_focal_loss": lambda k1, k2: (
    (_logits(k1, (2, 7, 4)), _ids(k2, (2, 7), 4)),
    {"gamma": 1.5},
  ),
  "ohem_cross_entropy_loss": lambda k1, k2: (
    (_logits(k1, (2, 7, 4)), _ids(k2, (2, 7), 4)),
    {"threshold": 0.6, "min_kept": 5, "class_weights": np.arange(1.0, 5.0)},
  ),
  "deep_supervision_loss": lambda k1, k2: (
    (
      _logits(k1, (2, 4, 6, 3)),
      _logits(k2, (2, 2, 3, 3)),
      _ids(k2, (2, 4, 6), 3),
    ),
    {"weights": (1.0, 0.25)},
  ),
  # Probabilities away from 0: the Hessian of -t log p is t / p^2, which the
  # table's central differences (step 1e-5) resolve only for p well above it.
  "asymmetric_unified_focal_loss": lambda k1, k2: (
    (
      jax.nn.softmax(jax.random.normal(k1, (2, 5, 6, 4))),
      _ids(k2, (2, 5, 6), 4),
    ),
    {"weight": 0.4, "gamma": 0.3},
  ),
  "dice_loss": _region(),
  "iou_loss": _region(classes="present"),
  "tversky_loss": _region(alpha=0.3, beta=0.7, gamma=0.75),
  "generalized_dice_loss": _region(weighting="simple"),
  "mcc_loss": _region(classes="present"),
  "generalized_wasserstein_dice_loss": _region(smooth=0.5),
  "lovasz_softmax": _region(classes="all", class_weights=np.arange(4.0)),
  "lovasz_hinge": lambda k1, k2: (
    (_logits(k1, (2, 5, 6)), _binary(k2, (2, 5, 6))),
    {},
  ),
  "varifocal_loss": _scores(gamma=1.5),
  "gaussian_focal_loss": lambda k1, k2: (
    (_logits(k1, (2, 7, 3)), _heatmap(k2, (2, 7, 3))),
    {"alpha": 1.5},
  ),
  # Visible flags [3, 4] and areas [3] broadcast over the batch of two.
  "keypoint_oks_loss": lambda k1, k2: (
    (
      _keypoints(k1, (2, 3, 4)),
      _keypoints(k1, (2, 3, 4)) + jax.random.normal(k2, (2, 3, 4, 2)),
    ),
    {
      "visible": np.array([[1, 1, 0, 1], [0, 1, 1, 1], [1, 0, 0, 0]], bool),
      "area": np.array([4.0, 9.0, 2.0]),
      "sigmas": np.array(jaxloss.COCO_KEYPOINT_SIGMAS[5:9]) * 10,
    },
  ),
  "seesaw_loss": lambda k1, k2: (
    (_logits(k1, (2, 7, 4)), _ids(k2, (2, 7), 4)),
    {"class_counts": np.array([50, 5, 20, 1])},
  ),
  "ghm_classification_loss": lambda k1, k2: (
    (_logits(k1, (2, 7, 3)), _binary(k2, (2, 7, 3))),
    {"bins": 5},
  ),
  "quality_focal_loss": _scores(),
  "box_iou_loss": _box_pair(),
  "box_giou_loss": _box_pair(),
  "box_diou_loss": _box_pair(),
  "box_ciou_loss": _box_pair(),
  "box_eiou_loss": _box_pair(eps=1e-6),
  "box_iou": _pairwise(),
  "generalized_box_iou": _pairwise(),
  "box_convert": lambda k1, k2: (
    (_boxes(k1, (2, 5)),),
    {"in_format": "cxcywh", "out_format": "xyxy"},
  ),
  "distribution_focal_loss": lambda k1, k2: (
    (_logits(k1, (2, 3, 4, 8)), jax.random.uniform(k2, (2, 3, 4), maxval=7.0)),
    {},
  ),
  "distribution_integral": lambda k1, k2: ((_logits(k1, (2, 3, 8)),), {}),
  "box_siou_loss": _box_pair(),
  "bounded_iou_loss": _box_pair(beta=0.3),
  "balanced_l1_loss": lambda k1, k2: (
    (_logits(k1, (2, 5, 4)), _logits(k2, (2, 5, 4))),
    {"gamma": 1.2},
  ),
  "distance_box_iou": _pairwise(),
  "complete_box_iou": _pairwise(eps=1e-6),
  "rotated_box_probiou_loss": _rotated_pair(),
  "rotated_box_kld_loss": _rotated_pair(fun="sqrt", tau=2.0),
  "rotated_box_gwd_loss": _rotated_pair(),
  "softmax_class_cost": _class_cost(),
  "focal_class_cost": _class_cost(gamma=1.5),
  "box_l1_cost": lambda k1, k2: ((_boxes(k1, (2, 4)), _boxes(k2, (2, 3))), {}),
  "mask_dice_cost": _mask_cost(),
  "mask_bce_cost": _mask_cost(),
  "mask_focal_cost": _mask_cost(alpha=0.5),
  "boundary_loss": lambda k1, k2: (
    (_probs(k1, (2, 2, 5, 6, 3)), _ids(k2, (2, 2, 5, 6), 3)),
    {"sampling": 1.5},
  ),
  "hausdorff_dt_loss": lambda k1, k2: (
    (_probs(k1, (2, 2, 5, 6, 3)), _ids(k2, (2, 2, 5, 6), 3)),
    {"alpha": 1.5},
  ),
  "log_hausdorff_dt_loss": lambda k1, k2: (
    (_probs(k1, (2, 2, 5, 6, 3)), _ids(k2, (2, 2, 5, 6), 3)),
    {"alpha": 1.5},
  ),
  "hausdorff_er_loss": lambda k1, k2: (
    (_probs(k1, (2, 2, 5, 6, 3)), _ids(k2, (2, 2, 5, 6), 3)),
    {"alpha": 1.5, "erosions": 3},
  ),
  "cldice_loss": lambda k1, k2: (
    (_probs(k1, (2, 2, 5, 6, 3)), _ids(k2, (2, 2, 5, 6), 3)),
    {},
  ),
  "soft_skeleton": lambda k1, k2: ((_probs(k1, (2, 2, 5, 6, 3)),), {}),
  "distance_transform": lambda k1, k2: (
    (jax.random.bernoulli(k1, 0.7, (2, 5, 6)),),
    {"sampling": 1.5},
  ),
  # Region losses from logits: "name[activation]" calls name. One of each
  # code path: class ids and float targets through the pooled sums, the sort,
  # and the activation shared by the other losses (a distance-map loss); the
  # other losses share these paths (tests/test_activation.py compares them
  # all with the probability path).
  "dice_loss[softmax]": _from_logits("softmax"),
  "iou_loss[sigmoid]": _from_logits("sigmoid"),
  "lovasz_softmax[softmax]": _from_logits("softmax", classes="all"),
  "hausdorff_dt_loss[softmax]": _from_logits("softmax", (2, 2, 5, 6, 3)),
}


def _public(name: str) -> str:
  """The public function a case calls."""
  return name.split("[")[0]


PUBLIC = sorted({_public(name) for name in CASES})

# Options with no sensible default are required keywords (the two formats of
# box_convert, the keypoints' visibility, area and sigmas, Seesaw's class
# counts); any other parameter without a default is positional.
REQUIRED_KEYWORDS = {
  ("box_convert", "in_format"),
  ("box_convert", "out_format"),
  ("keypoint_oks_loss", "visible"),
  ("keypoint_oks_loss", "area"),
  ("keypoint_oks_loss", "sigmas"),
  ("seesaw_loss", "class_counts"),
}

# A region loss pools over every axis by default, so a batched call is not a
# stack of per-example calls; the table pools per example for them.
POOLED = {
  "asymmetric_unified_focal_loss",
  "dice_loss",
  "iou_loss",
  "tversky_loss",
  "generalized_dice_loss",
  "mcc_loss",
  "generalized_wasserstein_dice_loss",
  "lovasz_softmax",
  "lovasz_hinge",
}


# Inputs that the value checks must report (under jaxloss.value_checks and
# checkify): a function of the case's arguments returning bad arguments.
BAD = {
  "focal_loss": lambda x, y: (x, y + 2),
  "softmax_focal_loss": lambda x, y: (x, y.at[0].set(9)),
  "ohem_cross_entropy_loss": lambda x, y: (x, y.at[0].set(-1)),
  "varifocal_loss": lambda x, y: (x, y + 2),
  "gaussian_focal_loss": lambda x, y: (x, y - 2),
  "seesaw_loss": lambda x, y: (x, y.at[0].set(9)),
  "ghm_classification_loss": lambda x, y: (x, y * 3),
  "quality_focal_loss": lambda x, y: (x, y - 2),
  "dice_loss": lambda p, y: (p, y.at[0, 0].set(9)),
  "asymmetric_unified_focal_loss": lambda p, y: (p + 1, y),
  "iou_loss": lambda p, y: (p * 3, y),
  "tversky_loss": lambda p, y: (p, y.at[0, 0].set(-1)),
  "generalized_dice_loss": lambda p, y: (p - 1, y),
  "mcc_loss": lambda p, y: (p, y.at[0, 0].set(4)),
  "generalized_wasserstein_dice_loss": lambda p, y: (p, y.at[0, 0].set(-2)),
  "lovasz_softmax": lambda p, y: (p, y.at[0, 0].set(9)),
  "dice_loss[softmax]": lambda x, y: (x, y.at[0, 0].set(4)),
  "iou_loss[sigmoid]": lambda x, y: (x, y * 2),
  "lovasz_hinge": lambda x, y: (x, y + 3),
  "distribution_focal_loss": lambda x, y: (x, y + 8),
  "softmax_class_cost": lambda x, y: (x, y + 5),
  "focal_class_cost": lambda x, y: (x, y - 5),
  "mask_dice_cost": lambda x, y: (x, y + 2),
  "mask_bce_cost": lambda x, y: (x, y - 2),
  "mask_focal_cost": lambda x, y: (x, y * 3),
}

# Functions whose second derivative is not that of their value by design:
# piecewise-linear losses (Hessian 0 almost everywhere) and CIoU, whose
# aspect-ratio weight is a constant of the gradient, and Seesaw, whose
# compensation factor is.
NOT_SMOOTH = {
  "seesaw_loss",
  "lovasz_softmax",
  "lovasz_hinge",
  "box_ciou_loss",
  "complete_box_iou",
}

# Public names that are not functions of arrays.
NOT_ARRAY_FUNCTIONS = {"value_checks", "COCO_KEYPOINT_SIGMAS"}


# Functions that take more than arrays, called by the table through a
# function of arrays alone (one example: the table's calls are per example).
WRAPPED = {
  # Two levels, full and half resolution, of the softmax Dice loss; the
  # table differentiates with respect to the full-resolution logits.
  "deep_supervision_loss": lambda fn: (
    lambda full, half, labels, **kwargs: fn(
      lambda x, y: jaxloss.dice_loss(jax.nn.softmax(x), y),
      [full[None], half[None]],
      labels[None],
      **kwargs,
    )
  ),
}


def _case(name, key=0):
  (args, kwargs) = CASES[name](*jax.random.split(jax.random.PRNGKey(key)))
  fn = getattr(jaxloss, _public(name))
  return (WRAPPED[name](fn) if name in WRAPPED else fn), args, kwargs


def _first(args):
  """The first example of each argument, as NumPy arrays: the tests' own
  bookkeeping stays out of XLA (each eager operation is a compile)."""
  return [np.asarray(a)[0] for a in args]


def test_every_public_name_has_a_case():
  assert set(jaxloss.__all__) - NOT_ARRAY_FUNCTIONS == set(PUBLIC)


def test_version():
  assert isinstance(jaxloss.__version__, str) and jaxloss.__version__


@pytest.mark.parametrize("name", PUBLIC)
def test_options_are_keyword_only(name):
  params = list(inspect.signature(getattr(jaxloss, name)).parameters.values())
  kinds = {p.kind for p in params}
  assert inspect.Parameter.VAR_POSITIONAL not in kinds
  assert inspect.Parameter.VAR_KEYWORD not in kinds
  for p in params:
    if p.default is not inspect.Parameter.empty:
      assert p.kind is inspect.Parameter.KEYWORD_ONLY, p.name
    elif (name, p.name) in REQUIRED_KEYWORDS:
      assert p.kind is inspect.Parameter.KEYWORD_ONLY, p.name
    else:
      assert p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, p.name


@pytest.mark.parametrize("name", PUBLIC)
def test_docstring_sections(name):
  doc = getattr(jaxloss, name).__doc__
  for section in ("Args:", "Returns:", "References:", "Examples:"):
    assert section in doc, section


def _scalar(name):
  """``f(x) = sum(loss(x, *rest))`` on one example, and that example."""
  fn, args, kwargs = _case(name)
  f = lambda x, *rest: jnp.sum(fn(x, *rest, **kwargs))
  return f, _first(args)


# Functions whose first argument is not a float array (nothing to
# differentiate); checked against the cases below.
NOT_DIFFERENTIABLE = {"distance_transform"}


def _differentiable(name):
  return name not in NOT_DIFFERENTIABLE


def test_differentiable_names_take_float_inputs():
  keys = jax.random.split(jax.random.PRNGKey(0))
  for name in CASES:  # shapes and dtypes only: nothing is computed
    args = jax.eval_shape(lambda: CASES[name](*keys)[0])
    floating = jnp.issubdtype(args[0].dtype, jnp.floating)
    assert floating == _differentiable(name), name


def _close(got, want, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(
    np.asarray(got), np.asarray(want), rtol=rtol, atol=atol
  )


@pytest.mark.parametrize("name", sorted(CASES))
def test_jit_and_vmap_agree(name):
  """vmap over the batch equals the calls on each example, and pooling over
  the example's axes (``axis=``) equals vmap, in one compiled program. (The
  eager call is compared in the checkify test below.)"""
  fn, args, kwargs = _case(name)
  call = lambda *a: fn(*a, **kwargs)

  @jax.jit
  def batched(*args):
    out = (jax.vmap(call)(*args),) + tuple(
      call(*[a[i] for a in args]) for i in range(2)
    )
    if _public(name) in POOLED:  # per-example pooling over axis= equals vmap
      axes = tuple(range(1, args[0].ndim - (name != "lovasz_hinge")))
      out += (fn(*args, axis=axes, **kwargs),)
    return out

  vmapped, first, second, *pooled = batched(*args)
  _close(vmapped, np.stack([first, second]))
  for per_example in pooled:
    _close(per_example, vmapped)


@pytest.mark.parametrize("name", sorted(n for n in CASES if _differentiable(n)))
def test_every_derivative_agrees(name):
  """grad, value_and_grad, jvp, linearize and jacfwd: one derivative."""
  f, one = _scalar(name)
  x, rest = one[0], one[1:]
  t = np.asarray(jax.random.normal(jax.random.PRNGKey(7), x.shape, x.dtype))

  @jax.jit
  def derivatives(x, t, *rest):
    g = lambda x: f(x, *rest)
    _, linear = jax.linearize(g, x)
    return (
      g(x),
      jax.grad(g)(x),
      jax.value_and_grad(g)(x),
      jax.jvp(g, (x,), (t,)),
      linear(t),
      jax.jacfwd(g)(x),
    )

  value, grad, (value2, grad2), (primal, tangent), linear, jac = derivatives(
    x, t, *rest
  )
  grad = np.asarray(grad)
  assert grad.shape == x.shape
  assert np.all(np.isfinite(grad)) and np.max(np.abs(grad))
  _close(value2, value)
  _close(primal, value)
  _close(grad2, grad)
  inner = np.vdot(grad.astype(np.float64), t)
  _close(tangent, inner, rtol=1e-4, atol=1e-5)
  _close(linear, inner, rtol=1e-4, atol=1e-5)
  _close(jac, grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(n for n in CASES if _differentiable(n)))
def test_hessian_vector_product(name):
  """jvp of grad (forward over reverse) against central differences of grad,
  in float64; 0 for the piecewise-linear Lovász losses."""
  f, one = _scalar(name)
  with jax.enable_x64(True):
    x = one[0].astype(np.float64)
    rest = [
      a.astype(np.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a
      for a in one[1:]
    ]
    t = jax.random.normal(jax.random.PRNGKey(8), x.shape, jnp.float64)
    eps = 1e-5

    @jax.jit
    def hvp_and_differences(x, t, *rest):
      grad = jax.grad(lambda x: f(x, *rest))
      hvp = jax.jvp(grad, (x,), (t,))[1]
      return hvp, (grad(x + eps * t) - grad(x - eps * t)) / (2 * eps)

    hvp, fd = map(np.asarray, hvp_and_differences(x, t, *rest))
    assert np.all(np.isfinite(hvp))
    if name in ("lovasz_softmax", "lovasz_hinge"):
      assert np.max(np.abs(hvp)) == 0
    elif name not in NOT_SMOOTH:
      scale = np.max(np.abs(fd)) + 1e-12
      np.testing.assert_allclose(hvp / scale, fd / scale, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_export(name):
  """jax.export of the value and the gradient: the serialized program gives
  the direct call's values on CPU, and an export for CUDA and TPU
  serializes."""
  fn, args, kwargs = _case(name)
  one = _first(args)
  call = lambda *a: fn(*a, **kwargs)
  if _differentiable(name):
    grad = jax.grad(lambda x, *rest: jnp.sum(call(x, *rest)))
    program = lambda *a: (call(*a), grad(*a))
  else:
    program = call
  exported = jax.export.export(jax.jit(program))(*one)
  restored = jax.export.deserialize(exported.serialize())
  for got, want in zip(
    jax.tree.leaves(restored.call(*one)),
    jax.tree.leaves(jax.jit(program)(*one)),
  ):
    _close(got, want, rtol=1e-4)
  exported = jax.export.export(jax.jit(program), platforms=("cuda", "tpu"))(
    *one
  )
  assert exported.serialize()


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_checks_leave_no_trace_and_report_under_checkify(name):
  """Value checks add nothing to a program unless enabled; enabled, the
  checked program reports bad input, and on good input it reports nothing
  and gives the eager (op-by-op) call's value."""
  fn, args, kwargs = _case(name)
  one = [a[0] for a in args]
  call = jax.jit(lambda *a: fn(*a, **kwargs))
  assert not jax.make_jaxpr(call)(*one).effects
  checked = checkify.checkify(call)
  with jaxloss.value_checks():
    error, value = checked(*one)
  error.throw()  # good input: nothing to report
  _close(value, fn(*one, **kwargs))
  if name in BAD:
    with jaxloss.value_checks():
      assert jax.make_jaxpr(call)(*one).effects
      error, _ = checked(*BAD[name](*one))
    with pytest.raises(checkify.JaxRuntimeError, match=_public(name)):
      error.throw()
    with jaxloss.value_checks(False):
      assert not jax.make_jaxpr(call)(*one).effects


def test_value_checks_argument():
  with pytest.raises(TypeError, match="value_checks: enabled must be a bool"):
    with jaxloss.value_checks("yes"):
      pass
