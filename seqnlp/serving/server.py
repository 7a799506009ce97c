"""``seqnlp serve``: a trained model behind an HTTP JSON API (FastAPI on uvicorn).

Requests that arrive within ``max_wait_ms`` of each other share one forward pass (dynamic batching),
up to ``max_batch_tokens`` input tokens; inference runs in one worker thread, off the event loop, so
the server keeps accepting requests while the model computes. Only requests with the same options
share a pass (a beam width, say, holds for a whole batch).

    POST /predict  {"inputs": ["...", ...], "options": {...}}  ->  {"predictions": [<--format json objects>]}
    GET  /health   ->  {"status": "ok"}
    GET  /info     ->  {"task", "labels", "config_sha256", "version", ...}

A folder of ``seqnlp export`` is served by onnxruntime, without torch.

Bad requests get a 4xx status and one line of JSON, ``{"error": "..."}``.
"""

import asyncio
import dataclasses
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from seqnlp.config import setting
from seqnlp.errors import SeqNLPError
from seqnlp.predictions import check_inputs


@dataclass
class ServeConfig:
    host: str = setting("127.0.0.1", "address to bind (127.0.0.1: this machine only; 0.0.0.0: every interface)")
    port: int = setting(8080, "TCP port", low=0, high=65535)
    max_batch_tokens: int = setting(
        8192, "a shared forward pass holds at most this many input tokens (whitespace-separated)", low=1
    )
    max_wait_ms: float = setting(
        5.0, "how long the first request of a batch waits for others to join it", low=0.0, high=10_000.0
    )
    max_inputs: int = setting(256, "inputs per request, at most", low=1, high=1_000_000)
    max_body_bytes: int = setting(1_000_000, "request body size, at most", low=1)
    workers: int = setting(
        1, "server processes, each with its own model and its share of the CPU threads (one port)", low=1, high=64
    )

    def validate(self) -> None:
        from seqnlp.config import validate_ranges

        validate_ranges(self)


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Pending:
    inputs: list
    options: dict
    tokens: int
    future: asyncio.Future
    key: str = field(init=False)

    def __post_init__(self):
        self.key = json.dumps(self.options, sort_keys=True)


class DynamicBatcher:
    """Gathers concurrent requests into shared ``model.predict`` calls, run in a single worker thread."""

    def __init__(self, model, max_batch_tokens: int, max_wait_ms: float):
        self.model = model
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000
        self.queue: asyncio.Queue | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqnlp-inference")
        self.worker: asyncio.Task | None = None
        self.batches = 0  # forward passes so far (for /info and the load benchmark)
        self.shares_batches = model.task.shares_batches

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.worker:
            self.worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def predict(self, inputs: list, options: dict) -> bytes:
        """The JSON answer to one request, once the batch it joined has run."""
        future = asyncio.get_running_loop().create_future()
        tokens = sum(len(x.split()) if isinstance(x, str) else len(x) for x in inputs) or 1
        await self.queue.put(_Pending(inputs, options, tokens, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        held: _Pending | None = None  # a request that did not fit the last batch starts the next
        while True:
            first = held or await self.queue.get()
            held = None
            if self.shares_batches and self.max_wait > 0:
                # Give concurrent requests a moment to join: while a batch runs, the inference thread holds the
                # interpreter most of the time, so requests that came in meanwhile are still being read.
                await asyncio.sleep(self.max_wait)
            batch, tokens = [first], first.tokens
            while self.shares_batches and not self.queue.empty() and tokens < self.max_batch_tokens:
                item = self.queue.get_nowait()
                if item.key != first.key or tokens + item.tokens > self.max_batch_tokens:
                    held = item
                    break
                batch.append(item)
                tokens += item.tokens
            await self._serve(loop, batch)

    async def _serve(self, loop, batch: list[_Pending]) -> None:
        try:
            bodies = await loop.run_in_executor(self.executor, self._answers, batch)
        except SeqNLPError as err:  # an option the model refuses: every request of the batch asked for it
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(RequestError(422, str(err)))
            return
        except Exception as err:  # noqa: BLE001  (the server stays up; the clients get the error)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(RequestError(500, f"inference failed: {type(err).__name__}"))
            return
        self.batches += 1
        for item, body in zip(batch, bodies):
            if not item.future.done():
                item.future.set_result(body)

    def _answers(self, batch: list[_Pending]) -> list[bytes]:
        """In the worker thread: one shared ``predict`` call, and each request's JSON answer (serialising is work)."""
        predictions = self.model.predict([x for item in batch for x in item.inputs], **batch[0].options)
        bodies, start = [], 0
        for item in batch:
            answer = {"predictions": [p.to_dict() for p in predictions[start : start + len(item.inputs)]]}
            bodies.append(json.dumps(answer, ensure_ascii=False).encode())
            start += len(item.inputs)
        return bodies


def parse_request(body: bytes, task, max_inputs: int) -> tuple[list, dict]:
    """``(inputs, options)`` of a ``/predict`` body, or a ``RequestError`` saying what is wrong with it."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, f"the body is not valid JSON ({err.__class__.__name__}: {str(err)[:100]})") from None
    except RecursionError:  # json's parser recurses once per nesting level: "[" x 50,000 exhausts the stack
        raise RequestError(400, "the body is not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise RequestError(422, 'the body must be a JSON object: {"inputs": [...], "options": {...}}')
    unknown = sorted(set(data) - {"inputs", "options"})
    if unknown:
        raise RequestError(422, f"unknown field {unknown[0][:40]!r} (fields: inputs, options)")
    inputs = data.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(422, "inputs must be a non-empty list")
    if len(inputs) > max_inputs:
        raise RequestError(413, f"{len(inputs)} inputs: at most {max_inputs} per request")
    try:
        check_inputs(task, inputs)
    except SeqNLPError as err:
        raise RequestError(422, err.message) from None
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise RequestError(422, "options must be a JSON object")
    if "generator" in options:
        raise RequestError(422, "unknown option 'generator' (give a seed)")
    return inputs, options


def create_app(model, config: ServeConfig):
    """The FastAPI application serving ``model`` (a ``seqnlp.api.Model``)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response

    batcher = DynamicBatcher(model, config.max_batch_tokens, config.max_wait_ms)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"seqnlp {model.task_name}", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(RequestError)
    async def request_error(request, err: RequestError):
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        return {**model.info(), "forward_passes": batcher.batches}

    @app.post("/predict")
    # This module has no `from __future__ import annotations`: FastAPI reads the hint below.
    async def predict(request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > config.max_body_bytes):
            raise RequestError(413, f"the body is larger than {config.max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_body_bytes:
                raise RequestError(413, f"the body is larger than {config.max_body_bytes} bytes")
        inputs, options = parse_request(bytes(body), model.task, config.max_inputs)
        return Response(await batcher.predict(inputs, options), media_type="application/json")

    return app


def main(argv: list[str]) -> None:
    from seqnlp import api
    from seqnlp import config as configs

    parser = configs.ArgumentParser(
        prog="seqnlp serve",
        usage="%(prog)s MODEL_DIR [options]",
        description="Serve a trained model over HTTP: POST /predict, GET /health, GET /info.",
    )
    parser.add_argument("model_dir")
    parser.add_argument("--device", default="auto", help="auto (default): the GPU if torch sees one, else cpu")
    configs.add_arguments(parser, ServeConfig)
    args = parser.parse_args(argv)
    config = configs.resolve(ServeConfig, args)
    try:
        import uvicorn
    except ImportError:
        raise SeqNLPError("seqnlp serve needs FastAPI and uvicorn: pip install 'seqnlp[serve]'") from None
    model = api.load(args.model_dir, device=args.device)  # a bad model fails here, before any worker starts
    print(f"serving {model.task_name} model {model.path} on http://{config.host}:{config.port}", flush=True)
    if config.workers == 1:
        uvicorn.run(create_app(model, config), host=config.host, port=config.port, log_level="warning")
        return
    del model
    os.environ[WORKER_SETTINGS] = json.dumps({"model_dir": str(args.model_dir), "device": args.device,
                                              "config": dataclasses.asdict(config)})  # fmt: skip
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=config.workers, host=config.host, port=config.port,
                log_level="warning")  # fmt: skip


WORKER_SETTINGS = "SEQNLP_SERVE_WORKER"  # how `seqnlp serve --workers N` hands its settings to each worker process


def worker_app():
    """The application of one of ``--workers`` processes: the model loaded again, the CPU threads shared out."""
    from seqnlp import api
    from seqnlp.serving import is_export
    from seqnlp.storage.hub import model_directory

    settings = json.loads(os.environ[WORKER_SETTINGS])
    config = ServeConfig(**settings["config"])
    model_dir = model_directory(settings["model_dir"])
    if is_export(model_dir):  # onnxruntime: no torch in this process
        threads = max(1, (os.cpu_count() or 1) // config.workers)
        return create_app(api.load(model_dir, threads=threads), config)
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads() // config.workers))
    return create_app(api.load(model_dir, device=settings["device"]), config)
