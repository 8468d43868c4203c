"""The public surface: signatures, docstrings, and one transform table for all.

Every name in ``jaxloss.__all__`` has an entry in ``CASES``: a function of a
PRNG key that returns the positional arguments (a batch of two examples along
the leading axis) and the keyword options. The table checks that plain, ``jit``,
``vmap`` and ``grad`` agree.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


def _region(**kwargs):
  """Region-loss case: probs [2, 5, 6, 4] and class ids, per-image pooling."""
  def make(k1, k2):
    return (_probs(k1, (2, 5, 6, 4)), _ids(k2, (2, 5, 6), 4)), kwargs
  return make


CASES = {
    "focal_loss": lambda k1, k2: (
        (_logits(k1, (2, 7, 3)), _binary(k2, (2, 7, 3))), {}),
    "softmax_focal_loss": lambda k1, k2: (
        (_logits(k1, (2, 7, 4)), _ids(k2, (2, 7), 4)), {"gamma": 1.5}),
    "dice_loss": _region(),
    "iou_loss": _region(classes="present"),
    "tversky_loss": _region(alpha=0.3, beta=0.7, gamma=0.75),
    "generalized_dice_loss": _region(weighting="simple"),
    "lovasz_softmax": _region(classes="all"),
    "lovasz_hinge": lambda k1, k2: (
        (_logits(k1, (2, 5, 6)), _binary(k2, (2, 5, 6))), {}),
    "varifocal_loss": lambda k1, k2: (
        (_logits(k1, (2, 7, 3)), _quality(k2, (2, 7, 3))), {"gamma": 1.5}),
    "quality_focal_loss": lambda k1, k2: (
        (_logits(k1, (2, 7, 3)), _quality(k2, (2, 7, 3))), {}),
    "box_iou_loss": _box_pair(),
    "box_giou_loss": _box_pair(),
    "box_diou_loss": _box_pair(),
    "box_ciou_loss": _box_pair(),
    "box_eiou_loss": _box_pair(eps=1e-6),
    "box_iou": lambda k1, k2: ((_boxes(k1, (2, 3)), _boxes(k2, (2, 5))), {}),
    "generalized_box_iou": lambda k1, k2: (
        (_boxes(k1, (2, 3)), _boxes(k2, (2, 5))), {}),
    "box_convert": lambda k1, k2: (
        (_boxes(k1, (2, 5)),), {"source": "cxcywh", "target": "xyxy"}),
    "distribution_focal_loss": lambda k1, k2: (
        (_logits(k1, (2, 3, 4, 8)),
         jax.random.uniform(k2, (2, 3, 4), maxval=7.0)), {}),
    "distribution_integral": lambda k1, k2: ((_logits(k1, (2, 3, 8)),), {}),
    "box_siou_loss": _box_pair(),
    "distance_box_iou": lambda k1, k2: (
        (_boxes(k1, (2, 3)), _boxes(k2, (2, 5))), {}),
    "complete_box_iou": lambda k1, k2: (
        (_boxes(k1, (2, 3)), _boxes(k2, (2, 5))), {"eps": 1e-6}),
    # Rotated boxes (cx, cy, w, h, theta): the corners of _boxes as centre
    # and size (sizes in [1, 4]), angles in [-3, 3].
    "rotated_box_probiou_loss": lambda k1, k2: (
        tuple(jnp.concatenate([_boxes(k, (2, 5)), jax.random.uniform(
            k, (2, 5, 1), minval=-3, maxval=3)], -1) for k in (k1, k2)), {}),
    "rotated_box_kld_loss": lambda k1, k2: (
        tuple(jnp.concatenate([_boxes(k, (2, 5)), jax.random.uniform(
            k, (2, 5, 1), minval=-3, maxval=3)], -1) for k in (k1, k2)),
        {"fun": "sqrt", "tau": 2.0}),
    "rotated_box_gwd_loss": lambda k1, k2: (
        tuple(jnp.concatenate([_boxes(k, (2, 5)), jax.random.uniform(
            k, (2, 5, 1), minval=-3, maxval=3)], -1) for k in (k1, k2)), {}),
    "softmax_class_cost": lambda k1, k2: (
        (_logits(k1, (2, 4, 5)), _ids(k2, (2, 3), 5)), {}),
    "focal_class_cost": lambda k1, k2: (
        (_logits(k1, (2, 4, 5)), _ids(k2, (2, 3), 5)), {"gamma": 1.5}),
    "box_l1_cost": lambda k1, k2: (
        (_boxes(k1, (2, 4)), _boxes(k2, (2, 3))), {}),
    "mask_dice_cost": lambda k1, k2: (
        (_logits(k1, (2, 4, 6)), _binary(k2, (2, 3, 6))), {}),
    "mask_bce_cost": lambda k1, k2: (
        (_logits(k1, (2, 4, 6)), _binary(k2, (2, 3, 6))), {}),
    "mask_focal_cost": lambda k1, k2: (
        (_logits(k1, (2, 4, 6)), _binary(k2, (2, 3, 6))), {"alpha": 0.5}),
    "boundary_loss": lambda k1, k2: (
        (_probs(k1, (2, 2, 5, 6, 3)), _ids(k2, (2, 2, 5, 6), 3)),
        {"sampling": (1.0, 2.0)}),
    "hausdorff_dt_loss": lambda k1, k2: (
        (_probs(k1, (2, 2, 5, 6, 3)), _ids(k2, (2, 2, 5, 6), 3)),
        {"alpha": 1.5}),
    "cldice_loss": lambda k1, k2: (
        (_probs(k1, (2, 2, 5, 6, 3)), _ids(k2, (2, 2, 5, 6), 3)), {}),
    "soft_skeleton": lambda k1, k2: ((_probs(k1, (2, 2, 5, 6, 3)),), {}),
    "distance_transform": lambda k1, k2: (
        (jax.random.bernoulli(k1, 0.7, (2, 5, 6)),), {"sampling": (1.0, 2.0)}),
}

# Options with no sensible default are required keywords (the two formats of
# box_convert); any other parameter without a default is positional.
REQUIRED_KEYWORDS = {("box_convert", "source"), ("box_convert", "target")}

# A region loss pools over every axis by default, so a batched call is not a
# stack of per-example calls; the table pools per example for them.
POOLED = {"dice_loss", "iou_loss", "tversky_loss", "generalized_dice_loss",
          "lovasz_softmax", "lovasz_hinge"}


def _case(name):
  (args, kwargs) = CASES[name](*jax.random.split(jax.random.PRNGKey(0)))
  return getattr(jaxloss, name), args, kwargs


def test_every_public_name_has_a_case():
  assert set(jaxloss.__all__) == set(CASES)


def test_version():
  assert isinstance(jaxloss.__version__, str) and jaxloss.__version__


@pytest.mark.parametrize("name", sorted(CASES))
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


@pytest.mark.parametrize("name", sorted(CASES))
def test_docstring_sections(name):
  doc = getattr(jaxloss, name).__doc__
  for section in ("Args:", "Returns:", "References:", "Examples:"):
    assert section in doc, section


@pytest.mark.parametrize("name", sorted(CASES))
def test_plain_jit_vmap_grad_agree(name):
  fn, args, kwargs = _case(name)
  one = [a[0] for a in args]
  call = lambda *a: fn(*a, **kwargs)

  plain = call(*one)
  np.testing.assert_allclose(jax.jit(call)(*one), plain, rtol=1e-5, atol=1e-6)

  batched = jax.vmap(call)(*args)
  stacked = jnp.stack([call(*[a[i] for a in args]) for i in range(2)])
  np.testing.assert_allclose(batched, stacked, rtol=1e-5, atol=1e-6)

  total = lambda first, *rest: jnp.sum(call(first, *rest))
  grad = jax.grad(total)(*one)
  np.testing.assert_allclose(jax.jit(jax.grad(total))(*one), grad,
                             rtol=1e-4, atol=1e-6)
  assert grad.shape == one[0].shape
  assert bool(jnp.all(jnp.isfinite(grad)))
  assert float(jnp.max(jnp.abs(grad))) > 0
  if name in POOLED:
    axes = tuple(range(1, args[0].ndim - 1))
    if name == "lovasz_hinge":
      axes = tuple(range(1, args[0].ndim))
    np.testing.assert_allclose(fn(*args, axis=axes, **kwargs), batched,
                               rtol=1e-5, atol=1e-6)
