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

KEY = jax.random.PRNGKey(7)
C = 3


def _batch(shape=(2, 3, 4), num_classes=C, seed=0):
  k1, k2 = jax.random.split(jax.random.fold_in(KEY, seed))
  probs = jax.nn.softmax(2 * jax.random.normal(k1, shape + (num_classes,)))
  ids = jax.random.randint(k2, shape, 0, num_classes)
  return probs, ids


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

PROBS_2X2 = jnp.array([[1.0, 0.0], [1.0, 0.0]])[..., None]
MASK_2X2 = jnp.array([[1.0, 1.0], [0.0, 0.0]])[..., None]


@pytest.mark.parametrize(
  "fn, kwargs, want",
  [
    (jaxloss.dice_loss, {}, 1 - 2 / 4),
    (jaxloss.dice_loss, {"smooth": 1.0}, 1 - 3 / 5),
    (jaxloss.iou_loss, {}, 1 - 1 / 3),
    (jaxloss.dice_loss, {"log_loss": True}, -np.log(2 / 4)),
    (jaxloss.iou_loss, {"log_loss": True, "smooth": 1.0}, -np.log(2 / 4)),
    (jaxloss.tversky_loss, {"alpha": 1.0, "beta": 0.0}, 1 - 1 / 2),
    (jaxloss.tversky_loss, {"gamma": 2.0}, (1 - 2 / 4) ** 2),
    (jaxloss.generalized_dice_loss, {}, 1 - 2 / 4),  # one class: weights cancel
  ],
)
def test_hand_cases(fn, kwargs, want):
  kwargs = {"smooth": 0.0, **kwargs}
  np.testing.assert_allclose(fn(PROBS_2X2, MASK_2X2, **kwargs), want, rtol=1e-6)


def test_hand_case_two_classes_with_ids():
  # Pixels labelled (0, 1, 1, 1), predicted (0, 1, 0, 1) with hard probs.
  labels = jnp.array([0, 1, 1, 1])
  probs = jax.nn.one_hot(jnp.array([0, 1, 0, 1]), 2)
  # Class 0: I=1, P=2, T=1 -> 2/3. Class 1: I=2, P=2, T=3 -> 4/5.
  want = 1 - (2 / 3 + 4 / 5) / 2
  np.testing.assert_allclose(
    jaxloss.dice_loss(probs, labels, smooth=0.0), want, rtol=1e-6
  )
  # Weighted: class 1 counts three times as much.
  want = 1 - (2 / 3 + 3 * 4 / 5) / 4
  np.testing.assert_allclose(
    jaxloss.dice_loss(
      probs, labels, smooth=0.0, class_weights=jnp.array([1.0, 3.0])
    ),
    want,
    rtol=1e-6,
  )


# 2. Float64 references, values and gradients.


@pytest.mark.parametrize("name", sorted(LOSSES))
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
def test_matches_reference(name, variant):
  fn, reference, options = LOSSES[name]
  variant = dict(variant)
  probs, ids = _batch(seed=1)
  ids = ids.at[0].set(
    jnp.where(ids[0] == 1, 0, ids[0])
  )  # class 1 absent in image 0
  if variant.pop("soft", False):
    labels = jax.nn.softmax(3 * jax.random.normal(KEY, probs.shape))
    targets = np.asarray(labels)
  else:
    labels, targets = ids, ref.one_hot(ids, C)
  where = variant.pop("where", False)
  if where:
    shape = probs.shape if where == "element" else ids.shape
    variant["where"] = jax.random.bernoulli(KEY, 0.7, shape)
  if "classes" in variant and not isinstance(variant["classes"], str):
    variant["classes"] = jnp.array(variant["classes"])
  if "class_weights" in variant:
    variant["class_weights"] = jnp.array(variant["class_weights"])
  axis = variant.pop("axis", None)
  axes = (
    (0, 1, 2) if axis is None else ((axis,) if isinstance(axis, int) else axis)
  )
  kwargs = {**options, **variant}
  np_kwargs = {
    k: (np.asarray(v) if isinstance(v, jax.Array) else v)
    for k, v in kwargs.items()
  }

  loss = lambda p, y: fn(p, y, axis=axis, **kwargs)
  value, grad = jax.jit(
    lambda p, y: (loss(p, y), jax.grad(lambda p: loss(p, y).sum())(p))
  )(probs, labels)
  want = reference(probs, targets, axes, **np_kwargs)
  np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6)
  want_grad = ref.numerical_grad(
    lambda p: reference(p, targets, axes, **np_kwargs).sum(), probs
  )
  np.testing.assert_allclose(grad, want_grad, rtol=1e-3, atol=1e-5)


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
    variant["where"] = jax.random.bernoulli(KEY, 0.7, shape)
  for key in ("classes", "class_weights"):
    if not isinstance(variant.get(key, "all"), str):
      variant[key] = jnp.array(variant[key])
  axis = variant.pop("axis", None)
  axes = (0, 1, 2) if axis is None else axis
  np_kwargs = {
    k: np.asarray(v) if isinstance(v, jax.Array) else v
    for k, v in variant.items()
  }
  targets = ref.one_hot(ids, C)
  loss = lambda p: jaxloss.mcc_loss(p, ids, axis=axis, **variant)
  want = lambda p: ref.mcc(p, targets, axes, **np_kwargs)
  value, grad = jax.jit(
    lambda p: (loss(p), jax.grad(lambda p: loss(p).sum())(p))
  )(probs)
  np.testing.assert_allclose(value, want(probs), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    grad,
    ref.numerical_grad(lambda p: want(p).sum(), probs),
    rtol=1e-3,
    atol=1e-5,
  )


def test_mcc_hand_cases():
  mask = jnp.array([1.0, 1.0, 0.0, 0.0, 0.0])[:, None]
  mcc = functools.partial(jaxloss.mcc_loss, smooth=0.0)
  np.testing.assert_allclose(mcc(mask, mask), 0.0, atol=1e-7)  # perfect
  np.testing.assert_allclose(mcc(1 - mask, mask), 2.0, rtol=1e-6)  # inverted
  # An absent class has correlation 0 (loss 1), with zero gradient.
  empty = jnp.zeros_like(mask)
  np.testing.assert_allclose(mcc(mask, empty), 1.0)
  assert not np.any(jax.grad(lambda p: mcc(p, empty))(mask))
  # Every pixel masked: loss 0, zero gradient, even with NaN underneath.
  nothing = jnp.zeros(mask.shape[:-1], bool)
  value, grad = jax.value_and_grad(lambda p: mcc(p, mask, where=nothing))(
    mask * jnp.nan
  )
  assert value == 0 and not np.any(grad)
  # Two classes as ids equal the one-hot targets; "present" drops class 2.
  probs, ids = _batch((6,), seed=6)
  ids = ids.at[:].set(jnp.where(ids == 2, 0, ids))
  np.testing.assert_allclose(
    jaxloss.mcc_loss(probs, ids),
    jaxloss.mcc_loss(probs, jax.nn.one_hot(ids, C)),
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    jaxloss.mcc_loss(probs, ids, classes="present"),
    jaxloss.mcc_loss(probs, ids, classes=jnp.array([0, 1])),
    rtol=1e-6,
  )


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
  t = jnp.array([[0.5]])
  dice = functools.partial(jaxloss.dice_loss, smooth=0.0)
  np.testing.assert_allclose(dice(t, t, soft_labels=False), 0.5)
  np.testing.assert_allclose(
    dice(jnp.ones_like(t), t, soft_labels=False), 1 / 3, rtol=1e-6
  )
  np.testing.assert_allclose(dice(t, t), 0.0)
  np.testing.assert_allclose(dice(jnp.ones_like(t), t), 1 / 3, rtol=1e-6)
  # |p - t| / (P + T): p = 0.2 gives 0.3 / 0.7.
  np.testing.assert_allclose(dice(jnp.array([[0.2]]), t), 3 / 7, rtol=1e-6)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
  seed=st.integers(0, 2**31 - 1), smooth=st.sampled_from([0.0, 1e-3, 1.0])
)
def test_soft_labels_zero_and_minimal_at_target(seed, smooth):
  rng = np.random.default_rng(seed)
  targets = jnp.asarray(rng.random((2, 5, 3)), jnp.float32)
  other = jnp.asarray(rng.random((2, 5, 3)), jnp.float32)
  hard = jnp.asarray(rng.random((2, 5, 3)) < 0.5, jnp.float32)
  for name, fn in SOFT_LOSSES.items():
    at_target = fn(targets, targets, smooth=smooth, soft_labels=True)
    np.testing.assert_allclose(at_target, 0.0, atol=1e-6, err_msg=name)
    assert fn(other, targets, smooth=smooth, soft_labels=True) >= at_target
    # Hard targets: value and gradient equal the product form.
    soft, grad_soft = jax.value_and_grad(fn)(
      other, hard, smooth=smooth, soft_labels=True
    )
    prod, grad_prod = jax.value_and_grad(fn)(
      other, hard, smooth=smooth, soft_labels=False
    )
    np.testing.assert_allclose(soft, prod, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(
      grad_soft, grad_prod, rtol=1e-5, atol=1e-7, err_msg=name
    )


def test_soft_labels_gradient_at_exact_hard_predictions():
  # A tie p == t in {0, 1} takes the product's derivative t.
  hard = jnp.array([[1.0], [0.0], [1.0]])
  for name, fn in SOFT_LOSSES.items():
    np.testing.assert_allclose(
      jax.grad(fn)(hard, hard, smooth=1.0, soft_labels=True),
      jax.grad(fn)(hard, hard, smooth=1.0, soft_labels=False),
      rtol=1e-6,
      err_msg=name,
    )


@pytest.mark.parametrize(
  "fn", [jaxloss.dice_loss, jaxloss.tversky_loss, jaxloss.mcc_loss]
)
def test_per_element_mask_is_each_class_on_its_own_pixels(fn):
  probs, ids = _batch(seed=8)
  where = jax.random.bernoulli(KEY, 0.6, probs.shape)
  targets = jax.nn.one_hot(ids, C)
  got = fn(probs, ids, where=where, axis=(1, 2), classes=jnp.array([1]))
  want = fn(
    probs[..., 1:2], targets[..., 1:2], where=where[..., 1], axis=(1, 2)
  )
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # A per-element mask that repeats the pixel mask is the pixel mask.
  pixel = where[..., 0]
  np.testing.assert_allclose(
    fn(probs, ids, where=jnp.broadcast_to(pixel[..., None], probs.shape)),
    fn(probs, ids, where=pixel),
    rtol=1e-6,
  )


# 3. Identities.


@pytest.mark.parametrize("fn", (jaxloss.dice_loss, jaxloss.iou_loss))
def test_log_loss_gradient_is_the_loss_gradient_over_the_score(fn):
  """d(-log s) = d(1 - s) / s per class (one class here), and no overlap at
  smooth=0 gives -log(1e-7), finite with zero gradient."""
  probs = jax.random.uniform(KEY, (2, 3, 4, 1))
  ids = (probs > 0.3).astype(jnp.float32)  # targets [..., 1]
  f = lambda p, log: fn(p, ids, smooth=0.0, log_loss=log)
  score = 1 - f(probs, False)
  grad = jax.grad(f)(probs, True)
  np.testing.assert_allclose(grad, jax.grad(f)(probs, False) / score, rtol=1e-5)
  empty = jnp.zeros_like(probs)
  value, grad = jax.value_and_grad(f)(empty, True)
  np.testing.assert_allclose(value, -np.log(1e-7), rtol=1e-6)
  assert np.all(grad == 0)


def test_tversky_half_half_is_dice_and_one_one_is_iou():
  probs, ids = _batch(seed=2)
  dice = jaxloss.dice_loss(probs, ids, smooth=0.0)
  np.testing.assert_allclose(
    jaxloss.tversky_loss(probs, ids, alpha=0.5, beta=0.5, smooth=0.0),
    dice,
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    jaxloss.tversky_loss(probs, ids, alpha=1.0, beta=1.0, smooth=0.0),
    jaxloss.iou_loss(probs, ids, smooth=0.0),
    rtol=1e-6,
  )


def test_iou_is_dice_over_two_minus_dice_on_hard_labels():
  probs, ids = _batch(seed=3)
  hard = jax.nn.one_hot(jnp.argmax(probs, -1), C)
  for c in range(C):
    d = 1 - jaxloss.dice_loss(hard, ids, smooth=0.0, classes=jnp.array([c]))
    j = 1 - jaxloss.iou_loss(hard, ids, smooth=0.0, classes=jnp.array([c]))
    np.testing.assert_allclose(j, d / (2 - d), rtol=1e-6)


def test_generalized_dice_uniform_one_class_is_dice():
  probs = jax.random.uniform(KEY, (2, 5, 1))
  mask = jax.random.bernoulli(KEY, 0.4, (2, 5, 1)).astype(jnp.float32)
  np.testing.assert_allclose(
    jaxloss.generalized_dice_loss(probs, mask, weighting="uniform"),
    jaxloss.dice_loss(probs, mask),
    rtol=1e-6,
  )


@pytest.mark.parametrize("fn", DICE_FAMILY)
def test_masked_equals_sliced_and_axis_equals_vmap(fn):
  probs, ids = _batch(seed=4)
  ids = ids.at[0, 0].set(255)  # an ignore label
  where = ids != 255
  bad = probs.at[0, 0].set(jnp.nan)  # ignored pixels may hold anything
  valid = np.asarray(where)
  got = fn(bad, ids, where=where, classes="present")
  want = fn(probs[valid], ids[valid], classes="present")
  np.testing.assert_allclose(got, want, rtol=1e-6)
  grad = jax.grad(lambda p: fn(p, ids, where=where, classes="present"))(bad)
  assert bool(jnp.all(grad[0, 0] == 0)) and bool(jnp.all(jnp.isfinite(grad)))

  per_image = fn(probs, ids, where=where, axis=(1, 2))
  np.testing.assert_allclose(
    per_image,
    jax.vmap(lambda p, y, w: fn(p, y, where=w))(probs, ids, where),
    rtol=1e-6,
  )
  assert per_image.shape == (2,)


# 5. Edge cases.


@pytest.mark.parametrize("fn", DICE_FAMILY)
def test_empty_cases_give_zero_with_finite_gradients(fn):
  probs, ids = _batch(seed=5)
  none = jnp.zeros(ids.shape, bool)
  for kwargs in (
    {"where": none},
    {"where": none, "smooth": 0.0},
    {"where": none, "classes": "present"},
  ):
    value, grad = jax.value_and_grad(lambda p: fn(p, ids, **kwargs))(probs)
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, 0)
  # Empty target, empty prediction: perfect, not NaN.
  zeros = jnp.zeros((4, 1))
  for smooth in (0.0, 1.0):
    value, grad = jax.value_and_grad(lambda p: fn(p, zeros, smooth=smooth))(
      zeros
    )
    assert float(value) == 0.0 and bool(jnp.all(jnp.isfinite(grad)))


def test_absent_class_and_present_selection():
  # Class 2 absent from target and prediction: loss 0 for it with smooth=0.
  labels = jnp.array([0, 1, 1, 0])
  probs = jnp.pad(jax.nn.one_hot(labels, 2), ((0, 0), (0, 1)))
  per_class = jaxloss.dice_loss(
    probs, labels, smooth=0.0, classes=jnp.array([2])
  )
  assert float(per_class) == 0.0
  grad = jax.grad(lambda p: jaxloss.dice_loss(p, labels, smooth=0.0))(probs)
  assert bool(jnp.all(jnp.isfinite(grad)))
  # "present" skips class 2 even when it is predicted.
  fp = probs.at[:, 2].set(0.5)
  np.testing.assert_allclose(
    jaxloss.dice_loss(fp, labels, classes="present"),
    jaxloss.dice_loss(fp, labels, classes=jnp.array([0, 1])),
    rtol=1e-6,
  )


def test_single_pixel_single_class_and_nan():
  # Class 1: I = 0.75, P = 0.75, T = 1. Class 0: I = 0, P = 0.25, T = 0.
  one = jnp.array([[0.25, 0.75]])
  np.testing.assert_allclose(
    jaxloss.dice_loss(one, jnp.array([1]), smooth=0.0),
    1 - (1.5 / 1.75 + 0 / 0.25) / 2,
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    jaxloss.iou_loss(jnp.ones((5, 1)), jnp.zeros(5, jnp.int32)), 0.0
  )
  assert np.isnan(jaxloss.dice_loss(one.at[0, 0].set(jnp.nan), jnp.array([1])))


# 6. Reduced precision.


def test_fp16_volume_does_not_overflow():
  # 8 x 512 x 512 pixels: every sum is far above fp16's 65504.
  labels = jnp.zeros((8, 512, 512), jnp.int32).at[:, :256].set(1)
  probs = jax.nn.one_hot(labels, 2, dtype=jnp.float16) * 0.75 + 0.125
  got = jax.jit(jaxloss.dice_loss)(probs, labels)
  assert got.dtype == jnp.float32
  # Per class I = 0.875 N/2, P = N/2, T = N/2: Dice = 0.875 exactly.
  np.testing.assert_allclose(got, 0.125, rtol=1e-5)


def test_bf16_close_to_float32():
  probs, ids = _batch(seed=6)
  for fn in DICE_FAMILY:
    got = fn(probs.astype(jnp.bfloat16), ids)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, fn(probs, ids), rtol=2e-2, atol=2e-3)


# Bad input.


def test_errors_name_function_and_argument():
  probs, ids = _batch()
  with pytest.raises(
    ValueError,
    match=r"dice_loss: labels.shape \(2, 3, 5\) "
    r"must equal probs.shape\[:-1\] or probs.shape; got "
    r"probs.shape \(2, 3, 4, 3\)",
  ):
    jaxloss.dice_loss(probs, jnp.zeros((2, 3, 5), jnp.int32))
  with pytest.raises(TypeError, match=r"iou_loss: probs must have a floating"):
    jaxloss.iou_loss(ids[..., None], ids)
  with pytest.raises(ValueError, match=r"tversky_loss: axis 4 is out of range"):
    jaxloss.tversky_loss(probs, ids, axis=4)
  with pytest.raises(
    ValueError, match=r"dice_loss: axis -1 includes the class"
  ):
    jaxloss.dice_loss(probs, ids, axis=-1)
  with pytest.raises(
    ValueError, match=r"dice_loss: class_weights.shape \(2,\)"
  ):
    jaxloss.dice_loss(probs, ids, class_weights=jnp.ones(2))
  with pytest.raises(ValueError, match=r"iou_loss: classes \[0, 3\] must lie"):
    jaxloss.iou_loss(probs, ids, classes=jnp.array([0, 3]))
  with pytest.raises(ValueError, match=r'dice_loss: classes must be "all"'):
    jaxloss.dice_loss(probs, ids, classes="some")
  with pytest.raises(
    ValueError,
    match=r"dice_loss: where.shape \(2, 3\) must "
    r"equal probs.shape\[:-1\] \(2, 3, 4\) \(one flag a "
    r"pixel\) or probs.shape \(2, 3, 4, 3\)",
  ):
    jaxloss.dice_loss(probs, ids, where=jnp.ones((2, 3), bool))
  with pytest.raises(TypeError, match=r"mcc_loss: where must be a boolean"):
    jaxloss.mcc_loss(probs, ids, where=jnp.ones(probs.shape))
  with pytest.raises(
    TypeError, match=r"iou_loss: soft_labels must be True or False"
  ):
    jaxloss.iou_loss(probs, ids, soft_labels="yes")
  with pytest.raises(ValueError, match=r"mcc_loss: smooth must be"):
    jaxloss.mcc_loss(probs, ids, smooth=-1.0)
  with pytest.raises(ValueError, match=r"generalized_dice_loss: weighting"):
    jaxloss.generalized_dice_loss(probs, ids, weighting="cube")
  with pytest.raises(TypeError, match=r"dice_loss: labels of shape"):
    jaxloss.dice_loss(probs, ids.astype(jnp.float32))


def test_checkify_reports_out_of_range_labels_at_valid_pixels_only():
  with jaxloss.value_checks():
    probs, ids = _batch()
    checked = checkify.checkify(jax.jit(jaxloss.dice_loss))
    err, _ = checked(probs, ids.at[0, 0, 0].set(3))
    with pytest.raises(
      checkify.JaxRuntimeError, match=r"dice_loss: labels must lie in \[0, 3\)"
    ):
      err.throw()
    bad = ids.at[0, 0, 0].set(255)
    err, _ = checkify.checkify(
      jax.jit(lambda p, y: jaxloss.dice_loss(p, y, where=y != 255))
    )(probs, bad)
    err.throw()  # Ignored pixels are not checked.
    err, _ = checked(probs * 2, ids)
    assert "probs must lie in [0, 1]" in err.get()
