"""Numerics several modules share: accumulation dtype, safe division, roots
and powers, class ids, and the cross-device sum of pooled statistics."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike


def accum_dtype(dtype) -> jnp.dtype:
  """The dtype sums are taken in: at least float32 (bf16/fp16 are upcast)."""
  dtype = jnp.dtype(dtype)
  return dtype if dtype.itemsize >= 4 else jnp.dtype(jnp.float32)


def safe_div(num: ArrayLike, den: jax.Array, at_zero: float) -> jax.Array:
  """``num / den``, or ``at_zero`` where ``den == 0``, with finite gradients."""
  zero = den == 0
  return jnp.where(zero, at_zero, num / jnp.where(zero, 1, den))


def safe_sqrt(x: jax.Array) -> jax.Array:
  """``sqrt(x)`` for ``x >= 0`` (rounding below 0 counts as 0), with
  derivative 0 instead of infinity at 0; NaN stays NaN."""
  positive = x > 0
  return jnp.where(
    positive, jnp.sqrt(jnp.where(positive, x, 1)), jnp.where(x == x, 0, x)
  )


def is_whole(gamma) -> bool:
  return (
    isinstance(gamma, (int, float)) and float(gamma).is_integer() and gamma >= 0
  )


def power(x: jax.Array, gamma) -> jax.Array:
  """``x ** gamma`` for ``x >= 0`` with finite gradients at ``x == 0``.

  A whole, static ``gamma`` is a chain of multiplications. Any other ``gamma``
  is ``exp(gamma * log(x))`` with the double-``where`` trick, so that
  ``0 ** 0.5`` has gradient 0 instead of NaN.
  """
  if is_whole(gamma):
    return lax.integer_pow(x, int(gamma))
  zero = x == 0
  safe = jnp.where(zero, 1, x)  # NaN stays NaN
  return jnp.where(zero, 0, jnp.exp(gamma * jnp.log(safe)))


def class_ids(labels: jax.Array) -> jax.Array:
  """Integer class ids in a type wide enough for any class count (a uint8 id
  compared with ``arange(C)`` in uint8 would wrap for ``C > 256``)."""
  return labels.astype(jnp.int64 if labels.dtype.itemsize == 8 else jnp.int32)


def one_hot_mask(labels: jax.Array, num_classes: int) -> jax.Array:
  """Boolean one-hot rows of class ids; an id outside ``[0, C)`` gives none."""
  return jax.nn.one_hot(class_ids(labels), num_classes, dtype=jnp.bool_)


def varies_over(x: jax.Array, axis_name) -> bool:
  """Whether ``x`` is typed as varying over ``axis_name`` (a type-checked
  ``shard_map``); False under ``pmap`` and ``check_vma=False``."""
  names = axis_name if isinstance(axis_name, tuple) else (axis_name,)
  aval = jax.typeof(x)
  vma: Any = getattr(aval, "vma", None)  # older JAX
  if vma is None:
    vma = getattr(getattr(aval, "manual_axis_type", None), "varying", ())
  return any(name in vma for name in names)


def global_tangent(dot: jax.Array, axis_name) -> jax.Array:
  """The tangent of a value every device computes from all devices' data.

  In a type-checked ``shard_map`` the value is typed the same on every
  device, so its tangent must be too: the sum of the devices' shares, which
  JAX transposes to the identity (each device keeps its slice of the global
  gradient). Elsewhere (``pmap``, ``check_vma=False``) each device keeps its
  own share, so that the transpose is the identity there too (a ``psum``
  would transpose to another sum and scale every gradient by the number of
  devices); forward mode then gives each device's share.
  """
  return lax.psum(dot, axis_name) if varies_over(dot, axis_name) else dot


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def psum_own_share(stats, axis_name):
  """``lax.psum`` whose derivative passes each device's share unchanged.

  Every device computes the same global loss from the summed statistics, so
  the gradient of its own copy with respect to its own shard is exactly the
  slice of the global gradient: see :func:`global_tangent`.
  """
  return lax.psum(stats, axis_name)


@psum_own_share.defjvp
def _psum_own_share_jvp(axis_name, primals, tangents):
  (stats,), (dots,) = primals, tangents
  return (
    psum_own_share(stats, axis_name),
    jax.tree.map(lambda d: global_tangent(d, axis_name), dots),
  )
