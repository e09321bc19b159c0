#!/usr/bin/env python3
"""Raspberry Pi pose app: camera -> pose -> overlay, inside the device's latency budget.

Reads the Pi camera (picamera2), a USB camera or a video file; estimates poses on the Pi
(LiteRT / ONNX Runtime on the CPU); optionally sends hard frames to an offload server within
the frame budget of the device profile; shows or records the overlay; prints one stats line
per second (fps, p95 latency, budget misses, offload share, dropped frames).

    python examples/raspberry_pi.py                                   # Pi camera, window
    python examples/raspberry_pi.py --input 0 --width 640 --height 480  # USB camera
    python examples/raspberry_pi.py --input demo --headless --record overlay.mp4
    python examples/raspberry_pi.py --offload-url http://192.168.1.20:8000 --offload-token "$TOKEN"
    python examples/raspberry_pi.py --multi topdown-mp-lightning      # several people, tracked ids

The frame loop (``edgepose.app.run_app``) never waits on the network: results come out in input
order, one per frame, an offloaded frame's held at most until its budget runs out.
``--input FILE --headless`` stands in for the camera on a desktop (add ``--realtime`` to pace
the file at its frame rate and drop frames like a camera would). See docs/install.md.
"""

from __future__ import annotations

import logging
import sys

from edgepose.app import app_arguments, multi_person, run_app, single_person

#: The model a fresh install has (``edgepose fetch``); on a Pi 4, movenet-lightning-int8 is the
#: fastest card (about 4x less compute) when you have its file.
DEFAULT_MODEL = "blazepose-full"
DEFAULT_DEVICE = "rpi4"

log = logging.getLogger("raspberry_pi")


def parse_args(argv=None):
    p = app_arguments("Raspberry Pi pose app (camera -> pose -> overlay).", default_input="picamera2",
                      input_help="picamera2[:N], camera index (0), /dev/videoN, a video file, or 'demo'",
                      default_device=DEFAULT_DEVICE, default_model=DEFAULT_MODEL,
                      multi_help="movenet-multipose, topdown-mp-lightning, topdown-lightning, ...",
                      headless_help="no window (use with --record on a Pi without display)")
    return p.parse_args(argv)


def build_pipeline(args, profile, budget_ms: float, threads: int):
    """Multi-person: the estimator's result at once. Single-person: a CloudEdgeRuntime (offload optional)."""
    if args.multi:
        return multi_person(args, args.multi)
    from edgepose.models import load_model

    model = load_model(args.model, num_threads=threads)
    log.info("model %s on %s (%d threads)", args.model, ", ".join(type(b).__name__ for b in model.backends()), threads)
    return single_person(args, model, budget_ms)


def main(argv=None) -> int:
    return run_app(parse_args(argv), build_pipeline)


if __name__ == "__main__":
    sys.exit(main())
