"""Run NVIDIA's ``tritonserver`` (from the Triton environment) on a model repository.

``edgepose serve --engine triton`` exports the requested pose models with the Python backend
(:func:`edgepose.server.triton.export_triton`) into a temporary repository and runs it here::

    with TritonEngine(repo, http_port=8000, grpc_port=8001, metrics_port=8002) as t:
        print(t.http_url, t.grpc_url, t.metrics_url)

The binary, its Python backend and the backend's Python (numpy < 2, onnxruntime, OpenCV) come
from the environment of :mod:`edgepose.server.triton_env`, never from edgepose's own.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from edgepose.errors import EdgePoseError
from edgepose.server.triton_env import TritonEnv, find_env

log = logging.getLogger(__name__)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server gets SIGTERM when the process that started it dies (no orphaned servers)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now (tritonserver cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class TritonEngine:
    """A ``tritonserver`` process serving ``repository`` with HTTP, gRPC and Prometheus metrics.

    Args:
        repository: the model repository folder.
        env: the Triton environment (default :func:`~edgepose.server.triton_env.find_env`).
        host: bind address of the three endpoints.
        http_port, grpc_port, metrics_port: ports; 0 picks a free one.
        log_verbose: tritonserver's ``--log-verbose`` level.
    """

    def __init__(self, repository: str | os.PathLike, *, env: TritonEnv | None = None, host: str = "127.0.0.1",
                 http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002, log_verbose: int = 0):
        self.repository = Path(repository).resolve()  # tritonserver runs in its own folder
        self.env = env or find_env()
        self.host = host
        self.ports = {k: p or free_port(host) for k, p in
                      (("http", http_port), ("grpc", grpc_port), ("metrics", metrics_port))}
        self.log_verbose = log_verbose
        self.proc: subprocess.Popen | None = None
        self._work: Path | None = None
        self.log_path: Path | None = None

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else ("[::1]" if self.host == "::" else self.host)

    @property
    def http_url(self) -> str:
        return f"http://{self._client_host}:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` (what ``tritonclient.grpc.InferenceServerClient`` takes)."""
        return f"{self._client_host}:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.ports['metrics']}/metrics"

    def _backends(self) -> Path:
        """A backend folder with the Python backend and the stub built for the env's Python."""
        src = self.env.server_root / "backends" / "python"
        dst = self._work / "backends" / "python"
        dst.mkdir(parents=True)
        for f in src.iterdir():
            if f.is_file():
                shutil.copy2(f, dst / f.name)
        shutil.copy2(self.env.stub(), dst / "triton_python_backend_stub")
        return dst.parent

    def command(self, backends: Path) -> list[str]:
        return [str(self.env.tritonserver), "--model-repository", str(self.repository),
                "--backend-directory", str(backends), "--http-address", self.host, "--grpc-address", self.host,
                "--metrics-address", self.host, "--http-port", str(self.ports["http"]),
                "--grpc-port", str(self.ports["grpc"]), "--metrics-port", str(self.ports["metrics"]),
                "--allow-metrics", "true", "--allow-gpu-metrics", "false", "--exit-on-error", "true",
                "--strict-readiness", "true", "--exit-timeout-secs", "10", "--log-verbose", str(self.log_verbose)]

    def start(self, timeout_s: float = 180.0) -> "TritonEngine":
        """Start tritonserver and wait until every model is ready.

        Raises:
            EdgePoseError: the server exited or was not ready within ``timeout_s``; the message
                holds the end of its log.
        """
        self._work = Path(tempfile.mkdtemp(prefix="edgepose-triton-"))
        self.log_path = self._work / "tritonserver.log"
        backends = self._backends()
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(self.command(backends), stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env.environ(), cwd=self._work,
                                         start_new_session=True,  # Ctrl-C reaches us; we stop it
                                         preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self._cleanup()
                raise EdgePoseError(f"tritonserver exited with code {self.proc.returncode} while starting on "
                                    f"{self.repository}:\n{tail}")
            if self.ready():
                log.info("tritonserver ready: %s, %s, %s", self.http_url, self.grpc_url, self.metrics_url)
                return self
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise EdgePoseError(f"tritonserver was not ready after {timeout_s:.0f} s on {self.repository}:\n{tail}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1.0) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except (OSError, AttributeError):
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGINT (tritonserver unloads the models and exits), SIGKILL after ``timeout_s``. Idempotent."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                try:  # tritonserver itself: it stops its Python backend stubs
                    os.kill(self.proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("tritonserver did not stop within %.0f s; killing it", timeout_s)
                    os.killpg(self.proc.pid, signal.SIGKILL)  # with its stubs (its own session)
                    self.proc.wait()
            rc = self.proc.returncode
        self._cleanup()
        return rc

    def _cleanup(self) -> None:
        if self._work is not None and (self.proc is None or self.proc.poll() is not None):
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()
