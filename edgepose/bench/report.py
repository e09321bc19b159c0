"""Write a bench result: JSON (the schema in benchmarks/README.md), a Markdown table, PNG plots.

Every latency column carries its kind (``measured`` on this host or ``emulated`` on a profile)
in the table, the plot titles and the JSON rows.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _f(v, nd=1, pct=False):
    if v is None:
        return "-"
    if isinstance(v, float) and v != v:  # NaN
        return "-"
    return f"{v * 100:.{nd}f}%" if pct else f"{v:.{nd}f}"


def markdown(doc: dict) -> str:
    """The result as Markdown: a header, the case table, A/B and video sections."""
    prof = doc["profile"]
    m = doc["machine"]
    lines = [f"# edgepose bench: {doc['suite']['name']}", "",
             f"- profile: **{prof['name']}** ({prof['kind']}{'' if prof['kind'] == 'measured' else ' from this host'})",
             f"- host: {m['host'].get('cpu_model')} ({m['host'].get('usable_cores')} cores), load avg "
             f"{_f(m.get('load_avg_1m_start'), 2)} -> {_f(m.get('load_avg_1m_end'), 2)}; created {doc['created']}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()), ""]
    head = ("| case | kind | backend | thr | prec | init ms | p50 ms | p90 ms | p99 ms | mean ± std | "
            "peak RSS MB | size MB | GMACs | GFLOP/s | % host peak | PCK@0.2 torso | gate | status | ref ratio |")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in doc["cases"]:
        lat, acc, ref = r["latency_ms"], r.get("accuracy") or {}, r.get("reference") or {}
        thr = str(r["threads"]) if r["kind"] == "measured" else f"{r['target_threads']}←{r['host_threads']}"
        lines.append(
            f"| {r['id']} | {r['kind']} | {r['backend']} | {thr} | {r['precision']} | {_f(r['init_ms'])} | "
            f"{_f(lat['p50'], 2)} | {_f(lat['p90'], 2)} | {_f(lat['p99'], 2)} | {_f(lat['mean'], 2)} ± {_f(lat['std'], 2)} | "
            f"{_f(r['peak_rss_mb'], 0)} | {_f(r['model_size_bytes'] / 1e6, 1)} | {_f(r['macs'] / 1e9, 3)} | "
            f"{_f(r['gflops_achieved'], 1)} | {_f(r['fraction_of_host_peak'], 1, pct=True)} | "
            f"{_f(acc.get('pck_torso'))} | {_f(acc.get('gate'))} | {r['status']} | "
            f"{_f(ref.get('ratio'), 2)} |")
    lines += ["", "GFLOP/s and % host peak: measured on this host (2 FLOPs per MAC, at p50). "
              "`thr` for emulated rows: target threads ← host threads."]
    refs = [r for r in doc["cases"] if r.get("reference")]
    if refs:
        lines += ["", "## Against published figures", "",
                  "| case | kind | p50 ms | published ms | ratio (p50) | ratio (best run) | source |",
                  "|---|---|---|---|---|---|---|"]
        for r in refs:
            ref = r["reference"]
            lines.append(f"| {r['id']} | {r['kind']} | {_f(r['latency_ms']['p50'], 1)} | {_f(float(ref['ms']), 1)} | "
                         f"{_f(ref['ratio'], 2)} | {_f(ref.get('ratio_best'), 2)} | {ref.get('source', '')}{(' (' + ref['note'] + ')') if ref.get('note') else ''} |")
    ab = doc.get("ab")
    if ab:
        s = ab["ratio_a_over_b"]
        lines += ["", "## A/B (interleaved, measured on this host)", "",
                  f"- A = `{ab['a']}` p50 {_f(ab['a_latency_ms']['p50'], 2)} ms; "
                  f"B = `{ab['b']}` p50 {_f(ab['b_latency_ms']['p50'], 2)} ms; {ab['pairs']} pairs, "
                  f"order {ab['order']}, spinning off",
                  f"- ratio A/B: median **{_f(s['median'], 3)}**, IQR {_f(s['p25'], 3)}-{_f(s['p75'], 3)}, "
                  f"min-max {_f(s['min'], 3)}-{_f(s['max'], 3)}, 95 % CI of the median "
                  f"{_f(s['ci95_median'][0], 3)}-{_f(s['ci95_median'][1], 3)}"]
    if doc.get("video"):
        lines += ["", "## Video (end to end, measured on this host)", "",
                  "| case | frames | fps | p50 ms | p90 ms | stages p50 ms | decode p50 ms |", "|---|---|---|---|---|---|---|"]
        for v in doc["video"]:
            st = ", ".join(f"{k} {_f(x['p50'], 2)}" for k, x in v["stages_ms"].items())
            lines.append(f"| {v['id']} | {v['frames']} | {_f(v['fps'], 1)} | {_f(v['latency_ms']['p50'], 2)} | "
                         f"{_f(v['latency_ms']['p90'], 2)} | {st} | {_f(v['decode_ms']['p50'], 2)} |")
    lines += peers_markdown(doc)
    if doc.get("failed"):
        lines += ["", f"**FAILED accuracy gate:** {', '.join(doc['failed'])}"]
    return "\n".join(lines) + "\n"


def peers_markdown(doc: dict) -> list[str]:
    """The "Peers" section: per entry, per clip and over all clips, every pipeline beside the peer."""
    if not doc.get("peers"):
        return []
    lines = ["", "## Peers (interleaved per frame, measured on this host)", "",
             "Latency: end to end per frame, decode excluded (the peer timed inside its process, pipe "
             "excluded). `/ peer`: the per-frame latency ratio to the peer, median (IQR). Jitter: mean "
             "acceleration, px/frame², 13 shared joints, over the frames where every pipeline of the entry "
             "has a pose. PCK: image mode on the evaluation set, each pipeline detecting on the full image.", "",
             "| entry | clip | pipeline | frames | p50 ms | p95 ms | CPU ms/frame | / peer | frames with person | "
             "jitter | PCK@0.2 torso |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in doc["peers"]:
        imgs = (e.get("images") or {}).get("pipelines", {})
        for c in [*e["clips"], None]:
            for n in e["pipelines"]:
                if c is None:  # every clip's frames pooled
                    row, where, jit, found = e["pooled"][n], "all clips", None, sum(
                        x["pipelines"][n]["frames_with_person"] for x in e["clips"])
                    frames, cpu = row["frames"], row["cpu_ms"]["mean"]
                else:
                    row, where = c["pipelines"][n], c["clip"]
                    jit, found, frames = c["jitter_common_frames"].get(n), row["frames_with_person"], c["frames"]
                    cpu = row["cpu_ms"]["mean"]
                r = row.get("ratio") if c is None else c["ratios"].get(n)
                ratio = f"{r['median']:.2f}x ({r['p25']:.2f}-{r['p75']:.2f})" if r else "1 (peer)"
                pck = (imgs.get(n) or {}).get("pck_torso") if c is None else None
                lines.append(f"| {e['id']} (t{e['threads']}) | {where} | {n} | {frames} | "
                             f"{_f(row['latency_ms']['p50'], 1)} | {_f(row['latency_ms']['p95'], 1)} | {_f(cpu, 1)} | "
                             f"{ratio} | {found}/{frames} | {_f(jit, 2)} | {_f(pck)} |")
    info = [f"{e['peer']}: {e['peer_description']}" for e in doc["peers"]]
    lines += ["", *(f"- {i}" for i in dict.fromkeys(info))]
    return lines


def plot_cdf(doc: dict, path: Path) -> None:
    """Latency CDF, one line per case (and per A/B side)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in doc["cases"]:
        x = np.sort(r["samples_ms"])
        ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", label=f"{r['id']} ({r['kind']})")
    ax.set_xscale("log")
    ax.set_xlabel(f"latency ms ({doc['profile']['kind']}, profile {doc['profile']['name']})")
    ax.set_ylabel("fraction of runs")
    ax.set_title(f"Latency CDF: {doc['suite']['name']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pareto_front(points):
    """Indices of the points (latency, accuracy) not dominated by a faster, more accurate one."""
    idx = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in idx:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(doc: dict, path: Path) -> bool:
    """Latency (p50) vs PCK@0.2 x torso, Pareto front joined; False when no case has accuracy."""
    rows = [r for r in doc["cases"] if (r.get("accuracy") or {}).get("pck_torso") is not None]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r["latency_ms"]["p50"], r["accuracy"]["pck_torso"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 5))
    for r, (x, y) in zip(rows, pts):
        ax.scatter(x, y, color="tab:red" if r["status"] == "FAILED" else "tab:blue")
        ax.annotate(r["id"], (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front = pareto_front(pts)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", color="gray", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency ms ({doc['profile']['kind']}, profile {doc['profile']['name']})")
    ax.set_ylabel("PCK@0.2 x torso, ALL (%)")
    ax.set_title("Latency vs accuracy (red: FAILED gate)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_peers(doc: dict, path: Path) -> str:
    """One point per pipeline of every ``peers:`` entry: p50 latency (all clips) vs PCK@0.2 x torso
    (image mode, own detection) where the entry ran it, else p50 bars with p95 whiskers.
    Returns ``"pck"`` or ``"latency"``, the kind of plot written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(e, n, p) for e in doc["peers"] for n, p in e["pooled"].items()]
    pck = {(e["id"], n): (e.get("images") or {}).get("pipelines", {}).get(n, {}).get("pck_torso") for e, n, _ in pts}
    with_pck = all(v is not None for v in pck.values())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    label = (lambda e, n: n if len(doc["peers"]) == 1 else f"{e['id']}: {n}")
    if with_pck:
        for e, n, p in pts:
            x, y = p["latency_ms"]["p50"], pck[(e["id"], n)]
            ax.scatter(x, y, s=50, marker="s" if n == e["peer"] else "o")
            ax.annotate(label(e, n), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel("video latency p50, ms/frame (measured, all clips)")
        ax.set_ylabel("PCK@0.2 x torso, own detection (%)")
        ax.margins(x=0.3, y=0.15)
    else:
        p50 = [p["latency_ms"]["p50"] for _, _, p in pts]
        err = [[0] * len(pts), [p["latency_ms"]["p95"] - p["latency_ms"]["p50"] for _, _, p in pts]]
        ax.barh(range(len(pts)), p50, xerr=err, color=["tab:orange" if n == e["peer"] else "tab:blue"
                                                       for e, n, _ in pts])
        ax.set_yticks(range(len(pts)), [label(e, n) for e, n, _ in pts], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("latency ms/frame: p50 bar, p95 whisker (measured, all clips)")
    ax.set_title(f"Peers: {doc['suite']['name']} (interleaved per frame)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return "pck" if with_pck else "latency"


def write_report(doc: dict, out_dir, *, plots: bool = True) -> dict[str, str]:
    """Write ``results.json``, ``results.md`` and the plots into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(doc, indent=1, default=_json_default) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(doc), encoding="utf-8")
    if plots and doc["cases"]:
        paths["cdf"] = out / "latency_cdf.png"
        plot_cdf(doc, paths["cdf"])
        p = out / "pareto.png"
        if plot_pareto(doc, p):
            paths["pareto"] = p
    if plots and doc.get("peers"):
        paths["peers"] = out / "peers.png"
        plot_peers(doc, paths["peers"])
    log.info("bench report written to %s", out)
    return {k: str(v) for k, v in paths.items()}


def _json_default(o):
    import dataclasses

    import numpy as np

    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
