"""Static checks of shapes, ranks, dtypes and options, run at trace time.

Every public loss calls these before it computes anything. They look only at
shapes, dtypes and concrete option values, so they cost nothing under ``jit``,
and they raise ``ValueError`` (shapes, ranks, lengths, option values) or
``TypeError`` (dtypes, option types) with a message that names the loss, the
argument and what was received.

Value checks of array contents (labels in range, probabilities in [0, 1]) go
through :func:`value_check`. They are traced only inside :func:`value_checks`
(a context manager): there they are ``checkify.debug_check`` calls, reported by
``checkify.checkify``; outside it a program carries no trace of them (no
checkify effect, so it serializes with ``jax.export``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable
from collections.abc import Sequence
from typing import Any
from typing import NoReturn

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify
from jax.typing import ArrayLike

from jaxloss import _numerics

# Argument types of the public functions, checked by the functions below.
Axis = int | Sequence[int] | None
AxisName = Hashable | None
Classes = str | ArrayLike
Sampling = float | Sequence[float] | None
Activation = str | None  # None, "softmax" or "sigmoid"


def fail(
  fn: str, message: str, error: type[Exception] = ValueError
) -> NoReturn:
  """Raises ``error`` with a message that starts with the function's name."""
  raise error(f"{fn}: {message}")


def _chex(fn: str, check, *args, message: str) -> None:
  """Runs a chex assertion and re-raises its failure as a named ValueError."""
  try:
    check(*args)
  except AssertionError:
    fail(fn, message)


def as_float(fn: str, name: str, x, *, min_rank: int = 0) -> jax.Array:
  """Returns ``x`` as an array, requiring a floating dtype and a minimum rank."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    fail(
      fn,
      f"{name} must have a floating dtype, got {x.dtype} "
      f"(cast with {name}.astype(jnp.float32))",
      TypeError,
    )
  if x.ndim < min_rank:
    fail(
      fn,
      f"{name} must have rank >= {min_rank} (the class axis is last), "
      f"got {name}.shape {x.shape}",
    )
  return x


def same_shape(fn: str, names: tuple[str, str], a: jax.Array, b) -> jax.Array:
  """Returns ``b`` as an array, requiring ``b.shape == a.shape``."""
  b = jnp.asarray(b)
  _chex(
    fn,
    chex.assert_equal_shape,
    [a, b],
    message=f"{names[1]}.shape {b.shape} must equal {names[0]}.shape {a.shape}",
  )
  return b


def coordinates(
  fn: str,
  name: str,
  x,
  size: int | tuple[int, ...],
  *,
  meaning: str,
  rows: str | None = None,
  note: str = "",
) -> jax.Array:
  """A floating array with ``size`` numbers on its last axis (boxes: 4,
  rotated boxes: 5; a tuple allows each of its sizes, e.g. ``(4, 6)`` for 2-D
  or 3-D boxes); with ``rows`` (``"N"``, ``"M"``), a set of them
  ``[..., rows, size]``. ``note`` ends the error message."""
  x = as_float(fn, name, x)
  sizes = (size,) if isinstance(size, int) else tuple(size)
  if x.ndim < (1 if rows is None else 2) or x.shape[-1] not in sizes:
    lead = "[..., " if rows is None else f"[..., {rows}, "
    want = " or ".join(f"{lead}{n}]" for n in sizes)
    fail(
      fn,
      f"{name} must have shape {want} ({meaning} on the last axis), "
      f"got {name}.shape {x.shape}{note}",
    )
  return x


def broadcast_shapes(
  fn: str, names: tuple[str, str], a_shape, b_shape, what: str
) -> tuple[int, ...]:
  """The broadcast of two shapes (``what`` of ``names``), or a named error."""
  try:
    return tuple(np.broadcast_shapes(tuple(a_shape), tuple(b_shape)))
  except ValueError:
    fail(
      fn,
      f"the {what} of {names[0]}.shape and {names[1]}.shape must "
      f"broadcast, got {tuple(a_shape)} and {tuple(b_shape)}",
    )


def labels_for(fn: str, preds_name: str, preds: jax.Array, labels) -> jax.Array:
  """Checks ``labels`` against ``preds`` of shape ``[..., C]``.

  Integer class ids take shape ``preds.shape[:-1]``; targets (float, bool or
  integer 0/1) take ``preds.shape``.
  """
  labels = jnp.asarray(labels)
  if labels.shape == preds.shape:
    return labels
  if labels.shape == preds.shape[:-1]:
    if not jnp.issubdtype(labels.dtype, jnp.integer):
      fail(
        fn,
        f"labels of shape {preds_name}.shape[:-1] {labels.shape} are "
        f"class ids and must have an integer dtype, got {labels.dtype}; "
        f"pass float targets with the shape of {preds_name} "
        f"{preds.shape}",
        TypeError,
      )
    return labels
  fail(
    fn,
    f"labels.shape {labels.shape} must equal {preds_name}.shape[:-1] "
    f"or {preds_name}.shape; got {preds_name}.shape {preds.shape}",
  )


def class_ids_for(
  fn: str, preds_name: str, preds: jax.Array, labels
) -> jax.Array:
  """Checks integer class ids of shape ``preds.shape[:-1]``."""
  labels = jnp.asarray(labels)
  if labels.shape != preds.shape[:-1]:
    fail(
      fn,
      f"labels.shape {labels.shape} must equal {preds_name}.shape[:-1] "
      f"(integer class ids, one a pixel); got {preds_name}.shape "
      f"{preds.shape}",
    )
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    fail(
      fn,
      f"labels must be integer class ids, got dtype {labels.dtype}",
      TypeError,
    )
  return labels


def mask_for(
  fn: str, where, shape: tuple[int, ...], *, broadcast: bool = False
) -> jax.Array | None:
  """Checks an optional boolean mask; returns it broadcast to ``shape``."""
  if where is None:
    return None
  return _mask(fn, where, shape, broadcast)


def _mask(
  fn: str, where, shape: tuple[int, ...], broadcast: bool = False
) -> jax.Array:
  where = jnp.asarray(where)
  if where.dtype != jnp.bool_:
    fail(
      fn,
      f"where must be a boolean array, got dtype {where.dtype} "
      "(for an ignore label use where=labels != 255)",
      TypeError,
    )
  if where.shape == shape:
    return where
  if broadcast:
    try:
      if np.broadcast_shapes(where.shape, shape) == shape:
        return jnp.broadcast_to(where, shape)
    except ValueError:
      pass
    fail(
      fn, f"where.shape {where.shape} must broadcast to the loss shape {shape}"
    )
  fail(fn, f"where.shape {where.shape} must equal {shape} (one flag a pixel)")


def region_mask(fn: str, where, shape: tuple[int, ...]) -> jax.Array | None:
  """Checks a region loss's mask against ``probs.shape`` ``[..., C]``.

  One flag a pixel (shape ``[...]``) or one a pixel and class (shape
  ``[..., C]``, for partially annotated multi-label data). Returns it with the
  rank of ``shape`` (a pixel mask gets a trailing axis of size 1), or None.
  """
  if where is None:
    return None
  where = jnp.asarray(where)
  if where.shape == tuple(shape):
    return _mask(fn, where, tuple(shape))
  if where.shape != tuple(shape[:-1]):
    fail(
      fn,
      f"where.shape {where.shape} must equal probs.shape[:-1] "
      f"{tuple(shape[:-1])} (one flag a pixel) or probs.shape "
      f"{tuple(shape)} (one a pixel and class)",
    )
  return _mask(fn, where, tuple(shape[:-1]))[..., None]


def pooled_axes(
  fn: str,
  axis: int | Sequence[int] | None,
  ndim: int,
  *,
  class_axis: bool = True,
) -> tuple[int, ...]:
  """Normalises ``axis`` for a rank-``ndim`` input.

  With ``class_axis`` the last axis holds the classes: it is never pooled and
  the default pools every other axis. Without, every axis may be pooled and
  the default pools them all.
  """
  if axis is None:
    return tuple(range(ndim - 1 if class_axis else ndim))

  def is_int(a):
    return isinstance(a, (int, np.integer)) and not isinstance(
      a, (bool, np.bool_)
    )

  axes: tuple[Any, ...]
  if is_int(axis):
    axes = (axis,)
  elif isinstance(axis, (tuple, list)):
    axes = tuple(axis)
  else:
    fail(
      fn,
      f"axis must be None, an int or a sequence of ints, got {axis!r}",
      TypeError,
    )
  out = []
  for a in axes:
    if not is_int(a):
      fail(
        fn,
        f"axis must be None, an int or a sequence of ints, got {axis!r}",
        TypeError,
      )
    if not -ndim <= a < ndim:
      fail(fn, f"axis {a} is out of range for an input of rank {ndim}")
    a = int(a) % ndim
    if class_axis and a == ndim - 1:
      fail(
        fn,
        f"axis {axis!r} includes the class axis (the last axis, "
        f"{ndim - 1}); pool over the leading axes only",
      )
    if a in out:
      fail(fn, f"axis {axis!r} repeats axis {a}")
    out.append(a)
  return tuple(sorted(out))


def class_vector(fn: str, name: str, x, num_classes: int) -> jax.Array:
  """Checks a per-class vector of shape ``[C]``."""
  if isinstance(x, (str, bool)) or x is None:
    fail(
      fn,
      f"{name} must be an array of shape ({num_classes},), got {x!r}",
      TypeError,
    )
  x = jnp.asarray(x)
  if x.shape != (num_classes,):
    fail(
      fn,
      f"{name}.shape {x.shape} must be ({num_classes},), one entry per class",
    )
  return x


def class_selection(fn: str, classes, num_classes: int):
  """Returns "all", "present" or an index array, checked when concrete.

  Python sequences, NumPy arrays and concrete JAX arrays are concrete (also
  under ``jit``): their ids must lie in ``[0, C)``. Only a traced array is
  passed unchecked.
  """
  if isinstance(classes, str):
    if classes not in ("all", "present"):
      fail(
        fn,
        f'classes must be "all", "present" or an integer array of '
        f"class ids, got {classes!r}",
      )
    return classes
  if classes is None or isinstance(classes, (bool, np.bool_)):
    fail(
      fn,
      f'classes must be "all", "present" or an integer array of class '
      f"ids, got {classes!r}",
      TypeError,
    )
  if is_traced(classes):
    idx = classes
  else:
    try:
      values = np.asarray(classes)
    except (TypeError, ValueError):
      values = np.asarray([None])
    if values.size == 0 and values.ndim == 1:
      values = values.astype(np.int32)
    if not np.issubdtype(values.dtype, np.integer) or values.ndim != 1:
      fail(
        fn,
        "classes as an array must be a rank-1 integer array of class "
        f"ids, got {classes!r}",
        TypeError,
      )
    if values.size and (values.min() < 0 or values.max() >= num_classes):
      fail(fn, f"classes {values.tolist()} must lie in [0, {num_classes})")
    idx = jnp.asarray(values.astype(np.int32))
  if not jnp.issubdtype(idx.dtype, jnp.integer) or idx.ndim != 1:
    fail(
      fn,
      "classes as an array must be a rank-1 integer array of class "
      f"ids, got dtype {idx.dtype} and shape {idx.shape}",
      TypeError,
    )
  return idx


def option(fn: str, name: str, value, allowed: Sequence[str]) -> str:
  if not isinstance(value, str) or value not in allowed:
    fail(fn, f"{name} must be one of {list(allowed)}, got {value!r}")
  return value


def flag(fn: str, name: str, value) -> bool:
  """A Python or NumPy bool option."""
  if not isinstance(value, (bool, np.bool_)):
    fail(fn, f"{name} must be True or False, got {value!r}", TypeError)
  return bool(value)


def is_traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def scalar(
  fn: str,
  name: str,
  value,
  *,
  low: float | None = None,
  high: float | None = None,
  above: bool = False,
  traced: bool = True,
):
  """A real scalar option, as a Python float when concrete.

  Python and NumPy numbers and concrete 0-d arrays are checked at trace time:
  finite, ``>= low`` (``> low`` with ``above``) and ``<= high``. A traced
  scalar (``traced=True``) is returned as a float array, unchecked.
  """
  if isinstance(value, (bool, np.bool_, str)) or value is None:
    fail(fn, f"{name} must be a real number, got {value!r}", TypeError)
  if is_traced(value):
    if not traced:
      fail(
        fn,
        f"{name} must be a concrete number (it selects the "
        "computation), got a traced value",
        TypeError,
      )
    if jnp.shape(value) != () or not (
      jnp.issubdtype(value.dtype, jnp.floating)
      or jnp.issubdtype(value.dtype, jnp.integer)
    ):
      fail(
        fn,
        f"{name} must be a real scalar, got shape "
        f"{jnp.shape(value)} and dtype {value.dtype}",
        TypeError,
      )
    return value
  array = np.asarray(value)
  if array.shape != ():
    fail(fn, f"{name} must be a scalar, got shape {array.shape}")
  if not (
    np.issubdtype(array.dtype, np.floating)
    or np.issubdtype(array.dtype, np.integer)
  ):
    fail(
      fn, f"{name} must be a real number, got dtype {array.dtype}", TypeError
    )
  number = float(array)
  if not np.isfinite(number):
    fail(fn, f"{name} must be finite, got {number}")
  if low is not None and (number <= low if above else number < low):
    fail(fn, f"{name} must be {'>' if above else '>='} {low}, got {number}")
  if high is not None and number > high:
    fail(fn, f"{name} must be <= {high}, got {number}")
  return number


def nonnegative(fn: str, name: str, value):
  """A scalar ``>= 0`` (Python float when concrete; a traced one passes)."""
  return scalar(fn, name, value, low=0.0)


def nonnegative_vector(
  fn: str, name: str, value, num_classes: int
) -> jax.Array:
  """A ``[C]`` vector of weights; concrete ones must be finite and >= 0."""
  checked = class_vector(fn, name, value, num_classes)
  if not (
    jnp.issubdtype(checked.dtype, jnp.floating)
    or jnp.issubdtype(checked.dtype, jnp.integer)
  ):
    fail(fn, f"{name} must be real, got dtype {checked.dtype}", TypeError)
  if not is_traced(checked):
    values = np.asarray(checked, np.float64)
    if not np.all(np.isfinite(values) & (values >= 0)):
      fail(fn, f"{name} must be finite and >= 0, got {values.tolist()}")
  return checked


# ---------------------------------------------------------------------------
# Value checks: traced only inside ``value_checks()``.


# A jit-cache-sensitive context: a function jitted outside ``value_checks``
# is traced again inside it (and the reverse), so the checks are never
# missing from, or left in, a cached program.
_ENABLED = jax.make_user_context(default_value=False)


def checks_enabled() -> bool:
  return bool(_ENABLED.value)


@contextlib.contextmanager
def value_checks(enabled: bool = True):
  """Traces jaxloss's value checks into the losses called in this context.

  Shapes, dtypes and option values are always checked at trace time. Checks of
  array contents (class ids in ``[0, C)``, probabilities and targets in
  ``[0, 1]``, binary labels in ``{0, 1}``, at the entries that ``where``
  keeps) cannot raise under ``jit``; inside this context they are traced as
  ``checkify.debug_check`` calls, which ``jax.experimental.checkify`` turns
  into errors. Outside it (the default) the losses contain no check at all:
  no cost, no checkify effect, and the program serializes with
  ``jax.export``.

  Args:
    enabled: ``False`` turns the checks off inside an enclosing context.

  Yields:
    Nothing; use it as ``with jaxloss.value_checks(): ...``.

  Convention:
    The setting is read when a loss is traced and is part of ``jax.jit``'s
    cache key (``jax.make_user_context``), so a function jitted outside the
    context is traced again inside it, and the reverse.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jax.experimental import checkify
    >>> import jaxloss
    >>> probs = jnp.full((2, 3), 1 / 3)
    >>> labels = jnp.array([0, 7])          # 7 is not a class
    >>> checked = checkify.checkify(jax.jit(jaxloss.dice_loss))
    >>> with jaxloss.value_checks():
    ...   error, loss = checked(probs, labels)
    >>> print(error.get())  # doctest: +ELLIPSIS
    dice_loss: labels must lie in [0, 3) where where is True...
  """
  if not isinstance(enabled, (bool, np.bool_)):
    fail("value_checks", f"enabled must be a bool, got {enabled!r}", TypeError)
  with _ENABLED(bool(enabled)):
    yield


def value_check(ok: jax.Array, message: str) -> None:
  """Reports ``message`` under checkify unless ``ok``; traced only if enabled."""
  if checks_enabled():
    checkify.debug_check(ok, message)


def debug_labels_in_range(
  fn: str, labels: jax.Array, num_classes: int, where: jax.Array | None
) -> None:
  """Reports a class id outside [0, C) at a pixel ``where`` keeps.

  ``where`` has the shape of ``labels``, or is a region loss's mask with a
  trailing class axis (:func:`region_mask`): a pixel counts if any of its
  entries is kept.
  """
  if not checks_enabled():
    return
  labels = _numerics.class_ids(labels)  # uint8 ids with C > 256
  bad = (labels < 0) | (labels >= num_classes)
  if where is not None:
    if where.ndim == labels.ndim + 1:
      where = jnp.any(where, axis=-1)
    bad = bad & where
  value_check(
    ~jnp.any(bad),
    f"{fn}: labels must lie in [0, {num_classes}) where where is True",
  )


def debug_unit_interval(
  fn: str, name: str, x: jax.Array, where: jax.Array | None = None
) -> None:
  """Reports an entry of ``x`` outside [0, 1] (NaN included) that ``where``
  keeps (``where`` broadcasts against ``x``)."""
  if not checks_enabled():
    return
  bad = ~((x >= 0) & (x <= 1))
  if where is not None:
    bad = bad & where
  value_check(
    ~jnp.any(bad), f"{fn}: {name} must lie in [0, 1] where where is True"
  )
