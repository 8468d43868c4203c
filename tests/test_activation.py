"""Region losses from logits (``activation=``) against the probability path.

``loss(x, y, activation="softmax")`` must equal ``loss(jax.nn.softmax(x), y)``
in value and gradient (and likewise for ``"sigmoid"``), with every label kind
and mask, and keep the edge-case behaviour of the probability path.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

ACTIVATIONS = {"softmax": jax.nn.softmax, "sigmoid": jax.nn.sigmoid}

# Every region loss with an activation, and the options of its case.
LOSSES = {
  "dice_loss": {},
  "iou_loss": {"squared": True},
  "tversky_loss": {"alpha": 0.3, "beta": 0.7, "gamma": 0.75},
  "generalized_dice_loss": {},
  "mcc_loss": {},
  "generalized_wasserstein_dice_loss": {},
  "lovasz_softmax": {"classes": "all"},
  "boundary_loss": {},
  "hausdorff_dt_loss": {},
  "cldice_loss": {},
  "hausdorff_er_loss": {"erosions": 3},
}
# hausdorff_er_loss: soft random targets erode to 0 (loss and gradient 0).
IDS_ONLY = {"lovasz_softmax", "hausdorff_er_loss"}
SOFTMAX_ONLY = {"generalized_wasserstein_dice_loss"}
SHAPE = (2, 5, 6, 3)


def _inputs(seed=0, shape=SHAPE):
  k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(seed), 4)
  x = 3 * jax.random.normal(k1, shape)
  ids = jax.random.randint(k2, shape[:-1], 0, shape[-1])
  soft = jax.random.uniform(k3, shape)
  pixels = jax.random.bernoulli(k4, 0.7, shape[:-1])
  return x, ids, soft, pixels


# Every loss: softmax with class ids and sigmoid with soft targets; the
# pooled-sums losses also softmax with soft targets (the derivative's path
# with the min slope folded in).
BOTH_WAYS = {"dice_loss", "iou_loss", "tversky_loss", "generalized_dice_loss"}


def _cases(name):
  """The ``(activation, labels)`` pairs of a loss."""
  pairs = [("softmax", "ids"), ("sigmoid", "soft")]
  if name in BOTH_WAYS:
    pairs.append(("softmax", "soft"))
  for activation, labels in pairs:
    if activation == "sigmoid" and name in SOFTMAX_ONLY:
      activation = "softmax"
    if labels == "soft" and name in IDS_ONLY:
      labels = "ids"
    yield activation, labels


@functools.partial(jax.jit, static_argnums=0)
def _both_paths(name, x, ids, soft, where):
  """For each case of the loss: value and gradient from logits and from the
  probabilities. Masked with class ids, unmasked with soft targets."""
  out = {}
  for activation, labels in sorted(set(_cases(name))):
    fn = functools.partial(getattr(jaxloss, name), **LOSSES[name])
    if labels == "ids":
      fn = functools.partial(fn, where=where)
    y = ids if labels == "ids" else soft
    act = ACTIVATIONS[activation]
    logits = jax.value_and_grad(lambda x: fn(x, y, activation=activation))
    probs = jax.value_and_grad(lambda x: fn(act(x), y))
    out[activation, labels] = logits(x), probs(x)
  return out


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_logits_equal_the_probability_path(name):
  x, ids, soft, pixels = _inputs()
  for case, ((value, grad), (want, want_grad)) in _both_paths(
    name, x, ids, soft, pixels
  ).items():
    np.testing.assert_allclose(
      value, want, rtol=2e-5, atol=1e-6, err_msg=str(case)
    )
    scale = float(jnp.max(jnp.abs(want_grad)))
    assert scale > 0, case
    np.testing.assert_allclose(
      grad / scale, want_grad / scale, atol=2e-5, err_msg=str(case)
    )


@jax.jit
def _dice_family_at_extremes(x, ids, where):
  out = []
  for name in ("dice_loss", "tversky_loss", "mcc_loss", "lovasz_softmax"):
    fn = functools.partial(getattr(jaxloss, name), where=where)
    for activation in ("softmax", "sigmoid"):
      out.append(
        jax.value_and_grad(lambda x: fn(x, ids, activation=activation))(x)
      )
  return out


def test_masked_nan_logits_and_extreme_logits():
  """NaN logits at masked pixels count for nothing (value and gradient
  equal the loss without those pixels); +-1e4 logits stay finite."""
  x, ids, _, pixels = _inputs(1)
  extreme = jnp.where(x > 0, 1e4, -1e4)
  hidden = jnp.where(pixels[..., None], extreme, jnp.nan)
  results = _dice_family_at_extremes(hidden, ids, pixels)
  clean = _dice_family_at_extremes(extreme, ids, pixels)
  for (value, grad), (want, want_grad) in zip(results, clean):
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, want)
    np.testing.assert_allclose(grad, want_grad)
    assert np.all(np.asarray(grad)[~np.asarray(pixels)] == 0)


def test_nan_logits_at_valid_pixels_give_nan():
  x, ids, _, _ = _inputs(2)
  x = x.at[0, 0, 0, 1].set(jnp.nan)
  both = jax.jit(
    lambda x, y: (
      jaxloss.dice_loss(x, y, activation="softmax"),
      jaxloss.lovasz_softmax(x, y, activation="sigmoid"),
    )
  )
  assert np.all(np.isnan(both(x, ids)))


def test_pixel_and_class_mask_with_softmax():
  """A fully masked pixel may hold NaN logits; the softmax of a partly
  valid pixel reads all its logits, as jax.nn.softmax does."""
  x, ids, _, pixels = _inputs(3)

  @jax.jit
  def paths(x, ids, pixels):
    where = jnp.broadcast_to(pixels[..., None], SHAPE).at[..., 0].set(False)
    hidden = jnp.where(pixels[..., None], x, jnp.nan)
    fn = jax.value_and_grad(
      lambda x: jaxloss.dice_loss(x, ids, where=where, activation="softmax")
    )
    probs = jaxloss.dice_loss(jax.nn.softmax(x), ids, where=where)
    return fn(hidden), fn(x), probs

  (value, grad), (want, want_grad), probs = paths(x, ids, pixels)
  np.testing.assert_allclose(value, want)
  np.testing.assert_allclose(grad, want_grad)
  np.testing.assert_allclose(value, probs, rtol=1e-6)


def test_binary_mask_from_one_logit():
  """A binary mask [..., 1] with "sigmoid": the 2x2 case by hand."""
  logits = jnp.array([[2.0, -1.0], [0.5, -3.0]])[..., None]
  mask = jnp.array([[1.0, 1.0], [0.0, 0.0]])[..., None]
  p = 1 / (1 + np.exp(-np.array([2.0, -1.0, 0.5, -3.0])))
  t = np.array([1.0, 1.0, 0.0, 0.0])
  want = 1 - 2 * np.sum(p * t) / (np.sum(p) + np.sum(t))
  got = jax.jit(
    functools.partial(jaxloss.dice_loss, activation="sigmoid", smooth=0.0)
  )(logits, mask)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_bf16_logits_accumulate_in_float32():
  x, ids, _, _ = _inputs(4)
  fn = jax.value_and_grad(
    lambda x: jaxloss.dice_loss(x, ids, activation="softmax")
  )
  low = x.astype(jnp.bfloat16)
  (value, grad), (want, want_grad) = jax.jit(
    lambda low, high: (fn(low), fn(high))
  )(low, low.astype(jnp.float32))
  assert value.dtype == jnp.float32 and grad.dtype == jnp.bfloat16
  np.testing.assert_allclose(value, want, rtol=1e-5)
  np.testing.assert_allclose(
    grad.astype(jnp.float32), want_grad, rtol=2e-2, atol=1e-5
  )


def test_float64_logits_against_the_probability_path():
  x, ids, soft, _ = _inputs(5)
  with jax.enable_x64(True):

    @jax.jit
    def both(x, labels):
      return (
        jax.value_and_grad(
          lambda x: jaxloss.dice_loss(x, labels, activation="softmax")
        )(x),
        jax.value_and_grad(
          lambda x: jaxloss.dice_loss(jax.nn.softmax(x), labels)
        )(x),
      )

    x = x.astype(jnp.float64)
    # Class ids as int64 and soft targets as float64, as drawn under x64.
    out = jax.jit(lambda x, ids, soft: [both(x, ids), both(x, soft)])(
      x, ids.astype(jnp.int64), soft.astype(jnp.float64)
    )
    for (value, grad), (want, want_grad) in out:
      assert value.dtype == jnp.float64
      np.testing.assert_allclose(value, want, rtol=1e-12)
      np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-15)


def test_softmax_of_one_class_is_refused():
  x, _, _, _ = _inputs(6)
  mask = jnp.zeros(SHAPE[:-1] + (1,))
  with pytest.raises(ValueError, match='dice_loss: activation="softmax" needs'):
    jax.jit(functools.partial(jaxloss.dice_loss, activation="softmax"))(
      x[..., :1], mask
    )
  got = jax.jit(functools.partial(jaxloss.dice_loss, activation="sigmoid"))(
    x[..., :1], mask
  )
  assert np.isfinite(got)


@jax.jit
def _odd_ids_both_paths(x, ids_sets):
  out = []
  for ids in ids_sets:
    for name in ("dice_loss", "generalized_dice_loss", "lovasz_softmax"):
      fn = getattr(jaxloss, name)
      logits = jax.value_and_grad(lambda x: fn(x, ids, activation="softmax"))
      probs = jax.value_and_grad(lambda x: fn(jax.nn.softmax(x), ids))
      out.append((logits(x), probs(x)))
  return out


def test_uint8_and_out_of_range_ids_equal_the_probability_path():
  """Class ids without one-hot rows: uint8 ids, and ids outside [0, C) (no
  class, as in the probability path; reported under value_checks)."""
  x, ids, _, _ = _inputs(7)
  odd = ids.at[0, 0, 0].set(-1).at[1, 2, 3].set(SHAPE[-1])
  out = _odd_ids_both_paths(x, (ids.astype(jnp.uint8), odd))
  for (value, grad), (want, want_grad) in out:
    np.testing.assert_allclose(value, want, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-7)
