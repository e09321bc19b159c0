"""Multi-person: MultiPose decoding, top-down cards, the per-person tracker, MultiPoseEstimator."""

import re
import threading
import time

import numpy as np
import pytest

from edgepose.backends.base import TensorSpec
from edgepose.backends.null import NullBackend
from edgepose.errors import EdgePoseError
from edgepose.models import list_models
from edgepose.models._crop import Roi, invert_affine, roi_to_crop_matrix
from edgepose.models.movenet import MoveNet
from edgepose.models.multipose import MoveNetMultiPose, decode_multipose
from edgepose.models.topdown import Detection, TopDown, TopDownOptions, oks_nms, rescore
from edgepose.multi import MultiPoseEstimator, MultiPoseOptions
from edgepose.video.multitrack import MultiPersonTracker, TrackerOptions, box_iou, pose_oks


def _slot(cy, cx, h, score):
    """One MultiPose slot: a vertical stick figure centred at (cx, cy), normalised coordinates."""
    s = np.zeros(56, np.float32)
    ys = np.linspace(cy - h / 2, cy + h / 2, 17)
    s[0:51:3], s[1:51:3], s[2:51:3] = ys, cx, score
    s[51:56] = cy - h / 2, cx - 0.05, cy + h / 2, cx + 0.05, score
    return s


# -- decoding (pure numpy) ------------------------------------------------------------------------
@pytest.mark.core
def test_decode_multipose_maps_to_frame_pixels_drops_empty_slots_and_sorts_by_score():
    out = np.zeros((1, 6, 56), np.float32)
    out[0, 0] = _slot(0.5, 0.25, 0.4, 0.3)
    out[0, 3] = _slot(0.5, 0.75, 0.4, 0.8)
    out[0, 5] = _slot(0.5, 0.5, 0.4, 0.1)  # below 0.25: empty
    m = roi_to_crop_matrix(Roi.full_frame(640, 480), 256, 256)  # letterbox: 640 wide, padded to 640x640
    dec = decode_multipose(out, invert_affine(m), (256, 256))
    assert len(dec) == 2 and dec.person_scores.tolist() == pytest.approx([0.8, 0.3])
    # x = 0.75 of the 640-px square, y = 0.5 of it minus the 80-px top padding.
    assert dec.keypoints[0, 8].tolist() == pytest.approx([480.0, 240.0], abs=1e-3)
    assert dec.boxes[0].tolist() == pytest.approx([448.0, 112.0, 512.0, 368.0], abs=1e-3)
    assert dec.scores.shape == (2, 17)


@pytest.mark.core
def test_rescoring_is_detector_score_times_mean_confident_keypoint():
    assert rescore(np.array([0.9, 0.1, 0.5]), 0.5, 0.2) == pytest.approx(0.35)
    assert rescore(np.zeros(17), 0.9, 0.2) == 0.0


@pytest.mark.core
def test_oks_nms_keeps_the_better_of_two_copies_of_one_person():
    a = np.stack([np.linspace(0, 100, 17), np.linspace(0, 200, 17)], 1)
    kps = np.stack([a, a + 1.0, a + 300.0])
    assert oks_nms(kps, np.array([0.5, 0.9, 0.7]), np.full(3, 2e4), 0.9) == [1, 2]


# -- real model on a real image -------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_people(assets):
    import cv2

    return cv2.cvtColor(cv2.imread(str(assets / "data/tfjs_testdata/three_people.jpg")), cv2.COLOR_BGR2RGB)


@pytest.mark.backend
def test_multi_person_cards_are_registered():
    assert {"movenet-multipose", "topdown-thunder", "topdown-lightning", "topdown-mp-thunder",
            "topdown-mp-lightning"} <= set(list_models())


@pytest.mark.backend
def test_multipose_finds_the_three_people_with_golden_boxes(three_people):
    with MultiPoseEstimator("movenet-multipose", num_threads=1) as est:
        res = est.detect(three_people)
    assert len(res.poses) == 3 and all(p.track_id is None for p in res.poses)
    golden = [(0.527, [672, 25, 1044, 862]), (0.450, [100, 341, 671, 855]), (0.371, [18, 6, 630, 865])]
    for pose, (score, box) in zip(res.poses, golden):
        assert pose.score == pytest.approx(score, abs=0.02)
        assert np.allclose(pose.box, box, atol=12), pose.box
    noses = [p.keypoints[0].tolist() for p in res.poses]
    assert np.allclose(noses, [[875, 151], [385, 470], [193, 151]], atol=12), noses


@pytest.mark.backend
def test_topdown_on_multipose_boxes_finds_the_same_three_people(three_people):
    with MultiPoseEstimator("topdown-mp-thunder", num_threads=1) as est:
        res = est.detect(three_people)
    noses = sorted(p.keypoints[0].tolist() for p in res.poses)
    assert np.allclose(noses, [[186, 147], [385, 469], [872, 147]], atol=15), noses


@pytest.mark.backend
def test_topdown_with_the_blazepose_detector_finds_the_two_standing_people(three_people):
    with MultiPoseEstimator("topdown-thunder", num_threads=1) as est:
        res = est.detect(three_people)
    noses = sorted(p.keypoints[0].tolist() for p in res.poses)
    assert np.allclose(noses, [[186, 147], [874, 150]], atol=15), noses
    assert res.timings_ms["detect"] > 0 and res.timings_ms["infer"] > 0


# -- top-down batching (null backends) ------------------------------------------------------------
class _Boxes:
    """A fixed person detector."""

    def __init__(self, rois):
        self.rois = rois

    def detect(self, frame):
        return [Detection(r, 0.9) for r in self.rois]

    def close(self):
        pass


def _movenet_null(batch):
    def fn(feeds):
        x = feeds["in"]
        out = np.zeros((len(x), 1, 17, 3), np.float32)
        out[..., 0] = np.linspace(0.3, 0.7, 17)
        out[..., 1] = (x[:, 0, 0, 0] / 255.0)[:, None, None]  # x encodes the crop's colour
        out[..., 2] = 0.8
        return {"out": out}

    be = NullBackend(inputs=[TensorSpec("in", (batch, 64, 64, 3), np.dtype(np.uint8))],
                     outputs={"out": np.zeros((1, 1, 17, 3), np.float32)}, fn=fn)
    return MoveNet(be, name="null")


@pytest.mark.core
def test_topdown_batches_all_crops_in_one_call_when_the_batch_axis_is_dynamic():
    frame = np.zeros((100, 300, 3), np.uint8)
    frame[:, :100], frame[:, 100:200], frame[:, 200:] = 50, 150, 250
    rois = [Roi.square(50, 50, 40), Roi.square(150, 50, 40), Roi.square(250, 50, 40)]
    opts = TopDownOptions(refine=False)
    batched = TopDown(_movenet_null(None), _Boxes(rois), options=opts)
    looped = TopDown(_movenet_null(1), _Boxes(rois), options=opts)
    assert batched.batched and not looped.batched
    a, _ = batched.detect_people(frame)
    b, _ = looped.detect_people(frame)
    assert batched.pose_model.backend.calls == 1 and looped.pose_model.backend.calls == 3
    assert len(a) == 3
    for ea, eb in zip(sorted(a, key=lambda e: e.roi.cx), sorted(b, key=lambda e: e.roi.cx)):
        assert np.allclose(ea.keypoints, eb.keypoints) and ea.score == pytest.approx(eb.score)


# -- tracker (synthetic tracks) -------------------------------------------------------------------
def _person(cx, cy, h=200.0):
    kps = np.stack([np.full(17, cx) + np.linspace(-20, 20, 17), cy + np.linspace(-h / 2, h / 2, 17)], 1)
    return kps.astype(np.float32), np.full(17, 0.9, np.float32), (cx - 30, cy - h / 2, cx + 30, cy + h / 2)


def _step(tracker, people, ts):
    kps, scores, boxes = zip(*people) if people else ((), (), ())
    return tracker.update(list(kps), list(scores), list(boxes), ts)


@pytest.mark.core
def test_two_walkers_keep_their_ids_and_a_newcomer_gets_the_next_one():
    tr = MultiPersonTracker()
    seen = []
    for i in range(60):  # 30 fps, two people walking towards each other, passing 300 px apart
        people = [_person(100 + 4 * i, 200), _person(500 - 4 * i, 500)]
        if i >= 30:
            people.append(_person(800, 300))
        seen.append(_step(tr, people, i * 33))
    assert all(ids[:2] == [0, 1] for ids in seen)
    assert all(ids[2] == 2 for ids in seen[30:])
    assert tr.stats.births == 3 and tr.stats.deaths == 0


@pytest.mark.core
def test_a_track_survives_a_short_gap_but_dies_after_max_age_and_ids_are_never_reused():
    tr = MultiPersonTracker(TrackerOptions(max_age_ms=500))
    assert _step(tr, [_person(100, 100)], 0) == [0]
    assert _step(tr, [], 300) == []
    assert _step(tr, [_person(105, 100)], 400) == [0]  # 400 ms gap: same person
    assert _step(tr, [], 1000) == []  # 600 ms unseen: dead
    assert tr.stats.deaths == 1
    assert _step(tr, [_person(105, 100)], 1100) == [1]


@pytest.mark.core
def test_people_with_too_few_confident_keypoints_are_matched_by_box_iou():
    tr = MultiPersonTracker()
    kps, scores, box = _person(100, 100)
    low = np.full(17, 0.1, np.float32)
    assert tr.update([kps], [low], [box], 0) == [0]
    moved = (box[0] + 10, box[1], box[2] + 10, box[3])
    assert tr.update([kps + 300], [low], [moved], 33) == [0]  # keypoints ignored, box overlaps
    assert pose_oks(kps, low, kps, low, 1e4) is None
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


@pytest.mark.core
def test_tracker_options_name_the_bad_field():
    with pytest.raises(ValueError, match=re.escape("TrackerOptions.min_oks must be in [0, 1], got 2")):
        TrackerOptions(min_oks=2)


# -- MultiPoseEstimator ----------------------------------------------------------------------------
def _multipose_null(n_people=2, delay_s=0.0):
    out = np.zeros((1, 6, 56), np.float32)
    for k in range(n_people):
        out[0, k] = _slot(0.5, 0.2 + 0.3 * k, 0.4, 0.8 - 0.1 * k)

    def fn(feeds):
        time.sleep(delay_s)
        return {"out": out.copy()}

    be = NullBackend(inputs=[TensorSpec("in", (1, 256, 256, 3), np.dtype(np.int32))],
                     outputs={"out": out}, fn=fn)
    return MoveNetMultiPose(be)


FRAME = np.zeros((240, 320, 3), np.uint8)


@pytest.mark.core
def test_video_mode_gives_stable_track_ids_and_increasing_timestamps_are_required():
    est = MultiPoseEstimator(_multipose_null(), options=MultiPoseOptions(running_mode="video"))
    ids = [[p.track_id for p in est.detect_for_video(FRAME, t).poses] for t in (0, 33, 66)]
    assert ids == [[0, 1]] * 3
    with pytest.raises(EdgePoseError, match=re.escape("timestamp_ms must increase monotonically: got 66 after 66")):
        est.detect_for_video(FRAME, 66)


@pytest.mark.core
def test_image_mode_reports_everyone_without_track_ids():
    res = MultiPoseEstimator(_multipose_null(3)).detect(FRAME)
    assert [p.track_id for p in res.poses] == [None] * 3 and res.timings_ms["total"] > 0


@pytest.mark.core
def test_live_stream_mode_drops_waiting_frames_and_counts_them():
    got = []
    done = threading.Event()

    def cb(result, image):
        got.append(result.frame_index)
        done.set()

    est = MultiPoseEstimator(_multipose_null(delay_s=0.03),
                             options=MultiPoseOptions(running_mode="live_stream", result_callback=cb))
    for t in range(20):
        est.detect_async(FRAME, t * 5)
    est.close()
    assert est.dropped_frames > 0 and len(got) + est.dropped_frames == 20


@pytest.mark.core
def test_a_single_person_model_is_refused_with_the_multi_person_choices():
    with pytest.raises(EdgePoseError, match=re.escape(
            "model 'null' finds one person; MultiPoseEstimator needs a multi-person card: "
            "movenet-multipose, topdown-thunder or topdown-lightning")):
        MultiPoseEstimator(_movenet_null(1))


@pytest.mark.backend
def test_topdown_video_mode_follows_tracked_people_between_detections(assets):
    from edgepose.video.sources import VideoFileSource

    opts = MultiPoseOptions(running_mode="video", detect_interval_ms=200)
    with MultiPoseEstimator("topdown-mp-lightning", options=opts, num_threads=1) as est, \
            VideoFileSource(assets / "data/openpose_media/video.avi", max_frames=20) as src:
        results = [est.detect_for_video(f.image, f.timestamp_ms) for f in src]
    detected = ["detect" in r.timings_ms for r in results]
    assert detected[0] and not all(detected)  # the detector ran, but not on every frame
    assert sum(len(r.poses) for r in results) > 0


# -- the id-switch proxy (edgepose.eval.tracking) -------------------------------------------------
@pytest.mark.core
def test_id_switch_proxy_counts_a_jump_and_a_fragment_but_not_smooth_walking():
    from edgepose.eval.tracking import id_switches

    box = lambda x: (x, 0.0, x + 50.0, 100.0)  # noqa: E731
    smooth = {0: [(i, box(2.0 * i)) for i in range(50)]}
    assert id_switches(smooth, gap=25)["switches"] == 0
    jump = {0: [(0, box(0)), (1, box(2)), (2, box(300))]}  # id 0 moved onto someone 300 px away
    assert id_switches(jump, gap=25) == {"jumps": 1, "fragments": 0, "switches": 1}
    frag = {0: [(i, box(2.0 * i)) for i in range(10)], 1: [(i, box(2.0 * i)) for i in range(14, 30)]}
    assert id_switches(frag, gap=25) == {"jumps": 0, "fragments": 1, "switches": 1}
    far = {0: [(i, box(0)) for i in range(10)], 1: [(i, box(500)) for i in range(12, 30)]}
    assert id_switches(far, gap=25)["fragments"] == 0  # someone else entered
