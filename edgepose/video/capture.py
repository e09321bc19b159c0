"""Threaded frame capture: a bounded queue that drops the oldest frame instead of lagging.

A camera delivers frames at its own pace. When the model is slower than the camera, reading
frames synchronously makes every result a little later than the last (the driver's buffers fill
up and each frame read is older). :class:`ThreadedCapture` reads in a background thread into a
:class:`DropOldestQueue` of a few frames: the consumer always gets one of the newest frames, the
latency from capture to result stays bounded, and every frame thrown away is counted.

:class:`CaptureClock` turns the capture clock (a driver's buffer timestamp when it gives one,
else the host's monotonic clock at grab time) into the strictly increasing millisecond
timestamps that the estimator, tracker, smoother and latency budget share.

GStreamer pipeline strings for OpenCV (:func:`jetson_csi_pipeline`, :func:`v4l2_pipeline`) end
in an appsink that drops instead of queuing, for the same reason.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from edgepose._optional import require
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)


class QueueClosed(Exception):
    """Raised by :meth:`DropOldestQueue.get` once the queue is closed and empty."""


class DropOldestQueue:
    """A bounded FIFO whose ``put`` never blocks: when full, the oldest item is dropped.

    Args:
        maxsize: items kept at most; 1 keeps latency lowest (the consumer always gets the
            newest item), 2-3 smooth out jitter in consumer time at a frame or two of latency.

    Attributes:
        dropped: items thrown away because the queue was full.
        put_count: items offered with :meth:`put`.
        last_lag: newer items already waiting when the last item was handed out (the
            consumer's lag in items; never more than ``maxsize - 1``).
    """

    def __init__(self, maxsize: int = 1):
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigError(f"DropOldestQueue maxsize must be an int >= 1, got {maxsize!r}")
        self.maxsize = maxsize
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.put_count = 0
        self.last_lag = 0

    def put(self, item) -> bool:
        """Append ``item``; returns True when the oldest item was dropped to make room."""
        with self._cond:
            if self._closed:
                return False
            self.put_count += 1
            dropped = False
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
                dropped = True
            self._items.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None):
        """Remove and return the oldest item, waiting up to ``timeout`` seconds (None: forever).

        Raises:
            TimeoutError: nothing arrived within ``timeout``.
            QueueClosed: the queue is closed and empty.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    raise QueueClosed()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no item within {timeout} s")
                # Wake up now and then so a Ctrl-C in the main thread is not held up.
                self._cond.wait(0.1 if remaining is None else min(remaining, 0.1))
            item = self._items.popleft()
            self.last_lag = len(self._items)
            return item

    def close(self) -> None:
        """No more puts; waiting and later ``get`` calls drain what is left, then raise QueueClosed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class CaptureClock:
    """Millisecond timestamps from the capture clock, relative to the first frame.

    The driver's timestamp (V4L2 buffer time, GStreamer PTS, libcamera SensorTimestamp) is used
    when it is positive and increasing; otherwise the host's monotonic clock at grab time. The
    result is strictly increasing (a repeated value is bumped by 1 ms), as the estimator needs.
    """

    def __init__(self):
        self._t0: float | None = None
        self._use_driver: bool | None = None
        self._last_driver: float | None = None
        self._last_ms: int | None = None

    def stamp(self, host_s: float, driver_ms: float | None = None) -> int:
        """The timestamp of a frame grabbed at ``host_s`` (time.monotonic) with ``driver_ms``."""
        valid = driver_ms is not None and driver_ms > 0 and (
            self._last_driver is None or driver_ms > self._last_driver)
        if self._use_driver is None:
            self._use_driver = bool(valid)
            self._t0 = float(driver_ms) if valid else host_s * 1e3
            log.debug("capture clock: %s", "driver timestamps" if valid else "host monotonic clock")
        if self._use_driver and valid:
            t = float(driver_ms)
            self._last_driver = t
        elif self._use_driver:
            log.debug("capture clock: driver timestamp %r not increasing; host time used", driver_ms)
            t = (self._last_driver or self._t0) + 1.0
            self._last_driver = t
        else:
            t = host_s * 1e3
        ms = int(round(t - self._t0))
        if self._last_ms is not None and ms <= self._last_ms:
            ms = self._last_ms + 1
        self._last_ms = ms
        return ms


@dataclass
class Grab:
    """What a reader returns for one frame.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        host_s: ``time.monotonic()`` when the frame was grabbed.
        driver_ms: the driver's timestamp of the frame in ms, if it gives one.
        timestamp_ms: a timestamp decided by the reader (e.g. a file's index / fps); when set,
            the capture clock is not consulted.
    """

    image: np.ndarray
    host_s: float
    driver_ms: float | None = None
    timestamp_ms: int | None = None


class ThreadedCapture:
    """Reads frames in a background thread into a :class:`DropOldestQueue`.

    Args:
        read: called repeatedly in the capture thread; returns a :class:`Grab`, or None at the
            end of the stream. Exceptions end the stream and are re-raised to the consumer.
        release: called once from :meth:`close` after the thread stopped (releases the device).
        queue_size: frames waiting at most (see :class:`DropOldestQueue`).
        max_frames: stop after this many frames were captured (None: until closed).
        frame_factory: (image, timestamp_ms, index, host_s) -> the object put on the queue.
        name: the thread's name (shows in debuggers and logs).
    """

    def __init__(self, read: Callable[[], Grab | None], release: Callable[[], None], *,
                 queue_size: int = 1, max_frames: int | None = None,
                 frame_factory: Callable[..., object] | None = None, name: str = "edgepose-capture"):
        self._read = read
        self._release = release
        self.queue = DropOldestQueue(queue_size)
        self.max_frames = max_frames
        self._factory = frame_factory or (lambda img, ts, idx, host: (img, ts, idx, host))
        self._clock = CaptureClock()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._released = False
        self._lock = threading.Lock()
        self.captured = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Frames captured but thrown away because the consumer was slower than the source."""
        return self.queue.dropped

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and self.captured >= self.max_frames:
                    break
                grab = self._read()
                if grab is None:
                    break
                ts = (grab.timestamp_ms if grab.timestamp_ms is not None
                      else self._clock.stamp(grab.host_s, grab.driver_ms))
                self.queue.put(self._factory(grab.image, ts, self.captured, grab.host_s))
                self.captured += 1
        except BaseException as exc:  # handed to the consumer, never lost in the thread
            self._error = exc
            log.debug("capture thread failed: %r", exc)
        finally:
            self.queue.close()

    def __iter__(self) -> Iterator[object]:
        while True:
            try:
                item = self.queue.get()
            except QueueClosed:
                break
            yield item
        if self._error is not None and not self._stop.is_set():
            raise self._error

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread (waiting up to ``timeout`` s for a blocked read) and release. Idempotent."""
        self._stop.set()
        self.queue.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("capture thread still blocked in read after %.1f s; releasing anyway",
                            timeout)
        with self._lock:
            if not self._released:
                self._released = True
                self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def has_gstreamer() -> bool:
    """Whether this OpenCV build can open GStreamer pipelines (``GStreamer: YES``)."""
    cv2 = require("cv2", "base", package="opencv-python-headless")
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def jetson_csi_pipeline(sensor_id: int = 0, *, width: int = 1280, height: int = 720,
                        fps: int = 30, flip: int = 0) -> str:
    """A GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc), ending in a BGR appsink.

    ``drop=1 max-buffers=1`` keeps GStreamer from queuing frames behind OpenCV's back.
    """
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM),width={width},"
            f"height={height},framerate={fps}/1,format=NV12 ! nvvidconv flip-method={flip} ! "
            "video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink drop=1 max-buffers=1 sync=false")


def v4l2_pipeline(device: str = "/dev/video0", *, width: int = 1280, height: int = 720,
                  fps: int = 30) -> str:
    """A GStreamer pipeline for a USB (V4L2) camera delivering MJPG, ending in a BGR appsink."""
    return (f"v4l2src device={device} ! image/jpeg,width={width},height={height},"
            f"framerate={fps}/1 ! jpegdec ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink drop=1 max-buffers=1 sync=false")


__all__ = ["DropOldestQueue", "QueueClosed", "CaptureClock", "Grab", "ThreadedCapture", "has_gstreamer",
           "jetson_csi_pipeline", "v4l2_pipeline"]
