"""Distance transform and boundary-aware losses against scipy and dice_loss.

    python benchmarks/boundary.py [--repeats 7] [--loss-shape 8 128 128 4]
        [--parts distance losses cldice]

Part 1, ``jaxloss.distance_transform`` under ``jax.jit`` against
``scipy.ndimage.distance_transform_edt`` called per image in a Python loop
(how MONAI computes its distance maps), in the same run, on:

* ``[8, 256, 256]``: blob masks (thresholded smoothed noise, 30 % True), and
  the complement of a few small disks (the distances outside small
  objects, the boundary-loss case of a small lesion: large distances);
* ``[2, 96, 96, 96]``: blob volumes.

Each is timed in interleaved rounds (one call of each per round) with
``block_until_ready``; the medians are printed with the ratio to scipy and
the compiled temporary memory
(``jax.jit(f).lower(...).compile().memory_analysis().temp_size_in_bytes``)
next to the size of the boolean mask. Targets: within 2x of scipy,
temporaries at most 8x the mask.

Part 2, each loss of ``softmax(logits)`` in a train step,
``jax.jit(jax.value_and_grad(loss))`` with respect to the logits, labels (blob
class ids) passed as arguments, next to ``dice_loss`` of the same
probabilities and, for the boundary loss, the host-side recipe: scipy
distance maps per image and class, then the jitted ``mean(p * phi)`` step;
the grad-only time is printed beside (for reference: XLA drops the forward
value there), with the compiled temporaries next to the size of the logits.

Part 3, ``cldice_loss`` of ``softmax(logits)`` in the same train step at
``[8, 128, 128, 4]`` and ``[1, 1024, 2048, 2]``, against a baseline in the
same run: the same loss with the soft skeleton's loop differentiated by JAX's
autodiff (its derivative before the written-out one), with each one's
compiled temporaries and their ratio to the logits (target: at most 8x, no
slower than the baseline).

Every timing goes through ``harness.timed`` (warm-up, cold caches,
interleaved rounds, medians).
"""

from __future__ import annotations

import argparse
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

import _harness as harness
import jaxloss
from jaxloss import _boundary


def blobs(shape, seed=0, sigma=8.0, fraction=0.3):
  """Masks of smooth random regions: thresholded Gaussian-filtered noise."""
  noise = np.random.default_rng(seed).normal(size=shape)
  smooth = ndimage.gaussian_filter(noise, (0,) + (sigma,) * (len(shape) - 1))
  return smooth > np.quantile(smooth, 1 - fraction)


def outside_small_disks(shape, count=4, radius=4, seed=1):
  """True outside a few small disks of each image: distances up to ~200."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[: shape[1], : shape[2]]
  mask = np.ones(shape, bool)
  for b in range(shape[0]):
    for y, x in rng.integers(radius, shape[1] - radius, (count, 2)):
      mask[b][(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = False
  return mask


def scipy_per_image(mask):
  return np.stack([ndimage.distance_transform_edt(m) for m in mask])


def distance_part(repeats):
  print("\nPart 1: distance_transform (jit) vs scipy per image")
  print(
    f"  {'input':34s} {'jaxloss ms':>11s} {'scipy ms':>9s} "
    f"{'x scipy':>8s} {'temp MiB':>9s} {'x mask':>7s}"
  )
  ok = True
  cases = [
    ("[8, 256, 256] blobs", blobs((8, 256, 256))),
    ("[8, 256, 256] outside small disks", outside_small_disks((8, 256, 256))),
    ("[2, 96, 96, 96] blobs", blobs((2, 96, 96, 96))),
  ]
  for label, mask in cases:
    axes = tuple(range(1, mask.ndim))
    f = jax.jit(lambda m, axes=axes: jaxloss.distance_transform(m, axis=axes))
    device_mask = jnp.asarray(mask)
    err = np.max(np.abs(np.asarray(f(device_mask)) - scipy_per_image(mask)))
    assert err < 1e-3, (label, err)
    ms = harness.timed(
      {"jax": (f, (device_mask,)), "scipy": (scipy_per_image, (mask,))}, repeats
    )
    temp = harness.temp_mib(f, device_mask)
    mask_mib = mask.size / 2**20
    ratio = ms["jax"] / ms["scipy"]
    ok &= ratio <= 2 and temp / mask_mib <= 8
    print(
      f"  {label:34s} {ms['jax']:11.1f} {ms['scipy']:9.1f} "
      f"{ratio:8.2f} {temp:9.2f} {temp / mask_mib:7.2f}"
    )
  print(
    f"  targets (within 2x of scipy, temporaries <= 8x the mask): "
    f"{'ok' if ok else 'MISSED'}"
  )


def loss_part(shape, repeats):
  num_classes = shape[-1]
  k1, _ = jax.random.split(jax.random.PRNGKey(0))
  logits = 2 * jax.random.normal(k1, shape, jnp.float32)
  # Class ids of smooth regions: the argmax of smoothed noise per class.
  noise = np.random.default_rng(2).normal(size=shape)
  smooth = ndimage.gaussian_filter(noise, (0, 6, 6, 0))
  ids = jnp.asarray(np.argmax(smooth, axis=-1), jnp.int32)
  mib = logits.size * 4 / 2**20
  print(
    f"\nPart 2: value_and_grad of loss(softmax(logits), ids) under jit; "
    f"logits {shape} float32 ({mib:.1f} MiB)"
  )

  def phi_scipy(ids):
    """The boundary loss's signed maps on the host, per image and class."""
    ids = np.asarray(ids)
    phi = np.zeros(ids.shape + (num_classes,), np.float32)
    for b in range(ids.shape[0]):
      for c in range(num_classes):
        pos = ids[b] == c
        if pos.any() and not pos.all():
          neg = ~pos
          phi[b, ..., c] = (
            neg * ndimage.distance_transform_edt(neg)
            - (ndimage.distance_transform_edt(pos) - 1) * pos
          )
    return phi

  host_step = harness.value_and_grad(
    lambda x, phi: jnp.mean(jax.nn.softmax(x) * phi)
  )

  def host_recipe(x, ids):
    return host_step(x, jnp.asarray(phi_scipy(ids)))

  losses = {
    "dice_loss": lambda x, y: jaxloss.dice_loss(jax.nn.softmax(x), y),
    "boundary_loss": lambda x, y: jaxloss.boundary_loss(jax.nn.softmax(x), y),
    "hausdorff_dt_loss": lambda x, y: jaxloss.hausdorff_dt_loss(
      jax.nn.softmax(x), y
    ),
    "cldice_loss": lambda x, y: jaxloss.cldice_loss(jax.nn.softmax(x), y),
  }
  fns = {
    name: (harness.value_and_grad(loss), (logits, ids))
    for name, loss in losses.items()
  }
  fns["scipy maps + jit mean(p * phi)"] = (host_recipe, (logits, ids))
  grads = {
    "grad " + name: (harness.grad_only(loss), (logits, ids))
    for name, loss in losses.items()
  }
  ms = harness.timed({**fns, **grads}, repeats)
  print(
    f"  {'value_and_grad':34s} {'ms':>9s} {'x dice':>7s} {'grad-only':>10s} "
    f"{'temp MiB':>9s} {'x logits':>9s}"
  )
  for name, (fn, args) in fns.items():
    if name in losses:
      temp = harness.temp_mib(fn, *args)
      extra = f"{ms['grad ' + name]:10.1f} {temp:9.1f} {temp / mib:9.2f}"
    else:
      extra = f"{'':10s} {'':9s} {'':9s}"
    print(
      f"  {name:34s} {ms[name]:9.1f} {ms[name] / ms['dice_loss']:7.2f} {extra}"
    )
  print(
    f"  boundary_loss: {ms['scipy maps + jit mean(p * phi)'] / ms['boundary_loss']:.2f}x "
    "faster than the scipy-maps recipe"
  )


# The soft skeleton's loop without its custom derivative.
_autodiff_skeleton = _boundary._skeleton.fun


def cldice_part(repeats):
  print(
    "\nPart 3: cldice_loss value_and_grad, written-out derivative vs "
    "autodiff through the skeleton's loop"
  )
  print(
    f"  {'logits':18s} {'variant':10s} {'ms':>9s} {'x base':>7s} "
    f"{'temp MiB':>9s} {'x logits':>9s}"
  )
  ok = True
  for shape in [(8, 128, 128, 4), (1, 1024, 2048, 2)]:
    logits = 2 * jax.random.normal(jax.random.PRNGKey(0), shape, jnp.float32)
    noise = np.random.default_rng(2).normal(size=shape)
    smooth = ndimage.gaussian_filter(noise, (0, 6, 6, 0))
    ids = jnp.asarray(np.argmax(smooth, axis=-1), jnp.int32)
    compiled = {}
    skeletons = {"written": _boundary._skeleton, "autodiff": _autodiff_skeleton}
    for name in skeletons:
      # A fresh function each, compiled here: the baseline keeps the loop
      # it was traced with.
      step = harness.value_and_grad(
        lambda x, y: jaxloss.cldice_loss(jax.nn.softmax(x), y)
      )
      skeleton = skeletons[name]
      with mock.patch.object(_boundary, "_skeleton", skeleton):
        compiled[name] = step.lower(logits, ids).compile()
    value, grad = compiled["written"](logits, ids)
    base_value, base_grad = compiled["autodiff"](logits, ids)
    err = float(jnp.max(jnp.abs(grad - base_grad)) / jnp.max(jnp.abs(grad)))
    assert abs(float(value - base_value)) < 1e-6 and err < 1e-4, err
    ms = harness.timed(
      {name: (fn, (logits, ids)) for name, fn in compiled.items()}, repeats
    )
    mib = logits.size * 4 / 2**20
    for name, fn in compiled.items():
      temp = fn.memory_analysis().temp_size_in_bytes / 2**20
      if name == "written":
        ok &= temp / mib <= 8 and ms[name] <= ms["autodiff"]
      print(
        f"  {str(list(shape)):18s} {name:10s} {ms[name]:9.1f} "
        f"{ms[name] / ms['autodiff']:7.2f} {temp:9.1f} {temp / mib:9.2f}"
      )
  print(
    f"  targets (temporaries <= 8x the logits, no slower than autodiff): "
    f"{'ok' if ok else 'MISSED'}"
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument(
    "--loss-shape", type=int, nargs="+", default=[8, 128, 128, 4]
  )
  parser.add_argument(
    "--parts", nargs="+", default=["distance", "losses", "cldice"]
  )
  args = parser.parse_args()
  harness.header(__doc__.splitlines()[0])
  print(f"medians of {args.repeats} interleaved rounds")
  if "distance" in args.parts:
    distance_part(args.repeats)
  if "losses" in args.parts:
    loss_part(tuple(args.loss_shape), args.repeats)
  if "cldice" in args.parts:
    cldice_part(args.repeats)


if __name__ == "__main__":
  main()
