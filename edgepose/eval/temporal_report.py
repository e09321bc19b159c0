"""The temporal evaluation of issue 7: jitter and accuracy of smoothing and sparse keyframes.

For each evaluation clip (:data:`edgepose.eval.temporal.EVAL_CLIPS`) the edge model runs in
video mode; its track is then post-processed by each method and scored against the clip's
reference with :func:`edgepose.eval.jitter.temporal_metrics`:

* ``raw``: every-frame edge model, no smoothing.
* ``one-euro default``: the estimator's One Euro filter with its default parameters (the SDK's
  default video pipeline, run end to end; the defaults were tuned on training clips).
* ``one-euro constrained``: One Euro with :data:`CONSTRAINED_ONE_EURO`, the accel-optimal
  setting of a finer grid among those adding <= 0.5 px of position error, chosen on the training
  clips (never these) and applied here with the estimator's scale (the ROI side of each frame).
  Both One Euro rows have zero delay, like ``learned d=0``.
* ``learned d=N``: the learned smoother online with a delay of N frames; ``learned offline``.
  ``learned[LABEL] d=N``: another smoother model (``TemporalEvalOptions.extra_smoothers``).
* ``keyframes k=K linear`` / ``recovery``: the model run on every K-th frame only (its ROI
  tracked from keyframe to keyframe, as deployed), the rest interpolated or recovered.

``ms/frame`` is the measured wall time per video frame: the model's calls (amortised over the
frames it covers) plus the temporal method's own time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from edgepose.assets import assets_dir
from edgepose.eval.jitter import temporal_metrics
from edgepose.eval.temporal import EVAL_CLIPS, cached_model_track, check_assets, reference_track
from edgepose.video.one_euro import OneEuroConfig
from edgepose.video.sources import video_size
from edgepose.video.tracks import one_euro_track, roi_sides
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)


#: The accel-optimal One Euro among settings whose mean position error is at most the raw
#: track's + 0.5 px, chosen on the training clips only (teacher tracks as reference, the
#: estimator's ROI side as scale; grid ``baselines.FINE_GRID``):
#: ``python -m edgepose.compression.temporal.baselines``.
#: Pooled over those clips: acceleration error 16.3 -> 6.5 px/frame^2, position 10.7 -> 11.1 px.
CONSTRAINED_ONE_EURO = OneEuroConfig(min_cutoff=0.5, beta=5.0, d_cutoff=2.0)


@dataclass
class TemporalEvalOptions:
    """What :func:`evaluate_temporal` runs.

    Attributes:
        clips: evaluation clip names (default: all of issue 7).
        model: the per-frame edge model card.
        delays: online delays (frames) of the learned smoother; 0 is zero-lag, like One Euro.
        offline: also run the learned smoother offline (centred windows).
        keyframe_intervals: k values of the sparse-keyframe runs.
        min_score: the smoother's uncertainty gating threshold (None: off).
        smoother_path / recovery_path: exported models (None: the shipped ones).
        cache_dir: where per-frame model tracks are cached (.npz); None recomputes.
        assets: the assets folder (None: :func:`edgepose.assets.assets_dir`, i.e. $EDGEPOSE_ASSETS).
        one_euro: the ``one-euro constrained`` baseline's parameters.
        extra_smoothers: ``{label: model path}``: more smoother models reported beside the
            shipped one (rows ``learned[label] d=N`` for the same delays).
    """

    clips: tuple[str, ...] = tuple(EVAL_CLIPS)
    model: str = "movenet-lightning-int8"
    delays: tuple[int, ...] = (0, 2, 4, 8)
    offline: bool = True
    keyframe_intervals: tuple[int, ...] = (3, 5)
    min_score: float | None = None
    smoother_path: str | None = None
    recovery_path: str | None = None
    cache_dir: str | None = "runs/temporal_tracks"
    assets: str | None = None
    one_euro: OneEuroConfig = field(default_factory=lambda: CONSTRAINED_ONE_EURO)
    extra_smoothers: dict[str, str] = field(default_factory=dict)


def _row(clip, method, delay, fps, pred, ref, ms) -> dict:
    m = temporal_metrics(pred, ref, fps)
    return {"clip": clip, "method": method, "delay_frames": delay,
            "delay_ms": round(1e3 * delay / fps, 1) if delay is not None else None,
            **m.to_dict(), "ms_per_frame": round(float(ms), 3)}


def _track(opts, model, video, **kw):
    if opts.cache_dir:
        return cached_model_track(opts.cache_dir, model, video, **kw)
    from edgepose.eval.temporal import run_model_track

    return run_model_track(model, video, **kw)


def evaluate_clip(name: str, opts: TemporalEvalOptions) -> list[dict]:
    """All rows of one clip."""
    from edgepose.eval.keyframes import KeyframeOptions, KeyframeRecovery
    from edgepose.video.smoother import LearnedSmoother, SmootherOptions

    clip = EVAL_CLIPS[name]
    root = check_assets(assets_dir(opts.assets, check=False))
    video = root / clip.video
    ref = reference_track(clip, assets=root, cache_dir=opts.cache_dir).astype(np.float64)
    kw = dict(start=clip.start, stop=clip.stop)
    raw = _track(opts, opts.model, video, **kw)
    fps = raw.fps
    if len(raw) != len(ref):
        raise ConfigError(f"{name}: model track has {len(raw)} frames, reference {len(ref)}")
    model_ms = float(np.nanmean(raw.infer_ms))
    times = np.arange(len(raw)) * 1000.0 / fps  # frame times (a prefiltered smoother needs them)
    rows = [_row(name, "raw", 0, fps, raw.keypoints, ref, model_ms)]
    oe = _track(opts, opts.model, video, smoothing=True, **kw)
    rows.append(_row(name, "one-euro default", 0, fps, oe.keypoints, ref, float(np.nanmean(oe.infer_ms))))
    scales = roi_sides(raw.keypoints, raw.scores, video_size(video))
    t0 = time.perf_counter()
    out = one_euro_track(raw.keypoints, fps, opts.one_euro, scales)
    ms = (time.perf_counter() - t0) * 1e3 / len(raw)
    rows.append(_row(name, "one-euro constrained", 0, fps, out, ref, model_ms + ms))
    rows[-1]["params"] = {"min_cutoff": opts.one_euro.min_cutoff, "beta": opts.one_euro.beta,
                          "d_cutoff": opts.one_euro.d_cutoff}
    models = [("learned", opts.smoother_path)] + [(f"learned[{k}]", v)
                                                  for k, v in opts.extra_smoothers.items()]
    for label, path in models:
        for d in opts.delays:
            with LearnedSmoother(SmootherOptions(model_path=path, delay=d,
                                                 min_score=opts.min_score)) as sm:
                t0 = time.perf_counter()
                out = sm.smooth_track(raw.keypoints, raw.scores, timestamps_ms=times)
                ms = (time.perf_counter() - t0) * 1e3 / len(raw)
            rows.append(_row(name, f"{label} d={d}", d, fps, out, ref, model_ms + ms))
    if opts.offline:
        with LearnedSmoother(SmootherOptions(model_path=opts.smoother_path,
                                             min_score=opts.min_score)) as sm:
            t0 = time.perf_counter()
            out = sm.smooth_track(raw.keypoints, raw.scores, timestamps_ms=times, offline=True)
            ms = (time.perf_counter() - t0) * 1e3 / len(raw)
        rows.append(_row(name, "learned offline", None, fps, out, ref, model_ms + ms))
    for k in opts.keyframe_intervals:
        sparse = _track(opts, opts.model, video, keyframe_interval=k, **kw)
        kf_ms = float(np.nansum(sparse.infer_ms)) / len(sparse)
        for method in ("linear", "learned"):
            with KeyframeRecovery(KeyframeOptions(interval=k, method=method,
                                                  model_path=opts.recovery_path)) as rec:
                t0 = time.perf_counter()
                out = rec.recover_track(sparse.keypoints)
                ms = (time.perf_counter() - t0) * 1e3 / len(sparse)
            label = "recovery" if method == "learned" else "linear"
            rows.append(_row(name, f"keyframes k={k} {label}", k - 1, fps, out, ref, kf_ms + ms))
    return rows


def evaluate_temporal(opts: TemporalEvalOptions | None = None) -> list[dict]:
    """Rows for every clip of ``opts`` (see the module docstring)."""
    opts = opts or TemporalEvalOptions()
    rows = []
    for name in opts.clips:
        rows += evaluate_clip(name, opts)
    return rows


_COLS = (("clip", "clip", "{}"), ("method", "method", "{}"), ("delay", "delay_frames", "{}"),
         ("accel err", "accel_error", "{:.2f}"), ("pos err px", "position_error", "{:.2f}"),
         ("HF px2", "hf_energy_error", "{:.2f}"), ("PCK@.2", "pck", "{:.1f}"),
         ("PCK@.05", "pck05", "{:.1f}"), ("ms/frame", "ms_per_frame", "{:.2f}"))


def format_table(rows: list[dict]) -> str:
    """A Markdown table of the rows."""
    head = "| " + " | ".join(c[0] for c in _COLS) + " |"
    sep = "|" + "|".join("---" for _ in _COLS) + "|"
    lines = [head, sep]
    for r in rows:
        cells = []
        for _, key, fmt in _COLS:
            v = r.get(key)
            cells.append("-" if v is None else fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
