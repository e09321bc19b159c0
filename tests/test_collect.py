"""Opt-in collection on the embedded server (issue 21): off by default, bounded by count and bytes
(oldest dropped first), and readable by ``edgepose adapt --from-collection``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepose.server import PoseServedModel, PoseServer, ServerOptions

MODEL = "movenet-lightning-int8-onnx"


def _jpeg(rgb) -> bytes:
    import cv2

    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def test_collector_ring_keeps_the_newest_within_count_and_bytes(tmp_path):
    from edgepose.server.collect import Collector

    c = Collector(tmp_path, max_items=3)
    kp = np.zeros((1, 17, 3), np.float32)
    for i in range(5):
        c.add("m", [np.full((8, 8, 3), i * 40, np.uint8)], kp)
    names = sorted(p.name for p in (tmp_path / "crops").iterdir())
    assert names == [f"{s:010d}.{e}" for s in (2, 3, 4) for e in ("jpg", "json")]
    assert c.stats["evicted"] == 2 and len(c) == 3
    c2 = Collector(tmp_path, max_items=3)  # a restart continues the numbering
    assert len(c2) == 3 and c2.bytes == c.bytes
    c2.add("m", [b"\xff\xd8notreallyajpeg"], kp)
    assert (tmp_path / "crops" / "0000000005.jpg").is_file() and not (tmp_path / "crops" / "0000000002.jpg").exists()
    one = c.bytes // 3 + 8  # one crop + answer
    small = Collector(tmp_path / "b", max_items=100, max_bytes=max(1024, int(one * 2.5)))
    for i in range(8):
        small.add("m", [np.full((8, 8, 3), i * 30, np.uint8)], kp)
    assert small.bytes <= small.max_bytes and small.stats["evicted"] > 0 and 1 <= len(small) < 8


@pytest.mark.server
def test_server_collects_answered_crops_only_when_asked(tmp_path, pose_jpg):
    import tritonclient.http as th

    from edgepose.compression.adapt.scene import collection_items
    from edgepose.models import load_model
    from edgepose.models._crop import Roi, crop

    model = load_model(MODEL, num_threads=1)
    patch, _ = crop(pose_jpg, Roi.from_box(300, 60, 720, 667), 192, 192)
    try:
        for collect in (None, str(tmp_path / "col")):
            s = PoseServer([PoseServedModel(model)], options=ServerOptions(collect_dir=collect, collect_max_items=4)).start()
            c = th.InferenceServerClient(s.url.removeprefix("http://"))
            try:
                for _ in range(3):
                    inp = th.InferInput("image_bytes", [2], "BYTES")
                    inp.set_data_from_numpy(np.array([_jpeg(patch), _jpeg(patch[::-1])], dtype=object))
                    kp = c.infer(MODEL, [inp]).as_numpy("keypoints")
            finally:
                c.close()
                s.stop()
            if collect is None:
                assert s.collector is None and not (tmp_path / "col").exists()
        crops = sorted((tmp_path / "col" / "crops").glob("*.jpg"))
        assert [p.stem for p in crops] == [f"{i:010d}" for i in (2, 3, 4, 5)]  # 6 answered, the newest 4 kept
        ans = json.loads(crops[-1].with_suffix(".json").read_text())
        assert ans["model"] == MODEL and np.allclose(ans["keypoints"], kp[1], atol=1e-3)
        assert [i.path for i in collection_items(tmp_path / "col")] == [str(p) for p in crops]
    finally:
        model.close()
