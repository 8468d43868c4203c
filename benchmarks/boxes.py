"""Detection losses, fwd+bwd under jit: jaxloss against unguarded formulas.

    python benchmarks/boxes.py [--boxes 1048576] [--pairs 1024] [--repeats 20]

Times ``jax.jit(jax.value_and_grad)`` of the summed loss with respect to the
predictions, boxes passed as arguments, in interleaved rounds (``harness.py``),
and prints the grad-only time beside it (for reference: XLA drops the forward
value there) and the compiled temporary memory of the value-and-grad program
next to the size of the predictions. On a shared machine, read the ratios.

Groups:
  box losses:  jaxloss.box_*_loss  vs  the same formula written directly
               (plain coordinate slices, CIoU with two arctan, no guard
               against 0/0: NaN gradients at degenerate boxes)  vs  the l1
               distance of the corners (a floor)
  pairwise:    jaxloss.box_iou / generalized_box_iou on [N, 4] x [N, 4]  vs
               the direct formula
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp

import _harness as harness
import jaxloss

# Direct transcriptions, no guards: what the guards in jaxloss cost.


def _parts(p, t):
  iw = jnp.clip(
    jnp.minimum(p[..., 2], t[..., 2]) - jnp.maximum(p[..., 0], t[..., 0]), 0
  )
  ih = jnp.clip(
    jnp.minimum(p[..., 3], t[..., 3]) - jnp.maximum(p[..., 1], t[..., 1]), 0
  )
  inter = iw * ih
  pw, ph = p[..., 2] - p[..., 0], p[..., 3] - p[..., 1]
  tw, th = t[..., 2] - t[..., 0], t[..., 3] - t[..., 1]
  union = pw * ph + tw * th - inter
  cw = jnp.maximum(p[..., 2], t[..., 2]) - jnp.minimum(p[..., 0], t[..., 0])
  ch = jnp.maximum(p[..., 3], t[..., 3]) - jnp.minimum(p[..., 1], t[..., 1])
  dx = (p[..., 0] + p[..., 2] - t[..., 0] - t[..., 2]) / 2
  dy = (p[..., 1] + p[..., 3] - t[..., 1] - t[..., 3]) / 2
  return (
    inter / (union + 1e-7),
    union,
    cw,
    ch,
    dx * dx + dy * dy,
    (pw, ph, tw, th),
  )


def direct_iou(p, t):
  return 1 - _parts(p, t)[0]


def direct_giou(p, t):
  iou, union, cw, ch, _, _ = _parts(p, t)
  return 1 - iou + (cw * ch - union) / (cw * ch + 1e-7)


def direct_diou(p, t):
  iou, _, cw, ch, rho2, _ = _parts(p, t)
  return 1 - iou + rho2 / (cw * cw + ch * ch + 1e-7)


def direct_ciou(p, t):
  iou, _, cw, ch, rho2, (pw, ph, tw, th) = _parts(p, t)
  v = 4 / math.pi**2 * (jnp.arctan(tw / th) - jnp.arctan(pw / ph)) ** 2
  alpha = jax.lax.stop_gradient(v / (1 - iou + v + 1e-7))
  return 1 - iou + rho2 / (cw * cw + ch * ch + 1e-7) + alpha * v


def direct_eiou(p, t):
  iou, _, cw, ch, rho2, (pw, ph, tw, th) = _parts(p, t)
  return (
    1
    - iou
    + rho2 / (cw * cw + ch * ch + 1e-7)
    + (pw - tw) ** 2 / (cw * cw + 1e-7)
    + (ph - th) ** 2 / (ch * ch + 1e-7)
  )


def direct_pairwise_iou(a, b):
  a, b = a[:, None, :], b[None, :, :]
  return 1 - direct_iou(
    jnp.broadcast_to(a, (a.shape[0], b.shape[1], 4)),
    jnp.broadcast_to(b, (a.shape[0], b.shape[1], 4)),
  )


def random_boxes(key, n):
  k1, k2 = jax.random.split(key)
  corner = jax.random.uniform(k1, (n, 2), maxval=4.0)
  size = jax.random.uniform(k2, (n, 2), minval=0.2, maxval=3.0)
  return jnp.concatenate([corner, corner + size], axis=-1)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--boxes", type=int, default=1 << 20)
  parser.add_argument("--pairs", type=int, default=1024)
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  keys = jax.random.split(jax.random.PRNGKey(0), 6)
  pred, target = (
    random_boxes(keys[0], args.boxes),
    random_boxes(keys[1], args.boxes),
  )
  harness.header(__doc__.splitlines()[0])
  print(
    f"{args.boxes} box pairs float32, value_and_grad under jit, medians "
    f"of {args.repeats} interleaved rounds"
  )

  floor = lambda p, t: jnp.sum(jnp.abs(p - t), axis=-1)
  for name, direct in (
    ("iou", direct_iou),
    ("giou", direct_giou),
    ("diou", direct_diou),
    ("ciou", direct_ciou),
    ("eiou", direct_eiou),
  ):
    subject = f"jaxloss.box_{name}_loss"
    fns = {
      subject: getattr(jaxloss, f"box_{name}_loss"),
      "direct formula, no guards": direct,
      "floor: l1 of the corners": floor,
    }
    report(
      f"{name.upper()} loss, elementwise",
      fns,
      (pred, target),
      subject,
      args.repeats,
    )

  a = random_boxes(keys[2], args.pairs)
  b = random_boxes(keys[3], args.pairs)
  fns = {
    "jaxloss.box_iou": jaxloss.box_iou,
    "jaxloss.generalized_box_iou": jaxloss.generalized_box_iou,
    "direct pairwise IoU, no guards": direct_pairwise_iou,
  }
  report(
    f"pairwise [{args.pairs}, 4] x [{args.pairs}, 4]",
    fns,
    (a, b),
    "jaxloss.box_iou",
    args.repeats,
    size=("IoUs", args.pairs**2 * 4 / 2**20),
  )


def report(title, losses, args, subject, repeats, size=("pred", None)):
  """Times the ``losses`` (interleaved) on ``args``: value_and_grad, and
  grad-only beside it; prints times, temporaries (next to ``size``: a name
  and its MiB, the predictions by default) and ratios."""
  fns = {k: (harness.value_and_grad(f), args) for k, f in losses.items()}
  grads = {k: (harness.grad_only(f), args) for k, f in losses.items()}
  wall = harness.timed(
    {**fns, **{"grad " + k: v for k, v in grads.items()}}, repeats
  )
  times = {name: wall[name] for name in fns}
  label, ref_mib = size
  ref_mib = ref_mib or args[0].size * args[0].dtype.itemsize / 2**20
  print(f"\n{title}")
  print(
    f"  {'value_and_grad under jit':40s} {'ms':>9s} {'grad-only ms':>13s}"
    f" {'temp MiB':>9s} {'x ' + label:>7s}"
  )
  for name, ms in times.items():
    temp = harness.temp_mib(fns[name][0], *args)
    print(
      f"  {name:40s} {ms:9.2f} {wall['grad ' + name]:13.2f} {temp:9.1f} "
      f"{temp / ref_mib:7.2f}"
    )
  for name, ms in times.items():
    if name.startswith("floor"):
      print(f"  {subject} takes {times[subject] / ms:.2f}x the {name}")
    elif name != subject:
      print(f"  {subject} is {ms / times[subject]:.2f}x faster than {name}")


if __name__ == "__main__":
  main()
