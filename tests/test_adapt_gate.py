"""The adaptation gate's evidence (issue 21): per-crop hits, the paired frame bootstrap, the verdicts
(too little evidence, worse, not shown to be no worse, accepted) and the AdaptConfig checks."""

from __future__ import annotations

import numpy as np
import pytest


def _teacher(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(0.3, 0.7, (n, 17, 2)), np.full((n, 17, 1), 0.9)], axis=-1)


def _miss(teacher: np.ndarray, crops) -> np.ndarray:
    """A prediction that agrees with the teacher except on every joint of ``crops``."""
    p = teacher.copy()
    p[list(crops), :, :2] += 0.5
    return p


def test_per_crop_hits_pool_to_the_agreement_pck():
    from edgepose.compression.adapt.gate import per_crop_hits
    from edgepose.compression.adapt.scoring import agreement_of

    t = _teacher(12)
    p = t.copy()
    p[:4, :5, :2] += 0.3  # 20 joints off
    hits, joints = per_crop_hits(p, t)
    assert hits.shape == joints.shape == (12,) and joints.sum() == 12 * 13  # the 13 shared joints
    assert 100.0 * hits.sum() / joints.sum() == pytest.approx(agreement_of(p, t).pck)
    from edgepose.types import SHARED13

    assert list(hits[:4]) == [13 - len(set(range(5)) & set(SHARED13))] * 4 and list(hits[4:]) == [13] * 8


def test_frame_groups_keep_the_people_of_one_frame_together():
    from edgepose.compression.adapt.gate import frame_groups

    g = frame_groups(["a.mp4#3", "a.mp4#3", "a.mp4#4", "b.mp4#3"])
    assert g[0] == g[1] and len({g[0], g[2], g[3]}) == 3


def test_paired_bootstrap_is_seeded_and_sees_a_clear_difference():
    from edgepose.compression.adapt.gate import paired_bootstrap

    n = 40
    joints = np.full(n, 13)
    better, worse = np.full(n, 13), np.full(n, 10)
    d1, p1 = paired_bootstrap(better, worse, joints, np.arange(n), resamples=500, seed=1)
    d2, p2 = paired_bootstrap(better, worse, joints, np.arange(n), resamples=500, seed=1)
    assert np.array_equal(d1, d2) and p1 == p2 == 0.0
    assert np.allclose(d1, -100.0 * 3 / 13)  # every crop 3 joints better: no spread
    _, p_bad = paired_bootstrap(worse, better, joints, np.arange(n), resamples=500)
    assert p_bad == 1.0


def test_gate_refuses_without_enough_evidence_and_accepts_a_clear_gain():
    from edgepose.compression.adapt.gate import decide

    t = _teacher(40)
    src = [f"v.mp4#{i}" for i in range(40)]
    cur = _miss(t, range(0, 40, 4))  # current misses 10 crops, the candidate none
    few = decide(t[:10], cur[:10], t[:10], src[:10], min_crops=30)
    assert not few.accepted and "too little evidence" in few.reason and few.crops == 10
    ok = decide(t, cur, t, src, min_crops=30)
    assert ok.accepted and ok.diff < 0 and ok.p_worse == 0.0 and ok.ci90[1] < 0
    assert ok.to_dict()["crops"] == 40 and ok.frames == 40
    same = decide(t, t, t, src, min_crops=30)  # identical: no measured gain, refused without a margin
    assert not same.accepted and same.diff == 0.0 and "no gain" in same.reason
    assert decide(t, t, t, src, min_crops=30, margin=0.5).accepted  # a margin accepts the tie
    worse = decide(cur, t, t, src, min_crops=30)
    assert not worse.accepted and "worse on the gate" in worse.reason


def test_gate_refuses_a_gain_the_bootstrap_does_not_support():
    """One frame of a better candidate among noise: the point estimate wins, the resamples do not."""
    from edgepose.compression.adapt.gate import decide

    t = _teacher(40)
    src = [f"v.mp4#{i // 2}" for i in range(40)]  # two people per frame
    cur = _miss(t, [0, 1, 2, 10, 12])
    cand = _miss(t, [10, 12, 30, 31])
    d = decide(cand, cur, t, src, min_crops=30, max_risk=0.25)
    assert d.diff < 0 and d.frames == 20
    assert not d.accepted and "not shown" in d.reason and d.p_worse > 0.25
    assert decide(cand, cur, t, src, min_crops=30, max_risk=1.0).accepted


def test_gate_with_no_labelled_joint_refuses():
    from edgepose.compression.adapt.gate import decide

    t = _teacher(5)
    t[..., 2] = 0.0
    d = decide(t, t, t, [f"v#{i}" for i in range(5)], min_crops=0)
    assert not d.accepted and "no teacher-labelled joint" in d.reason


@pytest.mark.parametrize("field, value", [("gate_max_risk", 1.5), ("gate_min_crops", -1), ("w_ref", -0.1),
                                          ("float_stem", -1), ("gate_resamples", 0), ("augment", "heavy")])
def test_adapt_config_rejects_bad_gate_and_training_options(field, value):
    from edgepose.compression.adapt.scene import AdaptConfig
    from edgepose.errors import ConfigError

    with pytest.raises(ConfigError, match=field):
        AdaptConfig(**{field: value})


def test_adapt_config_defaults_ask_for_evidence():
    from edgepose.compression.adapt.scene import AdaptConfig

    c = AdaptConfig()
    assert c.gate_min_crops >= 30 and 0 < c.gate_max_risk < 0.5 and c.w_ref > 0 and c.label_stride == 1


def test_scene_augment_presets():
    from edgepose.compression.adapt.scene import AUGMENTS, scene_augment
    from edgepose.compression.data.augment import AugmentConfig

    assert AUGMENTS[0] == "light" and scene_augment("full") == AugmentConfig()
    light, none = scene_augment("light"), scene_augment("none")
    assert light.cutout == 0.0 and light.rotate_deg < AugmentConfig().rotate_deg and light.flip > 0
    assert none == AugmentConfig.none()
