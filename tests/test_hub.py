"""Sharing models: model cards, hf:// model paths through the HuggingFace cache, seqnlp push (no network)."""

import base64
import gzip
import hashlib
import http.server
import json
import shutil
import threading

import pytest
import yaml

import seqnlp
from tests.conftest import ROOT, run_cli

INPUTS = ["Peter Blackburn visited Brussels.", "EU rejects German call to boycott British lamb ."]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    """(output directory, metrics) of a tiny NER model trained for one epoch on the bundled sample."""
    out = tmp_path_factory.mktemp("tagger")
    metrics = seqnlp.train(
        "ner",
        train_file=str(ROOT / "data/ner/train.txt"),
        dev_file=str(ROOT / "data/ner/dev.txt"),
        test_file=str(ROOT / "data/ner/dev.txt"),
        output_dir=str(out),
        epochs=1,
        quiet=True,
        hidden=16,
        word_dim=16,
        char_dim=8,
        char_out=8,
    )
    return out, metrics


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def hub_cache(cache, repo_id: str, model_dir, revision: str = "main"):
    """A HuggingFace cache entry as ``snapshot_download`` leaves it: models--ORG--NAME/{refs,snapshots}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(model_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / revision).write_text(COMMIT)
    return repo / "snapshots" / COMMIT


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_a_run_writes_a_model_card_whose_scores_are_those_of_metrics_json(tagger):
    out, metrics = tagger
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    meta = front_matter(card)
    assert meta["library_name"] == "seqnlp" and meta["pipeline_tag"] == "token-classification"
    results = {entry["dataset"]["split"]: entry for entry in meta["model-index"][0]["results"]}
    assert set(results) == {"dev", "test"}
    for split in ("dev", "test"):
        scores = {m["type"]: m["value"] for m in results[split]["metrics"]}
        assert scores == {k: v for k, v in metrics[split].items() if isinstance(v, float)}
    assert f"| dev | f1 | {metrics['dev']['f1']:.4f} |" in card
    assert metrics["protocol"]["data"]["train_file"]["sha256"] in card
    assert "Labels: LOC, MISC, ORG, PER." in card and "## Limitations" in card


def test_a_hub_model_loads_from_the_cache_offline_and_predicts_like_the_folder(tagger, offline_cache, tmp_path):
    out, _ = tagger
    hub_cache(offline_cache, "org/tagger", out / "model")
    local = [p.to_dict() for p in seqnlp.load(out / "model").predict(INPUTS)]
    pulled = seqnlp.load("hf://org/tagger")
    assert [p.to_dict() for p in pulled.predict(INPUTS)] == local
    assert pulled.path == offline_cache / "models--org--tagger" / "snapshots" / COMMIT
    source = tmp_path / "in.txt"
    source.write_text("\n".join(INPUTS) + "\n", encoding="utf-8")
    code_hub, printed_hub, _ = run_cli("predict", "hf://org/tagger@main", source)
    code_local, printed_local, _ = run_cli("predict", out / "model", source)
    assert code_hub == code_local == 0 and printed_hub == printed_local


def test_a_hub_model_absent_from_the_cache_is_one_error_line_offline(offline_cache, tmp_path):
    code, _, err = run_cli("predict", "hf://org/missing", tmp_path / "in.txt")
    assert code == 2 and err == "error: hf://org/missing: not found in the HuggingFace cache (HF_HUB_OFFLINE is set)\n"


def test_a_malformed_hub_path_is_refused(tmp_path):
    code, _, err = run_cli("predict", "hf://../../etc", tmp_path / "in.txt")
    assert code == 2 and "a Hub model is hf://ORG/NAME" in err


def test_a_tampered_hub_model_is_refused_like_a_local_folder(tagger, offline_cache, tmp_path):
    out, _ = tagger
    snapshot = hub_cache(offline_cache, "org/tampered", out / "model")
    config = json.loads((snapshot / "config.json").read_text())
    config["config"]["hidden"] = 17  # the weights file says 16
    (snapshot / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli("evaluate", "hf://org/tampered", "--test-file", ROOT / "data/ner/dev.txt")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "shape" in err


def test_fine_tuning_starts_from_a_hub_model(tagger, offline_cache, tmp_path):
    out, _ = tagger
    hub_cache(offline_cache, "org/tagger", out / "model")
    metrics = seqnlp.train(
        "ner",
        init_from="hf://org/tagger",
        train_file=str(ROOT / "data/ner/dev.txt"),
        dev_file=str(ROOT / "data/ner/dev.txt"),
        output_dir=str(tmp_path / "tuned"),
        epochs=1,
        quiet=True,
    )
    assert metrics["config"]["hidden"] == 16  # the base model's architecture
    assert "fine-tuned from the seqnlp model `tagger`" in (tmp_path / "tuned" / "model" / "README.md").read_text()


class FakeHub(http.server.BaseHTTPRequestHandler):
    """The Hub's HTTP API as ``huggingface_hub``'s client speaks it when uploading a folder (LFS, no Xet), served on
    a loopback port: the client is the real one, over real HTTP, with nothing inside it replaced."""

    requests: list
    uploaded: dict
    commit: list | None

    def log_message(self, *args):  # the test's output stays quiet
        pass

    def body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().strip(), 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            content = b"".join(chunks)
        else:
            content = self.rfile.read(int(self.headers.get("content-length") or 0))
        return gzip.decompress(content) if self.headers.get("content-encoding") == "gzip" else content

    def answer(self, status: int, payload: dict | None = None) -> None:
        content = json.dumps(payload or {}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def do_GET(self):
        self.requests.append(("GET", self.path))
        self.answer(404, {"error": f"not part of the upload: GET {self.path}"})

    def do_PUT(self):
        self.requests.append(("PUT", self.path))
        content = self.body()
        if self.path == "/lfs-upload":
            type(self).uploaded[hashlib.sha256(content).hexdigest()] = content
            return self.answer(200)
        self.answer(404, {"error": f"not part of the upload: PUT {self.path}"})

    def do_POST(self):
        path = self.path.split("?")[0]
        self.requests.append(("POST", path))
        content = self.body()
        host = f"http://{self.headers['host']}"
        if path == "/api/validate-yaml":
            return self.answer(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create":
            return self.answer(200, {"url": f"{host}/org/tagger", "name": "org/tagger"})
        if "/preupload/" in path:
            modes = [{"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(".safetensors") else "regular",
                      "shouldIgnore": False} for f in json.loads(content)["files"]]  # fmt: skip
            return self.answer(200, {"files": modes})
        if path.endswith("/info/lfs/objects/batch"):
            actions = {"upload": {"href": f"{host}/lfs-upload"}}
            objects = [{**o, "actions": actions} for o in json.loads(content)["objects"]]
            return self.answer(200, {"objects": objects})
        if "/commit/" in path:
            type(self).commit = [json.loads(line) for line in content.decode().splitlines()]
            return self.answer(200, {"commitUrl": f"https://huggingface.co/org/tagger/commit/{COMMIT}",
                                     "commitOid": COMMIT, "success": True})  # fmt: skip
        self.answer(404, {"error": f"not part of the upload: POST {path}"})


def push_to_fake_hub(model_dir, monkeypatch):
    """``seqnlp push MODEL_DIR org/tagger`` against ``FakeHub`` on a loopback port (the Hub's address pointed at it);
    returns the hub and ``run_cli``'s result."""
    from huggingface_hub import constants

    hub = type("Hub", (FakeHub,), {"requests": [], "uploaded": {}, "commit": None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite runs offline; this server is on loopback
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    try:
        return (hub, *run_cli("push", model_dir, "org/tagger"))
    finally:
        server.shutdown()
        server.server_close()


def test_push_uploads_the_model_folder_through_the_hub_client(tagger, monkeypatch, capsys):
    """No real upload: the client's HTTP layer is replaced by ``FakeHub``, which checks what would be sent."""
    out, _ = tagger
    hub, code, printed, err = push_to_fake_hub(out / "model", monkeypatch)
    assert code == 0, err
    assert printed.strip() == f"https://huggingface.co/org/tagger/commit/{COMMIT}"
    files = {entry["value"]["path"]: entry for entry in hub.commit if entry["key"] in ("file", "lfsFile")}
    assert set(files) == {"config.json", "model.safetensors", "README.md"}
    weights = (out / "model" / "model.safetensors").read_bytes()
    assert hub.uploaded == {hashlib.sha256(weights).hexdigest(): weights}
    assert base64.b64decode(files["config.json"]["value"]["content"]) == (out / "model" / "config.json").read_bytes()


def test_a_pushed_model_pulled_back_through_the_cache_predicts_like_the_folder(tagger, monkeypatch, tmp_path):
    """The round trip: what ``seqnlp push`` sent (to ``FakeHub``) laid out as the cache holds a download."""
    out, _ = tagger
    hub, code, _, err = push_to_fake_hub(out / "model", monkeypatch)
    assert code == 0, err
    received = tmp_path / "received"
    received.mkdir()
    for entry in hub.commit:
        value = entry["value"]
        if entry["key"] == "file":
            (received / value["path"]).write_bytes(base64.b64decode(value["content"]))
        elif entry["key"] == "lfsFile":
            (received / value["path"]).write_bytes(hub.uploaded[value["oid"]])
    cache = tmp_path / "hub"
    hub_cache(cache, "org/tagger", received)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    local = [p.to_dict() for p in seqnlp.load(out / "model").predict(INPUTS)]
    assert [p.to_dict() for p in seqnlp.load("hf://org/tagger").predict(INPUTS)] == local


def test_push_refuses_a_folder_that_would_not_load(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    code, _, err = run_cli("push", tmp_path, "org/broken")
    assert code == 2 and err.startswith(f"error: {tmp_path}")
