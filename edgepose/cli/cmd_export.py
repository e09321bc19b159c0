"""``edgepose export``: a Triton model repository, or a split (head/tail) model for a link."""

from __future__ import annotations

import json

from edgepose.cli import _args

NAME = "export"
HELP = "export a Triton/KServe model repository (triton) or a Neurosurgeon split model (split)"


def add_arguments(p):
    sub = p.add_subparsers(dest="format", metavar="FORMAT")
    sub.required = True
    t = sub.add_parser("triton", help="a model repository for NVIDIA Triton / KServe (config.pbtxt + 1/model.py or "
                                      "1/model.onnx)")
    t.add_argument("--model", required=True, help="an ONNX MoveNet card, e.g. movenet-thunder-fp32")
    t.add_argument("--out", required=True, type=_args.output_dir, help="the model repository folder")
    t.add_argument("--name", help="served model name (default: the card name)")
    t.add_argument("--instances", type=_args.int_range(1, 64), default=1, help="Triton instance_group count")
    t.add_argument("--backend", choices=("python", "onnxruntime"), default="python",
                   help="python (default): Triton's Python backend running onnxruntime, the full pose contract "
                        "(image_bytes BYTES [N] or image UINT8 [N,H,W,3] of any size), runs on the tritonserver of "
                        "the Triton environment; onnxruntime: 1/model.onnx for Triton's onnxruntime backend (NGC "
                        "images, GPU), image UINT8 [1,H,W,3] at the model's input size only")
    t.add_argument("--max-batch", type=_args.int_range(1, 4096), default=16,
                   help="python backend: crops per request (and per dynamic batch), 1-4096 (default 16)")
    t.add_argument("--dynamic-batching", action="store_true",
                   help="python backend: Triton's dynamic batcher on (image_bytes is then sent as [N, 1])")
    t.add_argument("--threads", type=_args.int_range(0, 256), default=0,
                   help="python backend: onnxruntime intra-op threads per instance (0: its default)")
    s = sub.add_parser("split", help="plan the best cut for a link and write head.onnx / tail.onnx")
    s.add_argument("--model", required=True, help="an ONNX card name or .onnx path")
    s.add_argument("--link", default="wifi", help="wifi, lte, 5g (presets) or a link of --profile")
    s.add_argument("--profile", help="device profile whose network links to use (e.g. rpi4)")
    s.add_argument("--edge-slowdown", type=_args.float_range(0.0, low_open=True), default=1.0,
                   help="the device runs this many times slower than this machine")
    s.add_argument("--server-speedup", type=_args.float_range(0.0, low_open=True), default=1.0, help="the server runs this many times faster")
    s.add_argument("--cloud-input-bytes", type=_args.int_range(1), help="bytes sent for all-cloud (e.g. the JPEG crop)")
    s.add_argument("--at", type=_args.int_range(-1), help="export this cut index instead of the planner's best")
    s.add_argument("--no-quantize", action="store_true", help="send float features (no 8-bit)")
    s.add_argument("--out", type=_args.output_dir, help="write head.onnx, tail.onnx, split.json and plan.json here")


def run(args) -> int:
    if args.format == "triton":
        from edgepose.server.triton import export_triton

        r = export_triton(args.model, args.out, name=args.name, instances=args.instances, backend=args.backend,
                          max_batch=args.max_batch, dynamic_batching=args.dynamic_batching, threads=args.threads)
        if r.backend == "python":
            print(f"wrote {r.model_dir} (config.pbtxt, 1/model.py, 1/pose.onnx; Triton Python backend: input "
                  f"image_bytes BYTES [N{',1' if args.dynamic_batching else ''}] or image UINT8 [N,H,W,3], output "
                  f"keypoints FP32 [N,17,3]); max diff vs card {r.max_abs_diff_px:.2e} px. Run it with the Triton "
                  f"environment (python -m edgepose.server.triton_env setup)")
        else:
            print(f"wrote {r.model_dir} (config.pbtxt, 1/model.onnx; input image UINT8 [1,{r.input_size[1]},"
                  f"{r.input_size[0]},3], output keypoints FP32 [1,17,3]); max diff vs card {r.max_abs_diff_px:.2e} px")
        return 0
    return _split(args)


def _split(args) -> int:
    from pathlib import Path

    from edgepose.errors import ConfigError
    from edgepose.models import find_file, get_card, list_models
    from edgepose.offload.netem import get_link
    from edgepose.offload.split import candidate_cuts, export_split, plan_split

    path = args.model
    if not path.endswith(".onnx"):
        card = get_card(path)
        if not card.files[0].endswith(".onnx"):
            raise ConfigError(f"--model {path!r} is not an ONNX model; split needs one of: "
                              f"{', '.join(m for m in list_models() if get_card(m).files[0].endswith('.onnx'))}")
        path = str(find_file(card.files[0]))
    plan = plan_split(path, get_link(args.link, args.profile), edge_slowdown=args.edge_slowdown,
                      server_speedup=args.server_speedup, cloud_input_bytes=args.cloud_input_bytes)
    print(plan.verdict)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "plan.json").write_text(json.dumps(plan.to_dict(), indent=1))
        cut = plan.best.cut
        if args.at is not None:
            cuts = {c.index: c for c in candidate_cuts(path)}
            if args.at not in cuts:
                raise ConfigError(f"--at {args.at} is not a valid cut index; valid: {sorted(cuts)[:10]}... "
                                  "(see plan.json options)")
            cut = cuts[args.at]
        n_nodes = plan.all_edge.cut.index
        if cut.index in (-1, n_nodes):
            print(f"the chosen cut is an end ({'all-cloud' if cut.index == -1 else 'all-edge'}): nothing to split; "
                  f"pass --at INDEX to export a split anyway. Wrote {out / 'plan.json'}")
            return 0
        head, tail, _ = export_split(path, cut, out, quantize=not args.no_quantize)
        print(f"wrote {head}, {tail}, {out / 'split.json'} and {out / 'plan.json'}")
    return 0
