"""TensorProto parsing with Tensor::FromProto's rules, and AsProtoField serialization."""
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.status import ServingError, clean_tf_message, grpc_message
from serving.tensors import fill_proto, to_proto, to_tensor


def _proto(dtype, dims, **values):
    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in dims:
        proto.tensor_shape.dim.add().size = size
    return proto


def test_fewer_values_repeat_the_last_and_none_gives_zeros():
    got = to_tensor(_proto(types_pb2.DT_FLOAT, [2, 2], float_val=[1.0, 2.0]), "x")
    assert got.numpy().tolist() == [[1.0, 2.0], [2.0, 2.0]]
    assert to_tensor(_proto(types_pb2.DT_INT64, [3]), "x").numpy().tolist() == [0, 0, 0]
    got = to_tensor(_proto(types_pb2.DT_STRING, [3], string_val=[b"a", b"b"]), "x")
    assert got.numpy().tolist() == [b"a", b"b", b"b"]
    assert to_tensor(_proto(types_pb2.DT_STRING, [2]), "x").numpy().tolist() == [b"", b""]
    content = np.array([[1, 2], [3, 4]], np.int32)
    got = to_tensor(_proto(types_pb2.DT_INT32, [2, 2], tensor_content=content.tobytes()), "x")
    assert got.dtype == tf.int32 and got.numpy().tolist() == content.tolist()
    assert to_tensor(tf.make_tensor_proto([[b"p", b"q"]]), "x").shape == (1, 2)


@pytest.mark.parametrize("proto", [
    _proto(types_pb2.DT_FLOAT, [2], float_val=[1.0, 2.0, 3.0]),   # more values than elements
    _proto(types_pb2.DT_FLOAT, [-1], float_val=[1.0]),            # negative dimension
    _proto(types_pb2.DT_FLOAT, [3], tensor_content=b"\x00" * 5),  # wrong content size
    _proto(types_pb2.DT_INVALID, [1]),                            # no dtype
    tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT,
                           tensor_shape={"unknown_rank": True}),  # unknown rank
], ids=["too many values", "negative dim", "content size", "no dtype", "unknown rank"])
def test_unparsable_protos(proto):
    with pytest.raises(ServingError) as info:
        to_tensor(proto, "inputs")
    assert (info.value.code, info.value.message) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                     "tensor parsing error: inputs")


@pytest.mark.parametrize("value, field", [
    (np.array([0.5, 1.5], np.float32), "float_val"),
    (np.array([[1, 2]], np.int64), "int64_val"),
    (np.array([1, 2], np.int32), "int_val"),
    (np.array([True, False]), "bool_val"),
    (np.array([0.5, 2.0], np.float16), "half_val"),
    (np.array([0.25], np.float64), "double_val"),
    (np.array([b"a", b"bc"], object), "string_val"),
])
def test_as_proto_field_round_trips(value, field):
    proto = to_proto(tf.constant(value))
    assert not proto.tensor_content
    assert len(getattr(proto, field)) == value.size
    assert [d.size for d in proto.tensor_shape.dim] == list(value.shape)
    np.testing.assert_array_equal(tf.make_ndarray(proto), value)
    again = tensor_pb2.TensorProto()
    fill_proto(again, value)  # numpy input too
    assert again == proto


def test_messages():
    assert grpc_message("x" * 2000) == "x" * 1024 + "...TRUNCATED"
    eager = ("Graph execution error:\n\nDetected at node P defined at (most recent call "
             "last):\n<stack traces unavailable>\nCould not parse example input, value: 'q'\n"
             "\t [[{{node P}}]] [Op:__inference_signature_wrapper_7]")
    assert clean_tf_message(eager) == ("Could not parse example input, value: 'q'\n"
                                       "\t [[{{node P}}]]")
