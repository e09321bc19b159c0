"""``edgepose serve``: the KServe V2 HTTP server (Triton binary tensors) for pose models."""

from __future__ import annotations

import logging
import os
import sys
import threading

NAME = "serve"
HELP = "serve pose models (and split-model tails) over KServe V2 / Open Inference Protocol HTTP"

from edgepose.cli import _args

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
    _args.check_port_free(args.host, args.port)  # before the models load
    models = [served_pose_model(spec, args.threads) for spec in args.model]
    for name, path in onnx_specs:
        models.append(OnnxServedModel(path, name=name, num_threads=args.threads))
    opts = ServerOptions(host=args.host, port=args.port, token=token, max_body_bytes=args.max_body_bytes,
                         max_concurrency=args.max_concurrency)
    server = PoseServer(models, options=opts)
    try:
        server.start()  # binds, warms up, serves on a background thread
    except OSError as exc:
        for m in models:
            m.close()
        raise ConfigError(f"--port {args.port}: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
                          "pick another port, or --port 0 for any free one") from None
    print(f"edgepose serve: {', '.join(server.models)} on {server.url} "
          f"(auth {'on' if token else 'off'}); Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("edgepose serve: stopping", file=sys.stderr, flush=True)
    finally:
        server.stop(close_models=True)
    return 0
