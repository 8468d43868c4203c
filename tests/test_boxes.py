"""Box losses and helpers: hand cases, float64 references, identities, edges."""

import functools
import itertools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from tests import reference_boxes as ref
from tests import reference_detection as ref_det
from tests import references

LOSSES = {
  "iou": (jaxloss.box_iou_loss, ref.iou_loss),
  "giou": (jaxloss.box_giou_loss, ref.giou_loss),
  "diou": (jaxloss.box_diou_loss, ref.diou_loss),
  "ciou": (jaxloss.box_ciou_loss, ref.ciou_loss),
  "eiou": (jaxloss.box_eiou_loss, ref.eiou_loss),
  "siou": (jaxloss.box_siou_loss, ref_det.siou_loss),
}
NAMES = tuple(sorted(LOSSES))
FORMATS = ("xyxy", "xywh", "cxcywh")


def random_boxes(seed, n, spread=3.0):
  """``n`` valid boxes, many of them disjoint, as float64 NumPy."""
  rng = np.random.default_rng(seed)
  corner = rng.uniform(0, spread, (n, 2))
  size = rng.uniform(0.2, 2.0, (n, 2))
  return np.concatenate([corner, corner + size], axis=-1)


def f32(x):
  return jnp.asarray(x, jnp.float32)


# The losses that take a power (alpha-IoU), and those that take 3-D boxes.
ALPHA_NAMES = ("ciou", "diou", "giou", "iou")
NAMES_3D = ("diou", "giou", "iou")


def _losses(pred, target, eps, *, names, power, grads):
  options = {"eps": eps} if power is None else {"eps": eps, "power": power}
  out = {}
  for name in names:
    fn = functools.partial(LOSSES[name][0], **options)
    if grads:
      value, vjp = jax.vjp(fn, pred, target)
      out[name] = value, vjp(jnp.ones_like(value))
    else:
      out[name] = fn(pred, target)
  return out


_static = ("names", "power", "grads")
_losses_jit = jax.jit(_losses, static_argnames=_static)


def values(pred, target, eps=1e-7, *, names=NAMES, power=None):
  """``{name: loss}`` for the losses ``names`` of pred and target, in one
  program that the tests of one shape and dtype share: ``eps`` is traced,
  ``power`` static as users pass it (a whole power compiles to
  multiplications). As NumPy arrays, which the tests index without
  compiling more."""
  out = _losses_jit(pred, target, eps, names=names, power=power, grads=False)
  return jax.device_get(out)


def values_and_grads(pred, target, eps=1e-7, *, names=NAMES, power=None):
  """``{name: (loss, (d_pred, d_target))}``: as ``values``, with the gradient
  of the sum of each loss with respect to pred and target."""
  out = _losses_jit(pred, target, eps, names=names, power=power, grads=True)
  return jax.device_get(out)


# ``values`` with a traced ``power``.
values_at_power = functools.partial(
  jax.jit(_losses, static_argnames=("names", "grads")), grads=False
)


PAIRWISE = {
  "iou": jaxloss.box_iou,
  "giou": jaxloss.generalized_box_iou,
  "diou": jaxloss.distance_box_iou,
  "ciou": jaxloss.complete_box_iou,
}
PAIRWISE_NAMES = tuple(PAIRWISE)
PAIRWISE_3D = ("iou", "giou", "diou")


def _pairwise(a, b, eps=1e-7, names=PAIRWISE_NAMES):
  """``{name: matrix}``; ``eps`` goes to DIoU and CIoU (the others have none)."""
  eps = {"diou": {"eps": eps}, "ciou": {"eps": eps}}
  return {name: PAIRWISE[name](a, b, **eps.get(name, {})) for name in names}


_pairwise_jit = jax.jit(_pairwise, static_argnames="names")


def pairwise(a, b, eps=1e-7, *, names=PAIRWISE_NAMES):
  """The pairwise functions ``names`` of boxes a and b, in one program
  (``eps`` traced)."""
  return jax.device_get(_pairwise_jit(a, b, eps, names=names))


@functools.partial(jax.jit, static_argnames="names")
def pairwise_grads(a, b, weights, *, names=PAIRWISE_NAMES):
  """``{name: gradient of sum(weights * name(a, b)) with respect to a}``."""
  return {
    name: jax.grad(
      lambda a, name=name: jnp.sum(
        weights * _pairwise(a, b, names=(name,))[name]
      )
    )(a)
    for name in names
  }


# 1. Hand-computed cases -------------------------------------------------------

A = [0.0, 0.0, 2.0, 2.0]
SHIFTED = [1.0, 1.0, 3.0, 3.0]  # I = 1, U = 7, C = 9, rho^2 = 2, c^2 = 18
RIGHT = [2.0, 0.0, 3.0, 1.0]  # disjoint from the unit square


@pytest.mark.parametrize(
  "name, pred, target, want",
  [
    ("iou", A, SHIFTED, 6 / 7),
    ("giou", A, SHIFTED, 1 - 1 / 7 + 2 / 9),
    ("diou", A, SHIFTED, 1 - 1 / 7 + 2 / 18),
    ("ciou", A, SHIFTED, 1 - 1 / 7 + 2 / 18),
    ("eiou", A, [0.0, 0.0, 4.0, 2.0], 1 / 2 + 1 / 20 + 4 / 16),
    # Unit square vs [2, 3] x [0, 1]: U = 2, C = 3, rho^2 = 4, c^2 = 10.
    ("iou", [0.0, 0.0, 1.0, 1.0], RIGHT, 1.0),
    ("giou", [0.0, 0.0, 1.0, 1.0], RIGHT, 1 + 1 / 3),
    ("diou", [0.0, 0.0, 1.0, 1.0], RIGHT, 1 + 4 / 10),
    # [0,2]x[0,1] vs [0,1]x[0,2]: IoU 1/3, c^2 = 8, rho^2 = 1/2,
    # v = 4/pi^2 (atan(1/2) - atan(2))^2.
    (
      "ciou",
      [0.0, 0.0, 2.0, 1.0],
      [0.0, 0.0, 1.0, 2.0],
      2 / 3
      + 1 / 16
      + (lambda v: v * v / (2 / 3 + v))(
        4 / np.pi**2 * (np.arctan(0.5) - np.arctan(2.0)) ** 2
      ),
    ),
  ],
)
def test_hand_cases(name, pred, target, want):
  got = values(jnp.array(pred), jnp.array(target))[name]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_pairwise_hand_case():
  a = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
  b = jnp.array([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0]])
  got = pairwise(a, b)
  np.testing.assert_allclose(got["iou"], [[1 / 7, 0.0], [0.0, 0.0]], atol=1e-7)
  np.testing.assert_allclose(
    got["giou"],
    # U = 7, C = 9 | U = 5, C = 6
    # U = 5, C = 9 | U = 2, C = 3
    [[1 / 7 - 2 / 9, -1 / 6], [-4 / 9, -1 / 3]],
    rtol=1e-6,
    atol=1e-7,
  )


# 2. float64 references: values and gradients ----------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_values_match_reference(name):
  reference = LOSSES[name][1]
  pred, target = random_boxes(0, 16), random_boxes(1, 16)
  want = reference(pred, target)
  got = values(f32(pred), f32(target))[name]
  assert got.shape == (16,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
  with jax.enable_x64(True):  # The program of the gradient test.
    got64 = values_and_grads(jnp.asarray(pred), jnp.asarray(target))[name][0]
    assert got64.dtype == jnp.float64
    np.testing.assert_allclose(got64, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_reference(name):
  reference = LOSSES[name][1]
  # Away from ties (equal edges), where the loss is differentiable.
  pred, target = random_boxes(2, 16), random_boxes(3, 16)
  if name == "ciou":  # The paper's gradient: alpha held at its value.
    alpha = ref.ciou_alpha(pred, target)
    scalar = lambda p: np.sum(ref.ciou_loss(p, target, alpha=alpha))
  else:
    scalar = lambda p: np.sum(reference(p, target))
  want = references.numerical_grad(scalar, pred)
  with jax.enable_x64(True):
    p, t = jnp.asarray(pred), jnp.asarray(target)
    got, _ = values_and_grads(p, t)[name][1]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  assert np.abs(want).max() > 0


def test_ciou_alpha_is_constant_in_the_gradient():
  pred, target = random_boxes(4, 16), random_boxes(5, 16)
  full = references.numerical_grad(
    lambda p: np.sum(ref.ciou_loss(p, target)), pred
  )
  with jax.enable_x64(True):
    p, t = jnp.asarray(pred), jnp.asarray(target)
    got, _ = values_and_grads(p, t)["ciou"][1]
  assert not np.allclose(got, full, rtol=1e-4, atol=1e-6)


PAIRWISE_REFERENCES = {
  "iou": ref.iou,
  "giou": ref.giou,
  "diou": ref_det.distance_box_iou,
  "ciou": ref_det.complete_box_iou,
}


@pytest.mark.parametrize("name", PAIRWISE_NAMES)
def test_pairwise_matches_reference(name):
  a, b = random_boxes(6, 5), random_boxes(7, 3)
  want = ref.pairwise(PAIRWISE_REFERENCES[name], a, b)
  got = pairwise(f32(a), f32(b))[name]
  assert got.shape == (5, 3) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Batched over leading axes, which broadcast: [2, 5, 4] x [3, 4].
  got = pairwise(f32(np.stack([a] * 2)), f32(b))[name]
  assert got.shape == (2, 5, 3)
  np.testing.assert_allclose(got[1], want, rtol=1e-5, atol=1e-6)
  # Symmetric.
  np.testing.assert_allclose(
    pairwise(f32(b), f32(a))[name], want.T, rtol=1e-5, atol=1e-6
  )


@pytest.mark.parametrize("name", ["iou", "giou"])
def test_pairwise_gradients_match_reference(name):
  a, b = random_boxes(23, 5), random_boxes(24, 3)
  weights = np.random.default_rng(25).normal(size=(5, 3))
  reference = PAIRWISE_REFERENCES[name]
  scalar = lambda a: np.sum(weights * ref.pairwise(reference, a, b))
  want = references.numerical_grad(scalar, a)
  with jax.enable_x64(True):
    got = pairwise_grads(*map(jnp.asarray, (a, b, weights)))[name]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
  assert (np.abs(want).max(-1) > 0).sum() >= 3  # most boxes overlap one


def test_pairwise_equals_elementwise_losses():
  a = jnp.asarray(random_boxes(8, 5), jnp.float32)
  b = jnp.asarray(random_boxes(9, 3), jnp.float32)
  pairs = (
    jnp.broadcast_to(a[:, None], (5, 3, 4)),
    jnp.broadcast_to(b[None], (5, 3, 4)),
  )
  matrices, losses = pairwise(a, b, 0.0), values(*pairs, 0.0)
  np.testing.assert_allclose(
    matrices["iou"], 1 - losses["iou"], rtol=1e-6, atol=1e-7
  )
  np.testing.assert_allclose(
    matrices["giou"], 1 - losses["giou"], rtol=1e-6, atol=1e-6
  )


# 3. Identities ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_identical_boxes_give_zero(name):
  boxes = jnp.asarray(random_boxes(10, 16), jnp.float32)
  # eps=1e-7 against areas ~1 leaves at most a few float32 ulps.
  got = values(boxes, boxes)[name]
  np.testing.assert_allclose(got, 0, atol=1e-6)
  got = values(boxes, boxes, 0.0)[name]
  np.testing.assert_allclose(got, 0, atol=1e-7)
  iou = pairwise(boxes, boxes)["iou"]
  np.testing.assert_allclose(np.diagonal(iou), 1, rtol=1e-6)


def test_giou_equals_iou_when_the_enclosing_box_is_the_union():
  pred = jnp.array(
    [
      [0.0, 0.0, 4.0, 4.0],  # holds the target
      [1.0, 1.0, 2.0, 2.0],  # inside the target
      [0.0, 0.0, 2.0, 1.0],
    ]
  )  # shares the full side y in [0, 1]
  target = jnp.array(
    [[1.0, 1.0, 3.0, 2.0], [0.0, 0.0, 3.0, 3.0], [1.0, 0.0, 3.0, 1.0]]
  )
  got = values(pred, target, names=("giou", "iou"))
  giou = got["giou"]
  np.testing.assert_allclose(giou, got["iou"], rtol=1e-6)
  np.testing.assert_allclose(
    giou, [1 - 2 / 16, 1 - 1 / 9, 1 - 1 / 3], rtol=1e-6
  )


def test_diou_equals_iou_for_concentric_boxes():
  rng = np.random.default_rng(11)
  centre = rng.uniform(-5, 5, (16, 2))
  half = rng.uniform(0.1, 2, (2, 16, 2))
  pred, target = (
    jnp.asarray(np.concatenate([centre - h, centre + h], -1), jnp.float32)
    for h in half
  )
  got = values(pred, target)
  np.testing.assert_allclose(got["diou"], got["iou"], rtol=1e-6, atol=1e-6)


def test_ciou_equals_diou_for_equal_aspect_ratios():
  pred = random_boxes(12, 16).astype(np.float32)
  scale = np.random.default_rng(13).uniform(0.3, 3, (16, 1)).astype(np.float32)
  shift = np.random.default_rng(14).uniform(-2, 2, (16, 2)).astype(np.float32)
  xy1 = pred[:, :2] + shift
  target = np.concatenate(
    [xy1, xy1 + scale * (pred[:, 2:] - pred[:, :2])], axis=-1
  )
  got = values_and_grads(pred, target, names=("ciou", "diou"))
  np.testing.assert_allclose(
    got["ciou"][0], got["diou"][0], rtol=1e-6, atol=1e-6
  )
  # And their gradients agree there too (v = 0 has zero gradient).
  np.testing.assert_allclose(
    got["ciou"][1][0], got["diou"][1][0], rtol=1e-5, atol=1e-6
  )


def test_eiou_equals_diou_for_equal_sizes():
  pred = random_boxes(15, 16).astype(np.float32)
  target = pred + np.float32([[1.5, -0.5, 1.5, -0.5]])
  got = values(pred, target)
  np.testing.assert_allclose(got["eiou"], got["diou"], rtol=1e-6)


def test_ordering_of_the_family_on_valid_boxes():
  pred = jnp.asarray(random_boxes(16, 16), jnp.float32)
  target = jnp.asarray(random_boxes(17, 16), jnp.float32)
  v = {k: np.asarray(v) for k, v in values(pred, target).items()}
  assert np.all((v["iou"] >= 0) & (v["iou"] <= 1))
  assert np.all(v["giou"] >= v["iou"] - 1e-6) and np.all(v["giou"] <= 2)
  assert np.all(v["diou"] >= v["iou"] - 1e-6) and np.all(v["diou"] < 2)
  assert np.all(v["ciou"] >= v["diou"] - 1e-6)
  assert np.all(v["eiou"] >= v["diou"] - 1e-6) and np.all(v["eiou"] < 4)


# 4. Degenerate boxes: finite values and gradients ------------------------------

DEGENERATE = {
  # pred, target
  "point vs box": ([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]),
  "box vs point": ([0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]),
  "same point": ([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]),
  "two points": ([0.0, 0.0, 0.0, 0.0], [3.0, 4.0, 3.0, 4.0]),
  "flat vs box": ([0.0, 1.0, 2.0, 1.0], [0.0, 0.0, 2.0, 2.0]),
  "thin vs box": ([1.0, 0.0, 1.0, 2.0], [0.0, 0.0, 2.0, 2.0]),
  "flat vs flat": ([0.0, 1.0, 2.0, 1.0], [0.0, 1.0, 2.0, 1.0]),
  "identical": ([0.0, 0.0, 2.0, 3.0], [0.0, 0.0, 2.0, 3.0]),
  "touching": ([0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 2.0, 1.0]),
  "disjoint": ([0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 7.0]),
  "far apart": ([0.0, 0.0, 1.0, 1.0], [1e6, -1e6, 1e6 + 2, -1e6 + 1]),
  "invalid pred": ([2.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 2.0]),
  "inverted width": ([2.0, 0.0, 0.0, 2.0], [0.0, 0.0, 2.0, 2.0]),
  "disjoint in x": ([0.0, 0.0, 1.0, 1.0], [3.0, 0.0, 4.0, 1.0]),
}


@pytest.fixture(scope="module")
def degenerate():
  pred = jnp.array([p for p, _ in DEGENERATE.values()])
  target = jnp.array([t for _, t in DEGENERATE.values()])
  return pred, target


@pytest.mark.parametrize("eps", [1e-7, 0.0])
@pytest.mark.parametrize("name", NAMES)
def test_degenerate_boxes_are_finite(name, eps, degenerate):
  pred, target = degenerate
  value, grads = values_and_grads(pred, target, eps)[name]
  bad = [k for k, ok in zip(DEGENERATE, np.isfinite(value)) if not ok]
  assert not bad, bad
  for g in grads:
    bad = [k for k, ok in zip(DEGENERATE, np.isfinite(g).all(-1)) if not ok]
    assert not bad, bad


def test_degenerate_values(degenerate):
  cases = list(DEGENERATE)
  got = {
    k: np.asarray(v) for k, (v, _) in values_and_grads(*degenerate).items()
  }
  iou, diou, ciou = got["iou"], got["diou"], got["ciou"]
  # A zero-area box has IoU 0 with everything, itself included.
  for k in (
    "point vs box",
    "same point",
    "flat vs flat",
    "touching",
    "far apart",
    "invalid pred",
  ):
    np.testing.assert_allclose(iou[cases.index(k)], 1.0, err_msg=k)
  np.testing.assert_allclose(diou[cases.index("far apart")], 2.0, atol=1e-5)
  np.testing.assert_allclose(diou[cases.index("same point")], 1.0)
  # Flat box: atan2 gives pi/2 where arctan(w / 0) would be inf/NaN.
  k = cases.index("flat vs box")
  v = 4 / np.pi**2 * (np.pi / 4 - np.pi / 2) ** 2  # = 1/4
  # IoU = 0 and the centres coincide, so DIoU = 1 and alpha = v / (1 + v).
  np.testing.assert_allclose(diou[k], 1.0)
  np.testing.assert_allclose(ciou[k], 1 + v * v / (1 + v), rtol=1e-6)
  # A point has no aspect ratio: no aspect penalty, CIoU = DIoU.
  for k in ("point vs box", "box vs point", "same point", "two points"):
    np.testing.assert_allclose(
      ciou[cases.index(k)], diou[cases.index(k)], err_msg=k
    )


def test_disjoint_boxes_pull_together_except_under_iou(degenerate):
  k = list(DEGENERATE).index("disjoint in x")  # [0, 1]^2 vs [3, 4] x [0, 1]
  got = values_and_grads(*degenerate)
  assert float(np.abs(got["iou"][1][0][k]).max()) == 0
  for name in ("giou", "diou", "ciou", "eiou"):
    g, _ = got[name][1]
    assert float(g[k, 2]) < 0, name  # moving x2 right lowers the loss


def test_second_order_and_forward_mode():
  pred = jnp.array([[0.0, 0.0, 2.0, 1.0]])
  target = jnp.array([[0.5, 0.2, 2.5, 2.0]])
  direction = jnp.array([[1.0, -2.0, 0.5, 3.0]])

  @jax.jit
  def derivatives(pred, target, direction):
    """The Hessian by reverse over reverse and by forward over reverse, the
    gradient, and the derivative along ``direction`` by forward mode."""
    scalar = lambda p: jnp.sum(jaxloss.box_diou_loss(p, target))
    return (
      jax.jacrev(jax.jacrev(scalar))(pred),
      jax.jacfwd(jax.grad(scalar))(pred),
      jax.grad(scalar)(pred),
      jax.jvp(scalar, (pred,), (direction,))[1],
    )

  hessian, forward_hessian, grad, forward = derivatives(pred, target, direction)
  p64, t64 = np.asarray(pred, np.float64), np.asarray(target, np.float64)
  numerical = lambda p: references.numerical_grad(
    lambda q: np.sum(ref.diou_loss(q, t64)), p, eps=1e-5
  )
  want = np.stack(
    [
      references.numerical_grad(lambda q: numerical(q)[0, j], p64, eps=1e-4)
      for j in range(4)
    ]
  )
  np.testing.assert_allclose(
    np.reshape(hessian, (4, 4)), want.reshape(4, 4), rtol=1e-3, atol=1e-3
  )
  np.testing.assert_allclose(
    forward, np.sum(np.asarray(grad) * np.asarray(direction)), rtol=1e-5
  )
  np.testing.assert_allclose(forward_hessian, hessian, rtol=1e-4, atol=1e-6)


# A point, a box and a flat box, each against all three.
POINT_BOX_FLAT = [
  [1.0, 1.0, 1.0, 1.0],
  [0.0, 0.0, 2.0, 2.0],
  [0.0, 1.0, 2.0, 1.0],
]


@jax.jit
def pairwise_with_itself(a, direction):
  """``box_iou(a, a)``; the value and gradient of the sum of IoU and GIoU;
  those of the sum of DIoU and CIoU (eps=0), and its Hessian along
  ``direction``."""
  both = lambda a: jnp.sum(
    jaxloss.box_iou(a, a) + jaxloss.generalized_box_iou(a, a)
  )
  distance = lambda x: jnp.sum(
    jaxloss.distance_box_iou(x, x, eps=0.0)
    + jaxloss.complete_box_iou(x, x, eps=0.0)
  )
  hvp = jax.jvp(jax.grad(distance), (a,), (direction,))[1]
  return (
    jaxloss.box_iou(a, a),
    jax.value_and_grad(both)(a),
    jax.value_and_grad(distance)(a),
    hvp,
  )


def test_pairwise_degenerate_is_finite():
  a = jnp.array(POINT_BOX_FLAT)
  iou, (value, grads), _, _ = pairwise_with_itself(a, jnp.ones_like(a))
  assert bool(np.isfinite(value)) and bool(np.all(np.isfinite(grads)))
  np.testing.assert_allclose(iou[0, 0], 0.0)


def test_nan_in_gives_nan_out():
  pred = jnp.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, jnp.nan, 1.0]])
  target = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]])
  got = values(pred, target)
  for name in NAMES:
    value = got[name]
    assert bool(np.isfinite(value[0])) and bool(np.isnan(value[1])), name


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(
  seed=st.integers(0, 2**16),
  scale=st.floats(0.01, 100.0),
  shift=st.floats(-10.0, 10.0),
)
def test_invariant_to_translation_scale_and_order(seed, scale, shift):
  """Every loss depends only on the relative geometry and is symmetric."""
  pred = random_boxes(seed, 16).astype(np.float32)
  target = random_boxes(seed + 1, 16).astype(np.float32)
  moved = lambda b: np.float32(scale) * (b + np.float32(shift))
  value = lambda p, t: values(p, t, 0.0)
  base, there, swapped = (
    value(pred, target),
    value(moved(pred), moved(target)),
    value(target, pred),
  )
  for name in NAMES:
    np.testing.assert_allclose(
      there[name],
      base[name],
      rtol=1e-4,
      atol=1e-5,
      err_msg=name,
    )
    np.testing.assert_allclose(
      swapped[name], base[name], rtol=1e-5, atol=1e-6, err_msg=name
    )


# 5. Dtypes and broadcasting ---------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bf16_is_finite_and_close(name):
  pred = jnp.asarray(random_boxes(18, 16), jnp.bfloat16)
  target = jnp.asarray(random_boxes(19, 16), jnp.bfloat16)
  got, (g, _) = values_and_grads(pred, target)[name]
  assert got.dtype == jnp.float32
  want = values(f32(pred), f32(target))[name]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  assert g.dtype == jnp.bfloat16 and bool(np.all(np.isfinite(g)))


def test_broadcasting_is_explicit_and_matches_tiling():
  pred = f32(random_boxes(20, 6).reshape(2, 3, 4))
  target = random_boxes(21, 3).astype(np.float32)
  fn = functools.partial(values, names=("ciou", "diou"))
  # [2, 3, 4] vs [3, 4]: rank promotion is explicit.
  got, tiled = fn(pred, target), fn(pred, np.stack([target] * 2))
  # One target for every prediction.
  one, many = (
    fn(pred, target[0]),
    fn(pred, np.broadcast_to(target[0], (2, 3, 4))),
  )
  for name in ("diou", "ciou"):
    assert got[name].shape == (2, 3)
    np.testing.assert_allclose(got[name], tiled[name], rtol=1e-6)
    np.testing.assert_allclose(one[name], many[name], rtol=1e-6)


# 6. Bad input -----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_names_function_and_argument(name):
  fn = LOSSES[name][0]
  fname = fn.__name__
  ok = jnp.zeros((3, 4))
  with pytest.raises(ValueError, match=rf"{fname}: pred must have shape"):
    fn(jnp.zeros((3, 5)), ok)
  with pytest.raises(ValueError, match=rf"{fname}: target must have shape"):
    fn(ok, jnp.zeros(()))
  with pytest.raises(
    ValueError,
    match=rf"{fname}: .*pred.shape and "
    r"target.shape must broadcast, got \(3,\) and \(2,\)",
  ):
    fn(ok, jnp.zeros((2, 4)))
  with pytest.raises(TypeError, match=rf"{fname}: pred must have a floating"):
    fn(jnp.zeros((3, 4), jnp.int32), ok)
  with pytest.raises(TypeError, match=rf"{fname}: target must have a floating"):
    fn(ok, np.zeros((3, 4), np.int64))
  with pytest.raises(ValueError, match=rf"{fname}: eps must be >= 0"):
    fn(ok, ok, eps=-1.0)


def test_bad_input_helpers():
  ok = jnp.zeros((3, 4))
  with pytest.raises(
    ValueError, match=r"box_iou: boxes1 must have shape \[\.\.\., N, 4\]"
  ):
    jaxloss.box_iou(jnp.zeros(4), ok)
  with pytest.raises(
    ValueError, match=r"generalized_box_iou: boxes2 must have shape"
  ):
    jaxloss.generalized_box_iou(ok, jnp.zeros((3, 3)))
  with pytest.raises(
    ValueError, match=r"box_iou: the batch axes .* got \(2,\) and \(3,\)"
  ):
    jaxloss.box_iou(jnp.zeros((2, 5, 4)), jnp.zeros((3, 5, 4)))
  with pytest.raises(TypeError, match=r"box_iou: boxes2 must have a floating"):
    jaxloss.box_iou(ok, jnp.zeros((3, 4), jnp.int32))
  with pytest.raises(
    ValueError, match=r"box_convert: in_format must be one of"
  ):
    jaxloss.box_convert(ok, in_format="xyxy2", out_format="xyxy")
  with pytest.raises(
    ValueError, match=r"box_convert: out_format must be one of"
  ):
    jaxloss.box_convert(ok, in_format="xyxy", out_format="yolo")
  with pytest.raises(ValueError, match=r"box_convert: boxes must have shape"):
    jaxloss.box_convert(jnp.zeros((3, 2)), in_format="xyxy", out_format="xywh")
  with pytest.raises(
    TypeError, match=r"box_convert: boxes must have a floating"
  ):
    jaxloss.box_convert(
      jnp.zeros((3, 4), jnp.int32), in_format="xyxy", out_format="xywh"
    )
  with pytest.raises(TypeError):  # the formats are required keywords
    jaxloss.box_convert(ok, "xyxy", "xywh")


# 7. box_convert ---------------------------------------------------------------


def test_box_convert_table():
  table = {
    "xyxy": [1.0, 2.0, 4.0, 8.0],
    "xywh": [1.0, 2.0, 3.0, 6.0],
    "cxcywh": [2.5, 5.0, 3.0, 6.0],
  }
  for source, target in itertools.product(FORMATS, FORMATS):
    got = jaxloss.box_convert(
      jnp.array([table[source]]), in_format=source, out_format=target
    )
    np.testing.assert_allclose(got, [table[target]], err_msg=(source, target))


@pytest.mark.parametrize(
  "source, target", list(itertools.permutations(FORMATS, 2))
)
def test_box_convert_round_trips_and_reference(source, target):
  boxes = jnp.asarray(
    np.random.default_rng(22).uniform(-5, 5, (2, 7, 4)), jnp.float32
  )
  there = jaxloss.box_convert(boxes, in_format=source, out_format=target)
  np.testing.assert_allclose(
    there, ref.convert(boxes, source, target), rtol=1e-6, atol=1e-6
  )
  back = jaxloss.box_convert(there, in_format=target, out_format=source)
  assert back.shape == boxes.shape and back.dtype == boxes.dtype
  np.testing.assert_allclose(back, boxes, rtol=1e-6, atol=1e-6)


def test_box_convert_keeps_dtype_and_feeds_the_losses():
  cxcywh = jnp.array([[1.0, 1.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]], jnp.bfloat16)
  xyxy = jaxloss.box_convert(cxcywh, in_format="cxcywh", out_format="xyxy")
  assert xyxy.dtype == jnp.bfloat16
  np.testing.assert_allclose(xyxy.astype(jnp.float32), [A, SHIFTED])
  np.testing.assert_allclose(
    jaxloss.box_iou_loss(xyxy[0], xyxy[1]), 6 / 7, rtol=1e-6
  )


# 8. The simulation example runs (tiny) ----------------------------------------


def _load_simulation():
  import importlib.util
  import pathlib

  path = (
    pathlib.Path(__file__).parent.parent
    / "examples"
    / "box_regression_simulation.py"
  )
  spec = importlib.util.spec_from_file_location(
    "box_regression_simulation", path
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_simulation_example_smoke(tmp_path, capsys):
  sim = _load_simulation()
  anchors, targets, results = sim.run(2, 12, losses=("IoU", "DIoU"))
  assert anchors.shape == targets.shape == (2 * 7 * 7 * 7, 4)
  disjoint = ~sim.overlaps(anchors, targets)
  assert disjoint.any() and (~disjoint).any()
  for boxes, errors in results.values():
    assert boxes.shape == anchors.shape and errors.shape == (12, 4)
    assert np.isfinite(boxes).all()
  start = np.abs(anchors - targets).sum()
  # The IoU loss has no gradient for disjoint boxes: they never move.
  np.testing.assert_array_equal(results["IoU"][0][disjoint], anchors[disjoint])
  diou = results["DIoU"][1].sum(-1)
  assert diou[-1] < diou[0] < start
  assert diou[-1] < results["IoU"][1][-1].sum()
  # The script itself (same sizes: the compiled simulations are reused).
  sim.main(
    [
      "--points",
      "2",
      "--iterations",
      "12",
      "--losses",
      "IoU",
      "DIoU",
      "--out",
      str(tmp_path),
    ]
  )
  assert (tmp_path / "box_regression_simulation.png").stat().st_size > 0
  assert "DIoU" in capsys.readouterr().out


# 9. SIoU -----------------------------------------------------------------------


@pytest.mark.parametrize(
  "pred, target, want",
  [
    # Shifted along x: IoU = 1/3, Lambda = 0, rho_x = 1/9, Omega = 0.
    (
      [0.0, 0.0, 2.0, 2.0],
      [1.0, 0.0, 3.0, 2.0],
      2 / 3 + (1 - np.exp(-2 / 9)) / 2,
    ),
    # Shifted along the diagonal: Lambda = 1, gamma = 1, rho_x = rho_y = 1/9.
    (A, SHIFTED, 6 / 7 + (1 - np.exp(-1 / 9))),
    # Concentric, 2 x 2 in 4 x 2: no distance cost; omega_w = 1/2.
    (
      [1.0, 0.0, 3.0, 2.0],
      [0.0, 0.0, 4.0, 2.0],
      1 / 2 + (1 - np.exp(-0.5)) ** 4 / 2,
    ),
  ],
)
def test_siou_hand_cases(pred, target, want):
  got = values(jnp.array(pred), jnp.array(target), 0.0)["siou"]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_siou_angle_cost_is_the_paper_form_and_weighs_the_distance():
  # Unit squares 3 apart at angles 0 ... 90 degrees around a unit square:
  # disjoint (IoU 0) and of equal size (Omega 0), so the loss is
  # 1 + Delta / 2 with Delta's weight 2 - Lambda: 2 on an axis, 1 on the
  # diagonal.
  angles = np.deg2rad([0.0, 15.0, 30.0, 45.0, 60.0, 90.0])
  centre = 3.0 * np.stack([np.cos(angles), np.sin(angles)], -1)
  pred = np.concatenate([centre - 0.5, centre + 0.5], -1)
  target = np.array([-0.5, -0.5, 0.5, 0.5])
  got = np.asarray(values(f32(pred), f32(target), names=("siou",))["siou"])
  np.testing.assert_allclose(got, ref_det.siou_loss(pred, target), rtol=1e-6)
  rho0 = 3.0**2 / 4.0**2  # dx^2 / c_w^2 at 0 degrees
  np.testing.assert_allclose(got[0], 1 + (1 - np.exp(-2 * rho0)) / 2, rtol=1e-6)
  d = 3.0 / np.sqrt(2.0)
  rho45 = d**2 / (d + 1) ** 2
  np.testing.assert_allclose(got[3], 1 + (1 - np.exp(-rho45)), rtol=1e-6)
  np.testing.assert_allclose(got[0], got[5], rtol=1e-6)  # x and y axes
  np.testing.assert_allclose(got[2], got[4], rtol=1e-6)  # 30 and 60 degrees


def test_siou_coincident_centres_have_finite_second_derivatives():
  pred = np.float32([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 4.0, 4.0]])
  target = np.float32([[1.0, 1.0, 3.0, 3.0], [1.0, 1.0, 3.0, 3.0]])
  # Near-coincident centres: x1 and x2 moved by 1e-6.
  near = pred + np.float32([1e-6, 0.0, 1e-6, 0.0])

  @jax.jit
  def derivatives(pred, near, target):
    """The gradient and Hessian at pred, and the gradient at near."""
    grad = jax.grad(lambda p: jnp.sum(jaxloss.box_siou_loss(p, target)))
    return grad(pred), jax.jacfwd(grad)(pred), grad(near)

  g, hessian, g_near = derivatives(pred, near, target)
  assert bool(np.all(np.isfinite(g))) and bool(np.all(np.isfinite(hessian)))
  # The angle cost's 1/sigma slope is damped by the distance cost's
  # sigma^2, so the gradient stays bounded.
  assert float(np.abs(g_near).max()) < 10


# 10. alpha-IoU: the power keyword --------------------------------------------------

ALPHA = {
  "iou": ref_det.alpha_iou_loss,
  "giou": ref_det.alpha_giou_loss,
  "diou": ref_det.alpha_diou_loss,
  "ciou": ref_det.alpha_ciou_loss,
}


@pytest.mark.parametrize("power", [0.5, 3.0])
@pytest.mark.parametrize("name", sorted(ALPHA))
def test_power_matches_reference(name, power):
  pred, target = random_boxes(30, 16), random_boxes(31, 16)
  # Enough overlapping pairs that every term is active somewhere.
  # Shifted diagonally (never nested: the GIoU penalty stays > 0, away from
  # the kink of a fractional power) and slightly resized, still valid.
  rng = np.random.default_rng(32)
  pred[:8] = (
    target[:8]
    + rng.uniform(0.03, 0.09, (8, 1))
    + rng.uniform(-0.01, 0.01, (8, 4))
  )
  want = ALPHA[name](pred, target, power)
  got = values(f32(pred), f32(target), names=ALPHA_NAMES, power=power)
  np.testing.assert_allclose(got[name], want, rtol=2e-5, atol=2e-6)
  if name == "ciou":
    alpha = ref.ciou_alpha(pred, target)
    scalar = lambda p: np.sum(
      ref_det.alpha_ciou_loss(p, target, power, alpha=alpha)
    )
  else:
    scalar = lambda p: np.sum(ALPHA[name](p, target, power))
  with jax.enable_x64(True):
    p, t = jnp.asarray(pred), jnp.asarray(target)
    got = values_and_grads(p, t, names=ALPHA_NAMES, power=power)
    value, (got, _) = got[name]
    np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-13)
  np.testing.assert_allclose(
    got, references.numerical_grad(scalar, pred), rtol=1e-6, atol=1e-7
  )


@pytest.mark.parametrize("name", sorted(ALPHA))
def test_power_one_is_the_plain_loss_and_a_traced_power_works(name):
  pred = jnp.asarray(random_boxes(33, 16), jnp.float32)
  target = jnp.asarray(random_boxes(34, 16), jnp.float32)
  np.testing.assert_array_equal(
    values(pred, target, names=ALPHA_NAMES, power=1)[name],
    values(pred, target, names=ALPHA_NAMES)[name],
  )
  traced = functools.partial(
    values_at_power, pred, target, 1e-7, names=ALPHA_NAMES
  )
  static = functools.partial(values, pred, target, names=ALPHA_NAMES)
  np.testing.assert_allclose(
    traced(power=jnp.float32(3.0))[name],
    static(power=3.0)[name],
    rtol=1e-5,
    atol=1e-7,
  )
  np.testing.assert_allclose(
    traced(power=jnp.float32(1.0))[name],
    static()[name],
    rtol=1e-5,
    atol=1e-7,
  )


def test_power_orders_the_losses_and_upweights_high_iou_gradients():
  # alpha > 1: the loss of a good box (IoU near 1) is a larger share, and
  # its gradient relative to a poor box's grows (He et al. 2021, Sec. 3.2).
  target = jnp.array([0.0, 0.0, 2.0, 2.0])
  good_poor = jnp.array(
    [
      [0.0, 0.0, 2.0, 1.8],  # IoU 0.9
      [0.0, 0.0, 2.0, 0.6],  # IoU 0.3
    ]
  )
  ratio = {}
  for power in (1.0, 3.0):
    got = values_and_grads(good_poor, target, names=("iou",), power=power)
    good, poor = np.abs(got["iou"][1][0]).max(-1)
    ratio[power] = good / poor
  assert ratio[3.0] > 5 * ratio[1.0]
  pred = jnp.asarray(random_boxes(35, 16), jnp.float32)
  tgt = jnp.asarray(random_boxes(36, 16), jnp.float32)
  iou = np.asarray(values(pred, tgt)["iou"])
  got = values(pred, tgt, names=ALPHA_NAMES, power=3.0)["iou"]
  np.testing.assert_allclose(
    got,
    1 - (1 - iou) ** 3,
    rtol=1e-5,
    atol=1e-6,
  )


@jax.jit
def hessian_vector_products(pred, target, direction):
  """``{name: Hessian of the sum of the loss at power 0.5, times direction}``
  (with respect to pred)."""
  out = {}
  for name in ALPHA_NAMES:
    scalar = lambda p, name=name: jnp.sum(LOSSES[name][0](p, target, power=0.5))
    out[name] = jax.jvp(jax.grad(scalar), (pred,), (direction,))[1]
  return out


@pytest.mark.parametrize("name", sorted(ALPHA))
def test_power_degenerate_and_second_order_are_finite(name, degenerate):
  pred, target = degenerate
  for power in (0.5, 3.0):
    got = values_and_grads(pred, target, names=ALPHA_NAMES, power=power)
    value, grads = got[name]
    assert bool(np.all(np.isfinite(value))), power
    assert all(bool(np.all(np.isfinite(g))) for g in grads), power
  hvp = hessian_vector_products(pred, target, jnp.ones_like(pred))[name]
  assert bool(np.all(np.isfinite(hvp)))


@pytest.mark.parametrize("name", sorted(ALPHA))
def test_power_bad_values(name):
  fn = LOSSES[name][0]
  fname = fn.__name__
  ok = jnp.zeros((3, 4))
  for bad in (0.0, -1.0, float("nan"), float("inf"), np.float32(-2.0)):
    with pytest.raises(
      ValueError,
      match=rf"{fname}: power must be "
      r"(finite|> 0)",
    ):
      fn(ok, ok, power=bad)
  for bad in ("3", True, None):
    with pytest.raises(
      TypeError,
      match=rf"{fname}: power must be a real "
      r"number",
    ):
      fn(ok, ok, power=bad)
  with pytest.raises(ValueError, match=rf"{fname}: power must be a scalar"):
    fn(ok, ok, power=jnp.ones(3))
  with pytest.raises(ValueError, match=rf"{fname}: power must be > 0"):
    jax.jit(lambda p: fn(p, p, power=-3.0))(ok)


# 11. Pairwise DIoU and CIoU (values, batching and symmetry: section 2) ------------


def test_pairwise_diou_ciou_hand_case():
  a = jnp.array([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
  b = jnp.array([[0.0, 0.0, 1.0, 2.0], [2.0, 0.0, 3.0, 1.0]])
  # [0,2]x[0,1] vs [0,1]x[0,2]: IoU 1/3, rho^2 = 1/2, c^2 = 8.
  # [0,2]x[0,1] vs [2,3]x[0,1]: IoU 0, rho^2 = 9/4, c^2 = 10.
  # unit square vs [0,1]x[0,2]: IoU 1/2, rho^2 = 1/4, c^2 = 5.
  # unit square vs [2,3]x[0,1]: IoU 0, rho^2 = 4, c^2 = 10.
  diou = np.array([[1 / 3 - 1 / 16, -0.225], [1 / 2 - 1 / 20, -0.4]])
  got = pairwise(a, b, 0.0)
  np.testing.assert_allclose(got["diou"], diou, rtol=1e-6)
  v = (
    4
    / np.pi**2
    * np.array(
      [
        [np.arctan(0.5) - np.arctan(2.0), np.arctan(1.0) - np.arctan(2.0)],
        [np.arctan(0.5) - np.arctan(1.0), 0.0],
      ]
    )
    ** 2
  )
  iou = np.array([[1 / 3, 0.0], [0.5, 0.0]])
  want = diou - v * v / (1 - iou + v)
  np.testing.assert_allclose(got["ciou"], want, rtol=1e-6)


@pytest.mark.parametrize("name", ["diou", "ciou"])
def test_pairwise_diou_ciou_gradients_match_reference(name):
  # CIoU holds its alpha constant.
  a, b = random_boxes(40, 5), random_boxes(41, 3)
  weights = np.random.default_rng(42).normal(size=(5, 3))
  if name == "ciou":
    alpha = ref.pairwise(lambda x, y: ref.ciou_alpha(x, y), a, b)

    def scalar(x):
      v = ref.pairwise(ref.ciou_v, x, b)
      return np.sum(
        weights * (ref.pairwise(ref_det.distance_box_iou, x, b) - alpha * v)
      )
  else:
    reference = PAIRWISE_REFERENCES[name]
    scalar = lambda x: np.sum(weights * ref.pairwise(reference, x, b))
  want = references.numerical_grad(scalar, a)
  with jax.enable_x64(True):
    got = pairwise_grads(*map(jnp.asarray, (a, b, weights)))[name]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
  assert np.abs(want).max() > 0


def test_pairwise_diou_ciou_equal_one_minus_the_losses():
  a = jnp.asarray(random_boxes(43, 5), jnp.float32)
  b = jnp.asarray(random_boxes(44, 3), jnp.float32)
  pairs = (
    jnp.broadcast_to(a[:, None], (5, 3, 4)),
    jnp.broadcast_to(b[None], (5, 3, 4)),
  )
  matrices, losses = pairwise(a, b, 0.0), values(*pairs, 0.0)
  for name in ("diou", "ciou"):
    np.testing.assert_allclose(
      matrices[name], 1 - losses[name], rtol=1e-5, atol=1e-6, err_msg=name
    )
  # Identical boxes give 1 on the diagonal.
  ciou = pairwise(a, a)["ciou"]
  np.testing.assert_allclose(np.diagonal(ciou), 1, rtol=1e-6)


def test_pairwise_diou_ciou_degenerate_and_bad_input():
  a = jnp.array(POINT_BOX_FLAT)
  _, _, (value, grads), hvp = pairwise_with_itself(a, jnp.ones_like(a))
  assert bool(np.isfinite(value)) and bool(np.all(np.isfinite(grads)))
  assert bool(np.all(np.isfinite(hvp)))
  ok = jnp.zeros((3, 4))
  for fn in (jaxloss.distance_box_iou, jaxloss.complete_box_iou):
    name = fn.__name__
    with pytest.raises(
      ValueError,
      match=rf"{name}: boxes1 must have shape "
      r"\[\.\.\., N, 4\]",
    ):
      fn(jnp.zeros(4), ok)
    with pytest.raises(ValueError, match=rf"{name}: boxes2 must have shape"):
      fn(ok, jnp.zeros((3, 5)))
    with pytest.raises(ValueError, match=rf"{name}: the batch axes"):
      fn(jnp.zeros((2, 3, 4)), jnp.zeros((3, 3, 4)))
    with pytest.raises(
      TypeError, match=rf"{name}: boxes1 must have a floating"
    ):
      fn(jnp.zeros((3, 4), jnp.int32), ok)
    with pytest.raises(ValueError, match=rf"{name}: eps must be >= 0"):
      fn(ok, ok, eps=-1.0)


def test_power_exports_and_forward_mode():
  """The API table runs every function at its defaults; here the powers."""
  pred = jnp.asarray(random_boxes(50, 4), jnp.float32)
  target = jnp.asarray(random_boxes(51, 4), jnp.float32)
  powers = {"ciou": 3.0, "giou": 0.5}
  losses = lambda p, t: {
    name: LOSSES[name][0](p, t, power=power) for name, power in powers.items()
  }
  program = jax.jit(losses)
  exported = jax.export.export(program)(pred, target)
  restored = jax.export.deserialize(exported.serialize())
  got, want = restored.call(pred, target), program(pred, target)

  @jax.jit
  def forward_and_reverse(p, d):
    out = {}
    for name in powers:
      scalar = lambda p, name=name: jnp.sum(jnp.sin(losses(p, target)[name]))
      out[name] = (
        jax.jvp(scalar, (p,), (d,))[1],
        jnp.sum(jax.grad(scalar)(p) * d),
      )
    return out

  derivatives = forward_and_reverse(pred, jnp.ones_like(pred))
  for name in powers:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-6)
    forward, reverse = derivatives[name]
    np.testing.assert_allclose(forward, reverse, rtol=1e-4, atol=1e-6)


def test_power_clamps_negative_terms_of_invalid_boxes_and_keeps_nan():
  # [2, 2, 0, 0] is inverted on both axes: area +4, IoU 0, and GIoU's
  # penalty (C - U) / C = (4 - 8) / 4 = -1, which a power counts as 0.
  pred = jnp.array([[2.0, 2.0, 0.0, 0.0], [0.0, 0.0, jnp.nan, 1.0]])
  target = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]])
  for power in (0.5, 3.0):
    got = values(pred, target, names=ALPHA_NAMES, power=power)["giou"]
    np.testing.assert_allclose(got[0], 1.0, rtol=1e-6)
    assert bool(np.isnan(got[1]))
  got = values(pred, target)["giou"]
  np.testing.assert_allclose(got[0], 0.0, atol=1e-6)  # power 1: signed


# 12. 3-D boxes -----------------------------------------------------------------

LOSSES_3D = ("iou", "giou", "diou")
CUBE = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
CUBE_X = [0.5, 0.0, 0.0, 1.5, 1.0, 1.0]  # shifted by 0.5 along x
BIG = [0.0, 0.0, 0.0, 2.0, 2.0, 2.0]
BIG_DIAGONAL = [1.0, 1.0, 1.0, 3.0, 3.0, 3.0]  # I = 1, U = 15, C = 27


def random_boxes_3d(seed, n, spread=3.0, low=0.2):
  """``n`` valid 3-D boxes ``(x1, y1, z1, x2, y2, z2)``, many disjoint."""
  rng = np.random.default_rng(seed)
  corner = rng.uniform(0, spread, (n, 3))
  size = rng.uniform(low, 2.0, (n, 3))
  return np.concatenate([corner, corner + size], axis=-1)


def lift(boxes_2d, z1=0.0, z2=1.0):
  """2-D boxes as 3-D boxes spanning ``[z1, z2]`` in z."""
  b = np.asarray(boxes_2d, np.float64)
  z = np.ones(b.shape[:-1] + (1,))
  return np.concatenate([b[..., :2], z1 * z, b[..., 2:], z2 * z], axis=-1)


@pytest.mark.parametrize(
  "name, pred, target, want",
  [
    # Unit cubes 0.5 apart along x: I = 0.5, U = 1.5 = C, rho^2 = 1/4,
    # c^2 = 1.5^2 + 1 + 1.
    ("iou", CUBE, CUBE_X, 1 - 0.5 / 1.5),
    ("giou", CUBE, CUBE_X, 1 - 0.5 / 1.5),
    ("diou", CUBE, CUBE_X, 1 - 0.5 / 1.5 + 0.25 / 4.25),
    # 2-cubes shifted by (1, 1, 1): rho^2 = 3, c^2 = 27.
    ("iou", BIG, BIG_DIAGONAL, 14 / 15),
    ("giou", BIG, BIG_DIAGONAL, 14 / 15 + 12 / 27),
    ("diou", BIG, BIG_DIAGONAL, 14 / 15 + 3 / 27),
    # Disjoint cubes: U = 2, C = 3, rho^2 = 4, c^2 = 11.
    ("giou", CUBE, [2.0, 0.0, 0.0, 3.0, 1.0, 1.0], 1 + 1 / 3),
    ("diou", CUBE, [2.0, 0.0, 0.0, 3.0, 1.0, 1.0], 1 + 4 / 11),
  ],
)
def test_3d_hand_cases(name, pred, target, want):
  got = values(jnp.array(pred), jnp.array(target), 0.0, names=NAMES_3D)[name]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_3d_pairwise_hand_case():
  a = jnp.array([CUBE, BIG])
  b = jnp.array([CUBE_X, BIG_DIAGONAL])
  # CUBE vs BIG_DIAGONAL: disjoint, U = 9, C = 27, rho^2 = 3 * 1.5^2,
  # c^2 = 27; BIG vs CUBE_X: CUBE_X inside BIG, I = 1, U = 8 = C,
  # centres (1, 1, 1) and (1, 0.5, 0.5): rho^2 = 0.5, c^2 = 12.
  iou = np.array([[0.5 / 1.5, 0.0], [1 / 8, 1 / 15]])
  giou = iou - np.array([[0.0, 18 / 27], [0.0, 12 / 27]])
  diou = iou - np.array([[0.25 / 4.25, 6.75 / 27], [0.5 / 12, 3 / 27]])
  got = pairwise(a, b, 0.0, names=PAIRWISE_3D)
  np.testing.assert_allclose(got["iou"], iou, rtol=1e-6)
  np.testing.assert_allclose(got["giou"], giou, rtol=1e-6)
  np.testing.assert_allclose(got["diou"], diou, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", LOSSES_3D)
def test_3d_values_and_gradients_match_reference(name):
  reference = LOSSES[name][1]
  pred, target = random_boxes_3d(60, 16), random_boxes_3d(61, 16)
  want = reference(pred, target)
  got = values(f32(pred), f32(target), names=NAMES_3D)[name]
  assert got.shape == (16,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
  assert 0 < np.sum(ref.intersection(pred, target) > 0) < 16
  with jax.enable_x64(True):
    p, t = jnp.asarray(pred), jnp.asarray(target)
    value, (got, _) = values_and_grads(p, t, names=NAMES_3D)[name]
    np.testing.assert_allclose(value, want, rtol=1e-12)
  scalar = lambda p: np.sum(reference(p, target))
  want = references.numerical_grad(scalar, pred)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  assert np.abs(want[:, 2::3]).max() > 0  # z moves the loss too


@pytest.mark.parametrize("name", PAIRWISE_3D)
def test_3d_pairwise_matches_reference(name):
  reference = PAIRWISE_REFERENCES[name]
  a, b = random_boxes_3d(62, 5), random_boxes_3d(63, 3)
  want = ref.pairwise(reference, a, b)
  got = pairwise(f32(a), f32(b), names=PAIRWISE_3D)[name]
  assert got.shape == (5, 3)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  batch = f32(np.stack([a] * 2))
  got = pairwise(batch, f32(b), names=PAIRWISE_3D)[name]
  np.testing.assert_allclose(got[1], want, rtol=1e-5, atol=1e-6)
  weights = np.random.default_rng(64).normal(size=(5, 3))
  scalar = lambda x: np.sum(weights * ref.pairwise(reference, x, b))
  with jax.enable_x64(True):
    arrays = map(jnp.asarray, (a, b, weights))
    got = pairwise_grads(*arrays, names=PAIRWISE_3D)[name]
  want = references.numerical_grad(scalar, a)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
  assert np.abs(want).max() > 0


def test_3d_matches_monai():
  """MONAI's box_iou, box_giou and BoxGIoULoss on 3-D boxes: the pairwise
  functions up to MONAI's eps (relative 2^-23 / U, here U >= 1); the losses
  with eps=2**-23 exactly (float64)."""
  a = random_boxes_3d(65, 5, low=1.0)
  b = random_boxes_3d(66, 3, low=1.0)
  got = pairwise(f32(a), f32(b), names=PAIRWISE_3D)
  np.testing.assert_allclose(
    got["iou"],
    ref.pairwise(ref.monai_box_iou, a, b),
    rtol=1e-6,
    atol=1e-7,
  )
  np.testing.assert_allclose(
    got["giou"],
    ref.pairwise(ref.monai_box_giou, a, b),
    rtol=1e-6,
    atol=1e-7,
  )
  # Tiny boxes (normalised coordinates): MONAI's eps matters; the losses
  # place it as MONAI does.
  pred, target = random_boxes_3d(67, 16) / 50, random_boxes_3d(68, 16) / 50
  eps = 2.0**-23
  with jax.enable_x64(True):
    p, t = jnp.asarray(pred), jnp.asarray(target)
    at_eps = values_and_grads(p, t, eps, names=NAMES_3D)
    at_zero = values_and_grads(p, t, 0.0, names=NAMES_3D)
    np.testing.assert_allclose(
      at_eps["giou"][0],
      ref.monai_giou_loss(pred, target),
      rtol=1e-12,
    )
    np.testing.assert_allclose(
      1 - at_eps["iou"][0],
      ref.monai_box_iou(pred, target),
      rtol=1e-12,
      atol=1e-15,
    )
    assert not np.allclose(
      1 - at_zero["iou"][0],
      ref.monai_box_iou(pred, target),
      rtol=1e-6,
    )


def test_3d_identities():
  boxes = random_boxes_3d(69, 16)
  b32 = jnp.asarray(boxes, jnp.float32)
  losses = functools.partial(values, names=NAMES_3D)
  matrices = functools.partial(pairwise, names=PAIRWISE_3D)
  got = losses(b32, b32, 0.0)
  for name in LOSSES_3D:  # identical boxes: loss 0 (GIoU = IoU = 1)
    np.testing.assert_allclose(got[name], 0, atol=1e-7)
  got = matrices(b32, b32)
  np.testing.assert_allclose(np.diagonal(got["iou"]), 1, rtol=1e-6)
  np.testing.assert_allclose(np.diagonal(got["giou"]), 1, rtol=1e-6)
  # 2-D boxes lifted to z in [0, 1]: the 2-D IoU and GIoU; DIoU's enclosing
  # diagonal gains the depth (c^2 + 1), its centre distance is the 2-D one.
  p2, t2 = random_boxes(70, 16), random_boxes(71, 16)
  p3, t3 = (jnp.asarray(lift(b), jnp.float32) for b in (p2, t2))
  p2, t2 = jnp.asarray(p2, jnp.float32), jnp.asarray(t2, jnp.float32)
  flat, lifted = values(p2, t2), losses(p3, t3)
  for name in ("iou", "giou"):
    np.testing.assert_allclose(lifted[name], flat[name], rtol=1e-6)
  flat, lifted = pairwise(p2, t2), matrices(p3, t3)
  np.testing.assert_allclose(lifted["iou"], flat["iou"], rtol=1e-6)
  np.testing.assert_allclose(lifted["giou"], flat["giou"], rtol=1e-6, atol=1e-7)
  cw, ch = ref.enclosing(p2, t2)
  want = 1 - ref.iou(p2, t2) + ref._rho2(p2, t2) / (cw**2 + ch**2 + 1)
  got = losses(p3, t3, 0.0)["diou"]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("power", [0.5, 3.0])
@pytest.mark.parametrize("name", LOSSES_3D)
def test_3d_power_matches_reference(name, power):
  pred, target = random_boxes_3d(72, 8), random_boxes_3d(73, 8)
  rng = np.random.default_rng(74)
  pred[:4] = target[:4] + rng.uniform(0.03, 0.09, (4, 1))  # overlapping
  want = ALPHA[name](pred, target, power)
  with jax.enable_x64(True):
    p, t = jnp.asarray(pred), jnp.asarray(target)
    got = values_and_grads(p, t, names=NAMES_3D, power=power)
    value, (got, _) = got[name]
    np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-13)
  scalar = lambda x: np.sum(ALPHA[name](x, target, power))
  np.testing.assert_allclose(
    got, references.numerical_grad(scalar, pred), rtol=1e-6, atol=1e-7
  )


DEGENERATE_3D = {
  "point vs cube": ([1.0, 1.0, 1.0, 1.0, 1.0, 1.0], BIG),
  "cube vs point": (BIG, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
  "same point": ([1.0] * 6, [1.0] * 6),
  "flat (no depth) vs cube": ([0.0, 0.0, 1.0, 2.0, 2.0, 1.0], BIG),
  "flat vs flat": (
    [0.0, 0.0, 1.0, 2.0, 2.0, 1.0],
    [0.0, 0.0, 1.0, 2.0, 2.0, 1.0],
  ),
  "segment vs cube": ([1.0, 1.0, 0.0, 1.0, 1.0, 2.0], BIG),
  "identical": ([0.0, 0.0, 0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 1.0, 2.0, 3.0]),
  "touching faces": (CUBE, [1.0, 0.0, 0.0, 2.0, 1.0, 1.0]),
  "apart in z only": (CUBE, [0.0, 0.0, 5.0, 1.0, 1.0, 6.0]),
  "far apart": (CUBE, [1e6, -1e6, 1e6, 1e6 + 2, -1e6 + 1, 1e6 + 1]),
  "inverted depth": ([0.0, 0.0, 2.0, 2.0, 2.0, 0.0], BIG),
}


@pytest.mark.parametrize("eps", [1e-7, 0.0])
@pytest.mark.parametrize("name", LOSSES_3D)
def test_3d_degenerate_boxes_are_finite(name, eps):
  pred = jnp.array([p for p, _ in DEGENERATE_3D.values()])
  target = jnp.array([t for _, t in DEGENERATE_3D.values()])
  fn = functools.partial(values_and_grads, pred, target, names=NAMES_3D)
  checks = [fn(eps)[name]]
  if eps:
    for power in (0.5, 3.0):
      checks.append(fn(power=power)[name])
  for v, grads in checks:
    bad = [k for k, ok in zip(DEGENERATE_3D, np.isfinite(v)) if not ok]
    assert not bad, bad
    for g in grads:
      bad = [
        k for k, ok in zip(DEGENERATE_3D, np.isfinite(g).all(-1)) if not ok
      ]
      assert not bad, bad
  cases = list(DEGENERATE_3D)
  v = np.asarray(checks[0][0])
  for k in ("point vs cube", "same point", "flat vs flat", "touching faces"):
    assert v[cases.index(k)] >= 1 - 1e-6, k  # zero volume: IoU 0
  if name == "iou":
    np.testing.assert_allclose(v[cases.index("identical")], 0, atol=1e-6)


def test_3d_pairwise_degenerate_nan_and_bf16():
  a = jnp.array([[1.0] * 6, BIG, [0.0, 0.0, 1.0, 2.0, 2.0, 1.0]])
  both = lambda x: jnp.sum(
    sum(_pairwise(x, x, 0.0, names=PAIRWISE_3D).values())
  )
  value, grads = jax.jit(jax.value_and_grad(both))(a)
  assert bool(np.isfinite(value)) and bool(np.all(np.isfinite(grads)))
  pred = jnp.array([CUBE, [0.0, 0.0, 0.0, 1.0, jnp.nan, 1.0]])
  got = values(pred, jnp.array([CUBE_X, CUBE_X]), names=NAMES_3D)
  for name in LOSSES_3D:
    v = got[name]
    assert bool(np.isfinite(v[0])) and bool(np.isnan(v[1])), name
  pred = jnp.asarray(random_boxes_3d(75, 8), jnp.bfloat16)
  target = jnp.asarray(random_boxes_3d(76, 8), jnp.bfloat16)
  fn = functools.partial(values_and_grads, names=("diou",))
  got, (g, _) = fn(pred, target)["diou"]
  assert got.dtype == jnp.float32
  want = values(f32(pred), f32(target), names=("diou",))["diou"]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert g.dtype == jnp.bfloat16 and bool(np.all(np.isfinite(g)))


# Two losses and two pairwise functions (box_iou_loss and generalized_box_iou
# share their 3-D geometry with these).
THREE_D = {
  "box_giou_loss": (jaxloss.box_giou_loss, (4,), (1,), {"power": 3.0}),
  "box_diou_loss": (jaxloss.box_diou_loss, (4,), (4,), {}),
  "box_iou": (jaxloss.box_iou, (3,), (4,), {}),
  "distance_box_iou": (jaxloss.distance_box_iou, (3,), (4,), {"eps": 1e-6}),
}


@pytest.mark.parametrize("name", sorted(THREE_D))
def test_3d_transformations(name):
  """The API table's checks on 3-D boxes: plain, jit and vmap agree; grad,
  jvp, linearize and jacfwd give one derivative; the Hessian-vector product
  matches central differences of the gradient (float64); jax.export round
  trips."""
  fn, shape1, shape2, kwargs = THREE_D[name]
  a = random_boxes_3d(77, 2 * shape1[0], spread=1.0)
  a = a.reshape((2,) + shape1 + (6,)).astype(np.float32)
  b = random_boxes_3d(78, 2 * shape2[0], spread=1.0)
  b = b.reshape((2,) + shape2 + (6,)).astype(np.float32)
  call = lambda x, y: fn(x, y, **kwargs)
  f = lambda x, y: jnp.sum(jnp.sin(call(x, y)))
  t = np.random.default_rng(79).normal(size=a.shape[1:]).astype(np.float32)

  @jax.jit
  def everything(a, b, t):
    x, y = a[0], b[0]
    g = lambda x: f(x, y)
    _, linear = jax.linearize(g, x)
    return (
      jax.vmap(call)(a, b),
      call(x, y),
      call(a[1], b[1]),
      jax.grad(g)(x),
      jax.jvp(g, (x,), (t,))[1],
      linear(t),
      jax.jacfwd(g)(x),
    )

  out = jax.device_get(everything(a, b, t))
  vmapped, first, second, grad, tangent, linear, jac = out
  plain = call(jnp.asarray(a[0]), jnp.asarray(b[0]))
  np.testing.assert_allclose(plain, first, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(
    vmapped, np.stack([first, second]), rtol=1e-6, atol=1e-7
  )
  assert bool(np.all(np.isfinite(grad))) and float(np.abs(grad).max()) > 0
  inner = np.vdot(grad, t)
  np.testing.assert_allclose(tangent, inner, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(linear, inner, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(jac, grad, rtol=1e-4, atol=1e-6)
  with jax.enable_x64(True):
    x, y, d = (v.astype(np.float64) for v in (a[0], b[0], t))
    h = 1e-5

    @jax.jit
    def hvp_and_differences(x, y, d):
      grad = jax.grad(lambda x: f(x, y))
      hvp = jax.jvp(grad, (x,), (d,))[1]
      ahead, behind = jax.vmap(grad)(jnp.stack([x + h * d, x - h * d]))
      return hvp, (ahead - behind) / (2 * h)

    hvp, fd = jax.device_get(hvp_and_differences(x, y, d))
    scale = float(np.max(np.abs(fd))) + 1e-12
    np.testing.assert_allclose(hvp / scale, fd / scale, atol=1e-5)
  # jax.export of the value and the gradient round trips.
  program = lambda x, y: (call(x, y), jax.grad(f)(x, y))
  exported = jax.export.export(jax.jit(program))(a[0], b[0])
  value, gradient = jax.export.deserialize(exported.serialize()).call(
    a[0], b[0]
  )
  np.testing.assert_allclose(value, first, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(gradient, grad, rtol=1e-5, atol=1e-7)


TWO_D_ONLY = (
  jaxloss.box_ciou_loss,
  jaxloss.box_eiou_loss,
  jaxloss.box_siou_loss,
  jaxloss.bounded_iou_loss,
  jaxloss.complete_box_iou,
  jaxloss.rotated_box_probiou_loss,
  jaxloss.rotated_box_kld_loss,
  jaxloss.rotated_box_gwd_loss,
)


@pytest.mark.parametrize("fn", TWO_D_ONLY, ids=lambda fn: fn.__name__)
def test_2d_only_functions_refuse_3d_boxes(fn):
  name = fn.__name__
  cubes = jnp.zeros((3, 6))
  first = "boxes1" if name == "complete_box_iou" else "pred"
  with pytest.raises(
    ValueError, match=rf"^{name}: {first} must have shape .*2-D only"
  ):
    fn(cubes, cubes)
  with pytest.raises(ValueError, match=rf"^{name}: .*2-D only"):
    jax.jit(fn)(cubes, cubes)


@pytest.mark.parametrize(
  "fn",
  [
    jaxloss.box_iou_loss,
    jaxloss.box_giou_loss,
    jaxloss.box_diou_loss,
    jaxloss.box_iou,
    jaxloss.generalized_box_iou,
    jaxloss.distance_box_iou,
  ],
  ids=lambda fn: fn.__name__,
)
def test_3d_bad_input(fn):
  name = fn.__name__
  first, second = ("pred", "target") if "loss" in name else ("boxes1", "boxes2")
  cubes, squares = jnp.zeros((3, 6)), jnp.zeros((3, 4))
  with pytest.raises(
    ValueError,
    match=rf"^{name}: {second}.shape\[-1\] 4 must equal {first}.shape\[-1\] 6",
  ):
    fn(cubes, squares)
  with pytest.raises(
    ValueError,
    match=rf"^{name}: {second}.shape\[-1\] 6 must equal {first}.shape\[-1\] 4",
  ):
    jax.jit(fn)(squares, cubes)
  with pytest.raises(
    ValueError, match=rf"^{name}: {first} must have shape .*4\] or .*6\]"
  ):
    fn(jnp.zeros((3, 5)), jnp.zeros((3, 5)))
  with pytest.raises(
    TypeError, match=rf"^{name}: {second} must have a floating"
  ):
    fn(cubes, jnp.zeros((3, 6), jnp.int32))


def test_box_convert_3d():
  table = {
    "xyxy": [1.0, 2.0, 3.0, 4.0, 8.0, 9.0],
    "xywh": [1.0, 2.0, 3.0, 3.0, 6.0, 6.0],
    "cxcywh": [2.5, 5.0, 6.0, 3.0, 6.0, 6.0],
  }
  for source, target in itertools.product(FORMATS, FORMATS):
    got = jaxloss.box_convert(
      jnp.array([table[source]]), in_format=source, out_format=target
    )
    np.testing.assert_allclose(got, [table[target]], err_msg=(source, target))
  boxes = jnp.asarray(
    np.random.default_rng(80).uniform(-5, 5, (2, 3, 6)), jnp.float32
  )
  there = jaxloss.box_convert(boxes, in_format="xyxy", out_format="cxcywh")
  back = jaxloss.box_convert(there, in_format="cxcywh", out_format="xywh")
  back = jaxloss.box_convert(back, in_format="xywh", out_format="xyxy")
  assert back.shape == boxes.shape
  np.testing.assert_allclose(back, boxes, rtol=1e-5, atol=1e-5)
  with pytest.raises(
    ValueError,
    match=r"box_convert: boxes must have shape \[\.\.\., 4\] or \[\.\.\., 6\]",
  ):
    jaxloss.box_convert(jnp.zeros((3, 5)), in_format="xyxy", out_format="xywh")


# 13. Bounded IoU -------------------------------------------------------------------


@jax.jit
def BOUNDED(pred, target, beta=0.2, eps=1e-3):  # beta, eps when passed: traced
  return jaxloss.bounded_iou_loss(pred, target, beta=beta, eps=eps)


@jax.jit
def BOUNDED_GRAD(pred, target, eps=1e-3):
  """Gradients with respect to pred and target, and those with the target
  held constant (mmdetection's no_grad)."""
  total = lambda p, t: jnp.sum(jaxloss.bounded_iou_loss(p, t, eps=eps))
  held = lambda p, t: total(p, jax.lax.stop_gradient(t))
  return (
    jax.grad(total, argnums=(0, 1))(pred, target),
    jax.grad(held, argnums=(0, 1))(pred, target),
  )


@pytest.mark.parametrize(
  "pred, target, want",
  [
    # Shifted by 0.5 in x: c_x = 1 - (2 - 1) / (2 + 1) = 2/3 > beta.
    ([0.5, 0.0, 2.5, 2.0], A, 2 / 3 - 0.1),
    # Half as wide: c_x = 2/3 and c_w = 1/2.
    ([0.0, 0.0, 1.0, 2.0], A, (2 / 3 - 0.1) + (1 / 2 - 0.1)),
    # 0.2 taller: 2 |dy| = 0.2, c_y = 1 - 1.8/2.2 = 2/11 and
    # c_h = 1 - 2/2.2 = 1/11, both below beta.
    ([0.0, 0.0, 2.0, 2.2], A, ((2 / 11) ** 2 + (1 / 11) ** 2) / 0.4),
    # Disjoint in x (2 |dx| = 6 >= w_t): c_x = 1.
    ([3.0, 0.0, 5.0, 2.0], A, 1 - 0.1),
    (A, A, 0.0),
  ],
)
def test_bounded_iou_hand_cases(pred, target, want):
  got = BOUNDED(jnp.array(pred), jnp.array(target), eps=0.0)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_bounded_iou_identical_boxes_and_eps():
  # With eps, each term is eps / (w + eps), squared over 2 beta.
  c = np.array([1e-3 / 2.001, 1e-3 / 4.001])
  with jax.enable_x64(True):
    box = jnp.array([1.0, 2.0, 3.0, 6.0])  # w = 2, h = 4
    for beta in (0.2, 0.5):
      np.testing.assert_allclose(
        BOUNDED(box, box, beta, 1e-3), np.sum(c**2) / beta, rtol=1e-9
      )


def test_bounded_iou_matches_reference():
  pred, target = random_boxes(81, 16), random_boxes(82, 16)
  pred[:8] = target[:8] + np.random.default_rng(83).uniform(-0.3, 0.3, (8, 4))
  want = ref.bounded_iou_loss(pred, target)
  got = BOUNDED(
    jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32)
  )
  assert got.shape == (16,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
  costs = ref.bounded_iou_costs(pred, target)
  assert (costs < 0.2).any() and (costs > 0.2).any()  # both smooth-L1 parts
  with jax.enable_x64(True):
    p, t = jnp.asarray(pred), jnp.asarray(target)
    np.testing.assert_allclose(BOUNDED(p, t), want, rtol=1e-12, atol=1e-14)
    (d_pred, d_target), (held_pred, held_target) = BOUNDED_GRAD(p, t)
    # mmdetection's target held constant: the same gradient for pred.
    np.testing.assert_array_equal(held_pred, d_pred)
    assert float(np.abs(held_target).max()) == 0
  np.testing.assert_allclose(
    d_pred,
    references.numerical_grad(
      lambda x: np.sum(ref.bounded_iou_loss(x, target)), pred
    ),
    rtol=1e-6,
    atol=1e-8,
  )
  # The true derivative with respect to the target.
  np.testing.assert_allclose(
    d_target,
    references.numerical_grad(
      lambda x: np.sum(ref.bounded_iou_loss(pred, x)), target
    ),
    rtol=1e-6,
    atol=1e-8,
  )
  assert np.abs(d_target).max() > 0


def test_bounded_iou_edges(degenerate):
  pred, target = degenerate
  for eps in (1e-3, 0.0):
    value = BOUNDED(pred, target, eps=eps)
    grads = BOUNDED_GRAD(pred, target, eps=eps)[0]
    bad = [k for k, ok in zip(DEGENERATE, np.isfinite(value)) if not ok]
    assert not bad, (eps, bad)
    for g in grads:
      bad = [k for k, ok in zip(DEGENERATE, np.isfinite(g).all(-1)) if not ok]
      assert not bad, (eps, bad)
  # NaN in, NaN out; broadcasting (one target for every box).
  pred, target = np.asarray(pred), np.asarray(target)
  with_nan = pred.copy()
  with_nan[1, 2] = np.nan
  nan = BOUNDED(with_nan, target[0])
  assert np.isnan(nan[1]) and np.all(np.isfinite(nan[2:]))
  np.testing.assert_allclose(
    nan[2:],
    BOUNDED(pred, np.broadcast_to(target[0], pred.shape))[2:],
    rtol=1e-6,
  )
  # bf16 in: computed in float32.
  p16, t16 = pred.astype(jnp.bfloat16), target.astype(jnp.bfloat16)
  low = BOUNDED(p16, t16)
  assert low.dtype == jnp.float32
  np.testing.assert_allclose(
    low, BOUNDED(p16.astype(np.float32), t16.astype(np.float32)), rtol=1e-6
  )
  empty = jnp.zeros((0, 4))
  assert jaxloss.bounded_iou_loss(empty, empty).shape == (0,)


def test_bounded_iou_bad_input():
  fn, ok = jaxloss.bounded_iou_loss, jnp.zeros((3, 4))
  with pytest.raises(
    ValueError, match=r"^bounded_iou_loss: pred must have shape"
  ):
    fn(jnp.zeros((3, 5)), ok)
  with pytest.raises(ValueError, match=r"^bounded_iou_loss: .*must broadcast"):
    fn(ok, jnp.zeros((2, 4)))
  with pytest.raises(
    TypeError, match=r"^bounded_iou_loss: target must have a floating"
  ):
    fn(ok, jnp.zeros((3, 4), jnp.int32))
  for bad in (0.0, -1.0, float("nan")):
    with pytest.raises(ValueError, match=r"^bounded_iou_loss: beta must be"):
      fn(ok, ok, beta=bad)
  with pytest.raises(ValueError, match=r"^bounded_iou_loss: eps must be >= 0"):
    jax.jit(lambda p: fn(p, p, eps=-1.0))(ok)
  with pytest.raises(
    TypeError, match=r"^bounded_iou_loss: beta must be a real"
  ):
    fn(ok, ok, beta="0.2")


# 14. Balanced L1 --------------------------------------------------------------------


@jax.jit
def BALANCED(pred, target, alpha=0.5, gamma=1.5, beta=1.0, where=None):
  return jaxloss.balanced_l1_loss(
    pred, target, alpha=alpha, gamma=gamma, beta=beta, where=where
  )


@jax.jit
def BALANCED_GRAD(pred, target, beta=1.0, where=None):
  total = lambda p, t: jnp.sum(
    jnp.sin(jaxloss.balanced_l1_loss(p, t, beta=beta, where=where))
  )
  return jax.value_and_grad(total, argnums=(0, 1))(pred, target)


B = np.expm1(3.0)  # alpha = 0.5, gamma = 1.5: b = e^3 - 1


def test_balanced_l1_hand_cases():
  pred = jnp.array([0.0, 1.0, -2.0, 0.5])
  got = BALANCED(pred, jnp.zeros(4))
  want = [
    0.0,
    1.5 + 1.5 / B - 0.5,  # x = beta: both parts agree
    3.0 + 1.5 / B - 0.5,
    0.5 / B * (0.5 * B + 1) * np.log(0.5 * B + 1) - 0.25,
  ]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert got.shape == (4,) and got.dtype == jnp.float32


@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0])
def test_balanced_l1_matches_reference(beta):
  rng = np.random.default_rng(86)
  pred = rng.uniform(-3, 3, (4, 8))
  target = rng.uniform(-1, 1, (4, 8))
  want = ref.balanced_l1(pred, target, beta=beta)
  got = BALANCED(
    jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32), beta=beta
  )
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Continuous at x = beta, for every beta.
  edge = BALANCED(
    jnp.array([beta * (1 - 1e-6), beta * (1 + 1e-6)]), jnp.zeros(2), beta=beta
  )
  np.testing.assert_allclose(edge[0], edge[1], rtol=1e-5)
  with jax.enable_x64(True):
    p, t = jnp.asarray(pred), jnp.asarray(target)
    np.testing.assert_allclose(BALANCED(p, t, beta=beta), want, rtol=1e-12)
    _, (d_pred, d_target) = BALANCED_GRAD(p, t, beta)
    np.testing.assert_allclose(d_target, -d_pred, rtol=1e-12)
  scalar = lambda x: np.sum(np.sin(ref.balanced_l1(x, target, beta=beta)))
  np.testing.assert_allclose(
    d_pred, references.numerical_grad(scalar, pred), rtol=1e-6, atol=1e-8
  )


def test_balanced_l1_gradient_is_the_paper_eq_7():
  x = np.linspace(-3, 3, 25) + 0.01  # away from the kink at 0 and from 1
  with jax.enable_x64(True):
    got = jax.jit(
      jax.vmap(jax.grad(lambda p: jaxloss.balanced_l1_loss(p, jnp.zeros(()))))
    )(jnp.asarray(np.append(x, 0.0)))
    got, at_zero = np.asarray(got[:-1]), float(got[-1])
  np.testing.assert_allclose(got, ref.balanced_l1_gradient(x, 0.0), rtol=1e-12)
  # The inliers' gradient exceeds the smooth L1's (x itself, beta = 1).
  inlier = (np.abs(x) < 1) & (np.abs(x) > 0.05)
  assert np.all(np.abs(got[inlier]) > np.abs(x[inlier]))
  # Smooth at p = t (beta = 1): zero up to the rounding of (1 / b) * b.
  assert abs(at_zero) < 1e-15


def test_balanced_l1_mask_and_edges():
  pred = jnp.array([[0.5, jnp.inf, 1e4], [-1e4, jnp.nan, 0.3]])
  target = jnp.zeros((2, 3))
  where = jnp.array([True, False, True])  # broadcasts over the rows
  value, (grad, _) = BALANCED_GRAD(pred, target, where=where)
  assert bool(np.isfinite(value)) and bool(np.all(np.isfinite(grad)))
  np.testing.assert_array_equal(grad[:, 1], 0)
  # Huge errors: slope gamma (times cos of the loss in BALANCED_GRAD).
  loss = BALANCED(pred, target, where=where)
  np.testing.assert_allclose(grad[0, 2], 1.5 * np.cos(loss[0, 2]), rtol=1e-5)
  np.testing.assert_array_equal(loss[:, 1], 0)
  full = BALANCED(pred, target)
  np.testing.assert_array_equal(loss[:, 0::2], full[:, 0::2])  # masked = sliced
  assert bool(np.isnan(full[1, 1])) and bool(np.isinf(full[0, 1]))
  # All masked: 0 with zero, finite gradients.
  none = jnp.zeros((2, 3), bool)
  value, (grad, _) = BALANCED_GRAD(pred, target, where=none)
  assert float(value) == 0 and float(np.abs(grad).max()) == 0
  # bf16 in, float32 out and close; traced options; empty.
  low = BALANCED(pred[:, ::2].astype(jnp.bfloat16), target[:, ::2])
  assert low.dtype == jnp.float32
  np.testing.assert_allclose(
    low,
    BALANCED(
      pred[:, ::2].astype(jnp.bfloat16).astype(jnp.float32), target[:, ::2]
    ),
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    BALANCED(pred[:, ::2], target[:, ::2], 0.4, 1.2, 0.7),
    ref.balanced_l1(pred[:, ::2], target[:, ::2], 0.4, 1.2, 0.7),
    rtol=1e-5,
  )
  empty = jnp.zeros((0, 4))
  assert jaxloss.balanced_l1_loss(empty, empty).shape == (0, 4)


def test_balanced_l1_bad_input():
  fn, ok = jaxloss.balanced_l1_loss, jnp.zeros((3, 4))
  with pytest.raises(
    ValueError, match=r"^balanced_l1_loss: target.shape \(4,\) must equal"
  ):
    fn(ok, jnp.zeros(4))  # no broadcasting
  with pytest.raises(TypeError, match=r"^balanced_l1_loss: pred must have a"):
    fn(jnp.zeros((3, 4), jnp.int32), ok)
  with pytest.raises(TypeError, match=r"^balanced_l1_loss: target must have a"):
    jax.jit(fn)(ok, jnp.zeros((3, 4), jnp.int32))
  for name in ("alpha", "gamma", "beta"):
    for bad in (0.0, -1.0, float("inf")):
      with pytest.raises(
        ValueError, match=rf"^balanced_l1_loss: {name} must be"
      ):
        jax.jit(lambda p, name=name, bad=bad: fn(p, p, **{name: bad}))(ok)
  with pytest.raises(
    TypeError, match=r"^balanced_l1_loss: where must be a boolean"
  ):
    fn(ok, ok, where=jnp.ones((3, 4)))
  with pytest.raises(ValueError, match=r"^balanced_l1_loss: where.shape"):
    fn(ok, ok, where=jnp.ones((2, 4), bool))
