"""The edgepose end of a peer: a worker child process driven over its stdin/stdout pipe."""

from __future__ import annotations

import logging
import os
import select
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from edgepose.bench.peers import PeerError
from edgepose.bench.peers._wire import WireError, recv, send

log = logging.getLogger(__name__)


@dataclass
class PeerFrame:
    """A peer's answer for one frame.

    Attributes:
        poses: float32 (people, K, C) keypoints in frame px (the peer's layout).
        ms: the worker's wall time for the frame (decode and pipe transfer excluded).
        cpu_ms: the worker process's CPU time (all its threads) over the same span.
        roundtrip_ms: the client's wall time for the whole exchange (includes the pipe).
        extra: the rest of the reply header.
    """

    poses: np.ndarray
    ms: float
    cpu_ms: float
    roundtrip_ms: float
    extra: dict = field(default_factory=dict)


class PeerProcess:
    """A worker started as ``python worker args...`` that speaks :mod:`~edgepose.bench.peers._wire`.

    Args:
        python: the interpreter (the peer environment's).
        worker: the worker script path.
        args: its arguments.
        name: the peer's name, for messages.
        start_timeout: seconds allowed for the ready message (model loading).
        call_timeout: seconds allowed per reply.
        env: the child's environment (default: this one).
    """

    def __init__(self, python: str, worker: str, args=(), *, name: str = "peer", start_timeout: float = 180.0,
                 call_timeout: float = 120.0, env: dict | None = None):
        self.name = name
        self.call_timeout = call_timeout
        self._stderr = tempfile.TemporaryFile()
        cmd = [python, worker, *map(str, args)]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                         bufsize=0, env=env)
        except OSError as e:
            self._stderr.close()
            raise PeerError(f"cannot start peer {name!r} ({' '.join(cmd)}): {e}") from None
        self._closed = False
        try:
            head, _ = self._recv(start_timeout, "its ready message")
        except PeerError:
            self._kill()
            raise
        if not head.get("ok"):
            self._kill()
            raise PeerError(f"peer {name!r} failed to load: {head.get('error')}\n{self.stderr_tail()}")
        self.info = head
        log.info("peer %s ready (pid %s, %.0f ms)", name, head.get("pid"), head.get("init_ms", 0))

    # -- plumbing --------------------------------------------------------------------------------
    def stderr_tail(self, n: int = 2000) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - n))
            return "--- peer stderr (tail)\n" + self._stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def _died(self, what: str) -> PeerError:
        try:  # the pipe closes a moment before the process is reaped
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self._kill()
        return PeerError(f"peer {self.name!r} {'exited with code ' + str(code) if code is not None else 'stopped answering'} "
                         f"while waiting for {what}\n{self.stderr_tail()}")

    def _recv(self, timeout: float, what: str):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise PeerError(f"peer {self.name!r} gave no {what} within {timeout:.0f} s\n{self.stderr_tail()}")
        try:
            return recv(self.proc.stdout)
        except WireError:
            raise self._died(what) from None

    def call(self, header: dict, array: np.ndarray | None = None) -> tuple[dict, np.ndarray | None]:
        """Send one request, return the reply (header, array). Raises PeerError on an error reply."""
        if self._closed:
            raise PeerError(f"peer {self.name!r} is closed")
        try:
            send(self.proc.stdin, header, array)
        except (BrokenPipeError, OSError):
            raise self._died(f"the reply to {header.get('op')!r}") from None
        head, arr = self._recv(self.call_timeout, f"the reply to {header.get('op')!r}")
        if not head.get("ok"):
            raise PeerError(f"peer {self.name!r}: {head.get('error')}\n{head.get('trace', '')}")
        return head, arr

    # -- the API ---------------------------------------------------------------------------------
    def frame(self, image: np.ndarray, *, ts_ms: int = 0, mode: str = "video", **extra) -> PeerFrame:
        """Run one (H, W, 3) uint8 RGB frame; ``mode`` is ``video`` (tracking) or ``image``."""
        t0 = time.perf_counter()
        head, arr = self.call({"op": "frame", "mode": mode, "ts_ms": int(ts_ms), **extra},
                              np.ascontiguousarray(image))
        rt = (time.perf_counter() - t0) * 1e3
        rest = {k: v for k, v in head.items() if k not in ("ok", "op", "ms", "cpu_ms", "dtype", "shape", "nbytes")}
        poses = arr if arr is not None else np.zeros((0, 0, 0), np.float32)
        return PeerFrame(poses, float(head["ms"]), float(head["cpu_ms"]), rt, rest)

    def reset(self) -> None:
        """Start a new clip: the peer drops its tracking state (models stay loaded)."""
        self.call({"op": "reset"})

    def _kill(self) -> None:
        self._closed = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for fh in (self.proc.stdin, self.proc.stdout):
            try:
                fh.close()
            except OSError:
                pass

    def close(self) -> None:
        """Ask the worker to exit (killed after 10 s)."""
        if self._closed:
            return
        try:
            send(self.proc.stdin, {"op": "close"})
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self._kill()
        self._stderr.close()

    def __enter__(self) -> "PeerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            if not self._closed:
                self._kill()
        except Exception:
            pass
