"""Train a small Flax U-Net on multi-digit canvases with several jaxloss losses.

    pip install -e ".[examples]" && python examples/segmentation.py

The task: segment the handwritten digits drawn on a canvas (24x24 by default,
``--size``) into 11 classes (background + ten digits), where about 89 % of the
pixels are background. The same U-Net, from the same initial weights, on the same batches,
is trained under each loss set-up for the same number of AdamW steps:

- ``cross-entropy``: softmax cross-entropy (optax), the baseline;
- ``CE + Dice``: cross-entropy plus the batch-pooled soft Dice loss;
- ``softmax focal``: the softmax focal loss, gamma = 2;
- ``CE + Lovasz``: cross-entropy plus the Lovasz-softmax loss;
- ``CE -> Lovasz``: the cross-entropy model fine-tuned with Lovasz-softmax
  alone (Berman et al.'s recipe), next to ``CE -> CE``, the same model trained
  on with cross-entropy for the same extra steps, the fair control.

It prints a line per evaluation, then a table (test mIoU over the 11 classes,
mean IoU of the ten digit classes, pixel accuracy, training time) and writes
figures to ``--out``: training curves, a grid of test predictions, and the focal
loss against p_t for several gamma (Lin et al., Fig. 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import digits_data  # noqa: E402
import unet  # noqa: E402

import jaxloss  # noqa: E402

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


# --------------------------------------------------------------------------
# Loss set-ups: logits [B, H, W, C] and integer labels [B, H, W] -> scalar.


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def ce_dice(logits: jax.Array, labels: jax.Array) -> jax.Array:
  probs = jax.nn.softmax(logits, axis=-1)
  return cross_entropy(logits, labels) + jaxloss.dice_loss(probs, labels)


def softmax_focal(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jaxloss.softmax_focal_loss(logits, labels, gamma=2.0).mean()


def lovasz(logits: jax.Array, labels: jax.Array) -> jax.Array:
  probs = jax.nn.softmax(logits, axis=-1)
  return jaxloss.lovasz_softmax(probs, labels)


def ce_lovasz(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return cross_entropy(logits, labels) + lovasz(logits, labels)


@dataclasses.dataclass(frozen=True)
class Setup:
  """A loss set-up; ``init_from`` names the run whose final model it starts from."""

  name: str
  loss_fn: LossFn
  init_from: str | None = None


SETUPS = (
  Setup("cross-entropy", cross_entropy),
  Setup("CE + Dice", ce_dice),
  Setup("softmax focal", softmax_focal),
  Setup("CE + Lovasz", ce_lovasz),
  Setup("CE -> Lovasz", lovasz, init_from="cross-entropy"),
  Setup("CE -> CE", cross_entropy, init_from="cross-entropy"),
)


# --------------------------------------------------------------------------
# Model, optimizer, train step.


def make_model(seed: int, width: int, depth: int = 3) -> unet.UNet:
  """The U-Net with its initial weights, created by one compiled program.

  The ``rbg`` key implementation compiles much faster on CPU than the
  default threefry, and is as deterministic given the seed.
  """
  return _init_fn(width, depth)(jax.random.key(seed, impl="rbg"))


@functools.cache
def _init_fn(width: int, depth: int):
  @nnx.jit
  def init(key):
    return unet.UNet(
      digits_data.NUM_CLASSES, width=width, depth=depth, rngs=nnx.Rngs(key)
    )

  return init


def make_optimizer(
  model: nnx.Module, lr: float, steps: int, *, warmup: bool = True
) -> nnx.Optimizer:
  """AdamW with a cosine decay (after a short warm-up when ``warmup``)."""
  if warmup:
    schedule = optax.warmup_cosine_decay_schedule(
      0.0,
      lr,
      warmup_steps=max(1, steps // 20),
      decay_steps=max(2, steps),
      end_value=lr / 20,
    )
  else:
    schedule = optax.cosine_decay_schedule(lr, max(1, steps), alpha=0.05)
  return nnx.Optimizer(
    model, optax.adamw(schedule, weight_decay=1e-4), wrt=nnx.Param
  )


def train_step(
  model: nnx.Module,
  optimizer: nnx.Optimizer,
  images: jax.Array,
  labels: jax.Array,
  loss_fn: LossFn,
) -> jax.Array:
  """One optimizer step on ``loss_fn(model(images), labels)``; returns the loss.

  Updates ``model`` and ``optimizer`` in place (under ``nnx.jit``).
  """

  def objective(model):
    return loss_fn(model(images), labels)

  loss, grads = nnx.value_and_grad(objective)(model)
  with jax.numpy_dtype_promotion("standard"):  # optax mixes int and float
    optimizer.update(model, grads)
  return loss


@functools.cache
def make_train_step(loss_fn: LossFn):
  """``train_step`` for ``loss_fn``, compiled once: ``step(model, opt, x, y)``."""

  def step(model, optimizer, images, labels):
    return train_step(model, optimizer, images, labels, loss_fn)

  return nnx.jit(step)


@nnx.jit
def predict(model: nnx.Module, images: jax.Array) -> jax.Array:
  """Class id per pixel, ``[N, H, W]``."""
  return jnp.argmax(model(images), axis=-1).astype(jnp.int32)


# --------------------------------------------------------------------------
# Metrics.


def confusion(
  pred: np.ndarray, labels: np.ndarray, num_classes: int
) -> np.ndarray:
  """Confusion matrix ``[true, predicted]`` counted over every pixel."""
  idx = labels.reshape(-1).astype(np.int64) * num_classes + pred.reshape(-1)
  counts = np.bincount(idx, minlength=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes)


def scores(conf: np.ndarray) -> dict[str, float]:
  """Dataset-level IoU per class (over all test pixels), then the means."""
  tp = np.diag(conf).astype(np.float64)
  union = conf.sum(0) + conf.sum(1) - tp
  iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
  return {
    "miou": float(np.nanmean(iou)),
    "digit_miou": float(np.nanmean(iou[1:])),
    "pixel_acc": float(tp.sum() / conf.sum()),
  }


def evaluate(
  model: nnx.Module, images: np.ndarray, labels: np.ndarray, *, batch: int = 256
) -> dict[str, float]:
  conf = np.zeros((digits_data.NUM_CLASSES,) * 2, np.int64)
  for i in range(0, len(images), batch):
    pred = np.asarray(predict(model, jnp.asarray(images[i : i + batch])))
    conf += confusion(pred, labels[i : i + batch], digits_data.NUM_CLASSES)
  return scores(conf)


# --------------------------------------------------------------------------
# Training loop.


@dataclasses.dataclass
class Run:
  setup: str
  steps: list[int] = dataclasses.field(default_factory=list)
  losses: list[float] = dataclasses.field(default_factory=list)
  eval_steps: list[int] = dataclasses.field(default_factory=list)
  evals: list[dict[str, float]] = dataclasses.field(default_factory=list)
  train_time: float = 0.0
  model: nnx.Module | None = None


def batch_order(
  num_train: int, steps: int, batch: int, seed: int
) -> np.ndarray:
  """``[steps, batch]`` indices: shuffled epochs, the same for every set-up."""
  rng = np.random.default_rng(seed)
  epochs = -(-steps * batch // num_train)
  order = np.concatenate([rng.permutation(num_train) for _ in range(epochs)])
  return order[: steps * batch].reshape(steps, batch)


def train(
  setup: Setup,
  model: nnx.Module,
  data,
  *,
  steps: int,
  batch: int,
  lr: float,
  eval_every: int,
  seed: int,
  first_step: int = 0,
  warmup: bool = True,
  log=print,
) -> Run:
  """Trains ``model`` in place for ``steps`` steps; evaluates every few steps."""
  train_x, train_y, test_x, test_y = data
  optimizer = make_optimizer(model, lr, steps, warmup=warmup)
  step_fn = make_train_step(setup.loss_fn)
  order = batch_order(len(train_x), steps, batch, seed + first_step)
  run = Run(setup.name, model=model)
  clock = 0.0
  for i in range(steps):
    start = time.perf_counter()
    loss = step_fn(
      model,
      optimizer,
      jnp.asarray(train_x[order[i]]),
      jnp.asarray(train_y[order[i]]),
    )
    loss = float(loss)  # waits for the step
    clock += time.perf_counter() - start
    run.steps.append(first_step + i + 1)
    run.losses.append(loss)
    if not np.isfinite(loss):
      raise FloatingPointError(f"{setup.name}: loss {loss} at step {i + 1}")
    if (i + 1) % eval_every == 0 or i + 1 == steps:
      metrics = evaluate(model, test_x, test_y)
      run.eval_steps.append(first_step + i + 1)
      run.evals.append(metrics)
      log(
        f"{setup.name:>14s}  step {first_step + i + 1:5d}  loss {loss:.4f}  "
        f"test mIoU {metrics['miou']:.3f}  digit mIoU "
        f"{metrics['digit_miou']:.3f}  pixel acc {metrics['pixel_acc']:.4f}  "
        f"({clock:.0f} s)"
      )
  run.train_time = clock
  return run


def run_all(args, setups: Sequence[Setup], log=print) -> dict[str, Run]:
  train_x, train_y = digits_data.make_canvases(
    "train", args.train_size, size=args.size, seed=args.seed
  )
  test_x, test_y = digits_data.make_canvases(
    "test", args.test_size, size=args.size, seed=args.seed
  )
  data = (train_x, train_y, test_x, test_y)
  runs: dict[str, Run] = {}
  init = make_model(args.seed, args.width, args.depth)
  for setup in setups:
    if setup.init_from is None:
      model = nnx.clone(init)  # the same initial weights for every set-up
      runs[setup.name] = train(
        setup,
        model,
        data,
        steps=args.steps,
        batch=args.batch_size,
        lr=args.lr,
        eval_every=args.eval_every,
        seed=args.seed,
        log=log,
      )
    else:
      if setup.init_from not in runs:
        raise ValueError(
          f"{setup.name} starts from {setup.init_from}, which must run first"
        )
      base = runs[setup.init_from]
      model = nnx.clone(base.model)
      runs[setup.name] = train(
        setup,
        model,
        data,
        steps=args.finetune_steps,
        batch=args.batch_size,
        lr=args.finetune_lr,
        eval_every=args.eval_every,
        seed=args.seed,
        first_step=base.steps[-1],
        warmup=False,
        log=log,
      )
      run = runs[setup.name]
      run.train_time += base.train_time
      run.eval_steps.insert(0, base.eval_steps[-1])  # where it starts from
      run.evals.insert(0, base.evals[-1])
  return runs


# --------------------------------------------------------------------------
# Report: table and figures.


def table(runs: dict[str, Run]) -> str:
  """Markdown table of the final evaluation of every run."""
  lines = [
    "| set-up | steps | test mIoU | digit-class mIoU | pixel accuracy "
    "| train time (s) |",
    "|---|---:|---:|---:|---:|---:|",
  ]
  for run in runs.values():
    m = run.evals[-1]
    lines.append(
      f"| {run.setup} | {run.steps[-1]} | {m['miou']:.3f} | "
      f"{m['digit_miou']:.3f} | {m['pixel_acc']:.4f} | "
      f"{run.train_time:.0f} |"
    )
  return "\n".join(lines)


_COLORS = [
  "#000000",
  "#e6194b",
  "#3cb44b",
  "#ffe119",
  "#4363d8",
  "#f58231",
  "#911eb4",
  "#46f0f0",
  "#f032e6",
  "#bcf60c",
  "#9a6324",
]


def _smooth(x: Sequence[float], k: int) -> np.ndarray:
  x = np.asarray(x, np.float64)
  k = max(1, min(k, len(x)))
  return np.convolve(x, np.ones(k) / k, mode="valid")


def plot_curves(runs: dict[str, Run], path: str) -> None:
  import matplotlib.pyplot as plt

  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  for run in runs.values():
    k = max(1, len(run.losses) // 20)
    ax1.plot(run.steps[k - 1 :], _smooth(run.losses, k), label=run.setup)
    ax2.plot(
      run.eval_steps,
      [m["digit_miou"] for m in run.evals],
      marker="o",
      ms=3,
      label=run.setup,
    )
  ax1.set(
    xlabel="step",
    ylabel="training loss (running mean)",
    yscale="log",
    title="Training loss",
  )
  ax2.set(
    xlabel="step",
    ylabel="test mIoU of the 10 digit classes",
    title="Test digit-class mIoU",
  )
  ax2.legend(fontsize=8)
  ax1.grid(alpha=0.3)
  ax2.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_predictions(
  runs: dict[str, Run], images: np.ndarray, labels: np.ndarray, path: str
) -> None:
  import matplotlib.pyplot as plt
  from matplotlib.colors import ListedColormap
  from matplotlib.patches import Patch

  cmap = ListedColormap(_COLORS)
  preds = {
    name: np.asarray(predict(run.model, jnp.asarray(images)))
    for name, run in runs.items()
  }
  cols = ["image", "ground truth"] + list(preds)
  fig, axes = plt.subplots(
    len(images),
    len(cols),
    figsize=(1.6 * len(cols), 1.6 * len(images) + 0.6),
    squeeze=False,
  )
  for r in range(len(images)):
    axes[r, 0].imshow(images[r, ..., 0], cmap="gray", vmin=0, vmax=1)
    axes[r, 1].imshow(
      labels[r], cmap=cmap, vmin=-0.5, vmax=10.5, interpolation="nearest"
    )
    for c, name in enumerate(preds, start=2):
      axes[r, c].imshow(
        preds[name][r], cmap=cmap, vmin=-0.5, vmax=10.5, interpolation="nearest"
      )
  for c, title in enumerate(cols):
    axes[0, c].set_title(title, fontsize=8)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  handles = [
    Patch(color=_COLORS[k], label=("bg" if k == 0 else str(k - 1)))
    for k in range(11)
  ]
  ncol = 11 if len(cols) >= 6 else 6
  fig.legend(
    handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False
  )
  fig.tight_layout(rect=(0, 0.1 if ncol < 11 else 0.05, 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_focal(path: str) -> None:
  """Focal loss against the probability of the true class (Lin et al., Fig. 1)."""
  import matplotlib.pyplot as plt

  p_t = np.linspace(0.001, 0.999, 500, dtype=np.float32)
  logits = jnp.log(p_t) - jnp.log1p(-p_t)  # sigmoid(logits) = p_t
  ones = jnp.ones_like(logits)
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for gamma in (0.0, 0.5, 1.0, 2.0, 5.0):
    loss = jaxloss.focal_loss(logits, ones, alpha=None, gamma=gamma)
    label = f"$\\gamma = {gamma:g}$" + (
      " (cross-entropy)" if gamma == 0 else ""
    )
    ax.plot(p_t, np.asarray(loss), label=label)
  ax.set(
    xlabel="probability of the true class $p_t$",
    ylabel="loss",
    ylim=(0, 5),
    xlim=(0, 1),
    title="Focal loss $-(1 - p_t)^\\gamma \\log p_t$",
  )
  ax.axvspan(0.6, 1.0, color="0.9", zorder=0)
  ax.text(0.8, 4.5, "well-classified\nexamples", ha="center", fontsize=8)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0],
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  p.add_argument("--out", default="out", help="directory for figures and table")
  p.add_argument(
    "--steps",
    type=int,
    default=800,
    help="training steps of each set-up trained from scratch",
  )
  p.add_argument(
    "--finetune-steps",
    type=int,
    default=200,
    help="extra steps of the set-ups that start from another run",
  )
  p.add_argument("--batch-size", type=int, default=16)
  p.add_argument("--lr", type=float, default=3e-3, help="peak AdamW rate")
  p.add_argument("--finetune-lr", type=float, default=1e-3)
  p.add_argument("--width", type=int, default=16, help="U-Net base width")
  p.add_argument(
    "--depth", type=int, default=3, help="U-Net down-sampling stages"
  )
  p.add_argument("--size", type=int, default=24, help="canvas side (pixels)")
  p.add_argument("--train-size", type=int, default=4000)
  p.add_argument("--test-size", type=int, default=500)
  p.add_argument("--eval-every", type=int, default=100)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--setups",
    default=",".join(s.name for s in SETUPS),
    help="comma-separated names of the set-ups to run, in order",
  )
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Run]:
  args = parse_args(argv)
  by_name = {s.name: s for s in SETUPS}
  names = [n.strip() for n in args.setups.split(",") if n.strip()]
  unknown = [n for n in names if n not in by_name]
  if unknown:
    raise SystemExit(
      f"unknown set-up(s) {unknown}; choose from {list(by_name)}"
    )
  os.makedirs(args.out, exist_ok=True)
  print(
    f"jax {jax.__version__} on {jax.devices()[0].platform}; "
    f"{args.train_size} train / {args.test_size} test canvases "
    f"{args.size}x{args.size}, {args.steps} steps of batch "
    f"{args.batch_size}, seed {args.seed}",
    flush=True,
  )
  start = time.perf_counter()
  runs = run_all(
    args, [by_name[n] for n in names], log=lambda s: print(s, flush=True)
  )
  result = table(runs)
  print()
  print(result)
  print(f"\ntotal {time.perf_counter() - start:.0f} s")
  test_x, test_y = digits_data.make_canvases(
    "test", 6, size=args.size, seed=args.seed + 1
  )
  plot_curves(runs, os.path.join(args.out, "curves.png"))
  plot_predictions(
    runs, test_x, test_y, os.path.join(args.out, "predictions.png")
  )
  plot_focal(os.path.join(args.out, "focal_pt.png"))
  with open(os.path.join(args.out, "results.md"), "w") as f:
    f.write(result + "\n")
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(
      {
        "args": vars(args),
        "runs": {
          n: {
            "steps": r.eval_steps,
            "evals": r.evals,
            "train_time": r.train_time,
          }
          for n, r in runs.items()
        },
      },
      f,
      indent=1,
    )
  print(f"figures and table written to {args.out}/")
  return runs


if __name__ == "__main__":
  main()
