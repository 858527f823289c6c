# Every target creates or reuses the virtualenv in .venv/ and installs the package into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out
DEMO_IMPRESSIONS ?= 200000

.PHONY: install test test-all demo bench-pipeline bench-quality bench-serving clean

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# Includes the slow tests (marker `slow`), left out of the default run.
test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow" tests

demo: $(STAMP)
	$(PY) -m ranking.demo --out $(DEMO_DIR) --impressions $(DEMO_IMPRESSIONS)

bench-pipeline: $(STAMP)
	$(PY) benchmarks/pipeline_throughput.py --impressions 1000000

# PLE + ESMM against the simulator's oracle AUC, with and without the sequence crosses.
bench-quality: $(STAMP)
	$(PY) benchmarks/quality_vs_oracle.py --impressions 200000 --seeds 2

# gRPC vs in-process latency and QPS, 200 candidates, 1 and 8 clients.
bench-serving: $(STAMP)
	$(PY) benchmarks/serving_latency.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
