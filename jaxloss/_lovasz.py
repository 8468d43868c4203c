"""Lovász losses: the convex Lovász extension of the Jaccard (IoU) loss.

Both losses sort per-pixel errors in decreasing order and take the dot product
of the sorted errors with the Lovász gradient of the Jaccard loss (Berman,
Rannen Triki, Blaschko 2018, Algorithm 1). The sort is the whole cost, so the
core is a ``jax.custom_jvp`` around one sort:

* errors (non-negative floats) and the foreground bit are packed into one
  unsigned integer key, ``bits(e) << 1 | fg``: the bits of a non-negative float
  order like the float, so one single-operand integer sort gives the sorted
  errors and the sorted foreground flags exactly, with nothing else to carry;
* the Lovász gradient at sorted position :math:`k` has the closed form
  :math:`1 / (T + B_k)` at a foreground pixel and
  :math:`(T - F_k) / ((T + B_k - 1)(T + B_k))` at a background pixel
  (:math:`F_k, B_k` the foreground and background counts in the first
  :math:`k`, :math:`T` the foreground total), so no difference of nearly
  equal Jaccard values loses precision;
* the forward pass of a differentiated call also keeps the permutation and
  scatters each position's weight, with the sign of d error / d prediction,
  back to its pixel; that one array (the derivative of the loss with respect
  to the predictions, in their layout) dotted with the tangent is the JVP,
  linear in the tangent: reverse mode transposes it into a product with the
  cotangent, and second derivatives are 0. Nothing is differentiated
  through the sort.

On CPU the core runs in NumPy through ``jax.pure_callback``: two stable
radix passes over the 16-bit halves of the keys give the permutation (XLA's
CPU sort is a comparison sort, several times slower, and slower still with a
second operand), in row blocks spread over a thread pool; with "present"
classes the rows of absent classes are not sorted at all. On GPU and TPU it is
pure XLA (one two-operand stable sort for the gradient, one single-operand
sort for the value alone). The core is one primitive whose lowering picks the
engine: the host core on CPU, except when lowering for ``jax.export`` (a host
callback cannot be serialized), where it is the XLA core, as on every other
platform; both break ties by pixel index, share the formula above and agree
to rounding.
"""

from __future__ import annotations

from collections.abc import Hashable
from collections.abc import Sequence
import concurrent.futures
import functools
import math
import os

import jax
import jax.extend
import jax.numpy as jnp
from jax import lax
from jax._src import ad_util
from jax.interpreters import ad
from jax.interpreters import batching
from jax.interpreters import mlir
from jax.typing import ArrayLike
import numpy as np

from jaxloss import _checks
from jaxloss import _numerics

Axis = int | Sequence[int] | None
AxisName = Hashable | None
Classes = str | ArrayLike


# ---------------------------------------------------------------------------
# The sorted core, shared by both losses.


def _jaccard_weights(xp, fg, fg_count, valid_count, dtype):
  """Lovász gradient of the Jaccard loss at each sorted position.

  Args:
    xp: ``numpy`` or ``jax.numpy``.
    fg: Boolean ``[..., n]``, foreground flags in decreasing-error order.
    fg_count: int32 ``[..., n]``, foreground pixels among the first ``k + 1``.
    valid_count: int32 (broadcastable), valid pixels among the first
      ``k + 1``.
    dtype: Float dtype of the result.

  Returns:
    ``g[..., k] = J(k + 1) - J(k)`` with :math:`J(k) = 1 - (T - F_k) /
    (T + B_k)`: :math:`1 / (T + B_k)` at a foreground pixel and
    :math:`(T - F_k) / ((T + B_k - 1)(T + B_k))` at a background pixel. A
    row without foreground has :math:`J = 1` from its first valid pixel on:
    weight 1 there, 0 elsewhere. Positions of invalid pixels are not zeroed
    here.
  """
  total = fg_count[..., -1:]
  bg_count = valid_count - fg_count
  union = (total + bg_count).astype(dtype)
  inter = (total - fg_count).astype(dtype)
  at_fg = 1 / xp.maximum(union, 1)
  at_bg = inter / (xp.maximum(union - 1, 1) * xp.maximum(union, 1))
  at_bg = xp.where(total > 0, at_bg, (bg_count == 1).astype(dtype))
  return xp.where(fg, at_fg, at_bg)


def _errors(preds, fg, kind):
  """Errors ``>= 0``: ``|fg - p|`` (softmax) or ``relu(1 - s x)`` (hinge)."""
  if kind.startswith("softmax"):
    return jnp.abs(fg.astype(preds.dtype) - preds)
  return jax.nn.relu(jnp.where(fg, 1 - preds, 1 + preds))


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


def _xla_core(nkeys, valid, dtype, with_grad):
  """Pure XLA core; see :func:`_core`."""
  axis = nkeys.ndim - 1
  iota = lax.broadcasted_iota(jnp.int32, nkeys.shape, axis)
  valid_sorted = None
  if with_grad:
    sorted_keys, perm = lax.sort((nkeys, iota), dimension=axis, num_keys=1,
                                 is_stable=True)
    if valid is not None:
      valid_sorted = jnp.take_along_axis(jnp.broadcast_to(valid, nkeys.shape),
                                         perm, axis=axis)
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
  grad = jnp.zeros(flat_perm.shape, dtype).at[rows, flat_perm].set(
      signed.reshape(-1, n), unique_indices=True)
  return loss, total, grad.reshape(nkeys.shape)


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
  """NumPy core on a block of rows ``keys [b, n]``; writes the outputs.

  The order of each row is the stable order of ``(key, index)``, as in the
  stable XLA sort, except that among the largest key (zero error, background,
  and the invalid pixels) valid pixels come first. Same formula as
  :func:`_jaccard_weights`, written with fewer passes over memory.
  """
  b, n = keys.shape
  if keys.dtype == np.uint32:
    order, sorted_keys = _radix_order(keys)
  else:
    order = np.argsort(keys, axis=-1, kind="stable")
    order += (np.arange(b, dtype=np.intp) * n)[:, None]
    sorted_keys = np.take(keys, order)
  positions = np.arange(1, n + 1, dtype=dtype)
  valid_count = positions
  partial = ()                                     # rows with invalid pixels
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
      valid_count = np.minimum(positions, num_valid[:, None].astype(dtype))
  # Complemented keys of zero errors (and of invalid pixels) are the top two.
  zero_key = np.iinfo(keys.dtype).max - 1
  zero_from = [int(np.searchsorted(row, zero_key)) for row in sorted_keys]
  key = np.invert(sorted_keys, out=sorted_keys)
  fg = (key & 1).astype(bool)
  key >>= 1
  errors = key.view(dtype)
  # One running count over the whole block (a 1-D cumsum is several times
  # faster than a row-wise one), minus the count before each row.
  fg_count = np.cumsum(fg.reshape(-1), dtype=np.int64 if fg.size >= 2**31
                       else np.int32).reshape(b, n)
  if b > 1:
    ends = fg_count[:, -1].copy()
    fg_count[1:] -= ends[:-1, None]
  total = fg_count[:, -1]
  fg_count = fg_count.astype(dtype)
  total_f = total.astype(dtype)[:, None]
  union = valid_count + total_f
  union -= fg_count                                 # T + B_k
  inter = np.subtract(total_f, fg_count, out=fg_count)   # T - F_k
  with np.errstate(divide="ignore", invalid="ignore"):
    at_fg = np.divide(1, union, dtype=dtype)
    union *= union - 1
    at_bg = np.divide(inter, union, out=inter)
  no_fg = np.flatnonzero(total == 0)
  if len(no_fg):
    # No foreground: J = 1 from the first valid pixel on.
    at_bg[no_fg] = 0
    at_bg[no_fg, 0] = 1
  g = np.where(fg, at_fg, at_bg)
  for i in partial:
    g[i, num_valid[i]:] = 0
  with np.errstate(invalid="ignore", over="ignore"):   # NaN/inf stay, quietly
    loss_out[...] = np.add.reduce(errors * g, axis=-1, dtype=np.float64)
  total_out[...] = total
  if grad_out is not None:
    # d error / d pred: -1 at foreground, +1 at background, and 0 where the
    # error is 0 (|.| and relu), which includes every invalid pixel.
    signed = np.where(fg, np.negative(at_fg, out=at_fg), at_bg)
    for i, start in enumerate(zero_from):
      signed[i, start:] = 0
    grad_out.reshape(-1)[order.reshape(-1)] = signed.reshape(-1)


def _numpy_rows(keys, valid, dtype, loss_out, total_out, grad_out):
  """Runs :func:`_numpy_block` over blocks of about 2**17 elements."""
  n = keys.shape[-1]
  step = max(1, 2**17 // max(n, 1))
  for a in range(0, keys.shape[0], step):
    part = slice(a, a + step)
    _numpy_block(keys[part], None if valid is None else valid[part], dtype,
                 loss_out[part], total_out[part],
                 None if grad_out is None else grad_out[part])


_POOL = (None, None)     # (process id, executor)


def _pool() -> concurrent.futures.ThreadPoolExecutor:
  """The row workers of this process (a forked child makes its own)."""
  global _POOL
  pid, pool = _POOL
  if pool is None or pid != os.getpid():
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=os.cpu_count() or 1, thread_name_prefix="jaxloss")
    _POOL = (os.getpid(), pool)
  return pool


def _has_nan(keys):
  """Rows of complemented keys ``~(bits(e) << 1 | fg)`` holding a NaN error."""
  bits = ~keys >> 1
  top = np.iinfo(keys.dtype).max >> 1          # every bit but the sign
  exponent = {np.dtype(np.uint32): 0x7F800000,
              np.dtype(np.uint64): 0x7FF0000000000000}[keys.dtype]
  return np.any((bits & top) > exponent, axis=-1)


def _numpy_core(nkeys, *valid, dtype, with_grad, skip_empty=False):
  """NumPy core (CPU): the computation of :func:`_xla_core`, row-parallel.

  With ``skip_empty``, rows without a valid foreground pixel are not sorted:
  their loss (unused: such a class is not present) and gradient are 0.
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
        sub = _numpy_core(keys[keep], *(() if valid is None else
                                        (valid[keep],)),
                          dtype=dtype, with_grad=with_grad)
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
  def run(part):
    _numpy_rows(keys[part], None if valid is None else valid[part], dtype,
                loss[part], total[part], None if grad is None else grad[part])
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
  kernel = functools.partial(_numpy_core, dtype=dtype, with_grad=with_grad,
                             skip_empty=skip_empty)
  args = (nkeys,) if valid is None else (nkeys, valid)
  return jax.pure_callback(kernel, result, *args, vmap_method="broadcast_all")


# ---------------------------------------------------------------------------
# The sort core as one primitive: its lowering picks the engine. On CPU it is
# the host (NumPy) core, except when the program is lowered for jax.export,
# where a host callback cannot be serialized: there, and on every other
# platform, it is the XLA core. Tracing is the same for both, so a jitted or
# exported function needs no switch.


_sort_core_p = jax.extend.core.Primitive("jaxloss_lovasz_sort_core")
_sort_core_p.multiple_results = True


def _sort_core_abstract(nkeys, *valid, dtype, with_grad, skip_empty, host):
  # The keys depend on the valid flags, so their type (sharding, and the mesh
  # axes they vary over inside shard_map) covers both.
  del valid, skip_empty, host
  out = [_aval_like(nkeys, nkeys.shape[:-1], dtype)] * 2
  if with_grad:
    out.append(_aval_like(nkeys, nkeys.shape, dtype))
  return out


def _aval_like(aval, shape, dtype):
  """``aval`` with a new dtype and ``shape`` (the same or one axis less)."""
  if len(shape) == aval.ndim:
    return aval.update(shape=shape, dtype=dtype)
  sharding = aval.sharding
  spec = tuple(sharding.spec) + (None,) * aval.ndim
  sharding = jax.sharding.NamedSharding(
      sharding.mesh, jax.sharding.PartitionSpec(*spec[:len(shape)]))
  return aval.update(shape=shape, dtype=dtype, sharding=sharding)


def _sort_core_impl(nkeys, *valid, **params):
  return jax.jit(functools.partial(_sort_core_p.bind, **params))(nkeys,
                                                                 *valid)


def _sort_core_lowering(ctx, nkeys, *valid, dtype, with_grad, skip_empty,
                        host, on_cpu):
  exporting = getattr(ctx.module_context.lowering_parameters, "for_export",
                      False)
  if on_cpu and host and not exporting:
    core = functools.partial(_callback_core, dtype=dtype, with_grad=with_grad,
                             skip_empty=skip_empty)
  else:
    core = functools.partial(_xla_core, dtype=dtype, with_grad=with_grad)
  def run(nkeys, *valid):
    return core(nkeys, valid[0] if valid else None)
  return mlir.lower_fun(run, multiple_results=True)(ctx, nkeys, *valid)


def _sort_core_batch(args, dims, **params):
  """Batch axes go first: the cores treat every leading axis as rows."""
  size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
  nkeys, *valid = args
  nkeys = batching.bdim_at_front(nkeys, dims[0], size)
  if valid:
    (v,), (d,) = valid, dims[1:]
    valid = [v[None] if d is None else jnp.moveaxis(v, d, 0)]
  return _sort_core_p.bind(nkeys, *valid, **params), [0] * (
      3 if params["with_grad"] else 2)


def _sort_core_jvp(primals, tangents, **params):
  # The keys are integers: nothing to differentiate (the custom JVP of the
  # losses supplies the derivative).
  del tangents
  out = _sort_core_p.bind(*primals, **params)
  return out, [ad_util.Zero.from_primal_value(x) for x in out]


_sort_core_p.def_abstract_eval(_sort_core_abstract)
_sort_core_p.def_impl(_sort_core_impl)
mlir.register_lowering(_sort_core_p, functools.partial(_sort_core_lowering,
                                                       on_cpu=False))
mlir.register_lowering(_sort_core_p, functools.partial(_sort_core_lowering,
                                                       on_cpu=True),
                       platform="cpu")
batching.primitive_batchers[_sort_core_p] = _sort_core_batch
ad.primitive_jvps[_sort_core_p] = _sort_core_jvp


def _core(preds, fg, valid, kind, impl, with_grad, axis_name=None):
  """Loss and foreground count per row, and with ``with_grad`` dloss/dpreds.

  The derivative is taken with respect to ``preds`` directly: the error is
  :math:`1 - p` or :math:`1 - x` at a foreground pixel and :math:`p` or
  :math:`1 + x` at a background one, so it is the Lovász weight with the
  sign of the pixel's class, and 0 where the error is 0 (``|.|`` and
  ``relu`` have derivative 0 there).

  With ``axis_name``, the rows of every device along that mapped axis are
  gathered (in device order, which is the global pixel order when the
  devices split the leading pooled axis) and every device computes the
  global rows; it keeps its own slice of the derivative.

  With ``kind="softmax_present"`` the CPU core skips rows without
  foreground (their loss must not be used); the XLA core computes them.
  """
  preds = lax.stop_gradient(preds)     # the derivative is the custom JVP's
  nkeys = _keys(_errors(preds, fg, kind), fg, valid)
  axis = nkeys.ndim - 1
  skip_empty = kind == "softmax_present"
  if axis_name is not None:
    local = nkeys.shape[-1]
    nkeys = lax.all_gather(nkeys, axis_name, axis=axis, tiled=True)
    if valid is not None:
      valid = lax.all_gather(valid, axis_name, axis=axis, tiled=True)
  if nkeys.size == 0:                 # no pixel or no row: 0, zero gradient
    zeros = jnp.zeros(nkeys.shape[:-1], preds.dtype)
    out = (zeros, zeros)
    if with_grad:
      out += (jnp.zeros(nkeys.shape, preds.dtype),)
  elif impl == "xla":
    out = _xla_core(nkeys, valid, preds.dtype, with_grad)
  else:
    out = _sort_core_p.bind(nkeys, *(() if valid is None else (valid,)),
                            dtype=jnp.dtype(preds.dtype), with_grad=with_grad,
                            skip_empty=skip_empty, host=True)
  if axis_name is None:
    return out
  # Every device holds the same global values; pmax types them as such
  # (replicated) without changing them.
  loss, total = (lax.pmax(x, axis_name) for x in out[:2])
  if not with_grad:
    return loss, total
  start = lax.axis_index(axis_name) * local
  return loss, total, lax.dynamic_slice_in_dim(out[2], start, local, axis)


# ---------------------------------------------------------------------------
# Layout: one row per (kept index, class), the pooled pixels along it.


def _row_order(layout):
  kept, pooled, class_axis = layout
  return kept + ((class_axis,) if class_axis is not None else ()) + pooled


def _to_rows(x, layout):
  """Moves the kept axes first, then the class axis, then the pooled ones."""
  order = _row_order(layout)
  x = jnp.transpose(x, order)
  lead = x.shape[:len(order) - len(layout[1])]
  return x.reshape(lead + (math.prod(x.shape[len(lead):]),))


def _from_rows(rows, layout, shape):
  """Inverse of :func:`_to_rows` for an array of the original ``shape``."""
  order = _row_order(layout)
  rows = rows.reshape(tuple(shape[a] for a in order))
  return jnp.transpose(rows, tuple(int(a) for a in np.argsort(order)))


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5, 6))
def _lovasz_rows(preds, fg, valid, kind, impl, layout, axis_name):
  """Lovász extension of the Jaccard loss, per row.

  Args:
    preds: Float predictions (float32 or float64) in their own layout:
      probabilities (``kind="softmax"``, errors ``|fg - p|``) or logits
      (``kind="hinge"``, errors ``relu(1 - (2 fg - 1) x)``).
      ``_to_rows(preds, layout)`` gives the rows ``[..., n]``.
    fg: Boolean foreground flags of the rows ``[..., n]``.
    valid: Boolean flags broadcastable to the rows (same rank), or None (all
      valid); invalid pixels carry no weight and should have ``fg`` False.
    kind: ``"softmax"``, ``"softmax_present"`` (the loss of a row without
      foreground is not used: the CPU core skips such rows) or ``"hinge"``.
    impl: ``"auto"`` (NumPy on CPU, XLA elsewhere), ``"xla"`` or
      ``"numpy"``.
    layout: ``(kept, pooled, class_axis)`` axes of ``preds``, static.
    axis_name: Mapped axis (or None) whose devices' rows are pooled.

  Returns:
    ``(loss, total)``, each ``[...]``: the sorted errors dotted with the
    Lovász gradient, and the number of valid foreground pixels (float; no
    gradient).
  """
  return _core(_to_rows(preds, layout), fg, valid, kind, impl,
               with_grad=False, axis_name=axis_name)


@_lovasz_rows.defjvp
def _lovasz_rows_jvp(kind, impl, layout, axis_name, primals, tangents):
  r"""One sort gives the value and :math:`\partial \ell / \partial` preds.

  The loss is linear in the errors between ties, so its tangent is the
  derivative dotted with the tangent of the predictions, summed over the
  pooled axes: linear, so JAX transposes it for reverse mode (the backward
  pass is the cotangent times the saved derivative, nothing is
  differentiated through the sort), and its own derivative is 0 (the
  Hessian of a piecewise-linear function, almost everywhere).

  With ``axis_name`` the derivative is this device's slice of the global
  one, and the tangent is this device's share of the global tangent: the
  transpose is then exactly the device's slice of the global gradient (no
  sum over devices).
  """
  preds, fg, valid = primals
  preds_dot = tangents[0]
  loss, total, grad = _core(_to_rows(preds, layout), fg, valid, kind, impl,
                            with_grad=True, axis_name=axis_name)
  grad = _from_rows(grad, layout, preds.shape)
  pooled = tuple(int(a) for a in layout[1])
  loss_dot = jnp.sum(grad * preds_dot, axis=pooled)
  if axis_name is not None:
    loss_dot = _numerics.global_tangent(loss_dot, axis_name)
  return (loss, total), (loss_dot, jnp.zeros_like(total))


def _impl(fn: str, impl: str) -> str:
  return _checks.option(fn, "impl", impl, ("auto", "xla", "numpy"))


def _lovasz_softmax(probs, labels, *, axis=None, where=None,
                    classes="present", axis_name=None, impl="auto"):
  fn = "lovasz_softmax"
  impl = _impl(fn, impl)
  probs = _checks.as_float(fn, "probs", probs, min_rank=1)
  labels = jnp.asarray(labels)
  if labels.shape != probs.shape[:-1]:
    _checks.fail(fn, f"labels.shape {labels.shape} must equal "
                  f"probs.shape[:-1] (integer class ids, one a pixel); got "
                  f"probs.shape {probs.shape}")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    _checks.fail(fn, f"labels must be integer class ids, got dtype "
                  f"{labels.dtype}", TypeError)
  mask = _checks.mask_for(fn, where, probs.shape[:-1])
  axes = _checks.pooled_axes(fn, axis, probs.ndim)
  num_classes = probs.shape[-1]
  selection = _checks.class_selection(fn, classes, num_classes)
  _checks.debug_unit_interval(fn, "probs", probs,
                              None if mask is None else mask[..., None])
  _checks.debug_labels_in_range(fn, labels, num_classes, mask)

  dtype = _numerics.accum_dtype(probs.dtype)
  p = probs.astype(dtype)
  # Compare ids in a type wide enough for any class count (uint8 labels with
  # C > 256 classes, say).
  labels = _numerics.class_ids(labels)
  if isinstance(selection, str):
    class_ids = jnp.arange(num_classes, dtype=labels.dtype)
  else:
    # Selecting is slicing the class axis; a traced id outside [0, C)
    # selects NaN probabilities (a NaN loss, never another class).
    class_ids = selection.astype(labels.dtype)
    p = jnp.take(p, jnp.where(selection < 0, num_classes, selection), axis=-1,
                 mode="fill", fill_value=jnp.nan)
  kept = tuple(a for a in range(probs.ndim - 1) if a not in axes)
  class_axis = probs.ndim - 1

  valid_rows = None
  labels_rows = _to_rows(labels, (kept, axes, None))[..., None, :]  # [.., 1, n]
  fg_rows = labels_rows == class_ids.reshape(
      (1,) * (labels_rows.ndim - 2) + (-1, 1))                    # [.., C, n]
  if mask is not None:
    # Masked pixels: no value, and no gradient even for NaN probabilities.
    p = jnp.where(mask[..., None], p, 0)
    valid_rows = _to_rows(mask, (kept, axes, None))[..., None, :]
    fg_rows = fg_rows & valid_rows
  kind = "softmax_present" if selection == "present" else "softmax"
  losses, totals = _lovasz_rows(p, fg_rows, valid_rows, kind, impl,
                                (kept, axes, class_axis), axis_name)
  if selection == "present":
    weights = (totals > 0).astype(dtype)
  else:
    weights = jnp.ones(losses.shape, dtype)
  return _numerics.safe_div(jnp.sum(weights * losses, axis=-1),
                            jnp.sum(weights, axis=-1), 0)


def _lovasz_hinge(logits, labels, *, axis=None, where=None, axis_name=None,
                  impl="auto"):
  fn = "lovasz_hinge"
  impl = _impl(fn, impl)
  logits = _checks.as_float(fn, "logits", logits)
  labels = _checks.same_shape(fn, ("logits", "labels"), logits, labels)
  if not (jnp.issubdtype(labels.dtype, jnp.integer)
          or jnp.issubdtype(labels.dtype, jnp.floating)
          or labels.dtype == jnp.bool_):
    _checks.fail(fn, f"labels must be bool, integer or float 0/1, got dtype "
                  f"{labels.dtype}", TypeError)
  mask = _checks.mask_for(fn, where, logits.shape)
  axes = _checks.pooled_axes(fn, axis, logits.ndim, class_axis=False)
  if labels.dtype != jnp.bool_ and _checks.checks_enabled():
    bad = (labels != 0) & (labels != 1)
    if mask is not None:
      bad = bad & mask
    _checks.value_check(~jnp.any(bad),
                        f"{fn}: labels must be 0 or 1 where where is True")

  dtype = _numerics.accum_dtype(logits.dtype)
  x = logits.astype(dtype)
  fg = labels.astype(bool)
  kept = tuple(a for a in range(logits.ndim) if a not in axes)
  valid_rows = None
  if mask is not None:
    x = jnp.where(mask, x, 0)     # masked pixels: no value, no gradient
    fg = fg & mask
    valid_rows = _to_rows(mask, (kept, axes, None))
  losses, _ = _lovasz_rows(x, _to_rows(fg, (kept, axes, None)), valid_rows,
                           "hinge", impl, (kept, axes, None), axis_name)
  return losses


# ---------------------------------------------------------------------------
# Public losses.


def lovasz_softmax(
    probs: ArrayLike,
    labels: ArrayLike,
    *,
    axis: Axis = None,
    where: ArrayLike | None = None,
    classes: Classes = "present",
    axis_name: AxisName = None,
) -> jax.Array:
  r"""Lovász-softmax loss: the Lovász extension of the multiclass IoU loss.

  For each class :math:`c`, over the pooled valid pixels :math:`i`, the
  errors :math:`e_i = |\mathbb{1}[y_i = c] - p_{ic}|` are sorted in decreasing
  order, :math:`e_{\pi_1} \ge e_{\pi_2} \ge \dots`, and

  .. math::
    \ell_c = \sum_k e_{\pi_k} \big(J_c(k) - J_c(k - 1)\big),
    \qquad J_c(k) = 1 - \frac{T_c - F_k}{T_c + B_k},

  with :math:`T_c` the number of pixels of class :math:`c`, and :math:`F_k`,
  :math:`B_k` the pixels of class :math:`c` and of other classes among the
  first :math:`k` (:math:`J_c(k)` is the Jaccard loss of getting exactly
  those :math:`k` pixels wrong; :math:`J_c(0) = 0`). The loss is the mean of
  :math:`\ell_c` over the selected classes.

  Args:
    probs: Probabilities ``[..., C]`` (apply ``jax.nn.softmax`` to logits).
    labels: Integer class ids of shape ``probs.shape[:-1]``.
    axis: Axes to pool over; default every axis but the class axis (the
      whole batch is one example, the reference's ``per_image=False``).
      ``axis=(1, 2)`` on ``[B, H, W, C]`` gives the per-image losses ``[B]``,
      equal to ``jax.vmap``; their mean is the reference's
      ``per_image=True``.
    where: Optional boolean mask of shape ``probs.shape[:-1]``; a masked pixel
      counts for nothing. For an ignore label: ``where=labels != 255``.
    classes: ``"present"`` (classes with a pixel among the valid pooled
      pixels), ``"all"``, or an integer array of class ids to average over.
    axis_name: Name (or tuple of names) of a ``jax.shard_map`` / ``jax.pmap``
      axis whose devices split the pooled pixels (typically the batch): the
      loss is then the Lovász-softmax of the global batch, the same on every
      device, and each device's gradient is its slice of the global gradient.

  Returns:
    The loss with the pooled axes and the class axis removed (a scalar by
    default), float32 (float64 for float64 probabilities).

  Convention:
    Equal to Algorithm 1 of Berman et al. in value and gradient. A class
    absent from its pooled group, when selected (``"all"`` or an index
    array), has :math:`J_c = 1` from the first pixel on, so its loss is its
    largest probability. No valid pixel, or no present class with
    ``"present"``, gives 0 with a zero gradient. Masked pixels sort last with
    zero weight (shapes never depend on the mask). Tied errors give the
    reference's value (the Lovász extension does not depend on how ties are
    ordered) and the gradient of one tie order, a valid subgradient. The
    derivative of :math:`|t - p|` at :math:`p = t` is taken as 0, and as
    :math:`\mp 1` elsewhere (probabilities are assumed in [0, 1]; reported
    under ``checkify`` inside :func:`jaxloss.value_checks`, as labels out of
    range, at valid pixels). bf16/fp16
    probabilities are sorted and summed in float32. The sort runs once per
    call; the gradient reuses its order and saves one float per pixel and
    class. On CPU the sort runs in NumPy (a host callback), elsewhere and in
    programs lowered for ``jax.export`` in XLA; both give the same results.
    Every AD mode works: the derivative is a ``jax.custom_jvp`` linear in the
    tangent (``grad``, ``jvp``, ``jacfwd``; Hessian-vector products are 0,
    the loss being piecewise linear). Classes: an index array selects as
    slicing the class axis (a repeated id counts twice); concrete ids must
    lie in ``[0, C)``, a traced id outside gives NaN. NaN in any selected or
    unselected row's probabilities gives a NaN loss.

    Across devices (``axis_name``): every device gathers the sort keys of all
    devices (4 bytes per pixel and class) and sorts the global rows itself,
    so the result is exact, equal to the single-device loss on the global
    batch (ties included, when the devices split the leading pooled axis in
    order); each device's gradient is its slice of the global one (for
    replicated parameters ``shard_map`` returns the sum of the devices'
    shares, which is the global gradient; under ``pmap`` sum them with
    ``lax.psum``). The per-image loss (``axis=(1, 2)``) needs no
    communication: shard the batch and leave ``axis_name`` out. Outside
    ``shard_map`` / ``pmap`` an ``axis_name`` raises JAX's ``NameError``
    (unbound axis name). Forward mode with ``axis_name``: inside a
    type-checked ``shard_map`` (the default) the tangent is the global one;
    under ``pmap`` or ``check_vma=False`` each device's tangent is its own
    share (``lax.psum`` them).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> labels = jnp.array([0, 1])
    >>> # A perfect prediction costs nothing.
    >>> jaxloss.lovasz_softmax(jnp.eye(2), labels)
    Array(0., dtype=float32)
    >>> # Every error is 1/4: each class loses 1/4 times the Jaccard loss of
    >>> # getting both pixels wrong, which is 1.
    >>> probs = jnp.array([[0.75, 0.25], [0.25, 0.75]])
    >>> jaxloss.lovasz_softmax(probs, labels)
    Array(0.25, dtype=float32)

  References:
    Berman, Rannen Triki, Blaschko, "The Lovász-Softmax loss: A tractable
    surrogate for the optimization of the intersection-over-union measure in
    neural networks", CVPR 2018. https://arxiv.org/abs/1705.08790
  """
  return _lovasz_softmax(probs, labels, axis=axis, where=where,
                         classes=classes, axis_name=axis_name)


def lovasz_hinge(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    axis: Axis = None,
    where: ArrayLike | None = None,
    axis_name: AxisName = None,
) -> jax.Array:
  r"""Lovász hinge loss: the Lovász extension of the binary IoU loss.

  Over the pooled valid pixels, with signs :math:`s_i = 2 y_i - 1`, the hinge
  errors :math:`e_i = 1 - s_i x_i` are sorted in decreasing order and

  .. math::
    \ell = \sum_k \max(e_{\pi_k}, 0) \big(J(k) - J(k - 1)\big),
    \qquad J(k) = 1 - \frac{T - F_k}{T + B_k},

  with :math:`T` the number of foreground pixels and :math:`F_k, B_k` the
  foreground and background pixels among the first :math:`k`.

  Args:
    logits: Float logits of any shape (one per pixel, no class axis).
    labels: Binary labels of the same shape (bool, integer or float, 0 or 1).
    axis: Axes to pool over; default every axis (the whole batch is one
      example). ``axis=(1, 2)`` on ``[B, H, W]`` gives the per-image losses
      ``[B]``, equal to ``jax.vmap``.
    where: Optional boolean mask of the shape of ``logits``; a masked pixel
      counts for nothing.
    axis_name: Name (or tuple of names) of a ``jax.shard_map`` / ``jax.pmap``
      axis whose devices split the pooled pixels: the global-batch loss on
      every device, and each device's gradient its slice of the global one.

  Returns:
    The loss with the pooled axes removed (a scalar by default), float32
    (float64 for float64 logits).

  Convention:
    Equal to the binary Lovász hinge of Berman et al. in value and gradient.
    An image without foreground has :math:`J = 1` from the first pixel on,
    so its loss is the largest hinge error (as in the reference; it is not
    0). No valid pixel gives 0 with a zero gradient. Masked pixels sort last
    with zero weight. Ties: the reference's value and a valid subgradient.
    bf16/fp16 logits are computed in float32. The gradient reuses the
    forward sort (one saved float per pixel); every AD mode works (see
    :func:`lovasz_softmax`). Labels other than 0 or 1 at valid pixels are
    reported under ``checkify`` inside :func:`jaxloss.value_checks`. ``axis_name`` as in
    :func:`lovasz_softmax` (per-image losses need no communication).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> labels = jnp.array([1, 0])
    >>> # Margins of 2 on both pixels: every hinge error is <= 0.
    >>> jaxloss.lovasz_hinge(jnp.array([2.0, -2.0]), labels)
    Array(0., dtype=float32)
    >>> # Both errors are 1/2 and the Jaccard loss of missing both is 1.
    >>> jaxloss.lovasz_hinge(jnp.array([0.5, -0.5]), labels)
    Array(0.5, dtype=float32)

  References:
    Berman, Rannen Triki, Blaschko, "The Lovász-Softmax loss: A tractable
    surrogate for the optimization of the intersection-over-union measure in
    neural networks", CVPR 2018. https://arxiv.org/abs/1705.08790
  """
  return _lovasz_hinge(logits, labels, axis=axis, where=where,
                       axis_name=axis_name)
