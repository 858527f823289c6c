"""Input validation shared by the metric functions.

Every check raises ``ValueError`` whose message names the argument (or frame column) and shows
one offending value with its index, so a bad evaluation input is found without a debugger.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def as_1d(name: str, values: Any) -> np.ndarray:
    """Returns ``values`` as a 1-D array.

    Keras ``predict`` returns shape ``(n, 1)``; that single trailing axis is dropped so model
    output can be passed straight in. Any other multi-dimensional shape is rejected.

    Args:
        name: argument name used in the error message.
        values: array-like.

    Returns:
        A 1-D numpy array (a view where possible).
    """
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (or shape (n, 1)), got shape {array.shape}")
    return array


def _plain(array: np.ndarray, index: int) -> Any:
    """Element as a Python value, so messages read ``2`` rather than ``np.int64(2)``."""
    return array[index:index + 1].tolist()[0]


def _first_bad(name: str, array: np.ndarray, bad: np.ndarray, requirement: str) -> None:
    """Raises naming the first element flagged in ``bad``, if any."""
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must {requirement}; found {_plain(array, index)!r} at index {index} "
            f"({int(bad.sum())} bad value(s) in total)")


def as_labels(name: str, values: Any) -> np.ndarray:
    """Checks binary labels and returns them as a boolean array.

    Args:
        name: argument name used in the error message.
        values: array-like of 0/1 (ints, floats or bools).

    Returns:
        Boolean array, True for positives.
    """
    array = as_1d(name, values)
    if array.dtype == bool:
        return array
    # Elementwise, so an object array flags only its non-0/1 entries; a string array compares
    # unequal everywhere, and NaN compares unequal to both.
    bad = np.asarray((array != 0) & (array != 1), dtype=bool)
    _first_bad(name, array, bad, "contain only 0 and 1")
    return np.asarray(array == 1, dtype=bool)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def as_finite(name: str, values: Any) -> np.ndarray:
    """Checks that every value is a finite number.

    Args:
        name: argument name used in the error message.
        values: array-like of numbers.

    Returns:
        float64 array.
    """
    array = as_1d(name, values)
    try:
        floats = array.astype(np.float64)
    except (TypeError, ValueError):
        # Error path only, so a Python loop to find the culprit is affordable.
        index = next((i for i, value in enumerate(array) if not _is_number(value)), 0)
        raise ValueError(
            f"{name} must be numeric; found {_plain(array, index)!r} at index {index}") from None
    _first_bad(name, array, ~np.isfinite(floats), "be finite")
    return floats


def as_probabilities(name: str, values: Any) -> np.ndarray:
    """Checks that every value is a probability in [0, 1].

    Args:
        name: argument name used in the error message.
        values: array-like of numbers.

    Returns:
        float64 array.
    """
    floats = as_finite(name, values)
    _first_bad(name, floats, (floats < 0) | (floats > 1), "lie in [0, 1]")
    return floats


def as_weights(name: str, values: Any) -> np.ndarray:
    """Checks that every value is a finite, non-negative sample weight.

    Args:
        name: argument name used in the error message.
        values: array-like of numbers.

    Returns:
        float64 array.
    """
    floats = as_finite(name, values)
    _first_bad(name, floats, floats < 0, "be non-negative")
    return floats


def check_same_length(**arrays: np.ndarray) -> int:
    """Checks that all arrays have the length of the first one.

    Args:
        **arrays: name -> 1-D array, the first being the reference.

    Returns:
        The common length.
    """
    (ref_name, ref), *rest = arrays.items()
    for name, array in rest:
        if len(array) != len(ref):
            raise ValueError(
                f"{name} has length {len(array)} but {ref_name} has length {len(ref)}")
    return len(ref)
