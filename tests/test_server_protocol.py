"""KServe V2 message encoding (binary extension and JSON) without a server."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepose.protocol import (
    ProtocolError,
    decode_infer_response,
    deserialize_bytes,
    encode_infer_request,
    encode_infer_response,
    parse_infer_request,
    serialize_bytes,
)

pytestmark = pytest.mark.core


def _bytes_tensor(*items: bytes) -> np.ndarray:
    a = np.empty(len(items), dtype=object)
    a[:] = list(items)
    return a


@pytest.mark.parametrize("binary", [True, False])
def test_request_round_trips_every_numeric_dtype(binary):
    inputs = {"u8": np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3),
              "i32": np.array([[-5, 7]], dtype=np.int32),
              "f32": np.array([1.5, -2.25, 3.0], dtype=np.float32),
              "b": np.array([True, False])}
    body, headers = encode_infer_request(inputs, parameters={"deadline_ms": 40}, binary=binary)
    req = parse_infer_request(body, headers.get("Inference-Header-Content-Length"))
    assert req.parameters["deadline_ms"] == 40
    for k, v in inputs.items():
        assert req.inputs[k].dtype == v.dtype and req.inputs[k].shape == v.shape
        np.testing.assert_array_equal(req.inputs[k], v)


def test_bytes_tensor_round_trips_including_empty_and_binary_elements():
    items = (b"", b"\x00\xff\xd8jpeg", b"x" * 1000)
    assert list(deserialize_bytes(serialize_bytes(_bytes_tensor(*items)), 3, "t")) == list(items)
    body, headers = encode_infer_request({"image_bytes": _bytes_tensor(*items)})
    req = parse_infer_request(body, headers["Inference-Header-Content-Length"])
    assert list(req.inputs["image_bytes"]) == list(items)


def test_response_round_trips_binary_and_json_outputs():
    req = parse_infer_request(json.dumps({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}],
                                          "outputs": [{"name": "kp", "parameters": {"binary_data": True}}]}).encode(),
                              None)
    kp = np.random.default_rng(0).random((2, 17, 3), dtype=np.float32)
    body, headers = encode_infer_response("m", "1", {"kp": kp, "other": kp}, request=req, parameters={"a": 1})
    outs, params = decode_infer_response(body, headers.get("Inference-Header-Content-Length"))
    assert list(outs) == ["kp"] and params == {"a": 1}
    np.testing.assert_array_equal(outs["kp"], kp)


@pytest.mark.parametrize("body, hlen, message", [
    (b"{not json", None, "request header is not valid JSON"),
    (b"[]", None, "request JSON must be an object, got list"),
    (b'{"inputs": []}', None, "'inputs' must be a non-empty list of tensors"),
    (b'{"inputs": [{"name": "x", "datatype": "FP33", "shape": [1], "data": [1]}]}', None,
     "input 'x': datatype 'FP33' is not one of BOOL, UINT8"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]}', None,
     "input 'x': shape [2] holds 2 elements but 'data' has 1"),
    (b'{"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [300]}]}', None,
     "input 'x': 'data' does not fit UINT8"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}', None,
     "input 'x': 'shape' must be a list of non-negative integers, got [-1]"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}abcd',
     None, "request header is not valid JSON"),
    ((b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}',
      b"abcd"), "auto", "input 'x': binary_data_size 8 exceeds the 4 bytes left in the body (truncated binary data?)"),
    ((b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 4}}]}',
      b"abcd"), "auto", "input 'x': FP32 shape [2] needs 8 bytes, binary_data_size is 4"),
    ((b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}', b"xx"), "auto",
     "2 unexpected bytes after the binary tensors"),
    (b'{}', "99", "Inference-Header-Content-Length 99 is outside the body of 2 bytes"),
    (b'{}', "abc", "Inference-Header-Content-Length must be an integer, got 'abc'"),
    ((b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}]}',
      b"\x09\x00\x00\x00ab"), "auto", "input 'x': BYTES element 0 announces 9 bytes but only 2 remain"),
])
def test_malformed_requests_raise_protocol_error_naming_the_field(body, hlen, message):
    if hlen == "auto":
        hlen, body = str(len(body[0])), body[0] + body[1]
    with pytest.raises(ProtocolError) as exc:
        parse_infer_request(body, hlen)
    assert message in str(exc.value)
    assert exc.value.status == 400


def _fuzz(examples: int):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    tensor = st.fixed_dictionaries({
        "name": st.one_of(st.text(max_size=5), st.integers()),
        "datatype": st.sampled_from(["FP32", "UINT8", "BYTES", "INT64", "BOOL", "XX", 3]),
        "shape": st.lists(st.integers(-2, 5), max_size=4),
    }, optional={"data": st.recursive(st.one_of(st.integers(-300, 300), st.floats(), st.text(max_size=3),
                                                st.booleans(), st.none()), st.lists, max_leaves=12),
                 "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-2, 40)})})
    params = st.one_of(st.dictionaries(st.text(max_size=3), st.integers()), st.text())
    outputs = st.lists(st.fixed_dictionaries({"name": st.text(max_size=3)}))
    head = st.fixed_dictionaries({}, optional={"inputs": st.one_of(st.lists(tensor, max_size=3), st.integers()),
                                               "parameters": params, "outputs": outputs})

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(head=head, tail=st.binary(max_size=64), cut=st.integers(-5, 400), junk=st.booleans())
    def check(head, tail, cut, junk):
        jb = json.dumps(head).encode()
        body = (jb + tail)[: max(0, cut)] if junk else jb + tail
        hlen = str(len(jb)) if not junk else str(cut)
        try:
            parse_infer_request(body, hlen)
        except ProtocolError as exc:
            assert str(exc) and exc.status == 400

    check()


def test_fuzzed_requests_only_ever_raise_protocol_error():
    _fuzz(300)


@pytest.mark.slow
def test_fuzzed_requests_only_ever_raise_protocol_error_long():
    _fuzz(3000)
