"""Evaluate one C12 arm (``python c12_eval.py OUT`` of c12_train.py): held-out pool agreement vs Thunder (heatmap argmax within 0.1 map side) + the 161-person set."""
import json, sys, os
from pathlib import Path
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import c12_train as drive  # patches _labels to the pool
import torch
from edgepose.compression.train import recipes as R
from edgepose.compression.distill.vitkd import heatmap_agreement
from edgepose.models import load_model
from edgepose.eval.runner import evaluate

out = Path(sys.argv[1]); meta = json.loads((out / "c12.json").read_text())
y = __import__("yaml").safe_load((out / "recipe.yaml").read_text())
rec = R.Recipe(name=y["name"], method=y["method"], model=y["model"], teacher=y["teacher"], data=y["data"],
               schedule=y["schedule"], options=y["options"], seed=y["seed"])
labels = drive.pool_labels(rec, drive.A, None)
module, tr, va, save, _ = R.build(rec, labels, assets=drive.A)
save.load_state_dict(torch.load(out / "model.pt", map_location="cpu"))
loader = torch.utils.data.DataLoader(va, batch_size=32)
extra = {}
if rec.method == "okdhp":
    net, idx, losses = save.best_student(loader); extra = {"branch": idx, "branch_losses": losses}
else:
    net = save
net.eval()
preds, maps = [], []
with torch.no_grad():
    for b in loader:
        preds.append(net(b["image"]).float()); maps.append(b["maps"][:, :17])
agree = heatmap_agreement(torch.cat(preds), torch.cat(maps))
onnx = out / "model.onnx"
if rec.method in ("student", "okdhp"):
    from edgepose.compression.export.students import export_onnx_student
    export_onnx_student(net, onnx)
else:
    from edgepose.compression.students.vit import export_heatmap_student
    export_heatmap_student(net, onnx)
rep = evaluate(load_model(str(onnx)), progress=False, root=str(drive.A / "data"))
row = {r.name: r for r in rep.rows}
allr = row["ALL"]
res = {**meta, "heldout_agree": agree, "n_val": len(va), "eval": {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in vars(allr).items()}, **extra}
(out / "c12_eval.json").write_text(json.dumps(res, default=str))
print(json.dumps({"arm": meta["arm"], "agree": round(agree, 4), "ALL": str(allr)[:300], **extra}, default=str))
