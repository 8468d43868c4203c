"""Multi-device behaviour, on eight simulated CPU devices in the test process.

The root ``conftest.py`` asks JAX for eight CPU devices before any backend
starts (``jax_num_cpu_devices``). The rest of the suite runs on the first of
them, where ``jax.jit`` places its work by default; here the meshes, ``pmap``
and the references are put on the CPU devices explicitly, so these checks
run on the simulated devices also on a machine with an accelerator.

References are the single-device losses on the whole (global) batch and
``jax.grad`` of them; each device's gradient must be its slice of that. The
checks: ``axis_name`` under ``shard_map`` and ``pmap`` (value and per-device
gradient) for the overlap losses and both Lovász engines, forward mode inside
``shard_map``, GSPMD for one function of each family and layout, the errors,
and a few steps of ``examples/data_parallel.py``.

Compiling is most of the time here, so programs are shared: the references
are cached and reused by the checks on the same inputs, and the GSPMD
functions and the Lovász losses each run side by side in one program a mode
(an error raised while building one of those fails every check that reads
from it; a wrong value fails only the check of its function).
"""

import functools
import importlib.util
import inspect
import os
import sys
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jaxloss
from jaxloss import _lovasz
from tests.test_api import CASES

NUM_DEVICES = 8
HERE = os.path.dirname(os.path.abspath(__file__))


def _cpus():
  return jax.devices("cpu")[:NUM_DEVICES]


@pytest.fixture(autouse=True, scope="module")
def _cpu_devices_and_a_cheap_prng():
  """Single-device work on the first CPU device; the ``rbg`` PRNG (the same
  statistics, a fraction of threefry's compile time on CPU)."""
  previous = jax.config.jax_default_prng_impl
  jax.config.update("jax_default_prng_impl", "rbg")
  with jax.default_device(_cpus()[0]):
    yield
  jax.config.update("jax_default_prng_impl", previous)


def _mesh(shape=(NUM_DEVICES,), names=("d",)):
  return jax.make_mesh(
    shape,
    names,
    axis_types=(jax.sharding.AxisType.Auto,) * len(shape),
    devices=_cpus(),
  )


def _pmap(fn, axis_name):
  return jax.pmap(fn, axis_name=axis_name, devices=_cpus())


def _per_device(x):
  return x.reshape((NUM_DEVICES, -1) + x.shape[1:])


def _shard_map_grad(fn, mesh, spec, check_vma):
  """Per-device value and gradient inside ``shard_map``, gathered back."""

  def local(p, y, m):
    return jax.value_and_grad(fn)(p, y, m)

  return jax.jit(
    jax.shard_map(
      local,
      mesh=mesh,
      in_specs=(spec, spec, spec),
      out_specs=(P(), spec),
      check_vma=check_vma,
    )
  )


def _assert_value_and_grad(value, grad, ref_value, ref_grad):
  np.testing.assert_allclose(value, ref_value, rtol=2e-6, atol=1e-7)
  scale = float(jnp.max(jnp.abs(ref_grad)))
  assert scale > 0
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-6 * scale)


def test_eight_simulated_cpu_devices():
  assert len(_cpus()) == NUM_DEVICES, jax.devices("cpu")


# --------------------------------------------------------------------------
# The overlap losses under shard_map and pmap.

OVERLAP = (
  "dice_loss",
  "iou_loss",
  "tversky_loss",
  "generalized_dice_loss",
  "mcc_loss",
  "generalized_wasserstein_dice_loss",
  # From logits (the probabilities serve as logits): "name[activation]".
  "dice_loss[softmax]",
  "tversky_loss[sigmoid]",
)
# Options that change what is pooled: masks, present classes, soft targets,
# squared denominators, generalized-Dice and class-volume weights, the
# pixel counts of the MCC.
OPTIONS = {
  "dice_loss": {"where": True, "squared": True},
  "iou_loss": {"classes": "present", "where": True},
  "tversky_loss": {"alpha": 0.3, "beta": 0.7, "gamma": 0.75, "soft": True},
  "generalized_dice_loss": {"weighting": "square", "where": True},
  # No mask: the pixel count is then a constant of each device, summed too.
  "mcc_loss": {"classes": "present"},
  "generalized_wasserstein_dice_loss": {
    "weighting": "gdl",
    "where": True,
    "soft": True,
  },
  "dice_loss[softmax]": {"activation": "softmax", "where": True},
  "tversky_loss[sigmoid]": {"activation": "sigmoid", "soft": True},
}


@functools.cache
def _region_batch(seed, soft=False, where=False):
  """probs [16, 3, 4, 5], labels (ids [16, 3, 4] or soft targets), mask or None.

  Class 4 never occurs in the labels and class 3 only in the second half of
  the batch, so "present" classes and the generalized-Dice weights differ
  between a device's shard and the global batch.
  """
  batch = 2 * NUM_DEVICES
  rng = np.random.default_rng(seed)
  logits = 3 * rng.standard_normal((batch, 3, 4, 5))
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  ids = rng.integers(0, 3, (batch, 3, 4)).astype(np.int32)
  ids[batch // 2 :, 0, 0] = 3
  labels = ids
  if soft:
    labels = (0.8 * np.eye(5)[ids] + 0.04).astype(np.float32)
  mask = jnp.asarray(rng.random((batch, 3, 4)) < 0.7) if where else None
  return jnp.asarray(probs, jnp.float32), jnp.asarray(labels), mask


class _Case(NamedTuple):
  loss: Any  # the loss with its options, takes where= and axis_name=
  probs: jax.Array
  labels: jax.Array
  mask: jax.Array  # all True where the options have no mask
  value: jax.Array  # the single-device loss on the global batch
  grad: jax.Array  # and its gradient
  local: jax.Array  # the loss of the first device's shard alone


@functools.cache
def _overlap_case(name):
  opts = dict(OPTIONS[name])
  soft, where = opts.pop("soft", False), opts.pop("where", False)
  probs, labels, mask = _region_batch(1, soft=soft, where=where)
  loss = functools.partial(getattr(jaxloss, name.split("[")[0]), **opts)
  shard = slice(0, 2)

  @jax.jit
  def reference(p, y, m):
    value, grad = jax.value_and_grad(lambda p: loss(p, y, where=m))(p)
    local = loss(p[shard], y[shard], where=None if m is None else m[shard])
    return value, grad, local

  mask_arg = jnp.ones(probs.shape[:-1], bool) if mask is None else mask
  return _Case(loss, probs, labels, mask_arg, *reference(probs, labels, mask))


# Every overlap loss type-checked; the unchecked shard_map (whose psum
# transposes like pmap's) on the one whose statistics all change with pooling.
@pytest.mark.parametrize(
  "name, check_vma",
  [(n, True) for n in OVERLAP] + [("generalized_dice_loss", False)],
)
def test_shard_map_value_and_per_device_gradient(name, check_vma):
  """Every device: the global loss, and its slice of the global gradient."""
  case = _overlap_case(name)
  # A shard's own loss differs from the global one: pooling matters here.
  assert abs(float(case.local) - float(case.value)) > 1e-3
  fn = lambda p, y, m: case.loss(p, y, where=m, axis_name="d")
  value, grad = _shard_map_grad(fn, _mesh(), P("d"), check_vma)(
    case.probs, case.labels, case.mask
  )
  _assert_value_and_grad(value, grad, case.value, case.grad)


@pytest.mark.parametrize("name", ["dice_loss", "generalized_dice_loss"])
def test_pmap_value_and_per_device_gradient(name):
  case = _overlap_case(name)
  value, grad = _pmap(
    jax.value_and_grad(lambda p, y, m: case.loss(p, y, where=m, axis_name="i")),
    "i",
  )(*map(_per_device, (case.probs, case.labels, case.mask)))
  np.testing.assert_allclose(
    value, np.full(NUM_DEVICES, case.value), rtol=2e-6, atol=1e-7
  )
  _assert_value_and_grad(
    value[0], grad.reshape(case.probs.shape), case.value, case.grad
  )


@pytest.mark.parametrize("name", ["dice_loss", "generalized_dice_loss"])
def test_float64_per_device_gradient_is_the_slice_to_rounding(name):
  """In float64 the only difference left is the order of the sums."""
  case = _overlap_case(name)
  with jax.enable_x64(True):
    probs = case.probs.astype(jnp.float64)
    labels = case.labels
    if jnp.issubdtype(labels.dtype, jnp.floating):
      labels = labels.astype(jnp.float64)
    ref_value, ref_grad = jax.jit(
      jax.value_and_grad(lambda p: case.loss(p, labels, where=case.mask))
    )(probs)
    fn = lambda p, y, m: case.loss(p, y, where=m, axis_name="d")
    value, grad = _shard_map_grad(fn, _mesh(), P("d"), True)(
      probs, labels, case.mask
    )
    assert value.dtype == grad.dtype == jnp.float64
    np.testing.assert_allclose(value, ref_value, rtol=1e-13)
    np.testing.assert_allclose(
      grad, ref_grad, rtol=1e-12, atol=1e-13 * float(jnp.max(jnp.abs(ref_grad)))
    )


@pytest.mark.parametrize("name", ["dice_loss", "lovasz_softmax"])
def test_forward_mode_in_shard_map_is_the_global_tangent(name):
  probs, labels, _ = _region_batch(4)
  tangent = jax.random.normal(jax.random.PRNGKey(5), probs.shape)
  loss = getattr(jaxloss, name)
  ref_value, ref_tangent = jax.jit(
    lambda p, y, t: jax.jvp(lambda p: loss(p, y), (p,), (t,))
  )(probs, labels, tangent)
  value, tangent_out = jax.jit(
    jax.shard_map(
      lambda p, y, t: jax.jvp(lambda p: loss(p, y, axis_name="d"), (p,), (t,)),
      mesh=_mesh(),
      in_specs=P("d"),
      out_specs=(P(), P()),
    )
  )(probs, labels, tangent)
  np.testing.assert_allclose(value, ref_value, rtol=2e-6, atol=1e-7)
  np.testing.assert_allclose(tangent_out, ref_tangent, rtol=1e-5, atol=1e-6)


def test_two_mesh_axes_batch_and_height():
  """A batch split over one mesh axis and the height over another."""
  mesh = _mesh((4, 2), ("b", "h"))
  rng = np.random.default_rng(3)
  probs = jax.nn.softmax(
    jnp.asarray(rng.normal(0, 2, (8, 4, 3, 4)), jnp.float32), axis=-1
  )
  labels = jnp.asarray(rng.integers(0, 4, (8, 4, 3)), jnp.int32)
  mask = jnp.ones(labels.shape, bool)
  ref_value, ref_grad = jax.jit(jax.value_and_grad(jaxloss.dice_loss))(
    probs, labels
  )
  fn = lambda p, y, m: jaxloss.dice_loss(p, y, where=m, axis_name=("b", "h"))
  value, grad = _shard_map_grad(fn, mesh, P("b", "h"), True)(
    probs, labels, mask
  )
  _assert_value_and_grad(value, grad, ref_value, ref_grad)


@pytest.mark.parametrize(
  "name, options",
  [
    ("tversky_loss", {"alpha": 0.3, "beta": 0.7}),
    ("lovasz_softmax", {}),
  ],
)
def test_replicated_parameters_get_the_global_gradient(name, options):
  """Data parallel: a per-pixel linear model, parameters replicated, batch
  split, the loss of the global batch.

  Inside ``shard_map`` the gradient of replicated parameters comes back summed
  over the devices' shares; under ``pmap`` each device holds its share and
  their sum is the global gradient.
  """
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.standard_normal((16, 6, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 4, (16, 6)), jnp.int32)
  where = jnp.asarray(rng.random((16, 6)) < 0.8)
  w = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)

  def loss(w, x, y, m, axis_name=None):
    probs = jax.nn.softmax(jnp.einsum("bnk,kc->bnc", x, w), axis=-1)
    return getattr(jaxloss, name)(
      probs, y, where=m, axis_name=axis_name, **options
    )

  ref = jax.jit(jax.grad(loss))(w, x, labels, where)
  grad = jax.jit(
    jax.shard_map(
      lambda w, x, y, m: jax.grad(loss)(w, x, y, m, "d"),
      mesh=_mesh(),
      in_specs=(P(), P("d"), P("d"), P("d")),
      out_specs=P(),
    )
  )(w, x, labels, where)
  atol = 1e-6 * float(jnp.max(jnp.abs(ref)))
  np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=atol)
  shares = _pmap(lambda x, y, m: jax.grad(loss)(w, x, y, m, "i"), "i")(
    *map(_per_device, (x, labels, where))
  )
  np.testing.assert_allclose(jnp.sum(shares, axis=0), ref, rtol=1e-5, atol=atol)


def test_per_image_loss_needs_no_communication():
  """``axis=(1, 2)`` on a batch-split input: each device its own images."""
  probs, labels, _ = _region_batch(6)
  ref = jax.jit(functools.partial(jaxloss.dice_loss, axis=(1, 2)))(
    probs, labels
  )
  per_image = jax.jit(
    jax.shard_map(
      lambda p, y: jaxloss.dice_loss(p, y, axis=(1, 2)),
      mesh=_mesh(),
      in_specs=P("d"),
      out_specs=P("d"),
    )
  )
  np.testing.assert_allclose(
    per_image(probs, labels), ref, rtol=1e-6, atol=1e-7
  )
  hlo = per_image.lower(probs, labels).as_text()
  assert "all_reduce" not in hlo and "all-reduce" not in hlo


# --------------------------------------------------------------------------
# The Lovász losses on both sort engines.

ENGINES = ("host", "xla")
LOVASZ = {
  "softmax": (_lovasz.softmax_with_engine, {}),
  "softmax_all": (_lovasz.softmax_with_engine, {"classes": "all"}),
  # From logits (the probabilities serve as logits here).
  "softmax_logits": (_lovasz.softmax_with_engine, {"activation": "softmax"}),
  "hinge": (_lovasz.hinge_with_engine, {}),
}


@functools.cache
def _lovasz_inputs(ties=False):
  """probs [16, 4, 5, 3] and ids, a mask, hinge logits and 0/1 labels."""
  rng = np.random.default_rng(0)
  logits = 3 * rng.standard_normal((NUM_DEVICES * 2, 4, 5, 3))
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs = (probs / probs.sum(-1, keepdims=True)).astype(np.float32)
  if ties:
    probs[:] = 1 / 3
  labels = rng.integers(0, 3, probs.shape[:-1]).astype(np.int32)
  labels[:, 0, 0] = 2  # every shard has class 2; class 1 rare
  labels[labels == 1] = 0
  labels[3, 1, 1] = 1
  where = rng.random(labels.shape) < 0.8
  hinge_logits = (2 * rng.standard_normal(labels.shape)).astype(np.float32)
  hinge_labels = (rng.random(labels.shape) < 0.3).astype(np.int32)
  return tuple(
    map(jnp.asarray, (probs, labels, where, hinge_logits, hinge_labels))
  )


def _lovasz_value_and_grads(engine, inputs, *, axis_name=None, modes):
  """{name: ((value, grad) for each mode)}, modes "plain" or "masked"."""
  out = {}
  for name, (x, y, w) in inputs.items():
    fn, options = LOVASZ[name]
    loss = functools.partial(fn, engine=engine, axis_name=axis_name, **options)
    out[name] = tuple(
      jax.value_and_grad(lambda x, m: loss(x, y, where=m))(
        x, w if mode == "masked" else None
      )
      for mode in modes
    )
  return out


@functools.cache
def _lovasz_run(engine, how):
  """Every Lovász loss on one engine, in one program: ``how`` is
  "reference" (the global batch on one device, without and with the mask),
  "shard_map" (type-checked, without and with the mask), "unchecked"
  (shard_map without check_vma, with the mask) or "pmap" (with the mask).
  Returns {name: ((value, grad), ...)} in that order."""
  probs, labels, where, hinge_logits, hinge_labels = _lovasz_inputs()
  inputs = {
    name: (
      (hinge_logits, hinge_labels, where)
      if name == "hinge"
      else (probs, labels, where)
    )
    for name in LOVASZ
  }
  modes = (
    ("plain", "masked") if how in ("reference", "shard_map") else ("masked",)
  )
  run = functools.partial(_lovasz_value_and_grads, engine, modes=modes)
  if how == "reference":
    return jax.jit(run)(inputs)
  if how == "pmap":
    return _pmap(functools.partial(run, axis_name="d"), "d")(
      jax.tree.map(_per_device, inputs)
    )
  out_specs = {name: ((P(), P("d")),) * len(modes) for name in LOVASZ}
  return jax.jit(
    jax.shard_map(
      functools.partial(run, axis_name="d"),
      mesh=_mesh(),
      in_specs=P("d"),
      out_specs=out_specs,
      check_vma=how == "shard_map",
    )
  )(inputs)


def _close(actual, expected, what):
  np.testing.assert_allclose(
    np.asarray(actual), np.asarray(expected), rtol=1e-5, atol=1e-6, err_msg=what
  )


@pytest.mark.parametrize("name", LOVASZ)
@pytest.mark.parametrize("engine", ENGINES)
def test_lovasz_shard_map_equals_the_global_batch(engine, name):
  plain, masked = _lovasz_run(engine, "reference")[name]
  checked = _lovasz_run(engine, "shard_map")[name]
  unchecked = _lovasz_run(engine, "unchecked")[name]
  for (value, grad), (ref_value, ref_grad), what in zip(
    checked + unchecked,
    (plain, masked, masked),
    ("unmasked", "masked", "masked, check_vma=False"),
  ):
    _close(value, ref_value, what)
    _close(grad, ref_grad, what)


@pytest.mark.parametrize("name", LOVASZ)
@pytest.mark.parametrize("engine", ENGINES)
def test_lovasz_pmap_every_device_has_the_global_value(engine, name):
  _, (ref_value, ref_grad) = _lovasz_run(engine, "reference")[name]
  ((value, grad),) = _lovasz_run(engine, "pmap")[name]
  _close(value, np.full(NUM_DEVICES, ref_value), "value")
  _close(grad.reshape(ref_grad.shape), ref_grad, "gradient")


@pytest.mark.parametrize("engine", ENGINES)
def test_lovasz_ties_give_the_single_device_subgradient(engine):
  """Uniform probabilities: ties everywhere. The devices split the leading
  pooled axis in order, so the global tie order (by pixel index), and with it
  the subgradient, are those of one device."""
  probs, labels, _, _, _ = _lovasz_inputs(ties=True)
  loss = functools.partial(_lovasz.softmax_with_engine, engine=engine)
  ref_value, ref_grad = jax.jit(jax.value_and_grad(loss))(probs, labels)
  value, grad = jax.jit(
    jax.shard_map(
      jax.value_and_grad(lambda p, y: loss(p, y, axis_name="d")),
      mesh=_mesh(),
      in_specs=P("d"),
      out_specs=(P(), P("d")),
    )
  )(probs, labels)
  _close(value, ref_value, "value")
  np.testing.assert_array_equal(grad, ref_grad)


# --------------------------------------------------------------------------
# Errors.


def _takes_axis_name(name):
  fn = getattr(jaxloss, name)
  return callable(fn) and "axis_name" in inspect.signature(fn).parameters


def test_every_axis_name_loss_is_checked_here():
  """The overlap and Lovász checks above cover every loss with
  ``axis_name``; a new one needs its own."""
  checked = {n.split("[")[0] for n in OVERLAP}
  checked |= {"lovasz_softmax", "lovasz_hinge"}
  assert {n for n in jaxloss.__all__ if _takes_axis_name(n)} == checked


# One function of each family and layout, for GSPMD (which partitions XLA
# programs, so functions built the same way behave the same): the
# elementwise, softmax, pooled, sorted, pairwise, box, rotated-box, bin,
# distance, stencil-loop and matrix-product cases.
GSPMD = [
  "focal_loss",
  "softmax_focal_loss",
  "dice_loss",
  "generalized_dice_loss",
  "lovasz_softmax",
  "lovasz_hinge",
  "box_ciou_loss",
  "generalized_box_iou",
  "box_convert",
  "rotated_box_kld_loss",
  "distribution_focal_loss",
  "boundary_loss",
  "hausdorff_er_loss",
  "distance_transform",
  "mask_dice_cost",
]


@functools.cache
def _global_cases():
  """{name: (args, kwargs)} for every GSPMD name: the API table's case, four
  draws of its batch of two stacked to a batch of 8 along axis 0. One
  program draws them all."""
  kwargs = {name: {} for name in GSPMD}

  def draw(seed):
    out = {}
    for name in GSPMD:
      args, kw = CASES[name](*jax.random.split(jax.random.PRNGKey(seed)))
      kwargs[name].update(kw)  # Python options, the same for every seed
      out[name] = args
    return out

  drawn = jax.jit(jax.vmap(draw))(jnp.arange(NUM_DEVICES // 2))
  return {
    name: (
      tuple(a.reshape((NUM_DEVICES,) + a.shape[2:]) for a in drawn[name]),
      kwargs[name],
    )
    for name in GSPMD
  }


@pytest.mark.parametrize(
  "name", ["dice_loss", "lovasz_softmax", "lovasz_hinge"]
)
def test_unbound_axis_name_is_jax_error(name):
  args, kwargs = _global_cases()[name]
  loss = functools.partial(getattr(jaxloss, name), axis_name="d", **kwargs)
  with pytest.raises(NameError, match="unbound axis name"):
    loss(*args)
  with pytest.raises(NameError, match="unbound axis name"):
    jax.jit(loss)(*args)


def test_mismatched_per_device_shapes_fail_at_trace_time():
  probs, labels, _ = _region_batch(8)
  mesh = _mesh()
  # probs split over the devices, labels whole: shapes disagree per device.
  split_probs_only = jax.jit(
    jax.shard_map(
      lambda p, y: jaxloss.dice_loss(p, y, axis_name="d"),
      mesh=mesh,
      in_specs=(P("d"), P()),
      out_specs=P(),
    )
  )
  with pytest.raises(ValueError, match=r"dice_loss: labels.shape \(16, 3, 4\)"):
    split_probs_only.trace(probs, labels)
  # A global batch the devices cannot split evenly.
  even_split = jax.jit(
    jax.shard_map(
      lambda p, y: jaxloss.dice_loss(p, y, axis_name="d"),
      mesh=mesh,
      in_specs=P("d"),
      out_specs=P(),
    )
  )
  with pytest.raises(ValueError, match="divisible|evenly"):
    even_split.trace(probs[:12], labels[:12])


# --------------------------------------------------------------------------
# GSPMD: batch-sharded inputs, plain jax.jit.


def test_gspmd_names_are_public_cases():
  assert set(GSPMD) <= set(CASES)


def _value_and_grad(name, kwargs):
  """The function's output and the gradient of its sum in its first input
  (None where that input is not floating point)."""
  fn = functools.partial(getattr(jaxloss, name), **kwargs)

  def value_and_grad(first, *rest):
    out = fn(first, *rest)
    if not jnp.issubdtype(first.dtype, jnp.floating):
      return out, None
    return out, jax.grad(lambda x: jnp.sum(fn(x, *rest)))(first)

  return value_and_grad


@functools.cache
def _gspmd_runs():
  """The same program twice: on one device, and on inputs split over eight.

  One program holds every GSPMD function side by side (independent parts:
  each is partitioned as it would be alone); it compiles in a fraction of
  the time of one program each. Returns the unsharded and the sharded
  results and the sharded inputs, each {name: ...}.
  """
  cases = _global_cases()
  run = jax.jit(
    lambda inputs: {
      name: _value_and_grad(name, kwargs)(*inputs[name])
      for name, (_, kwargs) in cases.items()
    }
  )
  inputs = {name: args for name, (args, _) in cases.items()}
  sharded = jax.device_put(inputs, NamedSharding(_mesh(), P("d")))
  return run(inputs), run(sharded), sharded


@pytest.mark.parametrize("name", GSPMD)
def test_gspmd_batch_sharded_equals_unsharded(name):
  reference, split, inputs = _gspmd_runs()
  assert all(
    len(a.addressable_shards) == NUM_DEVICES
    and a.addressable_shards[0].data.shape[0] == 1
    for a in inputs[name]
  )
  (ref_out, ref_grad), (out, grad) = reference[name], split[name]
  np.testing.assert_allclose(out, ref_out, rtol=2e-5, atol=1e-6)
  if ref_grad is not None:
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


def test_data_parallel_example_matches_single_device(monkeypatch):
  example = _example()
  # The example builds its mesh from jax.devices() with jax.make_mesh, both
  # on the default backend's devices: here the CPU devices, whatever that is.
  cpus = _cpus()
  monkeypatch.setattr(
    example.jax, "make_mesh", functools.partial(jax.make_mesh, devices=cpus)
  )
  monkeypatch.setattr(example.jax, "devices", lambda *_: cpus)
  argv = [
    "--steps",
    "2",
    "--size",
    "24",
    "--width",
    "4",
    "--per-device-batch",
    "1",
    "--train-size",
    "32",
    "--test-size",
    "8",
    "--log-every",
    "1",
  ]
  if "depth" in inspect.signature(example.unet.UNet).parameters:
    argv += ["--depth", "1"]  # the shallowest U-Net compiles fastest
  lines = []
  # optax's Adam bias correction mixes float and int32 powers, which the
  # test-wide strict promotion rejects: the example runs with JAX's default.
  with jax.numpy_dtype_promotion("standard"):
    runs = {
      mode: example.main(argv + ["--mode", mode], log=lines.append)
      for mode in example.MODES
    }
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
    first["params"],
    second["params"],
  )
  assert np.isfinite(first["test_miou"])
