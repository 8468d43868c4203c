"""Dense losses in a train step: jaxloss against optax and the floors.

    python benchmarks/dense.py [--shape 8 128 128 21] [--repeats 25]

Times ``jax.jit(jax.value_and_grad(loss))`` with respect to the logits, the
labels passed as arguments (see ``harness.py``), in interleaved rounds, and
prints the medians, the grad-only time beside them (for reference: XLA drops
the forward value there), the compiled temporary memory of the
value-and-grad program next to the size of the logits, and the ratios to the
named baselines with the targets.

Groups:
  focal:    jaxloss.focal_loss  vs  optax.sigmoid_focal_loss  vs  the floor
            value_and_grad(sigmoid(x).mean())
  softmax:  jaxloss.softmax_focal_loss  vs  the floor
            value_and_grad((log_softmax(x) * one_hot(y)).sum())
  IoU-aware: jaxloss.varifocal_loss, quality_focal_loss  vs  focal_loss on the
            same soft targets
  region:   jaxloss.dice_loss / iou_loss / tversky_loss /
            generalized_dice_loss from logits (activation="softmax"), class
            ids and one-hot targets, batch-pooled and per image, and
            dice_loss(softmax(x), one_hot), vs optax.losses.dice_loss at its
            best (one-hot precomputed; and with the one-hot built in the
            step), MONAI's DiceLoss if importable, and the floor
            optax.softmax_cross_entropy_with_integer_labels(x, ids).mean()
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import _harness as harness
import jaxloss


def _table(times, grads, temps, input_mib):
  print(
    f"  {'value_and_grad under jit':44s} {'ms':>8s} {'grad-only ms':>13s}"
    f" {'temp MiB':>9s} {'x logits':>9s}"
  )
  for name, ms in times.items():
    print(
      f"  {name:44s} {ms:8.2f} {grads[name]:13.2f} {temps[name]:9.1f} "
      f"{temps[name] / input_mib:9.2f}"
    )


def _run(entries, repeats, input_mib):
  """Times ``name: (loss, args)``: value_and_grad and grad-only, interleaved."""
  fns = {}
  for name, (loss, args) in entries.items():
    fns[name] = (harness.value_and_grad(loss), args)
    fns["grad " + name] = (harness.grad_only(loss), args)
  ms = harness.timed(fns, repeats)
  times = {name: ms[name] for name in entries}
  grads = {name: ms["grad " + name] for name in entries}
  temps = {
    name: harness.temp_mib(fns[name][0], *entries[name][1]) for name in entries
  }
  _table(times, grads, temps, input_mib)
  return times, temps


def _ratio(label, value, target, ok):
  print(f"  {label}: {value:.2f}x (target {target}) {'ok' if ok else 'MISSED'}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shape", type=int, nargs="+", default=[8, 128, 128, 21])
  parser.add_argument("--repeats", type=int, default=25)
  parser.add_argument(
    "--groups", nargs="+", default=["focal", "softmax", "iou-aware", "region"]
  )
  args = parser.parse_args()
  shape = tuple(args.shape)
  num_classes = shape[-1]
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  logits = 2 * jax.random.normal(k1, shape, jnp.float32)
  ids = jax.random.randint(k2, shape[:-1], 0, num_classes)
  one_hot = jax.nn.one_hot(ids, num_classes, dtype=jnp.float32)
  quality = one_hot * jax.random.uniform(k3, shape, minval=0.1)
  mib = logits.size * 4 / 2**20
  harness.header(__doc__.splitlines()[0])
  print(
    f"logits {shape} float32 ({mib:.1f} MiB), labels as arguments, "
    f"medians of {args.repeats} interleaved rounds"
  )

  if "focal" in args.groups:
    print("\nsigmoid focal loss (alpha=0.25, gamma=2), one-hot targets")
    t, temps = _run(
      {
        "jaxloss.focal_loss": (
          lambda x, y: jaxloss.focal_loss(x, y).mean(),
          (logits, one_hot),
        ),
        "optax.sigmoid_focal_loss": (
          lambda x, y: optax.sigmoid_focal_loss(x, y).mean(),
          (logits, one_hot),
        ),
        "floor: sigmoid(x).mean()": (
          lambda x, y: jax.nn.sigmoid(x).mean(),
          (logits, one_hot),
        ),
      },
      args.repeats,
      mib,
    )
    ours = t["jaxloss.focal_loss"]
    r = t["optax.sigmoid_focal_loss"] / ours
    _ratio("faster than optax.sigmoid_focal_loss", r, ">= 5", r >= 5)
    r = ours / t["floor: sigmoid(x).mean()"]
    _ratio("time of the floor", r, "<= 3", r <= 3)
    r = temps["jaxloss.focal_loss"] / mib
    _ratio("temporaries / logits", r, "<= 2", r <= 2)

  if "softmax" in args.groups:
    print("\nsoftmax focal loss (gamma=2), integer labels")
    t, _ = _run(
      {
        "jaxloss.softmax_focal_loss": (
          lambda x, y: jaxloss.softmax_focal_loss(x, y).mean(),
          (logits, ids),
        ),
        "floor: (log_softmax(x) * one_hot(y)).sum()": (
          lambda x, y: (
            jax.nn.log_softmax(x)
            * jax.nn.one_hot(y, num_classes, dtype=x.dtype)
          ),
          (logits, ids),
        ),
      },
      args.repeats,
      mib,
    )
    r = (
      t["jaxloss.softmax_focal_loss"]
      / t["floor: (log_softmax(x) * one_hot(y)).sum()"]
    )
    _ratio("time of the floor", r, "<= 3", r <= 3)

  if "iou-aware" in args.groups:
    print("\nIoU-aware focal losses, soft quality targets")
    t, _ = _run(
      {
        "jaxloss.focal_loss": (
          lambda x, y: jaxloss.focal_loss(x, y).mean(),
          (logits, quality),
        ),
        "jaxloss.varifocal_loss": (
          lambda x, y: jaxloss.varifocal_loss(x, y).mean(),
          (logits, quality),
        ),
        "jaxloss.quality_focal_loss": (
          lambda x, y: jaxloss.quality_focal_loss(x, y).mean(),
          (logits, quality),
        ),
      },
      args.repeats,
      mib,
    )
    for name in ("jaxloss.varifocal_loss", "jaxloss.quality_focal_loss"):
      r = t[name] / t["jaxloss.focal_loss"]
      _ratio(f"{name} / focal_loss", r, "<= 1.5", r <= 1.5)

  if "region" in args.groups:
    _region_group(logits, ids, one_hot, args.repeats, mib)


def _monai_dice(shape, axis):
  """MONAI's ``DiceLoss(softmax=True)``, eager PyTorch on one thread, if
  importable (never a dependency): ``(name, milliseconds)`` or None."""
  try:
    import monai  # noqa: F401
    import torch
  except ImportError:
    return None
  torch.set_num_threads(1)
  loss = monai.losses.DiceLoss(softmax=True, batch=axis is None)
  x = torch.randn(shape[0], shape[-1], *shape[1:-1], requires_grad=True)
  y = torch.nn.functional.one_hot(
    torch.randint(0, shape[-1], (shape[0], *shape[1:-1])), shape[-1]
  ).movedim(-1, 1)

  def step():
    x.grad = None
    loss(x, y).backward()

  ms = harness.timed({"monai": (step, ())}, 7)["monai"]
  return "MONAI DiceLoss(softmax=True), torch eager", ms


REGION = ("dice_loss", "iou_loss", "tversky_loss", "generalized_dice_loss")


def _region_group(logits, ids, one_hot, repeats, mib):
  """Region losses from logits against every peer at its best input."""
  shape = logits.shape
  num_classes = shape[-1]
  floor = "floor: optax softmax CE with integer labels"
  best = "optax.losses.dice_loss, one-hot precomputed"
  for pooling, axis in (
    ("batch-pooled", tuple(range(len(shape) - 1))),
    ("per image", tuple(range(1, len(shape) - 1))),
  ):
    kw = {} if pooling == "batch-pooled" else {"axis": axis}
    print(f"\n{pooling} region losses, value_and_grad of the logits")
    entries = {}
    for name in REGION:
      fn = getattr(jaxloss, name)
      for labels, y in (("ids", ids), ("one-hot", one_hot)):
        entries[f"jaxloss.{name}(x, {labels}, softmax)"] = (
          lambda x, y, fn=fn: fn(x, y, activation="softmax", **kw),
          (logits, y),
        )
    entries["jaxloss.dice_loss(softmax(x), one-hot)"] = (
      lambda x, y: jaxloss.dice_loss(jax.nn.softmax(x), y, **kw),
      (logits, one_hot),
    )
    entries["jaxloss.dice_loss(softmax(x), one-hot, hard)"] = (
      lambda x, y: jaxloss.dice_loss(
        jax.nn.softmax(x), y, soft_labels=False, **kw
      ),
      (logits, one_hot),
    )
    entries[best] = (
      lambda x, y: optax.losses.dice_loss(x, y, axis=axis),
      (logits, one_hot),
    )
    entries["optax.losses.dice_loss, one-hot in the step"] = (
      lambda x, y: optax.losses.dice_loss(
        x, jax.nn.one_hot(y, num_classes, dtype=x.dtype), axis=axis
      ),
      (logits, ids),
    )
    entries[floor] = (
      lambda x, y: optax.softmax_cross_entropy_with_integer_labels(x, y).mean(),
      (logits, ids),
    )
    t, temps = _run(entries, repeats, mib)
    monai = _monai_dice(shape, None if pooling == "batch-pooled" else axis)
    if monai is not None:
      print(f"  {monai[0]:44s} {monai[1]:8.2f}")
    for name in entries:
      if not name.endswith("softmax)"):
        continue
      r = t[best] / t[name]
      _ratio(f"{name} faster than optax at its best", r, ">= 1.2", r >= 1.2)
      r = t[name] / t[floor]
      _ratio(f"{name} time of the CE floor", r, "<= 1.8", r <= 1.8)
      r = temps[name] / mib
      _ratio(f"{name} temporaries / logits", r, "<= 1.2", r <= 1.2)
    for name in ("one-hot)", "one-hot, hard)"):
      r = t[best] / t[f"jaxloss.dice_loss(softmax(x), {name}"]
      _ratio(
        f"probability path ({name[:-1]}) against optax, same one-hot",
        r,
        ">= 1",
        r >= 1,
      )


if __name__ == "__main__":
  main()
