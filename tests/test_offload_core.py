"""Offload building blocks without a network: emulation, rate limit, backoff, budget, policy."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose.offload import (
    Backoff,
    OffloadControlConfig,
    OffloadRateController,
    BudgetTracker,
    ClientOptions,
    KeyframeConfig,
    KeyframeController,
    LatencyStats,
    LinkSpec,
    NetworkEmulator,
    NetworkEstimate,
    OffloadPolicy,
    PolicyConfig,
    TokenBucket,
    get_link,
    hard_frame_score,
)

pytestmark = pytest.mark.core


def test_network_emulation_is_deterministic_for_a_seed():
    link = get_link("lte")
    draws = []
    for _ in range(2):
        emu = NetworkEmulator(link, seed=7)
        draws.append([(round(d.delay_ms, 6), d.lost) for d in (emu.leg(10_000, up=i % 2 == 0) for i in range(200))])
    assert draws[0] == draws[1]
    other = NetworkEmulator(link, seed=8)
    assert draws[0] != [(round(d.delay_ms, 6), d.lost) for d in (other.leg(10_000, up=i % 2 == 0) for i in range(200))]


def test_network_emulation_applies_bandwidth_rtt_and_loss():
    link = LinkSpec("t", uplink_mbps=8.0, downlink_mbps=80.0, rtt_ms=20.0)
    emu = NetworkEmulator(link, seed=0)
    assert emu.leg(10_000, up=True).delay_ms == pytest.approx(10.0 + 10.0)  # 80 kbit at 8 Mbit/s + rtt/2
    assert emu.leg(10_000, up=False).delay_ms == pytest.approx(10.0 + 1.0)
    lossy = NetworkEmulator(LinkSpec("l", rtt_ms=1.0, loss=0.19), seed=1)
    lost = sum(lossy.leg(100, up=True).lost for _ in range(4000)) / 4000
    assert lost == pytest.approx(1 - np.sqrt(1 - 0.19), abs=0.02)  # per leg, so an exchange loses 19 %
    emu.cut()
    assert emu.leg(1, up=True).lost and emu.is_cut
    emu.cut(False)
    assert not emu.leg(1, up=True).lost


def test_links_come_from_presets_or_a_device_profile():
    assert get_link("wifi").uplink_mbps == 11.0
    assert not get_link("none").available
    with pytest.raises(KeyError, match="unknown network link 'wlan'; valid choices: 5g, loopback, lte, none, wifi"):
        get_link("wlan")
    with pytest.raises(ValueError, match="LinkSpec.loss must be in \\[0, 1\\], got 2"):
        LinkSpec(loss=2)


def test_device_profile_links_are_used_when_a_profile_is_given():
    pytest.importorskip("yaml")
    wifi = get_link("wifi", "rpi4")
    assert (wifi.rtt_ms, wifi.loss) == (20.0, 0.005)


def test_token_bucket_caps_the_rate_on_media_time():
    b = TokenBucket(rate_per_s=4.5, burst=3)
    taken = sum(b.take(i * 1000 / 30) for i in range(300))  # 10 s at 30 fps
    assert 45 <= taken <= 48  # 4.5/s for 10 s plus the initial burst


def test_backoff_doubles_with_jitter_and_resets():
    b = Backoff(0.1, 1.0, seed=0)
    delays = [b.fail() for _ in range(6)]
    assert all(0.05 <= d <= 1.0 for d in delays) and delays[-1] >= 0.5
    assert not b.available()
    b.ok()
    assert b.available() and b.failures == 0
    assert b.fail(retry_after_s=0.8) >= 0.8


def test_latency_stats_ewma_and_percentiles():
    s = LatencyStats(window=100, alpha=0.5)
    for v in range(1, 101):
        s.add(v)
    assert s.percentile(50) == pytest.approx(50.5) and s.percentile(99) == pytest.approx(99.01)
    assert s.ewma == pytest.approx(99.0, abs=0.01)
    assert np.isnan(LatencyStats().percentile(90))


def test_budget_tracker_counts_deadline_misses():
    t = BudgetTracker(33.0)
    for v in [10, 20, 40, 30, 50]:
        t.record(v, {"edge": v / 2})
    s = t.summary()
    assert (s["frames"], s["deadline_misses"], s["within_budget"]) == (5, 2, 0.6)
    assert s["stages_ms"]["edge"]["count"] == 5


def test_keyframe_controller_raises_k_on_misses_and_lowers_it_when_clear():
    c = KeyframeController(30.0, KeyframeConfig(cooldown=10, window=20))
    for i in range(200):  # every 5th keyframe misses: 20 % > 1 %
        key = c.is_keyframe()
        c.update(45.0 if key and i % 5 == 0 else 10.0, keyframe=key)
    assert c.k == 4 and c.changes[0][1] == 2
    for _ in range(400):
        key = c.is_keyframe()
        c.update(10.0, keyframe=key)
    assert c.k == 1


def test_keyframe_controller_ignores_a_single_outlier():
    c = KeyframeController(30.0, KeyframeConfig(cooldown=10, window=20))
    c.update(100.0, keyframe=True)
    for _ in range(100):
        c.update(10.0, keyframe=c.is_keyframe())
    assert c.k == 1 and c.changes == []


def test_options_validate_with_the_field_named():
    with pytest.raises(ValueError, match=r"PolicyConfig.leave \(0.6\) must be < enter \(0.5\)"):
        PolicyConfig(leave=0.6)
    with pytest.raises(ValueError, match="KeyframeConfig.k_max must be an int >= k_min \\(2\\), got 1"):
        KeyframeConfig(k_min=2, k_max=1)
    with pytest.raises(ValueError, match="ClientOptions.workers must be an int >= 1, got 0"):
        ClientOptions(workers=0)


def test_hard_frame_score_rises_with_low_confidence_few_keypoints_motion_and_loss():
    sure = np.full(17, 0.8)
    assert hard_frame_score(sure) == 0.0
    assert hard_frame_score(None) == 1.0
    weak = np.full(17, 0.2)
    assert hard_frame_score(weak) > 0.6
    assert hard_frame_score(sure, box_size=100, motion_px=20) == pytest.approx(0.2)
    assert hard_frame_score(sure, box_size=100, sigma=np.full(17, 10.0)) == pytest.approx(0.5)


def test_policy_hysteresis_enters_high_and_leaves_low():
    p = OffloadPolicy(PolicyConfig(mode="threshold", enter=0.5, leave=0.3))
    kps = np.zeros((17, 2))
    easy, hard, mid = np.full(17, 0.8), np.full(17, 0.2), np.array([0.2] * 7 + [0.45] * 10)
    assert 0.3 < hard_frame_score(mid) < 0.5  # between the thresholds
    states = [p.update(kps, s, box_size=100) for s in (easy, mid, hard, mid, mid, easy, mid)]
    assert states == [False, False, True, True, True, False, False]


def test_policy_fits_only_when_the_predicted_answer_fits_the_time_left():
    p = OffloadPolicy(PolicyConfig(margin_ms=3.0))
    est = NetworkEstimate(get_link("lte"), server_prior_ms=10.0)
    predicted = est.predict_ms(12_000)  # 50 + 10 jitter + 19.2 transfer + 0.1 down + 10 server
    assert predicted == pytest.approx(89.32, abs=0.05)
    assert not p.fits(66.0, predicted) and p.skipped_no_fit == 1
    for _ in range(20):
        est.observe(network_ms=19.2 + 5.0, up_bytes=12_000, server_ms=30.0)
    assert est.predict_ms(12_000) == pytest.approx(5.0 + 19.2 + 0.12 + 30.0, abs=0.1)
    assert p.fits(66.0, est.predict_ms(12_000))


def _stream(policy, scores_per_frame, kps=None):
    kps = np.zeros((17, 2)) if kps is None else kps
    hard = []
    for sc in scores_per_frame:
        policy.tick()
        hard.append(policy.update(kps, sc, box_size=100) and policy.allow())
    return np.array(hard)


def test_rate_policy_offloads_about_its_target_share_on_easy_and_hard_clips_alike():
    rng = np.random.default_rng(0)
    rate, fixed = {}, {}
    for level in (0.55, 0.3):  # an easy clip (mean keypoint score near 0.55) and a hard one (near 0.3)
        frames = [np.clip(rng.normal(level, 0.1, 17), 0, 1) for _ in range(600)]
        rate[level] = _stream(OffloadPolicy(PolicyConfig(target_rate=0.05, leave_rate=0.10)), frames).mean()
        fixed[level] = _stream(OffloadPolicy(PolicyConfig(mode="threshold")), frames).mean()
    assert all(0.04 <= v <= 0.08 for v in rate.values()), rate  # hysteresis stretches hard stretches a little
    assert fixed[0.55] == 0.0 and fixed[0.3] > 0.1, fixed  # a fixed threshold: all or nothing per clip


def test_rate_policy_thresholds_follow_the_running_quantiles():
    p = OffloadPolicy(PolicyConfig(target_rate=0.1, leave_rate=0.2, window=100, warmup=10))
    assert p.thresholds() == (1.0, 1.0)  # not warmed up: only a lost pose is hard
    for v in np.linspace(0.0, 0.99, 100):
        p._scores.append(float(v))
    enter, leave = p.thresholds()
    assert enter == pytest.approx(np.quantile(np.linspace(0.0, 0.99, 100), 0.9))
    assert leave == pytest.approx(np.quantile(np.linspace(0.0, 0.99, 100), 0.8)) and leave < enter
    p.rate_scale = 0.5  # the controller backs off: the target halves
    assert p.thresholds()[0] == pytest.approx(np.quantile(np.linspace(0.0, 0.99, 100), 0.95))


def test_a_lost_pose_is_hard_even_before_the_policy_has_warmed_up():
    p = OffloadPolicy(PolicyConfig())
    assert p.update(None, None) is True and p.score == 1.0


def test_the_share_cap_holds_when_every_frame_is_hard():
    p = OffloadPolicy(PolicyConfig(mode="threshold", enter=0.01, leave=0.005, max_share=0.15, burst=3))
    hard = _stream(p, [np.full(17, 0.1)] * 400)
    assert hard.sum() <= 0.15 * 400 + 3 and hard.sum() >= 0.15 * 400 - 1
    assert p.skipped_cap > 0


def test_the_share_cap_holds_on_a_short_clip_at_every_point_after_the_first_offload():
    p = OffloadPolicy(PolicyConfig(mode="threshold", enter=0.01, leave=0.005, max_share=0.15, burst=3))
    hard = []
    for _ in range(65):  # pose_squats: 65 frames; decide, then tick, as CloudEdgeRuntime.push does
        hard.append(p.update(np.zeros((17, 2)), np.full(17, 0.1), box_size=100) and p.allow())
        p.tick()
    hard = np.array(hard)
    assert hard[0]  # the first frame may go (the acquisition)
    sent = np.cumsum(hard)
    n = np.arange(1, 66)
    assert np.all((sent <= 0.15 * n + 1e-9) | (sent == 1))
    assert sent[-1] == int(0.15 * 65)


def test_uplink_is_re_estimated_from_requests_of_different_sizes():
    nominal = LinkSpec("t", uplink_mbps=20.0, downlink_mbps=100.0, rtt_ms=30.0)
    est = NetworkEstimate(nominal)
    for i in range(12):  # the real uplink is 5 Mbit/s: 8 KB = 12.8 ms, 16 KB = 25.6 ms
        nbytes = 8000 if i % 2 else 16000
        est.observe(network_ms=30.0 + nbytes * 8 / 5e3, up_bytes=nbytes, server_ms=10.0)
    assert est.uplink_fitted and est.uplink_mbps == pytest.approx(5.0, rel=0.01)
    assert est.predict_ms(16000) == pytest.approx(30.0 + 25.6 + 0.024 + 10.0, abs=1.0)
    same = NetworkEstimate(nominal)
    for _ in range(12):  # one size only: rate and RTT cannot be told apart; the nominal rate stays
        same.observe(network_ms=60.0, up_bytes=12000, server_ms=10.0)
    assert not same.uplink_fitted and same.uplink_mbps == 20.0


def test_rate_controller_shrinks_the_crop_then_the_rate_when_answers_are_late_and_recovers():
    c = OffloadRateController(OffloadControlConfig(window=4, cooldown=4, min_scale=0.25))
    for _ in range(8):  # late on a slow uplink (upload = 40 % of the answer time)
        c.record("late", transfer_share=0.4)
    assert (c.crop_size, c.rate_scale) == (160, 1.0)  # 256 -> 192 -> 160
    for _ in range(12):
        c.record("late", transfer_share=0.4)
    assert c.rate_scale == 0.25  # then 1 -> 0.5 -> 0.25, no lower
    for _ in range(16):
        c.record("on_time", transfer_share=0.4)
    assert (c.crop_size, c.rate_scale) == (256, 1.0)  # undone in reverse order
    assert [ch[1:] for ch in c.changes][:4] == [(192, 1.0), (160, 1.0), (160, 0.5), (160, 0.25)]


def test_rate_controller_keeps_the_crop_when_the_upload_is_a_small_part_and_probes_unfit_requests():
    c = OffloadRateController(OffloadControlConfig(window=4, cooldown=4, probe_every=2))
    for _ in range(8):
        c.record("unfit", transfer_share=0.02)  # fast Wi-Fi: a smaller crop would not help
    assert (c.crop_size, c.rate_scale) == (256, 0.25)
    for _ in range(8):
        c.record("unfit", transfer_share=0.02)
    assert c.rate_scale == 0.25  # min_scale: offloads go on at a quarter of the rate
    assert [c.probe() for _ in range(4)] == [True, False, True, False]
    assert OffloadRateController(OffloadControlConfig(probe_every=0)).probe() is False


def test_new_options_validate_with_the_field_and_the_choices_named():
    with pytest.raises(ValueError, match="PolicyConfig.mode 'fixed' is not one of rate, threshold"):
        PolicyConfig(mode="fixed")
    with pytest.raises(ValueError, match=r"PolicyConfig.leave_rate \(0.05\) must be >= target_rate \(0.1\)"):
        PolicyConfig(target_rate=0.1, leave_rate=0.05)
    with pytest.raises(ValueError, match="PolicyConfig.max_share must be in \\[0, 1\\], got 1.5"):
        PolicyConfig(max_share=1.5)
    with pytest.raises(ValueError,
                       match="OffloadControlConfig.crop_sizes must be ints in \\[32, 1024\\], largest first"):
        OffloadControlConfig(crop_sizes=(160, 256))
    with pytest.raises(ValueError, match="outcome 'slow' is not one of on_time, late, lost, unfit"):
        OffloadRateController().record("slow")
