"""A suite's ``peers:`` entries: a peer runtime beside edgepose models, interleaved per frame (issue 23).

Each entry (:class:`~edgepose.bench.suite.PeerCaseSpec`) opens its edgepose models in
:class:`~edgepose.bench.peers.compare.EdgePipeline` and the peer in a
:class:`~edgepose.bench.peers.compare.PeerPipeline` (its own virtualenv, over a pipe), all at the
entry's thread count, and runs every clip through :func:`~edgepose.bench.peers.compare.run_video`:
every frame goes through every pipeline before the next is decoded, the order rotating per
frame, so the latency ratio to the peer is taken per frame (per round). This module is glue: the
timing loop, the metrics and the ratios are compare.py's.

:func:`check_peers` runs before any timing starts: an unknown peer, a missing peer environment
(:class:`~edgepose.bench.peers.PeerEnvMissingError`, naming the setup command), a missing clip
or model file all fail there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

log = logging.getLogger(__name__)

#: The name an edgepose pipeline gets in a peers row.
EDGE_PREFIX = "edgepose "


@dataclass
class PeerRun:
    """A ``peers:`` entry with its files resolved (by :func:`check_peers`)."""

    spec: object  # PeerCaseSpec
    clips: list[Path]
    model_dir: Path | None


def check_peers(suite, options) -> list[PeerRun]:
    """Resolve every ``peers:`` entry of ``suite`` without timing anything.

    Raises:
        PeerEnvMissingError: a peer's virtualenv is missing (the message names the setup command).
        UnknownNameError: an unknown peer (a suite loaded before a registry change).
        SourceError / ModelLoadError: a clip or a model file is not found.
    """
    from edgepose.bench.peers import env_python, get_peer
    from edgepose.bench.video_case import _clip_path
    from edgepose.models import find_file, get_card

    model_dir = Path(options.assets) / "models" if options.assets else None
    out = []
    for spec in suite.peers:
        env_python(get_peer(spec.peer).env.name)
        for m in spec.against:
            for f in get_card(m).files:
                find_file(f, model_dir)
        clips = [_clip_path(SimpleNamespace(clip=c), suite, options.assets) for c in spec.clips]
        out.append(PeerRun(spec, clips, model_dir))
    return out


def _pooled(raw: list[dict], names: list[str], base: str) -> dict:
    """Latency, CPU and the per-frame ratio to ``base`` over every clip's frames."""
    out = {}
    b = np.concatenate([r["ms"][base] for r in raw])
    for n in names:
        lat = np.concatenate([r["ms"][n] for r in raw])
        cpu = np.concatenate([r["cpu_ms"][n] for r in raw])
        row = {"frames": int(lat.size),
               "latency_ms": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                              "mean": float(lat.mean())},
               "cpu_ms": {"mean": float(cpu.mean())}, "ratio": None}
        if n != base:
            r = lat / b
            row["ratio"] = {"vs": base, "median": float(np.median(r)), "p25": float(np.percentile(r, 25)),
                            "p75": float(np.percentile(r, 75)), "rounds": int(r.size)}
        out[n] = row
    return out


def run_peer_entry(ctx, run: PeerRun) -> dict:
    """Run one ``peers:`` entry; returns its JSON row (benchmarks/README.md, "Result JSON")."""
    from edgepose.bench.emulator import MEASURED
    from edgepose.bench.peers import get_peer
    from edgepose.bench.peers.compare import EdgePipeline, PeerPipeline, common_frame_jitter, run_video, warm_up
    from edgepose.video.sources import VideoFileSource

    spec = run.spec
    t = spec.threads
    pipes = [PeerPipeline(spec.peer, spec.peer, threads=t)]
    try:
        pipes += [EdgePipeline(EDGE_PREFIX + m, m, threads=t, model_dir=run.model_dir) for m in spec.against]
        names = [p.name for p in pipes]
        with VideoFileSource(run.clips[0], max_frames=1) as src:
            first = next(iter(src)).image
        warm_up(pipes, first, modes=("video", "image") if _want_images(ctx, spec) else ("video",))
        clips, raw = [], []
        for clip in run.clips:
            samples: dict = {}
            res = run_video(pipes, clip, max_frames=spec.frames, baseline=spec.peer, raw=samples)
            res["path"] = str(clip)
            res["jitter_common_frames"] = common_frame_jitter(samples["tracks"], names)
            log.info("peers %s: %s, %d frames in %.1f s", spec.name, res["clip"], res["frames"], res["seconds"])
            clips.append(res)
            raw.append(samples)
        images = _images(ctx, pipes) if _want_images(ctx, spec) else None
        info = {k: v for k, v in pipes[0].proc.info.items() if k not in ("ok", "op")}
    finally:
        for p in pipes:
            p.close()
    return {"id": spec.name, "peer": spec.peer, "peer_description": get_peer(spec.peer).description,
            "peer_info": info, "baseline": spec.peer, "threads": t, "frames_per_clip": spec.frames,
            "pipelines": {p.name: {"kind": p.kind, "model": getattr(p, "card", spec.peer)} for p in pipes},
            "profile": "host", "kind": MEASURED, "clips": clips, "pooled": _pooled(raw, names, spec.peer),
            "images": images, "versions": ctx.versions, "status": "ok"}


def _want_images(ctx, spec) -> bool:
    acc = ctx.options.accuracy
    return spec.accuracy if acc is None else bool(acc and spec.accuracy)


def _images(ctx, pipes) -> dict:
    """Image mode on the evaluation set (each pipeline detects on the full image)."""
    from edgepose.bench.peers.compare import run_images
    from edgepose.eval.datasets import load_dataset, resolve_names

    people = [p for n in resolve_names(None) for p in load_dataset(n, ctx.data_root)]
    return run_images(pipes, people, progress=ctx.options.progress)


def jitter(clip: dict, name: str):
    """A clip's jitter figure for ``name``: its mean acceleration (px/frame^2, 13 shared joints)
    over the frames where every pipeline of the entry has a pose."""
    return clip.get("jitter_common_frames", {}).get(name)


__all__ = ["PeerRun", "check_peers", "run_peer_entry", "jitter", "EDGE_PREFIX"]
