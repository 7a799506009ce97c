"""The line protocol between a peer benchmark and its workers; standard library only, since it runs in the peers'
own environments too.

A worker reads one JSON line of settings, builds its model, warms it up and answers ``{"ready": true}``; then each
request line ``{"op": NAME, "args": {...}}`` runs that operation and is answered with ``{"units": U, "seconds": S}``
(tokens, sentences, ... and the wall time the operation took). Libraries print to standard output (Flair's logger
does), so the answers travel on a copy of the original standard output and everything else goes to standard error.
"""

from __future__ import annotations

import json
import os
import sys
import time


def serve(setup) -> None:
    """``setup(settings)`` returns ``{op: function(**args) -> units}``; answer requests until standard input ends."""
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def answer(value: dict) -> None:
        channel.write(json.dumps(value) + "\n")
        channel.flush()

    operations = setup(json.loads(sys.stdin.readline()))
    answer({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        start = time.perf_counter()
        units = operations[request["op"]](**request.get("args", {}))
        answer({"units": units, "seconds": time.perf_counter() - start})


def conll_sentences(path: str, limit: int | None = None) -> list[tuple[list[str], list[str]]]:
    """(tokens, IOB2 tags) of a two-column CoNLL file, as ``../shared/data/conll2003`` has them."""
    sentences, tokens, tags = [], [], []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if tokens:
                    sentences.append((tokens, tags))
                    tokens, tags = [], []
                continue
            tokens.append(fields[0])
            tags.append(fields[-1])
    if tokens:
        sentences.append((tokens, tags))
    return sentences[:limit]


def tsv_texts(path: str, limit: int | None = None) -> list[tuple[str, str]]:
    """(text, label) of a ``sentence<TAB>label`` file with a header line, as ``../shared/data/sst2`` has them."""
    with open(path, encoding="utf-8") as lines:
        rows = [line.rstrip("\n").split("\t") for line in lines][1:]
    return [(text, label) for text, label in rows if text][:limit]
