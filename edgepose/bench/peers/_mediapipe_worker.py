"""MediaPipe Pose as a peer worker: runs inside the peer virtualenv (numpy + mediapipe, no edgepose).

Started by :class:`edgepose.bench.peers.client.PeerProcess` as
``PEER_PYTHON _mediapipe_worker.py --threads N --complexity 1``; speaks :mod:`_wire` on
stdin/stdout. It builds two ``mediapipe.solutions.pose.Pose`` graphs once: a video one
(``static_image_mode=False``: detector only when the track is lost, ROI from the previous frame's
landmarks, landmark smoothing) and an image one (``static_image_mode=True``: detector on every
image). ``reset`` restarts the video graph for a new clip (same models).

Threads: the legacy solution API takes no thread count, so this worker sets it in the expanded
graph before it starts: ``delegate.xnnpack.num_threads`` of both ``InferenceCalculator`` nodes
(the detector and the landmark model; MediaPipe's own default on Linux desktop is 1), the two
places where the work is multi-threaded. The graph scheduler's own thread pool (which runs the
calculators: image-to-tensor, decoding, ROI, smoothing) cannot be set from Python: the binding
already installs the default executor, and setting ``num_threads`` or an executor in the graph
config is refused ("ExecutorConfig for the default executor ... should not both be specified").
That pool may run independent calculators of one frame at once; ``cpu_ms`` (the process's CPU
time around each call, all threads) shows the total either way, and the ready message reports
the process's OS thread count (``os_threads``).

Timestamps: ``Pose.process`` stamps frames 33.333 ms apart whatever the clip's frame rate; the
worker sets the solution's simulated clock to the frame's own timestamp (``ts_ms``) so the
landmark smoother sees the real frame rate, as edgepose's does.

Reply per frame: float32 (people, 33, 4) = x, y in frame px, z (MediaPipe's relative depth, px
scale of x), visibility; people is 0 or 1.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import numpy as np

import _wire  # the worker's folder is sys.path[0]


def _sha(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def make_pose_class(threads: int):
    from mediapipe.calculators.tensor import inference_calculator_pb2
    from mediapipe.python.solutions import pose as mp_pose

    ext = inference_calculator_pb2.InferenceCalculatorOptions.ext
    seen: list[str] = []

    class ThreadedPose(mp_pose.Pose):
        def _modify_calculator_options(self, config, params):
            super()._modify_calculator_options(config, params)
            for node in config.node:
                if node.calculator.startswith("InferenceCalculator") and node.options.HasExtension(ext):
                    node.options.Extensions[ext].delegate.xnnpack.num_threads = threads
                    seen.append(node.name)

    return ThreadedPose, seen


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--complexity", type=int, default=1, choices=(0, 1, 2))
    ap.add_argument("--min-detection-confidence", type=float, default=0.5)
    ap.add_argument("--min-tracking-confidence", type=float, default=0.5)
    args = ap.parse_args(argv)

    def make_handler():
        os.environ.setdefault("GLOG_minloglevel", "2")
        import mediapipe as mp

        cls, nodes = make_pose_class(args.threads)
        kw = dict(model_complexity=args.complexity, enable_segmentation=False,
                  min_detection_confidence=args.min_detection_confidence,
                  min_tracking_confidence=args.min_tracking_confidence)
        graphs = {"video": cls(static_image_mode=False, smooth_landmarks=True, **kw),
                  "image": cls(static_image_mode=True, **kw)}
        root = os.path.dirname(mp.__file__)
        lm = ("lite", "full", "heavy")[args.complexity]
        files = {f"pose_landmark_{lm}.tflite": os.path.join(root, "modules/pose_landmark", f"pose_landmark_{lm}.tflite"),
                 "pose_detection.tflite": os.path.join(root, "modules/pose_detection/pose_detection.tflite")}
        info = {"peer": "mediapipe", "mediapipe": mp.__version__, "threads": args.threads,
                "complexity": args.complexity, "xnnpack_nodes": sorted(set(nodes)),
                "models": {k: _sha(v) for k, v in files.items() if os.path.isfile(v)},
                "os_threads": len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None}
        last_us = {"video": -1}

        def handle(header, frame):
            if frame is None:  # reset: a new clip
                graphs["video"].reset()
                graph = getattr(graphs["video"], "_graph", None)
                if graph is not None:  # the restarted graph opens its calculators (loads the models) now,
                    graph.wait_until_idle()  # not inside the clip's first timed frame
                last_us["video"] = -1
                return None, {}
            mode = header.get("mode", "video")
            g = graphs[mode]
            if mode == "video":
                ts_us = int(header.get("ts_ms", 0)) * 1000
                if ts_us > last_us["video"] and hasattr(g, "_simulated_timestamp"):
                    g._simulated_timestamp = ts_us - 33333  # process() adds 33333 before stamping
                    last_us["video"] = ts_us
            res = g.process(frame)
            if res.pose_landmarks is None:
                return np.zeros((0, 33, 4), np.float32), {}
            h, w = frame.shape[:2]
            lms = res.pose_landmarks.landmark
            a = np.array([[p.x * w, p.y * h, p.z * w, p.visibility] for p in lms], np.float32)
            return a[None], {}

        return info, handle

    return _wire.serve(make_handler)


if __name__ == "__main__":
    sys.exit(main())
