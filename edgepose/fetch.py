"""Fetch the BlazePose models edgepose does not ship, from PyPI wheels only.

The BlazePose detector and landmark models are published on PyPI inside the wheel
mediapipe==0.10.14 (the default MoveNet model and the demo still ship in the package itself).
``pip download --no-deps`` fetches the wheel from the package index the
machine is configured with; the files are extracted and checked against pinned sha256 sums.
Nothing else is downloaded, and nothing is installed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgepose.errors import EdgePoseError
from edgepose._hash import sha256_file as _sha256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelFile:
    """A file inside a PyPI wheel: requirement, member path, pinned sha256, local name."""

    requirement: str
    member: str
    sha256: str
    name: str


FILES: tuple[WheelFile, ...] = (
    WheelFile("mediapipe==0.10.14", "mediapipe/modules/pose_detection/pose_detection.tflite",
              "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c", "pose_detection.tflite"),
    WheelFile("mediapipe==0.10.14", "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
              "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f", "pose_landmark_full.tflite"),
)


def fetch(dest: str | os.PathLike, *, files=FILES, force: bool = False) -> list[Path]:
    """Make sure every file of ``files`` is in ``dest`` with its pinned checksum.

    Returns:
        the paths of the files in ``dest``.

    Raises:
        EdgePoseError: pip could not download a wheel, or a checksum does not match.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out, todo = [], {}
    for f in files:
        path = dest / f.name
        if path.is_file() and not force and _sha256(path) == f.sha256:
            log.info("%s present, checksum ok", path)
        else:
            todo.setdefault(f.requirement, []).append(f)
        out.append(path)
    for req, members in todo.items():
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", tmp, req]
            log.info("downloading %s: %s", req, " ".join(cmd))
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not wheels:
                raise EdgePoseError(
                    f"could not download {req} with pip (exit {proc.returncode}): "
                    f"{(proc.stderr or proc.stdout).strip()[-400:]}. Check that this machine reaches "
                    "its Python package index, or copy the files into "
                    f"{dest} by hand (see 'edgepose fetch --list')")
            with zipfile.ZipFile(wheels[0]) as zf:
                for f in members:
                    data = zf.read(f.member)
                    digest = hashlib.sha256(data).hexdigest()
                    if digest != f.sha256:
                        raise EdgePoseError(
                            f"{f.member} from {wheels[0].name} has sha256 {digest}, expected {f.sha256}; "
                            "refusing to use it")
                    tmp_path = dest / (f.name + ".part")
                    tmp_path.write_bytes(data)
                    os.replace(tmp_path, dest / f.name)
                    log.info("wrote %s", dest / f.name)
    return out
