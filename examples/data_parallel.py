"""Train the demo's U-Net data-parallel over every device, on the global-batch Dice.

    python examples/data_parallel.py --simulate 8        # 8 simulated CPU devices
    python examples/data_parallel.py                     # every device JAX sees
    python examples/data_parallel.py --mode gspmd        # let the compiler split it

The global batch (``--per-device-batch`` canvases a device) is split along its
leading axis over a one-axis ``Mesh`` named ``"data"``; the parameters are
replicated. The loss is cross-entropy plus the soft Dice loss pooled over the
*global* batch, the same number a single device would compute on the whole
batch, and so is its gradient. Two ways to get there:

- ``--mode shard_map`` (default): the loss and gradient run per device inside
  ``jax.shard_map``; ``jaxloss.dice_loss(..., axis_name="data")`` sums the Dice
  statistics over the devices, ``lax.pmean`` averages the cross-entropy, and
  the gradients of the replicated parameters come back summed over devices.
- ``--mode gspmd``: the step is a plain ``jax.jit`` of the single-device code
  on batch-sharded arrays; XLA inserts the cross-device sums itself.

Both modes give the same losses and parameters, up to float rounding.
``--simulate N`` sets ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
before JAX starts, to try it on one CPU. On several hosts, start one process a
host with ``--distributed`` (it calls ``jax.distributed.initialize()``); each
process then loads only its part of every global batch. Two processes of four
simulated devices on one machine give the same losses as one of eight::

    python examples/data_parallel.py --simulate 4 --distributed \
        --coordinator localhost:12355 --num-processes 2 --process-id 0 &
    python examples/data_parallel.py --simulate 4 --distributed \
        --coordinator localhost:12355 --num-processes 2 --process-id 1
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Sequence


def _simulate_devices(argv: Sequence[str]) -> None:
  """Honours ``--simulate N`` before JAX is imported (XLA reads it once)."""
  for i, arg in enumerate(argv):
    if arg == "--simulate" and i + 1 < len(argv):
      count = argv[i + 1]
    elif arg.startswith("--simulate="):
      count = arg.split("=", 1)[1]
    else:
      continue
    flag = f"--xla_force_host_platform_device_count={int(count)}"
    os.environ["XLA_FLAGS"] = (
      f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    )
    os.environ["JAX_PLATFORMS"] = "cpu"


if __name__ == "__main__":
  _simulate_devices(sys.argv[1:])

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax import lax  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import digits_data  # noqa: E402
import unet  # noqa: E402

import jaxloss  # noqa: E402

AXIS = "data"
MODES = ("shard_map", "gspmd")


def loss_fn(graphdef, params, images, labels, axis_name=None):
  """Mean cross-entropy + batch-pooled Dice of the model on a batch.

  With ``axis_name`` (inside ``shard_map``), ``images`` and ``labels`` are one
  device's shard and both terms are those of the global batch.
  """
  logits = nnx.merge(graphdef, params)(images)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  if axis_name is not None:
    ce = lax.pmean(ce, axis_name)  # equal shards: the mean of the means
  probs = jax.nn.softmax(logits, axis=-1)
  return ce + jaxloss.dice_loss(probs, labels, axis_name=axis_name)


def make_step(mode: str, mesh: jax.sharding.Mesh, graphdef, tx):
  """Compiled ``step(params, opt_state, images, labels) -> (params, opt_state, loss)``."""
  if mode == "shard_map":
    # Per device: the loss of the global batch and, for the replicated
    # parameters, the gradient summed over the devices' shares.
    @jax.shard_map(
      mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS)), out_specs=(P(), P())
    )
    def loss_and_grad(params, images, labels):
      return jax.value_and_grad(loss_fn, argnums=1)(
        graphdef, params, images, labels, AXIS
      )
  elif mode == "gspmd":

    def loss_and_grad(params, images, labels):
      return jax.value_and_grad(loss_fn, argnums=1)(
        graphdef, params, images, labels
      )
  else:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

  # Parameters and optimizer state stay replicated from step to step.
  replicated = NamedSharding(mesh, P())

  @functools.partial(
    jax.jit, out_shardings=(replicated, replicated, None), donate_argnums=(0, 1)
  )
  def step(params, opt_state, images, labels):
    loss, grads = loss_and_grad(params, images, labels)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def _confusion(graphdef, params, images, labels):
  """Confusion matrix ``[true, predicted]`` of the model on a batch."""
  pred = jnp.argmax(nnx.merge(graphdef, params)(images), axis=-1)
  num = digits_data.NUM_CLASSES
  idx = labels.reshape(-1) * num + pred.reshape(-1).astype(labels.dtype)
  return jnp.zeros((num * num,), jnp.int32).at[idx].add(1).reshape(num, num)


@functools.cache
def _confusion_fn(out_sharding: NamedSharding):
  return jax.jit(_confusion, out_shardings=out_sharding)


def local_value(x: jax.Array) -> np.ndarray:
  """A replicated array's value, read from this process's own copy."""
  return np.asarray(x.addressable_data(0))


def global_batch(
  data: np.ndarray, index: np.ndarray, sharding: NamedSharding
) -> jax.Array:
  """The rows ``index`` of ``data`` as one array split over the mesh.

  Each process passes only the rows its own devices hold (all of them on one
  host), so a multi-host run never gathers the global batch anywhere.
  """
  per_process = len(index) // jax.process_count()
  start = jax.process_index() * per_process
  local = data[index[start : start + per_process]]
  return jax.make_array_from_process_local_data(
    sharding, local, (len(index),) + data.shape[1:]
  )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0],
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  p.add_argument(
    "--simulate",
    type=int,
    default=0,
    metavar="N",
    help="simulate N CPU devices (must come before JAX starts)",
  )
  p.add_argument(
    "--distributed",
    action="store_true",
    help="call jax.distributed.initialize() (one process a host); "
    "it finds its peers on Cloud TPU, SLURM and Open MPI",
  )
  p.add_argument(
    "--coordinator",
    default=None,
    metavar="HOST:PORT",
    help="with --distributed: address of process 0",
  )
  p.add_argument("--num-processes", type=int, default=None)
  p.add_argument("--process-id", type=int, default=None)
  p.add_argument("--mode", choices=MODES, default="shard_map")
  p.add_argument("--steps", type=int, default=200)
  p.add_argument("--per-device-batch", type=int, default=4)
  p.add_argument("--lr", type=float, default=3e-3)
  p.add_argument("--width", type=int, default=16, help="U-Net base width")
  p.add_argument(
    "--depth",
    type=int,
    default=None,
    help="U-Net down-sampling stages (default: the model's)",
  )
  p.add_argument(
    "--size",
    type=int,
    default=48,
    help="canvas side (pixels), divisible by 2**depth",
  )
  p.add_argument("--train-size", type=int, default=2000)
  p.add_argument("--test-size", type=int, default=256)
  p.add_argument("--log-every", type=int, default=20)
  p.add_argument("--seed", type=int, default=0)
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, log=print) -> dict:
  """Trains and evaluates; returns the losses, final parameters and metrics."""
  args = parse_args(argv)
  if args.distributed:
    jax.distributed.initialize(
      coordinator_address=args.coordinator,
      num_processes=args.num_processes,
      process_id=args.process_id,
    )
  if jax.process_index() != 0:
    log = lambda *_: None  # every process runs the same steps; one reports
  if args.simulate and jax.local_device_count() != args.simulate:
    log(
      f"note: --simulate {args.simulate} has no effect once JAX has "
      f"started; using {jax.local_device_count()} local devices"
    )
  devices = jax.devices()
  mesh = jax.make_mesh(
    (len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
  )
  data_sharding = NamedSharding(mesh, P(AXIS))
  replicated = NamedSharding(mesh, P())
  batch = args.per_device_batch * len(devices)
  log(
    f"jax {jax.__version__}: {len(devices)} {devices[0].platform} devices "
    f"over {jax.process_count()} process(es); mode {args.mode}; global "
    f"batch {batch} ({args.per_device_batch} a device)"
  )

  train_x, train_y = digits_data.make_canvases(
    "train", args.train_size, size=args.size, seed=args.seed
  )
  test_x, test_y = digits_data.make_canvases(
    "test", args.test_size, size=args.size, seed=args.seed
  )

  depth = {} if args.depth is None else {"depth": args.depth}
  model = unet.UNet(
    digits_data.NUM_CLASSES, width=args.width, rngs=nnx.Rngs(args.seed), **depth
  )
  graphdef, params = nnx.split(model)
  params = jax.device_put(params, replicated)
  tx = optax.adamw(
    optax.cosine_decay_schedule(args.lr, args.steps, 0.05), weight_decay=1e-4
  )
  opt_state = jax.device_put(tx.init(params), replicated)
  step = make_step(args.mode, mesh, graphdef, tx)

  rng = np.random.default_rng(args.seed)
  losses, batches = [], []
  start = time.perf_counter()
  for i in range(args.steps):
    index = rng.choice(len(train_x), batch, replace=False)
    batches.append(index)
    images = global_batch(train_x, index, data_sharding)
    labels = global_batch(train_y, index, data_sharding)
    params, opt_state, loss = step(params, opt_state, images, labels)
    losses.append(float(local_value(loss)))
    if not np.isfinite(losses[-1]):
      raise FloatingPointError(f"loss {losses[-1]} at step {i + 1}")
    if (i + 1) % args.log_every == 0 or i + 1 == args.steps:
      log(
        f"step {i + 1:5d}  loss {losses[-1]:.4f}  "
        f"({time.perf_counter() - start:.1f} s)"
      )

  # Test set, in global batches split over the mesh (the tail that does not
  # fill one is left out).
  confusion = np.zeros((digits_data.NUM_CLASSES,) * 2, np.int64)
  count = _confusion_fn(replicated)
  for lo in range(0, len(test_x) - batch + 1, batch):
    index = np.arange(lo, lo + batch)
    confusion += local_value(
      count(
        graphdef,
        params,
        global_batch(test_x, index, data_sharding),
        global_batch(test_y, index, data_sharding),
      )
    )
  tp = np.diag(confusion).astype(np.float64)
  union = confusion.sum(0) + confusion.sum(1) - tp
  iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
  miou = float(np.nanmean(iou)) if confusion.sum() else float("nan")
  log(f"test mIoU {miou:.3f} over {int(confusion.sum())} pixels")
  return {
    "losses": losses,
    "params": params,
    "graphdef": graphdef,
    "batches": batches,
    "test_miou": miou,
    "data": (train_x, train_y),
    "num_devices": len(devices),
  }


if __name__ == "__main__":
  main()
