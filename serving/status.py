"""Errors with TensorFlow Serving's status codes and message shapes.

Every failure a handler can report is a :class:`ServingError` carrying the gRPC code and the
message the C++ server would send (see ``../shared/TFSERVING.md``); the gRPC layer turns it
into the call's status. TensorFlow runtime errors keep their own code (TF's and gRPC's
canonical codes are the same numbers) and message.
"""
from __future__ import annotations

import re

import grpc

# TF Serving's ToGRPCStatus cuts longer messages and appends this marker.
MESSAGE_LIMIT = 1024
TRUNCATED = "...TRUNCATED"

_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}

# DataTypeString() names where they differ from tf.DType.name.
_DTYPE_STRINGS = {"float32": "float", "float64": "double", "float16": "half"}


class ServingError(Exception):
    """A failed request: a gRPC status code and TF Serving's message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def from_tf_error(error) -> ServingError:
    """A ``tf.errors.OpError`` raised while running a signature, as the same status."""
    code = _CODES_BY_VALUE.get(getattr(error, "error_code", 2), grpc.StatusCode.UNKNOWN)
    return ServingError(code, clean_tf_message(getattr(error, "message", None) or str(error)))


_EAGER_PREFIX = re.compile(
    r"^Graph execution error:\s*(?:Detected at node .*?\(most recent call last\):\n"
    r"(?:<stack traces unavailable>\n|(?:  .*\n)*))?", re.S)
_EAGER_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\]\s*$")


def clean_tf_message(message: str) -> str:
    """An eager op error's message without what Python's eager runtime adds ("Graph
    execution error: Detected at node ...", " [Op:__inference_...]"), leaving the kernel's
    message as a TF1 Session reports it."""
    return _EAGER_SUFFIX.sub("", _EAGER_PREFIX.sub("", message, count=1))


def grpc_message(message: str) -> str:
    if len(message) > MESSAGE_LIMIT:
        return message[:MESSAGE_LIMIT] + TRUNCATED
    return message


def dtype_string(dtype) -> str:
    """TensorFlow's ``DataTypeString``: ``float``, ``double``, ``string``, ``int64``..."""
    name = dtype.name
    return _DTYPE_STRINGS.get(name, name)


def set_string(items) -> str:
    """``absl::StrJoin(std::set, ",")``: sorted, comma separated."""
    return ",".join(sorted(items))
