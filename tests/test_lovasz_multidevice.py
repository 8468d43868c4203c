"""Lovász losses across devices (``axis_name``), on 8 simulated CPU devices.

``XLA_FLAGS=--xla_force_host_platform_device_count=8`` must be set before JAX
starts, so the test runs this file as a script in a fresh process; the checks
are the functions ``check_*`` below. Reference: the single-device loss on the
global batch and ``jax.grad`` of it; under ``jax.shard_map`` and ``jax.pmap``
every device must return that value, and its gradient must be its slice of
the global gradient. Both cores (NumPy and XLA) are checked.

Run the checks alone with ``python tests/test_lovasz_multidevice.py``.
"""

import os
import subprocess
import sys

import numpy as np

NUM_DEVICES = 8
IMPLS = ("numpy", "xla")


def test_lovasz_axis_name_on_eight_devices():
  env = dict(os.environ)
  # LLVM optimisations off: these small programs are compiled far more than
  # run, and the float semantics do not change.
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      " --xla_force_host_platform_device_count=8"
                      " --xla_backend_optimization_level=0").strip()
  env["JAX_PLATFORMS"] = "cpu"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, os.path.abspath(__file__)], cwd=root,
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
  assert "all lovasz multi-device checks passed" in proc.stdout, proc.stdout


# ---------------------------------------------------------------------------
# The checks (run in the subprocess).


def _inputs(seed, ties=False):
  rng = np.random.default_rng(seed)
  logits = 3 * rng.standard_normal((NUM_DEVICES * 2, 4, 5, 3))
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs = (probs / probs.sum(-1, keepdims=True)).astype(np.float32)
  if ties:
    probs[:] = 1 / 3
  labels = rng.integers(0, 3, probs.shape[:-1]).astype(np.int32)
  labels[:, 0, 0] = 2                # every shard has class 2; class 1 rare
  labels[labels == 1] = 0
  labels[3, 1, 1] = 1
  where = rng.random(labels.shape) < 0.8
  hinge_logits = (2 * rng.standard_normal(labels.shape)).astype(np.float32)
  hinge_labels = (rng.random(labels.shape) < 0.3).astype(np.int32)
  return probs, labels, where, hinge_logits, hinge_labels


def _losses(impl):
  import functools
  from jaxloss import _lovasz
  return {
      "softmax": functools.partial(_lovasz._lovasz_softmax, impl=impl),
      "softmax_all": functools.partial(_lovasz._lovasz_softmax, impl=impl,
                                       classes="all"),
      "hinge": functools.partial(_lovasz._lovasz_hinge, impl=impl),
  }


def _args(name, data, masked):
  probs, labels, where, hinge_logits, hinge_labels = data
  preds, targets = ((hinge_logits, hinge_labels) if name == "hinge"
                    else (probs, labels))
  return preds, targets, (where if masked else None)


def _close(actual, expected, what):
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected),
                             rtol=1e-5, atol=1e-6, err_msg=what)


def check_shard_map_equals_global_batch():
  import jax
  from jax.sharding import PartitionSpec as P
  mesh = jax.make_mesh((NUM_DEVICES,), ("d",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  data = _inputs(0)
  for impl in IMPLS:
    for name, loss in _losses(impl).items():
      for masked in (False, True):
        preds, targets, where = _args(name, data, masked)
        ref_value, ref_grad = jax.jit(jax.value_and_grad(
            lambda x: loss(x, targets, where=where)))(preds)
        for check_vma in ((True, False) if masked else (True,)):
          def local(x, y, w):
            return jax.value_and_grad(
                lambda x: loss(x, y, where=w, axis_name="d"))(x)
          specs = (P("d"), P("d"), None if where is None else P("d"))
          value, grad = jax.jit(jax.shard_map(
              local, mesh=mesh, in_specs=specs, out_specs=(P(), P("d")),
              check_vma=check_vma))(preds, targets, where)
          what = f"shard_map {impl} {name} masked={masked} vma={check_vma}"
          _close(value, ref_value, what)
          _close(grad, ref_grad, what)


def check_pmap_every_device_has_the_global_value():
  import jax
  data = _inputs(1)
  for impl in IMPLS:
    for name, loss in _losses(impl).items():
      preds, targets, where = _args(name, data, True)
      ref_value, ref_grad = jax.jit(jax.value_and_grad(
          lambda x: loss(x, targets, where=where)))(preds)
      split = lambda a: a.reshape((NUM_DEVICES, -1) + a.shape[1:])
      value, grad = jax.pmap(
          lambda x, y, w: jax.value_and_grad(
              lambda x: loss(x, y, where=w, axis_name="d"))(x),
          axis_name="d")(split(preds), split(targets), split(where))
      what = f"pmap {impl} {name}"
      _close(value, np.full(NUM_DEVICES, ref_value), what)
      _close(grad.reshape(ref_grad.shape), ref_grad, what)


def check_ties_give_the_single_device_subgradient():
  # Uniform probabilities: ties everywhere. The devices split the leading
  # pooled axis in order, so the global tie order (by pixel index) and with
  # it the subgradient are those of one device.
  import jax
  from jax.sharding import PartitionSpec as P
  mesh = jax.make_mesh((NUM_DEVICES,), ("d",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  probs, labels, _, _, _ = _inputs(2, ties=True)
  for impl in IMPLS:
    loss = _losses(impl)["softmax"]
    ref_value, ref_grad = jax.value_and_grad(lambda p: loss(p, labels))(probs)
    value, grad = jax.jit(jax.shard_map(
        lambda p, y: jax.value_and_grad(
            lambda p: loss(p, y, axis_name="d"))(p),
        mesh=mesh, in_specs=P("d"), out_specs=(P(), P("d"))))(probs, labels)
    _close(value, ref_value, f"ties {impl}")
    np.testing.assert_array_equal(grad, ref_grad)


def check_replicated_parameters_get_the_global_gradient():
  # A per-pixel linear model with replicated weights. Inside shard_map the
  # gradient of replicated parameters comes back summed over the devices'
  # shares; under pmap each device holds its share and their sum is the
  # global-batch gradient.
  import jax
  import jax.numpy as jnp
  from jax.sharding import PartitionSpec as P
  import jaxloss
  mesh = jax.make_mesh((NUM_DEVICES,), ("d",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  _, labels, where, features, _ = _inputs(3)
  weights = jnp.array([0.5, -1.0, 2.0])

  def loss(w, x, y, m, axis_name=None):
    probs = jax.nn.softmax(x[..., None] * w, axis=-1)
    return jaxloss.lovasz_softmax(probs, y, where=m, axis_name=axis_name)

  ref = jax.grad(loss)(weights, features, labels, where)
  grad = jax.jit(jax.shard_map(
      lambda w, x, y, m: jax.grad(loss)(w, x, y, m, axis_name="d"),
      mesh=mesh, in_specs=(P(), P("d"), P("d"), P("d")), out_specs=P()))(
          weights, features, labels, where)
  _close(grad, ref, "replicated parameters, shard_map")
  split = lambda a: a.reshape((NUM_DEVICES, -1) + a.shape[1:])
  shares = jax.pmap(
      lambda x, y, m: jax.grad(loss)(weights, x, y, m, axis_name="d"),
      axis_name="d")(split(features), split(labels), split(where))
  _close(np.sum(shares, axis=0), ref, "replicated parameters, pmap")


def _main():
  import jax
  assert jax.device_count() == NUM_DEVICES, jax.devices()
  checks = [f for n, f in sorted(globals().items()) if n.startswith("check_")]
  for check in checks:
    check()
    print(f"{check.__name__}: ok", flush=True)
  print("all lovasz multi-device checks passed")


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  _main()
