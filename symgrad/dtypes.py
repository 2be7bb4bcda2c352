"""The dtypes symgrad supports and NumPy 2 promotion between them.

Type inference asks NumPy itself (on empty arrays) what dtype an operation
gives, so symgrad promotes exactly as the installed NumPy does, Python scalars
being weak (NEP 50).
"""

import numpy as np

from .config import config

__all__ = ["SUPPORTED", "as_dtype", "is_float", "is_int", "is_bool", "result_dtype"]

SUPPORTED = ("float32", "float64", "int32", "int64", "bool")
FLOATS = ("float32", "float64")
INTS = ("int32", "int64")


def as_dtype(dtype, what="dtype"):
    """Normalise ``dtype`` (str, NumPy dtype or type; None means floatX) to a name."""
    if dtype is None:
        return config.floatX
    if dtype == "floatX":
        return config.floatX
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"{what}: {dtype!r} is not a dtype") from None
    if name not in SUPPORTED:
        raise TypeError(f"{what}: dtype {name} is not supported; use one of {SUPPORTED}")
    return name


def is_float(dtype):
    return dtype in FLOATS


def is_int(dtype):
    return dtype in INTS


def is_bool(dtype):
    return dtype == "bool"


def is_python_scalar(x):
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def result_dtype(fn, dtypes, scalars=(), opname="op"):
    """The dtype ``fn`` gives on arrays of ``dtypes`` (and weak Python ``scalars``).

    Raises ``TypeError`` naming ``opname`` if NumPy refuses the combination or
    if the result is not a supported dtype (``exp`` of a bool is float16).
    """
    args = [np.empty(0, dtype=d) for d in dtypes] + list(scalars)
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(fn(*args))
    except (TypeError, np.exceptions.DTypePromotionError, OverflowError) as e:
        shown = ", ".join(list(dtypes) + [type(s).__name__ for s in scalars])
        raise TypeError(f"{opname} is not defined for ({shown}): {e}") from None
    name = out.dtype.name
    if name not in SUPPORTED:
        shown = ", ".join(dtypes)
        raise TypeError(f"{opname}({shown}) would give {name}, which symgrad does not support; "
                        f"cast the input first, e.g. x.astype('{config.floatX}')")
    return name


def weak_scalar_dtype(value, partner_dtypes):
    """The dtype a Python scalar takes next to variables of ``partner_dtypes`` (NEP 50)."""
    if not partner_dtypes:
        return default_scalar_dtype(value)
    try:
        name = np.result_type(*[np.dtype(d) for d in partner_dtypes], value).name
    except OverflowError:
        raise TypeError(f"Python integer {value} does not fit in {partner_dtypes[0]}") from None
    return name if name in SUPPORTED else default_scalar_dtype(value)


def default_scalar_dtype(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    return config.floatX
