# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-oldest lint format bench bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0  # CPU build first, so the range in pyproject.toml installs nothing bigger
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

## Every finished recipe on the bundled samples in data/; reports under runs/<task>/.
demo: $(STAMP)
	$(PY) recipes/ner.py --overwrite --output-dir runs/ner
	$(PY) recipes/sentiment.py --overwrite --output-dir runs/sentiment
	$(PY) recipes/translate.py --overwrite --output-dir runs/translate
	$(PY) recipes/textgen.py --overwrite --output-dir runs/textgen
	$(PY) recipes/textgen.py --diagnose-gradients --quick --output-dir runs/gradients
	@echo "reports: runs/*/report.md"

## The test suite (fast; SEQNLP_SLOW=1 adds the opt-in runs on ../shared/data).
test: $(STAMP)
	$(PY) -m pytest -q

## The suite on the oldest release of every dependency pyproject.toml admits (.ci/oldest.txt), in .venv-oldest.
## That torch is a CUDA build from the package index (the venv holds about 6 GB); it runs on the CPU like the CPU build.
test-oldest:
	$(PYTHON) -m venv .venv-oldest
	.venv-oldest/bin/pip install --quiet -c .ci/oldest.txt torch -e ".[dev]"
	.venv-oldest/bin/python -m pytest -q

## Lint and formatting checks (CI runs them before the tests); `make format` rewrites the files.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## The speed, precision and fault benchmarks, one at a time, kept in docs/results/ and shown in docs/results.md.
bench: $(STAMP)
	$(PY) benchmarks/record.py tagger_speed.py
	$(PY) benchmarks/record.py classifier_speed.py
	$(PY) benchmarks/record.py translate_speed.py
	$(PY) benchmarks/record.py charlm_speed.py
	$(PY) benchmarks/record.py precision.py
	$(PY) benchmarks/record.py faults.py
	$(PY) benchmarks/record.py evidence_speed.py
	$(PY) docs/make_results.py

## seqnlp against Flair and OpenNMT-py, side by side (makes the peers' environments under ~/.cache/seqnlp-peers once).
bench-peers: $(STAMP)
	$(PY) benchmarks/peers/all.py

clean:
	rm -rf $(VENV) .venv-oldest runs
