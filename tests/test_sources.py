"""Frame sources: the drop-oldest capture queue, capture clock, files, cameras (faked), release."""

import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from edgepose.errors import MissingDependencyError, SourceError
from edgepose.video import sources
from edgepose.video.capture import CaptureClock, DropOldestQueue, Grab, QueueClosed, ThreadedCapture
from edgepose.video.sources import CaptureOptions, CameraSource, VideoFileSource, open_source

IMG = np.zeros((4, 4, 3), np.uint8)


@pytest.mark.core
def test_a_full_queue_drops_the_oldest_item_and_counts_it():
    q = DropOldestQueue(2)
    assert [q.put(i) for i in range(5)] == [False, False, True, True, True]
    assert (q.dropped, q.put_count, len(q)) == (3, 5, 2)
    assert [q.get(), q.get()] == [3, 4]


@pytest.mark.core
def test_a_closed_queue_drains_then_says_closed():
    q = DropOldestQueue(3)
    q.put("a")
    q.close()
    assert q.put("b") is False
    assert q.get() == "a"
    with pytest.raises(QueueClosed):
        q.get()


@pytest.mark.core
def test_get_times_out_on_an_empty_queue():
    with pytest.raises(TimeoutError):
        DropOldestQueue(1).get(timeout=0.01)


@pytest.mark.core
def test_queue_size_must_be_a_positive_int():
    with pytest.raises(ValueError, match=re.escape("DropOldestQueue maxsize must be an int >= 1, got 0")):
        DropOldestQueue(0)


class _FastProducer:
    """A synthetic camera: a new frame every ``period_s``; remembers the newest index made."""

    def __init__(self, period_s: float, n: int):
        self.period_s, self.n, self.made, self.released = period_s, n, -1, False

    def read(self):
        if self.made + 1 >= self.n:
            return None
        time.sleep(self.period_s)
        self.made += 1
        img = np.full((4, 4, 3), self.made % 256, np.uint8)
        return Grab(img, time.monotonic(), driver_ms=1000.0 + 2.0 * self.made)

    def release(self):
        self.released = True


@pytest.mark.core
@pytest.mark.parametrize("queue_size", [1, 2])
def test_producer_faster_than_consumer_lag_stays_bounded_and_drops_are_counted(queue_size):
    prod = _FastProducer(period_s=0.001, n=400)
    cap = ThreadedCapture(prod.read, prod.release, queue_size=queue_size,
                          frame_factory=lambda img, ts, idx, host: (idx, ts, host))
    lags, delivered = [], 0
    with cap:
        for idx, ts, host in cap:
            lags.append(prod.made - idx)  # frames made after this one when it is handed out
            delivered += 1
            time.sleep(0.01)  # the slow model: ~10x slower than the producer
    assert prod.released
    assert cap.captured == 400
    assert delivered + cap.dropped == cap.captured  # every frame is delivered or counted as dropped
    assert cap.dropped > 200
    # Lag in frames at hand-out does not grow with time: the queue plus a frame or two made
    # while the consumer thread wakes up (scheduling slack on a loaded machine).
    assert max(lags) <= queue_size + 4, lags
    assert np.median(lags[-10:]) <= np.median(lags[:10]) + 2


@pytest.mark.core
@pytest.mark.parametrize("maxsize", [1, 3])
def test_drop_oldest_queue_hands_out_one_of_the_newest_items_whatever_the_producer_rate(maxsize):
    q = DropOldestQueue(maxsize)

    def produce():
        for i in range(300):
            q.put(i)
            time.sleep(0.0005)
        q.close()

    t = threading.Thread(target=produce)
    t.start()
    got, lags = [], []
    while True:
        try:
            got.append(q.get())
        except QueueClosed:
            break
        lags.append(q.last_lag)
        time.sleep(0.005)
    t.join()
    assert len(got) + q.dropped == 300 and q.dropped > 0
    assert got == sorted(got)
    # Lag at hand-out (newer items already waiting, counted under the lock) never exceeds the
    # queue's size, however far ahead the producer runs: latency stays bounded.
    assert max(lags) <= maxsize - 1, lags


@pytest.mark.core
def test_a_failing_reader_ends_the_stream_and_reraises_to_the_consumer():
    calls = {"n": 0}

    def read():
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError("camera unplugged")
        return Grab(IMG, time.monotonic())

    cap = ThreadedCapture(read, lambda: None, queue_size=10)
    got = []
    with pytest.raises(OSError, match="camera unplugged"):
        for item in cap:
            got.append(item)
    assert len(got) == 3
    cap.close()


@pytest.mark.core
def test_capture_clock_uses_driver_timestamps_when_they_increase():
    c = CaptureClock()
    assert [c.stamp(50.0, d) for d in (1000.0, 1033.4, 1066.7)] == [0, 33, 67]


@pytest.mark.core
def test_capture_clock_falls_back_to_the_host_clock_without_driver_timestamps():
    c = CaptureClock()
    assert [c.stamp(h, 0.0) for h in (10.0, 10.02, 10.05)] == [0, 20, 50]


@pytest.mark.core
def test_capture_clock_is_strictly_increasing_when_the_driver_repeats_itself():
    c = CaptureClock()
    out = [c.stamp(1.0, d) for d in (500.0, 500.0, 500.4, 501.0)]
    assert all(b > a for a, b in zip(out, out[1:])), out


@pytest.mark.core
@pytest.mark.parametrize("kw,msg", [
    ({"queue_size": 0}, "CaptureOptions.queue_size must be an int >= 1, got 0"),
    ({"width": -1}, "CaptureOptions.width must be a positive int or None, got -1"),
    ({"fourcc": "MJPEG"}, "CaptureOptions.fourcc must be 4 characters (e.g. 'MJPG'), got 'MJPEG'"),
])
def test_capture_options_name_the_bad_field(kw, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        CaptureOptions(**kw)


@pytest.mark.backend
def test_file_read_frame_by_frame_has_index_over_fps_timestamps(assets):
    with VideoFileSource(assets / "data/tfjs_testdata/pose_1.mp4", max_frames=4) as src:
        frames = list(src)
    assert [(f.index, f.timestamp_ms) for f in frames] == [(0, 0), (1, 33), (2, 67), (3, 100)]
    assert frames[0].image.shape == (576, 576, 3) and src.dropped_frames == 0


@pytest.mark.backend
def test_realtime_file_paces_like_a_camera_and_drops_for_a_slow_consumer(assets):
    opts = CaptureOptions(realtime=True, max_frames=24)
    with VideoFileSource(assets / "data/tfjs_testdata/pose_1.mp4", options=opts) as src:
        frames = []
        for f in src:
            frames.append(f)
            time.sleep(0.08)  # ~2.4 frame periods at 30 fps
    idx = [f.index for f in frames]
    assert idx == sorted(idx) and idx[-1] == 23
    assert len(frames) + src.dropped_frames == 24 and src.dropped_frames > 0
    assert all(f.timestamp_ms == round(f.index * 1000 / 30) for f in frames)
    assert all(f.captured_at is not None for f in frames)


class _FakeVideoCapture:
    """Stands in for cv2.VideoCapture on a V4L2 camera: 100 BGR frames with driver timestamps."""

    instances: list = []

    def __init__(self, device, api):
        self.device, self.api, self.props, self.n, self.released = device, api, {}, 0, False
        _FakeVideoCapture.instances.append(self)

    def isOpened(self):
        return True

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def get(self, prop):
        import cv2

        if prop == cv2.CAP_PROP_POS_MSEC:
            return 5000.0 + 33.3 * (self.n - 1)
        return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_WIDTH: 8, cv2.CAP_PROP_FRAME_HEIGHT: 6}.get(prop, 0.0)

    def read(self):
        if self.n >= 100:
            return False, None
        self.n += 1
        bgr = np.zeros((6, 8, 3), np.uint8)
        bgr[..., 0] = 255  # blue in BGR
        time.sleep(0.001)
        return True, bgr

    def release(self):
        self.released = True


@pytest.mark.backend
def test_camera_source_converts_to_rgb_stamps_with_the_driver_clock_and_releases(monkeypatch):
    import cv2

    monkeypatch.setattr(cv2, "VideoCapture", _FakeVideoCapture)
    with CameraSource(0, width=640, height=480, fps=30, max_frames=5,
                      options=CaptureOptions(queue_size=8)) as cam:
        frames = list(cam)
    fake = _FakeVideoCapture.instances[-1]
    assert fake.api == cv2.CAP_V4L2 and fake.props[cv2.CAP_PROP_FRAME_WIDTH] == 640
    assert fake.props[cv2.CAP_PROP_BUFFERSIZE] == 1
    assert [f.timestamp_ms for f in frames] == [0, 33, 67, 100, 133]
    assert frames[0].image[0, 0].tolist() == [0, 0, 255]  # RGB
    assert fake.released


@pytest.mark.backend
def test_gstreamer_pipeline_without_gstreamer_says_how_to_fix(monkeypatch):
    monkeypatch.setattr(sources, "has_gstreamer", lambda: False)
    with pytest.raises(SourceError, match=re.escape("this OpenCV build has no GStreamer support")):
        open_source("nvargus:0")


@pytest.mark.core
def test_jetson_csi_pipeline_ends_in_a_non_queuing_bgr_appsink():
    pipe = sources.jetson_csi_pipeline(1, width=640, height=480, fps=15)
    assert pipe.startswith("nvarguscamerasrc sensor-id=1 ! ")
    assert "width=640,height=480,framerate=15/1" in pipe
    assert pipe.endswith("video/x-raw,format=BGR ! appsink drop=1 max-buffers=1 sync=false")


@pytest.mark.backend
def test_picamera2_missing_names_the_apt_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as on a desktop
    with pytest.raises(MissingDependencyError, match=re.escape("sudo apt install python3-picamera2")):
        open_source("picamera2")


@pytest.mark.core
def test_an_unknown_source_lists_the_accepted_forms():
    with pytest.raises(SourceError, match=re.escape(
            "source 'no_such_clip.mp4' is not a file that exists nor a camera spec; pass one of: "
            "a camera index (0), a device path (/dev/video0), 'picamera2' or 'picamera2:N'")):
        open_source("no_such_clip.mp4")


@pytest.mark.backend
def test_ctrl_c_stops_the_capture_thread_and_releases_the_source(assets):
    script = textwrap.dedent(f"""
        import sys, threading
        from edgepose.video.sources import CaptureOptions, open_source
        src = open_source({str(assets / "data/tfjs_testdata/pose_1.mp4")!r},
                          options=CaptureOptions(realtime=True))
        try:
            with src:
                for i, frame in enumerate(src):
                    if i == 2:
                        print("running", flush=True)
        except KeyboardInterrupt:
            pass
        alive = [t.name for t in threading.enumerate() if t.name.startswith("edgepose-")]
        print("released", src._cap is None, "threads", alive, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "running"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert out.strip() == "released True threads []"
    assert proc.returncode == 0


@pytest.mark.core
def test_threads_are_daemons_so_a_forgotten_source_never_blocks_exit():
    prod = _FastProducer(period_s=0.001, n=10**6)
    cap = ThreadedCapture(prod.read, prod.release)
    try:
        assert any(t.daemon for t in threading.enumerate() if t.name == "edgepose-capture")
    finally:
        cap.close()
    assert prod.released
