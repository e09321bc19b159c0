"""Whom the single-person tracker follows: EstimatorOptions.person_selection and the identity guard.

Scripted scenes: a fake single-person card answers the person nearest its crop (or, on a whole
frame, the one it finds "salient"), a fake detector lists everyone. The frame index is written
into pixel (0, 0) so the fakes know which frame they are looking at.
"""

import re

import numpy as np
import pytest

from edgepose.errors import EdgePoseError
from edgepose.estimator import EstimatorOptions, PoseEstimator
from edgepose.models._crop import Roi
from edgepose.models.base import Estimate, PoseModel
from edgepose.models.multipose import MultiPersonModel
from edgepose.offload.runtime import CloudEdgeRuntime
from edgepose.types import Source
from edgepose.video.identity import Anchor, choose_person, jumped

W, H = 640, 480
HEIGHT = 100.0  # person height in px


def person(cx: float, cy: float, h: float = HEIGHT) -> np.ndarray:
    """17 COCO keypoints of a standing person whose hip centre is (cx, cy)."""
    y = {0: -0.45, 1: -0.47, 2: -0.47, 3: -0.45, 4: -0.45, 5: -0.3, 6: -0.3, 7: -0.15, 8: -0.15, 9: 0.0,
         10: 0.0, 11: 0.0, 12: 0.0, 13: 0.22, 14: 0.22, 15: 0.45, 16: 0.45}
    x = {5: -0.1, 6: 0.1, 7: -0.12, 8: 0.12, 9: -0.12, 10: 0.12, 11: -0.06, 12: 0.06, 13: -0.06, 14: 0.06,
         15: -0.06, 16: 0.06}
    return np.array([[cx + x.get(i, 0.0) * h, cy + y[i] * h] for i in range(17)], np.float32)


class Scene:
    """People's hip centres per frame: ``positions(t) -> {name: (cx, cy, height)}``."""

    def __init__(self, positions):
        self.positions = positions

    def __call__(self, t: int) -> dict:
        return self.positions(t)


def frame(t: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[0, 0, 0] = t
    return img


class FakeSingle(PoseModel):
    """A single-person card: on a crop, the person nearest the crop centre (or ``slide[t]``); on the
    whole frame, the ``salient`` one."""

    name = "fake-single"

    def __init__(self, scene: Scene, salient: str, slide: dict | None = None):
        super().__init__(backend=None)
        self.scene, self.salient, self.slide = scene, salient, slide or {}
        self.calls = 0

    def estimate(self, image, roi: Roi) -> Estimate:
        self.calls += 1
        t = int(image[0, 0, 0])
        people = self.scene(t)
        if roi.width >= W:
            name = self.salient
        elif t in self.slide:
            name = self.slide[t]
        else:
            name = min(people, key=lambda k: (people[k][0] - roi.cx) ** 2 + (people[k][1] - roi.cy) ** 2)
        cx, cy, h = people[name]
        return Estimate(person(cx, cy, h), np.full(17, 0.9, np.float32), roi, 0.9)

    def close(self):
        pass


class FakeDetector(MultiPersonModel):
    """Lists every person of the scene with a box around it."""

    name = "fake-detector"

    def __init__(self, scene: Scene):
        super().__init__(backend=None)
        self.scene = scene
        self.calls = 0

    def detect_people(self, image):
        self.calls += 1
        out = []
        for cx, cy, h in self.scene(int(image[0, 0, 0])).values():
            out.append(Estimate(person(cx, cy, h), np.full(17, 0.8, np.float32), Roi(cx, cy, 0.4 * h, h), 0.8))
        return out, {"infer": 0.1}

    def close(self):
        pass


def nearest_options(scene, **kw) -> EstimatorOptions:
    return EstimatorOptions(running_mode="video", person_selection="nearest", person_detector=FakeDetector(scene),
                            smoothing=False, **kw)


def track(est: PoseEstimator, n: int) -> list:
    out = []
    for t in range(n):
        r = est.detect_for_video(frame(t), 100 * t)
        out.append(None if r.pose is None else tuple(np.round(r.pose.keypoints[11:13].mean(0))))
    return out


TWO = Scene(lambda t: {"big": (200.0, 300.0, 120.0), "small": (450.0, 250.0, 80.0)})


# -- options --------------------------------------------------------------------------------------
@pytest.mark.core
def test_person_selection_is_validated_with_a_clear_message():
    with pytest.raises(ValueError, match=re.escape("EstimatorOptions.person_selection 'closest' is not one of "
                                                   "model, nearest")):
        EstimatorOptions(person_selection="closest")
    with pytest.raises(ValueError, match=re.escape("EstimatorOptions.identity_gate must be a number > 0")):
        EstimatorOptions(person_selection="nearest", identity_gate=0)
    assert EstimatorOptions().person_selection == "model"  # default off


@pytest.mark.core
def test_a_single_person_card_is_refused_as_person_detector():
    single = FakeSingle(TWO, "big")
    opts = EstimatorOptions(running_mode="video", person_selection="nearest", person_detector=single)
    with pytest.raises(EdgePoseError, match=re.escape("EstimatorOptions.person_detector 'fake-single' finds one "
                                                      "person; person_selection='nearest' needs a multi-person card")):
        PoseEstimator(FakeSingle(TWO, "big"), options=opts)


@pytest.mark.core
def test_the_default_path_loads_no_detector():
    est = PoseEstimator(FakeSingle(TWO, "small"), options=EstimatorOptions(running_mode="video", smoothing=False))
    assert est._detector is None
    r = est.detect_for_video(frame(0), 0)
    assert "detect" not in r.timings_ms
    assert not est.is_other_person(person(10, 10), np.full(17, 0.9), (W, H))


# -- the choice rule -------------------------------------------------------------------------------
@pytest.mark.core
def test_choose_person_takes_the_nearest_within_the_gate_else_the_largest():
    boxes = [(0, 0, 40, 100), (300, 0, 360, 150), (100, 0, 140, 100)]
    assert choose_person(boxes, None, 1.0) == 1  # largest
    a = Anchor(cx=118.0, cy=50.0, side=100.0, ts=0)
    assert choose_person(boxes, a, 1.0, ts=100) == 2  # nearest
    assert choose_person(boxes, Anchor(cx=600.0, cy=50.0, side=100.0, ts=0), 1.0, ts=100) == 1  # none near
    assert choose_person(boxes, a, 1.0, ts=5000) == 1  # the anchor is too old: largest
    assert choose_person([], a, 1.0) is None


@pytest.mark.core
def test_the_anchor_predicts_along_its_motion():
    a = Anchor.of_roi(Roi.square(100, 100, 100), 0)
    for t in range(1, 6):
        a = a.follow(Roi.square(100 + 10 * t, 100, 100), 100 * t)  # moving right 10 px per frame
    # two people equally far from the last position; the one ahead along the motion is taken
    boxes = [(125, 80, 145, 120), (165, 80, 185, 120)]
    assert choose_person(boxes, a, 1.0, ts=600) == 1
    assert not jumped(Roi.square(160, 100, 100), a, 0.35, ts=600)
    assert jumped(Roi.square(60, 100, 100), a, 0.35, ts=600)


# -- the tracker ------------------------------------------------------------------------------------
@pytest.mark.core
def test_two_models_start_on_the_same_person_with_nearest():
    """'model': each card follows whom it finds salient; 'nearest': both take the largest person."""
    a = PoseEstimator(FakeSingle(TWO, "small"), options=EstimatorOptions(running_mode="video", smoothing=False))
    b = PoseEstimator(FakeSingle(TWO, "big"), options=EstimatorOptions(running_mode="video", smoothing=False))
    assert track(a, 3)[0] != track(b, 3)[0]
    a = PoseEstimator(FakeSingle(TWO, "small"), options=nearest_options(TWO))
    b = PoseEstimator(FakeSingle(TWO, "big"), options=nearest_options(TWO))
    ta, tb = track(a, 5), track(b, 5)
    assert ta == tb and ta[0] == (200.0, 300.0)


@pytest.mark.core
def test_a_crop_that_slides_onto_a_neighbour_is_refused():
    """Walkers close together; at frame 3 the model answers the neighbour from the tracked crop."""
    scene = Scene(lambda t: {"a": (300.0 + 5 * t, 300.0, 100.0), "b": (380.0 - 5 * t, 300.0, 100.0)})
    slide = {3: "b"}
    old = PoseEstimator(FakeSingle(scene, "a", slide), options=EstimatorOptions(running_mode="video",
                                                                                   smoothing=False))
    assert track(old, 6)[3:] == [(365.0, 300.0), (360.0, 300.0), (355.0, 300.0)]  # follows b from then on
    det = FakeDetector(scene)
    est = PoseEstimator(FakeSingle(scene, "a", slide), options=EstimatorOptions(
        running_mode="video", person_selection="nearest", person_detector=det, smoothing=False))
    got = track(est, 6)
    assert got == [(300.0 + 5 * t, 300.0) for t in range(6)]  # stays on a
    # detector passes: the start and the refused jump; rejects: the jump, and the card's answer on the
    # chosen person's crop (still b at frame 3), where the detector's own pose of a is kept
    assert est.identity_rejects == 2 and det.calls == 2


@pytest.mark.core
def test_redetection_after_a_loss_takes_the_person_nearest_the_lost_track():
    """The tracked crop loses the walker for a frame: the detector's nearest person is taken back, not
    the largest one (which the whole-frame pass of the "model" protocol finds salient)."""
    scene = Scene(lambda t: {"big": (120.0, 300.0, 160.0), "walker": (400.0 + 10 * t, 300.0, 100.0)})

    class Losing(FakeSingle):
        def estimate(self, image, roi):
            e = super().estimate(image, roi)
            t = int(image[0, 0, 0])
            if t == 2 and roi.width < W and not getattr(self, "lost", False):  # the tracked crop loses it once
                self.lost = True
                return Estimate(e.keypoints, np.full(17, 0.05, np.float32), roi, 0.05)
            return e

    for selection, expect in (("model", (120.0, 300.0)), ("nearest", (420.0, 300.0))):
        opts = nearest_options(scene) if selection == "nearest" else EstimatorOptions(running_mode="video",
                                                                                      smoothing=False)
        est = PoseEstimator(Losing(scene, "big"), options=opts)
        est.detect_for_video(frame(0), 0)
        assert est.reseed(person(400.0, 300.0), np.full(17, 0.9), (W, H)) or selection == "nearest"
        if selection == "nearest":  # a reseed far from the followed person is refused: start on the walker
            est.reset()
            est._anchor = Anchor.of_roi(Roi.square(400.0, 300.0, 150.0), 0)
        hips = [tuple(np.round(est.detect_for_video(frame(t), 100 * t).pose.keypoints[11:13].mean(0)))
                for t in (1, 2, 3)]
        assert hips[0] == (410.0, 300.0)
        assert hips[1] == expect, selection


@pytest.mark.core
def test_reseed_respects_identity_only_with_nearest():
    old = PoseEstimator(FakeSingle(TWO, "big"), options=EstimatorOptions(running_mode="video", smoothing=False))
    old.detect_for_video(frame(0), 0)
    assert old.reseed(person(450.0, 250.0), np.full(17, 0.9), (W, H))  # the old tracker jumps
    est = PoseEstimator(FakeSingle(TWO, "small"), options=nearest_options(TWO))
    est.detect_for_video(frame(0), 0)  # on "big" (largest)
    roi = est.roi
    assert est.is_other_person(person(450.0, 250.0), np.full(17, 0.9), (W, H))
    assert not est.reseed(person(450.0, 250.0), np.full(17, 0.9), (W, H))
    assert est.roi == roi and est.identity_rejects == 1
    assert est.reseed(person(205.0, 300.0), np.full(17, 0.9), (W, H))  # the same person, a little moved
    assert abs(est.roi.cx - 205.0) < 1.0


@pytest.mark.core
def test_runtime_refuses_a_server_answer_of_another_person():
    est = PoseEstimator(FakeSingle(TWO, "small"), options=nearest_options(TWO))
    rt = CloudEdgeRuntime(est)
    edge = est.detect_for_video(frame(0), 0)  # follows "big" at (200, 300)
    ident = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

    def answer(cx, cy):
        return np.concatenate([person(cx, cy), np.full((17, 1), 0.9, np.float32)], axis=1)

    assert rt._cloud_result(answer(450.0, 250.0), ident, edge) is None
    assert rt.identity_rejects == 1 and rt.summary()["identity_rejects"] == 1
    cloud = rt._cloud_result(answer(202.0, 301.0), ident, edge)
    assert cloud is not None and cloud.source is Source.CLOUD
    assert abs(est.roi.cx - 202.0) < 1.0  # and it re-seeded the tracker
    rt.close()
