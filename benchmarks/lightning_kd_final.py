"""The final compressed Lightning of issue 4 from a Thunder-distilled Lightning: the LAST checkpoint
of a long-KD run (no checkpoint chosen by its score), exported to fp32 ONNX and LiteRT int8,
scored on the 161-person evaluation set and timed interleaved against the official int8 TFLite.

Protocol, fixed before the run: ``long_kd train --target-macs 1.0 --minutes 40 --lr 1e-4 --w-feat 0`` on the
licence-clean label cache (Thunder pseudo-labels of training frames; the plan keeps ~100 % of the
MACs, only channels whose removal leaves the outputs unchanged go; no feature KD: the student is
the reference itself, a random adapter would only pull it away); int8 with the exporter's
default (histogram) calibration on 64 held-in training crops. Target: PCK >= 66.8 at <= 0.6x the
official int8 TFLite's latency.

    python benchmarks/lightning_kd_final.py --run runs/kd_unpruned
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from compress_lightning import DEFAULT_LABELS, MODELS, _val_split, evaluate_file, write_report  # noqa: E402


def main(argv=None) -> int:
    import torch

    from edgepose.compression.data.labels import load_labels
    from edgepose.compression.distill.long_kd import build_student
    from edgepose.compression.export import ExportConfig, export_onnx, export_tflite
    from edgepose.compression.latency import interleaved_latency
    from edgepose.compression.prune import load_plan

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/kd_unpruned")
    p.add_argument("--labels", default=str(DEFAULT_LABELS))
    p.add_argument("--baseline-int8", default="runs/tflite_cal/lightning_int8_histogram.tflite",
                   help="the int8 TFLite of the original Lightning (same exporter), for the table")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--no-eval", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    run = Path(a.run)
    ckpts = sorted(run.glob("ckpt_*.pt"))
    if not ckpts:
        raise SystemExit(f"no checkpoint in {run}")
    last = torch.load(ckpts[-1], map_location="cpu")
    fp32 = str(MODELS / "movenet_lightning_fp32.onnx")
    _, net = build_student(fp32, load_plan(run / "prune_plan.json"))
    net.load_state_dict(last["state_dict"])
    net.eval()
    _, _, cal = _val_split(load_labels(a.labels), 192, 8)
    comp = {"long_kd_run": str(run), "step": last["step"]}
    onnx = export_onnx(net, run / "final_fp32.onnx", ExportConfig(), compression=comp, check_crops=cal[:4]).path
    tfl = export_tflite(net, run / "final_int8.tflite", int8=True, calibration=cal[:64], check_crops=cal[:4],
                        compression=comp).path
    if a.no_eval:
        return 0
    models = {"lightning_fp32_onnx": fp32, "official_int8_tflite": str(MODELS / "movenet_lightning_int8.tflite"),
              "kd_fp32_onnx": onnx, "kd_int8_tflite": tfl}
    if Path(a.baseline_int8).is_file():
        models["lightning_int8_tflite"] = a.baseline_int8
    acc = {k: evaluate_file(path) for k, path in models.items()}
    lat = interleaved_latency(models, rounds=a.rounds, per_round=5, threads=a.threads)
    off = lat["official_int8_tflite"].p50
    summary = json.loads((run / "long_kd.json").read_text())
    out = {"protocol": __doc__.split("\n\n")[1].replace("\n", " "), "step": last["step"],
           "seconds": summary.get("seconds"), "val_loss": summary.get("val"), "accuracy": acc,
           "latency_ms": {k: v.to_dict() for k, v in lat.items()},
           "vs_official_int8": {k: v.p50 / off for k, v in lat.items()}, "load": os.getloadavg()[0]}
    md = ["# Final compressed Lightning: Thunder-distilled (long KD, last checkpoint), LiteRT int8", "",
          out["protocol"], "",
          f"Run: {run} (step {last['step']}, {summary.get('seconds', 0) / 60:.0f} min on the 2-core CPU; "
          f"validation loss {summary['val'][0]:.4f} -> {summary['val'][-1]:.4f}).", "",
          "| model | PCK@0.2 torso | hard | p50 ms | vs official int8 |", "|---|---:|---:|---:|---:|"]
    for k in models:
        md.append(f"| {k} | {acc[k]['pck_torso']:.1f} | {acc[k]['hard_pck_torso']:.1f} | {lat[k].p50:.2f} | "
                  f"{lat[k].p50 / off:.2f} |")
    md += ["", f"{a.threads} threads, {a.rounds} x 5 interleaved runs, load {out['load']:.1f}."]
    write_report("lightning_kd_final", out, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
