"""The box-regression simulation of the DIoU paper, at laptop size.

Zheng et al., "Distance-IoU Loss: Faster and Better Learning for Bounding Box
Regression", AAAI 2020, Sec. 3.1 (simulation experiment) and its
regression-error curves. https://arxiv.org/abs/1911.08287

Setup, as in the paper, with fewer anchor centres:

* 7 target boxes of area 1 centred at (10, 10), aspect ratios
  1:4, 1:3, 1:2, 1:1, 2:1, 3:1, 4:1;
* anchor centres drawn uniformly in the disc of radius 3 around (10, 10)
  (the paper draws 5000, giving 1,715,000 cases; ``--points`` sets it);
* at every centre, anchors of 7 scales (area 0.5 ... 2 times the target's)
  and the 7 aspect ratios, regressed towards each of the 7 targets;
* gradient descent on ``(cx, cy, w, h)``:
  ``B <- B - lr * (2 - IoU(B, B_gt)) * grad loss(B, B_gt)``, ``lr`` = 0.1 for
  the first 80% of the iterations, then 0.01, then 0.001 for the last 10%;
* the error of a case is ``|B - B_gt|_1`` in ``(cx, cy, w, h)``; the curves
  show its sum over all cases after each iteration, in total and split into
  its centre ``(cx, cy)`` and size ``(w, h)`` parts.

Every loss runs as one ``jit``-compiled ``lax.scan`` over the iterations whose
body is a ``vmap``-ed per-box gradient step; the gradients are exact (autodiff
of the library's losses).

What it shows with the default flags (343,000 cases, 85% of them starting
without overlap): the IoU loss leaves every disjoint case where it started (its
gradient is 0 there) and ends with about 90% of the initial error; GIoU, DIoU,
CIoU and EIoU solve all cases. DIoU and CIoU place the centres best (centre
error per case 0.0015 and 0.0010, GIoU 0.0063) and CIoU ends with the lowest
error of the paper's four losses (1,480 vs GIoU 5,900 and DIoU 10,850). Unlike
the paper's curves, GIoU is ahead of DIoU in total error for most of the run
and ends below it: DIoU's penalty only moves centres, so widths and heights of
mismatched aspect ratios converge as slowly as under the IoU term alone; CIoU's
aspect-ratio term and EIoU's width/height terms fix exactly that.

Run: ``python examples/box_regression_simulation.py [--points 1000] [--out out/]``
(343,000 cases, about half a minute on 2 CPU cores; ``--points 5000`` is the
paper's size).
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss

LOSSES = {
  "IoU": jaxloss.box_iou_loss,
  "GIoU": jaxloss.box_giou_loss,
  "DIoU": jaxloss.box_diou_loss,
  "CIoU": jaxloss.box_ciou_loss,
  "EIoU": jaxloss.box_eiou_loss,
}
ASPECT_RATIOS = (1 / 4, 1 / 3, 1 / 2, 1.0, 2.0, 3.0, 4.0)  # w / h
SCALES = (0.5, 0.67, 0.75, 1.0, 1.33, 1.5, 2.0)  # anchor area / target area
CENTRE = 10.0
RADIUS = 3.0


def make_cases(num_points: int, seed: int = 0):
  """Anchors and their targets, both ``[K, 4]`` as ``(cx, cy, w, h)``.

  ``K = num_points * 7 targets * 7 scales * 7 aspect ratios``.
  """
  rng = np.random.default_rng(seed)
  r = RADIUS * np.sqrt(rng.uniform(size=num_points))  # uniform in the disc
  theta = 2 * np.pi * rng.uniform(size=num_points)
  cx, cy = CENTRE + r * np.cos(theta), CENTRE + r * np.sin(theta)
  ratio = np.asarray(ASPECT_RATIOS)
  target_wh = np.stack([np.sqrt(ratio), 1 / np.sqrt(ratio)], -1)  # area 1
  anchors, targets = [], []
  for tw, th in target_wh:
    for scale in SCALES:
      side = np.sqrt(scale * tw * th)
      for aw, ah in target_wh * side:
        anchors.append(
          np.stack([cx, cy, np.full_like(cx, aw), np.full_like(cx, ah)], -1)
        )
        targets.append(
          np.broadcast_to([CENTRE, CENTRE, tw, th], (num_points, 4))
        )
  return (
    np.concatenate(anchors).astype(np.float32),
    np.concatenate(targets).astype(np.float32),
  )


def learning_rates(iterations: int) -> np.ndarray:
  """0.1, then 0.01 from 80% of the run, then 0.001 from 90% (paper: 160/20/20)."""
  lr = np.full(iterations, 0.1, np.float32)
  lr[int(0.8 * iterations) :] = 0.01
  lr[int(0.9 * iterations) :] = 0.001
  return lr


@functools.cache
def make_simulation(loss_fn):
  """A jit-compiled function ``(anchors, targets, lrs) -> (boxes, errors)``.

  ``errors[t]`` holds the l1 error summed over all cases after iteration
  ``t``, split into ``(cx, cy, w, h)``: shape ``[iterations, 4]``.
  """

  def loss_cxcywh(box, target):
    xyxy = jaxloss.box_convert(box, in_format="cxcywh", out_format="xyxy")
    goal = jaxloss.box_convert(target, in_format="cxcywh", out_format="xyxy")
    return loss_fn(xyxy, goal), jaxloss.box_iou_loss(xyxy, goal)

  def step(box, target, lr):
    grad, iou_loss = jax.grad(loss_cxcywh, has_aux=True)(box, target)
    # (2 - IoU) = (1 + IoU loss): the paper's step-size factor.
    return box - lr * (1 + jax.lax.stop_gradient(iou_loss)) * grad

  batched_step = jax.vmap(step, in_axes=(0, 0, None))

  @jax.jit
  def simulate(anchors, targets, lrs):
    def body(boxes, lr):
      boxes = batched_step(boxes, targets, lr)
      return boxes, jnp.sum(jnp.abs(boxes - targets), axis=0)

    return jax.lax.scan(body, anchors, lrs)

  return simulate


def run(num_points: int, iterations: int, losses=tuple(LOSSES), seed: int = 0):
  """Runs every loss: ``anchors, targets, {name: (final boxes, errors)}``.

  ``errors`` is ``[iterations, 4]``, see :func:`make_simulation`.
  """
  anchors, targets = make_cases(num_points, seed)
  lrs = jnp.asarray(learning_rates(iterations))
  results = {}
  for name in losses:
    boxes, errors = make_simulation(LOSSES[name])(anchors, targets, lrs)
    results[name] = (np.asarray(boxes), np.asarray(errors))
  return anchors, targets, results


def overlaps(anchors: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """Whether each anchor overlaps its target at the start."""
  a = jaxloss.box_convert(
    jnp.asarray(anchors), in_format="cxcywh", out_format="xyxy"
  )
  t = jaxloss.box_convert(
    jnp.asarray(targets), in_format="cxcywh", out_format="xyxy"
  )
  return np.asarray(jaxloss.box_iou_loss(a, t, eps=0.0)) < 1


def plot(anchors, targets, results, path):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax1, ax3, ax2) = plt.subplots(1, 3, figsize=(16, 4.4))
  start = np.abs(anchors - targets).sum(0)
  for name, (_, errors) in results.items():
    errors = np.concatenate([start[None], errors])
    steps = np.arange(len(errors))
    (line,) = ax1.plot(steps, errors.sum(-1), label=name)
    ax3.plot(
      steps,
      errors[:, :2].sum(-1),
      color=line.get_color(),
      label=f"{name} centre",
    )
    ax3.plot(
      steps,
      errors[:, 2:].sum(-1),
      color=line.get_color(),
      ls=":",
      label=f"{name} size",
    )
  for ax in (ax1, ax3):
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
  ax1.set_ylabel(r"total error $\sum_n \|B_n - B^{gt}_n\|_1$")
  ax1.set_title(f"Regression error, {len(anchors):,} cases")
  ax1.legend()
  ax3.set_ylabel("error of the centre (solid) and the size (dotted)")
  ax3.set_title("Centre vs size")

  distance = np.hypot(*(anchors[:, :2] - targets[:, :2]).T)
  bins = np.linspace(0, RADIUS, 13)
  which = np.clip(np.digitize(distance, bins) - 1, 0, len(bins) - 2)
  mids = (bins[1:] + bins[:-1]) / 2
  for name, (boxes, _) in results.items():
    final = np.abs(boxes - targets).sum(-1)
    count = np.bincount(which, minlength=len(mids))
    total = np.bincount(which, weights=final, minlength=len(mids))
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    ax2.plot(mids, mean, marker="o", ms=3, label=name)
  ax2.set_yscale("log")
  ax2.set_xlabel("distance of the anchor centre from the target centre")
  ax2.set_ylabel("mean final error per case")
  ax2.set_title("Final error by starting distance")
  ax2.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--points", type=int, default=1000, help="anchor centres (the paper: 5000)"
  )
  parser.add_argument("--iterations", type=int, default=200)
  parser.add_argument(
    "--losses", nargs="+", default=list(LOSSES), choices=list(LOSSES)
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="out/", help="output directory")
  args = parser.parse_args(argv)

  t0 = time.perf_counter()
  anchors, targets, results = run(
    args.points, args.iterations, args.losses, args.seed
  )
  elapsed = time.perf_counter() - t0
  disjoint = ~overlaps(anchors, targets)
  n = len(anchors)
  print(
    f"{n:,} regression cases ({disjoint.mean():.1%} start without "
    f"overlap), {args.iterations} iterations, {elapsed:.1f} s"
  )
  print(f"initial total error: {np.abs(anchors - targets).sum():12.1f}")
  marks = sorted(
    {
      args.iterations // 10,
      args.iterations // 4,
      args.iterations // 2,
      args.iterations,
    }
  )
  header = "".join(f"  it {m:>4}" for m in marks)
  print(
    "final error per case: mean, and mean over the cases that start "
    "disjoint / overlapping;\n  its centre (cx, cy) and size (w, h) "
    "parts; total error after some iterations"
  )
  print(
    f"{'loss':<5} {'final total':>12} {'per case':>9} {'disjoint':>9} "
    f"{'overlap':>8} {'centre':>7} {'size':>7}{header}"
  )
  for name, (boxes, errors) in results.items():
    error = np.abs(boxes - targets)
    final = error.sum(-1)
    errors = errors.sum(-1)
    curve = "".join(f" {errors[m - 1]:8.0f}" for m in marks)
    print(
      f"{name:<5} {errors[-1]:12.1f} {errors[-1] / n:9.4f} "
      f"{final[disjoint].mean():9.4f} {final[~disjoint].mean():8.4f} "
      f"{error[:, :2].sum(-1).mean():7.4f} "
      f"{error[:, 2:].sum(-1).mean():7.4f}{curve}"
    )
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "box_regression_simulation.png")
  plot(anchors, targets, results, path)
  print(f"saved {path}")


if __name__ == "__main__":
  main()
