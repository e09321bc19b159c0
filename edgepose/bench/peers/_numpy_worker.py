"""A numpy-only peer worker: the protocol's self-test (tests/test_bench_peer.py) and a template.

It speaks :mod:`_wire` like the MediaPipe worker, with a trivial "pose model": every joint at the
centroid of the frame's pixels brighter than 127 (none: nobody found), so a test can check
that a frame went through the pipe intact and came back as poses.

``--fail-init`` makes loading fail (the ready message carries the error); a frame header with
``"exit": CODE`` makes the process die without a reply (a crashed peer).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import _wire  # the worker's folder is sys.path[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--joints", type=int, default=17)
    ap.add_argument("--fail-init", action="store_true")
    args = ap.parse_args(argv)

    def make_handler():
        if args.fail_init:
            raise RuntimeError("model file missing (asked by --fail-init)")
        frames = {"n": 0}

        def handle(header, frame):
            if "exit" in header:
                os._exit(int(header["exit"]))
            if frame is None:
                frames["n"] = 0
                return None, {}
            frames["n"] += 1
            print("a library writing to stdout must not break the protocol")
            ys, xs = np.nonzero(frame.max(axis=2) > 127)
            extra = {"frames_since_reset": frames["n"], "checksum": int(frame.sum(dtype=np.uint64))}
            if len(xs) == 0:
                return np.zeros((0, args.joints, 3), np.float32), extra
            pose = np.tile([xs.mean(), ys.mean(), 1.0], (args.joints, 1))
            return pose[None].astype(np.float32), extra

        return {"peer": "numpy-centroid", "threads": args.threads}, handle

    return _wire.serve(make_handler)


if __name__ == "__main__":
    sys.exit(main())
