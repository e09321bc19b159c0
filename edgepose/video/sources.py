"""Frame sources: video files and cameras, yielding RGB frames with millisecond timestamps.

* :class:`VideoFileSource`: a video file, every frame in order (timestamps index / fps), or
  paced at the file's frame rate with frame dropping (``realtime=True``) to stand in for a camera.
* :class:`CameraSource`: an OpenCV camera: V4L2 by index (``0``) or path (``/dev/video0``), or a
  GStreamer pipeline string (``nvarguscamerasrc ... ! appsink``) when OpenCV has GStreamer.
* :class:`Picamera2Source`: a Raspberry Pi camera through picamera2 (libcamera), when installed.

Cameras are read in a background thread into a bounded queue that drops the oldest frame
instead of lagging (:mod:`edgepose.video.capture`); ``dropped_frames`` counts what was thrown
away. Timestamps come from the capture clock. Every source releases its device on ``close()``,
on leaving a ``with`` block (Ctrl-C included) and at interpreter exit.

Example:
    >>> with open_source(0, options=CaptureOptions(width=640, height=480)) as src:  # doctest: +SKIP
    ...     for frame in src:
    ...         result = estimator.detect_for_video(frame.image, frame.timestamp_ms)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
import weakref
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from edgepose._optional import require
from edgepose.errors import ConfigError, MissingDependencyError, SourceError
from edgepose.video.capture import CaptureClock, Grab, ThreadedCapture
from edgepose.video.capture import has_gstreamer, jetson_csi_pipeline, v4l2_pipeline  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One frame.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        timestamp_ms: capture time in ms from the first frame (strictly increasing).
        index: 0-based index among the frames captured (dropped frames keep their index, so a
            gap in indices shows a drop).
        captured_at: ``time.monotonic()`` at capture (None for files read frame by frame);
            ``time.monotonic() - captured_at`` is the frame's age.
    """

    image: np.ndarray
    timestamp_ms: int
    index: int
    captured_at: float | None = None


@dataclass
class CaptureOptions:
    """How a source captures frames.

    Attributes:
        width: requested frame width in px; None keeps the driver's default. The driver may
            pick the nearest size it supports.
        height: requested frame height in px; None keeps the driver's default.
        fps: requested frame rate; None keeps the driver's default.
        queue_size: frames waiting at most in the capture queue; 1 keeps latency lowest (the
            model always gets the newest frame), 2 absorbs jitter at one frame of latency.
        threaded: read cameras in a background thread (drop-oldest queue). False reads in the
            consuming loop: no frame dropped, but results lag when the model is slow.
        max_frames: stop after this many frames (None: until the end or ``close()``).
        fourcc: camera pixel format, e.g. ``"MJPG"``: USB cameras often reach 30 fps at 720p
            only in MJPG. None keeps the driver's default.
        realtime: files only: release frames at the file's frame rate through the drop-oldest
            queue, as a camera would (a stand-in for a camera). False: every frame, in order.
    """

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    queue_size: int = 1
    threaded: bool = True
    max_frames: int | None = None
    fourcc: str | None = None
    realtime: bool = False

    def __post_init__(self):
        for f in ("width", "height", "max_frames"):
            v = getattr(self, f)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"CaptureOptions.{f} must be a positive int or None, got {v!r}")
        if self.fps is not None and not self.fps > 0:
            raise ConfigError(f"CaptureOptions.fps must be > 0 or None, got {self.fps!r}")
        if not isinstance(self.queue_size, int) or self.queue_size < 1:
            raise ConfigError(f"CaptureOptions.queue_size must be an int >= 1, got {self.queue_size!r}")
        if self.fourcc is not None and len(self.fourcc) != 4:
            raise ConfigError(f"CaptureOptions.fourcc must be 4 characters (e.g. 'MJPG'), got {self.fourcc!r}")


def _options(options: CaptureOptions | None, **overrides) -> CaptureOptions:
    opts = options or CaptureOptions()
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(opts, **given) if given else opts


class _Source:
    """Shared plumbing: iteration through an optional ThreadedCapture, drop counts, release."""

    fps: float = 30.0
    frame_count: int | None = None
    _capture: ThreadedCapture | None = None

    def _start_thread(self, read, release, options: CaptureOptions, name: str) -> None:
        self._capture = ThreadedCapture(
            read, release, queue_size=options.queue_size, max_frames=options.max_frames,
            frame_factory=lambda img, ts, idx, host: Frame(img, ts, idx, host), name=name)
        self._finalizer = weakref.finalize(self, self._capture.close)

    @property
    def dropped_frames(self) -> int:
        """Frames captured but dropped because the consumer was slower than the source."""
        return self._capture.dropped if self._capture is not None else 0

    @property
    def captured_frames(self) -> int:
        """Frames captured so far (delivered + dropped)."""
        return self._capture.captured if self._capture is not None else self._delivered

    _delivered = 0

    def close(self) -> None:
        """Stop capturing and release the device or file. Idempotent."""
        if self._capture is not None:
            self._finalizer()
        self._release()

    _cap = None  # the cv2.VideoCapture of a file or camera source

    def _release_cap(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _release(self) -> None:
        self._release_cap()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VideoFileSource(_Source):
    """Reads a video file; timestamps are index / fps (container timestamps are unreliable).

    Args:
        path: the video file.
        max_frames: stop after this many frames (None: all).
        start: first frame index to read.
        options: :class:`CaptureOptions`; ``realtime=True`` paces frames at the file's rate and
            drops the oldest when the consumer is slower, as a camera would.
    """

    def __init__(self, path: str | os.PathLike, *, max_frames: int | None = None, start: int = 0,
                 options: CaptureOptions | None = None):
        cv2 = require("cv2", "base", package="opencv-python-headless")
        self.options = _options(options, max_frames=max_frames)
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise SourceError(f"video file not found: {self.path!r}; check the path")
        self._cap = cv2.VideoCapture(self.path)
        if not self._cap.isOpened():
            raise SourceError(f"OpenCV cannot open {self.path!r} as a video (unsupported codec or not a video)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.max_frames = self.options.max_frames
        self.start = start
        if start:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        self._cv2 = cv2
        if self.options.realtime:
            self._next = start
            self._t0: float | None = None
            self._start_thread(self._paced_read, self._release_cap, self.options, "edgepose-file")

    def __len__(self) -> int:
        n = max(0, (self.frame_count or 0) - self.start)
        return min(n, self.max_frames) if self.max_frames is not None else n

    def _read_rgb(self) -> np.ndarray | None:
        ok, bgr = self._cap.read()
        return self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB) if ok else None

    def _paced_read(self) -> Grab | None:
        idx = self._next
        if self._t0 is None:
            self._t0 = time.monotonic()
        due = self._t0 + (idx - self.start) / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        img = self._read_rgb()
        if img is None:
            return None
        self._next += 1
        return Grab(img, time.monotonic(), timestamp_ms=int(round(idx * 1000.0 / self.fps)))

    def __iter__(self) -> Iterator[Frame]:
        if self._capture is not None:
            for fr in self._capture:
                fr.index += self.start
                yield fr
            return
        i = 0
        while self.max_frames is None or i < self.max_frames:
            img = self._read_rgb()
            if img is None:
                break
            idx = self.start + i
            self._delivered = i + 1
            yield Frame(img, int(round(idx * 1000.0 / self.fps)), idx)
            i += 1


class CameraSource(_Source):
    """Reads an OpenCV camera: index, device path, or a GStreamer pipeline string.

    Args:
        device: camera index (0), device path (/dev/video0) or a GStreamer pipeline ending in
            ``appsink`` (see :func:`jetson_csi_pipeline`).
        width, height, fps, max_frames: shortcuts for the same :class:`CaptureOptions` fields.
        options: :class:`CaptureOptions`.
    """

    def __init__(self, device: int | str = 0, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, max_frames: int | None = None,
                 options: CaptureOptions | None = None):
        cv2 = require("cv2", "base", package="opencv-python-headless")
        self._cv2 = cv2
        self.options = opts = _options(options, width=width, height=height, fps=fps,
                                        max_frames=max_frames)
        self.device = device
        self.is_gstreamer = isinstance(device, str) and "!" in device
        if self.is_gstreamer:
            if not has_gstreamer():
                raise SourceError(
                    "this OpenCV build has no GStreamer support, so the pipeline "
                    f"{device!r} cannot be opened. On a Jetson use the JetPack OpenCV "
                    "(apt install python3-opencv; pip uninstall opencv-python-headless) or pass a "
                    "V4L2 camera index / path instead")
            api = cv2.CAP_GSTREAMER
        else:
            api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        self._cap = cv2.VideoCapture(device, api)
        if not self._cap.isOpened():
            raise SourceError(
                f"cannot open camera {device!r}: no such device, busy, or no permission. "
                "List cameras with 'v4l2-ctl --list-devices'; pass an index (0) or a path "
                "(/dev/video0); on a Raspberry Pi CSI camera use 'picamera2'")
        if not self.is_gstreamer:
            if opts.fourcc:
                self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*opts.fourcc))
            for prop, v in ((cv2.CAP_PROP_FRAME_WIDTH, opts.width), (cv2.CAP_PROP_FRAME_HEIGHT, opts.height),
                            (cv2.CAP_PROP_FPS, opts.fps)):
                if v:
                    self._cap.set(prop, v)
            self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewer stale frames queued in the driver
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 30.0)
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.max_frames = opts.max_frames
        log.info("camera %r open: %dx%d at %.1f fps (%s)", device, self.width, self.height, self.fps,
                 "GStreamer" if self.is_gstreamer else "V4L2" if api == cv2.CAP_V4L2 else "OpenCV")
        if opts.threaded:
            self._start_thread(self._grab, self._release_cap, opts, "edgepose-camera")
        else:
            self._clock = CaptureClock()

    def __len__(self) -> int:
        return self.max_frames or 0

    def _grab(self) -> Grab | None:
        cap = self._cap
        if cap is None:
            return None
        ok, bgr = cap.read()
        host = time.monotonic()
        if not ok:
            log.warning("camera %r returned no frame; stopping", self.device)
            return None
        driver = cap.get(self._cv2.CAP_PROP_POS_MSEC)
        return Grab(self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB), host, driver)

    def __iter__(self) -> Iterator[Frame]:
        if self._capture is not None:
            yield from self._capture
            return
        i = 0
        while self.max_frames is None or i < self.max_frames:
            g = self._grab()
            if g is None:
                break
            self._delivered = i + 1
            yield Frame(g.image, self._clock.stamp(g.host_s, g.driver_ms), i, g.host_s)
            i += 1


def _import_picamera2():
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise MissingDependencyError(
            f"picamera2 is not importable ({exc}). On Raspberry Pi OS install it with "
            "'sudo apt install python3-picamera2' and create your virtual environment with "
            "'python3 -m venv --system-site-packages' so it is visible; or use a USB camera "
            "(--input 0)") from exc
    return Picamera2


class Picamera2Source(_Source):
    """Reads a Raspberry Pi camera through picamera2 (libcamera); timestamps from SensorTimestamp.

    Args:
        camera_num: which camera (0 = the first CSI camera).
        options: :class:`CaptureOptions` (default 640x480, the driver's frame rate).
    """

    def __init__(self, camera_num: int = 0, *, options: CaptureOptions | None = None):
        Picamera2 = _import_picamera2()
        self.options = opts = options or CaptureOptions()
        size = (opts.width or 640, opts.height or 480)
        try:
            self._cam = Picamera2(camera_num)
            controls = {"FrameRate": float(opts.fps)} if opts.fps else {}
            # picamera2's "BGR888" is laid out R, G, B in memory: the RGB array we want.
            cfg = self._cam.create_video_configuration(main={"size": size, "format": "BGR888"},
                                                       controls=controls)
            self._cam.configure(cfg)
            self._cam.start()
        except Exception as exc:
            raise SourceError(
                f"picamera2 cannot open camera {camera_num} ({type(exc).__name__}: {exc}); check "
                "the ribbon cable and 'rpicam-hello --list-cameras'") from exc
        self.width, self.height = size
        self.fps = float(opts.fps or 30.0)
        self.max_frames = opts.max_frames
        log.info("picamera2 camera %d open: %dx%d", camera_num, *size)
        self._start_thread(self._grab, self._stop_cam, dataclasses.replace(opts, threaded=True),
                           "edgepose-picamera2")

    def __len__(self) -> int:
        return self.max_frames or 0

    def _grab(self) -> Grab | None:
        cam = self._cam
        if cam is None:
            return None
        request = cam.capture_request()
        try:
            img = np.ascontiguousarray(request.make_array("main")[:, :, :3])
            sensor_ns = request.get_metadata().get("SensorTimestamp")
        finally:
            request.release()
        return Grab(img, time.monotonic(), sensor_ns / 1e6 if sensor_ns else None)

    def __iter__(self) -> Iterator[Frame]:
        yield from self._capture

    def _stop_cam(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
            finally:
                self._cam.close()
                self._cam = None


#: Source specs other than files, for error messages.
SOURCE_FORMS = ("a camera index (0)", "a device path (/dev/video0)", "'picamera2' or 'picamera2:N'",
                "'nvargus:N' (Jetson CSI camera via GStreamer)", "a GStreamer pipeline ending in appsink",
                "a video file path")


def open_source(spec: str | int, *, max_frames: int | None = None,
                options: CaptureOptions | None = None) -> VideoFileSource | CameraSource | Picamera2Source:
    """Open a frame source from a spec string (what ``--input`` takes).

    Args:
        spec: ``0`` / ``"0"`` (camera index), ``"/dev/video0"``, ``"picamera2"`` /
            ``"picamera2:1"`` (Raspberry Pi camera), ``"nvargus:0"`` (Jetson CSI camera),
            a GStreamer pipeline (contains ``!``), or a video file path.
        max_frames: shortcut for ``options.max_frames``.
        options: :class:`CaptureOptions`.
    """
    opts = _options(options, max_frames=max_frames)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return CameraSource(int(spec), options=opts)
    if not isinstance(spec, (str, os.PathLike)):
        raise SourceError(f"source {spec!r} is not a string or int; pass one of: {', '.join(SOURCE_FORMS)}")
    spec = os.fspath(spec)
    if spec.startswith("/dev/video") or "!" in spec:
        return CameraSource(spec, options=opts)
    head, _, num = spec.partition(":")
    if head in ("picamera2", "nvargus") and (not num or num.isdigit()):
        n = int(num or 0)
        if head == "picamera2":
            return Picamera2Source(n, options=opts)
        pipe = jetson_csi_pipeline(n, width=opts.width or 1280, height=opts.height or 720,
                                   fps=int(opts.fps or 30))
        return CameraSource(pipe, options=dataclasses.replace(opts, width=None, height=None, fps=None))
    if not os.path.exists(spec):
        raise SourceError(f"source {spec!r} is not a file that exists nor a camera spec; pass one of: "
                          f"{', '.join(SOURCE_FORMS)}")
    return VideoFileSource(spec, options=opts)


def video_size(video) -> tuple[int, int]:
    """(width, height) of the frames :class:`VideoFileSource` yields for ``video``."""
    with VideoFileSource(video, max_frames=1) as src:
        for fr in src:
            return fr.image.shape[1], fr.image.shape[0]
    raise SourceError(f"no frame in {video}")


__all__ = ["Frame", "CaptureOptions", "VideoFileSource", "CameraSource", "Picamera2Source",
           "open_source", "video_size", "has_gstreamer", "jetson_csi_pipeline", "v4l2_pipeline", "SOURCE_FORMS"]
