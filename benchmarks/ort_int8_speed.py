"""Why ORT int8 of MoveNet Lightning was barely faster than fp32, and the configuration that is.

Issue 4 target: int8 PTQ of Lightning fp32 >= 1.8x faster than fp32 on ONNX Runtime CPU here, PCK
drop <= 1.0 on the 161-person set. Run from the project root (needs the compress extra and
../shared/assets):

    python benchmarks/ort_int8_speed.py                    # build, profile, time, evaluate
    python benchmarks/ort_int8_speed.py --reuse --rounds 80

What it does, all in one process:

1. builds int8 candidates of the official fp32 graph with
   :func:`edgepose.compression.quantize.quantize` (calibration: 64 *training* crops, the same
   split as benchmarks/compress_lightning.py) plus a lever sweep (QOperator, U8U8, reduce_range,
   per-tensor, S8S8), ``fp32_fold`` (the fp32 graph with only the input fold, to attribute the gain)
   and the importer's torch re-export (``fp32_torch``) with its int8 (``int8_torch``);
2. profiles fp32 / previous int8 / folded int8 / chosen int8 with ORT's profiler at 1 and 2
   threads: time per op type, convs split into first / depthwise / pointwise, and what the
   optimised graph contains;
3. scores every candidate on held-out *training* crops (proxy PCK against the Thunder
   pseudo-labels, px from fp32) and on the 161-person evaluation set (``edgepose eval`` protocol);
4. times fp32 against every candidate interleaved (each round runs each model ``--per-round``
   times, in alternating order; ratio = median over rounds of fp32 / int8 within the round) at 1
   and 2 threads, plus the ORT session levers (thread spinning, graph optimisation level).

The chosen configuration is picked by a rule fixed on training data only: the highest held-out
training proxy PCK among the candidates that are >= 1.8x faster at 1 thread (the evaluation-set
PCK of every candidate is reported next to it, never used to pick).

Writes benchmarks/results/ort_int8_speed.{json,md}; models go to --work (runs/ort_int8/bench).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from compress_lightning import ASSETS, DEFAULT_LABELS, MODELS, RESULTS, _val_split  # noqa: E402

log = logging.getLogger("ort_int8_speed")
FP32 = str(MODELS / "movenet_lightning_fp32.onnx")
#: Depthwise convs below this many channels stay float in the mixed candidates (MLAS's u8s8
#: depthwise kernel ran MoveNet's 24-channel 48x48 head convs ~4x slower than fp32 NCHWc).
DW_BELOW = 32
#: The most int8-sensitive convs (benchmarks/results/compress_int8_sensitivity.json, ranked on
#: held-out training crops) kept float in the mixed candidates.
N_SENSITIVE = 8


#: candidates quantised from another fp32 file than the official graph (work dir -> path)
SOURCES = {"int8_torch": lambda work: str(work / "fp32_torch.onnx")}


def _session(path: str, threads: int, *, spinning: bool = False, opt_level: str = "all", profile: str = "",
             optimized: str = ""):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    o.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[opt_level]
    o.log_severity_level = 3
    if profile:
        o.enable_profiling = True
        o.profile_file_prefix = profile
    if optimized:
        o.optimized_model_filepath = optimized
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    x = np.random.default_rng(0).integers(0, 255, size=(1, 192, 192, 3)).astype(np.int32)
    return s, {i.name: x}


# ---------------------------------------------------------------- build


def _candidates(sens_nodes: list[str]):
    from edgepose.compression.quantize import QuantizeConfig

    top = tuple(sens_nodes[:N_SENSITIVE])
    cheap = tuple(n for n in top if "expand_relu" not in n)  # the two big expand 1x1s stay int8
    main = {
        "int8_prev": QuantizeConfig(fold_input=False),
        "int8_fold": QuantizeConfig(),
        "int8_fold_dw32": QuantizeConfig(exclude_depthwise_below=DW_BELOW),
        "int8_fold_fb2": QuantizeConfig(exclude_nodes=top[:2]),
        "int8_mixed8": QuantizeConfig(exclude_nodes=top, exclude_depthwise_below=DW_BELOW),
        "int8_mixed6": QuantizeConfig(exclude_nodes=cheap, exclude_depthwise_below=DW_BELOW),
        "int8_torch": QuantizeConfig(),  # of the torch re-export (SOURCES)
    }
    levers = {
        "lever_qoperator": QuantizeConfig(quant_format="qoperator"),
        "lever_u8u8": QuantizeConfig(weight_type="uint8"),
        "lever_reduce_range": QuantizeConfig(reduce_range=True),
        "lever_per_tensor": QuantizeConfig(per_channel=False),
        "lever_s8s8": QuantizeConfig(activation_type="int8"),
    }
    return main, levers


def _build(work: Path, reuse: bool, cal, sens_nodes):
    import onnx

    from edgepose.compression.quantize import quantize
    from edgepose.compression.quantize.ort_static import fold_input_normalization

    main, levers = _candidates(sens_nodes)
    models, cfgs, folds = {"fp32": FP32}, {}, {}
    p = work / "fp32_fold.onnx"
    if not (reuse and p.is_file()):
        m, _ = fold_input_normalization(onnx.load(FP32), as_float=True)  # exact float, scalar Sub / Mul
        onnx.save(m, p)
    folds["fp32_fold"] = {k: v for k, v in fold_input_normalization(onnx.load(FP32))[1].items() if k != "removed"}
    models["fp32_fold"] = str(p)
    # the importer's torch re-export (same pre / post-processing, written by torch.onnx) as a second source
    p = work / "fp32_torch.onnx"
    if not (reuse and p.is_file()):
        import torch

        from edgepose.compression.export import ExportConfig, export_onnx
        from edgepose.compression.importer import import_movenet

        torch.set_num_threads(1)
        export_onnx(import_movenet(FP32).eval(), p, ExportConfig(), check_crops=cal[:2])
    models["fp32_torch"] = str(p)
    for name, cfg in {**main, **levers}.items():
        p = work / f"{name}.onnx"
        if not (reuse and p.is_file()):
            t0 = time.perf_counter()
            r = quantize(SOURCES[name](work) if name in SOURCES else FP32, p, cfg, calibration=cal)
            folds[name] = r.input_fold
            log.info("built %s in %.0fs", name, time.perf_counter() - t0)
        models[name] = str(p)
        cfgs[name] = {k: v for k, v in cfg.to_dict().items() if k in (
            "fold_input", "quant_format", "weight_type", "activation_type", "reduce_range", "per_channel",
            "exclude_depthwise_below", "exclude_nodes", "calibration")}
    return models, cfgs, folds, list(main), list(levers)


# ---------------------------------------------------------------- profile


def _conv_kinds(path: str) -> dict[str, str]:
    """tensor / node name -> first | depthwise | pointwise | conv, for the profiler's node names
    (QLinearConv keeps the Conv name + ``_token_N``; fp32 NCHWc convs take their fused activation's
    output name + ``_nchwc``)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(path)
    inits = {i.name: i for i in m.graph.initializer}
    consumers = collections.defaultdict(list)
    for n in m.graph.node:
        for i in n.input:
            consumers[i].append(n)
    kinds, first = {}, True
    for n in m.graph.node:
        if n.op_type != "Conv" or n.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        group = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "group"), 1)
        k = "first" if first else "depthwise" if group > 1 else "pointwise" if w.shape[2:] == (1, 1) else "conv"
        first = False
        for key in [n.name, n.output[0]] + [c.output[0] for c in consumers[n.output[0]]
                                             if c.op_type in ("Clip", "Relu", "Sigmoid")]:
            kinds[key] = k
    return kinds


def _profile(path: str, threads: int, runs: int, kinds: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="edgepose-prof-") as tmp:
        opt = os.path.join(tmp, "opt.onnx")
        s, feed = _session(path, threads, profile=os.path.join(tmp, "p"), optimized=opt)
        for _ in range(runs):
            s.run(None, feed)
        ev = json.load(open(s.end_profiling()))
        import onnx

        om = onnx.load(opt)
        graph_ops = dict(collections.Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in om.graph.node))
    by_op, by_kind, n_op = collections.defaultdict(float), collections.defaultdict(float), collections.Counter()
    per_node = collections.defaultdict(list)
    nruns = sum(1 for e in ev if e.get("cat") == "Session" and e["name"] == "model_run")
    for e in ev:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        op, node = e["args"]["op_name"], e["name"][: -len("_kernel_time")]
        by_op[op] += e["dur"]
        n_op[op] += 1
        per_node[(node, op)].append(e["dur"])
        if "Conv" in op:
            base = re.sub(r"_token_\d+$", "", node)
            base = base[: -len("_nchwc")] if base.endswith("_nchwc") else base
            by_kind[kinds.get(base, kinds.get(base + ":0", "conv"))] += e["dur"]
    runs_ = max(nruns, 1)
    ms = {op: v / runs_ / 1e3 for op, v in by_op.items()}
    top = sorted(((float(np.median(v)) / 1e3, k[0], k[1]) for k, v in per_node.items()), reverse=True)[:12]
    return {"kernel_ms": sum(ms.values()), "by_op_ms": dict(sorted(ms.items(), key=lambda t: -t[1])),
            "count": {op: c // runs_ for op, c in n_op.items()},
            "conv_by_kind_ms": {k: v / runs_ / 1e3 for k, v in sorted(by_kind.items())},
            "top_nodes": [{"ms": t, "node": n[-70:], "op": o} for t, n, o in top], "optimized_graph_ops": graph_ops}


# ---------------------------------------------------------------- accuracy


def _proxy(models: dict, val, val_t) -> dict:
    from edgepose.compression.quantize.sensitivity import mean_px, proxy_pck

    def run(p):
        s, feed = _session(p, 1)
        name = next(iter(feed))
        return np.stack([s.run(None, {name: v[None].astype(np.int32)})[0].reshape(17, 3) for v in val])

    ref = run(models["fp32"])
    out = {}
    for k, p in models.items():
        pr = ref if k == "fp32" else run(p)
        out[k] = {"proxy_pck": proxy_pck(pr, val_t), "px_vs_fp32": mean_px(pr, ref, 192)}
    return out


def _proxy_outputs(path: str, val) -> np.ndarray:
    s, feed = _session(path, 1)
    name = next(iter(feed))
    return np.stack([s.run(None, {name: v[None].astype(np.int32)})[0] for v in val])


def _evaluate(models: dict, keep: tuple = ()) -> tuple[dict, dict]:
    """``edgepose eval`` protocol on the 161-person set; returns (scores, per-person results of ``keep``)."""
    from edgepose.eval.runner import evaluate
    from edgepose.models import load_model

    out, results = {}, {}
    for k, p in models.items():
        with load_model(p, card="movenet-lightning-fp32", num_threads=1) as m:
            r = evaluate(m, root=str(ASSETS / "data"), progress=False)
        out[k] = {"pck_torso": r.row("ALL").pck_torso, "hard_pck_torso": r.row("HARD").pck_torso,
                  "n_people": r.row("ALL").n_people}
        if k in keep:
            results[k] = r.results
    return out, results


def _bootstrap_drop(ref, res, n: int = 1000, seed: int = 0) -> list[float]:
    """95 % interval of PCK(ref) - PCK(res) over people resampled with replacement (paired)."""
    from edgepose.eval.runner import ALL, score

    rng = np.random.default_rng(seed)
    d = []
    for _ in range(n):
        idx = rng.integers(0, len(ref), len(ref))
        d.append(score(ALL, [ref[i] for i in idx]).pck_torso - score(ALL, [res[i] for i in idx]).pck_torso)
    return [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))]


# ---------------------------------------------------------------- latency


def _interleaved(runners: dict, threads: int, rounds: int, per_round: int, warmup: int = 10) -> dict:
    """runner name -> (path, session kwargs). Returns per-runner p50 ms and median per-round ratio
    fp32 / runner."""
    sess = {n: _session(p, threads, **kw) for n, (p, kw) in runners.items()}
    for s, feed in sess.values():
        for _ in range(warmup):
            s.run(None, feed)
    round_ms = {n: [] for n in sess}
    samples = {n: [] for n in sess}
    names = list(sess)
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            s, feed = sess[n]
            t = []
            for _ in range(per_round):
                t0 = time.perf_counter()
                s.run(None, feed)
                t.append((time.perf_counter() - t0) * 1e3)
            round_ms[n].append(float(np.median(t)))
            samples[n].extend(t)
    return round_ms, samples


def _timed(runners: dict, threads: int, rounds: int, per_round: int, blocks: int) -> dict:
    """``blocks`` interleaved runs (fresh sessions each); ratios pooled over every round of every block."""
    round_ms = {n: [] for n in runners}
    samples = {n: [] for n in runners}
    block_ratio = {n: [] for n in runners}
    for _ in range(blocks):
        r, smp = _interleaved(runners, threads, rounds, per_round)
        for n in runners:
            round_ms[n] += r[n]
            samples[n] += smp[n]
            block_ratio[n].append(float(np.median(np.asarray(r["fp32"]) / np.asarray(r[n]))))
    base = np.asarray(round_ms["fp32"])
    out = {}
    for n in runners:
        ratio = base / np.asarray(round_ms[n])
        out[n] = {"p50_ms": float(np.median(samples[n])), "p90_ms": float(np.percentile(samples[n], 90)),
                  "speedup_median": float(np.median(ratio)), "speedup_q25": float(np.percentile(ratio, 25)),
                  "speedup_q75": float(np.percentile(ratio, 75)), "speedup_per_block": block_ratio[n],
                  "runs": len(samples[n])}
    return out


# ---------------------------------------------------------------- report


def _md(out: dict) -> str:
    best = out["chosen"]
    acc, prx, lat = out["accuracy"], out["proxy"], out["latency"]
    fp = acc["fp32"]["pck_torso"]
    L = ["# ORT int8 of MoveNet Lightning: where the time goes, and the >= 1.8x configuration", "",
         f"ONNX Runtime {out['ort_version']} CPU on the shared 2-core dev host (AVX-512 VNNI; load average "
         f"{out['load_before'][0]:.1f} before, {out['load_after'][0]:.1f} after; other jobs running). One process; "
         f"fp32 and every candidate interleaved, {out['blocks']} blocks (fresh sessions) x {out['rounds']} rounds x "
         f"{out['per_round']} runs, ratio = median over all rounds of fp32 / candidate within the round (q25-q75 "
         "in brackets; per-block medians in the JSON). Idle threads do not spin "
         "unless stated. Accuracy: 161-person evaluation set (`edgepose eval` protocol, PCK@0.2 x torso); proxy: "
         f"{out['n_val']} held-out *training* crops against the Thunder pseudo-labels. Calibration: 64 training "
         "crops.", "",
         "**Default (`QuantizeConfig()`, input fold on): `int8_fold`**, the previous int8 model bit for bit, "
         f"{out['latency']['1']['int8_fold']['speedup_median']:.2f}x / "
         f"{out['latency']['2']['int8_fold']['speedup_median']:.2f}x faster than fp32 at 1 / 2 threads, PCK "
         f"{out['accuracy']['int8_fold']['pck_torso']:.1f} vs {out['accuracy']['fp32']['pck_torso']:.1f}. "
         f"Training-proxy pick (highest training proxy PCK, mean over 4 calibration subsets, among candidates "
         f">= 1.8x at 1 and 2 threads; it is **{best}** in bold below) does not transfer to the evaluation set: "
         "see Findings.", "",
         "| model | 1 thread p50 ms | speed-up 1T | 2 threads p50 ms | speed-up 2T | proxy PCK (train) | px vs fp32 (train) | PCK@0.2 torso | drop | hard |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in out["models"]:
        l1, l2 = lat["1"].get(k), lat["2"].get(k)
        if l1 is None:
            continue
        a = acc.get(k, {})
        L.append(f"| {'**' + k + '**' if k == best else k} | {l1['p50_ms']:.2f} | {l1['speedup_median']:.2f}x "
                 f"({l1['speedup_q25']:.2f}-{l1['speedup_q75']:.2f}) | {l2['p50_ms']:.2f} | "
                 f"{l2['speedup_median']:.2f}x ({l2['speedup_q25']:.2f}-{l2['speedup_q75']:.2f}) | "
                 f"{prx[k]['proxy_pck']:.1f} | {prx[k]['px_vs_fp32']:.2f} | {a.get('pck_torso', float('nan')):.1f} | "
                 f"{fp - a.get('pck_torso', float('nan')):+.1f} | {a.get('hard_pck_torso', float('nan')):.1f} |")
    cs = out["calibration_subsets"]
    L += ["", "Accuracy spread of the main candidates: the same configuration calibrated on 4 disjoint / interleaved "
          "subsets of the training crops (s0 = the build above), and a paired bootstrap over the 161 people (s0):", "",
          "| model | PCK s0 / s1 / s2 / s3 | mean PCK | drop (mean, worst) | bootstrap 95 % drop (s0) | proxy PCK mean (train) | px vs fp32 mean (train) |",
          "|---|---|---:|---:|---:|---:|---:|"]
    for k, v in cs.items():
        pcks = " / ".join(f"{r['pck_torso']:.1f}" for r in v["rows"].values())
        lo, hi = out["accuracy_ci95_drop"][k]
        L.append(f"| {'**' + k + '**' if k == best else k} | {pcks} | {v['mean_pck_torso']:.1f} | "
                 f"{np.mean(v['drops']):+.1f}, {max(v['drops']):+.1f} | {lo:+.1f} .. {hi:+.1f} | "
                 f"{v['mean_proxy_pck']:.1f} | {v['mean_px_vs_fp32']:.2f} |")
    L += ["", "Session levers (same interleaved run; speed-up against plain fp32):", "",
          "| runner | 1 thread p50 ms | speed-up 1T | 2 threads p50 ms | speed-up 2T |", "|---|---:|---:|---:|---:|"]
    for k in out["session_levers"]:
        l1, l2 = lat["1"][k], lat["2"][k]
        L.append(f"| {k} | {l1['p50_ms']:.2f} | {l1['speedup_median']:.2f}x | {l2['p50_ms']:.2f} | "
                 f"{l2['speedup_median']:.2f}x |")
    L += ["", "## Where the time goes (ORT profiler, kernel ms per run)", ""]
    profs = out["profile"]
    names = list(profs)
    for t in ("1", "2"):
        ops = sorted({op for n in names for op in profs[n][t]["by_op_ms"]},
                     key=lambda op: -max(profs[n][t]["by_op_ms"].get(op, 0) for n in names))
        L += [f"{t} thread{'s' if t != '1' else ''}:", "", "| op | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
        L.append("| **kernel total** | " + " | ".join(f"**{profs[n][t]['kernel_ms']:.2f}**" for n in names) + " |")
        for op in ops[:16]:
            L.append(f"| {op} | " + " | ".join(
                f"{profs[n][t]['by_op_ms'].get(op, 0):.3f} ({profs[n][t]['count'].get(op, 0)})" for n in names) + " |")
        for kind in ("first", "depthwise", "pointwise", "conv"):
            L.append(f"| conv: {kind} | " + " | ".join(
                f"{profs[n][t]['conv_by_kind_ms'].get(kind, 0):.3f}" for n in names) + " |")
        L.append("")
    L += ["(count of kernels per run in brackets; `conv:` rows split Conv / QLinearConv time by layer kind.)", ""]
    for n in names:
        L.append(f"- optimised graph of `{n}`: " + ", ".join(
            f"{k} x{v}" for k, v in sorted(profs[n]["1"]["optimized_graph_ops"].items(), key=lambda t: -t[1])[:10]))
    L += ["", "Slowest kernels, 1 thread:", ""]
    for n in names:
        L.append(f"- `{n}`: " + "; ".join(f"{r['op']} {r['node'][-40:]} {r['ms']:.3f}"
                                          for r in profs[n]["1"]["top_nodes"][:5]))
    L += ["", "## Findings", ""] + [f"- {x}" for x in out["findings"]]
    return "\n".join(L) + "\n"


def _findings(out: dict) -> list[str]:
    """The findings bullets, from the measured numbers in ``out``."""
    best, prof = out["chosen"], out["profile"]
    p1 = {k: v["1"] for k, v in prof.items()}
    prev, fold = p1["int8_prev"], p1["int8_fold"]
    lat1, lat2, acc, cs = out["latency"]["1"], out["latency"]["2"], out["accuracy"], out["calibration_subsets"]
    fp = acc["fp32"]["pck_torso"]

    def sp(k):
        return f"{lat1[k]['speedup_median']:.2f}x / {lat2[k]['speedup_median']:.2f}x"

    def drop(k):
        return f"mean drop {np.mean(cs[k]['drops']):+.1f}, worst {max(cs[k]['drops']):+.1f}"

    kinds = {k: {kk: v["conv_by_kind_ms"].get(kk, 0) for kk in ("first", "depthwise", "pointwise")}
             for k, v in p1.items()}
    return [
        "Why int8 was not faster: the *input normalisation*, not the convolutions. The tfjs graph normalises the "
        "int32 image in float (Cast -> Sub 0 -> Mul 1/127.5 per channel -> Sub 1 -> Transpose). Quantised as is, ORT "
        f"ran the Mul as a broadcasting QLinearMul ({prev['by_op_ms'].get('QLinearMul', 0):.2f} ms) next to a float "
        f"Sub ({prev['by_op_ms'].get('Sub', 0):.2f} ms, 6 Subs): about a quarter of the previous int8 model's "
        f"{prev['kernel_ms']:.2f} ms kernel time at 1 thread, eating most of what its convs saved "
        f"(int8 convs {sum(kinds['int8_prev'].values()):.2f} ms vs fp32 {sum(kinds['fp32'].values()):.2f} ms). "
        f"fp32 pays {p1['fp32']['by_op_ms'].get('Sub', 0) + p1['fp32']['by_op_ms'].get('Mul', 0):.2f} ms for the same "
        "chain (per-channel broadcast over a 3-wide innermost axis is ORT's slow elementwise path).",
        "Fix, `QuantizeConfig.fold_input` (now the default): the normalisation is `a*x + b` with one scale, so the "
        "uint8 pixels already are its quantised tensor: Cast(uint8) -> Transpose -> DequantizeLinear(a = 1/127.5, "
        "zp = 128) feeds the first conv and the first QLinearConv reads the pixels. That is exactly the input the "
        "unfolded int8 graph computed (q = x), and calibration still runs on the unfolded graph, so the folded int8 "
        "model is the previous one, only faster (outputs bit-identical on the held-out training crops: "
        f"{out['fold_bit_identical_to_prev']}; same PCK {acc['int8_fold']['pck_torso']:.1f} vs "
        f"{acc['int8_prev']['pck_torso']:.1f}). Kernel time {prev['kernel_ms']:.2f} -> {fold['kernel_ms']:.2f} ms; "
        f"speed-up {sp('int8_prev')} -> {sp('int8_fold')} (1 / 2 threads). fp32 with the same chain as exact scalar "
        f"Sub / Mul (`fp32_fold`) is {sp('fp32_fold')} faster than fp32 at PCK {acc['fp32_fold']['pck_torso']:.1f}: "
        "the original graph's per-channel broadcast is slow in fp32 too, but int8 gains far more.",
        "Convolutions by kind, 1 thread (fp32 -> int8): first conv "
        f"{kinds['fp32']['first']:.2f} -> {kinds['int8_fold']['first']:.2f} ms, depthwise "
        f"{kinds['fp32']['depthwise']:.2f} -> {kinds['int8_fold']['depthwise']:.2f} ms, pointwise "
        f"{kinds['fp32']['pointwise']:.2f} -> {kinds['int8_fold']['pointwise']:.2f} ms. The VNNI U8S8 GEMM makes "
        "the 1x1 convs 2-3x faster; MLAS's int8 depthwise kernel is no faster than fp32 NCHWc overall and ~4x "
        "slower on the 24-channel 48x48 head / FPN depthwise convs, and the 3-input-channel first conv is ~2x "
        "slower in int8. Keeping those float (`int8_fold_dw32`, `int8_fold_fb2`) gains little: each float island "
        "adds Transpose / Reorder / Quantize nodes.",
        f"Accuracy: `int8_fold` {drop('int8_fold')} PCK over 4 calibration subsets. Keeping the 8 most "
        "int8-sensitive convs (ranked on training crops, compress_int8_sensitivity.json) and the "
        f"sub-{DW_BELOW}-channel depthwise convs float (`int8_mixed8`): {drop('int8_mixed8')}, at "
        f"{sp('int8_mixed8')}; without the two stem expansion 1x1s (`int8_mixed6`): {drop('int8_mixed6')}, "
        f"at {sp('int8_mixed6')}. The training proxy ranks these fallbacks above `int8_fold` (closer to fp32 on "
        f"the training crops: {cs['int8_mixed8']['mean_px_vs_fp32']:.1f} / {cs['int8_fold_fb2']['mean_px_vs_fp32']:.1f} "
        f"vs {cs['int8_fold']['mean_px_vs_fp32']:.1f} px), the evaluation set does not (mean PCK "
        f"{cs['int8_mixed8']['mean_pck_torso']:.1f} / {cs['int8_fold_fb2']['mean_pck_torso']:.1f} vs "
        f"{cs['int8_fold']['mean_pck_torso']:.1f}), and every float island costs speed at 2 threads, so the default "
        "stays all-int8; the options remain for other models / devices.",
        "Result, new default `int8_fold` (the previous int8 model, only faster): "
        f"{sp('int8_fold')} faster than fp32 (1 / 2 threads; per-block 2-thread medians "
        f"{', '.join(f'{x:.2f}' for x in lat2['int8_fold']['speedup_per_block'])}) at {drop('int8_fold')} "
        f"(bootstrap 95 % drop interval {out['accuracy_ci95_drop']['int8_fold'][0]:+.1f} .. "
        f"{out['accuracy_ci95_drop']['int8_fold'][1]:+.1f}). "
        + (f"The training-side rule picks `{best}` instead: {sp(best)} at {drop(best)}. " if best != "int8_fold"
           else "") + "Target (>= 1.8x, drop <= 1.0): "
        + "; ".join(f"`{k}` {'met' if lat1[k]['speedup_median'] >= 1.8 and lat2[k]['speedup_median'] >= 1.8 and max(cs[k]['drops']) <= 1.0 else 'met at 1 thread only' if lat1[k]['speedup_median'] >= 1.8 and max(cs[k]['drops']) <= 1.0 else 'not met'}"
                    for k in dict.fromkeys(["int8_fold", best])) + ".",
        "Torch re-export: the importer's torch.onnx export of the same network (`fp32_torch`, PCK "
        f"{acc['fp32_torch']['pck_torso']:.1f}; normalisation as scalar Mul / Add) is already {sp('fp32_torch')} "
        f"faster than the official fp32 graph; quantised with the same default config (`int8_torch`, input fold "
        f"applies too) it is {sp('int8_torch')} faster than the official fp32 at {drop('int8_torch')}.",
        "Levers that do not help here: QOperator = QDQ after ORT's fusion (same QLinearConv kernels); U8U8 and S8S8 "
        "leave the VNNI U8S8 path (about fp32 speed); reduce_range costs accuracy for no speed; per-tensor weights "
        f"collapse accuracy (PCK {acc['lever_per_tensor']['pck_torso']:.1f}). Thread spinning at 2 threads speeds "
        "up fp32 and int8 alike on a quiet host and slows both badly under load (earlier runs), so it does not move "
        "the ratio; ORT_ENABLE_EXTENDED drops the NCHWc layout transform and is slower for both.",
        "Also tried in scratch runs (runs/ort_int8, same protocol), none better: percentile / entropy calibration, "
        "128 calibration crops, float heads (all four head branches float: 1.5-1.7x), a float stem through block 2 "
        "(1.65x at 2 threads), only the first two convs + the two expansions float (1.73x at 2 threads). "
        "Per-channel ranges of the linear-bottleneck tensors differ only 2-5x, so cross-layer equalisation "
        "was not pursued.",
        "Resolution of the accuracy gate: a first version of the fold moved the zero-point remainder (a/2, half a "
        "grey level) into the first conv's bias to be exact in float; its int8 model scored 65.9 / 66.5 / 66.3 / "
        "65.3 on the 4 calibration subsets (mean drop 1.7) against 66.8 / 67.1 / 67.0 / 67.3 for the unshifted one, "
        "with the same training-crop fidelity (3.9 vs 3.8 px from fp32). A half-grey-level input shift moving "
        "int8 PCK by ~1 point means the 161-person set resolves int8 variants to about +-1 PCK: the <= 1.0 gate "
        "is met here with little margin. The selection rule was written after exploratory evaluation-set runs in "
        "the scratch directory, so read the chosen row with the 4-subset spread and the bootstrap interval.",
        "Latency ratios move with the host load (the fp32 NCHWc graph suffers more under contention: fp32 ran "
        "4.2-9 ms at 1 thread across runs, the int8 graphs 2.0-2.9 ms), hence medians of within-round ratios; "
        f"load average {out['load_before'][0]:.1f} before and {out['load_after'][0]:.1f} after this run.",
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=str(ROOT / "runs" / "ort_int8" / "bench"))
    ap.add_argument("--labels", default=str(DEFAULT_LABELS))
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--per-round", type=int, default=5)
    ap.add_argument("--blocks", type=int, default=3, help="interleaved runs per thread count (fresh sessions)")
    ap.add_argument("--profile-runs", type=int, default=60)
    ap.add_argument("--reuse", action="store_true", help="reuse model files already in --work")
    ap.add_argument("--out", default=str(RESULTS / "ort_int8_speed"))
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md (and findings) from the .json")
    a = ap.parse_args(argv)
    if a.report_only:
        out = json.loads(Path(a.out + ".json").read_text())
        out["findings"] = _findings(out)
        Path(a.out + ".json").write_text(json.dumps(out, indent=1, default=float))
        Path(a.out + ".md").write_text(_md(out))
        return 0
    logging.basicConfig(level=logging.ERROR, format="%(message)s")  # ORT's quantiser warns on root
    log.setLevel(logging.INFO)
    import onnxruntime as ort

    from edgepose.compression.data.labels import load_labels

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    labels = load_labels(a.labels)
    val, val_t, cal = _val_split(labels, 192, 1000)  # every held-out training crop + 128 calibration crops
    sens = json.loads((RESULTS / "compress_int8_sensitivity.json").read_text())
    sens_nodes = [r["node"] for r in sorted(sens["rows"], key=lambda r: -r["err_px"])]
    models, cfgs, folds, main_names, lever_names = _build(work, a.reuse, cal[:64], sens_nodes)
    out = {"ort_version": ort.__version__, "rounds": a.rounds, "per_round": a.per_round, "blocks": a.blocks,
           "n_val": len(val),
           "models": models, "configs": cfgs, "input_fold": folds, "load_before": list(os.getloadavg())}

    log.info("accuracy ...")
    out["proxy"] = _proxy(models, val, val_t)
    same = _proxy_outputs(models["int8_prev"], val), _proxy_outputs(models["int8_fold"], val)
    out["fold_bit_identical_to_prev"] = bool(np.array_equal(*same))
    out["accuracy"], per_person = _evaluate(models, keep=tuple(["fp32"] + main_names))
    out["accuracy_ci95_drop"] = {k: _bootstrap_drop(per_person["fp32"], per_person[k]) for k in main_names}
    # the same configurations calibrated on 3 other subsets of the training crops: how much of a PCK
    # difference is the calibration sample (s0 = cal[:64] is the main build)
    from edgepose.compression.quantize import quantize

    subsets = {"s1": cal[64:128], "s2": cal[::2][:64], "s3": cal[1::2][:64]}
    main_cfgs = _candidates(sens_nodes)[0]
    out["calibration_subsets"] = {}
    for k in main_names:
        rows = {"s0": {**out["accuracy"][k], **out["proxy"][k]}}
        for sk, crops in subsets.items():
            p = work / f"{k}_{sk}.onnx"
            if not (a.reuse and p.is_file()):
                quantize(SOURCES[k](work) if k in SOURCES else FP32, p, main_cfgs[k], calibration=crops)
            acc_k, _ = _evaluate({k: str(p)})
            rows[sk] = {**acc_k[k], **_proxy({"fp32": FP32, k: str(p)}, val, val_t)[k]}
        fp = out["accuracy"]["fp32"]["pck_torso"]
        out["calibration_subsets"][k] = {
            "rows": rows, "mean_pck_torso": float(np.mean([r["pck_torso"] for r in rows.values()])),
            "drops": [fp - r["pck_torso"] for r in rows.values()],
            "mean_proxy_pck": float(np.mean([r["proxy_pck"] for r in rows.values()])),
            "mean_px_vs_fp32": float(np.mean([r["px_vs_fp32"] for r in rows.values()]))}
        log.info("%s: eval PCK %s", k, [round(r["pck_torso"], 2) for r in rows.values()])

    log.info("latency ...")
    runners = {k: (p, {}) for k, p in models.items()}
    levers = {"fp32 spinning": (FP32, {"spinning": True}), "fp32 opt=extended": (FP32, {"opt_level": "extended"})}
    out["latency"] = {}
    for t in (1, 2):
        out["latency"][str(t)] = _timed({**runners, **levers, **{
            f"{k} spinning": (models[k], {"spinning": True}) for k in main_names[-2:]}, **{
            f"{k} opt=extended": (models[k], {"opt_level": "extended"}) for k in main_names[-2:]}},
            t, a.rounds, a.per_round, a.blocks)
    out["session_levers"] = [k for k in out["latency"]["1"] if " " in k]

    fast = [k for k in main_names if min(out["latency"][t][k]["speedup_median"] for t in ("1", "2")) >= 1.8]
    pool = fast or main_names
    out["chosen"] = max(pool, key=lambda k: out["calibration_subsets"][k]["mean_proxy_pck"])
    out["chosen_config"] = cfgs[out["chosen"]]

    log.info("profiles ...")
    kinds = _conv_kinds(FP32)
    out["profile"] = {}
    for k in dict.fromkeys(["fp32", "int8_prev", "int8_fold", "int8_torch", out["chosen"]]):
        out["profile"][k] = {str(t): _profile(models[k], t, a.profile_runs, kinds) for t in (1, 2)}
    out["load_after"] = list(os.getloadavg())

    out["findings"] = _findings(out)
    Path(a.out + ".json").write_text(json.dumps(out, indent=1, default=float))
    Path(a.out + ".md").write_text(_md(out))
    for k in dict.fromkeys(["int8_fold", out["chosen"]]):
        log.info("%s: %.2fx (1T), %.2fx (2T), PCK %.1f vs fp32 %.1f", k, out["latency"]["1"][k]["speedup_median"],
                 out["latency"]["2"][k]["speedup_median"], out["accuracy"][k]["pck_torso"],
                 out["accuracy"]["fp32"]["pck_torso"])
    log.info("wrote %s.{json,md}", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
