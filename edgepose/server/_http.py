"""HTTP/1.1 framing of the embedded server: strict message framing, per-request deadlines and a
connection cap, on the stdlib ``http.server`` (no framework, no dependency).

The rules (issue 22):

* a request's body is always consumed (drained and discarded when the route does not need it)
  before the answer, or the answer says ``Connection: close`` and the connection is closed: a
  body is never parsed as the next request;
* ``Content-Length`` must be plain ASCII digits, present once; any ``Transfer-Encoding`` is
  refused (411 for chunked, 501 otherwise) and the connection closed; a header block the parser
  flags as malformed (e.g. ``Content-Length\\t: 5``) is a 400 + close;
* the request line, headers and body must all arrive within ``read_timeout_s`` of the request's
  first byte (a total budget, not one per ``recv``), else 408 + close; an idle keep-alive
  connection is closed after ``idle_timeout_s``;
* at most ``max_connections`` connections are served at once (one thread each); one more is
  answered 503 + ``Retry-After`` and closed at once.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from edgepose.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from edgepose.server.app import PoseServer

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"[0-9]{1,18}")
_METHODS = ("GET", "POST", "PUT", "DELETE")
#: an unread body up to this size is read and discarded (so the connection stays usable) even
#: when it is over ``max_body_bytes``; above it the connection is closed after a short drain.
_SHORT_DRAIN_BYTES = 1 << 20


class HttpError(Exception):
    """An HTTP error answer: ``status``, extra ``headers``, and whether to close the connection."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, close: bool = False):
        super().__init__(message)
        self.status, self.headers, self.close = status, headers or {}, close


class _DeadlineSocketIO(io.RawIOBase):
    """Socket reads bounded by an absolute deadline (``time.monotonic()``): each ``recv`` gets
    only the time left, so a client trickling one byte per second still hits the deadline."""

    def __init__(self, sock: socket.socket):
        super().__init__()
        self.sock = sock
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request deadline passed")
            self.sock.settimeout(left)
        return self.sock.recv_into(b)


class Body:
    """The framed body of one request: ``length`` bytes that must be read or drained."""

    def __init__(self, rfile: io.BufferedReader, length: int, timeout_s: float):
        self.rfile, self.length, self.timeout_s = rfile, length, timeout_s
        self.consumed = length == 0

    def read(self) -> bytes:
        """The whole body (408 + close if it does not arrive before the request deadline)."""
        if self.consumed:
            return b""
        self.consumed = True  # whatever happens next, these bytes are gone from the stream
        try:
            data = self.rfile.read(self.length)
        except TimeoutError:
            raise HttpError(408, f"request not received within {self.timeout_s} s "
                                 f"(ServerOptions.read_timeout_s; Content-Length {self.length})", close=True) from None
        if len(data) != self.length:
            raise HttpError(400, f"body has {len(data)} bytes, Content-Length says {self.length}", close=True)
        return data

    def drain(self, limit: int) -> bool:
        """Read and discard up to ``limit`` bytes of the body; True when it is all consumed."""
        if self.consumed:
            return True
        left = self.length
        try:
            while left > 0 and limit > 0:
                chunk = self.rfile.read1(min(left, limit, 65536))
                if not chunk:
                    return False
                left -= len(chunk)
                limit -= len(chunk)
        except OSError:  # TimeoutError included
            return False
        self.consumed = left == 0
        return self.consumed


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: tritonclient reuses connections
    # TCP_NODELAY: the status line + headers and the body go out in two writes; with Nagle on,
    # the body waited for the client's delayed ACK: +40 ms per request on loopback (measured).
    disable_nagle_algorithm = True
    server_version = f"edgepose/{__version__}"
    default_request_version = "HTTP/1.0"  # answers before the request line is parsed carry headers
    server: "HttpServer"

    def log_message(self, fmt, *args):  # route to logging, never stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    def setup(self):
        super().setup()
        self._raw = _DeadlineSocketIO(self.connection)
        self.rfile = io.BufferedReader(self._raw, 65536)
        with self.server.owner._conn_lock:
            self.server.owner._conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.owner._conn_lock:
                self.server.owner._conns.discard(self.connection)

    # -- one request ---------------------------------------------------------------------------
    def handle_one_request(self):
        opts = self.server.owner.options
        self.close_connection = True
        self.command, self.request_version, self.requestline = None, self.default_request_version, ""
        self._raw.deadline = time.monotonic() + opts.idle_timeout_s
        try:  # an idle keep-alive connection: wait for the next request's first byte
            if not self.rfile.peek(1):
                return
        except OSError:
            return
        self._raw.deadline = time.monotonic() + opts.read_timeout_s  # request line + headers + body
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.send_error(414, "request line over 65536 bytes")
                return
            if not self.raw_requestline or not self.parse_request():
                return  # parse_request answered the error (with Connection: close)
            self._dispatch()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True
            self._send(408, _err(f"request not received within {opts.read_timeout_s} s "
                                 "(ServerOptions.read_timeout_s)"), {})
        except OSError:  # reset / broken pipe: nothing to answer
            self.close_connection = True

    def send_error(self, code, message=None, explain=None):
        """Errors found by the stdlib parser (bad request line, header too long): JSON, and close."""
        self.close_connection = True
        text = message or self.responses.get(code, ("error",))[0]
        if explain:
            text = f"{text}: {explain}"
        self._send(code, _err(text), {})

    def _framing(self) -> Body:
        """The body length from strictly checked headers (HttpError + close when unsure)."""
        h = self.headers
        if h.defects:
            raise HttpError(400, f"malformed header block ({type(h.defects[0]).__name__}); "
                                 "header lines must be 'Name: value'", close=True)
        for k, v in h.items():
            if "\r" in v or "\n" in v or "\0" in v:
                raise HttpError(400, f"header {k!r} has a line break or NUL (obsolete line folding is "
                                     "not accepted)", close=True)
        te = h.get_all("Transfer-Encoding")
        if te:
            if "chunked" in [c.strip().lower() for v in te for c in v.split(",")]:
                raise HttpError(411, "chunked bodies are not accepted; send Content-Length", close=True)
            raise HttpError(501, f"Transfer-Encoding {', '.join(te)!r} is not supported; send the body with "
                                 "Content-Length and no Transfer-Encoding", close=True)
        cl = h.get_all("Content-Length") or []
        if len(cl) > 1:
            raise HttpError(400, f"Content-Length appears {len(cl)} times ({', '.join(map(repr, cl))}); "
                                 "send it once", close=True)
        if cl and not _DIGITS.fullmatch(cl[0]):
            raise HttpError(400, f"Content-Length must be a non-negative integer of plain digits, got {cl[0]!r}",
                            close=True)
        n = int(cl[0]) if cl else 0
        if not cl and self.command == "POST":
            raise HttpError(411, "Content-Length header is required for POST", close=True)
        return Body(self.rfile, n, self.server.owner.options.read_timeout_s)

    def _dispatch(self) -> None:
        owner = self.server.owner
        body = None
        try:
            body = self._framing()
            if self.command not in _METHODS:
                raise HttpError(501, f"method {self.command} is not supported; valid: {', '.join(_METHODS)}",
                                close=True)
            status, payload, headers = owner.handle(self.command, self.path, self.headers, body)
        except HttpError as exc:
            owner._count_status(exc.status)
            if exc.close:
                self.close_connection = True
            status, payload, headers = exc.status, _err(str(exc)), exc.headers
        except TimeoutError:
            status, payload, headers = 408, _err(f"request not received within {owner.options.read_timeout_s} s "
                                                 "(ServerOptions.read_timeout_s)"), {}
            self.close_connection = True
        except OSError:
            self.close_connection = True
            return
        except Exception as exc:  # a bug must not take the server down
            log.exception("unhandled error on %s %s", self.command, self.path)
            owner._count_status(500)
            self.close_connection = True
            status, payload, headers = 500, _err(f"internal error: {type(exc).__name__}: {exc}"), {}
        if body is None:
            self.close_connection = True
        elif not body.consumed:  # never leave a body in the stream to be parsed as the next request
            limit = max(owner.options.max_body_bytes, _SHORT_DRAIN_BYTES)
            if self.close_connection or body.length > limit:
                self._raw.deadline = min(self._raw.deadline or 1e18, time.monotonic() + 0.2)
                body.drain(_SHORT_DRAIN_BYTES)  # best effort, so the client reads the answer, not a reset
                self.close_connection = True
            elif not body.drain(body.length):
                self.close_connection = True
        self._send(status, payload, headers)

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self._raw.deadline = None
        try:
            self.connection.settimeout(self.server.owner.options.read_timeout_s)  # a client that never reads
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
        except OSError:
            self.close_connection = True


def _err(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class HttpServer(ThreadingHTTPServer):
    """One daemon thread per connection, at most ``max_connections`` at once; one more gets a
    503 + ``Retry-After`` and is closed without starting a thread."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64
    owner: "PoseServer"

    def __init__(self, address, owner: "PoseServer"):
        self.owner = owner
        self.conn_slots = threading.BoundedSemaphore(owner.options.max_connections)
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        if not self.conn_slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.conn_slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.conn_slots.release()

    def _refuse(self, sock: socket.socket) -> None:
        opts = self.owner.options
        self.owner._count_status(503, connection=True)
        payload = _err(f"server busy: {opts.max_connections} connections already open "
                       "(ServerOptions.max_connections); retry later")
        head = (f"HTTP/1.1 503 Service Unavailable\r\nServer: {Handler.server_version}\r\n"
                f"Content-Type: application/json\r\nRetry-After: {opts.retry_after_s}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
        try:
            _drain_nowait(sock)  # unread request bytes at close() would send a reset, losing the 503
            sock.settimeout(0.05)
            sock.sendall(head + payload)
            sock.shutdown(socket.SHUT_WR)
            _drain_nowait(sock)
        except OSError:
            pass
        finally:
            sock.close()


def _drain_nowait(sock: socket.socket) -> None:
    for _ in range(16):
        try:
            if not sock.recv(65536, socket.MSG_DONTWAIT):
                return
        except OSError:  # BlockingIOError: nothing more buffered
            return
