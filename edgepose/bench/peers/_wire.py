"""The peer pipe protocol: numpy only, shared by the client (edgepose) and every peer worker.

A peer worker runs in its own virtualenv, where edgepose is not installed, as
``PEER_PYTHON path/to/<worker>.py``; Python puts the worker's folder first on ``sys.path``, so the
worker imports this file as ``_wire`` and both ends speak through the same code. Nothing here may
import edgepose.

A message is ``u32 big-endian header length | JSON header | payload``. The payload, present when
the header has ``"nbytes"``, is one C-contiguous array whose ``"dtype"`` and ``"shape"`` are in the
header (a frame from the client; the poses from the worker).

Requests: ``{"op": "frame", "mode": "video"|"image", "ts_ms": int}`` + an (H, W, 3) uint8 RGB
frame; ``{"op": "reset"}`` (a new clip: tracking state dropped, models kept); ``{"op": "close"}``.
Replies: ``{"ok": true, "ms": wall, "cpu_ms": cpu, ...}`` + a float32 (people, K, C) array, where
``ms`` is ``time.perf_counter`` and ``cpu_ms`` ``time.process_time`` (every thread of the worker
process) around the handler only: unpacking the frame and writing the reply are excluded. The
first message a worker writes is ``{"ok": true, "op": "ready", ...}`` with what it loaded;
``{"ok": false, "error": "..."}`` reports a failure (the worker keeps serving when it can).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
import traceback

import numpy as np

_LEN = struct.Struct(">I")
MAX_HEADER = 1 << 20


class WireError(Exception):
    """The other end closed the pipe or wrote something that is not a message."""


def _read_exact(fh, n: int) -> bytearray:
    buf = bytearray()
    while len(buf) < n:
        chunk = fh.read(n - len(buf))
        if not chunk:
            raise WireError(f"pipe closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf  # writable: the frame array built on it is too


def send(fh, header: dict, array: np.ndarray | None = None) -> None:
    """Write one message (``header`` + optional ``array``) and flush."""
    header = dict(header)
    payload = b""
    if array is not None:
        a = np.ascontiguousarray(array)
        header.update(dtype=a.dtype.str, shape=list(a.shape), nbytes=a.nbytes)
        payload = a.tobytes()
    head = json.dumps(header).encode()
    fh.write(_LEN.pack(len(head)) + head)
    if payload:
        fh.write(payload)
    fh.flush()


def recv(fh) -> tuple[dict, np.ndarray | None]:
    """Read one message: (header, array or None)."""
    (n,) = _LEN.unpack(_read_exact(fh, _LEN.size))
    if n > MAX_HEADER:
        raise WireError(f"header of {n} bytes: not a peer message (a library printing to stdout?)")
    try:
        header = json.loads(_read_exact(fh, n))
    except ValueError as e:
        raise WireError(f"bad header: {e}") from None
    if "nbytes" not in header:
        return header, None
    data = _read_exact(fh, int(header["nbytes"]))
    arr = np.frombuffer(data, dtype=np.dtype(header["dtype"])).reshape(header["shape"])
    return header, arr


def protocol_streams():
    """The worker's (input, output) binary streams; fd 1 is then pointed at stderr, so a library
    that prints to stdout cannot corrupt the protocol stream."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return sys.stdin.buffer, out


def serve(make_handler) -> int:
    """The worker's main loop.

    ``make_handler()`` loads the peer's models and returns ``(info, handler)``; ``info`` goes out in
    the ready message, ``handler(header, frame)`` answers one frame with ``(array, extra)`` (a
    float32 array of poses and a dict added to the reply header) and ``handler(header, None)``
    answers ``reset``. Only the handler is timed.
    """
    inp, out = protocol_streams()
    t0 = time.perf_counter()
    try:
        info, handler = make_handler()
    except Exception as e:  # report, then exit: nothing to serve
        send(out, {"ok": False, "op": "ready", "error": f"{type(e).__name__}: {e}",
                   "trace": traceback.format_exc()})
        return 1
    send(out, {"ok": True, "op": "ready", "init_ms": (time.perf_counter() - t0) * 1e3,
               "pid": os.getpid(), "python": sys.version.split()[0], "numpy": np.__version__, **info})
    while True:
        try:
            header, frame = recv(inp)
        except WireError:
            return 0  # the client went away
        op = header.get("op")
        if op == "close":
            send(out, {"ok": True, "op": "close"})
            return 0
        if op not in ("frame", "reset"):
            send(out, {"ok": False, "error": f"unknown op {op!r}; expected frame, reset or close"})
            continue
        try:
            c0, w0 = time.process_time(), time.perf_counter()
            result, extra = handler(header, frame if op == "frame" else None)
            ms, cpu_ms = (time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3
        except Exception as e:
            send(out, {"ok": False, "op": op, "error": f"{type(e).__name__}: {e}",
                       "trace": traceback.format_exc()})
            continue
        send(out, {"ok": True, "op": op, "ms": ms, "cpu_ms": cpu_ms, **(extra or {})},
             None if result is None else np.asarray(result, dtype=np.float32))
