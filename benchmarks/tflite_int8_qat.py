"""LiteRT int8 of MoveNet Lightning, session 5: sparse heads and quantisation-aware fine-tuning
(issue 4: the final compressed Lightning, >= 66.8 PCK at <= 0.6x the official int8's latency).

Three builds from the same 64 training calibration crops:

* ``ptq_dense``: post-training int8 (histogram ranges), the whole graph dense: the session-4
  export with the new NHWC float decoder (same keypoints as before, fewer float ops).
* ``ptq_sparse``: the same with sparse heads: the regression / offset heads' 1x1 convolutions
  run only at the cells the decoder reads (exact in float; ~10 % fewer MACs).
* ``qat_sparse``: sparse heads, quantisation-aware fine-tuning toward the float model's own
  outputs on augmented training crops (``compression/quantize/qat.py``, ``QATConfig()``:
  1000 steps, lr 1e-5, batch 8, seed 0).

Rule, fixed before the 1000-step build was evaluated: the final compressed Lightning is
``qat_sparse`` if its keypoints are closer to the fp32 model's than ``ptq_sparse``'s on held-out
TRAINING crops (mean px over the joints fp32 is sure of), else ``ptq_sparse``. The evaluation
set (161 people) and the latency decide nothing. (During development 0- and 200-step QAT builds
were evaluated once each: 67.2 and 67.3; the recipe was then fixed at the default 1000 steps.)
Round 2 (``--qat-loss probabilities --name tflite_int8_qat_prob``), written after round 1, whose
logits-loss QAT build was further from fp32 than PTQ on the held-out training crops (4.48 vs
3.11 px) and so lost under the rule: the QAT loss matches the sigmoid heat / centre maps instead
of their logits; the same rule decides. Round 3 (``--exact-input --name tflite_int8_exact``),
written after round 2: PTQ with the int8 input quantised exactly (pixel - 128, as ONNX Runtime's
``fold_input``) instead of at a calibrated scale (a second rounding of every pixel); the final
build is the sparse build closest to fp32 on the held-out training crops. Round 3's first run
had a bug: the input observer swap hit torch.export's guard module instead of the observer, so
that build (``ptq_sparse_shift``: the normalisation offset moved half a level, the input scale
still calibrated; proxy 2.50 px, PCK 67.2) was not exact. It is kept as a candidate under the
same rule (``export_tflite(input_centre=True)``, byte-identical) beside the fixed
``ptq_sparse_exact`` (``exact_input=True``).

Latency: per-round ratios to the official int8 TFLite, interleaved, at 1 and 2 threads
(``latency_ratio.py``).

    python benchmarks/tflite_int8_qat.py [--work runs/tflite_qat] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from compress_lightning import DEFAULT_LABELS, MODELS, RESULTS, _val_split, evaluate_file, write_report  # noqa: E402
from latency_ratio import round_ratios, summarise  # noqa: E402


def main(argv=None) -> int:
    import torch

    from edgepose.compression.data.augment import AugmentConfig
    from edgepose.compression.data.dataset import PseudoLabelDataset
    from edgepose.compression.data.labels import load_labels
    from edgepose.compression.export import export_tflite
    from edgepose.compression.export.tflite_export import CONFIDENT_SCORE, _run_tflite
    from edgepose.compression.importer import import_movenet
    from edgepose.compression.latency import interleaved_latency
    from edgepose.compression.quantize import proxy_pck
    from edgepose.compression.quantize.qat import QATConfig
    from edgepose.compression.quantize.sensitivity import predict

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", default=str(DEFAULT_LABELS))
    p.add_argument("--work", default="runs/tflite_qat")
    p.add_argument("--qat-steps", type=int, default=QATConfig().steps)
    p.add_argument("--qat-loss", default=QATConfig().loss, choices=["logits", "probabilities"])
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--reuse", action="store_true", help="keep builds already in --work")
    p.add_argument("--exact-input", action="store_true", help="round 3: also the PTQ sparse build with the exact "
                   "int8 input (export_tflite(exact_input=True))")
    p.add_argument("--name", default="tflite_int8_qat")
    a = p.parse_args(argv)
    torch.set_num_threads(1)  # 2 intra-op threads beside any other job on 2 cores: 10x slower steps
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    labels = load_labels(a.labels)
    val, val_t, cal = _val_split(labels, 192, 96)
    tr, _ = labels.split(0.1, 0)
    ds = PseudoLabelDataset(labels, tr, out_size=192, scale=np.ones(3), shift=np.zeros(3),
                            augment_cfg=AugmentConfig())

    def draw(rng, n):
        return np.stack([ds.raw(int(i))[0] for i in rng.integers(0, len(ds), n)])

    fp32 = str(MODELS / "movenet_lightning_fp32.onnx")
    net = import_movenet(fp32).eval()
    qat = QATConfig(steps=a.qat_steps, loss=a.qat_loss)
    builds = {"ptq_dense": {"sparse_heads": False, "input_centre": False}, "ptq_sparse": {"input_centre": False},
              "qat_sparse": {"qat": qat, "qat_draw": draw}}
    if a.exact_input:
        builds["ptq_sparse_shift"] = {"input_centre": True}
        builds["ptq_sparse_exact"] = {"input_centre": True, "exact_input": True}
    paths, notes = {}, {}
    for name, kw in builds.items():
        tag = f"{name}_{qat.loss}" if name == "qat_sparse" and qat.loss != "logits" else name
        path = work / f"lightning_int8_{tag}.tflite"
        if not (a.reuse and path.is_file()):
            r = export_tflite(net, path, int8=True, calibration=cal[:64], check_crops=cal[:4], **kw)
            notes[name] = {"mean_px_vs_torch_check": r.mean_px, "seconds": round(r.seconds, 1),
                           **({"qat": json.loads(r.metadata.get("edgepose.compression", "{}")).get("tflite_qat")}
                              if "qat" in kw else {})}
        paths[name] = str(path)
    ref = predict(fp32, val)
    sure = ref[:, :, 2] >= CONFIDENT_SCORE
    proxy = {"fp32": {"mean_px_vs_fp32": 0.0, "proxy_pck": proxy_pck(ref, val_t)}}
    for name, path in paths.items():
        got = np.stack(_run_tflite(path, [c[None].astype(np.uint8) for c in val]))
        px = np.linalg.norm((got[:, :, :2] - ref[:, :, :2]) * 192, axis=-1)
        proxy[name] = {"mean_px_vs_fp32": float(px[sure].mean()), "proxy_pck": proxy_pck(got, val_t)}
    # the sparse build closest to fp32 on the held-out training crops; ties keep the earlier one
    final = min((n for n in paths if n != "ptq_dense"), key=lambda n: proxy[n]["mean_px_vs_fp32"])
    models = {"official_int8_tflite": str(MODELS / "movenet_lightning_int8.tflite"), "lightning_fp32_onnx": fp32,
              **{f"{n}_tflite": path for n, path in paths.items()}}
    acc = {k: evaluate_file(path) for k, path in models.items()}
    lat = {}
    for th in a.threads:
        rows = interleaved_latency(models, rounds=a.rounds, per_round=5, threads=th)
        ratios = round_ratios({n: r.samples for n, r in rows.items()}, "official_int8_tflite", 5)
        lat[str(th)] = {"p50_ms": {n: round(r.p50, 3) for n, r in rows.items()},
                        "ratio_to_official": {n: summarise(r) for n, r in ratios.items()}}
    out = {"rule": __doc__.split("\n\n")[3].replace("\n", " "), "builds": paths, "notes": notes,
           "proxy_heldout_training_crops": proxy, "final": final, "accuracy": acc, "latency": lat,
           "load_after": round(os.getloadavg()[0], 2), "qat": qat.__dict__}
    md = ["# LiteRT int8 of Lightning: sparse heads and quantisation-aware fine-tuning", "",
          out["rule"], "",
          "| model | proxy: mean px vs fp32 (held-out train) | proxy PCK (train) | PCK@0.2 torso (eval) | hard | "
          + " | ".join(f"latency vs official, {th} thr" for th in lat) + " |",
          "|---|---:|---:|---:|---:|" + "---:|" * len(lat)]
    for k in models:
        n = k[:-len("_tflite")] if k.endswith("_tflite") and k != "official_int8_tflite" else (
            "fp32" if k == "lightning_fp32_onnx" else None)
        pr = proxy.get(n, {})
        cells = []
        for th, d in lat.items():
            s = d["ratio_to_official"].get(k)
            cells.append("1" if s is None else f"**{s['median']:.3f}** ({s['q25']:.3f}-{s['q75']:.3f})")
        md.append(f"| {k}{' (final)' if n == final else ''} | {pr.get('mean_px_vs_fp32', float('nan')):.2f} | "
                  f"{pr.get('proxy_pck', float('nan')):.1f} | {acc[k]['pck_torso']:.1f} | {acc[k]['hard_pck_torso']:.1f} | "
                  + " | ".join(cells) + " |")
    md += ["", f"Final by the rule: **{final}**. Latency: {a.rounds} rounds x 5 runs per model, per-round median "
           "ratio to the official int8 TFLite (q25-q75 over rounds); "
           + "; ".join(f"{th} thr p50 official {d['p50_ms']['official_int8_tflite']:.2f} ms" for th, d in lat.items())
           + f"; load after {out['load_after']}. Issue-4 target: PCK >= 66.8 at <= 0.6x the official int8 TFLite's "
           "latency."]
    if "qat_sparse" in notes and notes["qat_sparse"].get("qat"):
        qn = notes["qat_sparse"]["qat"]
        md.append(f"QAT: {qn['steps']} steps, lr {qn['lr']}, loss (relative MSE to the float outputs) "
                  f"{qn['loss_first']:.3f} at the first step -> {qn['loss_last']:.3f} at the last; build "
                  f"{notes['qat_sparse']['seconds']:.0f} s on this host.")
    _plot(out, RESULTS / f"{a.name}.png")
    md.append(f"\nPlot: `{a.name}.png` (PCK vs latency ratio per thread count, the target region shaded).")
    write_report(a.name, out, md)
    return 0


def _plot(out: dict, path: Path) -> None:
    """PCK (evaluation set) against the latency ratio to the official int8 TFLite, one panel per
    thread count, with the issue-4 target region (>= 66.8 PCK, <= 0.6x) shaded."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the bench extra is optional
        return
    lat = out["latency"]
    fig, axes = plt.subplots(1, len(lat), figsize=(5.5 * len(lat), 4.2), squeeze=False)
    for ax, (th, d) in zip(axes[0], lat.items()):
        ax.fill_between([0.4, 0.6], 66.8, 69.5, color="tab:green", alpha=0.12, label="issue-4 target")
        for k, acc in out["accuracy"].items():
            r = 1.0 if k == "official_int8_tflite" else d["ratio_to_official"].get(k, {}).get("median")
            if r is None or r > 1.3:
                continue
            final = k == f"{out['final']}_tflite"
            ax.scatter([r], [acc["pck_torso"]], s=60 if final else 30, marker="*" if final else "o",
                       color="tab:red" if final else ("black" if k == "official_int8_tflite" else "tab:blue"))
            ax.annotate(k.replace("_tflite", ""), (r, acc["pck_torso"]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        ax.set(xlim=(0.45, 1.1), ylim=(65.5, 69.0), title=f"{th} thread{'s' if th != '1' else ''}",
               xlabel="latency / official int8 TFLite (per-round median)", ylabel="PCK@0.2 torso (161 people)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
