"""Issue 7: where round E's learned smoother sits against every fixed-lag One Euro at d=2 (information only).

Round E (``temporal_equal_delay_gain.py``) is judged against ONE One Euro: the setting tuned on the
training clips. This asks the other question a user has: at the same added delay, is there ANY
fixed-lag One Euro (each of the 504 ``FINE_GRID`` settings x both fixed-lag methods) that is as
good in both metrics, even one tuned on the evaluation clip itself (an oracle: not deployable,
never a baseline, and nothing here selects or changes a model)? Per clip and E candidate:

- ``dominated``: some One Euro setting has accel error <= E's AND position error <= E's;
- the oracle's lowest accel among settings with position error <= E's (E at matched position);
- the oracle's lowest position error among settings with accel error <= E's (E at matched jitter).

It also asks how firm round E's verdicts against the tuned baseline are on clips this short
(body3d_eval is 100 frames): a paired moving-block bootstrap over frames (blocks of
``BLOCK`` frames, ``RESAMPLES`` resamples, seed 0; the same blocks for both smoothers) of the
differences E - baseline in the two means, with their 95 % intervals and the share of
resamples in which E beats the baseline (lower accel AND position no higher).

It reads round E's rows from ``results/temporal_equal_delay_gain.json`` (run that first) and
scores the grid on the cached evaluation tracks; writes ``temporal_equal_delay_frontier.{json,md,png}``.

    python benchmarks/temporal_equal_delay_frontier.py [--out benchmarks/results]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from temporal_equal_delay import eval_clip_tracks, oracle_grid  # noqa: E402
from temporal_equal_delay_gain import replay  # noqa: E402
from temporal_equal_delay_learned import (DELAY, base_parser, baseline_config, baseline_track, run_meta,  # noqa: E402
                                          start_run, write_report)

from edgepose.eval.jitter import acceleration  # noqa: E402
from edgepose.types import SHARED13  # noqa: E402

BLOCK = 10
RESAMPLES = 2000


def per_frame(track: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-frame sums and counts of the accel and position norms over the 13 scored joints, so that
    sum / count over all frames is exactly ``temporal_metrics``' two means."""
    j = list(SHARED13)
    a = np.linalg.norm(acceleration(track[:, j]) - acceleration(ref[:, j]), axis=-1)
    p = np.linalg.norm(track[:, j] - ref[:, j], axis=-1)
    a = np.concatenate([np.full((1, len(j)), np.nan), a, np.full((1, len(j)), np.nan)])  # centre frame
    return (np.nansum(a, 1), np.isfinite(a).sum(1), np.nansum(p, 1), np.isfinite(p).sum(1))


def paired_bootstrap(e: tuple, b: tuple, seed: int = 0) -> dict:
    """Moving-block bootstrap of (E - baseline) in mean accel and mean position error."""
    n = len(e[0])
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - BLOCK + 1, size=(RESAMPLES, -(-n // BLOCK)))
    idx = (starts[..., None] + np.arange(BLOCK)).reshape(RESAMPLES, -1)[:, :n]

    def means(t):
        return t[0][idx].sum(1) / t[1][idx].sum(1), t[2][idx].sum(1) / t[3][idx].sum(1)

    (ea, ep), (ba, bp) = means(e), means(b)
    da, dp = ea - ba, ep - bp
    full = (e[0].sum() / e[1].sum() - b[0].sum() / b[1].sum(), e[2].sum() / e[3].sum() - b[2].sum() / b[3].sum())
    return {"accel_diff": float(full[0]), "accel_diff_ci95": np.percentile(da, [2.5, 97.5]).tolist(),
            "position_diff": float(full[1]), "position_diff_ci95": np.percentile(dp, [2.5, 97.5]).tolist(),
            "share_E_beats": float(np.mean((da < 0) & (dp <= 0))), "frames": int(n)}


def bootstrap_rows(cache_dir, assets, gain: dict) -> list[dict]:
    base, _ = baseline_config()
    chosen = gain["selection"]["candidates"][gain["selection"]["chosen"]]["model"]
    out = []
    for name, raw, ref, kps, fps, scales, _ in eval_clip_tracks(cache_dir, assets, gain["meta"]["model"]):
        e = replay(chosen, base, kps, raw.scores, fps, scales)
        b = baseline_track(kps, fps, scales, base)
        out.append({"clip": name, **paired_bootstrap(per_frame(e, ref), per_frame(b, ref))})
    return out


def frontier_rows(grid: dict, gain_rows: list[dict]) -> list[dict]:
    """One row per (clip, E candidate) with the oracle comparisons of the module docstring."""
    out = []
    for r in gain_rows:
        if not r["kind"].startswith("E"):
            continue
        pts = [(a, p, m, c) for (d, m), v in grid[r["clip"]].items() if d == DELAY for a, p, c in v]
        acc, pos = r["accel_error"], r["position_error"]
        at_pos = [q for q in pts if q[1] <= pos]
        at_acc = [q for q in pts if q[0] <= acc]
        best_a = min(at_pos, key=lambda q: q[0]) if at_pos else None
        best_p = min(at_acc, key=lambda q: q[1]) if at_acc else None

        def point(q):
            return None if q is None else {"accel_error": q[0], "position_error": q[1], "method": q[2],
                                           "params": q[3].__dict__}

        out.append({"clip": r["clip"], "method": r["method"], "chosen": r["kind"] == "E", "learned": [acc, pos],
                    "dominated": any(a <= acc and p <= pos for a, p, _, _ in pts),
                    "oracle_at_matched_position": point(best_a), "oracle_at_matched_accel": point(best_p)})
    return out


def plot(grid: dict, gain_rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = list(grid)
    fig, axes = plt.subplots(1, len(clips), figsize=(5.2 * len(clips), 4.4))
    for ax, clip in zip(axes, clips):
        rows = [r for r in gain_rows if r["clip"] == clip]
        tuned = next(r for r in rows if r["kind"] == "tuned")
        es = [r for r in rows if r["kind"].startswith("E")]
        for (d, m), v in grid[clip].items():
            if d == DELAY:
                ax.scatter([p for _, p, _ in v], [a for a, _, _ in v], s=6, alpha=0.35,
                           label=f"fixed-lag One Euro d={DELAY} ({m}), every grid setting")
        ax.scatter([tuned["position_error"]], [tuned["accel_error"]], marker="s", s=60, c="k",
                   label="tuned on training clips (the baseline)")
        ax.plot([r["position_error"] for r in es], [r["accel_error"] for r in es], "-o", c="tab:red", ms=5,
                label="round E candidates (w1.5 .. w32)")
        ch = next(r for r in es if r["kind"] == "E")
        ax.scatter([ch["position_error"]], [ch["accel_error"]], marker="*", s=220, c="tab:red", zorder=5,
                   label="round E chosen (w16)")
        xs = [r["position_error"] for r in es] + [tuned["position_error"]]
        ys = [r["accel_error"] for r in es] + [tuned["accel_error"]]
        ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
        ax.set_ylim(0.75 * min(ys), 1.6 * max(ys))
        ax.set_title(clip)
        ax.set_xlabel("mean position error (px)")
        ax.set_ylabel("mean acceleration error (px / frame^2)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"Equal added delay (d={DELAY}): lower-left is better; dots = every One Euro setting scored on the clip itself (oracle)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(meta, rows, boot) -> str:
    def q(x):
        return "none" if x is None else (f"{x['accel_error']:.3f} / {x['position_error']:.3f} ({x['method']}, "
                                         f"{x['params']['min_cutoff']:g} Hz, beta {x['params']['beta']:g}, "
                                         f"d_cutoff {x['params']['d_cutoff']:g})")

    L = ["# Round E against every fixed-lag One Euro at d=2, tuned on the evaluation clip itself (information only)", "",
         f"`python benchmarks/temporal_equal_delay_frontier.py` ({meta['seconds']:.0f} s on {meta['host']}). What and "
         "why: the module docstring. The One Euro side is an oracle (each of the 504 x 2 settings scored on the clip "
         "itself); nothing here selects or changes a model. Plot: `temporal_equal_delay_frontier.png`.", "",
         "| clip | E candidate | E accel / pos | dominated by some One Euro? | One Euro at pos <= E: best accel / pos | "
         "E accel lower? | One Euro at accel <= E: best pos | E pos lower? |",
         "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, p = r["oracle_at_matched_position"], r["oracle_at_matched_accel"]
        lab = r["method"].split("[")[1].split("]")[0] + (" **(chosen)**" if r["chosen"] else "")
        L.append(f"| {r['clip']} | {lab} | {r['learned'][0]:.3f} / {r['learned'][1]:.3f} | "
                 f"{'**yes**' if r['dominated'] else 'no'} | {q(a)} | "
                 f"{'yes' if a is None or r['learned'][0] < a['accel_error'] else '**no**'} | {q(p)} | "
                 f"{'yes' if p is None or r['learned'][1] < p['position_error'] else '**no**'} |")
    ch = [r for r in rows if r["chosen"]]
    L += ["", f"- Round E's chosen model is dominated by no One Euro setting on any clip: "
          f"**{'yes' if ch and not any(r['dominated'] for r in ch) else 'no'}**."]
    L += ["", "## How firm is the verdict against the tuned baseline? (paired block bootstrap)", "",
          f"E (chosen) - the tuned fixed-lag One Euro d={DELAY} on each clip; negative = E lower. Moving blocks of "
          f"{BLOCK} frames, {RESAMPLES} resamples, seed 0.", "",
          "| clip | frames | accel diff [95 % interval] | position diff px [95 % interval] | share of resamples where E beats |",
          "|---|---:|---|---|---:|"]
    for r in boot:
        a, p = r["accel_diff_ci95"], r["position_diff_ci95"]
        L.append(f"| {r['clip']} | {r['frames']} | {r['accel_diff']:+.3f} [{a[0]:+.3f}, {a[1]:+.3f}] | "
                 f"{r['position_diff']:+.3f} [{p[0]:+.3f}, {p[1]:+.3f}] | {100 * r['share_E_beats']:.0f} % |")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    p = base_parser(__doc__)
    a = p.parse_args(argv)
    assets, t0, load0 = start_run(a)
    gain = json.loads((Path(a.out) / "temporal_equal_delay_gain.json").read_text())
    model = gain["meta"]["model"]
    grid = oracle_grid(a.cache_dir, assets, (DELAY,), model)
    rows = frontier_rows(grid, gain["rows"])
    boot = bootstrap_rows(a.cache_dir, assets, gain)
    for r in boot:
        row = {x["kind"]: x for x in gain["rows"] if x["clip"] == r["clip"]}
        want = (row["E"]["accel_error"] - row["tuned"]["accel_error"], row["E"]["position_error"] - row["tuned"]["position_error"])
        if not np.allclose((r["accel_diff"], r["position_diff"]), want, atol=1e-9):
            raise AssertionError(f"{r['clip']}: per-frame sums {r['accel_diff']}, {r['position_diff']} != round E's report {want}")
    plot(grid, gain["rows"], Path(a.out) / "temporal_equal_delay_frontier.png")
    meta = run_meta(t0, load0, model, delay=DELAY, source="temporal_equal_delay_gain.json")
    write_report(a.out, "temporal_equal_delay_frontier", {"meta": meta, "rows": rows, "bootstrap": boot},
                 markdown(meta, rows, boot))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
