"""The report of ``edgepose adapt``: ``adapt_report.json`` and ``adapt_report.md``."""

from __future__ import annotations

import json
from pathlib import Path


def to_markdown(res) -> str:
    """A short Markdown summary of an :class:`~.scene.AdaptResult`."""
    g = res.gate
    cand, cur = g["candidate"], g["current"]
    lines = [f"# Scene adaptation: {res.scene['name']}", "",
             f"Verdict: **{'accepted' if res.accepted else 'refused'}** "
             f"(candidate disagreement {cand['disagreement']:.2f} vs current {cur['disagreement']:.2f}, "
             f"margin {g['margin']:g}; {g['metric']})." + (f" Gate evidence: {g['reason']}." if g.get("reason") else ""),
             "",
             "| model | PCK vs teacher | disagreement | gate crops |", "|---|---:|---:|---:|",
             f"| current ({Path(res.current).name}) | {cur['pck']:.2f} | {cur['disagreement']:.2f} | {cur['crops']} |",
             f"| candidate int8 ({res.config['student']}) | {cand['pck']:.2f} | {cand['disagreement']:.2f} | "
             f"{cand['crops']} |", "",
             "## Learned from", ""]
    for seg in ("train", "gate"):
        for r in res.scene[seg]:
            if "file" in r:
                lines.append(f"- {seg}: `{r['file']}` frames [{r['frames'][0]}, {r['frames'][1]}) "
                             f"(sha256 {r['sha256_16']}...)")
            else:
                lines.append(f"- {seg}: {r['images']} collected crops `{r['first']}` .. `{r['last']}`")
    tr = res.training
    lines += ["", f"Training: {tr['steps']} steps on {res.crops['train']} teacher-labelled crops in "
                  f"{tr['seconds']:.0f} s (loss {tr['loss_first']:.4f} -> {tr['loss_last']:.4f}); "
                  f"gate on {res.crops['gate']} crops.", "",
              f"Files: `{Path(res.candidate_int8).name}`, `{Path(res.candidate_fp32).name}`"
              + (f", `{Path(res.adapted).name}` (the accepted model)" if res.adapted else
                 " (refused: no adapted_int8.onnx written)"), ""]
    return "\n".join(lines)


def save_report(res, out_dir) -> list[Path]:
    """Write the JSON and Markdown reports into ``out_dir``."""
    out = Path(out_dir)
    files = [out / "adapt_report.json", out / "adapt_report.md"]
    files[0].write_text(json.dumps(res.to_dict(), indent=1, sort_keys=True) + "\n")
    files[1].write_text(to_markdown(res))
    return files
