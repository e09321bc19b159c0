"""Peers: other pose runtimes benchmarked beside edgepose in the same run (issue 23).

A peer runs in its own virtualenv (its pins, e.g. MediaPipe's ``numpy<2``, never touch edgepose's
environment), as a child process that loads its models once and is driven over a pipe
(:mod:`~edgepose.bench.peers._wire`), so its frames and edgepose's can be timed interleaved,
A, B, A, B, in one process tree.

* ``python -m edgepose.bench.peers setup mediapipe`` creates the environment (cached).
* :func:`open_peer` starts a peer: ``with open_peer("mediapipe-pose-full", threads=2) as peer:
  peer.frame(rgb, ts_ms=0)``.

Environments live in ``$EDGEPOSE_PEER_DIR/<env>`` (default ``$XDG_CACHE_HOME/edgepose/peers/<env>``,
i.e. ``~/.cache/edgepose/peers/mediapipe``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgepose.errors import EdgePoseError, unknown_name

#: Environment variable: the folder holding one virtualenv per peer environment.
PEER_DIR_ENV = "EDGEPOSE_PEER_DIR"
#: Written into a finished environment (what was installed, by which Python).
MARKER = "edgepose-peer.json"


class PeerError(EdgePoseError):
    """A peer process failed to start, died, or answered with an error."""


class PeerEnvMissingError(PeerError):
    """The peer's virtualenv does not exist yet; the message gives the command that creates it."""


@dataclass(frozen=True)
class PeerEnv:
    """A virtualenv recipe: ``name`` (its folder), the pip requirements, the Pythons it supports."""

    name: str
    requirements: tuple[str, ...]
    imports: tuple[str, ...]
    python_versions: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PeerSpec:
    """A peer pipeline.

    Attributes:
        name: what a benchmark names it by.
        env: the :class:`PeerEnv` it runs in.
        worker: the worker script (in this package) started with the env's python.
        args: the worker's arguments (``--threads`` is added by :func:`open_peer`).
        keypoint_format: the layout of the returned keypoints (``edgepose.types.FORMAT_TO_COCO17``).
        description: one line for reports.
    """

    name: str
    env: PeerEnv
    worker: str
    args: tuple[str, ...]
    keypoint_format: str
    description: str


MEDIAPIPE = PeerEnv("mediapipe", ("mediapipe==0.10.21",), ("numpy", "mediapipe"),
                    ((3, 9), (3, 10), (3, 11), (3, 12)))
ENVS = {e.name: e for e in (MEDIAPIPE,)}
PEERS = {p.name: p for p in (
    PeerSpec("mediapipe-pose-full", MEDIAPIPE, "_mediapipe_worker.py", ("--complexity", "1"), "blazepose33",
             "MediaPipe Pose (legacy solutions API, model_complexity=1: BlazePose detector + full landmarks, "
             "ROI tracking, landmark smoothing), mediapipe==0.10.21"),
    PeerSpec("mediapipe-pose-lite", MEDIAPIPE, "_mediapipe_worker.py", ("--complexity", "0"), "blazepose33",
             "MediaPipe Pose, model_complexity=0 (lite landmarks), mediapipe==0.10.21"),
)}


def setup_command(env: str) -> str:
    return f"python -m edgepose.bench.peers setup {env}"


def peer_root() -> Path:
    """``$EDGEPOSE_PEER_DIR``, else ``$XDG_CACHE_HOME/edgepose/peers`` (``~/.cache/edgepose/peers``)."""
    if os.environ.get(PEER_DIR_ENV):
        return Path(os.environ[PEER_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgepose" / "peers"


def get_env(name: str) -> PeerEnv:
    if name not in ENVS:
        raise unknown_name("peer environment", name, ENVS, f"Create one with '{setup_command('mediapipe')}'")
    return ENVS[name]


def get_peer(name: str) -> PeerSpec:
    if name not in PEERS:
        raise unknown_name("peer", name, PEERS)
    return PEERS[name]


def env_dir(env: str) -> Path:
    return peer_root() / get_env(env).name


def _venv_python(d: Path) -> Path:
    return d / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def env_python(env: str) -> Path:
    """The python of a finished peer environment.

    Raises:
        PeerEnvMissingError: the environment was never created (or its setup did not finish).
    """
    d = env_dir(env)
    py = _venv_python(d)
    if not py.is_file() or not (d / MARKER).is_file():
        what = "no virtualenv there" if not py.is_file() else f"setup did not finish (no {MARKER})"
        raise PeerEnvMissingError(
            f"the peer environment {env!r} is missing: {d} ({what}). Create it with: {setup_command(env)} "
            f"(installs {' '.join(get_env(env).requirements)} into its own virtualenv; set {PEER_DIR_ENV} "
            "to keep peer environments elsewhere)")
    return py


def setup_env(env: str, *, python: str | None = None, force: bool = False, pip_args=(), log=print) -> Path:
    """Create (or reuse) the peer environment ``env``; returns its folder.

    Args:
        env: a name from :data:`ENVS` (``mediapipe``).
        python: the interpreter the virtualenv is made from (default: this one).
        force: rebuild even when a finished environment is there.
        pip_args: extra ``pip install`` arguments (e.g. ``--find-links DIR`` for a local wheel).
    """
    spec = get_env(env)
    d = env_dir(env)
    if not force and (d / MARKER).is_file() and _venv_python(d).is_file():
        log(f"peer environment {env!r} is ready: {d} (pass --force to rebuild)")
        return d
    base = python or sys.executable
    ver = subprocess.run([base, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
                         capture_output=True, text=True)
    if ver.returncode != 0:
        raise PeerError(f"cannot run the Python {base!r} to build the peer environment: {ver.stderr.strip()}; "
                        "pass --python PATH")
    major, minor = (int(x) for x in ver.stdout.split())
    if (major, minor) not in spec.python_versions:
        ok = ", ".join(f"{a}.{b}" for a, b in spec.python_versions)
        raise PeerError(f"{' '.join(spec.requirements)} has wheels for Python {ok}, not {major}.{minor} "
                        f"({base}); pass --python with one of those, e.g. {setup_command(env)} --python python3.11")
    (d / MARKER).unlink(missing_ok=True)
    steps = [[base, "-m", "venv", *(["--clear"] if force else []), str(d)],
             [str(_venv_python(d)), "-m", "pip", "install", *pip_args, *spec.requirements],
             [str(_venv_python(d)), "-c", f"import {', '.join(spec.imports)}"]]
    for cmd in steps:
        log("$ " + " ".join(cmd))
        if subprocess.run(cmd).returncode != 0:
            raise PeerError(f"setting up the peer environment {env!r} failed at: {' '.join(cmd)}; "
                            f"fix the cause above and rerun {setup_command(env)} --force")
    freeze = subprocess.run([str(_venv_python(d)), "-m", "pip", "freeze"], capture_output=True, text=True)
    (d / MARKER).write_text(json.dumps({"env": env, "requirements": list(spec.requirements),
                                        "python": f"{major}.{minor}", "freeze": freeze.stdout.split()}, indent=1))
    log(f"peer environment {env!r} ready: {d}")
    return d


def open_peer(name: str, *, threads: int = 1, **kw):
    """Start the peer ``name`` (a :class:`~edgepose.bench.peers.client.PeerProcess`, models loaded).

    Raises:
        PeerEnvMissingError: its environment does not exist (the message says how to create it).
        PeerError: the worker failed to start.
    """
    from edgepose.bench.peers.client import PeerProcess

    spec = get_peer(name)
    py = env_python(spec.env.name)
    worker = Path(__file__).resolve().parent / spec.worker
    return PeerProcess(str(py), str(worker), [*spec.args, "--threads", str(int(threads))], name=name, **kw)


__all__ = ["PEERS", "ENVS", "PEER_DIR_ENV", "PeerError", "PeerEnvMissingError", "PeerSpec", "PeerEnv",
           "open_peer", "setup_env", "env_python", "env_dir", "peer_root", "get_peer", "setup_command"]
