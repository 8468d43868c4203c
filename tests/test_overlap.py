"""Dice, IoU, Tversky and generalized Dice: hand cases, references, edges."""

import functools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxloss
from tests import references as ref

C = 3


def _softmax(logits):
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _batch(shape=(2, 3, 4), num_classes=C, seed=0):
  """float32 softmax probabilities and int32 class ids, drawn with NumPy."""
  rng = np.random.default_rng(seed)
  probs = _softmax(2 * rng.standard_normal(shape + (num_classes,)))
  ids = rng.integers(0, num_classes, shape).astype(np.int32)
  return probs, ids


def _bernoulli(p, shape, seed=7):
  return np.random.default_rng(seed).random(shape) < p


LOSSES = {
  "dice": (jaxloss.dice_loss, ref.dice, {}),
  "iou": (jaxloss.iou_loss, ref.iou, {}),
  "log_dice": (jaxloss.dice_loss, ref.dice, {"log_loss": True}),
  "log_iou": (jaxloss.iou_loss, ref.iou, {"log_loss": True}),
  "tversky": (jaxloss.tversky_loss, ref.tversky, {"alpha": 0.3, "beta": 0.7}),
  "focal_tversky": (
    jaxloss.tversky_loss,
    ref.tversky,
    {"alpha": 0.7, "beta": 0.3, "gamma": 0.75},
  ),
  "generalized_dice": (jaxloss.generalized_dice_loss, ref.generalized_dice, {}),
  "generalized_dice_simple": (
    jaxloss.generalized_dice_loss,
    ref.generalized_dice,
    {"weighting": "simple"},
  ),
}

DICE_FAMILY = (
  jaxloss.dice_loss,
  jaxloss.iou_loss,
  jaxloss.tversky_loss,
  jaxloss.generalized_dice_loss,
)

# 1. Hand-computed cases: a 2x2 binary mask with I = 1, P = 2, T = 2.

PROBS_2X2 = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)[..., None]
MASK_2X2 = np.array([[1.0, 1.0], [0.0, 0.0]], np.float32)[..., None]


HAND_CASES = [
  (jaxloss.dice_loss, {}, 1 - 2 / 4),
  (jaxloss.dice_loss, {"smooth": 1.0}, 1 - 3 / 5),
  (jaxloss.iou_loss, {}, 1 - 1 / 3),
  (jaxloss.dice_loss, {"log_loss": True}, -np.log(2 / 4)),
  (jaxloss.iou_loss, {"log_loss": True, "smooth": 1.0}, -np.log(2 / 4)),
  (jaxloss.tversky_loss, {"alpha": 1.0, "beta": 0.0}, 1 - 1 / 2),
  (jaxloss.tversky_loss, {"gamma": 2.0}, (1 - 2 / 4) ** 2),
  (jaxloss.generalized_dice_loss, {}, 1 - 2 / 4),  # one class: weights cancel
]


def test_hand_cases():
  got = jax.jit(
    lambda p, t: [
      fn(p, t, **{"smooth": 0.0, **kwargs}) for fn, kwargs, _ in HAND_CASES
    ]
  )(PROBS_2X2, MASK_2X2)
  for (fn, kwargs, want), value in zip(HAND_CASES, got):
    np.testing.assert_allclose(
      value, want, rtol=1e-6, err_msg=f"{fn.__name__} {kwargs}"
    )


def test_hand_case_two_classes_with_ids():
  # Pixels labelled (0, 1, 1, 1), predicted (0, 1, 0, 1) with hard probs.
  labels = np.array([0, 1, 1, 1], np.int32)
  weights = np.array([1.0, 3.0], np.float32)
  plain, weighted = jax.jit(
    lambda predicted, y, weights: [
      jaxloss.dice_loss(jax.nn.one_hot(predicted, 2), y, smooth=0.0, **kw)
      for kw in ({}, {"class_weights": weights})
    ]
  )(np.array([0, 1, 0, 1], np.int32), labels, weights)
  # Class 0: I=1, P=2, T=1 -> 2/3. Class 1: I=2, P=2, T=3 -> 4/5.
  np.testing.assert_allclose(plain, 1 - (2 / 3 + 4 / 5) / 2, rtol=1e-6)
  # Weighted: class 1 counts three times as much.
  np.testing.assert_allclose(weighted, 1 - (2 / 3 + 3 * 4 / 5) / 4, rtol=1e-6)


# 2. Float64 references, values and gradients.


@pytest.mark.parametrize(
  "variant",
  [
    {},
    {"axis": (1, 2)},
    {"classes": "present", "where": True, "smooth": 0.0},
    {"classes": (0, 2), "class_weights": (1.0, 2.0, 0.5), "squared": True},
    {"soft": True, "axis": 1, "smooth": 0.5},
    {"soft": True, "soft_labels": False, "where": "element"},
    {"where": "element", "axis": (1, 2), "classes": "present"},
  ],
)
def test_matches_reference(variant):
  """Every loss of ``LOSSES`` in the variant, in one program."""
  variant = dict(variant)
  probs, ids = _batch(seed=1)
  ids[0][ids[0] == 1] = 0  # class 1 absent in image 0
  if variant.pop("soft", False):
    labels = _softmax(3 * np.random.default_rng(7).standard_normal(probs.shape))
    targets = labels
  else:
    labels, targets = ids, ref.one_hot(ids, C)
  where = variant.pop("where", False)
  if where:
    shape = probs.shape if where == "element" else ids.shape
    where = _bernoulli(0.7, shape)
  else:
    where = None
  if "classes" in variant and not isinstance(variant["classes"], str):
    variant["classes"] = np.array(variant["classes"])
  if "class_weights" in variant:
    variant["class_weights"] = np.array(variant["class_weights"], np.float32)
  axis = variant.pop("axis", None)
  axes = (
    (0, 1, 2) if axis is None else ((axis,) if isinstance(axis, int) else axis)
  )

  @jax.jit
  def values_and_grads(p, y, where):
    masked = {} if where is None else {"where": where}
    out = {}
    for name, (fn, _, options) in LOSSES.items():
      loss = lambda p: fn(p, y, axis=axis, **options, **variant, **masked)
      out[name] = loss(p), jax.grad(lambda p: loss(p).sum())(p)
    return out

  out = jax.device_get(values_and_grads(probs, labels, where))
  for name, (_, reference, options) in LOSSES.items():
    np_kwargs = {**options, **variant}
    if where is not None:
      np_kwargs["where"] = where
    value, grad = out[name]
    want = reference(probs, targets, axes, **np_kwargs)
    np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6, err_msg=name)
    want_grad = ref.numerical_grad(
      lambda p: reference(p, targets, axes, **np_kwargs).sum(), probs
    )
    np.testing.assert_allclose(
      grad, want_grad, rtol=1e-3, atol=1e-5, err_msg=name
    )


@pytest.mark.parametrize(
  "variant",
  [
    {},
    {"axis": (1, 2), "smooth": 0.0},
    {"classes": "present", "where": "pixel"},
    {"classes": (0, 2), "class_weights": (1.0, 2.0, 0.5), "where": "element"},
  ],
)
def test_mcc_matches_reference(variant):
  variant = dict(variant)
  probs, ids = _batch(seed=5)
  where = variant.pop("where", None)
  if where:
    shape = probs.shape if where == "element" else ids.shape
    where = _bernoulli(0.7, shape)
  if not isinstance(variant.get("classes", "all"), str):
    variant["classes"] = np.array(variant["classes"])
  if "class_weights" in variant:
    variant["class_weights"] = np.array(variant["class_weights"], np.float32)
  axis = variant.pop("axis", None)
  axes = (0, 1, 2) if axis is None else axis
  targets = ref.one_hot(ids, C)
  want = lambda p: ref.mcc(p, targets, axes, where=where, **variant)

  @jax.jit
  def run(p, ids, where):
    loss = lambda p: jaxloss.mcc_loss(p, ids, axis=axis, where=where, **variant)
    return loss(p), jax.grad(lambda p: loss(p).sum())(p)

  value, grad = jax.device_get(run(probs, ids, where))
  np.testing.assert_allclose(value, want(probs), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    grad,
    ref.numerical_grad(lambda p: want(p).sum(), probs),
    rtol=1e-3,
    atol=1e-5,
  )


@jax.jit
def _mcc_hand_cases(mask, empty, nothing, probs, ids):
  mcc = functools.partial(jaxloss.mcc_loss, smooth=0.0)
  return {
    "perfect": mcc(mask, mask),
    "inverted": mcc(1 - mask, mask),
    "absent": jax.value_and_grad(lambda p: mcc(p, empty))(mask),
    "masked": jax.value_and_grad(lambda p: mcc(p, mask, where=nothing))(
      mask * jnp.nan
    ),
    "ids": jaxloss.mcc_loss(probs, ids),
    "one_hot": jaxloss.mcc_loss(probs, jax.nn.one_hot(ids, C)),
    "present": jaxloss.mcc_loss(probs, ids, classes="present"),
    "classes": jaxloss.mcc_loss(probs, ids, classes=CLASSES_01),
  }


CLASSES_01 = np.array([0, 1])  # concrete: checked at trace time


def test_mcc_hand_cases():
  mask = np.array([1.0, 1.0, 0.0, 0.0, 0.0], np.float32)[:, None]
  empty = np.zeros_like(mask)
  nothing = np.zeros(mask.shape[:-1], bool)
  probs, ids = _batch((6,), seed=6)
  ids[ids == 2] = 0
  out = jax.device_get(_mcc_hand_cases(mask, empty, nothing, probs, ids))
  np.testing.assert_allclose(out["perfect"], 0.0, atol=1e-7)
  np.testing.assert_allclose(out["inverted"], 2.0, rtol=1e-6)
  # An absent class has correlation 0 (loss 1), with zero gradient.
  value, grad = out["absent"]
  np.testing.assert_allclose(value, 1.0)
  assert not np.any(grad)
  # Every pixel masked: loss 0, zero gradient, even with NaN underneath.
  value, grad = out["masked"]
  assert value == 0 and not np.any(grad)
  # Two classes as ids equal the one-hot targets; "present" drops class 2.
  np.testing.assert_allclose(out["ids"], out["one_hot"], rtol=1e-6)
  np.testing.assert_allclose(out["present"], out["classes"], rtol=1e-6)


# Soft labels (Wang et al. 2023): 0 and minimal at p = t, equal on hard labels.

SOFT_LOSSES = {
  "dice": jax.jit(jaxloss.dice_loss, static_argnames="soft_labels"),
  "iou": jax.jit(jaxloss.iou_loss, static_argnames="soft_labels"),
  "tversky": jax.jit(
    functools.partial(jaxloss.tversky_loss, alpha=0.3, beta=0.7),
    static_argnames="soft_labels",
  ),
  "generalized_dice": jax.jit(
    jaxloss.generalized_dice_loss, static_argnames="soft_labels"
  ),
}


def test_soft_labels_hand_case():
  # One pixel, target 0.5: the product form is 0.5 at p = t but 1/3 at p = 1.
  t = np.array([[0.5]], np.float32)
  dice = functools.partial(jaxloss.dice_loss, smooth=0.0)
  out = jax.jit(
    lambda t, one, low: (
      dice(t, t, soft_labels=False),
      dice(one, t, soft_labels=False),
      dice(t, t),
      dice(one, t),
      dice(low, t),
    )
  )(t, np.ones_like(t), np.array([[0.2]], np.float32))
  product_at_t, product_at_one, at_t, at_one, at_low = out
  np.testing.assert_allclose(product_at_t, 0.5)
  np.testing.assert_allclose(product_at_one, 1 / 3, rtol=1e-6)
  np.testing.assert_allclose(at_t, 0.0)
  np.testing.assert_allclose(at_one, 1 / 3, rtol=1e-6)
  # |p - t| / (P + T): p = 0.2 gives 0.3 / 0.7.
  np.testing.assert_allclose(at_low, 3 / 7, rtol=1e-6)


@jax.jit
def _soft_labels_checks(targets, other, hard, smooth):
  """For each loss: the soft form at the target and elsewhere, and value and
  gradient of the soft and product forms on hard targets."""
  out = {}
  for name, fn in SOFT_LOSSES.items():
    soft = functools.partial(fn, smooth=smooth, soft_labels=True)
    prod = functools.partial(fn, smooth=smooth, soft_labels=False)
    out[name] = (
      soft(targets, targets),
      soft(other, targets),
      jax.value_and_grad(soft)(other, hard),
      jax.value_and_grad(prod)(other, hard),
    )
  return out


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
  seed=st.integers(0, 2**31 - 1), smooth=st.sampled_from([0.0, 1e-3, 1.0])
)
def test_soft_labels_zero_and_minimal_at_target(seed, smooth):
  rng = np.random.default_rng(seed)
  targets = rng.random((2, 5, 3)).astype(np.float32)
  other = rng.random((2, 5, 3)).astype(np.float32)
  hard = (rng.random((2, 5, 3)) < 0.5).astype(np.float32)
  out = jax.device_get(_soft_labels_checks(targets, other, hard, smooth))
  for name, (at_target, elsewhere, soft, prod) in out.items():
    np.testing.assert_allclose(at_target, 0.0, atol=1e-6, err_msg=name)
    assert elsewhere >= at_target
    # Hard targets: value and gradient equal the product form.
    (soft, grad_soft), (prod, grad_prod) = soft, prod
    np.testing.assert_allclose(soft, prod, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(
      grad_soft, grad_prod, rtol=1e-5, atol=1e-7, err_msg=name
    )


def test_soft_labels_gradient_at_exact_hard_predictions():
  # A tie p == t in {0, 1} takes the product's derivative t.
  hard = np.array([[1.0], [0.0], [1.0]], np.float32)
  out = jax.jit(
    lambda hard: {
      name: [
        jax.grad(fn)(hard, hard, smooth=1.0, soft_labels=soft)
        for soft in (True, False)
      ]
      for name, fn in SOFT_LOSSES.items()
    }
  )(hard)
  for name, (soft, prod) in out.items():
    np.testing.assert_allclose(soft, prod, rtol=1e-6, err_msg=name)


@functools.partial(jax.jit, static_argnums=0)
def _per_element_mask(fn, probs, ids, where):
  """Class 1 under the per-element mask and alone on its own pixels; a
  per-element mask that repeats the pixel mask, and the pixel mask."""
  targets = jax.nn.one_hot(ids, C)
  pixel = where[..., 0]
  return (
    fn(probs, ids, where=where, axis=(1, 2), classes=np.array([1])),
    fn(probs[..., 1:2], targets[..., 1:2], where=where[..., 1], axis=(1, 2)),
    fn(probs, ids, where=jnp.broadcast_to(pixel[..., None], probs.shape)),
    fn(probs, ids, where=pixel),
  )


@pytest.mark.parametrize(
  "fn", [jaxloss.dice_loss, jaxloss.tversky_loss, jaxloss.mcc_loss]
)
def test_per_element_mask_is_each_class_on_its_own_pixels(fn):
  probs, ids = _batch(seed=8)
  where = _bernoulli(0.6, probs.shape)
  got, want, repeated, pixel = _per_element_mask(fn, probs, ids, where)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # A per-element mask that repeats the pixel mask is the pixel mask.
  np.testing.assert_allclose(repeated, pixel, rtol=1e-6)


# 3. Identities.


@pytest.mark.parametrize("fn", (jaxloss.dice_loss, jaxloss.iou_loss))
def test_log_loss_gradient_is_the_loss_gradient_over_the_score(fn):
  """d(-log s) = d(1 - s) / s per class (one class here), and no overlap at
  smooth=0 gives -log(1e-7), finite with zero gradient."""
  probs = np.random.default_rng(7).random((2, 3, 4, 1)).astype(np.float32)

  @jax.jit
  def both(probs, empty):
    ids = (probs > 0.3).astype(jnp.float32)  # targets [..., 1]
    f = lambda p, log: fn(p, ids, smooth=0.0, log_loss=log)
    return (
      1 - f(probs, False),
      jax.grad(f)(probs, True),
      jax.grad(f)(probs, False),
      jax.value_and_grad(f)(empty, True),
    )

  score, grad, plain_grad, (value, empty_grad) = jax.device_get(
    both(probs, np.zeros_like(probs))
  )
  np.testing.assert_allclose(grad, plain_grad / score, rtol=1e-5)
  np.testing.assert_allclose(value, -np.log(1e-7), rtol=1e-6)
  assert np.all(empty_grad == 0)


def test_tversky_half_half_is_dice_and_one_one_is_iou():
  probs, ids = _batch(seed=2)
  t = functools.partial(jaxloss.tversky_loss, smooth=0.0)
  half, dice, one, iou = jax.jit(
    lambda p, y: (
      t(p, y, alpha=0.5, beta=0.5),
      jaxloss.dice_loss(p, y, smooth=0.0),
      t(p, y, alpha=1.0, beta=1.0),
      jaxloss.iou_loss(p, y, smooth=0.0),
    )
  )(probs, ids)
  np.testing.assert_allclose(half, dice, rtol=1e-6)
  np.testing.assert_allclose(one, iou, rtol=1e-6)


def test_iou_is_dice_over_two_minus_dice_on_hard_labels():
  probs, ids = _batch(seed=3)

  @jax.jit
  def per_class(probs, ids):
    hard = jax.nn.one_hot(jnp.argmax(probs, -1), C)
    return [
      (
        1 - jaxloss.dice_loss(hard, ids, smooth=0.0, classes=np.array([c])),
        1 - jaxloss.iou_loss(hard, ids, smooth=0.0, classes=np.array([c])),
      )
      for c in range(C)
    ]

  for d, j in jax.device_get(per_class(probs, ids)):
    np.testing.assert_allclose(j, d / (2 - d), rtol=1e-6)


def test_generalized_dice_uniform_one_class_is_dice():
  probs = np.random.default_rng(7).random((2, 5, 1)).astype(np.float32)
  mask = _bernoulli(0.4, (2, 5, 1)).astype(np.float32)
  uniform, dice = jax.jit(
    lambda p, t: (
      jaxloss.generalized_dice_loss(p, t, weighting="uniform"),
      jaxloss.dice_loss(p, t),
    )
  )(probs, mask)
  np.testing.assert_allclose(uniform, dice, rtol=1e-6)


@functools.partial(jax.jit, static_argnums=0)
def _masked_sliced_vmap(fn, bad, probs, ids, where, valid_probs, valid_ids):
  """The masked loss of NaN-filled probabilities and its gradient, the loss
  of the valid pixels alone; per image, and under ``vmap``."""
  loss = lambda p: fn(p, ids, where=where, classes="present")
  return (
    loss(bad),
    fn(valid_probs, valid_ids, classes="present"),
    jax.grad(loss)(bad),
    fn(probs, ids, where=where, axis=(1, 2)),
    jax.vmap(lambda p, y, w: fn(p, y, where=w))(probs, ids, where),
  )


@pytest.mark.parametrize("fn", DICE_FAMILY)
def test_masked_equals_sliced_and_axis_equals_vmap(fn):
  probs, ids = _batch(seed=4)
  ids[0, 0] = 255  # an ignore label
  where = ids != 255
  bad = probs.copy()
  bad[0, 0] = np.nan  # ignored pixels may hold anything
  got, want, grad, per_image, mapped = jax.device_get(
    _masked_sliced_vmap(fn, bad, probs, ids, where, probs[where], ids[where])
  )
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert np.all(grad[0, 0] == 0) and np.all(np.isfinite(grad))
  np.testing.assert_allclose(per_image, mapped, rtol=1e-6)
  assert per_image.shape == (2,)


# 5. Edge cases.


@functools.partial(jax.jit, static_argnums=0)
def _empty_cases(fn, probs, ids, none, zeros):
  """Value and gradient with every pixel masked (three ways), then of an
  empty prediction of an empty target (smooth 0 and 1)."""
  masked = [
    jax.value_and_grad(lambda p: fn(p, ids, where=none, **kwargs))(probs)
    for kwargs in ({}, {"smooth": 0.0}, {"classes": "present"})
  ]
  empty = [
    jax.value_and_grad(lambda p: fn(p, zeros, smooth=smooth))(zeros)
    for smooth in (0.0, 1.0)
  ]
  return masked, empty


@pytest.mark.parametrize("fn", DICE_FAMILY)
def test_empty_cases_give_zero_with_finite_gradients(fn):
  probs, ids = _batch(seed=5)
  none = np.zeros(ids.shape, bool)
  masked, empty = jax.device_get(
    _empty_cases(fn, probs, ids, none, np.zeros((4, 1), np.float32))
  )
  for value, grad in masked:
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, 0)
  # Empty target, empty prediction: perfect, not NaN.
  for value, grad in empty:
    assert float(value) == 0.0 and np.all(np.isfinite(grad))


def test_absent_class_and_present_selection():
  # Class 2 absent from target and prediction: loss 0 for it with smooth=0.
  labels = np.array([0, 1, 1, 0], np.int32)

  @jax.jit
  def cases(labels):
    probs = jnp.pad(jax.nn.one_hot(labels, 2), ((0, 0), (0, 1)))
    fp = probs.at[:, 2].set(0.5)
    return (
      jaxloss.dice_loss(probs, labels, smooth=0.0, classes=np.array([2])),
      jax.grad(lambda p: jaxloss.dice_loss(p, labels, smooth=0.0))(probs),
      jaxloss.dice_loss(fp, labels, classes="present"),
      jaxloss.dice_loss(fp, labels, classes=np.array([0, 1])),
    )

  per_class, grad, present, selected = jax.device_get(cases(labels))
  assert float(per_class) == 0.0
  assert np.all(np.isfinite(grad))
  # "present" skips class 2 even when it is predicted.
  np.testing.assert_allclose(present, selected, rtol=1e-6)


def test_single_pixel_single_class_and_nan():
  # Class 1: I = 0.75, P = 0.75, T = 1. Class 0: I = 0, P = 0.25, T = 0.
  one = np.array([[0.25, 0.75]], np.float32)
  nan = one.copy()
  nan[0, 0] = np.nan
  two_classes, one_class, nan = jax.jit(
    lambda one, y, nan: (
      jaxloss.dice_loss(one, y, smooth=0.0),
      jaxloss.iou_loss(jnp.ones((5, 1)), jnp.zeros(5, jnp.int32)),
      jaxloss.dice_loss(nan, y),
    )
  )(one, np.array([1], np.int32), nan)
  np.testing.assert_allclose(
    two_classes, 1 - (1.5 / 1.75 + 0 / 0.25) / 2, rtol=1e-6
  )
  np.testing.assert_allclose(one_class, 0.0)
  assert np.isnan(nan)


# 6. Reduced precision.


def test_fp16_volume_does_not_overflow():
  # 8 x 512 x 512 pixels: every sum is far above fp16's 65504.
  labels = np.zeros((8, 512, 512), np.int32)
  labels[:, :256] = 1
  probs = np.eye(2, dtype=np.float16)[labels] * 0.75 + 0.125
  assert probs.dtype == np.float16
  got = jax.jit(jaxloss.dice_loss)(probs, labels)
  assert got.dtype == jnp.float32
  # Per class I = 0.875 N/2, P = N/2, T = N/2: Dice = 0.875 exactly.
  np.testing.assert_allclose(got, 0.125, rtol=1e-5)


def test_bf16_close_to_float32():
  probs, ids = _batch(seed=6)
  out = jax.jit(
    lambda low, p, y: [(fn(low, y), fn(p, y)) for fn in DICE_FAMILY]
  )(probs.astype(jnp.bfloat16), probs, ids)
  for fn, (got, want) in zip(DICE_FAMILY, out):
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(
      got, want, rtol=2e-2, atol=2e-3, err_msg=fn.__name__
    )


# Bad input.


def _trace(fn, *args, **kwargs):
  """``fn(*args, **kwargs)`` evaluated abstractly: the checks run while
  tracing, on the same concrete arguments, and nothing is computed."""
  return jax.eval_shape(lambda: fn(*args, **kwargs))


def test_errors_name_function_and_argument():
  probs, ids = _batch()
  with pytest.raises(
    ValueError,
    match=r"dice_loss: labels.shape \(2, 3, 5\) "
    r"must equal probs.shape\[:-1\] or probs.shape; got "
    r"probs.shape \(2, 3, 4, 3\)",
  ):
    _trace(jaxloss.dice_loss, probs, np.zeros((2, 3, 5), np.int32))
  with pytest.raises(TypeError, match=r"iou_loss: probs must have a floating"):
    _trace(jaxloss.iou_loss, ids[..., None], ids)
  with pytest.raises(ValueError, match=r"tversky_loss: axis 4 is out of range"):
    _trace(jaxloss.tversky_loss, probs, ids, axis=4)
  with pytest.raises(
    ValueError, match=r"dice_loss: axis -1 includes the class"
  ):
    _trace(jaxloss.dice_loss, probs, ids, axis=-1)
  with pytest.raises(
    ValueError, match=r"dice_loss: class_weights.shape \(2,\)"
  ):
    _trace(jaxloss.dice_loss, probs, ids, class_weights=np.ones(2, np.float32))
  with pytest.raises(ValueError, match=r"iou_loss: classes \[0, 3\] must lie"):
    _trace(jaxloss.iou_loss, probs, ids, classes=np.array([0, 3]))
  with pytest.raises(ValueError, match=r'dice_loss: classes must be "all"'):
    _trace(jaxloss.dice_loss, probs, ids, classes="some")
  with pytest.raises(
    ValueError,
    match=r"dice_loss: where.shape \(2, 3\) must "
    r"equal probs.shape\[:-1\] \(2, 3, 4\) \(one flag a "
    r"pixel\) or probs.shape \(2, 3, 4, 3\)",
  ):
    _trace(jaxloss.dice_loss, probs, ids, where=np.ones((2, 3), bool))
  with pytest.raises(TypeError, match=r"mcc_loss: where must be a boolean"):
    _trace(jaxloss.mcc_loss, probs, ids, where=np.ones(probs.shape, np.float32))
  with pytest.raises(
    TypeError, match=r"iou_loss: soft_labels must be True or False"
  ):
    _trace(jaxloss.iou_loss, probs, ids, soft_labels="yes")
  with pytest.raises(ValueError, match=r"mcc_loss: smooth must be"):
    _trace(jaxloss.mcc_loss, probs, ids, smooth=-1.0)
  with pytest.raises(ValueError, match=r"generalized_dice_loss: weighting"):
    _trace(jaxloss.generalized_dice_loss, probs, ids, weighting="cube")
  with pytest.raises(TypeError, match=r"dice_loss: labels of shape"):
    _trace(jaxloss.dice_loss, probs, ids.astype(np.float32))


def test_checkify_reports_out_of_range_labels_at_valid_pixels_only():
  with jaxloss.value_checks():
    probs, ids = _batch()
    checked = jax.jit(checkify.checkify(jaxloss.dice_loss))
    out_of_range, bad = ids.copy(), ids.copy()
    out_of_range[0, 0, 0], bad[0, 0, 0] = 3, 255
    err, _ = checked(probs, out_of_range)
    with pytest.raises(
      checkify.JaxRuntimeError, match=r"dice_loss: labels must lie in \[0, 3\)"
    ):
      err.throw()
    err, _ = jax.jit(
      checkify.checkify(lambda p, y: jaxloss.dice_loss(p, y, where=y != 255))
    )(probs, bad)
    err.throw()  # Ignored pixels are not checked.
    err, _ = checked(probs * 2, ids)
    assert "probs must lie in [0, 1]" in err.get()
