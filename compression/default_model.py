"""Build the model the base install ships: MoveNet Lightning as an int8 ONNX (ORT static QDQ).

``python -m edgepose.compression.default_model [--assets DIR]`` rebuilds
``edgepose/data/movenet_lightning_int8_qdq.onnx`` from the Apache-2.0 MoveNet Lightning weights
(the fp32 ONNX of the assets folder) with the project's own quantiser
(:func:`edgepose.compression.quantize.quantize`: per-channel int8 weights, uint8 activations, the
input normalisation folded into the first DequantizeLinear, the decoder tail kept in float).

Calibration uses person crops of the *shippable* training material only
(:func:`~edgepose.compression.data.shippable.shippable_sources`: Apache / BSD / MIT / CC-BY /
public-domain media), labelled once by the teacher and cached; never the evaluation set. The
builder then scores the file on the 161-person evaluation set and times it against the fp32
source interleaved in one run, and writes both into the card (``movenet_lightning_int8_qdq.json``)
beside the model with the sha256, the calibration material's content hash and the licence notice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from edgepose.errors import MissingFileError
from edgepose._hash import sha256_file as _sha256

#: Where the shipped model and its card live (package data).
DATA_DIR = Path(__file__).resolve().parent.parent / "edgepose" / "data"
if not DATA_DIR.is_dir():  # installed: edgepose.compression sits inside the edgepose package
    DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MODEL_NAME = "movenet_lightning_int8_qdq.onnx"
CARD_NAME = "movenet_lightning_int8_qdq.json"
#: The card name the model registers under (edgepose.models).
CARD = "movenet-lightning-int8-onnx"
#: Calibration crops and their seed (the spread over the label set is deterministic).
NUM_CALIBRATION = 64
SEED = 0
LICENCE = ("MoveNet SinglePose Lightning v4 weights: Copyright Google LLC, Apache License 2.0 "
           "(https://www.apache.org/licenses/LICENSE-2.0). Quantised to int8 by edgepose; "
           "calibrated only on Apache / BSD / MIT / CC-BY / public-domain media.")


def calibration_set(assets: Path, cache_dir: Path, n: int = NUM_CALIBRATION, seed: int = SEED):
    """``(crops, info)``: ``n`` 192 x 192 person crops of shippable media, teacher-labelled once."""
    from edgepose.compression.data.dataset import calibration_crops
    from edgepose.compression.data.labels import LabelConfig, label_media
    from edgepose.compression.data.shippable import shippable_sources

    items = shippable_sources(assets / "data")
    cfg = LabelConfig(teacher=str(assets / "models/movenet/movenet_thunder_fp32.onnx"),
                      detector=str(assets / "models/movenet/movenet_multipose_lightning_fp32.onnx"))
    labels = label_media(items, cfg, cache_dir)
    crops = calibration_crops(labels, n, out_size=192, seed=seed)
    digest = hashlib.sha256()
    for c in crops:
        digest.update(np.ascontiguousarray(c).tobytes())
    return crops, {"label_cache": Path(labels.path).name, "label_cache_sha256": _sha256(labels.path),
                   "crops": len(crops), "crops_sha256": digest.hexdigest(), "seed": seed,
                   "media_files": len(items), "material": "shippable_sources (licence allow-list)"}


def _interleaved_latency(paths: dict[str, str], threads: int, rounds: int = 200) -> dict[str, float]:
    """Median ms per model, the models timed in turn (A, B, A, B ...) in one run."""
    from edgepose.backends import open_backend

    backs = {k: open_backend(p, num_threads=threads) for k, p in paths.items()}
    try:
        feeds = {}
        for k, b in backs.items():
            spec = b.inputs[0]
            feeds[k] = {spec.name: np.random.default_rng(0).integers(0, 255, spec.shape).astype(spec.dtype)}
            for _ in range(10):
                b.run(feeds[k])
        times = {k: [] for k in backs}
        for _ in range(rounds):
            for k, b in backs.items():
                t0 = time.perf_counter()
                b.run(feeds[k])
                times[k].append((time.perf_counter() - t0) * 1e3)
        return {k: float(np.median(v)) for k, v in times.items()}
    finally:
        for b in backs.values():
            b.close()


def _versions(*packages: str) -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in packages}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def build(assets: Path, out_dir: Path = DATA_DIR, cache_dir: Path | None = None, *,
          evaluate_model: bool = True) -> dict:
    """Quantise, score and time the shipped default; returns the card written beside the model."""
    from edgepose.compression.export.onnx_export import set_metadata
    from edgepose.compression.quantize import QuantizeConfig, quantize

    import onnx

    fp32 = assets / "models/movenet/movenet_lightning_fp32.onnx"
    if not fp32.is_file():
        raise MissingFileError(f"{fp32} not found: pass --assets, the folder holding models/movenet")
    cache_dir = cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgepose" / "labels"
    crops, calib = calibration_set(assets, cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / MODEL_NAME
    cfg = QuantizeConfig(num_calibration=NUM_CALIBRATION)
    with tempfile.TemporaryDirectory(prefix="edgepose-default-") as tmp:
        tmp_out = Path(tmp) / MODEL_NAME
        quantize(fp32, tmp_out, cfg, calibration=crops)
        m = onnx.load(os.fspath(tmp_out))
        set_metadata(m, {"edgepose.card": CARD, "edgepose.licence": LICENCE,
                         "edgepose.source_sha256": _sha256(fp32),
                         "edgepose.calibration": json.dumps(calib, sort_keys=True)})
        onnx.save(m, os.fspath(tmp_out))
        shutil.move(tmp_out, out)
    card = {"card": CARD, "file": MODEL_NAME, "sha256": _sha256(out), "bytes": out.stat().st_size,
            "source": {"file": fp32.name, "sha256": _sha256(fp32), "licence": "Apache-2.0"},
            "licence": LICENCE, "quantization": cfg.to_dict(), "calibration": calib,
            "build": "python -m edgepose.compression.default_model (assets: $EDGEPOSE_ASSETS)",
            # the calibration crops are decoded and warped by OpenCV: another version gives other
            # crops and another (equally valid) file; constraints.txt pins the one used here
            "build_env": _versions("opencv-python-headless", "onnxruntime", "onnx", "numpy")}
    if evaluate_model:
        from edgepose.eval.runner import ALL, evaluate
        from edgepose.models import load_model

        acc = {}
        official = assets / "models/movenet/movenet_lightning_int8.tflite"  # Google's int8, for reference
        models = {"int8_qdq": out, "fp32_source": fp32, **({"official_int8_tflite": official}
                                                            if official.is_file() else {})}
        for key, path in models.items():
            with load_model(path, num_threads=2) as model:
                acc[key] = round(evaluate(model, root=assets / "data", progress=False).row(ALL).pck_torso, 2)
        card["accuracy"] = {"metric": "PCK@0.2 torso, 161-person evaluation set, protocol crops", **acc}
        lat = {}
        for t in (1, 2):
            lat[f"{t}_thread"] = {k: round(v, 2) for k, v in
                                  _interleaved_latency({k: str(p) for k, p in models.items()}, t).items()}
        card["latency_ms"] = {"note": "median invoke on the CPU (ONNX Runtime; LiteRT with XNNPACK for the "
                                      "official TFLite), the models interleaved in one run on the build machine "
                                      "(noisy: compare ratios within a row, not absolute ms)",
                              "cpu": _cpu_model(), **lat}
    (out_dir / CARD_NAME).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assets", default=None,
                   help="the assets folder (models/movenet, data/); default $EDGEPOSE_ASSETS, else ../shared/assets "
                        "in a checkout")
    p.add_argument("--out-dir", default=str(DATA_DIR), help=f"where to write the model (default {DATA_DIR})")
    p.add_argument("--no-eval", action="store_true", help="skip the accuracy and latency measurement")
    args = p.parse_args(argv)
    from edgepose.assets import assets_dir

    card = build(assets_dir(args.assets), Path(args.out_dir), evaluate_model=not args.no_eval)
    print(json.dumps({k: card[k] for k in ("file", "sha256", "bytes", "accuracy", "latency_ms") if k in card},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
