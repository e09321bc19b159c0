"""Training samples/s of the long-KD recipe (50 %-MACs pruned Lightning, feature + head KD): the former
loop (``compression/`` at ``--old-rev``, unpacked into a temp folder) vs the one trainer, interleaved
in one run (old, new, new + workers, old, new, ... so machine noise hits all alike).

    python benchmarks/train_throughput.py --labels runs/cache/labels-*.npz --steps 24 --rounds 2

samples/s = batch x steps / seconds between the first timed step (after ``--skip`` warm-up steps)
and the last, from each run's own per-step log (validation and checkpoints excluded: one
checkpoint at the end). On a GPU, add ``--device cuda`` (the former loop stays on the CPU).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from train_agreement import _assets, _old_package  # the script's folder is on sys.path


def _rate(log: Path, batch: int, skip: int) -> float:
    rows = [r for r in map(json.loads, log.read_text().splitlines()) if "event" not in r]
    a, b = rows[skip - 1], rows[-1]
    return (b["step"] - a["step"]) * batch / max(1e-9, b["t"] - a["t"])


def main(argv=None) -> int:
    from edgepose.compression.data.labels import load_labels
    from edgepose.compression.importer import import_movenet
    from edgepose.compression.prune import PruneConfig, prune

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", required=True, help="label cache .npz (training crops)")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--skip", type=int, default=4, help="warm-up steps left out of the timing")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers of the 'new+workers' arm")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--old-rev", default="d97cdc9", help="the commit with the former loops (default: the last before the trainer)")
    p.add_argument("--out")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    labels = load_labels(a.labels)
    net = import_movenet(str(_assets() / "models/movenet/movenet_lightning_fp32.onnx"))
    base = prune(copy.deepcopy(net), PruneConfig(importance="magnitude", target_macs=0.5)).model
    from edgepose.compression.distill import long_kd as new_kd

    rows = {"old": [], "new": [], "new+workers": []}
    with tempfile.TemporaryDirectory() as tmp:
        _old_package(a.old_rev, Path(tmp))
        old_kd = importlib.import_module("oldcompression.distill.long_kd")
        for r in range(a.rounds):
            for arm in rows:
                mod = old_kd if arm == "old" else new_kd
                cfg = mod.LongKDConfig(minutes=600, max_steps=a.steps, batch_size=a.batch, ckpt_every=10 ** 6,
                                       threads=a.threads)
                out = Path(tmp) / f"{arm}_{r}"
                kw = {} if arm == "old" else {"device": a.device, "workers": a.workers if arm == "new+workers" else 0}
                t = time.perf_counter()
                mod.train_long_kd(copy.deepcopy(base), net, labels, cfg, out, **kw)
                rate = _rate(out / "log.jsonl", a.batch, a.skip)
                rows[arm].append(rate)
                print(f"round {r} {arm:12s} {rate:6.2f} samples/s ({time.perf_counter() - t:.0f} s in all)", flush=True)
    res = {arm: {"samples_per_s": v, "median": float(np.median(v))} for arm, v in rows.items()}
    res["setup"] = {"steps": a.steps, "skip": a.skip, "batch": a.batch, "threads": a.threads, "device": a.device,
                    "workers": a.workers, "n_labels": len(labels), "torch": torch.__version__}
    print(json.dumps({k: v["median"] for k, v in res.items() if k != "setup"}))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
