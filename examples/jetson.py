#!/usr/bin/env python3
"""Jetson pose app: camera -> pose on the GPU -> overlay, inside the device's latency budget.

Reads a CSI camera (GStreamer nvarguscamerasrc), a USB camera or a video file; runs ONNX models
with ONNX Runtime's TensorRT / CUDA providers when this onnxruntime has them (JetPack's
onnxruntime-gpu wheel), else on the CPU, and says which in the log; TFLite models run on the
CPU (LiteRT). Optionally sends hard frames to an offload server within the frame budget of the
device profile; shows or records the overlay; prints one stats line per second (fps, p95
latency, budget misses, offload share, dropped frames).

    python examples/jetson.py --model movenet-thunder-fp32            # CSI camera, GPU, window
    python examples/jetson.py --input 0 --model movenet-thunder-fp32  # USB camera
    python examples/jetson.py --input demo --headless --record overlay.mp4
    python examples/jetson.py --multi topdown-mp-thunder              # several people, tracked ids
    python examples/jetson.py --offload-url http://192.168.1.20:8000 --offload-token "$TOKEN"

The frame loop is ``edgepose.app.run_app`` (the same as examples/raspberry_pi.py). See docs/install.md.
"""

from __future__ import annotations

import logging
import os
import sys

from edgepose.app import app_arguments, multi_person, run_app, single_person

#: The model a fresh install has (``edgepose fetch``; TFLite, so CPU). For the GPU pass an ONNX
#: card, e.g. --model movenet-thunder-fp32 (TensorRT builds its engine on the first run: minutes).
DEFAULT_MODEL = "blazepose-full"
DEFAULT_DEVICE = "jetson-orin-nano"

log = logging.getLogger("jetson")


def parse_args(argv=None):
    p = app_arguments("Jetson pose app (camera -> pose on the GPU -> overlay).", default_input="nvargus:0",
                      input_help="nvargus:N (CSI camera), camera index (0), /dev/videoN, a GStreamer pipeline, "
                                 "a video file, or 'demo'",
                      default_device=DEFAULT_DEVICE, default_model=DEFAULT_MODEL,
                      multi_help="movenet-multipose, topdown-mp-thunder (all ONNX: GPU), topdown-thunder, ...",
                      width=1280, height=720, headless_help="no window (use with --record over SSH)")
    p.add_argument("--cpu", action="store_true", help="ONNX Runtime on the CPU even if a GPU provider exists")
    return p.parse_args(argv)


def pick_providers(profile, cpu_only: bool) -> list[str]:
    """The profile's ONNX Runtime providers that this onnxruntime build has, in priority order."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CPUExecutionProvider"] if cpu_only else list(profile.runtimes.ort_providers)
    chosen = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
    missing = [p for p in wanted if p not in available]
    log.info("onnxruntime %s providers available: %s", ort.__version__, ", ".join(available))
    if missing:
        log.info("not in this onnxruntime build, skipped: %s (JetPack: install NVIDIA's onnxruntime-gpu "
                 "wheel for your JetPack release)", ", ".join(missing))
    return chosen


def load_card(name: str, threads: int, providers: list[str]):
    """Load a card; its .onnx files run with ``providers``, .tflite files on LiteRT (CPU)."""
    from edgepose.models import get_card, list_models, load_model

    onnx_only = name in list_models() and all(f.endswith(".onnx") for f in get_card(name).files)
    if onnx_only or (name.endswith(".onnx") and os.path.isfile(name)):
        model = load_model(name, num_threads=threads, providers=providers)
    else:
        model = load_model(name, num_threads=threads)
    for b in model.backends():
        active = getattr(b, "active_providers", None)
        if active is not None:
            gpu = [p for p in active if p != "CPUExecutionProvider"]
            log.info("%s: ONNX Runtime on %s (providers %s)", os.path.basename(b.model_path),
                     "the GPU" if gpu else "the CPU", ", ".join(active))
        else:
            log.info("%s: LiteRT on the CPU (TFLite model; ONNX Runtime's GPU providers apply to .onnx "
                     "cards, e.g. --model movenet-thunder-fp32)", os.path.basename(b.model_path))
    return model


def build_pipeline(args, profile, budget_ms: float, threads: int):
    """Cards load on the profile's GPU providers this onnxruntime has; then as on the Pi."""
    providers = pick_providers(profile, args.cpu)
    if args.multi:
        if args.offload_url:
            return multi_person(args, None)  # refuses --offload-url before a card loads
        card = load_card(args.multi, threads, providers)
        return multi_person(args, card, close=card.close)
    return single_person(args, load_card(args.model, threads, providers), budget_ms)


def main(argv=None) -> int:
    return run_app(parse_args(argv), build_pipeline)


if __name__ == "__main__":
    sys.exit(main())
