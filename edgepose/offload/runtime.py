"""CloudEdgeRuntime: a video-mode PoseEstimator plus offload, budget and keyframe control.

Two ways to drive it:

* **Pipelined** (:meth:`CloudEdgeRuntime.push` / :meth:`~CloudEdgeRuntime.poll` /
  :meth:`~CloudEdgeRuntime.flush`): ``push`` runs the edge model on the frame at once and never
  waits on the network; an offloaded frame's result is *held* for at most the declared result
  delay (``RuntimeOptions.result_delay_ms``, bounded so the frame still meets its budget) while
  the next frames are taken in. Results come out of ``push`` / ``poll`` in input order, exactly
  one per input frame: a held frame is released with the cloud pose as soon as the answer
  arrives, or with its edge pose when the hold runs out. This is how a live app keeps both the
  frame rate and the cloud answers.
* **Synchronous** (:meth:`CloudEdgeRuntime.process`): push one frame and wait for its result
  (at most the hold). Simple, but the caller's frame loop waits with it.

Per keyframe: the edge model runs (``Source.EDGE``; frames between keyframes are propagated,
``Source.PROPAGATED``); the policy scores how hard the frame is; when it is among the hardest
(``PolicyConfig.mode = "rate"``: a running quantile), the share cap allows it and the predicted
answer time (smoothed network time + server p90 + the wait behind our own request still at the
server) fits the hold, the person crop (JPEG) goes to the server in the background. Inside a
hard stretch the crop is sent *before* the edge model runs (``RuntimeOptions.early_offload``),
so the answer has the edge time more to arrive in. The hold (:meth:`CloudEdgeRuntime.hold_ms`)
runs to the end of the budget less a margin and the measured release lateness, ending early only
when a later frame's edge run could still be going at that point. An
on-time answer becomes the frame's result (``Source.CLOUD``) and re-seeds the tracker; a late one
is counted and refreshes the network estimate (re-seeding from it is optional, off by default:
``late_reseed_ms``). Every result carries
``deadline_met`` (arrival to release within ``budget_ms``) and feeds the budget tracker, the
keyframe controller and the offload-rate controller (crop size and rate, from the on-time share).

The tracker hook (:mod:`edgepose.offload.answers`): :func:`reseed_estimator` calls
``PoseEstimator.reseed(keypoints, scores, image_size)``. Options: :class:`RuntimeOptions`
(:mod:`edgepose.offload.runtime_options`); statistics and controllers:
:mod:`edgepose.offload.timing`, :mod:`edgepose.offload.controllers`.

Identity: with ``EstimatorOptions(person_selection="nearest")`` an answer whose pose is of another
person than the one the tracker follows (``PoseEstimator.is_other_person``; e.g. the acquisition's
whole frame, where the server model picks whom it finds most salient) neither becomes the frame's
result nor re-seeds the tracker; ``summary()["identity_rejects"]`` counts them.

Collection samples (opt-in, ``RuntimeOptions.collect_interval_ms``): label-only crops for a
collecting server, never offloads (:mod:`edgepose.offload.samples`).
"""

from __future__ import annotations

import collections
import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from edgepose._optional import require
from edgepose.errors import ConfigError, EdgePoseError
from edgepose.models._crop import Roi, apply_affine, crop, invert_affine
from edgepose.offload.answers import cloud_pose, copy_pose, other_person, reseed_estimator, trace_row
from edgepose.offload.client import ClientOptions, OffloadClient, Pending
from edgepose.offload.controllers import KeyframeController, OffloadRateController
from edgepose.offload.netem import LinkSpec, get_link
from edgepose.offload.policy import NetworkEstimate, OffloadPolicy
from edgepose.offload.runtime_options import RuntimeOptions
from edgepose.offload.samples import CollectionSampler
from edgepose.offload.swap import ModelSwap
from edgepose.offload.timing import BudgetTracker, LatencyStats
from edgepose.protocol import IMAGE_BYTES, KEYPOINTS
from edgepose.types import Pose, PoseResult, Source

log = logging.getLogger(__name__)

@dataclass
class _Held:
    """A frame whose result is produced but not yet released."""

    result: PoseResult
    arrival: float  # perf_counter seconds
    due: float  # release at the latest (arrival when nothing is awaited)
    keyframe: bool
    src: int  # index of the keyframe its pose comes from
    pending: Pending | None = None


class CloudEdgeRuntime(ModelSwap):
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
            raise ConfigError("CloudEdgeRuntime.estimator must be in video mode; create it with "
                             "EstimatorOptions(running_mode='video')")
        if getattr(estimator, "delay", 0):
            raise ConfigError(f"CloudEdgeRuntime needs an estimator whose results are not delayed; its smoother "
                             f"declares {estimator.delay} frames: use a zero-delay smoother (e.g. 'one_euro')")
        self.estimator = estimator
        self.client = client
        self.options = options or RuntimeOptions()
        if link is None:
            link = client.emulator.link if client is not None and client.emulator is not None else get_link("loopback")
        self.policy = OffloadPolicy(self.options.policy)
        self.network = NetworkEstimate(link, server_prior_ms=self.options.policy.server_prior_ms)
        self.budget = BudgetTracker(self.options.budget_ms)
        self.controller = KeyframeController(self.options.budget_ms, self.options.keyframes)
        self.control = OffloadRateController(self.options.control)
        self.sources = {s.value: 0 for s in Source}
        self.late_reseeds = 0
        self.cloud_propagated = 0
        #: answers refused as another person than the tracked one (person_selection="nearest")
        self.identity_rejects = 0
        self._cv2 = require("cv2", "base", package="opencv-python-headless")
        self._step = LatencyStats(window=100)
        self._lateness = LatencyStats(window=100)
        self._period = LatencyStats(window=30, alpha=0.2)  # ms between frame arrivals
        self._last_arrival: float | None = None
        self._inflight: list[Pending] = []
        self._held: collections.deque[_Held] = collections.deque()
        self._last: PoseResult | None = None
        self._last_src = -1
        self._keys: list[tuple[int, np.ndarray]] = []
        self._index = 0
        self._owned: list = []
        self._trace: collections.deque = collections.deque(maxlen=1000)
        #: label-only collection samples (RuntimeOptions.collect_interval_ms); never offloads
        self.sampler = CollectionSampler(self.options.collect_interval_ms, client)

    @property
    def collection_samples(self) -> dict:
        """The collection samples' counters (:class:`~edgepose.offload.samples.CollectionSampler`)."""
        return self.sampler.counts

    @classmethod
    def create(cls, edge_model: str = "movenet-lightning-int8", *, server: str | None = "embedded",
               teacher: str = "movenet-thunder-fp32", link: str | LinkSpec = "loopback", profile=None,
               seed: int = 0, options: RuntimeOptions | None = None,
               client_options: ClientOptions | None = None, num_threads: int | None = None,
               server_threads: int | None = None, estimator_options=None,
               collect_interval_ms: float | None = None) -> "CloudEdgeRuntime":
        """Build estimator, (embedded) server and client in one call; the arguments are
        :func:`~edgepose.offload.factory.build_runtime`'s (which documents them)."""
        from edgepose.offload.factory import build_runtime

        return build_runtime(cls, edge_model, server=server, teacher=teacher, link=link, profile=profile, seed=seed,
                             options=options, client_options=client_options, num_threads=num_threads,
                             server_threads=server_threads, estimator_options=estimator_options,
                             collect_interval_ms=collect_interval_ms)

    # -- driving it ----------------------------------------------------------------------------
    def push(self, image: np.ndarray, timestamp_ms: int, *, arrival_s: float | None = None) -> list[PoseResult]:
        """Take the next frame; never waits on the network.

        Args:
            image: (H, W, 3) uint8 RGB.
            timestamp_ms: media timestamp, increasing.
            arrival_s: ``time.perf_counter()`` when the frame arrived (default: now); its
                deadline is ``arrival_s + budget_ms``.

        Returns:
            The results released now (this frame's or earlier ones), in input order.
        """
        t_start = time.perf_counter()
        t_arr = t_start if arrival_s is None else float(arrival_s)
        if self._last_arrival is not None and t_arr > self._last_arrival:
            self._period.add((t_arr - self._last_arrival) * 1e3)
        self._last_arrival = t_arr
        ts = int(timestamp_ms)
        size = (image.shape[1], image.shape[0])
        out = self._release(t_start)
        self._apply_swap(self._index, ts)  # a queued model (request_swap) takes over from this frame
        self._collect(ts, size)
        self.sampler.finish(self._observe)
        key = self.controller.is_keyframe(force=self._last is None or not self._last.poses)
        timings: dict[str, float] = {}
        pending = None
        if not key:
            res = self._propagate(ts, size)
            src = self._last_src
        else:
            # in a hard stretch (the policy's state after the previous keyframe), send this frame's
            # crop (the tracker's ROI for it) before the edge model runs: the answer gains the
            # edge time; a frame that enters a hard stretch is sent after its edge pose is scored
            early = self.options.early_offload and self.policy.hard
            if early:
                pending = self._maybe_offload(image, ts, t_arr)
            t0 = time.perf_counter()
            res = self.estimator.detect_for_video(image, ts)
            timings = dict(res.timings_ms)
            timings["edge"] = (time.perf_counter() - t0) * 1e3
            p = res.pose
            box = max(p.box[2] - p.box[0], p.box[3] - p.box[1]) if p is not None else 1.0
            self.policy.update(None if p is None else p.keypoints, None if p is None else p.scores,
                               box_size=box, sigma=None if p is None else p.sigma)
            if not early:
                pending = self._maybe_offload(image, ts, t_arr)
            if self.sampler.on:
                busy = pending is not None or any(not p.done() for p in self._pending())
                self.sampler.maybe_send(ts, busy=busy, encode=lambda: self._crop_jpeg(image))
            src = self._index
        self.policy.tick()
        res.frame_index = self._index
        res.timings_ms = timings
        self._index += 1
        if key and res.pose is not None:
            self._keys = (self._keys + [(ts, res.pose.keypoints.copy())])[-2:]
        self._last, self._last_src = res, src
        due = pending.deadline_s if pending is not None and getattr(pending, "hold", True) else t_arr
        self._held.append(_Held(res, t_arr, due, key, src, pending))
        self._step.add((time.perf_counter() - t_start) * 1e3)
        return out + self._release(time.perf_counter())

    def poll(self, timeout_s: float = 0.0) -> list[PoseResult]:
        """Results that are ready, in order; waits at most ``timeout_s`` for the first one."""
        end = time.perf_counter() + max(0.0, float(timeout_s))
        while True:
            now = time.perf_counter()
            out = self._release(now)
            if out or now >= end:
                return out
            if not self._held:
                time.sleep(end - now)
                return []
            head = self._held[0]
            wait = min(end, head.due) - now
            if head.pending is not None:
                head.pending.wait(wait)
            else:
                time.sleep(max(0.0, wait))

    def next_due(self) -> float | None:
        """``time.perf_counter()`` by which the oldest held frame will be released (None: none held)."""
        return self._held[0].due if self._held else None

    def flush(self) -> list[PoseResult]:
        """Release every held frame (waiting at most until each one's due time), in order."""
        out: list[PoseResult] = []
        while self._held:
            out += self.poll(max(0.0, self._held[0].due - time.perf_counter()) + 1e-3)
        return out

    def process(self, image: np.ndarray, timestamp_ms: int, *, arrival_s: float | None = None) -> PoseResult:
        """Synchronous: push one frame and wait (at most its hold) for its result.

        The caller's frame loop waits with it; :meth:`push` / :meth:`poll` do not.
        """
        if self._held:
            raise EdgePoseError(f"process() called with {len(self._held)} frame(s) still held from push(); "
                                "call flush() first, or keep using push()/poll()")
        out = self.push(image, timestamp_ms, arrival_s=arrival_s)
        while not out:
            out = self.poll(max(0.0, self._held[0].due - time.perf_counter()) + 1e-3)
        return out[-1]

    # -- internals -------------------------------------------------------------------------------
    def hold_ms(self) -> float:
        """The hold an offloaded frame gets now: the declared delay within what the budget allows.

        A held frame is released by ``push`` (at its start) or ``poll``; one that falls due while
        the loop is inside the edge model of a later frame comes out only when that ``push``
        returns. With the frame period known (the smoothed gap between arrivals), the hold runs
        up to ``budget - margin - lateness`` unless a later frame's ``push`` (p99 of a push) could
        end past that point; then it ends just before that frame arrives (``push`` releases it
        first). Without a period yet, the p99 of a push is kept back as a whole. Measured
        lateness of releases (p90) is kept back either way.
        """
        o = self.options
        end = o.budget_ms - o.policy.margin_ms
        room = end - self._lateness.percentile(90, default=0.0)
        step = self._step.percentile(99, default=10.0)
        period = self._period.percentile(10) if self._period.count >= 2 else math.nan
        if not math.isfinite(period) or period <= step:
            room -= step
        else:
            k = 1
            while k * period < room:
                if k * period + step > end:
                    room = k * period - 1.0
                    break
                k += 1
        d = room if o.result_delay_ms is None else min(o.result_delay_ms, room)
        return max(0.0, d)

    def _crop_jpeg(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The tracker's ROI (the whole frame without one) cropped to the controller's crop size and
        JPEG-encoded: (JPEG bytes as uint8, crop -> frame affine), or None when encoding fails."""
        cv2, s = self._cv2, self.control.crop_size
        roi = self.estimator.roi or Roi.full_frame(image.shape[1], image.shape[0])
        patch, m = crop(image, roi, s, s)
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(patch, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, self.options.jpeg_quality])
        return (jpg, m) if ok else None

    def _maybe_offload(self, image: np.ndarray, ts: int, t_arr: float) -> Pending | None:
        if self.client is None or not self.policy.hard or not self.client.available():
            return None
        if not self.policy.has_token():
            self.policy.skipped_cap += 1
            return None
        enc = self._crop_jpeg(image)
        if enc is None:
            return None
        jpg, m = enc
        nbytes = len(jpg) + 200
        due = t_arr + self.hold_ms() / 1e3
        wait = self._server_wait_ms()
        predicted = self.network.predict_ms(nbytes) + wait
        share = self.network._up_ms(nbytes) / max(predicted, 1e-6)
        # the hold already keeps the margin back from the budget: count it once
        left = (due - time.perf_counter()) * 1e3 + self.options.policy.margin_ms
        fits = self.policy.fits(left, predicted)
        # a probe is held when its typical (server p50) answer time fits: an even chance of being on time
        hold = fits or self.network.predict_ms(nbytes, server_q=50) + wait <= left - self.options.policy.margin_ms
        if not fits and not self.control.probe():
            self._outcome("unfit", transfer_share=share)
            return None
        if not self.policy.allow():
            return None
        arr = np.empty(1, dtype=object)
        arr[0] = jpg.tobytes()
        p = self.client.submit({IMAGE_BYTES: arr}, deadline_s=due, now_ms=ts, tag=(m, ts, share))
        if p is not None:
            # a probe that cannot make it (e.g. LTE: ~130 ms against a 67 ms budget) only re-measures
            # the link: its frame is not held
            p.hold = hold
        return p

    def _server_wait_ms(self) -> float:
        """How long a request sent now would queue behind ours still in flight at the server.

        The server runs one inference per core; on a small server a second one at once slows
        both. Sent at ``t`` with the same link, an earlier request's inference ends about
        ``t_submit + server p90`` after the new one's would start: the difference is the wait.
        """
        now = time.perf_counter()
        server = self.network.server.percentile(90, default=self.options.policy.server_prior_ms)
        # a collection sample in flight holds a server slot too
        waits = [(p.t_submit - now) * 1e3 + server for p in self._pending() + self.sampler.pending if not p.done()]
        return max([0.0, *waits])

    def _pending(self):
        return [h.pending for h in self._held if h.pending is not None] + self._inflight

    def _outcome(self, outcome: str, *, transfer_share: float) -> None:
        self.control.record(outcome, transfer_share=transfer_share)
        self.policy.rate_scale = self.control.rate_scale

    def _observe(self, p: Pending) -> None:
        r = p.reply
        self.network.observe(max(0.0, r.rtt_ms - r.server_ms), p.up_bytes, r.server_ms)

    def _collect(self, ts: int, size) -> None:
        """Finished requests whose frame was released without them: count, learn, maybe re-seed."""
        keep = []
        for p in self._inflight:
            if not p.done():
                keep.append(p)
                continue
            r = p.reply
            m, pts, share = p.tag
            if r.status not in ("ok", "late"):
                self._outcome("lost", transfer_share=share)
                continue
            self._outcome("late", transfer_share=share)
            self._observe(p)
            if self.options.late_reseed_ms > 0 and ts - pts <= self.options.late_reseed_ms:
                kps = apply_affine(invert_affine(m), r.outputs[KEYPOINTS][0][:, :2]).astype(np.float32)
                sc = r.outputs[KEYPOINTS][0][:, 2]
                if other_person(self.estimator, kps, sc, size):
                    self.identity_rejects += 1
                    continue
                reseed_estimator(self.estimator, kps, sc, size)
                self.late_reseeds += 1
        self._inflight = keep

    def _release(self, now: float) -> list[PoseResult]:
        out = []
        while self._held:
            h = self._held[0]
            p = h.pending
            if p is not None and not p.done() and now < h.due:
                break
            self._held.popleft()
            res = h.result
            if p is not None:
                if getattr(p, "hold", True):
                    self._lateness.add(max(0.0, now - h.due) * 1e3)
                self._trace.append((h.result.frame_index, h.arrival, h.due, now, p))
                if p.done() and p.reply.status == "ok":
                    p.consumed = True
                    self._observe(p)
                    self._outcome("on_time", transfer_share=p.tag[2])
                    cloud = self._cloud_result(p.reply.outputs[KEYPOINTS][0], p.tag[0], res)
                    if cloud is not None:
                        res = cloud
                        self._propagate_cloud(h.src, cloud)
                else:
                    self._inflight.append(p)  # late, lost or failed: _collect counts it
            latency = (now - h.arrival) * 1e3
            res.timings_ms["hold"] = max(0.0, (now - h.arrival) * 1e3 - res.timings_ms.get("edge", 0.0))
            res.timings_ms["latency"] = latency
            res.deadline_met = self.budget.record(latency, {k: v for k, v in res.timings_ms.items()
                                                            if k in ("edge", "hold", "latency")})
            self.controller.update(latency, keyframe=h.keyframe)
            self.sources[res.source.value] += 1
            out.append(res)
        return out

    def _cloud_result(self, out: np.ndarray, m: np.ndarray, edge: PoseResult) -> PoseResult | None:
        pose, other = cloud_pose(self.estimator, out, m, edge.image_size)
        if other:
            self.identity_rejects += 1  # another person than the tracked one: keep the edge pose
        if pose is None:
            return None
        reseed_estimator(self.estimator, pose.keypoints, pose.scores, edge.image_size)
        return PoseResult([pose], edge.timestamp_ms, edge.frame_index, edge.image_size, Source.CLOUD,
                          dict(edge.timings_ms))

    def _propagate_cloud(self, src: int, cloud: PoseResult) -> None:
        """Frames propagated from a keyframe that got a cloud answer carry the cloud pose."""
        for h in self._held:
            if h.src == src and not h.keyframe:
                h.result.poses = [copy_pose(p) for p in cloud.poses]
                self.cloud_propagated += 1
        if self._last_src == src and self._last is not None and self._last.frame_index != cloud.frame_index:
            self._last.poses = [copy_pose(p) for p in cloud.poses]
        elif self._last_src == src:
            self._last = cloud

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

    def offload_trace(self) -> list[dict]:
        """Per offloaded frame (the last 1000), times in ms from the frame's arrival.

        ``submit``: request queued; ``due``: the hold deadline; ``answer``: the reply came back
        (None: not yet); ``released``: the frame's result went out; ``up`` / ``http`` / ``down``:
        emulated uplink, real HTTP exchange (holds ``server``: the server's own time, of which
        ``infer`` is the model), emulated downlink; ``queue``: waited for a client worker.
        """
        return [trace_row(*t) for t in self._trace]

    # ------------------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Frames per source, offload counters, budget statistics, controller state, collection samples.

        ``collection_samples``: ``sent`` (= ``answered`` + ``failed`` + ``in_flight``), ``skipped_busy``
        (due keyframes that could not send one), ``offloads_refused`` (offloads the client refused
        because a sample held one of its request slots)."""
        n = max(1, self.budget.frames)
        out = {"frames": self.budget.frames, "sources": dict(self.sources),
               "cloud_share": self.sources["cloud"] / n, "keyframe_interval": self.controller.k,
               "keyframe_changes": list(self.controller.changes), "late_reseeds": self.late_reseeds,
               "cloud_propagated": self.cloud_propagated, "identity_rejects": self.identity_rejects,
               "hold_ms": round(self.hold_ms(), 1),
               "policy": {"mode": self.policy.config.mode,
                          "thresholds": [round(v, 4) for v in self.policy.thresholds()],
                          "skipped_no_fit": self.policy.skipped_no_fit, "skipped_cap": self.policy.skipped_cap},
               "policy_no_fit": self.policy.skipped_no_fit, "control": self.control.summary(),
               "network": self.network.summary(), "budget": self.budget.summary(), "swaps": list(self.swaps)}
        out["collection_samples"] = self.sampler.summary(self._observe)
        if self.client is not None:
            out["client"] = dict(self.client.stats)
            out["offload_share"] = self.client.stats["submitted"] / n
            if self.client.emulator is not None:
                out["link"] = self.client.emulator.link.name
        return out

    def close(self) -> None:
        """Close the client, the estimator and an embedded server. Idempotent."""
        if self.client is not None:
            self.client.close()  # waits for the requests in flight, samples included
            self.sampler.finish(self._observe, final=True)
        self.estimator.close()
        self._close_retired()
        for s in self._owned:
            s.stop(close_models=True)
        self._owned = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
