"""Load test of ``seqnlp serve``: concurrent clients on 127.0.0.1 against in-process batched prediction.

    python benchmarks/serve_load.py --tagger runs/ner/model --translator runs/translate/model

For each model: a ``seqnlp serve`` subprocess (``--workers`` processes) loaded by N = 1, 8, 32 client
threads that each send requests of ``--inputs-per-request`` inputs over kept-alive connections: with ``wrk``
(a C load generator; Debian's package) when it is installed, for ``--seconds`` per client count, else with
Python threads until ``--requests`` requests are answered; and the throughput of
``seqnlp.load(model).predict(inputs)`` in this process (one batched call), two passes right before and two
right after the 32-client window, which the served rate is divided by. Prints one JSON object. The clients
run on the same machine as the server and take some of its CPU: on a 2-core machine that is part of what
the ratio measures, and why wrk, which needs far less CPU than Python clients, is preferred.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def sentences(task: str, count: int) -> list[str]:
    """Dev-set inputs: CoNLL-2003 dev sentences for the tagger, Multi30k val sources for the translator."""
    if task == "ner":
        out, tokens = [], []
        for line in (SHARED / "conll2003" / "dev.txt").read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("-DOCSTART-"):
                tokens.append(line.split()[0])
            elif tokens:
                out.append(" ".join(tokens))
                tokens = []
        return out[:count]
    return (SHARED / "multi30k" / "val.de").read_text(encoding="utf-8").splitlines()[:count]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str, port: int, threads: int, workers: int = 1) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    process = subprocess.Popen(
        [sys.executable, "-m", "seqnlp.cli", "serve", model, "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server did not start: {process.stderr.read()[-500:]}")


def forward_passes(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/info")
    return json.loads(connection.getresponse().read())["forward_passes"]


def load(port: int, clients: int, requests: int, batches: list[list[str]]) -> dict:
    """``requests`` requests from ``clients`` threads; latency per request, failures counted."""
    latencies: list[float] = []
    failed = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def client():
        nonlocal failed
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for number in counter:
            body = json.dumps({"inputs": batches[number % len(batches)]})
            started = time.perf_counter()
            try:
                connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                ok = response.status == 200 and len(json.loads(response.read())["predictions"]) == len(
                    batches[number % len(batches)]
                )
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                failed += not ok

    started = time.perf_counter()
    workers = [threading.Thread(target=client) for _ in range(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests_per_s": round(len(latencies) / seconds, 2),
        "inputs_per_s": round(len(latencies) * len(batches[0]) / seconds, 1),
        "p50_s": round(statistics.median(ordered), 4),
        "p99_s": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 4),
        "failed": failed,
    }


WRK_SCRIPT = """
local bodies = {%s}
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\nRESULT {"requests": %%d, "seconds": %%f, "p50_s": %%f, "p99_s": %%f, "failed": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e6, latency:percentile(99) / 1e6,
    e.connect + e.read + e.write + e.timeout + e.status))
end
"""


def load_with_wrk(port: int, clients: int, seconds: int, batches: list[list[str]]) -> dict:
    """``clients`` connections from one wrk thread for ``seconds``; wrk's own latency percentiles and error counts."""
    bodies = ", ".join("[==[" + json.dumps({"inputs": batch}) + "]==]" for batch in batches)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % bodies)
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{clients}",
                f"-d{seconds}s",
                "--timeout",
                "30s",
                "-s",
                script.name,
                f"http://127.0.0.1:{port}/predict",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    result = json.loads(out.split("RESULT", 1)[1])
    return {
        "requests_per_s": round(result["requests"] / result["seconds"], 2),
        "inputs_per_s": round(result["requests"] * len(batches[0]) / result["seconds"], 1),
        "p50_s": round(result["p50_s"], 4),
        "p99_s": round(result["p99_s"], 4),
        "failed": result["failed"],
        "requests": result["requests"],
    }


def in_process_rate(model, inputs: list[str]) -> float:
    started = time.perf_counter()
    model.predict(inputs)
    return len(inputs) / (time.perf_counter() - started)


def measure(model_dir: str, task: str, args) -> dict:
    import torch

    import seqnlp

    torch.set_num_threads(args.threads)
    k = args.inputs_per_request
    inputs = sentences(task, args.requests * k)
    batches = [inputs[i : i + k] for i in range(0, len(inputs) - k + 1, k)]
    model = seqnlp.load(model_dir, device="cpu")
    model.predict(inputs[:64])  # warm-up
    port = free_port()
    server = start_server(model_dir, port, args.threads, args.workers)
    try:
        load(port, 4, 16, batches)  # warm-up
        result = {"inputs_per_request": k, "workers": args.workers}
        use_wrk = shutil.which("wrk") is not None and not args.python_clients
        result["load_generator"] = "wrk" if use_wrk else "python threads"
        for clients in (1, 8, 32):
            # This machine's speed drifts by tens of percent within minutes: the in-process passes that the
            # 32-client rate is compared with run right before and right after its window.
            before = [in_process_rate(model, inputs) for _ in range(2)] if clients == 32 else []
            passes = forward_passes(port)
            if use_wrk:
                answered = result[f"clients_{clients}"] = load_with_wrk(port, clients, args.seconds, batches)
            else:
                answered = result[f"clients_{clients}"] = load(port, clients, args.requests, batches)
            count = answered.pop("requests", args.requests)
            if args.workers == 1:  # /info answers for the one worker that takes the request
                answered["requests_per_forward_pass"] = round(count / max(1, forward_passes(port) - passes), 2)
        after = [in_process_rate(model, inputs) for _ in range(2)]
        in_process = statistics.mean(before + after)
        result["in_process_inputs_per_s"] = round(in_process, 1)
        result["in_process_passes"] = [round(rate, 1) for rate in before + after]
        result["served_32_vs_in_process"] = round(result["clients_32"]["inputs_per_s"] / in_process, 3)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tagger", help="a trained ner model directory")
    parser.add_argument("--translator", help="a trained translate model directory (decoded at its beam, 5 by default)")
    parser.add_argument("--requests", type=int, default=200, help="requests per client count")
    parser.add_argument("--inputs-per-request", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10, help="with wrk: seconds of load per client count")
    parser.add_argument(
        "--python-clients", action="store_true", help="load with Python threads even where wrk is installed"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server and the in-process run")
    parser.add_argument("--workers", type=int, default=1, help="server processes (seqnlp serve --workers)")
    args = parser.parse_args()
    out = {}
    if args.tagger:
        out["tagger"] = measure(args.tagger, "ner", args)
    if args.translator:
        out["translator"] = measure(args.translator, "translate", args)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
