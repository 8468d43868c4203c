"""The sort engine of the Lovász losses: one sort per row, weights, derivative.

The Lovász extension of the Jaccard loss sorts each row of errors in
decreasing order and dots the sorted errors with the Lovász gradient of the
Jaccard loss (Berman, Rannen Triki, Blaschko 2018, Algorithm 1). The sort is
the whole cost; this module does it, behind one function,
:func:`sort_engine`. The losses in ``_lovasz.py`` compute the errors and own
the derivative (a ``jax.custom_jvp``); the engine is not differentiated.

* Errors (non-negative floats) and the foreground bit are packed into one
  unsigned integer key, ``bits(e) << 1 | fg``: the bits of a non-negative float
  order like the float, so one single-operand integer sort gives the sorted
  errors and the sorted foreground flags exactly, with nothing else to carry.
  An invalid pixel takes the key of the smallest error, so it sorts last.
* The Lovász gradient at sorted position :math:`k` has the closed form
  :math:`1 / (T + B_k)` at a foreground pixel and
  :math:`(T - F_k) / ((T + B_k - 1)(T + B_k))` at a background pixel
  (:math:`F_k, B_k` the foreground and background counts in the first
  :math:`k`, :math:`T` the foreground total), so no difference of nearly
  equal Jaccard values loses precision. Both cores call the one function
  that writes it, :func:`_jaccard_weights`.
* With ``with_grad`` the engine also keeps the permutation and scatters each
  position's weight back to its pixel, negated at foreground pixels and 0
  where the error is 0: the derivative of the loss with respect to a
  prediction whose error falls at the foreground and rises at the background
  (both losses' predictions), in the layout of the rows.

Two cores compute this. The XLA core (GPU, TPU, and every exported program)
uses one two-operand stable sort for the gradient, one single-operand sort for
the value alone. The host core (CPU) runs in NumPy through
``jax.pure_callback``: two stable radix passes over the 16-bit halves of the
keys give the permutation (XLA's CPU sort is a comparison sort, slower, and
slower still with a second operand), in row blocks spread over a thread pool
of this process; rows without foreground can be skipped when
their loss is not used. The host core is one primitive whose lowering picks
the core: the host callback on CPU, except when lowering for ``jax.export``
(a host callback cannot be serialized) or when the lowering does not say
whether it is for export, where it is the XLA core, as on every other
platform. Both break ties by pixel index and agree to rounding.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from collections.abc import Hashable

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.interpreters import ad
from jax.interpreters import batching
from jax.interpreters import mlir


def sort_engine(
  errors: jax.Array,
  fg: jax.Array,
  valid: jax.Array | None,
  *,
  with_grad: bool,
  skip_empty: bool = False,
  host: bool = True,
  axis_name: Hashable | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
  r"""Lovász extension of the Jaccard loss of each row, and its derivative.

  .. math::
    \ell = \sum_k e_{\pi_k} \big(J(k) - J(k - 1)\big),
    \qquad J(k) = 1 - \frac{T - F_k}{T + B_k},

  with :math:`\pi` the order of decreasing error in the row.

  Args:
    errors: Float errors ``>= 0`` (float32 or float64), rows ``[..., n]``.
      Not differentiated (taken under ``lax.stop_gradient``).
    fg: Boolean foreground flags ``[..., n]``; False at invalid pixels.
    valid: Boolean flags of the same rank, broadcastable to the rows (a
      size-1 row axis is shared by the rows along it), or None (all valid).
      Invalid pixels sort last and carry no weight.
    with_grad: Also return the derivative (otherwise ``grad`` is None).
    skip_empty: The caller will not use the loss of a row without
      foreground: the host core then skips such rows (loss and derivative
      0; NaN errors still give a NaN loss). The XLA core computes them.
    host: Use the host core where the program is lowered for the CPU (and
      not for ``jax.export``), the XLA core elsewhere: the automatic choice.
      False: the XLA core everywhere.
    axis_name: Mapped axis (or None) whose devices split the rows' pixels:
      every device gathers the keys of all devices along it (in device
      order, which is the global pixel order when the devices split the
      leading pooled axis) and computes the global rows; ``loss`` and
      ``total`` are then global, and ``grad`` is this device's slice.

  Returns:
    ``(loss, total, grad)``: ``loss`` and ``total`` (the number of valid
    foreground pixels, as a float) are ``[...]`` in the dtype of ``errors``;
    ``grad`` has the shape of the rows: the Lovász weight of each pixel,
    negated at foreground pixels and 0 where the error is 0 (the derivative
    of ``|.|`` and ``relu`` taken as 0 there), or None without
    ``with_grad``. Rows of no pixel give 0.
  """
  errors = lax.stop_gradient(errors)
  dtype = errors.dtype
  keys = _keys(errors, fg, valid)
  axis = keys.ndim - 1
  if axis_name is not None:
    local = keys.shape[-1]
    keys = lax.all_gather(keys, axis_name, axis=axis, tiled=True)
    if valid is not None:
      valid = lax.all_gather(valid, axis_name, axis=axis, tiled=True)
  if keys.size == 0:
    zeros = jnp.zeros(keys.shape[:-1], dtype)
    out = (zeros, zeros) + (
      (jnp.zeros(keys.shape, dtype),) if with_grad else ()
    )
  elif host:
    out = _sort_p.bind(
      keys,
      *(() if valid is None else (valid,)),
      dtype=jnp.dtype(dtype),
      with_grad=with_grad,
      skip_empty=skip_empty,
    )
  else:
    out = _xla_core(keys, valid, dtype, with_grad)
  loss, total = out[:2]
  grad = out[2] if with_grad else None
  if axis_name is not None:
    # Every device holds the same global values; pmax types them as such
    # (replicated) without changing them.
    loss, total = lax.pmax(loss, axis_name), lax.pmax(total, axis_name)
    if with_grad:
      start = lax.axis_index(axis_name) * local
      grad = lax.dynamic_slice_in_dim(out[2], start, local, axis)
  return loss, total, grad


# ---------------------------------------------------------------------------
# What both cores share: the keys and the weights.


def _jaccard_weights(xp, fg, fg_count, valid_count, dtype):
  """Lovász gradient of the Jaccard loss at each sorted position.

  The one formula of both cores.

  Args:
    xp: ``numpy`` or ``jax.numpy``.
    fg: Boolean ``[..., n]``, foreground flags in decreasing-error order.
    fg_count: Integer ``[..., n]``, foreground pixels among the first
      ``k + 1``.
    valid_count: Integer (broadcastable), valid pixels among the first
      ``k + 1``.
    dtype: Float dtype of the result.

  Returns:
    ``g[..., k] = J(k + 1) - J(k)`` with :math:`J(k) = 1 - (T - F_k) /
    (T + B_k)`: :math:`1 / (T + B_k)` at a foreground pixel and
    :math:`(T - F_k) / ((T + B_k - 1)(T + B_k))` at a background pixel. A
    row without foreground has :math:`J = 1` from its first valid pixel on:
    weight 1 there, 0 elsewhere. Denominators are kept >= 1, so no position
    divides by 0. Positions of invalid pixels are not zeroed here.
  """
  total = fg_count[..., -1:]
  bg_count = valid_count - fg_count
  union = (total + bg_count).astype(dtype)
  inter = (total - fg_count).astype(dtype)
  safe_union = xp.maximum(union, 1)
  at_fg = 1 / safe_union
  at_bg = inter / (xp.maximum(union - 1, 1) * safe_union)
  at_bg = xp.where(total > 0, at_bg, (bg_count == 1).astype(dtype))
  return xp.where(fg, at_fg, at_bg)


def _unsigned(dtype):
  return jnp.uint64 if jnp.dtype(dtype).itemsize == 8 else jnp.uint32


def _keys(errors, fg, valid):
  """Sort keys: ascending order of the key is decreasing error.

  ``bits(e) << 1 | fg`` orders like ``e`` for ``e >= 0`` (the shift drops only
  the sign bit, which is 0, or set for ``-0.0``); equal errors put foreground
  first. An invalid pixel takes the smallest key, 0, so it sorts last. The
  complement turns decreasing into ascending order.
  """
  utype = _unsigned(errors.dtype)
  key = (lax.bitcast_convert_type(errors, utype) << 1) | fg.astype(utype)
  if valid is not None:
    key = jnp.where(valid, key, 0)
  return ~key


# ---------------------------------------------------------------------------
# The XLA core.


def _xla_core(nkeys, valid, dtype, with_grad):
  """``(loss, total)``, and with ``with_grad`` the derivative, in XLA."""
  axis = nkeys.ndim - 1
  iota = lax.broadcasted_iota(jnp.int32, nkeys.shape, axis)
  valid_sorted = None
  if with_grad:
    sorted_keys, perm = lax.sort(
      (nkeys, iota), dimension=axis, num_keys=1, is_stable=True
    )
    if valid is not None:
      valid_sorted = jnp.take_along_axis(
        jnp.broadcast_to(valid, nkeys.shape), perm, axis=axis
      )
  else:
    sorted_keys = lax.sort(nkeys, dimension=axis)
    if valid is not None:
      # Invalid pixels sort last; valid ones with key 0 (zero error,
      # background) may interleave with them, but those add 0 to the loss.
      num_valid = jnp.sum(valid, axis=axis, keepdims=True, dtype=jnp.int32)
      valid_sorted = iota < num_valid
  key = ~sorted_keys
  fg = (key & 1) == 1
  errors = lax.bitcast_convert_type(key >> 1, dtype)
  fg_count = jnp.cumsum(fg, axis=axis, dtype=jnp.int32)
  if valid_sorted is None:
    valid_count = iota + 1
  else:
    valid_count = jnp.cumsum(valid_sorted, axis=axis, dtype=jnp.int32)
  g = _jaccard_weights(jnp, fg, fg_count, valid_count, dtype)
  if valid_sorted is not None:
    g = jnp.where(valid_sorted, g, 0)
  loss = jnp.sum(errors * g, axis=axis)
  total = fg_count[..., -1].astype(dtype)
  if not with_grad:
    return loss, total
  signed = jnp.where(errors == 0, 0, jnp.where(fg, -g, g))
  n = nkeys.shape[-1]
  flat_perm = perm.reshape(-1, n)
  rows = lax.broadcasted_iota(jnp.int32, flat_perm.shape, 0)
  grad = (
    jnp.zeros(flat_perm.shape, dtype)
    .at[rows, flat_perm]
    .set(signed.reshape(-1, n), unique_indices=True)
  )
  return loss, total, grad.reshape(nkeys.shape)


# ---------------------------------------------------------------------------
# The host core (NumPy, through a callback).


def _radix_order(keys):
  """Stable ascending order of each row of uint32 keys ``[b, n]``.

  Two stable passes over 16-bit digits, least significant first (NumPy sorts
  16-bit integers stably by radix sort): the order of ``(key, index)``.
  Returns indices into the flattened block and the sorted keys.
  """
  b, n = keys.shape
  offsets = (np.arange(b, dtype=np.intp) * n)[:, None]
  order = np.argsort(keys.astype(np.uint16), axis=-1, kind="stable")
  order += offsets
  high = np.take((keys >> 16).astype(np.uint16), order)
  second = np.argsort(high, axis=-1, kind="stable")
  second += offsets
  order = np.take(order, second)
  return order, np.take(keys, order)


def _numpy_block(keys, valid, dtype, loss_out, total_out, grad_out):
  """Host core on a block of rows ``keys [b, n]``; writes the outputs.

  The order of each row is the stable order of ``(key, index)``, as in the
  stable XLA sort, except that among the largest key (zero error, background,
  and the invalid pixels) valid pixels come first.
  """
  b, n = keys.shape
  if keys.dtype == np.uint32:
    order, sorted_keys = _radix_order(keys)
  else:
    order = np.argsort(keys, axis=-1, kind="stable")
    order += (np.arange(b, dtype=np.intp) * n)[:, None]
    sorted_keys = np.take(keys, order)
  count_dtype = np.int64 if keys.size >= 2**31 else np.int32
  valid_count = np.arange(1, n + 1, dtype=count_dtype)
  partial = ()  # rows with invalid pixels
  if valid is not None:
    num_valid = np.count_nonzero(valid, axis=-1)
    partial = np.flatnonzero(num_valid < n)
    flat_valid = valid.reshape(-1)
    for i in partial:
      # The invalid pixels share the largest key with zero-error valid
      # background pixels: put those first.
      tail = int(np.searchsorted(sorted_keys[i], sorted_keys[i, -1]))
      block = order[i, tail:]
      order[i, tail:] = block[np.argsort(~flat_valid[block], kind="stable")]
    if len(partial):
      valid_count = np.minimum(
        valid_count, num_valid[:, None].astype(count_dtype)
      )
  # Complemented keys of zero errors (and of invalid pixels) are the top two.
  zero_key = np.iinfo(keys.dtype).max - 1
  zero_from = [int(np.searchsorted(row, zero_key)) for row in sorted_keys]
  key = np.invert(sorted_keys, out=sorted_keys)
  fg = (key & 1).astype(bool)
  key >>= 1
  errors = key.view(dtype)
  # One running count over the whole block (NumPy's 1-D cumsum is faster
  # than a row-wise one), minus the count before each row.
  fg_count = np.cumsum(fg.reshape(-1), dtype=count_dtype).reshape(b, n)
  if b > 1:
    ends = fg_count[:, -1].copy()
    fg_count[1:] -= ends[:-1, None]
  g = _jaccard_weights(np, fg, fg_count, valid_count, dtype)
  for i in partial:
    g[i, num_valid[i] :] = 0
  with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf stay, quietly
    loss_out[...] = np.add.reduce(errors * g, axis=-1, dtype=np.float64)
  total_out[...] = fg_count[:, -1]
  if grad_out is not None:
    # The sign of d error / d prediction (-1 at foreground), and 0 where the
    # error is 0, which includes every invalid pixel.
    np.negative(g, out=g, where=fg)
    for i, start in enumerate(zero_from):
      g[i, start:] = 0
    grad_out.reshape(-1)[order.reshape(-1)] = g.reshape(-1)


def _numpy_rows(keys, valid, dtype, loss_out, total_out, grad_out, rows):
  """Runs :func:`_numpy_block` over the rows ``rows`` (a slice) in blocks of
  about 2**17 elements."""
  n = keys.shape[-1]
  step = max(1, 2**17 // max(n, 1))
  for a in range(rows.start, rows.stop, step):
    part = slice(a, min(a + step, rows.stop))
    _numpy_block(
      keys[part],
      None if valid is None else valid[part],
      dtype,
      loss_out[part],
      total_out[part],
      None if grad_out is None else grad_out[part],
    )


# (process id, executor)
_POOL: tuple[int | None, concurrent.futures.ThreadPoolExecutor | None] = (
  None,
  None,
)


def _pool() -> concurrent.futures.ThreadPoolExecutor:
  """The row workers of this process (a forked child makes its own)."""
  global _POOL
  pid, pool = _POOL
  if pool is None or pid != os.getpid():
    pool = concurrent.futures.ThreadPoolExecutor(
      max_workers=os.cpu_count() or 1, thread_name_prefix="jaxloss"
    )
    _POOL = (os.getpid(), pool)
  return pool


def _has_nan(keys):
  """Rows of complemented keys ``~(bits(e) << 1 | fg)`` holding a NaN error."""
  bits = ~keys >> 1
  top = np.iinfo(keys.dtype).max >> 1  # every bit but the sign
  exponent = {
    np.dtype(np.uint32): 0x7F800000,
    np.dtype(np.uint64): 0x7FF0000000000000,
  }[keys.dtype]
  return np.any((bits & top) > exponent, axis=-1)


def _numpy_core(nkeys, *valid, dtype, with_grad, skip_empty=False):
  """The host core: the computation of :func:`_xla_core`, row-parallel.

  With ``skip_empty``, rows without a valid foreground pixel are not sorted:
  their loss (unused) and derivative are 0.
  """
  nkeys = np.asarray(nkeys)
  shape = nkeys.shape
  n = shape[-1]
  keys = nkeys.reshape(-1, n)
  rows = keys.shape[0]
  if valid:
    valid = np.broadcast_to(np.asarray(valid[0]), shape).reshape(-1, n)
  else:
    valid = None
  dtype = np.dtype(dtype)
  if skip_empty and rows:
    # The foreground bit of a complemented key is 0 (and invalid pixels
    # have every bit set).
    keep = np.flatnonzero(np.any((keys & 1) == 0, axis=-1))
    if len(keep) < rows:
      loss = np.zeros((rows,), dtype)
      # NaN in, NaN out, as in the XLA core: a skipped row holding a NaN
      # error has a NaN loss (its weight is 0, and 0 * NaN is NaN).
      loss[_has_nan(keys)] = np.nan
      total = np.zeros((rows,), dtype)
      grad = np.zeros((rows, n), dtype) if with_grad else None
      if len(keep):
        sub = _numpy_core(
          keys[keep],
          *(() if valid is None else (valid[keep],)),
          dtype=dtype,
          with_grad=with_grad,
        )
        loss[keep], total[keep] = sub[0], sub[1]
        if with_grad:
          grad[keep] = sub[2]
      out = (loss.reshape(shape[:-1]), total.reshape(shape[:-1]))
      return out + (grad.reshape(shape),) if with_grad else out
  loss = np.empty((rows,), dtype)
  total = np.empty((rows,), dtype)
  grad = np.empty((rows, n), dtype) if with_grad else None
  workers = min(rows, os.cpu_count() or 1, max(1, keys.size >> 16))
  bounds = np.linspace(0, rows, workers + 1).astype(int)
  parts = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

  run = functools.partial(_numpy_rows, keys, valid, dtype, loss, total, grad)
  if len(parts) == 1:
    run(parts[0])
  else:
    for future in [_pool().submit(run, part) for part in parts]:
      future.result()
  out = (loss.reshape(shape[:-1]), total.reshape(shape[:-1]))
  return out + (grad.reshape(shape),) if with_grad else out


def _callback_core(nkeys, valid, dtype, with_grad, skip_empty=False):
  """:func:`_numpy_core` staged out as a ``jax.pure_callback``."""
  rows = jax.ShapeDtypeStruct(nkeys.shape[:-1], dtype)
  result = (rows, rows)
  if with_grad:
    result += (jax.ShapeDtypeStruct(nkeys.shape, dtype),)
  kernel = functools.partial(
    _numpy_core, dtype=dtype, with_grad=with_grad, skip_empty=skip_empty
  )
  args = (nkeys,) if valid is None else (nkeys, valid)
  return jax.pure_callback(kernel, result, *args, vmap_method="broadcast_all")


# ---------------------------------------------------------------------------
# The host engine as one primitive: its lowering picks the core. On CPU it is
# the host callback, except when the program is lowered for jax.export, where
# a host callback cannot be serialized, or may be (JAX does not say): there,
# and on every other platform, it is the XLA core. Tracing is the same for
# both, so a jitted or exported function needs no switch.


_sort_p = jax.extend.core.Primitive("jaxloss_lovasz_sort_core")
_sort_p.multiple_results = True


def _aval_like(aval, shape, dtype):
  """``aval`` with a new dtype and ``shape`` (the same or one axis less)."""
  if len(shape) == aval.ndim:
    return aval.update(shape=shape, dtype=dtype)
  sharding = aval.sharding
  spec = tuple(sharding.spec) + (None,) * aval.ndim
  sharding = jax.sharding.NamedSharding(
    sharding.mesh, jax.sharding.PartitionSpec(*spec[: len(shape)])
  )
  return aval.update(shape=shape, dtype=dtype, sharding=sharding)


def _sort_abstract(nkeys, *valid, dtype, with_grad, skip_empty):
  # The keys depend on the valid flags, so their type (sharding, and the mesh
  # axes they vary over inside shard_map) covers both.
  del valid, skip_empty
  out = [_aval_like(nkeys, nkeys.shape[:-1], dtype)] * 2
  if with_grad:
    out.append(_aval_like(nkeys, nkeys.shape, dtype))
  return out


def _sort_impl(nkeys, *valid, **params):
  return jax.jit(functools.partial(_sort_p.bind, **params))(nkeys, *valid)


def _lowering_for_export(ctx) -> bool | None:
  """Whether ``ctx`` lowers for ``jax.export``; None if JAX does not say.

  JAX records it in the lowering parameters of the module being lowered, a
  field with no public name: read defensively, so that a JAX that moves it
  leaves ``None`` ("unknown") instead of an error.
  """
  module = getattr(ctx, "module_context", None)
  params = getattr(module, "lowering_parameters", None)
  for_export = getattr(params, "for_export", None)
  return for_export if isinstance(for_export, bool) else None


def _sort_lowering(ctx, nkeys, *valid, dtype, with_grad, skip_empty, on_cpu):
  # The host callback only where the program is known not to be exported:
  # when unsure, the XLA core, which every program can serialize.
  if on_cpu and _lowering_for_export(ctx) is False:
    core = functools.partial(
      _callback_core, dtype=dtype, with_grad=with_grad, skip_empty=skip_empty
    )
  else:
    core = functools.partial(_xla_core, dtype=dtype, with_grad=with_grad)

  def run(nkeys, *valid):
    return core(nkeys, valid[0] if valid else None)

  return mlir.lower_fun(run, multiple_results=True)(ctx, nkeys, *valid)


def _sort_batch(args, dims, **params):
  """Batch axes go first: the cores treat every leading axis as rows."""
  size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
  nkeys, *valid = args
  nkeys = batching.bdim_at_front(nkeys, dims[0], size)
  if valid:
    (v,), (d,) = valid, dims[1:]
    valid = [v[None] if d is None else jnp.moveaxis(v, d, 0)]
  return _sort_p.bind(nkeys, *valid, **params), [0] * (
    3 if params["with_grad"] else 2
  )


def _sort_jvp(primals, tangents, **params):
  # The keys are integers: nothing to differentiate (the losses' custom JVP
  # supplies the derivative).
  del tangents
  out = _sort_p.bind(*primals, **params)
  return out, [ad.Zero.from_primal_value(x) for x in out]


_sort_p.def_abstract_eval(_sort_abstract)
_sort_p.def_impl(_sort_impl)
mlir.register_lowering(_sort_p, functools.partial(_sort_lowering, on_cpu=False))
mlir.register_lowering(
  _sort_p, functools.partial(_sort_lowering, on_cpu=True), platform="cpu"
)
batching.primitive_batchers[_sort_p] = _sort_batch
ad.primitive_jvps[_sort_p] = _sort_jvp
