"""Asynchronous KServe V2 offload client: deadlines, late drops, reconnect backoff, token bucket.

``submit()`` never blocks: it returns a :class:`Pending` handle (or None when the request is
not sent: rate-limited, all workers busy, or backing off after a failure). Worker threads,
each with its own keep-alive HTTP connection, do the exchange through the optional
:class:`~edgepose.offload.netem.NetworkEmulator`. An answer after its deadline is marked
``late`` and counted; the caller decides whether a late answer may still correct the track.

Collection samples (:meth:`OffloadClient.submit_sample`, for ``RuntimeOptions.collect_interval_ms``)
never take a token of the bucket, carry ``edgepose_purpose=collect`` on the wire and are counted
in :attr:`OffloadClient.sample_stats`, not in :attr:`OffloadClient.stats` (whose ``submitted``
stays the offloads); one is in flight at most. A sample in flight holds one of the ``workers``
request slots, so the server never has more than ``workers`` requests of this client at once (2
by default, the embedded server's ``max_concurrency``): an offload that comes while the other
slots are busy is refused here (``skipped_busy``; ``sample_stats["offloads_refused"]`` counts
those a sample's slot decided) rather than answered 503, which would back offloads off for the
server's Retry-After. Samples share the backoff: a server that refused or failed a sample is
backed off by offloads too, and the other way round.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from edgepose.offload.timing import LatencyStats
from edgepose.offload.netem import NetworkEmulator
from edgepose.protocol import (HEADER_LENGTH, PURPOSE, PURPOSE_COLLECT, ProtocolError, decode_infer_response,
                               encode_infer_request)
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class ClientOptions:
    """Options of :class:`OffloadClient`.

    Attributes:
        model: the served model name.
        token: bearer token (None: no Authorization header).
        workers: requests in flight at most; one more would only queue behind frames that are
            already late. 2 lets one answer overlap the next request.
        rate_per_s: token-bucket rate of offloads per second of media time, a per-client cap
            that protects the server: 10 = a third of 30 fps. The share of *frames* offloaded is
            capped by the runtime (``PolicyConfig.max_share``), which holds at any frame rate.
        burst: token-bucket depth: a short hard stretch may offload this many frames at once.
        late_grace_s: how long after its deadline an answer is still read (to count it, and to
            let a young late answer re-seed the tracker) before the connection is dropped.
        backoff_base_s: first reconnect delay; doubles per failure (with seeded jitter). A 401 /
            403 / 404 answer (wrong token or model name) backs off ``backoff_max_s`` at once; a
            5xx backs off like a connection failure.
        backoff_max_s: longest reconnect delay.
        connect_timeout_s: TCP connect timeout.
        seed: seeds the backoff jitter.
    """

    model: str = "movenet-thunder-fp32"
    token: str | None = None
    workers: int = 2
    rate_per_s: float = 10.0
    burst: int = 3
    late_grace_s: float = 0.5
    backoff_base_s: float = 0.05
    backoff_max_s: float = 2.0
    connect_timeout_s: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"ClientOptions.workers must be an int >= 1, got {self.workers!r}")
        if not self.rate_per_s > 0:
            raise ConfigError(f"ClientOptions.rate_per_s must be > 0, got {self.rate_per_s!r}")
        if not isinstance(self.burst, int) or self.burst < 1:
            raise ConfigError(f"ClientOptions.burst must be an int >= 1, got {self.burst!r}")
        if not 0 < self.backoff_base_s <= self.backoff_max_s:
            raise ConfigError("ClientOptions.backoff_base_s must be > 0 and <= backoff_max_s, got "
                             f"{self.backoff_base_s!r} / {self.backoff_max_s!r}")


class TokenBucket:
    """Caps a rate on the media-time axis (ms timestamps): ``rate_per_s`` tokens/s, depth ``burst``."""

    def __init__(self, rate_per_s: float, burst: int):
        self.rate, self.burst = float(rate_per_s), float(burst)
        self._tokens = float(burst)
        self._last_ms: float | None = None

    def take(self, now_ms: float) -> bool:
        """Take one token at ``now_ms`` if there is one."""
        if self._last_ms is not None:
            self._tokens = min(self.burst, self._tokens + max(0.0, now_ms - self._last_ms) * self.rate / 1e3)
        self._last_ms = now_ms
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Backoff:
    """Exponential reconnect backoff with seeded jitter (half to full delay)."""

    def __init__(self, base_s: float, max_s: float, seed: int = 0):
        self.base, self.max = base_s, max_s
        self.failures = 0
        self.until = 0.0
        self._rng = random.Random(seed)

    def available(self, now: float | None = None) -> bool:
        return (time.perf_counter() if now is None else now) >= self.until

    def fail(self, retry_after_s: float | None = None) -> float:
        """Record a failure; returns the delay before the next try (s)."""
        self.failures += 1
        d = min(self.max, self.base * 2 ** (self.failures - 1)) * (0.5 + 0.5 * self._rng.random())
        if retry_after_s is not None:
            d = max(d, min(retry_after_s, self.max))
        self.until = time.perf_counter() + d
        return d

    def ok(self) -> None:
        self.failures = 0
        self.until = 0.0


@dataclass
class Reply:
    """The outcome of one offload request.

    Attributes:
        status: ``ok`` (on time), ``late`` (after the deadline), ``lost`` (emulated loss or link
            cut), ``busy`` (503), ``error`` (connection or HTTP error).
        outputs: output name -> array (``ok`` / ``late``).
        rtt_ms: wall time from submit to answer.
        server_ms: the server's own time (response parameter ``edgepose_server_ms``: body read,
            decode, queue for a slot, inference, encode).
        infer_ms: the model's part of it (``edgepose_infer_ms``).
        up_ms, down_ms: the emulated uplink / downlink leg delays slept in the transport.
        http_ms: the real HTTP exchange on the socket (includes ``server_ms``).
        queue_ms: time the request waited in the client for a worker.
        error: the message for ``error`` / ``busy``.
    """

    status: str
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    rtt_ms: float = 0.0
    server_ms: float = 0.0
    error: str = ""
    infer_ms: float = 0.0
    up_ms: float = 0.0
    down_ms: float = 0.0
    http_ms: float = 0.0
    queue_ms: float = 0.0


class Pending:
    """A submitted request: ``wait(timeout)`` returns its :class:`Reply` or None if not done.

    ``purpose``: None for an offload, :data:`~edgepose.protocol.PURPOSE_COLLECT` for a collection sample.
    """

    def __init__(self, inputs, deadline_s: float, tag: Any, up_bytes: int, *, purpose: str | None = None):
        self.inputs, self.deadline_s, self.tag, self.up_bytes = inputs, deadline_s, tag, up_bytes
        self.purpose = purpose
        self.t_submit = time.perf_counter()
        self.t_done: float | None = None
        self.reply: Reply | None = None
        self.consumed = False
        self._event = threading.Event()

    def wait(self, timeout: float | None) -> Reply | None:
        self._event.wait(None if timeout is None else max(0.0, timeout))
        return self.reply

    def done(self) -> bool:
        return self._event.is_set()

    def _complete(self, reply: Reply) -> None:
        self.t_done = time.perf_counter()
        self.reply = reply
        self._event.set()


class OffloadClient:
    """Sends inference requests to a KServe V2 server without blocking the caller.

    Args:
        url: server base URL, e.g. ``http://127.0.0.1:8000``.
        options: :class:`ClientOptions`.
        emulator: optional :class:`NetworkEmulator` applied to every exchange.
    """

    def __init__(self, url: str, *, options: ClientOptions | None = None,
                 emulator: NetworkEmulator | None = None):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"OffloadClient.url must look like http://host:port, got {url!r}")
        self.url, self.host, self.port = url, parts.hostname, parts.port or 80
        self.options = options or ClientOptions()
        self.emulator = emulator
        self.bucket = TokenBucket(self.options.rate_per_s, self.options.burst)
        self.backoff = Backoff(self.options.backoff_base_s, self.options.backoff_max_s, self.options.seed)
        self.server_ms = LatencyStats()
        self.network_ms = LatencyStats()
        #: offloads only (``submitted`` is the offload count); samples are in :attr:`sample_stats`
        self.stats = {k: 0 for k in ("submitted", "ok", "late", "lost", "busy", "errors", "skipped_rate",
                                     "skipped_busy", "skipped_backoff", "reconnects")}
        #: collection samples (:meth:`submit_sample`)
        self.sample_stats = {k: 0 for k in ("submitted", "ok", "late", "lost", "busy", "errors", "skipped_busy",
                                            "skipped_backoff", "reconnects", "offloads_refused")}
        self._lock = threading.Lock()
        self._in_flight = 0  # requests being sent or answered, samples included (<= workers)
        self._samples_in_flight = 0  # of which samples (<= 1)
        self._local = threading.local()
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._threads = [threading.Thread(target=self._worker, name=f"edgepose-offload-{i}", daemon=True)
                         for i in range(self.options.workers)]
        for t in self._threads:
            t.start()

    # -- caller side -------------------------------------------------------------------------
    def available(self) -> bool:
        """False while backing off after a failure, or when the emulated link is cut for good."""
        if self.emulator is not None and not self.emulator.link.available:
            return False
        return self.backoff.available()

    def submit(self, inputs: dict[str, np.ndarray], *, deadline_s: float, now_ms: float,
               tag: Any = None) -> Pending | None:
        """Queue a request; None (and a counted reason) when it is not sent.

        Args:
            inputs: tensor name -> array (BYTES as an object array of bytes).
            deadline_s: absolute ``time.perf_counter()`` deadline of the answer.
            now_ms: media timestamp (the token bucket's time axis).
            tag: anything the caller wants back with the reply (e.g. the crop transform).
        """
        if self._closed:
            return None
        if not self.available():
            self._count("skipped_backoff")
            return None
        with self._lock:
            if self._in_flight >= self.options.workers:
                self.stats["skipped_busy"] += 1
                if self._in_flight - self._samples_in_flight < self.options.workers:
                    self.sample_stats["offloads_refused"] += 1  # a slot a sample holds decided it
                return None
            if not self.bucket.take(now_ms):
                self.stats["skipped_rate"] += 1
                return None
            self._in_flight += 1
            self.stats["submitted"] += 1
        p = Pending(inputs, deadline_s, tag, up_bytes=sum(_nbytes(a) for a in inputs.values()))
        self._queue.put(p)
        return p

    def submit_sample(self, inputs: dict[str, np.ndarray], *, deadline_s: float, tag: Any = None) -> Pending | None:
        """Queue a label-only collection sample; None (counted in :attr:`sample_stats`) when it is not
        sent: closed, backing off, a sample still in flight or every request slot busy.

        Takes no token of the bucket; holds a request slot while in flight; the request carries
        ``edgepose_purpose=collect``. Never blocks.
        """
        if self._closed:
            return None
        if not self.available():
            self._count("skipped_backoff", self.sample_stats)
            return None
        with self._lock:
            if self._samples_in_flight >= 1 or self._in_flight >= self.options.workers:
                self.sample_stats["skipped_busy"] += 1
                return None
            self._in_flight += 1
            self._samples_in_flight += 1
            self.sample_stats["submitted"] += 1
        p = Pending(inputs, deadline_s, tag, up_bytes=sum(_nbytes(a) for a in inputs.values()),
                    purpose=PURPOSE_COLLECT)
        self._queue.put(p)
        return p

    def _stats_of(self, p: Pending | None) -> dict:
        return self.sample_stats if p is not None and p.purpose is not None else self.stats

    def _count(self, key: str, stats: dict | None = None) -> None:
        with self._lock:
            (self.stats if stats is None else stats)[key] += 1

    def close(self) -> None:
        """Stop the workers (after the requests in flight, samples included). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- worker side --------------------------------------------------------------------------
    def _worker(self) -> None:
        while True:
            p = self._queue.get()
            if p is None:
                conn = getattr(self._local, "conn", None)
                if conn is not None:
                    conn.close()
                return
            try:
                reply = self._exchange(p)
            except Exception as exc:  # never let a worker die
                log.exception("offload worker failed")
                reply = Reply("error", error=f"{type(exc).__name__}: {exc}")
            with self._lock:
                self._in_flight -= 1
                self._samples_in_flight -= int(p.purpose is not None)
            reply.rtt_ms = (time.perf_counter() - p.t_submit) * 1e3
            if reply.status == "ok" and time.perf_counter() > p.deadline_s:
                reply.status = "late"
            self._count({"ok": "ok", "late": "late", "lost": "lost", "busy": "busy"}.get(reply.status, "errors"),
                        self._stats_of(p))
            p._complete(reply)

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _NoDelayConnection(self.host, self.port, timeout=self.options.connect_timeout_s)
            self._local.conn = conn
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _post(self, body, headers, p: Pending):
        """One POST on this worker's connection: (response, body). Raises ``_STALE`` only when the connection
        was reused (a new one that fails is a real failure)."""
        conn = self._conn()
        reused = conn.sock is not None
        conn.timeout = max(0.05, p.deadline_s - time.perf_counter() + self.options.late_grace_s)
        if reused:
            conn.sock.settimeout(conn.timeout)
        else:
            self._count("reconnects", self._stats_of(p))
        try:
            conn.request("POST", f"/v2/models/{self.options.model}/infer", body=body, headers=headers)
            resp = conn.getresponse()
            return resp, resp.read()
        except _STALE as exc:
            if reused:
                raise
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc

    def _lost(self, p: Pending) -> Reply:
        time.sleep(max(0.0, p.deadline_s - time.perf_counter()))  # the requester only learns by timeout
        self.backoff.fail()  # a timeout is a failure: back off like a refused connection
        return Reply("lost")

    def _exchange(self, p: Pending) -> Reply:
        queue_ms = (time.perf_counter() - p.t_submit) * 1e3
        remaining_ms = (p.deadline_s - time.perf_counter()) * 1e3
        params = {"deadline_ms": max(1.0, round(remaining_ms, 1))}
        if p.purpose is not None:
            params[PURPOSE] = p.purpose  # a server that does not know it ignores it
        body, headers = encode_infer_request(p.inputs, parameters=params)
        if self.options.token:
            headers["Authorization"] = f"Bearer {self.options.token}"
        emu = self.emulator
        if emu is not None:
            up = emu.leg(len(body), up=True)
            if up.lost:
                return self._lost(p)
            time.sleep(up.delay_ms / 1e3)
        t0 = time.perf_counter()
        try:
            try:
                resp, data = self._post(body, headers, p)
            except _STALE:  # a kept-alive connection the server closed while idle (idle_timeout_s): once more, fresh
                self._drop_conn()
                resp, data = self._post(body, headers, p)
        except (OSError, http.client.HTTPException) as exc:
            self._drop_conn()
            d = self.backoff.fail()
            log.info("offload to %s failed (%s: %s); next try in %.2f s", self.url, type(exc).__name__, exc, d)
            return Reply("error", error=f"{type(exc).__name__}: {exc}")
        total_ms = (time.perf_counter() - t0) * 1e3
        if resp.status == 503:
            ra = resp.getheader("Retry-After")
            self.backoff.fail(float(ra) if ra and ra.isdigit() else None)
            return Reply("busy", error=_message(data))
        if resp.status != 200:
            if resp.status in _CONFIG_ERRORS:  # wrong token / model name: retrying at once cannot help
                d = self.backoff.fail(self.options.backoff_max_s)
            elif resp.status >= 500:  # the server is failing or cut the request off: ease off
                d = self.backoff.fail()
            else:  # this request was bad (400, 413): the next one may be fine
                d = 0.0
            log.warning("offload request rejected: HTTP %d %s%s", resp.status, _message(data),
                        f"; next try in {d:.2f} s" if d else "")
            return Reply("error", error=f"HTTP {resp.status}: {_message(data)}")
        try:
            outputs, params = decode_infer_response(data, resp.getheader(HEADER_LENGTH))
        except (ProtocolError, ValueError) as exc:
            return Reply("error", error=f"bad response: {exc}")
        self.backoff.ok()
        server_ms = float(params.get("edgepose_server_ms", 0.0))
        http_ms, up_ms, down_ms = total_ms, 0.0, 0.0
        if emu is not None:
            down = emu.leg(len(data), up=False)
            if down.lost:
                return self._lost(p)
            time.sleep(down.delay_ms / 1e3)
            up_ms, down_ms = up.delay_ms, down.delay_ms
            total_ms += up_ms + down_ms
        self.server_ms.add(server_ms)
        self.network_ms.add(max(0.0, total_ms - server_ms))
        return Reply("ok", outputs, server_ms=server_ms, infer_ms=float(params.get("edgepose_infer_ms", 0.0)),
                     up_ms=up_ms, down_ms=down_ms, http_ms=http_ms, queue_ms=queue_ms)


class _NoDelayConnection(http.client.HTTPConnection):
    """TCP_NODELAY: http.client writes the headers and the body in two sends; with Nagle on, the
    body (< one segment) waits for the ACK of the headers, which the server may delay."""

    def connect(self):
        super().connect()
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


#: how a kept-alive connection that the server closed while idle fails on its next request
_STALE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, http.client.RemoteDisconnected)

#: answers that mean the client is misconfigured (token, model name): back off the longest delay
_CONFIG_ERRORS = (401, 403, 404)


def _message(data: bytes) -> str:
    try:
        return str(json.loads(data.decode("utf-8")).get("error", ""))[:300]
    except (ValueError, UnicodeDecodeError, AttributeError):
        return data[:200].decode("utf-8", "replace")


def _nbytes(a: np.ndarray) -> int:
    if a.dtype == object:
        return sum(len(x) + 4 for x in a.reshape(-1))
    return int(a.nbytes)
