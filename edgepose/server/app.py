"""The embedded KServe V2 HTTP server (stdlib ``http.server``, no framework, no dependency).

Endpoints: ``GET /v2/health/live``, ``/v2/health/ready``, ``/v2``, ``/v2/models/{m}``,
``/v2/models/{m}/ready``; ``POST /v2/models/{m}/infer`` (optionally under
``/v2/models/{m}/versions/{v}``). Errors are ``{"error": "..."}`` with 400 (bad request, the
message names the tensor/field), 401 (bearer token), 404, 405, 408 (request not received within
``read_timeout_s``), 411, 413 (payload or batch cap), 501 (a Transfer-Encoding), 503 +
``Retry-After`` (concurrency, bytes-in-flight or connection cap), 504 (deadline passed).
The HTTP framing (strict Content-Length, body always consumed, per-request deadline,
connection cap) is in :mod:`edgepose.server._http`.

Example:
    >>> server = PoseServer.embedded("movenet-lightning-fp32")  # doctest: +SKIP
    >>> server.url                                                # doctest: +SKIP
    'http://127.0.0.1:40123'
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from edgepose.errors import ConfigError
from edgepose.server._http import Body, HttpError, HttpServer
from edgepose.protocol import (HEADER_LENGTH, IMAGE, IMAGE_BYTES, KEYPOINTS, PURPOSE, PURPOSE_COLLECT, ProtocolError,
                               encode_infer_response, parse_infer_request)
from edgepose.server.served import PoseServedModel, ServedModel, request_deadline
from edgepose.version import __version__

log = logging.getLogger(__name__)

_MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?$")


@dataclass
class ServerOptions:
    """Options of :class:`PoseServer`.

    Attributes:
        host: bind address; loopback by default so nothing is exposed unless asked.
        port: TCP port; 0 picks a free ephemeral port (see ``PoseServer.url``).
        token: bearer token required on every endpoint but health; None disables auth.
        max_body_bytes: payload limit (413 above it). 8 MiB holds a 1080p raw UINT8 frame; a
            JPEG person crop is ~10-30 KB.
        max_concurrency: inferences running at once (a slot is taken before a body is parsed);
            more get 503 + Retry-After. 2 = the cores of the small machines this first runs on.
        retry_after_s: the Retry-After value sent with 503.
        read_timeout_s: total time a request may take to deliver its request line, headers and
            body, from its first byte (408 + close after it; not a per-recv timeout).
        max_batch: most items (dimension 0 of an input) in one request; more get 413 naming the
            cap. 16 person crops of a thunder model run in ~1 s on 2 cores.
        max_connections: connections served at once (one thread each); one more gets 503 +
            Retry-After and is closed.
        max_bytes_in_flight: request bodies held in memory at once, over all connections; a
            request that would go over gets 503 before its body is read. None: 4 x
            ``max_body_bytes``.
        idle_timeout_s: how long an idle keep-alive connection waits for its next request.
        collect_dir: opt-in (None = off): keep every answered crop and its answer in this folder
            (:mod:`edgepose.server.collect`: a ring, the oldest dropped first) for
            ``edgepose adapt --from-collection``; each crop's JSON says whether it was an offload or
            a label-only collection sample (request parameter ``edgepose_purpose=collect``).
        collect_max_items / collect_max_bytes: the collection's bounds.
    """

    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_concurrency: int = 2
    retry_after_s: int = 1
    read_timeout_s: float = 10.0
    max_batch: int = 16
    max_connections: int = 64
    max_bytes_in_flight: int | None = None
    idle_timeout_s: float = 10.0
    collect_dir: str | None = None
    collect_max_items: int = 5000
    collect_max_bytes: int = 256 * 1024 * 1024

    def __post_init__(self):
        def check(name, ok, want):
            if not ok:
                raise ConfigError(f"ServerOptions.{name} must be {want}, got {getattr(self, name)!r}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        check("port", is_int(self.port) and 0 <= self.port <= 65535, "an int in [0, 65535]")
        check("max_body_bytes", is_int(self.max_body_bytes) and self.max_body_bytes >= 1024, "an int >= 1024")
        check("max_concurrency", is_int(self.max_concurrency) and self.max_concurrency >= 1, "an int >= 1")
        if self.token is not None and (not isinstance(self.token, str) or not self.token):
            raise ConfigError("ServerOptions.token must be a non-empty string or None")
        for name in ("read_timeout_s", "idle_timeout_s"):
            v = getattr(self, name)
            check(name, isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "a number > 0")
        check("max_batch", is_int(self.max_batch) and self.max_batch >= 1, "an int >= 1")
        check("max_connections", is_int(self.max_connections) and self.max_connections >= 1, "an int >= 1")
        if self.max_bytes_in_flight is None:
            self.max_bytes_in_flight = 4 * self.max_body_bytes
        check("max_bytes_in_flight", is_int(self.max_bytes_in_flight)
              and self.max_bytes_in_flight >= self.max_body_bytes, "an int >= max_body_bytes (or None)")
        check("collect_max_items", is_int(self.collect_max_items) and self.collect_max_items >= 1, "an int >= 1")
        check("collect_max_bytes", is_int(self.collect_max_bytes) and self.collect_max_bytes >= 1024, "an int >= 1024")


class PoseServer:
    """A KServe V2 server hosting one or more :class:`ServedModel`.

    Args:
        models: served models (their ``name`` is the URL name).
        options: :class:`ServerOptions`.
    """

    def __init__(self, models: list[ServedModel], *, options: ServerOptions | None = None):
        if not models:
            raise ConfigError("PoseServer.models must hold at least one served model")
        self.options = options or ServerOptions()
        self.models = {m.name: m for m in models}
        self._busy = 0  # inferences holding a slot (<= max_concurrency)
        self._bytes_in_flight = 0  # request bodies being read or held (<= max_bytes_in_flight)
        self._budget_lock = threading.Lock()
        self._http: HttpServer | None = None
        self._serving = False
        self._thread: threading.Thread | None = None
        self.stats = {"requests": 0, "infer_ok": 0, "errors_4xx": 0, "busy_503": 0, "errors_5xx": 0,
                      "refused_connections": 0}
        self._stats_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self.collector = None
        if self.options.collect_dir:
            from edgepose.server.collect import Collector

            o = self.options
            self.collector = Collector(o.collect_dir, max_items=o.collect_max_items, max_bytes=o.collect_max_bytes)

    @classmethod
    def embedded(cls, model: str = "movenet-thunder-fp32", *, options: ServerOptions | None = None,
                 num_threads: int | None = None, name: str | None = None) -> "PoseServer":
        """Load a model card by name (or a model file) and serve it on loopback in a background thread.

        ``name``: the served name (default: the card's name).
        """
        from edgepose.models import load_model

        server = cls([PoseServedModel(load_model(model, num_threads=num_threads), name=name)], options=options)
        return server.start()

    # -- lifecycle -------------------------------------------------------------------------
    def warmup(self) -> None:
        """Run each model that can once, so the first request is not slow (ORT session start)."""
        for m in self.models.values():
            if hasattr(m, "warmup"):
                m.warmup()

    def bind(self) -> "PoseServer":
        """Bind the listening socket (idempotent): ``port`` / ``url`` then hold the real port,
        also with ``port=0``. Connections queue until serving starts."""
        if self._http is None:
            self._http = HttpServer((self.options.host, self.options.port), self)
        return self

    def start(self, *, warmup: bool = True) -> "PoseServer":
        """Bind and serve in a daemon thread; returns self (``url`` is then valid)."""
        if self._thread is not None:
            return self
        if warmup:
            self.warmup()
        http = self.bind()._http
        self._serving = True
        self._thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="edgepose-server", daemon=True)
        self._thread.start()
        log.info("serving %s at %s", ", ".join(self.models), self.url)
        return self

    def serve_forever(self, *, on_ready: Callable[["PoseServer"], None] | None = None) -> None:
        """Serve in the calling thread until interrupted (``edgepose serve``).

        ``on_ready(server)`` is called once the models are warm and the socket is bound, so
        ``server.url`` holds the real port (``port=0`` picks one): print it there.
        """
        self.warmup()
        http = self.bind()._http
        self._serving = True
        if on_ready is not None:
            on_ready(self)
        try:
            http.serve_forever(poll_interval=0.2)
        finally:
            self._serving = False
            http.server_close()
            if self._http is http:
                self._http = None

    @property
    def port(self) -> int:
        return self._http.server_address[1] if self._http else self.options.port

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    def stop(self, *, close_models: bool = False) -> None:
        """Stop serving and drop open keep-alive connections (idempotent); models stay loaded
        unless ``close_models``."""
        http, self._http = self._http, None
        if http is not None:
            if self._serving:  # shutdown() waits for a serve_forever loop: only call it on a running one
                self._serving = False
                http.shutdown()
            http.server_close()
        with self._conn_lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if close_models:
            for m in self.models.values():
                m.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop(close_models=True)

    # -- request handling --------------------------------------------------------------------
    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _count_status(self, status: int, *, connection: bool = False) -> None:
        self._count("refused_connections" if connection else "busy_503" if status == 503
                    else "errors_5xx" if status >= 500 else "errors_4xx")

    def handle(self, method: str, path: str, headers, body: Body):
        """Route one request; returns (status, body, headers) or raises :class:`HttpError`.

        ``body`` is read only by the routes that need it; the HTTP layer drains (or closes the
        connection on) whatever is left unread.
        """
        self._count("requests")
        return self._route(method, path.split("?", 1)[0], headers, body)

    def _auth(self, headers) -> None:
        if self.options.token is None:
            return
        scheme, _, cred = headers.get("Authorization", "").strip().partition(" ")
        # the scheme is case-insensitive (RFC 9110 11.1); the token is compared in constant time
        good = hmac.compare_digest(cred.strip().encode(), self.options.token.encode())
        if not (good and scheme.lower() == "bearer"):
            raise HttpError(401, "missing or wrong bearer token; send 'Authorization: Bearer <token>'",
                            {"WWW-Authenticate": 'Bearer realm="edgepose"'})

    def _route(self, method, path, headers, body):
        ok = json.dumps({}).encode()
        if path in ("/v2/health/live", "/v2/health/ready"):
            self._need(method, "GET", path)
            return 200, ok, {}
        self._auth(headers)
        if path == "/v2":
            self._need(method, "GET", path)
            meta = {"name": "edgepose", "version": __version__, "extensions": ["binary_tensor_data"]}
            return 200, json.dumps(meta).encode(), {}
        m = _MODEL_PATH.match(path)
        if not m:
            raise HttpError(404, f"no endpoint {path!r}; valid: /v2/health/live, /v2/health/ready, /v2, "
                                 "/v2/models/{name}, /v2/models/{name}/ready, /v2/models/{name}/infer")
        name, version, tail = m.group(1), m.group(2), m.group(3)
        model = self.models.get(name)
        if model is None:
            raise HttpError(404, f"unknown model {name!r}; valid choices: {', '.join(sorted(self.models))}")
        if version is not None and version != model.version:
            raise HttpError(404, f"model {name!r} has no version {version!r}; valid: {model.version}")
        if tail is None:
            self._need(method, "GET", path)
            return 200, json.dumps(model.metadata()).encode(), {}
        if tail == "/ready":
            self._need(method, "GET", path)
            return 200, ok, {}
        self._need(method, "POST", path)
        return self._infer(model, headers, body)

    @staticmethod
    def _need(method, want, path):
        if method != want:
            raise HttpError(405, f"{method} is not allowed on {path}; use {want}")

    def _busy_error(self, what: str) -> HttpError:
        return HttpError(503, f"server busy: {what}; retry later", {"Retry-After": str(self.options.retry_after_s)})

    def _take_slot(self) -> None:
        with self._budget_lock:
            if self._busy >= self.options.max_concurrency:
                raise self._busy_error(f"{self.options.max_concurrency} inferences already running "
                                       "(ServerOptions.max_concurrency)")
            self._busy += 1

    def _reserve_bytes(self, n: int) -> None:
        cap = self.options.max_bytes_in_flight
        with self._budget_lock:
            if self._busy >= self.options.max_concurrency:  # fail fast: do not read a body to refuse it
                raise self._busy_error(f"{self.options.max_concurrency} inferences already running "
                                       "(ServerOptions.max_concurrency)")
            if self._bytes_in_flight + n > cap:
                raise self._busy_error(f"{self._bytes_in_flight} request bytes already in flight, {n} more "
                                       f"would pass the cap of {cap} (ServerOptions.max_bytes_in_flight)")
            self._bytes_in_flight += n

    def _release(self, *, slot: bool = False, nbytes: int = 0) -> None:
        with self._budget_lock:
            self._busy -= int(slot)
            self._bytes_in_flight -= nbytes

    def _infer(self, model: ServedModel, headers, body: Body):
        t_recv = time.perf_counter()
        n = body.length
        if n > self.options.max_body_bytes:
            raise HttpError(413, f"payload of {n} bytes exceeds the server limit of "
                                 f"{self.options.max_body_bytes} bytes (ServerOptions.max_body_bytes); "
                                 "send a JPEG person crop instead of a raw frame", close=True)
        self._reserve_bytes(n)  # memory is bounded before a byte of the body is read
        try:
            raw = body.read()
            self._take_slot()  # ... and parsing (which multiplies it) needs an inference slot
            try:
                return self._run(model, headers, raw, t_recv)
            finally:
                self._release(slot=True)
        finally:
            self._release(nbytes=n)

    def _run(self, model: ServedModel, headers, raw: bytes, t_recv: float):
        try:
            req = parse_infer_request(raw, headers.get(HEADER_LENGTH))
        except ProtocolError as exc:
            raise HttpError(exc.status, str(exc)) from None
        del raw
        deadline_ms = req.parameters.get("deadline_ms")
        if deadline_ms is not None and (isinstance(deadline_ms, bool) or not isinstance(deadline_ms, (int, float))
                                        or not deadline_ms > 0):
            raise HttpError(400, f"parameter 'deadline_ms' must be a positive number, got {deadline_ms!r}")
        cap = self.options.max_batch
        for name, arr in req.inputs.items():
            if arr.ndim >= 1 and arr.shape[0] > cap:
                raise HttpError(413, f"input {name!r} holds a batch of {arr.shape[0]} items; the server cap is "
                                     f"{cap} per request (ServerOptions.max_batch): split it into requests of "
                                     f"at most {cap}")
        deadline = None if deadline_ms is None else t_recv + deadline_ms / 1e3
        if deadline is not None and time.perf_counter() > deadline:
            raise HttpError(504, f"deadline_ms {deadline_ms} passed before inference started")
        t0 = time.perf_counter()
        try:
            with request_deadline(deadline):  # models that run a batch in parts check it between parts
                outputs = model.infer(req.inputs, req.parameters)
        except ProtocolError as exc:
            raise HttpError(exc.status, str(exc)) from None
        infer_ms = (time.perf_counter() - t0) * 1e3
        if req.requested is not None:
            missing = [n for n in req.requested if n not in outputs]
            if missing:
                raise HttpError(400, f"requested output {missing[0]!r} does not exist; valid: {', '.join(outputs)}")
        server_ms = (time.perf_counter() - t_recv) * 1e3
        params = {"edgepose_server_ms": round(server_ms, 3), "edgepose_infer_ms": round(infer_ms, 3)}
        try:
            out, extra = encode_infer_response(model.name, model.version, outputs, request=req, parameters=params)
        except ProtocolError as exc:
            raise HttpError(500, f"model {model.name!r} returned outputs that cannot be encoded: {exc}") from None
        self._count("infer_ok")
        if self.collector is not None and KEYPOINTS in outputs and len(req.inputs) == 1:
            (name, arr), = req.inputs.items()
            source = "sample" if req.parameters.get(PURPOSE) == PURPOSE_COLLECT else "offload"
            try:
                self.collector.add(model.name, list(arr) if name in (IMAGE_BYTES, IMAGE) else [], outputs[KEYPOINTS],
                                   source=source)
            except Exception as exc:  # collection never fails a request
                log.warning("collection failed: %s", exc)
        return 200, out, extra
