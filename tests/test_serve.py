"""``seqnlp serve``: real HTTP on 127.0.0.1, started and stopped by the test."""

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

import seqnlp
from tests.conftest import TINY_NER, train_cli, write_tiny_conll

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, the served model) of a tiny tagger behind ``create_app`` on a free local port."""
    from seqnlp.serving.server import ServeConfig

    folder = tmp_path_factory.mktemp("serve")
    train, dev = write_tiny_conll(folder)
    assert (
        train_cli(
            "ner",
            train,
            dev,
            folder / "run",
            "--epochs",
            "2",
            *TINY_NER,
        )[0]
        == 0
    )
    model = seqnlp.load(folder / "run" / "model")
    with serving(model, ServeConfig(max_inputs=8, max_body_bytes=2000, max_wait_ms=20)) as url:
        yield url, model


@contextlib.contextmanager
def serving(model, config):
    """The base URL of ``create_app(model, config)`` served on a free local port while the block runs."""
    from seqnlp.serving.server import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app_server = uvicorn.Server(uvicorn.Config(create_app(model, config), log_level="warning"))
    thread = threading.Thread(target=app_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not app_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        app_server.should_exit = True
        thread.join(timeout=10)


def call(url, path, body=None, method=None):
    """(status, decoded JSON body) of one request; ``body`` bytes are sent as they are."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path,
        data=data,
        method=method or ("POST" if data is not None else "GET"),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_health_and_info(server):
    url, model = server
    assert call(url, "/health") == (200, {"status": "ok"})
    status, info = call(url, "/info")
    assert (
        status == 200 and info["task"] == "ner" and info["labels"] == model.labels and len(info["config_sha256"]) == 64
    )
    assert info["version"] == seqnlp.__version__


def test_a_burst_of_concurrent_requests_is_answered_correctly_in_shared_batches(server):
    url, model = server
    texts = [f"Anna Berg visited Berlin {i} times ." for i in range(48)]
    before = call(url, "/info")[1]["forward_passes"]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda text: call(url, "/predict", {"inputs": [text]}), texts))
    assert [status for status, _ in answers] == [200] * len(texts), answers[:2]
    assert [body["predictions"][0] for _, body in answers] == [p.to_dict() for p in model.predict(texts)]
    passes = call(url, "/info")[1]["forward_passes"] - before
    assert passes < len(texts)  # requests arriving together shared forward passes


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b'{"inputs": ["a"', 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        ([1, 2], 422, "must be a JSON object"),
        ({"inputs": []}, 422, "inputs must be a non-empty list"),
        ({"inputs": "Anna"}, 422, "inputs must be a non-empty list"),
        ({"inputs": [3]}, 422, "inputs[0] must be a string or a list of token strings, not int"),
        ({"inputs": ["a"], "options": {"beam": 3}}, 422, "unknown option 'beam'"),
        ({"inputs": ["a"], "options": []}, 422, "options must be a JSON object"),
        ({"inputs": ["a"], "colour": 1}, 422, "unknown field 'colour'"),
        ({"inputs": ["a"] * 9}, 413, "9 inputs: at most 8 per request"),
        ({"inputs": ["a" * 3000]}, 413, "larger than 2000 bytes"),
        (b"[" * 1500, 400, "not valid JSON (nested too deeply)"),
        (
            b'{"inputs": ["\\ud800 Berlin"]}',
            422,
            "inputs[0] is not Unicode text: a lone surrogate '\\ud800' at character 0",
        ),
        (b'{"inputs": [["Anna", "\\udfff"]]}', 422, "inputs[0][1] is not Unicode text"),
    ],
)
def test_bad_requests_get_a_4xx_and_one_line_of_json(server, body, status, message):
    url, _ = server
    got, answer = call(url, "/predict", body)
    assert got == status and set(answer) == {"error"} and message in answer["error"] and "\n" not in answer["error"]


def test_several_worker_processes_serve_one_port_on_this_machine_only(server, tmp_path):
    """``--workers 2``: two processes, each with its own copy of the model, answer on one port; with no ``--host``,
    on 127.0.0.1 alone (another loopback address of this machine is refused)."""
    import os
    import subprocess
    import sys

    url, model = server
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    command = [sys.executable, "-m", "seqnlp.cli", "serve", str(model.path), "--port", str(port), "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    try:
        served = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            try:
                if call(served, "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.2", port), timeout=10):
            pass
        sentences = [f"Anna visited Berlin on day {i} ." for i in range(12)]
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda s: call(served, "/predict", {"inputs": [s]}), sentences))
        expected = [p.to_dict() for p in model.predict(sentences)]
        assert [answer for answer in answers] == [(200, {"predictions": [e]}) for e in expected]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_an_exported_model_is_served_by_onnxruntime_with_the_same_answers(server, tmp_path):
    pytest.importorskip("onnxruntime")
    from seqnlp.serving.server import ServeConfig

    _, model = server
    seqnlp.export(model.path, tmp_path / "onnx")
    exported = seqnlp.load(tmp_path / "onnx")
    sentences = [f"Anna visited Berlin on day {i} ." for i in range(5)]
    with serving(exported, ServeConfig()) as url:
        assert call(url, "/info")[1]["runtime"] == "onnx"
        status, answer = call(url, "/predict", {"inputs": sentences})
    assert status == 200
    assert answer == {"predictions": [p.to_dict() for p in exported.predict(sentences)]}
    tags = [[token["tag"] for token in p["tokens"]] for p in answer["predictions"]]
    assert tags == [[token.tag for token in p.tokens] for p in model.predict(sentences)]


def test_a_worker_process_serving_an_export_never_imports_torch(server, tmp_path):
    import os
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    _, model = server
    seqnlp.export(model.path, tmp_path / "onnx")
    settings = {"model_dir": str(tmp_path / "onnx"), "device": "auto", "config": {"workers": 2}}
    script = (
        "import sys\n"
        "from seqnlp.serving.server import worker_app\n"
        "worker_app()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "SEQNLP_SERVE_WORKER": json.dumps(settings)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]


def texts():
    """Strings of any code points, and strings built of words and the awkward ones (surrogates, NUL, zero width)."""
    from hypothesis import strategies as st

    pieces = st.sampled_from(["Anna", "Berlin", " ", "\ud800", "\udc00", "\x00", "\u200b", "\n", "日本"])
    return st.text(st.characters(exclude_categories=())) | st.lists(pieces, max_size=5).map("".join)


def json_values():
    """Any JSON value: scalars (strings with any code point, lone surrogates included), nested lists and objects."""
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts()
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
    )


def predict_bodies():
    """Bodies near the schema (inputs of any kind, the task's options and config settings with any values) and any
    JSON at all."""
    from hypothesis import strategies as st

    option = st.sampled_from(["pretokenized", "beam", "max_length", "eval_batch_size", "lowercase", "seed", "x"])
    near = st.fixed_dictionaries(
        {"inputs": st.lists(texts() | st.lists(texts(), max_size=3) | json_values(), max_size=9) | json_values()},
        optional={"options": st.dictionaries(option, json_values(), max_size=2) | json_values()},
    )
    return near | json_values()


def test_any_json_body_gets_a_2xx_or_a_4xx_with_one_line_of_json(server):
    from hypothesis import HealthCheck, given, settings

    url, _ = server

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(predict_bodies())
    def answer_is_well_formed(body):
        status, answer = call(url, "/predict", json.dumps(body).encode())
        assert 200 <= status < 300 or 400 <= status < 500, (status, answer)
        if status >= 400:
            assert set(answer) == {"error"} and "\n" not in answer["error"]
        else:
            assert len(answer["predictions"]) == len(body["inputs"])

    answer_is_well_formed()
