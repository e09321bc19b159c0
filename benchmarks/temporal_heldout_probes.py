"""Issue 7, session 7: two ideas for the d=2 learned smoother, probed on the held-out training clips only.

Round E (``temporal_equal_delay_gain.py``) learns the cut-off of the causal One Euro inside the
tuned triangular fixed-lag One Euro; on the evaluation clips it sits on the fixed-lag One Euro's
accuracy / smoothness frontier (``temporal_equal_delay_frontier.py``). Two ideas could move off that
frontier, because they use information a per-joint One Euro cannot:

- **F1, body context**: the gain network also reads the median over the 17 joints of the
  innovation and speed features (:data:`edgepose.video.gain_filter.BODY_FEATURES`): real motion
  moves many joints at once, per-joint jitter does not. Trained as round E
  (:func:`~edgepose.compression.temporal.gain.train_gain`, ``GainConfig(body=True)``).
- **F2, adaptive lag taps**: the fixed triangular taps over the causal outputs y(t-2d .. t) become
  per-joint, per-frame weights (softmax of log-triangular + a small network's logits; untrained =
  triangular) from what the lag window shows: the causal outputs and the observations relative to
  the centre, and the scores. The causal stage is round E's chosen network, frozen.

Nothing here reads an evaluation clip: candidates are trained on the 32 training clips and scored
on the 5 held-out ones (``VAL_PREFIXES``) against round E's chosen model (w16) and the baseline.
The question is whether either idea moves the held-out trade-off clearly (both metrics better than
round E's pick at a comparable accel weight); if not, it is not taken to the evaluation clips.

    python benchmarks/temporal_heldout_probes.py [--out benchmarks/results]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from temporal_equal_delay_gain import replay  # noqa: E402
from temporal_equal_delay_learned import (DELAY, _entry, baseline_track,  # noqa: E402
                                          run_meta, start_training_run, write_report)
from zero_lag_selection import VAL_PREFIXES  # noqa: E402

from edgepose.compression.temporal.baselines import pooled  # noqa: E402
from edgepose.compression.temporal.gain import GainConfig, export_gain, train_gain  # noqa: E402
from edgepose.video.gain_filter import LearnedGainFilter  # noqa: E402
from edgepose.video.one_euro import triangular_weights  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: round E's chosen causal stage (the same network as edgepose/data/gain_fixed_lag_d2.onnx)
E_MODEL = ROOT / "edgepose" / "data" / "gain_fixed_lag_d2.onnx"
BODY_WEIGHTS = (8.0, 16.0)
TAP_WEIGHTS = (4.0, 16.0)
TAP_STEPS = 300


def _window(c, causal: np.ndarray) -> dict:
    """The (2d+1)-frame lag windows of a clip with every frame present: features, causal outputs."""
    k = 2 * DELAY + 1
    idx = np.arange(DELAY, len(causal) - DELAY)
    win = idx[:, None] - DELAY + np.arange(k)[None]
    y, x, s = causal[win], np.nan_to_num(c.edge)[win], np.nan_to_num(c.scores)[win]
    ok = np.isfinite(y).all(axis=(1, 2, 3))
    sc = c.scales[idx][:, None, None, None]
    rel_y = ((y - y[:, DELAY:DELAY + 1]) / sc).transpose(0, 2, 1, 3).reshape(len(idx), 17, -1)
    rel_x = ((x - y) / sc).transpose(0, 2, 1, 3).reshape(len(idx), 17, -1)
    feats = np.concatenate([10 * rel_y, 10 * rel_x, s.transpose(0, 2, 1)], -1)
    return {"idx": idx, "ok": ok, "y": np.nan_to_num(y), "f": np.nan_to_num(feats), "ref": c.teacher[idx]}


def _tap_net(torch, hidden: int = 32):
    class TapNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            k = 2 * DELAY + 1
            self.emb = torch.nn.Embedding(17, 4)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(4 + 5 * k, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, k))
            for p in (self.mlp[2].weight, self.mlp[2].bias, self.emb.weight):
                torch.nn.init.zeros_(p)
            self.register_buffer("logw", torch.log(torch.as_tensor(triangular_weights(DELAY))))

        def forward(self, f, y):  # f (N, 17, 5k), y (N, k, 17, 2) -> (N, 17, 2)
            e = self.emb.weight.expand(f.shape[0], 17, 4).to(f.dtype)
            w = torch.softmax(self.logw.to(f.dtype) + self.mlp(torch.cat([e, f], -1)), -1)
            return torch.einsum("njk,nkjc->njc", w, y)

    return TapNet().double()


def train_taps(windows: list[dict], accel_weight: float, seed: int = 0):
    """Full-batch Adam over every training window; loss = pos L2 + w x accel L2 (px), as round E."""
    import torch

    from edgepose.compression.temporal.gain import track_loss

    torch.manual_seed(seed)
    net = _tap_net(torch)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    n_all = sum(int(w["ok"].sum()) for w in windows)
    for _ in range(TAP_STEPS):
        opt.zero_grad()
        for w in windows:
            z = net(torch.tensor(w["f"]), torch.tensor(w["y"]))[None]
            loss, _, _ = track_loss(z, torch.tensor(w["ref"])[None], torch.tensor(w["ok"])[None], accel_weight)
            (loss * float(w["ok"].sum()) / n_all).backward()
        opt.step()
    return net


def taps_track(net, c, base, w: dict) -> np.ndarray:
    """Round E's fixed-lag track with the adaptive taps wherever the whole window is present."""
    import torch

    out = replay(E_MODEL, base, c.edge, c.scores, c.fps, c.scales).copy()
    with torch.no_grad():
        z = net(torch.tensor(w["f"]), torch.tensor(w["y"])).numpy()
    out[w["idx"][w["ok"]]] = z[w["ok"]]
    return out


def probe(clips, base, model_dir: Path) -> dict:
    val = [c for c in clips if c.name.startswith(VAL_PREFIXES)]
    train = [c for c in clips if not c.name.startswith(VAL_PREFIXES)]
    if len(val) != len(VAL_PREFIXES):
        raise SystemExit(f"expected the {len(VAL_PREFIXES)} held-out clips, found {[c.name for c in val]}")
    raw_v = pooled(val, [c.edge for c in val])

    rows = {"raw": _entry(raw_v, raw_v),
            "baseline": _entry(pooled(val, [baseline_track(c.edge, c.fps, c.scales, base) for c in val]), raw_v),
            "E w16 (round E's pick)": _entry(pooled(val, [replay(E_MODEL, base, c.edge, c.scores, c.fps, c.scales)
                                                          for c in val]), raw_v)}
    seconds = {}
    for w in BODY_WEIGHTS:
        t0 = time.time()
        net, _ = train_gain(train, GainConfig(accel_weight=w, steps=600, seed=0, body=True), config=base, delay=DELAY)
        path = export_gain(net, model_dir / f"gain_fixed_lag_d{DELAY}_body_w{w:g}.onnx", config=base,
                           meta={"delay": DELAY})
        label = f"F1 body context w{w:g}"
        rows[label] = _entry(pooled(val, [replay(path, base, c.edge, c.scores, c.fps, c.scales) for c in val]), raw_v)
        seconds[label] = round(time.time() - t0, 1)

    def windows(cs):
        out = []
        for c in cs:
            with LearnedGainFilter(E_MODEL, config=base) as g:
                out.append(_window(c, g.filter_track(c.edge, c.scores, c.fps, c.scales)))
        return out

    wt, wv = windows(train), windows(val)
    for w in TAP_WEIGHTS:
        t0 = time.time()
        net = train_taps(wt, w)
        label = f"F2 adaptive taps w{w:g}"
        rows[label] = _entry(pooled(val, [taps_track(net, c, base, x) for c, x in zip(val, wv)]), raw_v)
        rows[label]["train"] = _entry(pooled(train, [taps_track(net, c, base, x) for c, x in zip(train, wt)]),
                                      pooled(train, [c.edge for c in train]))
        seconds[label] = round(time.time() - t0, 1)
    e = rows["E w16 (round E's pick)"]
    for k, v in rows.items():
        v["beats_E_w16_both"] = bool(v["accel_error"] < e["accel_error"] and v["position_error"] < e["position_error"])
    return {"held_out_clips": [c.name for c in val], "train_clips": len(train), "rows": rows, "seconds": seconds}


def markdown(meta, res) -> str:
    L = ["# Issue 7: body context and adaptive lag taps, held-out training clips only", "",
         f"`python benchmarks/temporal_heldout_probes.py` ({meta['seconds']:.0f} s on {meta['host']}). The ideas and why: "
         "the module docstring. No evaluation clip is read. Trained on "
         f"{res['train_clips']} training clips, scored pooled over the 5 held-out ones "
         f"({', '.join(res['held_out_clips'])}), reference = the MoveNet Thunder teacher.", "",
         "| smoother (d = 2) | held-out accel / pos | accel cut vs raw | better than E w16 in both | train s |",
         "|---|---|---:|---|---:|"]
    for k, v in res["rows"].items():
        L.append(f"| {k} | {v['accel_error']:.3f} / {v['position_error']:.3f} | {v['accel_cut_vs_raw_pct']:.1f} % | "
                 f"{'yes' if v['beats_E_w16_both'] else 'no'} | {res['seconds'].get(k, '-')} |")
    taps = {k: v["train"] for k, v in res["rows"].items() if "train" in v}
    if taps:
        L += ["", "Adaptive taps on the training clips they were fitted on (for the generalisation gap): " +
              "; ".join(f"{k}: {v['accel_error']:.3f} / {v['position_error']:.3f}" for k, v in taps.items()) + "."]
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    from edgepose.eval.temporal_report import TemporalEvalOptions

    a, _, t0, load0, base, clips, models = start_training_run(__doc__, argv)
    res = probe(clips, base, models)
    meta = run_meta(t0, load0, TemporalEvalOptions().model, delay=DELAY)
    write_report(a.out, "temporal_heldout_probes", {"meta": meta, **res}, markdown(meta, res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
