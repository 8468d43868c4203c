"""Checks on 8 simulated CPU devices; run by ``tests/test_multidevice.py``.

They need ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before JAX
starts, so ``test_multidevice.py`` runs this file with pytest in a fresh
process (the name does not match ``test_*.py``, so the main run does not
collect it). To run it alone::

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \\
        python -m pytest -q tests/multidevice_checks.py

References are the single-device losses on the whole (global) batch and
``jax.grad`` of them; each device's gradient must be its slice of that.
"""

import functools
import importlib.util
import inspect
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jaxloss

NUM_DEVICES = 8
HERE = os.path.dirname(os.path.abspath(__file__))
OVERLAP = ("dice_loss", "iou_loss", "tversky_loss", "generalized_dice_loss",
           "generalized_wasserstein_dice_loss")
# Options that change what is pooled: masks, present classes, soft targets,
# squared denominators, generalized-Dice and class-volume weights.
OPTIONS = {
    "dice_loss": {"where": True, "squared": True},
    "iou_loss": {"classes": "present", "where": True},
    "tversky_loss": {"alpha": 0.3, "beta": 0.7, "gamma": 0.75, "soft": True},
    "generalized_dice_loss": {"weighting": "square", "where": True},
    "generalized_wasserstein_dice_loss": {"weighting": "gdl", "where": True,
                                          "soft": True},
}


@pytest.fixture(autouse=True, scope="module")
def _cheap_prng():
  """The ``rbg`` PRNG: the same statistics, a fraction of threefry's compile
  time on CPU (model initialisation and the API table's random inputs)."""
  previous = jax.config.jax_default_prng_impl
  jax.config.update("jax_default_prng_impl", "rbg")
  yield
  jax.config.update("jax_default_prng_impl", previous)


def _mesh(shape=(NUM_DEVICES,), names=("d",)):
  return jax.make_mesh(shape, names,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(shape))


def _region_batch(seed, batch=NUM_DEVICES * 2, soft=False, where=False):
  """probs [B, 3, 4, 5], labels (ids [B, 3, 4] or soft targets), mask or None.

  Class 4 never occurs in the labels and class 3 only in the second half of
  the batch, so "present" classes and the generalized-Dice weights differ
  between a device's shard and the global batch.
  """
  rng = np.random.default_rng(seed)
  logits = 3 * rng.standard_normal((batch, 3, 4, 5))
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  ids = rng.integers(0, 3, (batch, 3, 4)).astype(np.int32)
  ids[batch // 2:, 0, 0] = 3
  labels = ids
  if soft:
    labels = (0.8 * np.eye(5)[ids] + 0.04).astype(np.float32)
  mask = jnp.asarray(rng.random((batch, 3, 4)) < 0.7) if where else None
  return jnp.asarray(probs, jnp.float32), jnp.asarray(labels), mask


def _split_options(name):
  opts = dict(OPTIONS[name])
  return opts.pop("soft", False), opts.pop("where", False), opts


def _shard_map_grad(fn, mesh, spec, check_vma):
  """Per-device value and gradient inside ``shard_map``, gathered back."""
  def local(p, y, m):
    return jax.value_and_grad(fn)(p, y, m)
  return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, spec),
                               out_specs=(P(), spec), check_vma=check_vma))


def _assert_value_and_grad(value, grad, ref_value, ref_grad):
  np.testing.assert_allclose(value, ref_value, rtol=2e-6, atol=1e-7)
  scale = float(jnp.max(jnp.abs(ref_grad)))
  assert scale > 0
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-6 * scale)


def test_eight_simulated_devices():
  assert jax.device_count() == NUM_DEVICES, jax.devices()


# Every overlap loss type-checked; the unchecked shard_map (whose psum
# transposes like pmap's) on the one whose statistics all change with pooling.
@pytest.mark.parametrize("name, check_vma",
                         [(n, True) for n in OVERLAP]
                         + [("generalized_dice_loss", False)])
def test_shard_map_value_and_per_device_gradient(name, check_vma):
  """Value = global loss; each shard's gradient = its slice of the global one."""
  soft, where, opts = _split_options(name)
  probs, labels, mask = _region_batch(1, soft=soft, where=where)
  loss = getattr(jaxloss, name)
  ref_value, ref_grad = jax.value_and_grad(
      lambda p: loss(p, labels, where=mask, **opts))(probs)
  # A shard's own loss differs from the global one: pooling matters here.
  shard = slice(0, 2)
  local_only = loss(probs[shard], labels[shard],
                    where=None if mask is None else mask[shard], **opts)
  assert abs(float(local_only) - float(ref_value)) > 1e-3

  mask_arg = jnp.ones(probs.shape[:-1], bool) if mask is None else mask
  fn = lambda p, y, m: loss(p, y, where=m, axis_name="d", **opts)
  value, grad = _shard_map_grad(fn, _mesh(), P("d"), check_vma)(
      probs, labels, mask_arg)
  _assert_value_and_grad(value, grad, ref_value, ref_grad)


def _x64():
  if hasattr(jax, "enable_x64"):
    return jax.enable_x64(True)
  from jax.experimental import enable_x64  # older JAX
  return enable_x64()


@pytest.mark.parametrize("name", ["dice_loss", "generalized_dice_loss"])
def test_float64_per_device_gradient_is_the_slice_to_rounding(name):
  """In float64 the only difference left is the order of the sums."""
  soft, where, opts = _split_options(name)
  with _x64():
    probs, labels, mask = _region_batch(9, soft=soft, where=where)
    probs = probs.astype(jnp.float64)
    if soft:
      labels = labels.astype(jnp.float64)
    mask_arg = jnp.ones(probs.shape[:-1], bool) if mask is None else mask
    loss = getattr(jaxloss, name)
    ref_value, ref_grad = jax.value_and_grad(
        lambda p: loss(p, labels, where=mask_arg, **opts))(probs)
    fn = lambda p, y, m: loss(p, y, where=m, axis_name="d", **opts)
    value, grad = _shard_map_grad(fn, _mesh(), P("d"), True)(
        probs, labels, mask_arg)
    assert value.dtype == grad.dtype == jnp.float64
    np.testing.assert_allclose(value, ref_value, rtol=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12,
                               atol=1e-13 * float(jnp.max(jnp.abs(ref_grad))))


@pytest.mark.parametrize("name", ["dice_loss", "generalized_dice_loss"])
def test_pmap_value_and_per_device_gradient(name):
  soft, where, opts = _split_options(name)
  probs, labels, mask = _region_batch(2, soft=soft, where=where)
  loss = getattr(jaxloss, name)
  ref_value, ref_grad = jax.value_and_grad(
      lambda p: loss(p, labels, where=mask, **opts))(probs)
  mask_arg = jnp.ones(probs.shape[:-1], bool) if mask is None else mask
  per_device = lambda x: x.reshape((NUM_DEVICES, -1) + x.shape[1:])
  value, grad = jax.pmap(
      jax.value_and_grad(
          lambda p, y, m: loss(p, y, where=m, axis_name="i", **opts)),
      axis_name="i")(per_device(probs), per_device(labels), per_device(mask_arg))
  np.testing.assert_allclose(value, np.full(NUM_DEVICES, ref_value),
                             rtol=2e-6, atol=1e-7)
  _assert_value_and_grad(value[0], grad.reshape(probs.shape), ref_value,
                         ref_grad)


@pytest.mark.parametrize("name", ["dice_loss", "lovasz_softmax"])
def test_forward_mode_in_shard_map_is_the_global_tangent(name):
  probs, labels, _ = _region_batch(4)
  tangent = jax.random.normal(jax.random.PRNGKey(5), probs.shape)
  loss = getattr(jaxloss, name)
  ref_value, ref_tangent = jax.jvp(lambda p: loss(p, labels), (probs,),
                                   (tangent,))
  value, tangent_out = jax.jit(jax.shard_map(
      lambda p, y, t: jax.jvp(lambda p: loss(p, y, axis_name="d"), (p,),
                              (t,)),
      mesh=_mesh(), in_specs=P("d"), out_specs=(P(), P())))(
          probs, labels, tangent)
  np.testing.assert_allclose(value, ref_value, rtol=2e-6, atol=1e-7)
  np.testing.assert_allclose(tangent_out, ref_tangent, rtol=1e-5, atol=1e-6)


def test_two_mesh_axes_batch_and_height():
  """A batch split over one mesh axis and the height over another."""
  mesh = _mesh((4, 2), ("b", "h"))
  rng = np.random.default_rng(3)
  probs = jax.nn.softmax(jnp.asarray(rng.normal(0, 2, (8, 4, 3, 4)),
                                     jnp.float32), axis=-1)
  labels = jnp.asarray(rng.integers(0, 4, (8, 4, 3)), jnp.int32)
  mask = jnp.ones(labels.shape, bool)
  ref_value, ref_grad = jax.value_and_grad(jaxloss.dice_loss)(probs, labels)
  fn = lambda p, y, m: jaxloss.dice_loss(p, y, where=m, axis_name=("b", "h"))
  value, grad = _shard_map_grad(fn, mesh, P("b", "h"), True)(
      probs, labels, mask)
  _assert_value_and_grad(value, grad, ref_value, ref_grad)


def test_replicated_parameters_get_the_global_gradient():
  """Data parallel: params replicated, batch split, global Dice.

  Inside ``shard_map`` the gradient of replicated parameters comes back summed
  over the devices' shares; under ``pmap`` each device holds its share and
  ``lax.psum`` of them is the global gradient.
  """
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.standard_normal((16, 6, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 4, (16, 6)), jnp.int32)
  w = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)

  def loss(w, x, y, axis_name=None):
    probs = jax.nn.softmax(jnp.einsum("bnk,kc->bnc", x, w), axis=-1)
    return jaxloss.tversky_loss(probs, y, alpha=0.3, beta=0.7,
                                axis_name=axis_name)

  ref = jax.grad(loss)(w, x, labels)
  grad = jax.jit(jax.shard_map(
      lambda w, x, y: jax.grad(loss)(w, x, y, "d"), mesh=_mesh(),
      in_specs=(P(), P("d"), P("d")), out_specs=P()))(w, x, labels)
  np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-7)

  per_device = lambda a: a.reshape((NUM_DEVICES, -1) + a.shape[1:])
  shares = jax.pmap(
      lambda x, y: jax.grad(loss)(w, x, y, "i"), axis_name="i")(
          per_device(x), per_device(labels))
  np.testing.assert_allclose(jnp.sum(shares, axis=0), ref, rtol=1e-5,
                             atol=1e-7)


def test_per_image_loss_needs_no_communication():
  """``axis=(1, 2)`` on a batch-split input: each device its own images."""
  probs, labels, _ = _region_batch(6)
  ref = jaxloss.dice_loss(probs, labels, axis=(1, 2))
  out = jax.jit(jax.shard_map(
      lambda p, y: jaxloss.dice_loss(p, y, axis=(1, 2)), mesh=_mesh(),
      in_specs=P("d"), out_specs=P("d")))(probs, labels)
  np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)
  hlo = jax.jit(jax.shard_map(
      lambda p, y: jaxloss.dice_loss(p, y, axis=(1, 2)), mesh=_mesh(),
      in_specs=P("d"), out_specs=P("d"))).lower(probs, labels).as_text()
  assert "all_reduce" not in hlo and "all-reduce" not in hlo


def _takes_axis_name(name):
  return "axis_name" in inspect.signature(getattr(jaxloss, name)).parameters


AXIS_NAME_LOSSES = sorted(n for n in jaxloss.__all__ if _takes_axis_name(n))


def test_overlap_losses_take_axis_name():
  assert set(OVERLAP) <= set(AXIS_NAME_LOSSES)


@pytest.mark.parametrize(
    "name", [n for n in AXIS_NAME_LOSSES if n not in OVERLAP])
def test_every_axis_name_loss_on_the_api_table_case(name):
  """Every other loss with ``axis_name``, on its API-table input, one row a
  device (the overlap losses have their own checks above)."""
  args, kwargs = _global_case(name)
  loss = functools.partial(getattr(jaxloss, name), **kwargs)
  ref_value, ref_grad = jax.jit(jax.value_and_grad(loss))(*args)
  fn = lambda *a: loss(*a, axis_name="d")
  for check_vma in (True, False):
    value, grad = jax.jit(jax.shard_map(
        jax.value_and_grad(fn), mesh=_mesh(), in_specs=P("d"),
        out_specs=(P(), P("d")), check_vma=check_vma))(*args)
    _assert_value_and_grad(value, grad, ref_value, ref_grad)


@pytest.mark.parametrize("name", ["dice_loss", "lovasz_softmax",
                                  "lovasz_hinge"])
def test_unbound_axis_name_is_jax_error(name):
  args, kwargs = _global_case(name)
  loss = functools.partial(getattr(jaxloss, name), axis_name="d", **kwargs)
  with pytest.raises(NameError, match="unbound axis name"):
    loss(*args)
  with pytest.raises(NameError, match="unbound axis name"):
    jax.jit(loss)(*args)


def test_mismatched_per_device_shapes_fail_at_trace_time():
  probs, labels, _ = _region_batch(8)
  mesh = _mesh()
  # probs split over the devices, labels whole: shapes disagree per device.
  split_probs_only = jax.jit(jax.shard_map(
      lambda p, y: jaxloss.dice_loss(p, y, axis_name="d"), mesh=mesh,
      in_specs=(P("d"), P()), out_specs=P()))
  with pytest.raises(ValueError, match=r"dice_loss: labels.shape \(16, 3, 4\)"):
    split_probs_only.trace(probs, labels)
  # A global batch the devices cannot split evenly.
  even_split = jax.jit(jax.shard_map(
      lambda p, y: jaxloss.dice_loss(p, y, axis_name="d"), mesh=mesh,
      in_specs=P("d"), out_specs=P()))
  with pytest.raises(ValueError, match="divisible|evenly"):
    even_split.trace(probs[:12], labels[:12])


# --------------------------------------------------------------------------
# GSPMD: every public function, batch-sharded inputs, plain jax.jit.


def _test_api():
  spec = importlib.util.spec_from_file_location(
      "_jaxloss_test_api", os.path.join(HERE, "test_api.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _global_case(name):
  """The API table's case for ``name``, tiled to a batch of 8 along axis 0."""
  cases = _test_api().CASES
  parts, kwargs = [], None
  for seed in range(NUM_DEVICES // 2):
    args, kw = cases[name](*jax.random.split(jax.random.PRNGKey(seed)))
    kwargs = kw if kwargs is None else kwargs
    parts.append(args)
  args = tuple(jnp.concatenate(a, axis=0) for a in zip(*parts))
  assert all(a.shape[0] == NUM_DEVICES for a in args), [a.shape for a in args]
  return args, kwargs


# One function of each family and layout (GSPMD partitions XLA programs, so
# functions built the same way behave the same): the elementwise, softmax,
# pooled, sorted, pairwise, box, rotated-box, bin, distance and matrix-product
# cases.
GSPMD = ["focal_loss", "softmax_focal_loss", "dice_loss",
         "generalized_dice_loss", "lovasz_softmax", "lovasz_hinge",
         "box_ciou_loss", "generalized_box_iou", "box_convert",
         "rotated_box_kld_loss", "distribution_focal_loss", "boundary_loss",
         "distance_transform", "mask_dice_cost"]


def test_gspmd_names_are_public_cases():
  assert set(GSPMD) <= set(_test_api().CASES)


@pytest.mark.parametrize("name", GSPMD)
def test_gspmd_batch_sharded_equals_unsharded(name):
  args, kwargs = _global_case(name)
  fn = functools.partial(getattr(jaxloss, name), **kwargs)
  differentiable = jnp.issubdtype(args[0].dtype, jnp.floating)

  def value_and_grad(*a):
    out = fn(*a)
    if not differentiable:
      return out, None
    return out, jax.grad(lambda first: jnp.sum(fn(first, *a[1:])))(a[0])

  # The same program twice: on one device, and on inputs split over eight.
  ref_out, ref_grad = jax.jit(value_and_grad)(*args)
  sharding = NamedSharding(_mesh(), P("d"))
  sharded = [jax.device_put(a, sharding) for a in args]
  assert all(len(a.addressable_shards) == NUM_DEVICES and
             a.addressable_shards[0].data.shape[0] == 1 for a in sharded)
  out, grad = jax.jit(value_and_grad)(*sharded)
  np.testing.assert_allclose(out, ref_out, rtol=2e-5, atol=1e-6)
  if differentiable:
    assert bool(jnp.all(jnp.isfinite(ref_grad)))
    np.testing.assert_allclose(grad, ref_grad, rtol=2e-5, atol=1e-6)


# --------------------------------------------------------------------------
# The data-parallel example, a few steps.


def _example():
  path = os.path.join(HERE, os.pardir, "examples", "data_parallel.py")
  sys.path.insert(0, os.path.dirname(path))
  spec = importlib.util.spec_from_file_location("data_parallel", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_data_parallel_example_matches_single_device():
  example = _example()
  argv = ["--steps", "2", "--size", "24", "--width", "4",
          "--per-device-batch", "1", "--train-size", "32", "--test-size", "8",
          "--log-every", "1"]
  if "depth" in inspect.signature(example.unet.UNet).parameters:
    argv += ["--depth", "1"]  # the shallowest U-Net compiles fastest
  lines = []
  # optax's Adam bias correction mixes float and int32 powers, which the
  # test-wide strict promotion rejects: the example runs with JAX's default.
  with jax.numpy_dtype_promotion("standard"):
    runs = {mode: example.main(argv + ["--mode", mode], log=lines.append)
            for mode in example.MODES}
  assert any("8 cpu devices" in line for line in lines), lines
  first, second = runs["shard_map"], runs["gspmd"]
  assert first["num_devices"] == NUM_DEVICES
  assert len(first["losses"]) == 2 and np.all(np.isfinite(first["losses"]))
  # The gspmd mode compiles the single-device program (the loss without
  # axis_name) for split inputs; the shard_map mode, written per device with
  # axis_name, must agree with it step by step.
  np.testing.assert_allclose(first["losses"], second["losses"], rtol=1e-5)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
      first["params"], second["params"])
  assert np.isfinite(first["test_miou"])
