"""Smoke check of an installed jaxloss: run it with the interpreter to check.

    python packaging_smoke.py [EXPECTED_DIR]

Imports jaxloss (from ``EXPECTED_DIR`` if given: the check fails if the
package was imported from anywhere else), checks that ``py.typed`` is
installed, and calls every name in ``jaxloss.__all__`` once under ``jax.jit``
on small inputs. Every public name needs an entry in ``BUILDERS`` (a loss or
helper: a function of a PRNG key returning positional arguments and keyword
options) or in ``SPECIAL`` (anything else: a function that checks it); a name
without one fails the check with its name. The script uses nothing but the
installed package, JAX and NumPy, so it runs outside the checkout, also on the
oldest supported JAX.
"""

import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

# Inputs from the "rbg" generator: the same statistics, and a fraction of
# threefry's compile time for every new shape drawn.
jax.config.update("jax_default_prng_impl", "rbg")


def _logits(key, shape):
  return 3 * jax.random.normal(key, shape)


def _probs(key, shape):
  return jax.nn.softmax(_logits(key, shape), axis=-1)


def _ids(key, shape, num_classes):
  return jax.random.randint(key, shape, 0, num_classes)


def _binary(key, shape):
  return jax.random.bernoulli(key, 0.3, shape).astype(jnp.float32)


def _quality(key, shape):
  k1, k2 = jax.random.split(key)
  return _binary(k1, shape) * jax.random.uniform(k2, shape, minval=0.1)


def _boxes(key, shape):
  """Valid (x1, y1, x2, y2) boxes of shape ``shape + (4,)``."""
  k1, k2 = jax.random.split(key)
  corner = jax.random.uniform(k1, shape + (2,), maxval=1.0)
  size = jax.random.uniform(k2, shape + (2,), minval=1.0, maxval=3.0)
  return jnp.concatenate([corner, corner + size], axis=-1)


def _pixelwise(targets, **kwargs):
  def build(key):
    k1, k2 = jax.random.split(key)
    return (_logits(k1, (2, 5, 3)), targets(k2, (2, 5, 3))), kwargs

  return build


def _region(**kwargs):
  def build(key):
    k1, k2 = jax.random.split(key)
    return (_probs(k1, (2, 4, 4, 3)), _ids(k2, (2, 4, 4), 3)), kwargs

  return build


def _rotated_boxes(key, shape):
  """Valid (cx, cy, w, h, angle) boxes of shape ``shape + (5,)``."""
  k1, k2, k3 = jax.random.split(key, 3)
  center = jax.random.uniform(k1, shape + (2,), maxval=2.0)
  size = jax.random.uniform(k2, shape + (2,), minval=1.0, maxval=3.0)
  angle = jax.random.uniform(k3, shape + (1,), minval=-1.5, maxval=1.5)
  return jnp.concatenate([center, size, angle], axis=-1)


def _every_class(shape, num_classes):
  """Class ids in which every class occurs in every image: (i + j) % C."""
  i, j = jnp.meshgrid(jnp.arange(shape[1]), jnp.arange(shape[2]), indexing="ij")
  return jnp.broadcast_to((i + j) % num_classes, shape)


def _spatial(**kwargs):
  """Distance-based region losses: probs [2, 6, 6, 3], every class present."""

  def build(key):
    return (_probs(key, (2, 6, 6, 3)), _every_class((2, 6, 6), 3)), kwargs

  return build


def _class_cost(**kwargs):
  """Matching cost: 4 query logits over 3 classes against 5 class ids."""

  def build(key):
    k1, k2 = jax.random.split(key)
    return (_logits(k1, (4, 3)), _ids(k2, (5,), 3)), kwargs

  return build


def _mask_cost(**kwargs):
  """Matching cost: 4 query mask logits against 5 binary masks of 6 pixels."""

  def build(key):
    k1, k2 = jax.random.split(key)
    return (_logits(k1, (4, 6)), _binary(k2, (5, 6))), kwargs

  return build


def _box_pair(n=5, m=None, **kwargs):
  def build(key):
    k1, k2 = jax.random.split(key)
    return (_boxes(k1, (n,)), _boxes(k2, (n if m is None else m,))), kwargs

  return build


BUILDERS = {
  "focal_loss": _pixelwise(_binary),
  "softmax_focal_loss": lambda key: (
    (_logits(key, (2, 5, 3)), _ids(jax.random.split(key)[1], (2, 5), 3)),
    {},
  ),
  "varifocal_loss": _pixelwise(_quality),
  "gaussian_focal_loss": _pixelwise(_quality),
  "ghm_classification_loss": _pixelwise(_binary),
  "seesaw_loss": lambda key: (
    (_logits(key, (2, 5, 3)), _ids(jax.random.split(key)[1], (2, 5), 3)),
    {"class_counts": jnp.array([10, 3, 1])},
  ),
  "keypoint_oks_loss": lambda key: (
    (_logits(key, (2, 17, 2)), _logits(jax.random.split(key)[1], (2, 17, 2))),
    {
      "visible": jnp.ones((2, 17), bool),
      "area": jnp.array([30.0, 50.0]),
      "sigmas": jnp.full((17,), 0.05),
    },
  ),
  "quality_focal_loss": _pixelwise(_quality),
  "dice_loss": _region(),
  "iou_loss": _region(),
  "tversky_loss": _region(alpha=0.3, beta=0.7),
  "generalized_dice_loss": _region(),
  "mcc_loss": _region(),
  "generalized_wasserstein_dice_loss": _region(),
  "lovasz_softmax": _region(),
  "lovasz_hinge": _pixelwise(_binary),
  "box_iou_loss": _box_pair(),
  "box_giou_loss": _box_pair(),
  "box_diou_loss": _box_pair(),
  "box_ciou_loss": _box_pair(),
  "box_eiou_loss": _box_pair(),
  "box_iou": _box_pair(3, 4),
  "generalized_box_iou": _box_pair(3, 4),
  "box_convert": lambda key: (
    (_boxes(key, (5,)),),
    {"in_format": "xyxy", "out_format": "cxcywh"},
  ),
  "distribution_focal_loss": lambda key: (
    (
      _logits(key, (5, 4, 8)),
      jax.random.uniform(jax.random.split(key)[1], (5, 4), maxval=7.0),
    ),
    {},
  ),
  "distribution_integral": lambda key: ((_logits(key, (5, 4, 8)),), {}),
  "box_siou_loss": _box_pair(),
  "distance_box_iou": _box_pair(3, 4),
  "complete_box_iou": _box_pair(3, 4),
  "rotated_box_probiou_loss": lambda key: (
    (_rotated_boxes(key, (5,)), _rotated_boxes(jax.random.split(key)[1], (5,))),
    {},
  ),
  "rotated_box_kld_loss": lambda key: (
    (_rotated_boxes(key, (5,)), _rotated_boxes(jax.random.split(key)[1], (5,))),
    {},
  ),
  "rotated_box_gwd_loss": lambda key: (
    (_rotated_boxes(key, (5,)), _rotated_boxes(jax.random.split(key)[1], (5,))),
    {},
  ),
  "distance_transform": lambda key: (
    (jax.random.bernoulli(key, 0.5, (2, 6, 6)).at[:, 0, 0].set(False),),
    {"axis": (1, 2)},
  ),
  "boundary_loss": _spatial(),
  "hausdorff_dt_loss": _spatial(),
  "cldice_loss": _spatial(),
  "soft_skeleton": lambda key: ((_probs(key, (2, 6, 6, 3)),), {}),
  "softmax_class_cost": _class_cost(),
  "focal_class_cost": _class_cost(),
  "box_l1_cost": _box_pair(3, 4),
  "mask_dice_cost": _mask_cost(),
  "mask_bce_cost": _mask_cost(),
  "mask_focal_cost": _mask_cost(),
  "balanced_l1_loss": _pixelwise(_quality),
  "bounded_iou_loss": _box_pair(),
  "ohem_cross_entropy_loss": lambda key: (
    (_logits(key, (2, 5, 3)), _ids(jax.random.split(key)[1], (2, 5), 3)),
    {"min_kept": 4},
  ),
  # Every argument a keyword: jit cannot take the loss function as an array.
  "deep_supervision_loss": lambda key: (
    (),
    {
      "loss_fn": lambda p, y: jnp.mean((p - jax.nn.one_hot(y, 3)) ** 2),
      "outputs": [_probs(key, (2, 6, 6, 3)), _probs(key, (2, 3, 3, 3))],
      "labels": _ids(jax.random.split(key)[1], (2, 6, 6), 3),
    },
  ),
  "asymmetric_unified_focal_loss": _region(),
  "log_hausdorff_dt_loss": _spatial(),
  "hausdorff_er_loss": _spatial(),
}


def _check_value_checks(jaxloss):
  """Outside the context no check is traced; inside, checkify reports one."""
  from jax.experimental import checkify  # pylint: disable=g-import-not-at-top

  probs = jnp.full((2, 3), 1 / 3)
  labels = jnp.array([0, 7])  # 7 is not a class
  checked = checkify.checkify(jax.jit(jaxloss.dice_loss))
  error, _ = checked(probs, labels)
  assert error.get() is None, error.get()
  with jaxloss.value_checks():
    error, _ = checkify.checkify(jax.jit(jaxloss.dice_loss))(probs, labels)
  message = error.get()
  assert message is not None and "dice_loss" in message, message


def _check_coco_sigmas(jaxloss):
  """COCO's 17 keypoint constants, symmetric pairs after the nose."""
  sigmas = jaxloss.COCO_KEYPOINT_SIGMAS
  assert isinstance(sigmas, tuple) and len(sigmas) == 17, sigmas
  assert all(sigmas[i] == sigmas[i + 1] for i in range(1, 17, 2)), sigmas


SPECIAL = {
  "value_checks": _check_value_checks,
  "COCO_KEYPOINT_SIGMAS": _check_coco_sigmas,
}


def _leaves_finite(out):
  return all(
    np.all(np.isfinite(x)) for x in jax.device_get(jax.tree.leaves(out))
  )


def main(argv):
  import jaxloss  # pylint: disable=g-import-not-at-top

  package_dir = os.path.dirname(os.path.abspath(jaxloss.__file__))
  print(
    f"jaxloss {jaxloss.__version__} from {package_dir} "
    f"(jax {jax.__version__}, Python {sys.version.split()[0]})"
  )
  if len(argv) > 1:
    expected = os.path.realpath(argv[1])
    if (
      os.path.commonpath([os.path.realpath(package_dir), expected]) != expected
    ):
      sys.exit(
        f"FAIL: jaxloss imported from {package_dir}, not from under {expected}"
      )
  if not os.path.isfile(os.path.join(package_dir, "py.typed")):
    sys.exit(f"FAIL: py.typed is missing from {package_dir}")

  missing = sorted(set(jaxloss.__all__) - set(BUILDERS) - set(SPECIAL))
  if missing:
    sys.exit(
      "FAIL: no smoke case for public name(s) "
      f"{', '.join(missing)}: add one to BUILDERS or SPECIAL in "
      "tests/packaging_smoke.py"
    )

  failed = []
  for i, name in enumerate(sorted(jaxloss.__all__)):
    try:
      if name in SPECIAL:
        SPECIAL[name](jaxloss)
      else:
        args, kwargs = BUILDERS[name](jax.random.PRNGKey(i))
        fn = jax.jit(functools.partial(getattr(jaxloss, name), **kwargs))
        out = fn(*args)
        if not _leaves_finite(out):
          raise AssertionError(f"non-finite output {out}")
    except Exception as e:  # pylint: disable=broad-except
      failed.append(name)
      print(f"FAIL {name}: {type(e).__name__}: {e}")
    else:
      print(f"ok   {name}")
  if failed:
    sys.exit(
      f"FAIL: {len(failed)} of {len(jaxloss.__all__)} public names: "
      f"{', '.join(failed)}"
    )
  print(f"all {len(jaxloss.__all__)} public names ok")


if __name__ == "__main__":
  main(sys.argv)
