"""C12 (issue 20 item 5): run a shipped recipe on the one Trainer with the new pool as its data.

The recipes cannot name the pool (``media: [shippable]`` = videos + train_extra; a path entry would
re-detect the crops), so this swaps ``recipes._labels`` for the shippable ``train_pool`` crops
(labelled whole by the recipe's teacher) and overrides the schedule (steps, batch, no amp /
channels_last / workers). Usage: ``python c12_train.py ARM STEPS BATCH OUT [JSON recipe overrides]``
with ARM in plainkd (student-heatmap), okdhp, vit, vitkd, vitteacher (vit recipe). See
docs/research-notes.md C12.
"""
import json, sys, time, logging
from pathlib import Path
import numpy as np, torch, yaml
import os; torch.set_num_threads(int(os.environ.get("C12_THREADS", "2")))
from edgepose.assets import assets_dir
from edgepose.compression.train import recipes as R
from edgepose.compression.data import LabelConfig, label_media
from edgepose.compression.data.shippable import shippable_pool
A = Path(assets_dir(check=False))
CACHE = "runs/cache"
def pool_labels(rec, assets, info):
    items = shippable_pool(assets / "data")
    return label_media(items, LabelConfig(teacher=str(assets / rec.teacher), detector=None), CACHE, progress=False)
R._labels = pool_labels

def recipe(name, steps, batch, **over):
    rec = R.load_recipe(name)
    sch = {**rec.schedule, "batch_size": batch, "eval_every": max(steps, 1), "ckpt_every": 10**6, "workers": 0, "amp": False, "channels_last": False,
           "warmup": min(rec.schedule.get("warmup", 0), steps // 5)}
    d = {f: getattr(rec, f) for f in ("name", "method", "model", "teacher", "data", "options", "seed", "description", "path")}
    d.update(schedule=sch, **over)
    return R.Recipe(**d)

if __name__ == "__main__":
    arm, steps, batch, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    over = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    base = {"okdhp": "okdhp", "plainkd": "student-heatmap", "vit": "vit", "vitkd": "vit", "vitteacher": "vit"}[arm]
    rec = recipe(base, steps, batch, **over)
    t0 = time.time()
    res = R.run_recipe(rec, out, steps=steps, device="cpu", assets=A, progress=False)
    wall = time.time() - t0
    Path(out, "c12.json").write_text(json.dumps({"arm": arm, "steps": steps, "batch": batch, "wall_s": wall,
        "train_s": res.train_seconds, "val": res.val, "recipe": base, "over": over}, default=str))
    print(arm, "wall", round(wall, 1), "train_s", round(res.train_seconds, 1), "val", res.val[-1:] if res.val else None)
