"""Shared timing harness of the benchmark scripts.

What a train step runs is timed: ``jax.jit(jax.value_and_grad(loss))`` with
every array, labels included, passed as an argument (a closed-over array would
become a constant that XLA folds into the program). Every function is compiled
and called three times, then timed in interleaved rounds (one call of each
function per round, so a change of load shifts all of them alike), each call
after a 64 MiB buffer is rewritten (so no function finds in cache what the one
before it left there), with ``block_until_ready``; the medians are reported.
Grad-only timings are printed beside them for reference only: they let XLA
drop the forward value.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

# Larger than the last-level cache of the machines we measure on (32 MiB).
_EVICT = np.zeros(64 * 2**20 // 8)


def evict_caches() -> None:
  """Rewrites a 64 MiB buffer, so the next call starts with cold caches."""
  np.add(_EVICT, 1, out=_EVICT)


def value_and_grad(loss: Callable) -> Callable:
  """``jit(value_and_grad(sum(loss(x, *rest))))`` with respect to ``x``."""
  return jax.jit(jax.value_and_grad(lambda x, *rest: jnp.sum(loss(x, *rest))))


def grad_only(loss: Callable) -> Callable:
  """``jit(grad(sum(loss(x, *rest))))``: the value is dropped by XLA."""
  return jax.jit(jax.grad(lambda x, *rest: jnp.sum(loss(x, *rest))))


def timed(
  fns: dict[str, tuple[Callable, tuple]], repeats: int
) -> dict[str, float]:
  """Median wall milliseconds of ``fn(*args)`` for each ``name: (fn, args)``."""
  for _ in range(3):
    for fn, args in fns.values():
      jax.block_until_ready(fn(*args))
  wall = {name: [] for name in fns}
  for _ in range(repeats):
    for name, (fn, args) in fns.items():
      evict_caches()
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      wall[name].append(time.perf_counter() - start)
  return {name: 1e3 * statistics.median(v) for name, v in wall.items()}


def temp_mib(fn: Callable, *args) -> float:
  """Compiled temporary memory of ``fn(*args)`` in MiB."""
  compiled = fn.lower(*args).compile()
  return compiled.memory_analysis().temp_size_in_bytes / 2**20


def header(description: str) -> None:
  print(
    f"{description}\njax {jax.__version__}, backend "
    f"{jax.default_backend()} ({jax.devices()[0].device_kind}), "
    f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
  )
