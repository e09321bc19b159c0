"""What the benchmark scripts share: the assets folder, where results go, the run's metadata.

Run a script from the repository root as ``python benchmarks/NAME.py``: Python puts this folder on
``sys.path`` for a script run that way, which is how the scripts ``import _common`` (no path edits).
Results are written to ``benchmarks/results/`` (ignored by git: generated results are not
committed; the curated tables are in docs/results.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

from edgepose.assets import assets_dir
from edgepose.version import __version__

#: Default folder for NAME.json / NAME.md reports (git-ignored).
RESULTS = Path(__file__).resolve().parent / "results"


def add_assets_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--assets", default=None,
                   help="the assets folder (models/, data/); default: $EDGEPOSE_ASSETS (edgepose.assets)")


def add_out_arg(p: argparse.ArgumentParser, default: str | Path = RESULTS) -> None:
    p.add_argument("--out", default=str(default), help=f"folder for the NAME.json / NAME.md reports "
                                                       f"(default: {default})")


def use_assets(path: str | os.PathLike | None) -> Path:
    """The assets folder (``--assets`` or ``$EDGEPOSE_ASSETS``); registered model names resolve in it."""
    root = assets_dir(path)
    os.environ.setdefault("EDGEPOSE_MODEL_DIR", str(root / "models"))
    return root


def movenet(root: Path, name: str) -> str:
    """``ROOT/models/movenet/NAME`` (e.g. ``movenet_lightning_fp32.onnx``)."""
    return str(root / "models" / "movenet" / name)


def run_meta() -> dict:
    """Host, versions, date and load average at the call (these hosts are shared and noisy)."""
    return {"edgepose": __version__, "host": platform.machine(), "python": sys.version.split()[0],
            "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def write_report(out: str | os.PathLike, name: str, data: dict, md: str | list[str]) -> Path:
    """``OUT/NAME.json`` and ``OUT/NAME.md``; prints the Markdown. Returns the .md path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = md if isinstance(md, str) else "\n".join(md)
    (out / f"{name}.json").write_text(json.dumps(data, indent=1, default=str))
    path = out / f"{name}.md"
    path.write_text(text.rstrip("\n") + "\n")
    sys.stdout.write(text.rstrip("\n") + "\n")
    return path
