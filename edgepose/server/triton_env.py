"""The Triton environment: a separate virtualenv holding NVIDIA's ``tritonserver`` binary.

The PyPI wheel ``nvidia-pytriton`` bundles a ``tritonserver`` build with its Python backend
(CPU works). It pins ``numpy<2`` and ``tritonclient~=2.50``, so it never goes into edgepose's own
environment: it lives in its own virtualenv, created once and cached::

    python -m edgepose.server.triton_env setup     # create / update it (downloads ~60 MB once)
    python -m edgepose.server.triton_env check     # print what is there, exit 2 if unusable
    python -m edgepose.server.triton_env path      # print the folder

Folder: ``$EDGEPOSE_TRITON_ENV`` if set, else ``$XDG_CACHE_HOME/edgepose/triton-env`` (default
``~/.cache/edgepose/triton-env``). ``pip`` options such as ``PIP_FIND_LINKS`` (a folder holding a
downloaded wheel) or ``PIP_INDEX_URL`` are honoured. ``edgepose serve --engine triton`` and the
Triton-exported repository's Python backend (``model.py``: onnxruntime + numpy + OpenCV) run from
this environment.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

from edgepose.errors import EdgePoseError

#: What the environment holds. numpy < 2: the bundled Python backend stub and pytriton pin it.
REQUIREMENTS = ("nvidia-pytriton==0.7.0", "numpy>=1.23,<2", "onnxruntime>=1.17", "opencv-python-headless>=4.8,<4.12")
SETUP_COMMAND = "python -m edgepose.server.triton_env setup"


class TritonEnvError(EdgePoseError):
    """The Triton environment is missing or broken; the message names the setup command."""


def env_dir() -> Path:
    """The Triton environment's folder (``$EDGEPOSE_TRITON_ENV`` or the cache default)."""
    explicit = os.environ.get("EDGEPOSE_TRITON_ENV")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgepose" / "triton-env"


@dataclass(frozen=True)
class TritonEnv:
    """A usable Triton environment.

    Attributes:
        root: the virtualenv folder.
        python: its interpreter.
        server_root: ``.../site-packages/pytriton/tritonserver`` (bin/, backends/, stubs).
        python_version: ``"3.11"``-style version of the interpreter (selects the backend stub).
    """

    root: Path
    python: Path
    server_root: Path
    python_version: str

    @property
    def tritonserver(self) -> Path:
        return self.server_root / "bin" / "tritonserver"

    @property
    def site_packages(self) -> Path:
        return self.server_root.parent.parent

    def stub(self) -> Path:
        """The Python backend stub built for this environment's interpreter."""
        return self.server_root / "python_backend_stubs" / self.python_version / "triton_python_backend_stub"

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment variables for running ``tritonserver`` (libraries, the stub's Python)."""
        env = dict(os.environ if base is None else base)
        libs = [str(self.site_packages / "nvidia_pytriton.libs"), str(self.server_root / "external_libs")]
        libs += _python_libdirs(self.python)
        libs = [p for p in libs if os.path.isdir(p)]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.root)
        env.pop("PYTHONHOME", None)
        env.pop("PYTHONPATH", None)
        return env


def _python_libdirs(python: Path) -> list[str]:
    """Folders holding the interpreter's libpython (the backend stub links against it)."""
    try:
        out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')"],
                             capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    return [out] if out else []


def _venv_python(root: Path) -> Path:
    return root / "bin" / "python"


def find_env(root: str | os.PathLike | None = None) -> TritonEnv:
    """The Triton environment at ``root`` (default :func:`env_dir`).

    Raises:
        TritonEnvError: it does not exist or lacks the ``tritonserver`` binary; the message names
            :data:`SETUP_COMMAND`.
    """
    root = Path(root) if root is not None else env_dir()
    hint = (f"create it with: {SETUP_COMMAND} (about 60 MB, once; set EDGEPOSE_TRITON_ENV to use "
            "another folder)")
    py = _venv_python(root)
    if not py.is_file():
        raise TritonEnvError(f"the Triton environment {root} does not exist; {hint}")
    found = sorted(glob.glob(str(root / "lib" / "python3*" / "site-packages" / "pytriton" / "tritonserver")))
    if not found or not (Path(found[0]) / "bin" / "tritonserver").is_file():
        raise TritonEnvError(f"the Triton environment {root} has no tritonserver binary (nvidia-pytriton "
                             f"is not installed there); {hint}")
    server_root = Path(found[0])
    version = Path(found[0]).parents[2].name.removeprefix("python")  # lib/python3.11/site-packages
    env = TritonEnv(root, py, server_root, version)
    if not env.stub().is_file():
        raise TritonEnvError(f"the Triton environment {root} is Python {version}, for which nvidia-pytriton "
                             f"ships no backend stub ({env.stub()}); recreate it with a Python 3.8-3.13 "
                             f"interpreter: {SETUP_COMMAND} --recreate")
    return env


def setup(root: str | os.PathLike | None = None, *, recreate: bool = False, quiet: bool = False) -> TritonEnv:
    """Create (or complete) the Triton environment and return it.

    Idempotent: an environment that already has everything is left as it is (pip sees the
    requirements satisfied). ``recreate`` deletes the folder first.
    """
    import shutil

    root = Path(root) if root is not None else env_dir()
    if recreate and root.exists():
        shutil.rmtree(root)
    if not _venv_python(root).is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        venv.EnvBuilder(with_pip=True, clear=False, symlinks=True).create(root)
    cmd = [str(_venv_python(root)), "-m", "pip", "install", "--disable-pip-version-check", *REQUIREMENTS]
    if quiet:
        cmd.insert(4, "-q")
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise TritonEnvError(f"pip could not install {' '.join(REQUIREMENTS)} into {root} (exit {proc.returncode}, "
                             "see its output above); check the network / PIP_INDEX_URL, or point PIP_FIND_LINKS at a "
                             "folder holding the nvidia-pytriton wheel, then rerun: " + SETUP_COMMAND)
    return find_env(root)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgepose.server.triton_env",
                                description="Create or inspect the Triton environment (tritonserver in its own venv).")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True
    s = sub.add_parser("setup", help="create or complete the environment (idempotent)")
    s.add_argument("--recreate", action="store_true", help="delete the folder first")
    s.add_argument("-q", "--quiet", action="store_true", help="quiet pip")
    sub.add_parser("check", help="print the environment's binary and Python; exit 2 if unusable")
    sub.add_parser("path", help="print the environment's folder")
    args = p.parse_args(argv)
    try:
        if args.cmd == "path":
            print(env_dir())
            return 0
        env = setup(recreate=args.recreate, quiet=args.quiet) if args.cmd == "setup" else find_env()
    except EdgePoseError as exc:
        print(f"triton_env {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    print(f"Triton environment {env.root}: tritonserver {env.tritonserver}, Python {env.python_version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
