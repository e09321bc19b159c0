"""The report of ``scene_loopback.py`` (issue 21 part 4): the collection label, its lines and the Markdown."""

from __future__ import annotations


def collection_label(collect_rate: float | None, collect_interval_ms: float | None) -> str:
    """How the collection segment fed the server's collection (the report's ``collection``)."""
    parts = []
    if collect_interval_ms:
        parts.append(f"collection samples (RuntimeOptions.collect_interval_ms={collect_interval_ms:g}: at most one "
                     "keyframe crop per interval that was not offloaded, answers unused)")
    if collect_rate is not None:
        parts.append(f"a collection phase (--collect-rate {collect_rate:g}: the hardest {100 * collect_rate:.0f} % of "
                     "keyframes offloaded, no share cap)")
    return " + ".join(parts) if parts else "the deployed policy's offloads only"


def collection_lines(rep: dict) -> list[str]:
    """The report's lines on where the collected crops came from and the runtime's sample counts."""
    a = rep["after_run"]
    by = a.get("collected_by_source", {})
    lines = [f"- collected crops by source: {by.get('offload', 0)} offloads, {by.get('sample', 0)} collection samples"]
    if rep.get("collect_interval_ms"):
        snap, end = a.get("collection_samples_at_snapshot", {}), a.get("collection_samples", {})

        def txt(c):
            return (f"sent {c.get('sent', 0)}, answered {c.get('answered', 0)}, failed {c.get('failed', 0)}, "
                    f"skipped busy {c.get('skipped_busy', 0)}, offloads refused {c.get('offloads_refused', 0)}")

        lines += [f"- collection samples (`summary()['collection_samples']`), after run: at the snapshot {txt(snap)}; "
                  f"whole stream {txt(end)}; before run (no collection) whole stream "
                  f"{txt(rep['before_run'].get('collection_samples', {}))}"]
    return lines


def markdown(rep: dict) -> list[str]:
    a = rep["after_run"].get("adapt", {})
    g = a.get("gate", {})
    md = [f"# Scene adaptation end to end on loopback: vtest frames {rep['train'][0]}-{rep['train'][1] - 1} "
          f"collected, {rep['eval'][0]}-{rep['eval'][1] - 1} evaluated", "",
          f"Edge {rep['edge']} (measured on this host, {rep['threads']} thread), server `edgepose serve` "
          f"({rep['served']}, its own process on loopback, same shared cores), link **{rep['link']}** emulated "
          f"({rep['link_txt']}), **{rep['profile']} budget {rep['budget_ms']:.1f} ms emulated** (arrival to result on "
          "this host, not a Pi). Reference: the teacher (movenet-thunder-fp32) on the same frames, person "
          f"selection {rep['person_selection']}.", "",
          f"| run | edge model on {rep['eval'][0]}-{rep['eval'][1] - 1} | % of teacher PCK (stream ref) | % of teacher PCK (vtest_eval ref) | "
          "offload % | cloud % | within rpi4 budget % (emulated) | p50 ms | p99 ms | swaps (stats line) | "
          "target met |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rep["rows"]:
        md.append(f"| {r['run']} | {r['model']} | {r['pct_of_teacher_stream']} | {r['pct_of_teacher_vtest_eval']} | "
                  f"{100 * r['offload_share']:.1f} | {100 * r['cloud_share']:.1f} | {100 * r['within_budget']:.1f} | "
                  f"{r['p50_ms']} | {r['p99_ms']} | {r['swaps']} | "
                  f"{'yes' if r['met'] else 'no (' + ', '.join(r['missed']) + ')'} |")
    tr = rep["after_run"]["train_segment"]
    label = rep.get("collection") or collection_label(rep.get("collect_rate"), rep.get("collect_interval_ms"))
    md += ["", f"- collection: {label}"] + collection_lines(rep) + [
           f"- collected crops: **{rep['after_run'].get('collected_crops', 0)}** "
               f"({rep['after_run'].get('collection_bytes', 0) / 1024:.0f} KiB; {tr['offloaded']} frames of "
               f"{tr['frames']} offloaded while collecting, {100 * tr['offload_share']:.1f} %: "
               + ("the deployed policy)" if rep["collect_rate"] is None else f"a collection phase, the hardest "
                  f"{100 * rep['collect_rate']:.0f} % of keyframes offloaded, no cap; the deployed policy from frame "
                  f"{rep['eval'][0]}, in both runs)"),
           f"- adaptation: **{a.get('seconds', '-')} s** (stages {a.get('stages_s', {})}), "
           f"{a.get('training', {}).get('steps', '-')} steps on {a.get('crops', {}).get('train', '-')} crops, "
           f"gate on {a.get('crops', {}).get('gate', '-')} crops: candidate "
           f"{g.get('candidate', {}).get('pck', '-')} vs current {g.get('current', {}).get('pck', '-')} PCK vs "
           f"teacher -> **{'accepted' if a.get('accepted') else 'refused'}** ({g.get('reason', '')}; "
           f"gate_min_crops {a.get('config', {}).get('gate_min_crops', '-')})",
           "- same person as the reference (stream ref): " + ", ".join(
               f"{r['run'].split(':')[0]} {100 * r['same_person_stream']:.0f} %" for r in rep["rows"])
           + "; keyframe interval at the end: " + ", ".join(
               f"{k.split('_')[0]} {rep[k].get('keyframe_interval', '-')}" for k in ("before_run", "after_run")),
           f"- swap: {rep['after_run']['swaps'] or 'none'}",
           f"- stats line (after, frames {rep['eval'][0]}-{rep['eval'][1] - 1}): `{rep['after_run']['stats_line']}`",
           f"- wall time: teacher references {rep['seconds']['references']} s, after stream "
           f"{rep['after_run']['train_play_s']} + {rep['after_run']['eval_play_s']} s playback, before stream "
           f"{rep['before_run']['train_play_s']} + {rep['before_run']['eval_play_s']} s; total {rep['seconds']['total']} s; "
           f"load average {rep['meta']['load_avg_1m']}",
           ]
    if rep.get("cold_rows"):
        md += ["", f"The `vtest_eval` protocol (`offload_video.py`): a fresh runtime and server start cold at frame "
               f"{rep['eval'][0]}, reference = the teacher started cold there; same link, budget, policy and samples; "
               f"{len(rep['cold_rows']) // max(1, len(rep['cold']))} plays per model, interleaved by seed.", "",
               "| edge model | seed | % of teacher PCK | same person % | offload % | cloud % | within rpi4 budget % (emulated) "
               "| p50 ms | p99 ms |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rep["cold_rows"]:
            md.append(f"| {r['model']} | {r['seed']} | {r['pct_of_teacher_vtest_eval']:.1f} | "
                      f"{100 * r['same_person_vtest_eval']:.0f} | {100 * r['offload_share']:.1f} | "
                      f"{100 * r['cloud_share']:.1f} | {100 * r['within_budget']:.1f} | {r['p50_ms']} | {r['p99_ms']} |")
        for name, m in rep["cold"].items():
            md.append(f"| **{name}, mean of {m['plays']}** | | **{m['pct_of_teacher_vtest_eval']:.1f}** | "
                      f"{100 * m['same_person']:.0f} | {100 * m['offload_share']:.1f} | {100 * m['cloud_share']:.1f} | "
                      f"{100 * m['within_budget']:.1f} | | |")
    md += ["", "Target (issue 21, vtest_eval under emulated Wi-Fi with the specialised model"
           + (", the mean of the cold-start plays" if rep.get("cold") else "") + "): >= 97 % of the teacher's PCK, "
           f"<= 15 % offloaded, >= 99 % within the rpi4 budget: **{'met' if rep['met'] else 'not met'}**."]
    return md
