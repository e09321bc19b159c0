"""Choose the zero-lag learned smoother on held-out TRAINING-POOL clips only (issue 7), by a rule
fixed before any candidate's number was computed.

The multi-delay SmoothNet (``edgepose/data/smoothnet_w32.onnx``) beats One Euro once it may look
2 frames ahead, but at zero delay (what ``EstimatorOptions(smoother="learned")`` runs) it did
not. The candidates here are dedicated zero-lag models (``--max-delay 0``), trained with five
licence-clean clips held out (:data:`VAL_PREFIXES`), in two families:

* ``plain``: SmoothNet on the raw track only;
* ``prior``: :class:`~edgepose.compression.temporal.models.PriorSmoothNet`, fed the causal One
  Euro output beside the raw track; it starts as that filter and learns a correction.

Rule (:data:`RULE`), scored pooled (frame-weighted) over the held-out clips against the Thunder
teacher's track, every row at zero delay, never on an evaluation clip:

* a candidate *qualifies* when its acceleration error is below the One Euro default's (the
  SDK's, run as the estimator runs it) and its position error is at most the One Euro
  default's;
* the qualifying candidate with the lowest acceleration error is shipped as
  ``edgepose/data/smoothnet_w32_zerolag.onnx``; none qualifying: nothing is shipped.

History (see :data:`ROUND1`): the first round (candidates prior_a1..a3, plain_a2) used a rule
with a third clause, position <= raw + 0.5 px. No zero-lag method meets that on these clips
(One Euro itself is raw + 1.9 px): it is the bound of the >= 50 % acceleration-cut claim,
which the delayed smoother (d=2) carries. The round-1 run also exposed a runtime defect (a
window spanning a missing-pose gap, which training never shows, gave 300-440 px errors on
sports2d_demo); the smoother now restarts after a gap like One Euro, and the round-1
candidates were re-scored: none qualified under either rule. Round 2 (the rule above, fixed
before training its candidates) added the keypoint scores as an input (score_a1, score_a2):
none qualified. Round 3 (same rule), the loss in pixels instead of per person size, as the
metrics pool it (px_prior_a1, px_score_a1). Each round's candidates are scored together with
the earlier rounds'. Round 3: none qualified; nothing is shipped. Round 4 (same rule, another
family: the network sets One Euro's gain instead of positions) is ``benchmarks/learned_gain.py``:
one candidate qualified and ships as ``edgepose/data/gain_one_euro.onnx``
(``smoother="learned_gain"``).

The training clips' (in-sample) numbers are reported beside, for information.

    python benchmarks/zero_lag_selection.py --candidate prior_a2=runs/temporal_models/prior_a2.onnx ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path


from edgepose.compression.temporal.baselines import POSITION_MARGIN_PX, load_clips, pooled
from edgepose.eval.temporal_report import one_euro_track
from edgepose.video._temporal import DATA_DIR, ZERO_LAG_SMOOTHER_FILE
from edgepose.video.one_euro import OneEuroConfig
from smoother_selection import smooth  # noqa: E402  (benchmarks/ is the script's folder)

log = logging.getLogger(__name__)

#: clips held out of the zero-lag candidates' training (``--val-clips`` of the training runs)
VAL_PREFIXES = ("resource_data_example_ta_chi", "notebooks_videos_bedroom",
                "resource_data_example_clean_and_jerk", "sports2d_demo",
                "demo_data_gallery_05_default_juggle")
RULE = ("on the 5 held-out clips at zero delay: qualifies = accel < One Euro default's AND pos <= One Euro "
        "default's; ship the qualifying candidate with the lowest accel; none: ship nothing")
ROUND1 = ("round 1 rule: accel < One Euro AND pos < One Euro AND pos <= raw + 0.5 px; candidates prior_a1, "
          "prior_a2, prior_a3, plain_a2; none qualified (before and after the gap fix). Round 2 (rule above): "
          "score_a1, score_a2 (keypoint-score input); none qualified. Round 3 (rule above): px_prior_a1, "
          "px_score_a1 (loss in pixels); none qualified")


def score(clips, models: dict[str, str]) -> dict:
    raw = pooled(clips, [c.edge for c in clips])
    rows = {"raw": raw, "one-euro default": pooled(
        clips, [one_euro_track(c.edge, c.fps, OneEuroConfig(), c.scales) for c in clips])}
    for label, path in models.items():
        rows[label] = pooled(clips, smooth(clips, path, 0))
    return {k: {"accel_error": a, "position_error": p, "pos_vs_raw_px": p - raw[1],
                "accel_cut_vs_raw_pct": 100 * (1 - a / raw[0])} for k, (a, p) in rows.items()}


def decide(res: dict, labels) -> tuple[str | None, dict]:
    oe, raw = res["one-euro default"], res["raw"]
    checks = {}
    for k in labels:
        r = res[k]
        checks[k] = {"accel_below_one_euro": r["accel_error"] < oe["accel_error"],
                     "pos_not_above_one_euro": r["position_error"] <= oe["position_error"]}
        checks[k]["qualifies"] = all(checks[k].values())
        checks[k]["info_pos_within_raw_margin"] = r["position_error"] <= raw["position_error"] + POSITION_MARGIN_PX
    ok = [k for k in labels if checks[k]["qualifies"]]
    return (min(ok, key=lambda k: res[k]["accel_error"]) if ok else None), checks


def table(res: dict) -> str:
    lines = ["| method | accel err px/frame^2 | pos err px | accel cut vs raw | pos vs raw px |",
             "|---|---|---|---|---|"]
    for k, r in res.items():
        lines.append(f"| {k} | {r['accel_error']:.3f} | {r['position_error']:.3f} | "
                     f"{r['accel_cut_vs_raw_pct']:.1f} % | {r['pos_vs_raw_px']:+.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--assets", default=os.environ.get("EDGEPOSE_ASSETS", "../shared/assets"))
    p.add_argument("--cache-dir", default="runs/temporal_tracks")
    p.add_argument("--candidate", action="append", required=True, metavar="LABEL=PATH")
    p.add_argument("--ship", action="store_true",
                   help=f"copy the chosen model to edgepose/data/{ZERO_LAG_SMOOTHER_FILE}")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    models = dict(c.split("=", 1) for c in a.candidate)
    t0 = time.time()
    clips = load_clips(a.cache_dir, assets=Path(a.assets).resolve())
    val = [c for c in clips if c.name.startswith(VAL_PREFIXES)]
    train = [c for c in clips if not c.name.startswith(VAL_PREFIXES)]
    if len({c.name for c in val}) != len(VAL_PREFIXES):
        raise SystemExit(f"expected the {len(VAL_PREFIXES)} held-out clips {VAL_PREFIXES}, found "
                         f"{[c.name for c in val]}")
    res_val, res_train = score(val, models), score(train, models)
    picked, checks = decide(res_val, list(models))
    sha = {k: hashlib.sha256(Path(v).read_bytes()).hexdigest() for k, v in models.items()}
    if picked and a.ship:
        shutil.copyfile(models[picked], DATA_DIR / ZERO_LAG_SMOOTHER_FILE)
    report = {"rule": RULE, "history": ROUND1, "models": models, "sha256": sha, "val_clips": [[c.name, len(c.edge)] for c in val],
              "heldout": res_val, "train_in_sample": res_train, "checks": checks, "picked": picked,
              "shipped_as": ZERO_LAG_SMOOTHER_FILE if picked and a.ship else None,
              "seconds": round(time.time() - t0, 1)}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "zero_lag_selection.json").write_text(json.dumps(report, indent=1))
    chk = "\n".join(f"| {k} | {'yes' if c['accel_below_one_euro'] else 'no'} | "
                    f"{'yes' if c['pos_not_above_one_euro'] else 'no'} | **{'yes' if c['qualifies'] else 'no'}** | "
                    f"{'yes' if c['info_pos_within_raw_margin'] else 'no'} |" for k, c in checks.items())
    md = ("# Zero-lag smoother selection (held-out training-pool clips)\n\n"
          "`python benchmarks/zero_lag_selection.py`; candidates: "
          + ", ".join(f"{k} `{v}` (sha256 {sha[k][:12]})" for k, v in models.items()) + ".\n\n"
          f"Rule, fixed before the candidates' numbers: {RULE}. History: {ROUND1}; see the script's "
          f"docstring (the first rule's raw + 0.5 px clause is unattainable at zero lag here: One Euro is "
          f"raw + 1.9 px; a runtime gap defect was fixed between the round-1 runs).\n\n"
          f"Held out of the candidates' training: {', '.join(f'{c.name} ({len(c.edge)})' for c in val)}; "
          f"reference = the Thunder teacher's track (`edgepose.compression.temporal.baselines`). "
          f"All rows zero delay.\n\n{table(res_val)}\n\n"
          f"| candidate | accel < One Euro | pos <= One Euro | qualifies | (info) pos <= raw + 0.5 |\n"
          f"|---|---|---|---|---|\n{chk}\n\n"
          f"**Decision: {picked or 'none qualifies: nothing shipped'}**"
          f"{f' -> edgepose/data/{ZERO_LAG_SMOOTHER_FILE}' if picked and a.ship else ''}.\n\n"
          f"For information, the {len(train)} training clips (in-sample for the candidates; the One Euro "
          f"defaults were tuned on the whole pool):\n\n{table(res_train)}\n")
    (out / "zero_lag_selection.md").write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
