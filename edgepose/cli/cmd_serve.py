"""``edgepose serve``: the KServe V2 HTTP server (Triton binary tensors) for pose models."""

from __future__ import annotations

import logging
import os
import sys
import threading

from edgepose.cli import _args

NAME = "serve"
HELP = "serve pose models (and split-model tails) over KServe V2 / Open Inference Protocol HTTP"

log = logging.getLogger(__name__)


def add_arguments(p):
    p.add_argument("--model", action="append", default=[], metavar="CARD",
                   help="a pose model card to serve (repeatable), e.g. movenet-thunder-fp32; or NAME=FILE: a "
                        ".onnx / .tflite pose model file served under NAME (e.g. an int8 build of a card)")
    p.add_argument("--onnx", action="append", default=[], metavar="NAME=PATH",
                   help="a raw ONNX graph to serve under NAME (repeatable): a Triton export, a split tail")
    p.add_argument("--host", default="127.0.0.1", type=_args.host,
                   help="bind address (default loopback; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=_args.port, default=8000, help="TCP port, 0-65535 (0: any free port)")
    p.add_argument("--token-env", metavar="VAR",
                   help="require 'Authorization: Bearer <token>' with the token read from this environment "
                        "variable (kept off the command line)")
    p.add_argument("--max-body-bytes", type=_args.int_range(1024), default=8 * 1024 * 1024,
                   help="payload limit, >= 1024 (413 above)")
    p.add_argument("--max-concurrency", type=_args.int_range(1, 1024), default=2,
                   help="inferences at once, 1-1024 (503 + Retry-After above)")
    p.add_argument("--threads", type=_args.int_range(1), default=None, help="intra-op threads per model")
    p.add_argument("--max-batch", type=_args.int_range(1, 4096), default=16,
                   help="crops per request, 1-4096 (413 above; default 16)")
    p.add_argument("--max-connections", type=_args.int_range(1, 4096), default=64,
                   help="open connections, 1-4096 (503 above; default 64)")
    p.add_argument("--max-bytes-in-flight", type=_args.int_range(1024), default=None,
                   help="request bytes held at once, >= --max-body-bytes (503 above; default 4 x --max-body-bytes)")
    p.add_argument("--read-timeout-s", type=_args.float_range(0.0, 3600.0, low_open=True), default=10.0,
                   help="total time to receive one request, headers and body (408 after; default 10)")
    p.add_argument("--idle-timeout-s", type=_args.float_range(0.0, 3600.0, low_open=True), default=10.0,
                   help="how long a keep-alive connection may wait for its next request (default 10)")
    p.add_argument("--collect", type=_args.output_dir, metavar="DIR", default=None,
                   help="opt-in: keep the crops answered and the answers in DIR for `edgepose adapt "
                        "--from-collection DIR` (a ring: the oldest dropped first; off by default); offloads "
                        "alone are a few %% of the frames: devices add collection samples with "
                        "--collect-interval-ms (RuntimeOptions.collect_interval_ms), marked as such in DIR")
    p.add_argument("--collect-max-items", type=_args.int_range(1), default=5000,
                   help="most crops the collection keeps (default 5000)")
    p.add_argument("--collect-max-mb", type=_args.float_range(0.01), default=256.0,
                   help="most megabytes the collection keeps (default 256)")
    p.add_argument("--engine", choices=("embedded", "triton"), default="embedded",
                   help="embedded (default: this process, no extra install) or triton: NVIDIA tritonserver from "
                        "the Triton environment (python -m edgepose.server.triton_env setup) with HTTP on --port, "
                        "gRPC, Prometheus metrics; --max-concurrency sets its instance count, --threads its "
                        "intra-op threads, --max-batch its crops per request")
    p.add_argument("--grpc-port", type=_args.port, default=None,
                   help="triton engine: gRPC port (default --port + 1; 0: any free port)")
    p.add_argument("--metrics-port", type=_args.port, default=None,
                   help="triton engine: Prometheus metrics port (default --port + 2; 0: any free port)")
    p.add_argument("--dynamic-batching", action="store_true",
                   help="triton engine: Triton's dynamic batcher on (then image_bytes is sent as [N, 1])")
    p.add_argument("--triton-env", metavar="DIR", default=None,
                   help="triton engine: the Triton environment folder (default $EDGEPOSE_TRITON_ENV or "
                        "~/.cache/edgepose/triton-env)")


def served_pose_model(spec: str, threads: int | None = None):
    """A ``--model`` value (``CARD`` or ``NAME=FILE``) -> the served pose model."""
    from edgepose.models import load_model
    from edgepose.server import PoseServedModel

    name, sep, path = spec.partition("=")
    if sep and name and path:
        return PoseServedModel(load_model(path, num_threads=threads), name=name)
    return PoseServedModel(load_model(spec, num_threads=threads))


def run(args) -> int:
    from edgepose.errors import ConfigError
    from edgepose.server import OnnxServedModel, PoseServer, ServerOptions

    if not args.model and not args.onnx:
        raise ConfigError("nothing to serve: pass --model CARD (e.g. --model movenet-thunder-fp32) "
                          "and/or --onnx NAME=PATH")
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            raise ConfigError(f"--token-env {args.token_env}: that environment variable is not set or empty; "
                              f"export {args.token_env}=<secret> first")
    onnx_specs = []
    for spec in args.onnx:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--onnx {spec!r} must be NAME=PATH, e.g. --onnx tail=split/tail.onnx")
        if not os.path.isfile(path):
            raise ConfigError(f"--onnx {spec!r}: file {path!r} does not exist; check the path")
        onnx_specs.append((name, path))
    if args.engine == "triton":
        if args.collect:
            raise ConfigError("--collect is not supported with --engine triton; use --engine embedded")
        return _run_triton(args, token, onnx_specs)
    _args.check_port_free(args.host, args.port)  # before the models load
    models = [served_pose_model(spec, args.threads) for spec in args.model]
    for name, path in onnx_specs:
        models.append(OnnxServedModel(path, name=name, num_threads=args.threads))
    if args.max_bytes_in_flight is not None and args.max_bytes_in_flight < args.max_body_bytes:
        raise ConfigError(f"--max-bytes-in-flight {args.max_bytes_in_flight} is below --max-body-bytes "
                          f"{args.max_body_bytes}: no request could be read. Raise it or lower --max-body-bytes")
    opts = ServerOptions(host=args.host, port=args.port, token=token, max_body_bytes=args.max_body_bytes,
                         max_concurrency=args.max_concurrency, max_batch=args.max_batch,
                         max_connections=args.max_connections, max_bytes_in_flight=args.max_bytes_in_flight,
                         read_timeout_s=args.read_timeout_s, idle_timeout_s=args.idle_timeout_s,
                         collect_dir=args.collect, collect_max_items=args.collect_max_items,
                         collect_max_bytes=int(args.collect_max_mb * 1024 * 1024))
    server = PoseServer(models, options=opts)
    try:
        server.start()  # binds, warms up, serves on a background thread
    except OSError as exc:
        for m in models:
            m.close()
        raise ConfigError(f"--port {args.port}: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
                          "pick another port, or --port 0 for any free one") from None
    print(f"edgepose serve: {', '.join(server.models)} on {server.url} "
          f"(auth {'on' if token else 'off'}"
          + (f"; collecting answered crops in {args.collect}" if args.collect else "") + "); Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("edgepose serve: stopping", file=sys.stderr, flush=True)
    finally:
        server.stop(close_models=True)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _run_triton(args, token, onnx_specs) -> int:
    """Export the models to a temporary repository and run tritonserver on it until Ctrl-C."""
    import shutil
    import signal
    import tempfile
    import time

    from edgepose.errors import ConfigError, EdgePoseError
    from edgepose.server.triton import export_triton
    from edgepose.server.triton_engine import TritonEngine
    from edgepose.server.triton_env import find_env

    if token is not None:
        raise ConfigError("--token-env is not supported with --engine triton (tritonserver has no bearer-token "
                          "check); put it behind an authenticating proxy, or use --engine embedded")
    if onnx_specs:
        raise ConfigError("--onnx is not supported with --engine triton (it serves pose model cards); export a raw "
                          "graph with its own config.pbtxt, or use --engine embedded")
    if not args.model:
        raise ConfigError("nothing to serve: pass --model CARD (e.g. --model movenet-thunder-fp32)")
    ports = {"--port": args.port,
             "--grpc-port": args.port + 1 if args.grpc_port is None and args.port else args.grpc_port or 0,
             "--metrics-port": args.port + 2 if args.metrics_port is None and args.port else args.metrics_port or 0}
    for opt, port in ports.items():
        if port > 65535:
            raise ConfigError(f"{opt} {port} (from --port {args.port}) is above 65535; pass {opt} or a lower --port")
        _args.check_port_free(args.host, port, opt)
    if len(set(p for p in ports.values() if p)) < len([p for p in ports.values() if p]):
        raise ConfigError(f"--port, --grpc-port and --metrics-port must differ, got {list(ports.values())}")
    env = find_env(args.triton_env)  # before anything is exported: a missing env names the setup command
    repo = tempfile.mkdtemp(prefix="edgepose-serve-triton-")
    engine = None
    try:
        names = []
        for spec in args.model:
            name, sep, path = spec.partition("=")
            r = export_triton(path if sep and name and path else spec, repo, name=name if sep and path else None,
                              instances=args.max_concurrency, max_batch=args.max_batch, threads=args.threads or 0,
                              dynamic_batching=args.dynamic_batching)
            names.append(r.model_dir.name)
        engine = TritonEngine(repo, env=env, host=args.host, http_port=ports["--port"],
                              grpc_port=ports["--grpc-port"], metrics_port=ports["--metrics-port"]).start()
        print(f"edgepose serve (triton): {', '.join(names)} on {engine.http_url} (gRPC {engine.grpc_url}, "
              f"metrics {engine.metrics_url}); Ctrl-C stops", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops tritonserver cleanly too
        try:
            while engine.proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("edgepose serve: stopping", file=sys.stderr, flush=True)
        else:
            raise EdgePoseError(f"tritonserver exited with code {engine.proc.returncode}:\n{engine.log_tail()}")
    finally:
        if engine is not None:
            engine.stop()
        shutil.rmtree(repo, ignore_errors=True)
    return 0

