"""TensorProto <-> tensors, with the rules of TensorFlow's ``Tensor::FromProto`` and
``Tensor::AsProtoField`` (what TF Serving uses for requests and responses).

* Parsing: the shape must be known and non-negative; the values come from the field of the
  dtype (``float_val``, ``string_val``...) or ``tensor_content``; fewer values than elements
  repeat the last one, none gives zeros, more is an error. Anything else that
  ``tf.make_ndarray`` cannot decode is a parse error too.
* Serializing: values go into the typed repeated field (``float_val`` for float32), not
  ``tensor_content`` -- TF Serving's default for Predict responses, so clients that read
  ``float_val`` directly work against both servers.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.status import invalid_argument

# dtype -> (repeated field, values per element)
_FIELDS = {
    types_pb2.DT_FLOAT: ("float_val", 1),
    types_pb2.DT_DOUBLE: ("double_val", 1),
    types_pb2.DT_INT32: ("int_val", 1),
    types_pb2.DT_UINT8: ("int_val", 1),
    types_pb2.DT_INT16: ("int_val", 1),
    types_pb2.DT_INT8: ("int_val", 1),
    types_pb2.DT_UINT16: ("int_val", 1),
    types_pb2.DT_INT64: ("int64_val", 1),
    types_pb2.DT_UINT32: ("uint32_val", 1),
    types_pb2.DT_UINT64: ("uint64_val", 1),
    types_pb2.DT_BOOL: ("bool_val", 1),
    types_pb2.DT_STRING: ("string_val", 1),
    types_pb2.DT_HALF: ("half_val", 1),
    types_pb2.DT_BFLOAT16: ("half_val", 1),
    types_pb2.DT_COMPLEX64: ("scomplex_val", 2),
    types_pb2.DT_COMPLEX128: ("dcomplex_val", 2),
}
_MAX_RANK = 254  # TensorShape's limit


def to_tensor(proto: tensor_pb2.TensorProto, alias: str) -> tf.Tensor:
    """The tensor a request's TensorProto holds; INVALID_ARGUMENT
    ``tensor parsing error: <alias>`` when TensorFlow could not parse it."""
    try:
        return _to_tensor(proto)
    except Exception:  # noqa: BLE001 - any decoding failure is TF Serving's parse error
        raise invalid_argument(f"tensor parsing error: {alias}") from None


def _to_tensor(proto: tensor_pb2.TensorProto) -> tf.Tensor:
    field = _FIELDS.get(proto.dtype)
    if field is None:
        raise ValueError(f"unsupported dtype {proto.dtype}")
    shape = proto.tensor_shape
    if shape.unknown_rank or len(shape.dim) > _MAX_RANK:
        raise ValueError("invalid shape")
    dims = [d.size for d in shape.dim]
    if any(d < 0 for d in dims):
        raise ValueError("negative dimension")
    n = math.prod(dims)
    if proto.tensor_content:
        return tf.constant(tf.make_ndarray(proto), dtype=tf.as_dtype(proto.dtype))
    name, per_element = field
    values = getattr(proto, name)
    count = len(values)
    if count > n * per_element:
        raise ValueError("more values than elements")
    if proto.dtype == types_pb2.DT_STRING:  # the hot path: serialized tf.Examples
        if count == n:
            items = list(values)
        elif count == 0:
            items = [b""] * n
        else:
            items = list(values) + [values[-1]] * (n - count)
        tensor = tf.constant(items, dtype=tf.string)
        return tensor if len(dims) == 1 else tf.reshape(tensor, dims)
    return tf.constant(tf.make_ndarray(proto), dtype=tf.as_dtype(proto.dtype))


def fill_proto(proto: tensor_pb2.TensorProto, value) -> None:
    """Writes ``value`` (a tf.Tensor or numpy array) into ``proto`` like ``AsProtoField``."""
    if isinstance(value, tf.Tensor):
        dtype = value.dtype
        array = value.numpy()
    else:
        array = np.asarray(value)
        dtype = tf.as_dtype(array.dtype) if array.dtype != object else tf.string
    enum = dtype.as_datatype_enum
    field = _FIELDS.get(enum)
    if field is None:  # resource/variant/quantized: no repeated field of their own
        proto.CopyFrom(tf.make_tensor_proto(array, dtype=dtype))
        return
    proto.dtype = enum
    dim = proto.tensor_shape.dim
    for size in array.shape:
        dim.add().size = size
    flat = array.ravel()
    if enum in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
        flat = flat.view(np.uint16)
    elif enum in (types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128):
        flat = np.stack([flat.real, flat.imag], axis=-1).ravel()
    getattr(proto, field[0]).extend(flat.tolist())


def to_proto(value) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto()
    fill_proto(proto, value)
    return proto
