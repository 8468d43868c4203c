"""Detection heads: Gaussian focal, keypoint OKS, Seesaw and GHM-C losses."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxloss
from tests import reference_detection as ref
from tests import references

SHAPE = (4, 5)  # elementwise losses
K = 5  # keypoints
C = 4  # classes


def logits(seed, shape=SHAPE, scale=3.0):
  return np.random.default_rng(seed).normal(0, scale, shape)


def heatmap(seed, shape=SHAPE, peaks=True):
  """Gaussian-like values in [0, 1), with some peaks exactly 1."""
  rng = np.random.default_rng(seed)
  y = np.exp(-rng.uniform(0, 4, shape))
  y = np.where(rng.uniform(size=shape) < 0.3, 0.0, y)
  y = np.minimum(y, 0.99)
  if peaks:
    y.flat[::3] = 1.0
  return y


def keypoints(seed, sets=(3,)):
  rng = np.random.default_rng(seed)
  target = rng.uniform(0, 10, sets + (K, 2))
  pred = target + rng.normal(0, 1.5, target.shape)
  visible = rng.uniform(size=sets + (K,)) < 0.7
  visible[..., 0] = True
  area = rng.uniform(4, 30, sets)
  sigmas = np.asarray(jaxloss.COCO_KEYPOINT_SIGMAS[:K]) * 10
  return pred, target, visible, area, sigmas


def class_counts():
  return np.array([500, 40, 40, 3])


def ids(seed, shape=(6,)):
  return np.random.default_rng(seed).integers(0, C, shape)


@functools.cache
def compiled(name, **kwargs):
  """The loss and the gradient of its sum in its first argument, jitted."""
  fn = functools.partial(getattr(jaxloss, name), **dict(kwargs))
  return jax.jit(fn), jax.jit(jax.grad(lambda x, *a: jnp.sum(fn(x, *a))))


def _oks(**kwargs):
  """keypoint_oks_loss with array options as arguments, for one compile."""
  fn = lambda p, t, v, a, s: jaxloss.keypoint_oks_loss(
    p, t, visible=v, area=a, sigmas=s, **kwargs
  )
  return jax.jit(fn), jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a))))


OKS, OKS_GRAD = _oks()
# The gradients in every float argument: coordinates, area and sigmas.
OKS_GRADS = jax.jit(
  jax.grad(
    lambda p, t, v, a, s: jnp.sum(
      jaxloss.keypoint_oks_loss(p, t, visible=v, area=a, sigmas=s)
    ),
    argnums=(0, 1, 3, 4),
  )
)
SEESAW = jax.jit(
  lambda x, y, n, **kw: jaxloss.seesaw_loss(x, y, class_counts=n, **kw),
  static_argnames=("p", "q", "eps"),
)
SEESAW_GRAD = jax.jit(
  jax.grad(lambda x, y, n, **kw: jnp.sum(SEESAW(x, y, n, **kw))),
  static_argnames=("p", "q", "eps"),
)


def _close(got, want, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=atol)


# 1. Hand cases --------------------------------------------------------------------


def test_hand_cases():
  log2 = np.log(2.0)
  # p = 1/2: peak (1/2)^2 log 2; y = 1/2: (1/2)^4 (1/2)^2 log 2; y = 0:
  # (1/2)^2 log 2.
  _close(
    compiled("gaussian_focal_loss")[0](
      jnp.zeros(3), jnp.array([1.0, 0.5, 0.0])
    ),
    [log2 / 4, log2 / 64, log2 / 4],
  )
  # Keypoints: sigma = 1/2 (kappa = 1), area 2: e = d^2 / 4. Offsets of 2
  # and 0: 1 - (e^-1 + 1) / 2.
  pred = jnp.array([[2.0, 0.0], [1.0, 1.0]])
  target = jnp.array([[0.0, 0.0], [1.0, 1.0]])
  got = OKS(pred, target, jnp.ones(2, bool), 2.0, jnp.array([0.5, 0.5]))
  _close(got, 1 - (np.exp(-1) + 1) / 2)
  # Seesaw, equal logits over 4 classes, counts (8, 2, 2, 8), label 0: the
  # two classes 4 times rarer weigh (1/4)^0.8 each; label 1: plain log 4.
  got = SEESAW(jnp.zeros((2, 4)), jnp.array([0, 1]), jnp.array([8, 2, 2, 8]))
  _close(got, [np.log(2 + 2 * 0.25**0.8), np.log(4.0)])
  # Compensation: label 0 scored below class 1 (logits 0 and log 2: s_1 /
  # s_0 = 2), equal counts: class 1's term grows by 2^q = 4.
  x = jnp.array([[0.0, np.log(2.0), 0.0]])
  got = SEESAW(x, jnp.array([0]), jnp.ones(3))
  _close(got, [np.log(1 + 4 * 2 + 1)])
  # GHM-C with 2 bins: g = 1/2 twice (bin 1), g ~ 0 once (bin 0); n = 2.
  got = compiled("ghm_classification_loss", bins=2)[0](
    jnp.array([0.0, 0.0, -30.0]), jnp.zeros(3)
  )
  _close(got, [log2 / 4, log2 / 4, np.log1p(np.exp(-30.0)) / 2], rtol=1e-6)


# 2. References: values and gradients ----------------------------------------------

GAUSSIAN = [(), (("alpha", 1.5), ("gamma", 2.5)), (("alpha", 0.5),)]


@pytest.mark.parametrize("kwargs", GAUSSIAN)
def test_gaussian_focal_matches_reference(kwargs):
  x, y = logits(0), heatmap(1)
  reference = functools.partial(ref.gaussian_focal, **dict(kwargs))
  value, grad = compiled("gaussian_focal_loss", **dict(kwargs))
  got = value(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
  assert got.shape == SHAPE and got.dtype == jnp.float32
  _close(got, reference(x, y))
  want = references.numerical_grad(lambda x: reference(x, y).sum(), x)
  soft = heatmap(2, peaks=False)  # no peak: the loss is smooth in y
  want_y = references.numerical_grad(lambda y: reference(x, y).sum(), soft)
  with jax.enable_x64(True):
    _close(value(x, y), reference(x, y), rtol=1e-12, atol=1e-14)
    _close(grad(x, y), want, rtol=1e-6, atol=1e-8)
    fn = jax.grad(lambda y: value(jnp.asarray(x), y).sum())
    _close(fn(jnp.asarray(soft)), want_y, rtol=1e-6, atol=1e-8)


def test_keypoint_oks_matches_reference():
  pred, target, visible, area, sigmas = keypoints(3, sets=(2, 3))
  weights = visible * np.random.default_rng(4).uniform(0.5, 2, visible.shape)
  for v in (visible, weights):
    got = OKS(*(jnp.asarray(a, jnp.float32) for a in (pred, target)), v, area,
              sigmas)  # fmt: skip
    want = ref.keypoint_oks_loss(pred, target, v, area, sigmas)
    assert got.shape == (2, 3) and got.dtype == jnp.float32
    _close(got, want)
    with jax.enable_x64(True):
      args = [jnp.asarray(a) for a in (pred, target, v, area, sigmas)]
      _close(OKS(*args), want, rtol=1e-12, atol=1e-14)
      grads = OKS_GRADS(*args)
      # Gradients in every float argument: coordinates, area and sigmas.
      for grad, (i, a) in zip(
        grads, ((0, pred), (1, target), (3, area), (4, sigmas))
      ):
        rest = [pred, target, v, area, sigmas]

        def total(value, i=i, rest=rest):
          rest = list(rest)
          rest[i] = value
          return ref.keypoint_oks_loss(*rest).sum()

        _close(
          grad,
          references.numerical_grad(total, a),
          rtol=1e-6,
          atol=1e-9,
        )


SEESAW_CONFIGS = [(), (("p", 0.5), ("q", 1.5)), (("eps", 0.3),)]


@pytest.mark.parametrize("kwargs", SEESAW_CONFIGS)
def test_seesaw_matches_reference(kwargs):
  x, y, n = logits(5, (6, C)), ids(6), class_counts()
  kw = dict(kwargs)
  want = ref.seesaw(x, y, n, **kw)
  got = SEESAW(jnp.asarray(x, jnp.float32), y, n, **kw)
  assert got.shape == (6,) and got.dtype == jnp.float32
  _close(got, want)
  # The gradient holds the compensation factor at its value (detached).
  want_grad = references.numerical_grad(
    lambda z: ref.seesaw(z, y, n, frozen=x, **kw).sum(), x
  )
  with jax.enable_x64(True):
    _close(SEESAW(x, y, n, **kw), want, rtol=1e-12, atol=1e-14)
    _close(SEESAW_GRAD(x, y, n, **kw), want_grad, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("bins", [10, 3])
def test_ghm_matches_reference(bins):
  x = logits(7, (6, C))
  y = np.random.default_rng(8).uniform(size=(6, C)) < 0.3
  valid = np.random.default_rng(9).uniform(size=(6, C)) < 0.8
  value, grad = compiled("ghm_classification_loss", bins=bins)
  masked = jax.jit(
    lambda x, y, w: jaxloss.ghm_classification_loss(x, y, bins=bins, where=w)
  )
  want = ref.ghm_c(x, y, bins)
  got = value(jnp.asarray(x, jnp.float32), y)
  assert got.shape == (6, C) and got.dtype == jnp.float32
  _close(got, want)
  _close(
    masked(jnp.asarray(x, jnp.float32), y, valid), ref.ghm_c(x, y, bins, valid)
  )
  # Class ids: one-hot rows, an id of C is a background row of zeros.
  labels = np.array([0, 3, 4, 1, 4, 2])
  onehot = labels[:, None] == np.arange(C)
  _close(value(jnp.asarray(x, jnp.float32), labels), ref.ghm_c(x, onehot, bins))
  want_grad = references.numerical_grad(
    lambda z: ref.ghm_c(z, y, bins, frozen=x).sum(), x
  )
  with jax.enable_x64(True):
    _close(value(x, y), want, rtol=1e-12, atol=1e-14)
    _close(grad(x, y), want_grad, rtol=1e-6, atol=1e-9)
  # The sum is mmdetection's loss: sum of beta * bce over N.
  np.testing.assert_allclose(float(np.sum(got)), want.sum(), rtol=1e-5)


# 3. Identities ---------------------------------------------------------------------


def test_gaussian_focal_on_hard_targets_is_focal_without_alpha():
  x = logits(10).astype(np.float32)
  hard = (heatmap(11) == 1).astype(np.float32)
  for alpha in (0.0, 2.0):
    focal = functools.partial(jaxloss.focal_loss, alpha=None, gamma=alpha)
    _close(
      compiled("gaussian_focal_loss", alpha=alpha)[0](x, hard),
      jax.jit(focal)(x, hard),
    )


def test_keypoint_oks_identities():
  pred, target, visible, area, sigmas = keypoints(12)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  loss = OKS(f32(pred), f32(target), visible, f32(area), f32(sigmas))
  assert np.all((loss >= 0) & (loss <= 1))
  # Exact prediction: 0. Scaling the image scales nothing.
  _close(OKS(f32(target), f32(target), visible, f32(area), f32(sigmas)), 0)
  _close(OKS(f32(3 * pred), f32(3 * target), visible, f32(9 * area),
             f32(sigmas)), loss)  # fmt: skip
  # Boolean flags equal 0/1 weights; a broadcast area and flags.
  _close(OKS(f32(pred), f32(target), f32(visible), f32(area), f32(sigmas)),
         loss)  # fmt: skip
  row = OKS(f32(pred), f32(target), visible[:1], f32(area[:1]), f32(sigmas))
  want = ref.keypoint_oks_loss(
    pred, target, np.broadcast_to(visible[:1], visible.shape),
    np.broadcast_to(area[:1], area.shape), sigmas,
  )  # fmt: skip
  _close(row, want)
  # YOLO-pose (ultralytics KeypointLoss): mean over sets and keypoints of
  # K / num_visible * (1 - exp(-e)) * mask equals the mean of the loss.
  d2 = ((pred - target) ** 2).sum(-1)
  e = d2 / ((2 * sigmas) ** 2 * (area[:, None] + 1e-9) * 2)
  factor = K / (visible.sum(1) + 1e-9)
  yolo = (factor[:, None] * (1 - np.exp(-e)) * visible).mean()
  np.testing.assert_allclose(float(loss.mean()), yolo, rtol=1e-5)


def test_keypoint_oks_no_visible_keypoint_and_nan_invisible():
  pred, target, visible, area, sigmas = keypoints(13)
  visible[1] = False
  pred[1] = np.nan  # a set without visible keypoint
  pred[0, ~visible[0]] = np.inf  # invisible keypoints of a visible set
  args = [jnp.asarray(a, jnp.float32) for a in (pred, target)]
  args += [visible, jnp.asarray(area, jnp.float32), jnp.asarray(sigmas)]
  loss = OKS(*args)
  assert float(loss[1]) == 0 and bool(jnp.all(jnp.isfinite(loss)))
  g = OKS_GRAD(*args)
  assert bool(jnp.all(jnp.isfinite(g)))
  assert float(jnp.abs(g[1]).max()) == 0
  assert float(jnp.abs(g[0][~visible[0]]).max()) == 0
  # NaN at a visible keypoint is not hidden.
  pred[2, 0] = np.nan
  assert bool(jnp.isnan(OKS(jnp.asarray(pred, jnp.float32), *args[1:])[2]))


def test_seesaw_identities():
  x = logits(14, (6, C)).astype(np.float32)
  y = ids(15)
  ce = jax.jit(jaxloss.softmax_focal_loss)(x, y, gamma=0.0)
  n = class_counts()
  _close(SEESAW(x, y, n, p=0.0, q=0.0), ce)
  # Equal counts, no compensation: cross-entropy; counts below 1 count as 1.
  _close(SEESAW(x, y, np.full(C, 7), q=0.0), ce)
  _close(SEESAW(x, y, np.array([0, 1, 0, 1])), SEESAW(x, y, np.ones(C)))
  # Mitigation only lowers the loss, compensation only raises it.
  assert np.all(SEESAW(x, y, n, q=0.0) <= ce + 1e-6)
  assert np.all(SEESAW(x, y, np.ones(C)) >= ce - 1e-6)
  # The gradient is softmax of the re-balanced logits minus the one-hot
  # (in float64 NumPy).
  x64 = x.astype(np.float64)
  log_n = np.log(n)
  log_p = x64 - np.log(np.exp(x64).sum(-1, keepdims=True))
  own = np.take_along_axis(log_p, y[:, None], -1)
  z = (
    x64
    + 0.8 * np.minimum(log_n[None, :] - log_n[y][:, None], 0)
    + 2.0 * np.maximum(log_p - np.maximum(own, np.log(0.01)), 0)
  )
  softmax = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  _close(SEESAW_GRAD(x, y, n), softmax - (y[:, None] == np.arange(C)))


def test_ghm_identities():
  x = logits(16, (6, C)).astype(np.float32)
  y = np.random.default_rng(17).uniform(size=(6, C)) < 0.3
  bce = np.asarray(
    jax.jit(functools.partial(jaxloss.focal_loss, alpha=None, gamma=0.0))(x, y)
  )
  # One bin: the mean cross-entropy.
  _close(compiled("ghm_classification_loss", bins=1)[0](x, y), bce / bce.size)
  # The weights sum to 1: a constant cross-entropy sums to it.
  value = compiled("ghm_classification_loss")[0]
  _close(np.sum(np.asarray(value(x, y)) / bce), 1.0)
  # vmap: one histogram a row.
  rows = np.asarray(jax.jit(jax.vmap(value))(x, y))
  _close(rows[2], value(x[2], y[2]))


MASKED = {
  "gaussian_focal_loss": jaxloss.gaussian_focal_loss,
  "seesaw_loss": functools.partial(
    jaxloss.seesaw_loss, class_counts=class_counts()
  ),
  "ghm_classification_loss": jaxloss.ghm_classification_loss,
}


@functools.partial(jax.jit, static_argnames="name")
def masked_program(x, y, where, bad, none, *, name):
  """The masked loss; the gradient of its sum at ``bad`` (NaN where
  masked); the loss and gradient with every entry masked."""
  loss = lambda x, w: MASKED[name](x, y, where=w)
  grad = jax.grad(lambda x, w: jnp.sum(loss(x, w)))
  return loss(x, where), grad(bad, where), loss(x, none), grad(x, none)


@pytest.mark.parametrize("name", sorted(MASKED))
def test_masked_equals_sliced_and_blocks_nan(name):
  rng = np.random.default_rng(18)
  if name == "seesaw_loss":
    x, y = logits(19, (6, C)), ids(20)
    where = rng.uniform(size=6) < 0.6
  else:
    x = logits(19, (6, C))
    y = (rng.uniform(size=(6, C)) < 0.3).astype(np.float32)
    where = rng.uniform(size=(6, C)) < 0.6
  x = x.astype(np.float32)
  bad = np.where(where[..., None] if x.ndim > where.ndim else where, x, np.nan)
  none = np.zeros_like(where)
  out = masked_program(x, y, where, bad, none, name=name)
  got, g, zero, g_zero = jax.device_get(out)
  assert float(np.abs(np.where(where, 0, got)).max()) == 0
  # The valid entries alone (for GHM-C, a histogram of those alone).
  _close(got[where], jax.jit(MASKED[name])(x[where], y[where]))
  assert bool(np.all(np.isfinite(g)))
  assert float(np.abs(zero).max()) == 0
  assert float(np.abs(g_zero).max()) == 0


# 4. Edges ---------------------------------------------------------------------------


def test_extreme_logits_are_finite_and_nan_propagates():
  big = jnp.array([[-1e4, -50.0, 0.0, 50.0, 1e4]] * 2)
  y = jnp.array([[1.0] * 5, [0.5] * 5])
  for name, kwargs in (
    ("gaussian_focal_loss", ()),
    ("ghm_classification_loss", ()),
  ):
    value, grad = compiled(name, **dict(kwargs))
    v, g = value(big, y), grad(big, y)
    assert bool(jnp.all(jnp.isfinite(v))) and bool(jnp.all(jnp.isfinite(g)))
    assert bool(jnp.isnan(value(big.at[0, 2].set(jnp.nan), y)[0, 2]))
  v = compiled("gaussian_focal_loss")[0](big, y)
  assert float(v[0, 4]) == 0  # confident and right costs nothing
  x = jnp.array([[-1e4, 0.0, 1e4, 5.0]] * 2)
  labels = jnp.array([2, 0])
  v, g = (
    SEESAW(x, labels, class_counts()),
    SEESAW_GRAD(x, labels, class_counts()),
  )
  assert bool(jnp.all(jnp.isfinite(v))) and bool(jnp.all(jnp.isfinite(g)))
  assert float(v[0]) == 0 and float(v[1]) > 1e3
  assert bool(
    jnp.isnan(SEESAW(x.at[0, 1].set(jnp.nan), labels, class_counts())[0])
  )


@pytest.mark.parametrize("kwargs", GAUSSIAN)
def test_gaussian_focal_saturated_logits_keep_relative_accuracy(kwargs):
  x = np.array([-20.0, -17.0, -10.0, 10.0, 17.0, 20.0])
  reference = functools.partial(ref.gaussian_focal, **dict(kwargs))
  value, grad = compiled("gaussian_focal_loss", **dict(kwargs))
  for target in (0.0, 1.0, 0.25):
    y = np.full_like(x, target)
    step = 1e-6
    slope = (reference(x + step, y) - reference(x - step, y)) / (2 * step)
    _close(value(x, y), reference(x, y), atol=0)
    _close(grad(x, y), slope, rtol=1e-4, atol=0)


def test_bf16_and_empty():
  x = jnp.asarray(logits(21, (6, C)), jnp.bfloat16)
  y = jnp.asarray(heatmap(22, (6, C)), jnp.bfloat16)
  for name in ("gaussian_focal_loss", "ghm_classification_loss"):
    value, grad = compiled(name)
    got = value(x, y)
    assert got.dtype == jnp.float32
    _close(got, value(x.astype(jnp.float32), y.astype(jnp.float32)), rtol=1e-6)
    g = grad(x, y)
    assert g.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(g)))
    assert value(jnp.zeros((0, C)), jnp.zeros((0, C))).shape == (0, C)
  labels = jnp.asarray(ids(23))
  got = SEESAW(x, labels, class_counts())
  assert got.dtype == jnp.float32
  _close(got, SEESAW(x.astype(jnp.float32), labels, class_counts()), rtol=1e-6)
  assert SEESAW(
    jnp.zeros((0, C)), jnp.zeros(0, jnp.int32), class_counts()
  ).shape == (0,)
  pred, target, visible, area, sigmas = keypoints(24)
  got = OKS(jnp.asarray(pred, jnp.bfloat16), jnp.asarray(target, jnp.bfloat16),
            visible, jnp.asarray(area, jnp.bfloat16), sigmas)  # fmt: skip
  assert got.dtype == jnp.float32
  _close(got, ref.keypoint_oks_loss(
    np.asarray(jnp.asarray(pred, jnp.bfloat16), np.float64),
    np.asarray(jnp.asarray(target, jnp.bfloat16), np.float64), visible,
    np.asarray(jnp.asarray(area, jnp.bfloat16), np.float64), sigmas), rtol=1e-5)  # fmt: skip
  assert OKS(jnp.zeros((0, K, 2)), jnp.zeros((0, K, 2)), jnp.zeros((0, K), bool),
             jnp.zeros(0), sigmas).shape == (0,)  # fmt: skip


# 5. Bad input -----------------------------------------------------------------------


def test_bad_input_gaussian_and_ghm():
  ok = jnp.zeros((2, 3))
  for name in ("gaussian_focal_loss", "ghm_classification_loss"):
    fn = getattr(jaxloss, name)
    with pytest.raises(
      TypeError, match=rf"{name}: logits must have a floating"
    ):
      fn(jnp.zeros((2, 3), jnp.int32), ok)
    with pytest.raises(
      ValueError, match=rf"{name}: .*labels.shape|{name}: heatmap.shape"
    ):
      fn(ok, jnp.zeros(4))
    with pytest.raises(TypeError, match=rf"{name}: where must be a boolean"):
      jax.jit(lambda x, y: fn(x, y, where=jnp.ones((2, 3))))(ok, ok)
  with pytest.raises(
    ValueError, match=r"gaussian_focal_loss: alpha must be >= 0"
  ):
    jaxloss.gaussian_focal_loss(ok, ok, alpha=-1.0)
  with pytest.raises(
    ValueError, match=r"gaussian_focal_loss: gamma must be >= 0"
  ):
    jax.jit(lambda x: jaxloss.gaussian_focal_loss(x, ok, gamma=-1.0))(ok)
  for bins, error in ((0, ValueError), (2.0, TypeError), (True, TypeError)):
    with pytest.raises(error, match=r"ghm_classification_loss: bins must be"):
      jaxloss.ghm_classification_loss(ok, ok, bins=bins)
  with pytest.raises(
    TypeError, match=r"ghm_classification_loss: labels of shape"
  ):
    jaxloss.ghm_classification_loss(ok, jnp.zeros(2))
  with jaxloss.value_checks():
    fn = jax.jit(checkify.checkify(jaxloss.gaussian_focal_loss))
    err, _ = fn(ok, np.full((2, 3), 2.0, np.float32))
  with pytest.raises(checkify.JaxRuntimeError, match=r"heatmap must lie in"):
    err.throw()


def test_bad_input_keypoints():
  fn = jaxloss.keypoint_oks_loss
  p = jnp.zeros((3, K, 2))
  kw = dict(
    visible=jnp.ones((3, K), bool), area=jnp.ones(3), sigmas=jnp.ones(K)
  )
  name = "keypoint_oks_loss"
  with pytest.raises(
    ValueError, match=rf"{name}: pred must have shape \[..., K, 2\]"
  ):
    fn(jnp.zeros((3, K, 3)), p, **kw)
  with pytest.raises(
    ValueError, match=rf"{name}: target.shape \(2, {K}, 2\) must equal"
  ):
    fn(p, jnp.zeros((2, K, 2)), **kw)
  with pytest.raises(TypeError, match=rf"{name}: pred must have a floating"):
    fn(jnp.zeros((3, K, 2), jnp.int32), p, **kw)
  with pytest.raises(
    TypeError, match=rf"{name}: visible must be boolean flags"
  ):
    fn(p, p, **{**kw, "visible": jnp.ones((3, K), jnp.int32)})
  with pytest.raises(
    ValueError, match=rf"{name}: visible.shape \(3, 4\) must broadcast"
  ):
    fn(p, p, **{**kw, "visible": jnp.ones((3, 4), bool)})
  with pytest.raises(
    ValueError, match=rf"{name}: area.shape \(3, 1\) must broadcast"
  ):
    jax.jit(lambda a: fn(p, p, **{**kw, "area": a}))(jnp.ones((3, 1)))
  with pytest.raises(
    ValueError, match=rf"{name}: sigmas.shape \(4,\) must be \({K},\)"
  ):
    fn(p, p, **{**kw, "sigmas": jnp.ones(4)})
  with pytest.raises(
    ValueError, match=rf"{name}: sigmas must be finite and > 0"
  ):
    fn(p, p, **{**kw, "sigmas": np.zeros(K)})
  with pytest.raises(TypeError, match=rf"{name}: area must be real"):
    fn(p, p, **{**kw, "area": jnp.ones(3, bool)})
  with jaxloss.value_checks():
    checked = checkify.checkify(lambda a: fn(p, p, **{**kw, "area": a}))
    err, _ = jax.jit(checked)(-np.ones(3, np.float32))
  with pytest.raises(checkify.JaxRuntimeError, match=r"area must be > 0"):
    err.throw()


def test_bad_input_seesaw():
  fn = jaxloss.seesaw_loss
  x = jnp.zeros((2, C))
  y = jnp.array([0, 1])
  n = jnp.ones(C)
  name = "seesaw_loss"
  with pytest.raises(TypeError, match=rf"{name}: logits must have a floating"):
    fn(jnp.zeros((2, C), jnp.int32), y, class_counts=n)
  with pytest.raises(
    ValueError, match=rf"{name}: labels.shape \(2, {C}\) must equal"
  ):
    fn(x, jnp.zeros((2, C)), class_counts=n)
  with pytest.raises(
    TypeError, match=rf"{name}: labels must be integer class ids"
  ):
    fn(x, jnp.zeros(2), class_counts=n)
  with pytest.raises(
    ValueError, match=rf"{name}: class_counts.shape \(3,\) must be"
  ):
    fn(x, y, class_counts=jnp.ones(3))
  with pytest.raises(
    ValueError, match=rf"{name}: class_counts must be finite and >= 0"
  ):
    fn(x, y, class_counts=np.array([1, -1, 0, 2]))
  for option, value in (("p", -1.0), ("q", -0.5)):
    with pytest.raises(ValueError, match=rf"{name}: {option} must be >= 0"):
      jax.jit(lambda x: fn(x, y, class_counts=n, **{option: value}))(x)
  with pytest.raises(ValueError, match=rf"{name}: eps must be > 0"):
    fn(x, y, class_counts=n, eps=0.0)
  with pytest.raises(ValueError, match=rf"{name}: where.shape"):
    fn(x, y, class_counts=n, where=jnp.ones(3, bool))
  with jaxloss.value_checks():
    err, _ = jax.jit(checkify.checkify(fn))(
      x, np.array([C, C + 1]), class_counts=n
    )
  with pytest.raises(
    checkify.JaxRuntimeError, match=rf"labels must lie in \[0, {C}\)"
  ):
    err.throw()
