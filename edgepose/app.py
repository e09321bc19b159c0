"""The frame loop of a camera pose app, shared by ``examples/raspberry_pi.py`` and ``examples/jetson.py``.

An app parses its arguments (:func:`app_arguments` adds the common ones), says how to build its
pipeline from the device profile (:class:`Pipeline`: :func:`single_person` or
:func:`multi_person` around a loaded model) and hands both to :func:`run_app`, which opens the
input, runs the loop, draws / records the overlay and prints one stats line per second.

The loop never waits on the network: each frame goes in with ``push`` (the edge model runs at
once; an offloaded frame's result is held at most until its budget runs out, for the server's
answer) and the results come out of ``push`` / ``poll`` in input order, one per frame; the loop
waits for a held result only until the next frame is expected.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("edgepose.app")


def app_arguments(description: str, *, default_input: str, input_help: str, default_device: str,
                  default_model: str, multi_help: str, width: int = 640, height: int = 480,
                  headless_help: str = "no window") -> argparse.ArgumentParser:
    """An argument parser with the options every pose app has; add the device's own to it."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--input", default=default_input, help=f"{input_help} (default: {default_input})")
    p.add_argument("--device", default=default_device, help=f"device profile (default: {default_device})")
    p.add_argument("--model", default=default_model, help=f"single-person model card (default: {default_model})")
    p.add_argument("--multi", metavar="CARD", help=f"multi-person card instead: {multi_help}")
    p.add_argument("--detect-interval-ms", type=int, default=0,
                   help="--multi top-down cards: run the person detector at most this often, follow "
                        "tracked people in between (default 0: every frame)")
    p.add_argument("--threads", type=int, help="inference threads (default: the profile's core count)")
    p.add_argument("--budget-ms", type=float, help="per-frame latency budget (default: the profile's)")
    p.add_argument("--offload-url", help="offload server (KServe V2), e.g. http://host:8000")
    p.add_argument("--offload-token", default=os.environ.get("EDGEPOSE_TOKEN"),
                   help="bearer token for the server (default: $EDGEPOSE_TOKEN)")
    p.add_argument("--teacher", default="movenet-thunder-fp32", help="the server's model name")
    p.add_argument("--collect-interval-ms", type=float, default=0.0, metavar="MS",
                   help="with --offload-url: also send at most one keyframe crop per MS of video time that was not "
                        "offloaded, only to be answered, so a server run with `edgepose serve --collect DIR` "
                        "keeps enough of the scene for `edgepose adapt --from-collection DIR` (offloads alone "
                        "are a few %% of the frames); the answers are never used, nothing waits on them "
                        "(default 0: off; e.g. 500)")
    p.add_argument("--width", type=int, default=width, help=f"camera width (default {width})")
    p.add_argument("--height", type=int, default=height, help=f"camera height (default {height})")
    p.add_argument("--fps", type=float, help="camera frame rate (default: the driver's)")
    p.add_argument("--realtime", action="store_true", help="files: pace at the file's rate, drop like a camera")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--headless", action="store_true", help=headless_help)
    p.add_argument("--record", metavar="MP4", help="write the overlay video here")
    return p


def open_input(args):
    """The frame source of ``--input`` (a camera, a file, or ``demo``: the clip shipped in the package)."""
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


@dataclass
class Pipeline:
    """What the loop drives: ``stream`` (``push`` / ``poll`` / ``flush`` / ``next_due``), the number
    of requests sent to the server so far, and how to release everything."""

    stream: object
    submitted: Callable[[], int]
    close: Callable[[], None]


class Immediate:
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


def multi_person(args, card, close: Callable[[], None] | None = None) -> Pipeline:
    """Several people, tracked ids: a video-mode :class:`~edgepose.multi.MultiPoseEstimator` on
    ``card`` (a name or a loaded card); ``close`` runs after the estimator closes."""
    if args.offload_url:
        raise SystemExit("--offload-url works with single-person models only; drop --multi or --offload-url")
    from edgepose.multi import MultiPoseEstimator, MultiPoseOptions

    est = MultiPoseEstimator(card, options=MultiPoseOptions(running_mode="video",
                                                            detect_interval_ms=args.detect_interval_ms),
                             num_threads=args.threads)
    log.info("multi-person card %s (backends: %s)", getattr(est.model, "name", card),
             ", ".join(type(b).__name__ for b in est.model.backends()))

    def closer():
        est.close()
        if close is not None:
            close()

    return Pipeline(Immediate(est.detect_for_video), lambda: 0, closer)


def single_person(args, model, budget_ms: float) -> Pipeline:
    """One person: a :class:`~edgepose.offload.runtime.CloudEdgeRuntime` on the loaded ``model``,
    offloading hard frames to ``--offload-url`` when given (the pipeline closes the model)."""
    from edgepose.estimator import EstimatorOptions, PoseEstimator
    from edgepose.offload import ClientOptions, OffloadClient
    from edgepose.offload.runtime import CloudEdgeRuntime, RuntimeOptions

    collect_ms = getattr(args, "collect_interval_ms", 0.0) or 0.0
    if collect_ms and not args.offload_url:
        raise SystemExit("--collect-interval-ms sends collection samples to the offload server: give --offload-url too")
    opts = RuntimeOptions(budget_ms=budget_ms, collect_interval_ms=collect_ms)  # checks the values first
    est = PoseEstimator(model, options=EstimatorOptions(running_mode="video"))
    client = None
    if args.offload_url:
        client = OffloadClient(args.offload_url, options=ClientOptions(model=args.teacher, token=args.offload_token))
        log.info("offloading hard frames to %s (model %s)", args.offload_url, args.teacher)
        if collect_ms:
            log.info("collection samples: at most one crop per %g ms of video time (for serve --collect)", collect_ms)
    rt = CloudEdgeRuntime(est, client=client, options=opts)

    def closer():
        rt.close()
        model.close()

    return Pipeline(rt, (lambda: client.stats["submitted"]) if client is not None else (lambda: 0), closer)


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
        for pose in result.poses:
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


def _loop(pipeline: Pipeline, src, display: Display, stats) -> None:
    from edgepose.types import Source

    sent, swaps, sampled = 0, 0, 0
    shown = collections.deque()  # (image, arrival, offloaded, swapped, samples) of frames not yet shown
    gap = None  # smoothed time between frames (s): how long the loop may wait for a held result
    stream = pipeline.stream

    def deliver(results) -> bool:
        """Show released results (input order, one per pushed frame); False when the window closed."""
        for result in results:
            image, t_arr, offloaded, swapped, samples = shown.popleft()
            latency = (time.perf_counter() - t_arr) * 1e3
            stats.add(latency, deadline_met=result.deadline_met, offloaded=offloaded,
                      cloud=result.source == Source.CLOUD, people=len(result.poses), swapped=swapped,
                      samples=samples)
            if not display.show(image, result, f"{latency:.0f} ms {result.source.value}"):
                return False
        return True

    last = None
    for frame in src:
        arrival = time.perf_counter() - (time.monotonic() - frame.captured_at if frame.captured_at else 0.0)
        if last is not None:
            gap = arrival - last if gap is None else gap + 0.2 * (arrival - last - gap)
        last = arrival
        out = stream.push(frame.image, frame.timestamp_ms, arrival_s=arrival)  # never waits on the network
        now_sent, now_swaps = pipeline.submitted(), len(getattr(stream, "swaps", ()))
        now_sampled = getattr(stream, "collection_samples", {}).get("sent", 0)
        shown.append((frame.image, arrival, now_sent > sent, now_swaps > swaps, now_sampled - sampled))
        sent, swaps, sampled = now_sent, now_swaps, now_sampled
        # a held frame due before the next frame is expected: wait for it, never past that point
        due = stream.next_due()
        if due is not None and gap is not None:
            out += stream.poll(max(0.0, min(due, arrival + gap) - time.perf_counter()))
        else:
            out += stream.poll(0.0)
        if not deliver(out):
            return
        if stats.due():
            print(stats.line(dropped=src.dropped_frames), flush=True)
    deliver(stream.flush())


def run_app(args, build: Callable[..., Pipeline]) -> int:
    """Run a pose app: ``build(args, profile, budget_ms, threads)`` makes its :class:`Pipeline`.

    Returns the process exit code (2 on an :class:`~edgepose.errors.EdgePoseError`, printed as one
    line). SIGTERM (systemd stop) releases the camera like Ctrl-C.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    from edgepose.errors import EdgePoseError
    from edgepose.profiles import load_profile
    from edgepose.video.livestats import LiveStats

    try:
        profile = load_profile(args.device)
        budget_ms = args.budget_ms or profile.frame_budget.frame_ms
        args.threads = args.threads or profile.cpu.cores
        log.info("device profile %s: budget %.1f ms/frame (%.0f fps), %d threads",
                 profile.name, budget_ms, 1000.0 / budget_ms, args.threads)
        pipeline = build(args, profile, budget_ms, args.threads)
    except EdgePoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rt = pipeline.stream
    collect = getattr(rt, "client", None) is not None and getattr(getattr(rt, "options", None),
                                                                  "collect_interval_ms", 0) > 0
    stats = LiveStats(budget_ms=budget_ms, collect=collect)
    display, src = None, None
    try:
        src = open_input(args)
        display = Display(args, src.fps)
        _loop(pipeline, src, display, stats)
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
        pipeline.close()
    print(stats.summary(dropped=src.dropped_frames if src is not None else 0), flush=True)
    return 0


__all__ = ["app_arguments", "open_input", "Pipeline", "Immediate", "multi_person", "single_person", "Display",
           "run_app"]
