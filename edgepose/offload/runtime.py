"""CloudEdgeRuntime: a video-mode PoseEstimator plus offload, budget and keyframe control.

Per frame, :meth:`CloudEdgeRuntime.process`:

1. propagates the last pose (``Source.PROPAGATED``) on frames between keyframes, or runs the
   edge model (``Source.EDGE``);
2. scores how hard the frame is; when the policy is in its hard state, the offload rate allows
   it and the predicted answer time fits the time left, sends the person crop (JPEG) to the
   server in the background;
3. waits for that answer at most until the frame's deadline (minus a margin), never longer:
   an on-time answer becomes the frame's result (``Source.CLOUD``) and re-seeds the tracker; a
   late one is dropped and counted (a young late answer still re-seeds the tracker);
4. stamps ``deadline_met`` (arrival to result within ``budget_ms``) and feeds the budget tracker
   and the keyframe controller.

The tracker hook: :func:`reseed_estimator` calls ``PoseEstimator.reseed(keypoints, scores,
image_size)`` (falling back to setting the private ``_roi`` on an estimator without it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from edgepose._optional import require
from edgepose.models._crop import Roi, apply_affine, crop, invert_affine
from edgepose.offload.budget import BudgetTracker, KeyframeConfig, KeyframeController
from edgepose.offload.client import ClientOptions, OffloadClient, Pending
from edgepose.offload.netem import LinkSpec, NetworkEmulator, get_link
from edgepose.offload.policy import NetworkEstimate, OffloadPolicy, PolicyConfig
from edgepose.server.served import IMAGE_BYTES, KEYPOINTS
from edgepose.types import Pose, PoseResult, Source
from edgepose.video.tracker import roi_from_keypoints

log = logging.getLogger(__name__)

_PROPAGATE = ("hold", "velocity")


@dataclass
class RuntimeOptions:
    """Options of :class:`CloudEdgeRuntime`.

    Attributes:
        budget_ms: per-frame latency budget, arrival to result. 66.7 = the rpi4 profile's
            15 fps frame budget; pass ``profile.frame_budget.frame_ms`` for another device.
        crop_size: side of the square crop sent to the server: the teacher's input (Thunder:
            256), so the server does no resampling.
        jpeg_quality: JPEG quality of the crop; 90 keeps a 256 px crop near 10-15 KB.
        wait_for_answer: wait (at most until the deadline) for an offloaded frame's answer;
            False never waits, answers then only re-seed the tracker for later frames.
        late_reseed_ms: a late answer for a frame at most this old (media time) still
            re-seeds the tracker; 0 disables.
        propagate: between keyframes, ``hold`` repeats the last pose, ``velocity`` extrapolates
            it from the last two keyframes (damped by half).
        keyframes: :class:`KeyframeConfig` of the keyframe-interval controller.
        policy: :class:`PolicyConfig` of the offload policy.
    """

    budget_ms: float = 1000.0 / 15.0
    crop_size: int = 256
    jpeg_quality: int = 90
    wait_for_answer: bool = True
    late_reseed_ms: float = 100.0
    propagate: str = "hold"
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def __post_init__(self):
        if not self.budget_ms > 0:
            raise ValueError(f"RuntimeOptions.budget_ms must be > 0, got {self.budget_ms!r}")
        if not isinstance(self.crop_size, int) or not 32 <= self.crop_size <= 1024:
            raise ValueError(f"RuntimeOptions.crop_size must be an int in [32, 1024], got {self.crop_size!r}")
        if not isinstance(self.jpeg_quality, int) or not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"RuntimeOptions.jpeg_quality must be an int in [1, 100], got {self.jpeg_quality!r}")
        if self.propagate not in _PROPAGATE:
            raise ValueError(f"RuntimeOptions.propagate {self.propagate!r} is not one of {', '.join(_PROPAGATE)}")


def reseed_estimator(estimator, keypoints: np.ndarray, scores: np.ndarray, image_size: tuple[int, int]) -> None:
    """Make the estimator's next crop follow ``keypoints`` (frame px, COCO-17)."""
    hook = getattr(estimator, "reseed", None)
    if callable(hook):
        hook(keypoints, scores, image_size)
        return
    roi = roi_from_keypoints(keypoints, scores, image_size)
    if roi is not None:
        estimator._roi = roi  # documented private hook until PoseEstimator.reseed exists


class CloudEdgeRuntime:
    """Runs a video-mode estimator with offloading under a latency budget.

    Args:
        estimator: a :class:`~edgepose.PoseEstimator` in video mode (the runtime owns it).
        client: an :class:`OffloadClient`, or None for edge only.
        link: the link the network estimate starts from (default: the client's emulated link,
            else loopback).
        options: :class:`RuntimeOptions`.
    """

    def __init__(self, estimator, *, client: OffloadClient | None = None, link: LinkSpec | None = None,
                 options: RuntimeOptions | None = None):
        from edgepose.estimator import RunningMode

        if estimator.options.running_mode != RunningMode.VIDEO:
            raise ValueError("CloudEdgeRuntime.estimator must be in video mode; create it with "
                             "EstimatorOptions(running_mode='video')")
        self.estimator = estimator
        self.client = client
        self.options = options or RuntimeOptions()
        if link is None:
            link = client.emulator.link if client is not None and client.emulator is not None else get_link("loopback")
        self.policy = OffloadPolicy(self.options.policy)
        self.network = NetworkEstimate(link, server_prior_ms=self.options.policy.server_prior_ms)
        self.budget = BudgetTracker(self.options.budget_ms)
        self.controller = KeyframeController(self.options.budget_ms, self.options.keyframes)
        self.sources = {s.value: 0 for s in Source}
        self.late_reseeds = 0
        self._cv2 = require("cv2", "base", package="opencv-python-headless")
        self._inflight: list[Pending] = []
        self._last: PoseResult | None = None
        self._keys: list[tuple[int, np.ndarray]] = []
        self._index = 0
        self._owned: list = []

    @classmethod
    def create(cls, edge_model: str = "movenet-lightning-int8", *, server: str | None = "embedded",
               teacher: str = "movenet-thunder-fp32", link: str | LinkSpec = "loopback", profile=None,
               seed: int = 0, options: RuntimeOptions | None = None,
               client_options: ClientOptions | None = None, num_threads: int | None = None) -> "CloudEdgeRuntime":
        """Build estimator, (embedded) server and client in one call.

        Args:
            edge_model: the on-device model card.
            server: ``"embedded"`` (serve ``teacher`` on loopback in this process), a server URL,
                or None (edge only).
            teacher: the served model name (and the embedded server's model).
            link: emulated link name (a preset, or a link of ``profile``) or a LinkSpec;
                ``none`` means no server.
            profile: device profile (name or DeviceProfile) for link figures and the budget.
            seed: network emulation seed.
        """
        from edgepose.estimator import EstimatorOptions, PoseEstimator
        from edgepose.server.app import PoseServer

        if profile is not None and isinstance(profile, str):
            from edgepose.profiles import load_profile

            profile = load_profile(profile)
        spec = link if isinstance(link, LinkSpec) else get_link(link, profile)
        if options is None and profile is not None:
            options = RuntimeOptions(budget_ms=profile.frame_budget.frame_ms)
        est = PoseEstimator(edge_model, options=EstimatorOptions(running_mode="video"), num_threads=num_threads)
        owned: list = []
        client = None
        if server is not None and spec.available:
            if server == "embedded":
                srv = PoseServer.embedded(teacher, num_threads=num_threads)
                owned.append(srv)
                server = srv.url
            copts = client_options or ClientOptions(model=teacher, seed=seed)
            emu = NetworkEmulator(spec, seed=seed) if spec.name != "loopback" or spec.rtt_ms else None
            client = OffloadClient(server, options=copts, emulator=emu)
        rt = cls(est, client=client, link=spec, options=options)
        rt._owned = owned
        return rt

    # ------------------------------------------------------------------------------------------
    def process(self, image: np.ndarray, timestamp_ms: int, *, arrival_s: float | None = None) -> PoseResult:
        """The result for the next frame; waits on the network at most until the frame's deadline.

        Args:
            image: (H, W, 3) uint8 RGB.
            timestamp_ms: media timestamp, increasing.
            arrival_s: ``time.perf_counter()`` when the frame arrived (default: now); the
                deadline is ``arrival_s + budget_ms``.
        """
        t_arr = time.perf_counter() if arrival_s is None else float(arrival_s)
        deadline = t_arr + self.options.budget_ms / 1e3
        ts = int(timestamp_ms)
        size = (image.shape[1], image.shape[0])
        self._collect(ts, size)
        key = self.controller.is_keyframe(force=self._last is None or not self._last.poses)
        timings: dict[str, float] = {}
        if not key:
            res = self._propagate(ts, size)
        else:
            t0 = time.perf_counter()
            res = self.estimator.detect_for_video(image, ts)
            timings = dict(res.timings_ms)
            timings["edge"] = (time.perf_counter() - t0) * 1e3
            p = res.pose
            box = max(p.box[2] - p.box[0], p.box[3] - p.box[1]) if p is not None else 1.0
            self.policy.update(None if p is None else p.keypoints, None if p is None else p.scores,
                               box_size=box, sigma=None if p is None else p.sigma)
            pending = self._maybe_offload(image, ts, deadline)
            if pending is not None and self.options.wait_for_answer:
                t1 = time.perf_counter()
                margin = self.options.policy.margin_ms / 1e3
                reply = pending.wait(deadline - margin - time.perf_counter())
                timings["offload_wait"] = (time.perf_counter() - t1) * 1e3
                if reply is not None and reply.status == "ok":
                    pending.consumed = True
                    self._observe(pending)
                    cloud = self._cloud_result(reply.outputs[KEYPOINTS][0], pending.tag[0], ts, size)
                    if cloud is not None:
                        res = cloud
        res.frame_index = self._index
        self._index += 1
        latency = (time.perf_counter() - t_arr) * 1e3
        timings["latency"] = latency
        res.timings_ms = timings
        res.deadline_met = self.budget.record(latency, {k: v for k, v in timings.items()
                                                        if k in ("edge", "offload_wait", "latency")})
        self.controller.update(latency, keyframe=key)
        self.sources[res.source.value] += 1
        if key and res.pose is not None:
            self._keys = (self._keys + [(ts, res.pose.keypoints.copy())])[-2:]
        self._last = res
        return res

    def _maybe_offload(self, image: np.ndarray, ts: int, deadline: float) -> Pending | None:
        if self.client is None or not self.policy.hard or not self.client.available():
            return None
        cv2, s = self._cv2, self.options.crop_size
        roi = self.estimator._roi or Roi.full_frame(image.shape[1], image.shape[0])
        patch, m = crop(image, roi, s, s)
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(patch, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, self.options.jpeg_quality])
        if not ok:
            return None
        remaining = (deadline - time.perf_counter()) * 1e3
        if not self.policy.fits(remaining, self.network.predict_ms(len(jpg) + 200)):
            return None
        arr = np.empty(1, dtype=object)
        arr[0] = jpg.tobytes()
        p = self.client.submit({IMAGE_BYTES: arr}, deadline_s=deadline - self.options.policy.margin_ms / 1e3,
                               now_ms=ts, tag=(m, ts))
        if p is not None:
            self._inflight.append(p)
        return p

    def _observe(self, p: Pending) -> None:
        r = p.reply
        self.network.observe(max(0.0, r.rtt_ms - r.server_ms), p.up_bytes, r.server_ms)

    def _collect(self, ts: int, size) -> None:
        """Handle finished requests not consumed on time: count, learn, maybe re-seed."""
        keep = []
        for p in self._inflight:
            if not p.done():
                keep.append(p)
                continue
            r = p.reply
            if p.consumed or r.status not in ("ok", "late"):
                continue
            self._observe(p)
            m, pts = p.tag
            if self.options.late_reseed_ms > 0 and ts - pts <= self.options.late_reseed_ms:
                kps = apply_affine(invert_affine(m), r.outputs[KEYPOINTS][0][:, :2]).astype(np.float32)
                reseed_estimator(self.estimator, kps, r.outputs[KEYPOINTS][0][:, 2], size)
                self.late_reseeds += 1
        self._inflight = keep

    def _cloud_result(self, out: np.ndarray, m: np.ndarray, ts: int, size) -> PoseResult | None:
        scores = out[:, 2].astype(np.float32)
        if float(scores.mean()) < self.estimator.options.min_pose_score:
            return None
        kps = apply_affine(invert_affine(m), out[:, :2]).astype(np.float32)
        ok = scores > 0.2
        box = (tuple(float(v) for v in (*kps[ok].min(0), *kps[ok].max(0))) if ok.sum() >= 2
               else (0.0, 0.0, float(size[0]), float(size[1])))
        reseed_estimator(self.estimator, kps, scores, size)
        pose = Pose(kps, scores, box, float(scores.mean()), track_id=0)
        return PoseResult([pose], ts, self._index, size, Source.CLOUD)

    def _propagate(self, ts: int, size) -> PoseResult:
        last = self._last
        poses = []
        for p in last.poses:
            kps = p.keypoints
            if self.options.propagate == "velocity" and len(self._keys) == 2 and self._keys[1][0] > self._keys[0][0]:
                (t0, k0), (t1, k1) = self._keys
                kps = (k1 + 0.5 * (k1 - k0) * (ts - t1) / (t1 - t0)).astype(np.float32)
            poses.append(Pose(kps.copy(), p.scores.copy(), p.box, p.score, sigma=p.sigma, track_id=p.track_id))
        return PoseResult(poses, ts, self._index, size, Source.PROPAGATED)

    # ------------------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Frames per source, offload counters, budget statistics, keyframe changes."""
        n = max(1, self.budget.frames)
        out = {"frames": self.budget.frames, "sources": dict(self.sources),
               "cloud_share": self.sources["cloud"] / n, "keyframe_interval": self.controller.k,
               "keyframe_changes": list(self.controller.changes), "late_reseeds": self.late_reseeds,
               "policy_no_fit": self.policy.skipped_no_fit, "budget": self.budget.summary()}
        if self.client is not None:
            out["client"] = dict(self.client.stats)
            out["offload_share"] = self.client.stats["submitted"] / n
            if self.client.emulator is not None:
                out["link"] = self.client.emulator.link.name
        return out

    def close(self) -> None:
        """Close the client, the estimator and an embedded server. Idempotent."""
        if self.client is not None:
            self.client.close()
        self.estimator.close()
        for s in self._owned:
            s.stop(close_models=True)
        self._owned = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
