"""KServe V2 / Open Inference Protocol messages with Triton's binary tensor extension.

Pure functions (json + numpy only) shared by the server and the offload client, so both ends
speak exactly the same bytes:

* :func:`parse_infer_request` / :func:`encode_infer_response` (server side),
* :func:`encode_infer_request` / :func:`decode_infer_response` (client side).

Binary extension: the body is a JSON header of ``Inference-Header-Content-Length`` bytes
followed by the raw tensors, in input order, each announced by
``parameters.binary_data_size``. BYTES tensors are serialised as a 4-byte little-endian length
before each element. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgepose.errors import ConfigError, EdgePoseError

#: Tensor names of the pose contract, shared by the server and the offload client.
IMAGE_BYTES = "image_bytes"  #: BYTES [N]: JPEG/PNG-encoded RGB person crops
IMAGE = "image"  #: UINT8 [N, H, W, 3]: RGB person crops
KEYPOINTS = "keypoints"  #: FP32 [N, K, 3]: x, y (pixels of the input image), score

#: Request-level parameter that says why a request was sent. Absent (or anything else): an offload,
#: whose answer the device may use. ``PURPOSE_COLLECT``: a label-only collection sample
#: (``RuntimeOptions.collect_interval_ms``) whose answer the device never uses; a collecting server
#: (``edgepose serve --collect``) records it as such. A server that does not know the parameter
#: ignores it and answers as usual (request parameters it does not read are not an error).
PURPOSE = "edgepose_purpose"
PURPOSE_COLLECT = "collect"

#: KServe V2 datatype -> numpy dtype (BYTES is a numpy object array of ``bytes``).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_NP_TO_V2 = {v: k for k, v in DATATYPES.items() if k != "BYTES"}

#: Header carrying the JSON part's length in binary requests and responses.
HEADER_LENGTH = "Inference-Header-Content-Length"


class ProtocolError(EdgePoseError, ValueError):
    """A request or response that does not follow the protocol; ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class DeadlineExceededError(ProtocolError):
    """The request's ``deadline_ms`` passed while its batch was running: the rest was cut off (HTTP 504)."""

    def __init__(self, message: str, status: int = 504):
        super().__init__(message, status)


def _loads(text: bytes, what: str, status: int = 400):
    """``json.loads`` whose failures (bad JSON, nesting deep enough to hit the recursion limit)
    are a :class:`ProtocolError`, never a RecursionError / 500."""
    try:
        return json.loads(text.decode("utf-8"))
    except RecursionError:
        raise ProtocolError(f"{what} is nested too deeply", status=status) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"{what} is not valid JSON: {exc}", status=status) from None


@dataclass
class InferRequest:
    """A parsed inference request.

    Attributes:
        inputs: tensor name -> array (BYTES tensors are object arrays of ``bytes``).
        parameters: the request-level parameters.
        id: the request id ('' when absent).
        binary_outputs: output name -> whether to return it as binary; ``"*"`` is the default.
    """

    inputs: dict[str, np.ndarray]
    parameters: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    binary_outputs: dict[str, bool] = field(default_factory=dict)
    requested: list[str] | None = None


def v2_datatype(dtype) -> str:
    """The V2 datatype name of a numpy dtype (object -> BYTES)."""
    dt = np.dtype(dtype)
    if dt == object:
        return "BYTES"
    if dt not in _NP_TO_V2:
        raise ProtocolError(f"numpy dtype {dt.name} has no KServe V2 datatype; valid: "
                            f"{', '.join(d.name for d in _NP_TO_V2)}")
    return _NP_TO_V2[dt]


def serialize_bytes(arr: np.ndarray) -> bytes:
    """Length-prefixed serialisation of a BYTES tensor (row-major)."""
    out = bytearray()
    for item in arr.reshape(-1):
        b = item if isinstance(item, (bytes, bytearray)) else str(item).encode("utf-8")
        out += struct.pack("<I", len(b))
        out += b
    return bytes(out)


def deserialize_bytes(buf: bytes, count: int, name: str) -> np.ndarray:
    """Inverse of :func:`serialize_bytes`; ``count`` elements are expected."""
    items, off = [], 0
    mv = memoryview(buf)
    while off < len(buf):
        if off + 4 > len(buf):
            raise ProtocolError(f"input {name!r}: BYTES data truncated inside an element length prefix")
        (n,) = struct.unpack_from("<I", buf, off)
        off += 4
        if off + n > len(buf):
            raise ProtocolError(f"input {name!r}: BYTES element {len(items)} announces {n} bytes but "
                                f"only {len(buf) - off} remain (truncated binary data)")
        items.append(bytes(mv[off:off + n]))
        off += n
    if len(items) != count:
        raise ProtocolError(f"input {name!r}: shape holds {count} BYTES elements but the data has {len(items)}")
    arr = np.empty(count, dtype=object)
    arr[:] = items
    return arr


def _shape(value, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in value):
        raise ProtocolError(f"input {name!r}: 'shape' must be a list of non-negative integers, got {value!r}")
    if len(value) > 8:
        raise ProtocolError(f"input {name!r}: 'shape' has {len(value)} dimensions; at most 8 are accepted")
    return tuple(value)


def _flatten(data, name: str) -> list:
    out: list = []
    stack = [data]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(reversed(v))
        else:
            out.append(v)
    return out


def _from_json_data(data, dtype_name: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    flat = _flatten(data, name)
    count = math.prod(shape)
    if len(flat) != count:
        raise ProtocolError(f"input {name!r}: shape {list(shape)} holds {count} elements but 'data' has {len(flat)}")
    if dtype_name == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise ProtocolError(f"input {name!r}: BYTES 'data' must be a list of strings")
        arr = np.empty(count, dtype=object)
        arr[:] = [v.encode("utf-8") for v in flat]
        return arr.reshape(shape)
    dt = DATATYPES[dtype_name]
    ok = (lambda v: isinstance(v, bool)) if dtype_name == "BOOL" else (
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
    if dt.kind == "f":  # JSON has no NaN / Infinity: a non-finite float travels as null
        ok = (lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))
    if not all(ok(v) for v in flat):
        raise ProtocolError(f"input {name!r}: 'data' holds a value that is not a {dtype_name} number")
    try:
        with np.errstate(all="raise"):
            arr = np.asarray(flat, dtype=np.float64 if dt.kind == "f" else None)
            if dt.kind in "iu" and arr.size and (arr.dtype.kind == "f" or arr.min() < np.iinfo(dt).min
                                                 or arr.max() > np.iinfo(dt).max):
                raise ConfigError("out of range or not integral")
            arr = arr.astype(dt)
    except (ValueError, OverflowError, FloatingPointError, TypeError) as exc:
        raise ProtocolError(f"input {name!r}: 'data' does not fit {dtype_name} ({exc})") from None
    return arr.reshape(shape)


def parse_infer_request(body: bytes, header_length: str | int | None) -> InferRequest:
    """Parse a V2 infer request body (JSON, or JSON + binary tensors).

    Args:
        body: the whole HTTP body.
        header_length: the ``Inference-Header-Content-Length`` header value, or None for a
            JSON-only body.

    Raises:
        ProtocolError: with a message naming the bad field or tensor (HTTP 400).
    """
    if header_length is None:
        hlen = len(body)
    else:
        try:
            hlen = int(header_length)
        except (TypeError, ValueError):
            raise ProtocolError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 <= hlen <= len(body):
            raise ProtocolError(f"{HEADER_LENGTH} {hlen} is outside the body of {len(body)} bytes")
    head = _loads(body[:hlen], "request header")
    if not isinstance(head, dict):
        raise ProtocolError(f"request JSON must be an object, got {type(head).__name__}")
    params = head.get("parameters", {})
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be a JSON object")
    rid = head.get("id", "")
    if not isinstance(rid, str):
        raise ProtocolError(f"'id' must be a string, got {rid!r}")
    inputs = head.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("'inputs' must be a non-empty list of tensors")
    binary = memoryview(body)[hlen:]
    off = 0
    parsed: dict[str, np.ndarray] = {}
    for i, t in enumerate(inputs):
        if not isinstance(t, dict):
            raise ProtocolError(f"inputs[{i}] must be an object with name, datatype, shape")
        name = t.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"inputs[{i}]: 'name' must be a non-empty string")
        if name in parsed:
            raise ProtocolError(f"input {name!r} appears twice")
        dtype_name = t.get("datatype")
        if dtype_name not in DATATYPES:
            raise ProtocolError(f"input {name!r}: datatype {dtype_name!r} is not one of "
                                f"{', '.join(DATATYPES)}")
        shape = _shape(t.get("shape"), name)
        tparams = t.get("parameters") or {}
        if not isinstance(tparams, dict):
            raise ProtocolError(f"input {name!r}: 'parameters' must be a JSON object")
        size = tparams.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ProtocolError(f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}")
            if off + size > len(binary):
                raise ProtocolError(f"input {name!r}: binary_data_size {size} exceeds the {len(binary) - off} "
                                    "bytes left in the body (truncated binary data?)")
            raw = bytes(binary[off:off + size])
            off += size
            count = math.prod(shape)
            if dtype_name == "BYTES":
                parsed[name] = deserialize_bytes(raw, count, name).reshape(shape)
            else:
                dt = DATATYPES[dtype_name]
                if size != count * dt.itemsize:
                    raise ProtocolError(f"input {name!r}: {dtype_name} shape {list(shape)} needs "
                                        f"{count * dt.itemsize} bytes, binary_data_size is {size}")
                parsed[name] = np.frombuffer(raw, dtype=dt.newbyteorder("<")).astype(dt).reshape(shape)
        elif "data" in t:
            parsed[name] = _from_json_data(t["data"], dtype_name, shape, name)
        else:
            raise ProtocolError(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
    if off != len(binary):
        raise ProtocolError(f"{len(binary) - off} unexpected bytes after the binary tensors "
                            f"(check {HEADER_LENGTH} and binary_data_size)")
    default_binary = bool(params.get("binary_data_output", False))
    binary_outputs: dict[str, bool] = {"*": default_binary}
    requested = None
    outs = head.get("outputs")
    if outs is not None:
        if not isinstance(outs, list):
            raise ProtocolError("'outputs' must be a list")
        requested = []
        for j, o in enumerate(outs):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise ProtocolError(f"outputs[{j}] must be an object with a string 'name'")
            op = o.get("parameters") or {}
            if not isinstance(op, dict):
                raise ProtocolError(f"output {o['name']!r}: 'parameters' must be a JSON object")
            requested.append(o["name"])
            binary_outputs[o["name"]] = bool(op.get("binary_data", default_binary))
    return InferRequest(parsed, params, rid, binary_outputs, requested)


def _json_safe(arr: np.ndarray) -> list:
    if arr.dtype == object:
        return [b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b) for b in arr.reshape(-1)]
    flat = arr.reshape(-1)
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():  # NaN / Infinity are not JSON: null
        return [v if math.isfinite(v) else None for v in flat.tolist()]
    return flat.tolist()


def encode_tensors(tensors: dict[str, np.ndarray], binary: dict[str, bool] | bool,
                   key: str) -> tuple[dict, bytes]:
    """Encode tensors as the ``inputs``/``outputs`` list and the binary tail."""
    entries, tail = [], bytearray()
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        entry: dict[str, Any] = {"name": name, "datatype": v2_datatype(arr.dtype), "shape": list(arr.shape)}
        as_bin = binary if isinstance(binary, bool) else binary.get(name, binary.get("*", False))
        if as_bin:
            raw = serialize_bytes(arr) if arr.dtype == object else np.ascontiguousarray(
                arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail += raw
        else:
            entry["data"] = _json_safe(arr)
        entries.append(entry)
    return {key: entries}, bytes(tail)


def encode_infer_response(model: str, version: str, outputs: dict[str, np.ndarray], *,
                          request: InferRequest | None = None,
                          parameters: dict[str, Any] | None = None) -> tuple[bytes, dict[str, str]]:
    """The response body and extra headers (``Inference-Header-Content-Length`` when binary)."""
    binary = request.binary_outputs if request is not None else False
    if request is not None and request.requested is not None:
        outputs = {k: outputs[k] for k in request.requested}
    part, tail = encode_tensors(outputs, binary, "outputs")
    head: dict[str, Any] = {"model_name": model, "model_version": version}
    if request is not None and request.id:
        head["id"] = request.id
    if parameters:
        head["parameters"] = parameters
    head.update(part)
    jb = _dumps(head)
    headers = {"Content-Type": "application/json"}
    if tail:
        headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(jb))}
    return jb + tail, headers


def _dumps(obj) -> bytes:
    try:
        return json.dumps(obj, allow_nan=False).encode("utf-8")
    except ValueError as exc:  # a NaN in a parameter: never send invalid JSON
        raise ProtocolError(f"cannot encode as JSON: {exc}", status=500) from None


def encode_infer_request(inputs: dict[str, np.ndarray], *, parameters: dict[str, Any] | None = None,
                         binary: bool = True, request_id: str = "") -> tuple[bytes, dict[str, str]]:
    """Client side: an infer request body and headers (binary tensors by default)."""
    part, tail = encode_tensors(inputs, binary, "inputs")
    head: dict[str, Any] = {}
    if request_id:
        head["id"] = request_id
    params = dict(parameters or {})
    if binary:
        params["binary_data_output"] = True
    if params:
        head["parameters"] = params
    head.update(part)
    jb = json.dumps(head).encode("utf-8")
    headers = {"Content-Type": "application/octet-stream" if tail else "application/json"}
    if tail:
        headers[HEADER_LENGTH] = str(len(jb))
    return jb + tail, headers


def decode_infer_response(body: bytes, header_length: str | int | None
                          ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Client side: output name -> array, and the response-level parameters."""
    req = parse_infer_request_outputs(body, header_length)
    return req.inputs, req.parameters


def parse_infer_request_outputs(body: bytes, header_length) -> InferRequest:
    """Parse a response by reusing the request parser on its ``outputs`` list."""
    hlen = len(body) if header_length is None else int(header_length)
    head = _loads(body[:hlen], "response header", status=502)
    if not isinstance(head, dict) or "outputs" not in head:
        raise ProtocolError(f"response has no 'outputs': {str(head)[:200]}", status=502)
    fake = dict(head, inputs=head["outputs"])
    fake.pop("outputs")
    jb = json.dumps(fake).encode("utf-8")
    return parse_infer_request(jb + body[hlen:], len(jb))
