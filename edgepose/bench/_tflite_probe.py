"""A one-convolution ``.tflite`` model written with the flatbuffer schema LiteRT ships.

Lets ``edgepose profile`` measure LiteRT's (XNNPACK's) achieved conv throughput on this host,
so the emulator compares a ``.tflite`` model's host time with the peak of the runtime that ran
it. No TensorFlow needed: the model is built with ``ai_edge_litert.schema_py_generated``'s
object API and ``flatbuffers``.
"""

from __future__ import annotations

import numpy as np

from edgepose._optional import require


def build_conv_tflite(hw: int = 56, channels: int = 128, *, int8: bool = False) -> bytes:
    """Serialized TFLite model: one 3x3 SAME CONV_2D, ``channels`` -> ``channels`` on an
    ``hw`` x ``hw`` NHWC map; fp32, or int8 (per-channel weights, int32 bias) when ``int8``."""
    require("flatbuffers", "tflite")
    import flatbuffers

    s = require("ai_edge_litert.schema_py_generated", "tflite", package="ai-edge-litert")
    c = channels
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((c, 3, 3, c)) * 0.05).astype(np.float32)

    def buf(arr=None):
        b = s.BufferT()
        if arr is not None:
            b.data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=np.uint8)
        return b

    def tensor(name, shape, ttype, buffer, scale=None, zp=None, qdim=0):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), list(shape), ttype, buffer
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale = list(np.atleast_1d(scale).astype(float))
            q.zeroPoint = list(np.atleast_1d(zp).astype(int))
            q.quantizedDimension = qdim
            t.quantization = q
        return t

    buffers = [buf(), buf(), buf(), buf(), buf()]  # 0: empty sentinel; 1: x; 2: w; 3: b; 4: y
    if int8:
        wscale = np.abs(w).reshape(c, -1).max(axis=1) / 127.0
        wq = np.clip(np.round(w / wscale[:, None, None, None]), -127, 127).astype(np.int8)
        buffers[2], buffers[3] = buf(wq), buf(np.zeros(c, np.int32))
        T8, T32 = s.TensorType.INT8, s.TensorType.INT32
        tensors = [tensor("x", (1, hw, hw, c), T8, 1, 0.02, 0),
                   tensor("w", (c, 3, 3, c), T8, 2, wscale, np.zeros(c, int)),
                   tensor("b", (c,), T32, 3, wscale * 0.02, np.zeros(c, int)),
                   tensor("y", (1, hw, hw, c), T8, 4, 0.05, 0)]
    else:
        buffers[2], buffers[3] = buf(w), buf(np.zeros(c, np.float32))
        F = s.TensorType.FLOAT32
        tensors = [tensor("x", (1, hw, hw, c), F, 1), tensor("w", (c, 3, 3, c), F, 2),
                   tensor("b", (c,), F, 3), tensor("y", (1, hw, hw, c), F, 4)]
    opts = s.Conv2DOptionsT()
    opts.padding, opts.strideW, opts.strideH = s.Padding.SAME, 1, 1
    opts.dilationWFactor = opts.dilationHFactor = 1
    opts.fusedActivationFunction = s.ActivationFunctionType.NONE
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.Conv2DOptions, opts
    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = tensors, [0], [3], [op], b"main"
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CONV_2D
    code.version = 3 if int8 else 1
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [sg]
    model.buffers, model.description = buffers, b"edgepose.hostprobe conv"
    b = flatbuffers.Builder(1 << 20)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def litert_conv_throughput(threads: int, *, int8: bool = False, hw: int = 56, channels: int = 128,
                           repeats: int = 7) -> float:
    """Achieved G(FL)OP/s of the probe convolution in LiteRT (XNNPACK) with ``threads`` threads."""
    import os
    import tempfile
    import time

    from edgepose.backends.litert import load_interpreter_class

    cls, _ = load_interpreter_class()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.tflite")
        with open(path, "wb") as fh:
            fh.write(build_conv_tflite(hw, channels, int8=int8))
        it = cls(model_path=path, num_threads=threads)
        it.allocate_tensors()
    d = it.get_input_details()[0]
    rng = np.random.default_rng(1)
    x = (rng.integers(-128, 127, d["shape"], dtype=np.int8) if int8
         else rng.standard_normal(d["shape"]).astype(np.float32))
    it.set_tensor(d["index"], x)
    it.invoke()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        it.invoke()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * hw * hw * channels * channels * 9 / best / 1e9
