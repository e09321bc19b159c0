"""The embedded KServe V2 HTTP server (stdlib ``ThreadingHTTPServer``, no framework).

Endpoints: ``GET /v2/health/live``, ``/v2/health/ready``, ``/v2``, ``/v2/models/{m}``,
``/v2/models/{m}/ready``; ``POST /v2/models/{m}/infer`` (optionally under
``/v2/models/{m}/versions/{v}``). Errors are ``{"error": "..."}`` with 400 (bad request, the
message names the tensor/field), 401 (bearer token), 404, 408 (body not received in time), 411,
413 (payload limit), 503 + ``Retry-After`` (concurrency limit), 504 (deadline passed).

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from edgepose.server.protocol import HEADER_LENGTH, ProtocolError, encode_infer_response, parse_infer_request
from edgepose.server.served import PoseServedModel, ServedModel
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
        max_concurrency: inferences running at once; more get 503 + Retry-After. 2 = the cores
            of the small machines this first runs on.
        retry_after_s: the Retry-After value sent with 503.
        read_timeout_s: how long a connection may take to deliver its body (408 after it).
    """

    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_concurrency: int = 2
    retry_after_s: int = 1
    read_timeout_s: float = 10.0

    def __post_init__(self):
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"ServerOptions.port must be an int in [0, 65535], got {self.port!r}")
        if not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1024:
            raise ValueError(f"ServerOptions.max_body_bytes must be an int >= 1024, got {self.max_body_bytes!r}")
        if not isinstance(self.max_concurrency, int) or self.max_concurrency < 1:
            raise ValueError(f"ServerOptions.max_concurrency must be an int >= 1, got {self.max_concurrency!r}")
        if self.token is not None and (not isinstance(self.token, str) or not self.token):
            raise ValueError("ServerOptions.token must be a non-empty string or None")
        if not self.read_timeout_s > 0:
            raise ValueError(f"ServerOptions.read_timeout_s must be > 0, got {self.read_timeout_s!r}")


class _HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, close: bool = False):
        super().__init__(message)
        self.status, self.headers, self.close = status, headers or {}, close


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: tritonclient reuses connections
    # TCP_NODELAY: the status line + headers and the body go out in two writes; with Nagle on,
    # the body waited for the client's delayed ACK: +40 ms per request on loopback (measured).
    disable_nagle_algorithm = True
    server_version = f"edgepose/{__version__}"
    server: "_Http"

    def log_message(self, fmt, *args):  # route to logging, never stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    def setup(self):
        super().setup()
        self.connection.settimeout(self.server.owner.options.read_timeout_s)
        with self.server.owner._conn_lock:
            self.server.owner._conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.owner._conn_lock:
                self.server.owner._conns.discard(self.connection)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # ------------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        owner = self.server.owner
        try:
            status, payload, headers = owner.handle(method, self.path, self.headers, self._read_body)
            self._send(status, payload, headers)
        except _HttpError as exc:
            if exc.close:
                self.close_connection = True
            self._send(exc.status, json.dumps({"error": str(exc)}).encode(), exc.headers)
        except (socket.timeout, ConnectionError):
            self.close_connection = True
        except Exception as exc:  # a bug must not take the server down
            log.exception("unhandled error on %s %s", method, self.path)
            self.close_connection = True
            self._send(500, json.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"}).encode(), {})

    def _read_body(self) -> bytes:
        owner = self.server.owner
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise _HttpError(411, "chunked bodies are not accepted; send Content-Length", close=True)
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise _HttpError(411, "Content-Length header is required for POST", close=True)
        try:
            n = int(raw)
            if n < 0:
                raise ValueError
        except ValueError:
            raise _HttpError(400, f"Content-Length must be a non-negative integer, got {raw!r}", close=True) from None
        if n > owner.options.max_body_bytes:
            self._drain(min(n, 1 << 20))  # so the client reads the 413 instead of a reset
            raise _HttpError(413, f"payload of {n} bytes exceeds the server limit of "
                                  f"{owner.options.max_body_bytes} bytes (ServerOptions.max_body_bytes); "
                                  "send a JPEG person crop instead of a raw frame", close=True)
        enc = self.headers.get("Content-Encoding", "identity").lower()
        if enc not in ("identity", ""):
            raise _HttpError(400, f"Content-Encoding {enc!r} is not supported; valid: identity", close=True)
        try:
            body = self.rfile.read(n)
        except socket.timeout:
            raise _HttpError(408, f"request body not received within {owner.options.read_timeout_s} s "
                                  f"(Content-Length {n})", close=True) from None
        if len(body) != n:
            raise _HttpError(400, f"body has {len(body)} bytes, Content-Length says {n}", close=True)
        return body

    def _drain(self, n: int) -> None:
        try:
            self.connection.settimeout(0.2)
            while n > 0:
                chunk = self.rfile.read1(min(n, 65536))
                if not chunk:
                    return
                n -= len(chunk)
        except (socket.timeout, ConnectionError, OSError):
            return

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            if "Content-Type" not in headers:
                self.send_header("Content-Type", "application/json")
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except (ConnectionError, socket.timeout):
            self.close_connection = True


class _Http(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    owner: "PoseServer"


class PoseServer:
    """A KServe V2 server hosting one or more :class:`ServedModel`.

    Args:
        models: served models (their ``name`` is the URL name).
        options: :class:`ServerOptions`.
    """

    def __init__(self, models: list[ServedModel], *, options: ServerOptions | None = None):
        if not models:
            raise ValueError("PoseServer.models must hold at least one served model")
        self.options = options or ServerOptions()
        self.models = {m.name: m for m in models}
        self._slots = threading.BoundedSemaphore(self.options.max_concurrency)
        self._http: _Http | None = None
        self._thread: threading.Thread | None = None
        self.stats = {"requests": 0, "infer_ok": 0, "errors_4xx": 0, "busy_503": 0, "errors_5xx": 0}
        self._stats_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._conn_lock = threading.Lock()

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

    def start(self, *, warmup: bool = True) -> "PoseServer":
        """Bind and serve in a daemon thread; returns self (``url`` is then valid)."""
        if self._http is not None:
            return self
        if warmup:
            self.warmup()
        self._http = _Http((self.options.host, self.options.port), _Handler)
        self._http.owner = self
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="edgepose-server", daemon=True)
        self._thread.start()
        log.info("serving %s at %s", ", ".join(self.models), self.url)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (``edgepose serve``)."""
        self.warmup()
        self._http = _Http((self.options.host, self.options.port), _Handler)
        self._http.owner = self
        try:
            self._http.serve_forever(poll_interval=0.2)
        finally:
            self._http.server_close()

    @property
    def port(self) -> int:
        return self._http.server_address[1] if self._http else self.options.port

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    def stop(self, *, close_models: bool = False) -> None:
        """Stop serving and drop open keep-alive connections (idempotent); models stay loaded
        unless ``close_models``."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
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

    def handle(self, method, path, headers, read_body):
        """Route one request; returns (status, body, headers) or raises ``_HttpError``."""
        self._count("requests")
        try:
            return self._route(method, path.split("?", 1)[0], headers, read_body)
        except _HttpError as exc:
            self._count("busy_503" if exc.status == 503 else "errors_5xx" if exc.status >= 500 else "errors_4xx")
            raise

    def _auth(self, headers) -> None:
        if self.options.token is None:
            return
        got = headers.get("Authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {self.options.token}".encode()):
            raise _HttpError(401, "missing or wrong bearer token; send 'Authorization: Bearer <token>'",
                             {"WWW-Authenticate": 'Bearer realm="edgepose"'})

    def _route(self, method, path, headers, read_body):
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
            raise _HttpError(404, f"no endpoint {path!r}; valid: /v2/health/live, /v2/health/ready, /v2, "
                                  "/v2/models/{name}, /v2/models/{name}/ready, /v2/models/{name}/infer")
        name, version, tail = m.group(1), m.group(2), m.group(3)
        model = self.models.get(name)
        if model is None:
            raise _HttpError(404, f"unknown model {name!r}; valid choices: {', '.join(sorted(self.models))}")
        if version is not None and version != model.version:
            raise _HttpError(404, f"model {name!r} has no version {version!r}; valid: {model.version}")
        if tail is None:
            self._need(method, "GET", path)
            return 200, json.dumps(model.metadata()).encode(), {}
        if tail == "/ready":
            self._need(method, "GET", path)
            return 200, ok, {}
        self._need(method, "POST", path)
        return self._infer(model, headers, read_body)

    @staticmethod
    def _need(method, want, path):
        if method != want:
            raise _HttpError(405, f"{method} is not allowed on {path}; use {want}")

    def _infer(self, model: ServedModel, headers, read_body):
        t_recv = time.perf_counter()
        body = read_body()
        try:
            req = parse_infer_request(body, headers.get(HEADER_LENGTH))
        except ProtocolError as exc:
            raise _HttpError(exc.status, str(exc)) from None
        deadline_ms = req.parameters.get("deadline_ms")
        if deadline_ms is not None and (isinstance(deadline_ms, bool) or not isinstance(deadline_ms, (int, float))
                                        or not deadline_ms > 0):
            raise _HttpError(400, f"parameter 'deadline_ms' must be a positive number, got {deadline_ms!r}")
        if not self._slots.acquire(blocking=False):
            raise _HttpError(503, f"server busy: {self.options.max_concurrency} inferences already running "
                                  "(ServerOptions.max_concurrency); retry later",
                             {"Retry-After": str(self.options.retry_after_s)})
        try:
            if deadline_ms is not None and (time.perf_counter() - t_recv) * 1e3 > deadline_ms:
                raise _HttpError(504, f"deadline_ms {deadline_ms} passed before inference started")
            t0 = time.perf_counter()
            try:
                outputs = model.infer(req.inputs, req.parameters)
            except ProtocolError as exc:
                raise _HttpError(exc.status, str(exc)) from None
            infer_ms = (time.perf_counter() - t0) * 1e3
        finally:
            self._slots.release()
        if req.requested is not None:
            missing = [n for n in req.requested if n not in outputs]
            if missing:
                raise _HttpError(400, f"requested output {missing[0]!r} does not exist; valid: {', '.join(outputs)}")
        server_ms = (time.perf_counter() - t_recv) * 1e3
        params = {"edgepose_server_ms": round(server_ms, 3), "edgepose_infer_ms": round(infer_ms, 3)}
        body, extra = encode_infer_response(model.name, model.version, outputs, request=req, parameters=params)
        self._count("infer_ok")
        return 200, body, extra
