"""Load benchmark: N concurrent clients against ``edgepose serve`` (embedded) and ``--engine triton``.

Each engine runs as its own ``edgepose serve`` process with the same model, the same number of
model instances (``--max-concurrency``) and intra-op threads, on the same cores. Every client is
a thread with its own keep-alive HTTP connection sending one JPEG person crop (``image_bytes``)
per request, back to back, for ``--seconds``; a 503 is counted and retried after 10 ms.

Reported per engine and client count: throughput (answers/s), p50 / p99 latency of the answers,
503 share of all responses, peak RSS of the server (tritonserver with its Python backend stubs),
and fairness: the fewest and most answers any one client got.

    python benchmarks/serve_load.py --model movenet-thunder-fp32 --clients 8 32 --seconds 15

Needs the Triton environment for the triton rows (python -m edgepose.server.triton_env setup).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from edgepose.protocol import encode_infer_request

ENGINES = {
    "embedded": [],
    "triton": ["--engine", "triton"],
    "triton+dynamic-batching": ["--engine", "triton", "--dynamic-batching"],
}


def _start(model: str, extra: list[str], instances: int, threads: int):
    cmd = [sys.executable, "-m", "edgepose.cli.main", "serve", "--model", model, "--port", "0",
           "--max-concurrency", str(instances), "--threads", str(threads), *extra]
    if not extra:
        cmd += ["--max-connections", "256"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline()
    m = re.search(r"on (http://[\d.:]+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"{' '.join(cmd)} did not start: {line}{proc.stderr.read()[-2000:]}")
    return proc, m.group(1)


def _rss_mb(pid: int) -> float:
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def _client(url: str, model: str, body: bytes, headers: dict, stop: threading.Event, out: dict):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    lat, busy, errors = [], 0, 0
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            conn.request("POST", f"/v2/models/{model}/infer", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            time.sleep(0.01)
            continue
        if resp.status == 200:
            if not stop.is_set():
                lat.append((time.perf_counter() - t0) * 1e3)
        elif resp.status == 503:
            busy += 1
            time.sleep(0.01)
        else:
            errors += 1
    conn.close()
    out.update(lat=lat, busy=busy, errors=errors)


def run_load(url: str, model: str, jpg: bytes, clients: int, seconds: float, pid: int, batched: bool) -> dict:
    arr = np.empty((1, 1) if batched else (1,), dtype=object)
    arr.reshape(-1)[0] = jpg
    body, headers = encode_infer_request({"image_bytes": arr})
    warm = {}
    ev = threading.Event()
    t = threading.Thread(target=_client, args=(url, model, body, headers, ev, warm))
    t.start()
    time.sleep(1.0)
    ev.set()
    t.join()
    stop = threading.Event()
    results = [{} for _ in range(clients)]
    threads = [threading.Thread(target=_client, args=(url, model, body, dict(headers), stop, r)) for r in results]
    rss = [_rss_mb(pid)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    while time.perf_counter() - t0 < seconds:
        time.sleep(0.5)
        rss.append(_rss_mb(pid))
    stop.set()
    elapsed = time.perf_counter() - t0
    for th in threads:
        th.join()
    lat = np.array([x for r in results for x in r["lat"]])
    done = [len(r["lat"]) for r in results]
    busy = sum(r["busy"] for r in results)
    errors = sum(r["errors"] for r in results)
    total = len(lat) + busy + errors
    return {"clients": clients, "seconds": round(elapsed, 1), "throughput_per_s": round(len(lat) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
            "share_503": round(busy / total, 3) if total else 0.0, "errors": errors,
            "rss_mb": round(max(rss)), "min_done": min(done), "max_done": max(done)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="movenet-thunder-fp32")
    p.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--instances", type=int, default=2, help="--max-concurrency: model instances of each engine")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per instance")
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    p.add_argument("--image", default=None, help="JPEG crop to send (default: the demo still)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve_load"))
    args = p.parse_args(argv)
    if args.image is None:
        from edgepose.demo import DEMO_STILL

        args.image = str(DEMO_STILL)
    jpg = Path(args.image).read_bytes()
    rows = []
    for engine in args.engines:
        proc, url = _start(args.model, ENGINES[engine], args.instances, args.threads)
        try:
            for n in args.clients:
                r = {"engine": engine, **run_load(url, args.model, jpg, n, args.seconds, proc.pid,
                                                  batched="dynamic" in engine)}
                print(json.dumps(r), flush=True)
                rows.append(r)
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
    meta = {"model": args.model, "instances": args.instances, "threads": args.threads, "cpus": os.cpu_count(),
            "image_bytes": len(jpg)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    cols = ["engine", "clients", "throughput_per_s", "p50_ms", "p99_ms", "share_503", "errors", "rss_mb",
            "min_done", "max_done"]
    md = [f"# serve_load: {meta}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
