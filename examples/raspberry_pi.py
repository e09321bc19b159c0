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

The frame loop never waits on the network: each frame goes in with ``CloudEdgeRuntime.push``
(the edge model runs at once; an offloaded frame's result is held at most until its budget runs
out, for the server's answer) and the results come out of ``push`` / ``poll`` in input order,
one per frame; the loop waits for a held result only until the next frame is expected.

``--input FILE --headless`` stands in for the camera on a desktop (add ``--realtime`` to pace
the file at its frame rate and drop frames like a camera would). See docs/install.md.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import signal
import sys
import time

#: The model a fresh install has (``edgepose fetch``); on a Pi 4, movenet-lightning-int8 is the
#: fastest card (about 4x less compute) when you have its file.
DEFAULT_MODEL = "blazepose-full"
DEFAULT_DEVICE = "rpi4"

log = logging.getLogger("raspberry_pi")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Raspberry Pi pose app (camera -> pose -> overlay).")
    p.add_argument("--input", default="picamera2",
                   help="picamera2[:N], camera index (0), /dev/videoN, a video file, or 'demo' (default: picamera2)")
    p.add_argument("--device", default=DEFAULT_DEVICE, help=f"device profile (default: {DEFAULT_DEVICE})")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"single-person model card (default: {DEFAULT_MODEL})")
    p.add_argument("--multi", metavar="CARD", help="multi-person card instead: movenet-multipose, "
                   "topdown-mp-lightning, topdown-lightning, ...")
    p.add_argument("--detect-interval-ms", type=int, default=0,
                   help="--multi top-down cards: run the person detector at most this often, follow "
                        "tracked people in between (default 0: every frame)")
    p.add_argument("--threads", type=int, help="inference threads (default: the profile's core count)")
    p.add_argument("--budget-ms", type=float, help="per-frame latency budget (default: the profile's)")
    p.add_argument("--offload-url", help="offload server (KServe V2), e.g. http://host:8000")
    p.add_argument("--offload-token", default=os.environ.get("EDGEPOSE_TOKEN"),
                   help="bearer token for the server (default: $EDGEPOSE_TOKEN)")
    p.add_argument("--teacher", default="movenet-thunder-fp32", help="the server's model name")
    p.add_argument("--width", type=int, default=640, help="camera width (default 640)")
    p.add_argument("--height", type=int, default=480, help="camera height (default 480)")
    p.add_argument("--fps", type=float, help="camera frame rate (default: the driver's)")
    p.add_argument("--realtime", action="store_true", help="files: pace at the file's rate, drop like a camera")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--headless", action="store_true", help="no window (use with --record on a Pi without display)")
    p.add_argument("--record", metavar="MP4", help="write the overlay video here")
    return p.parse_args(argv)


def open_input(args):
    from edgepose.video.sources import CaptureOptions, open_source

    spec = args.input
    if spec == "demo":
        from edgepose.demo import demo_clip_path

        spec = str(demo_clip_path())
    is_file = os.path.isfile(spec)
    opts = CaptureOptions(width=None if is_file else args.width, height=None if is_file else args.height,
                          fps=None if is_file else args.fps, max_frames=args.max_frames,
                          realtime=args.realtime)
    return open_source(spec, options=opts)


def build_pipeline(args, budget_ms: float, threads: int):
    """(pipeline with push / poll / flush / next_due, offload counter, closer).

    Single-person: a :class:`CloudEdgeRuntime` driven without blocking: ``push`` runs the edge
    model on the frame at once and returns the results released so far (an offloaded frame's
    result is held at most its hold, within the budget, for the server's answer), in order, one
    per frame. Multi-person: the estimator's result comes out of ``push`` at once.
    """
    if args.multi:
        if args.offload_url:
            raise SystemExit("--offload-url works with single-person models only; drop --multi or --offload-url")
        from edgepose.multi import MultiPoseEstimator, MultiPoseOptions

        opts = MultiPoseOptions(running_mode="video", detect_interval_ms=args.detect_interval_ms)
        est = MultiPoseEstimator(args.multi, options=opts, num_threads=threads)
        log.info("multi-person card %s (backends: %s)", args.multi,
                 ", ".join(type(b).__name__ for b in est.model.backends()))
        return _Immediate(est.detect_for_video), (lambda: 0), est.close
    from edgepose.estimator import EstimatorOptions, PoseEstimator
    from edgepose.models import load_model
    from edgepose.offload import ClientOptions, OffloadClient
    from edgepose.offload.runtime import CloudEdgeRuntime, RuntimeOptions

    model = load_model(args.model, num_threads=threads)
    log.info("model %s on %s (%d threads)", args.model,
             ", ".join(type(b).__name__ for b in model.backends()), threads)
    est = PoseEstimator(model, options=EstimatorOptions(running_mode="video"))
    client = None
    if args.offload_url:
        client = OffloadClient(args.offload_url, options=ClientOptions(model=args.teacher, token=args.offload_token))
        log.info("offloading hard frames to %s (model %s)", args.offload_url, args.teacher)
    rt = CloudEdgeRuntime(est, client=client, options=RuntimeOptions(budget_ms=budget_ms))

    def closer():
        rt.close()
        model.close()

    submitted = (lambda: client.stats["submitted"]) if client is not None else (lambda: 0)
    return rt, submitted, closer


class _Immediate:
    """The push / poll / flush face of an estimator whose result is ready at once."""

    def __init__(self, detect):
        self.detect = detect

    def push(self, image, timestamp_ms, *, arrival_s=None):
        return [self.detect(image, timestamp_ms)]

    def poll(self, timeout_s=0.0):
        return []

    def flush(self):
        return []

    def next_due(self):
        return None


class Display:
    """A window, a recording, both or neither."""

    def __init__(self, args, fps: float):
        import cv2

        self.cv2, self.window, self.writer, self.path, self.fps = cv2, not args.headless, None, args.record, fps
        if self.window and "GUI:                           NONE" in cv2.getBuildInformation():
            raise SystemExit("this OpenCV has no GUI (opencv-python-headless): run with --headless "
                             "[--record out.mp4], or pip install opencv-python")

    def show(self, rgb, result, text: str) -> bool:
        """Draw and show/record; False when the user closed the window (q or Esc)."""
        from edgepose.video.draw import draw_result

        if not (self.window or self.path):
            return True
        cv2 = self.cv2
        bgr = cv2.cvtColor(draw_result(rgb, result), cv2.COLOR_RGB2BGR)
        for i, pose in enumerate(result.poses):
            if pose.track_id is not None:
                x0, y0 = int(pose.box[0]), int(pose.box[1])
                cv2.putText(bgr, f"id {pose.track_id}", (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                            0.5, (0, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(bgr, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        if self.path:
            if self.writer is None:
                h, w = bgr.shape[:2]
                self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            self.writer.write(bgr)
        if self.window:
            cv2.imshow("edgepose", bgr)
            return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
        if self.window:
            self.cv2.destroyAllWindows()


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # systemd stop -> clean release
    from edgepose.errors import EdgePoseError
    from edgepose.profiles import load_profile
    from edgepose.types import Source
    from edgepose.video.livestats import LiveStats

    try:
        profile = load_profile(args.device)
        budget_ms = args.budget_ms or profile.frame_budget.frame_ms
        threads = args.threads or profile.cpu.cores
        log.info("device profile %s: budget %.1f ms/frame (%.0f fps), %d threads",
                 profile.name, budget_ms, 1000.0 / budget_ms, threads)
        pipeline, submitted, close_pipeline = build_pipeline(args, budget_ms, threads)
    except EdgePoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats = LiveStats(budget_ms=budget_ms)
    display, src = None, None
    try:
        src = open_input(args)
        display = Display(args, src.fps)
        sent, shown = 0, collections.deque()  # (image, arrival, offloaded) of frames not yet shown
        gap = None  # smoothed time between frames (s): how long the loop may wait for a held result

        def deliver(results) -> bool:
            """Show released results (input order, one per pushed frame); False when the window closed."""
            for result in results:
                image, t_arr, offloaded = shown.popleft()
                latency = (time.perf_counter() - t_arr) * 1e3
                stats.add(latency, deadline_met=result.deadline_met, offloaded=offloaded,
                          cloud=result.source == Source.CLOUD, people=len(result.poses))
                if not display.show(image, result, f"{latency:.0f} ms {result.source.value}"):
                    return False
            return True

        last, open_ = None, True
        for frame in src:
            arrival = time.perf_counter() - (time.monotonic() - frame.captured_at if frame.captured_at else 0.0)
            if last is not None:
                gap = arrival - last if gap is None else gap + 0.2 * (arrival - last - gap)
            last = arrival
            out = pipeline.push(frame.image, frame.timestamp_ms, arrival_s=arrival)  # never waits on the network
            now_sent = submitted()
            shown.append((frame.image, arrival, now_sent > sent))
            sent = now_sent
            # a held frame due before the next frame is expected: wait for it, never past that point
            due = pipeline.next_due()
            if due is not None and gap is not None:
                out += pipeline.poll(max(0.0, min(due, arrival + gap) - time.perf_counter()))
            else:
                out += pipeline.poll(0.0)
            if not deliver(out):
                open_ = False
                break
            if stats.due():
                print(stats.line(dropped=src.dropped_frames), flush=True)
        if open_:
            deliver(pipeline.flush())
    except KeyboardInterrupt:
        log.info("interrupted; releasing the camera")
    except EdgePoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if src is not None:
            src.close()
        if display is not None:
            display.close()
        close_pipeline()
    print(stats.summary(dropped=src.dropped_frames if src is not None else 0), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
