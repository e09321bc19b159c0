"""``edgepose compress`` report: Markdown a user can act on, and the PCK-vs-latency Pareto plot.

Latency on this host (measured) and the device figure (emulated by the roofline model for a
published profile, or measured when the profile is this host's) are separate, labelled columns;
every latency row carries the CPU model and ISA flags it was measured on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .gate import EVAL_SET, SET_LABELS

log = logging.getLogger(__name__)


def host_cpu() -> dict:
    """This host's CPU model, the ISA flags that matter for int8 / float kernels, and core count."""
    from edgepose.bench.hostprobe import read_cpuinfo

    model, flags, mhz = read_cpuinfo()
    return {"cpu_model": model, "isa_flags": list(flags), "logical_cores": os.cpu_count(), "mhz": mhz}


def _f(v, nd=1, suffix=""):
    return "-" if v is None else f"{v:.{nd}f}{suffix}"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both latency (lower) and score (higher)."""
    front = []
    for i, (li, si) in enumerate(points):
        if not any((lj <= li and sj >= si) and (lj < li or sj > si) for j, (lj, sj) in enumerate(points) if j != i):
            front.append(i)
    return front


def pareto_plot(report: dict, path: str | os.PathLike) -> str | None:
    """PCK vs latency of every candidate with the floor and the budget drawn (PNG, matplotlib Agg).

    The score axis is the evaluation set's PCK when it was scored, else the first gate set; the
    latency axis is the device figure when every candidate has one, else the host measurement.
    Returns the file written, or None when matplotlib is missing (logged)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        log.warning("no Pareto plot (pip install 'edgepose[eval]' for matplotlib): %s", exc)
        return None
    cands = report["candidates"]
    sel = report["selection"]
    sets = list(sel["thresholds"])
    key = EVAL_SET if EVAL_SET in sets else sets[0]
    use_dev = bool(report.get("device"))  # the budget is on the device figure then; else on the host's
    lat_key = "device_ms" if use_dev else "host_ms"
    xs = [c[lat_key] for c in cands]
    ys = [c["scores"].get(key) for c in cands]
    pts = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    idx = [i for i, (x, y) in enumerate(zip(xs, ys)) if x is not None and y is not None]
    front = {idx[i] for i in pareto_front(pts)}
    for i in idx:
        c = cands[i]
        colour = "tab:green" if c["passes_floor"] else "tab:red"
        marker = "*" if c["name"] == sel["name"] else ("o" if c["recommendable"] else "s")
        ax.scatter(xs[i], ys[i], c=colour, marker=marker, s=220 if marker == "*" else 60, zorder=3,
                   edgecolors="k" if i in front else "none")
        k = idx.index(i)  # alternate the labels above / below: neighbours often share a score
        ax.annotate(c["name"], (xs[i], ys[i]), textcoords="offset points", xytext=(6, 6 if k % 2 == 0 else -12),
                    fontsize=8)
    fr = sorted((xs[i], ys[i]) for i in front)
    if len(fr) > 1:
        ax.plot([p[0] for p in fr], [p[1] for p in fr], "k--", lw=0.8, zorder=2, label="Pareto front")
    ax.axhline(sel["thresholds"][key], color="tab:red", ls=":",
               label=f"floor {100 * sel['floor']:.0f} % of input = {sel['thresholds'][key]:.1f}")
    if sel.get("budget_ms") is not None:
        ax.axvline(sel["budget_ms"], color="tab:blue", ls=":", label=f"budget {sel['budget_ms']:.1f} ms")
    dev = report.get("device") or "host"
    ax.set_xlabel(f"latency ms ({report.get('latency_kind', 'measured')} on {dev})" if use_dev
                  else "latency ms (measured on this host)")
    ax.set_ylabel(SET_LABELS.get(key, key))
    left_out = [cands[i]["name"] for i in range(len(cands)) if i not in idx]
    ax.set_title("edgepose compress: candidates (green = meets the floor, * = recommended)"
                 + (f"\nnot plotted (no {'device figure' if use_dev else 'timing'}): {', '.join(left_out)}"
                    if left_out else ""), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)


def markdown(r: dict) -> str:
    """The report a user reads: the recommendation first, then every candidate and how it was built."""
    sel = r["selection"]
    cpu = r["host_cpu"]
    sets = list(sel["thresholds"])
    dev = r.get("device")
    kind = r.get("latency_kind", "measured here")
    lines = ["# edgepose compress report", "",
             f"**Recommended: `{sel['name']}`** -> `{sel['path']}`", "", sel["reason"], ""]
    if sel.get("budget_ms") is not None:
        lines.append(f"Latency budget: {sel['budget_ms']:.1f} ms per frame "
                     + (f"on `{dev}` ({kind} figure)." if dev else "measured on this host."))
    lines += [f"Floor: {100 * sel['floor']:.0f} % of the input model's score on each gate set: "
              + "; ".join(f"{SET_LABELS.get(s, s)} >= {t:.1f}" for s, t in sel["thresholds"].items()) + ".", "",
              "## Candidates", ""]
    dev_col = f"{dev} ms ({kind})" if dev else "device ms"
    head = (["model", "what"] + [SET_LABELS.get(s, s).split(",")[0] for s in sets]
            + ["hard", f"host ms (measured here, {r.get('threads')} thr)", dev_col, "size KB", "floor", "budget",
               "verdict"])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(sets) + 4) + ":---:|" * 2 + "---|"]
    for c in r["candidates"]:
        acc = r.get("accuracy", {}).get(c["name"], {})
        verdict = "**recommended**" if c["name"] == sel["name"] else c["refused_because"]
        lines.append("| " + " | ".join(
            [f"`{c['name']}`", c["what"]] + [_f(c["scores"].get(s)) for s in sets]
            + [_f(acc.get("hard_pck_torso")), _f(c.get("host_ms"), 2), _f(c.get("device_ms"), 1),
               _f(r["size_bytes"].get(c["name"], 0) / 1024, 0),
               "yes" if c["passes_floor"] else "**no**",
               "-" if c["within_budget"] is None else ("yes" if c["within_budget"] else "no"), verdict]) + " |")
    lines += ["", f"Host latency: measured on this machine, {cpu['cpu_model']} ({cpu['logical_cores']} logical "
              f"cores; ISA flags: {', '.join(cpu['isa_flags']) or 'none listed'}), ONNX Runtime CPU for .onnx and "
              "LiteRT for .tflite, interleaved rounds, medians. "
              + (f"Device figure: `{dev}`, {kind}"
                 + (" by the roofline emulator from this host's ONNX Runtime op profile (the same model "
                    "`edgepose bench --device` uses); an estimate, not a measurement on the device. "
                    "LiteRT files have no emulated figure (the emulator models ONNX Runtime)."
                    if kind == "emulated" else ".") if dev else "No device given: the budget is compared with "
                 "the host measurement."),
              "Ratios and int8 gains depend on the CPU's kernels (VNNI / AMX / dot-product); re-measure on the "
              "target.", ""]
    if r.get("pareto_plot"):
        lines += [f"![PCK vs latency]({os.path.basename(r['pareto_plot'])})", ""]
    lines += ["## How the candidates were made", ""]
    lab = r["labels"]
    lines.append(f"Teacher pseudo-labels: {lab['crops']} crops from {lab['files']} files (cache `{lab['cache']}`); "
                 f"training / calibration on {lab['train_crops']} crops, the gate's held-out set is "
                 f"{lab['heldout_crops']} crops of {lab['heldout_files']} other files (never trained or calibrated on).")
    if r.get("prune"):
        p = r["prune"]
        lines.append(f"Pruned student: MACs {p['macs_before'] / 1e6:.1f}M -> {p['macs_after'] / 1e6:.1f}M "
                     f"({100 * p['macs_fraction']:.0f} %), params {p['params_before'] / 1e6:.2f}M -> "
                     f"{p['params_after'] / 1e6:.2f}M; {r['distill'].get('method', 'kd')} training "
                     f"{r['distill']['seconds']:.0f} s, validation loss "
                     + " -> ".join(f"{v:.3f}" for v in r["distill"]["val"]) + ".")
    elif r.get("method"):
        m, t = r["method"], r["method"].get("train", {})
        lines.append(f"`--method {m['method']}` (the `{m['recipe']}` recipe's model and loss): {m['steps']} steps "
                     f"from scratch on {m['fit_crops']} training crops ({m['val_crops']} more of other training "
                     f"files for its validation), {t.get('seconds', 0):.0f} s, {t.get('samples_per_s', 0):.1f} "
                     f"samples/s on {t.get('device', 'cpu')}"
                     + (f", ViT teacher {m['teacher_train']['seconds']:.0f} s" if m.get("teacher_train") else "")
                     + (f", OKDHP branch {m['branch']} kept" if "branch" in m else "")
                     + (f", clips of {m['videos']} training videos" if "videos" in m else "") + ".")
    elif r.get("student_skipped"):
        lines.append(f"No pruned student: {r['student_skipped']}.")
    if r.get("progressive"):
        pts = r["progressive"]["points"]
        lines.append("Progressive pruning (int8 scores per step): " + ("; ".join(
            f"step {p['step']} ({', '.join(p['stages'])}; {100 * p['macs_fraction']:.0f} % MACs): "
            + ", ".join(f"{k} {v:.1f}" for k, v in p["scores_int8"].items())
            + ("" if p["passes"] else " **below the floor**") for p in pts) or "no stage made the runtime faster")
            + f"; chosen step: {r['progressive']['chosen_step']}.")
    if r.get("budget"):
        b = r["budget"]
        ch = b.get("chosen")
        lines.append(f"Budget search ({b['device']}, {b['kind']}, fp32 ONNX, before distillation): budget "
                     f"{b['budget_ms']:.1f} ms -> "
                     + (f"channel ratio {ch['ratio']:.2f} ({ch['latency_ms']:.1f} ms, {100 * ch['macs_fraction']:.0f} "
                        "% MACs)." if ch else "no ratio reaches it."))
    for note in r.get("notes", []):
        lines.append(f"Note: {note}")
    if EVAL_SET in sets:
        lines += ["", "The 161-person evaluation set is used here only as a pass/fail safety gate against the "
                  "floor (nothing is trained, calibrated or tuned on it); among passing candidates the choice "
                  "is by latency alone."]
    lines += ["", f"Total time: {r.get('seconds', 0):.0f} s"
              + (" (" + ", ".join(f"{k} {v:.0f} s" for k, v in r["phase_seconds"].items()) + ")"
                 if r.get("phase_seconds") else "") + "."]
    return "\n".join(lines) + "\n"


def write(report: dict, out: str | os.PathLike) -> None:
    """report.json, report.md and pareto.png in ``out``."""
    import json

    out = Path(out)
    report["pareto_plot"] = pareto_plot(report, out / "pareto.png")
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "report.md").write_text(markdown(report))


__all__ = ["host_cpu", "markdown", "pareto_front", "pareto_plot", "write"]
