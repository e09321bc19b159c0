"""``python -m edgepose.bench.peers``: create and check peer environments.

    python -m edgepose.bench.peers setup mediapipe     # a cached virtualenv with mediapipe==0.10.21
    python -m edgepose.bench.peers check mediapipe-pose-full
    python -m edgepose.bench.peers list
"""

from __future__ import annotations

import argparse
import json
import sys

from edgepose.errors import EdgePoseError


def main(argv=None) -> int:
    from edgepose.bench import peers

    ap = argparse.ArgumentParser(prog="python -m edgepose.bench.peers", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup", help="create the virtualenv of a peer environment (cached)")
    s.add_argument("env", choices=sorted(peers.ENVS))
    s.add_argument("--python", default=None, help="interpreter to build it from (default: this one)")
    s.add_argument("--force", action="store_true", help="rebuild it even if it is there")
    s.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                   help="extra 'pip install' argument, repeatable (e.g. --pip-arg=--find-links=DIR)")
    c = sub.add_parser("check", help="start a peer, print what it loaded, run one blank frame")
    c.add_argument("peer", choices=sorted(peers.PEERS))
    c.add_argument("--threads", type=int, default=1)
    sub.add_parser("list", help="the peers, their environments and where those are")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "setup":
            peers.setup_env(args.env, python=args.python, force=args.force, pip_args=args.pip_arg)
        elif args.cmd == "check":
            import numpy as np

            with peers.open_peer(args.peer, threads=args.threads) as p:
                r = p.frame(np.zeros((256, 256, 3), np.uint8), ts_ms=0)
                print(json.dumps({**p.info, "blank_frame_ms": round(r.ms, 2), "people": int(r.poses.shape[0])},
                                 indent=1))
        else:
            for spec in peers.PEERS.values():
                d = peers.env_dir(spec.env.name)
                ok = (d / peers.MARKER).is_file()
                print(f"{spec.name:22s} env {spec.env.name} at {d} ({'ready' if ok else 'missing: ' + peers.setup_command(spec.env.name)})")
    except EdgePoseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
