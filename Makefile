# mlcd — the two commands a new user needs:
#   make demo   set everything up and deliver the example model end to end
#   make test   set everything up and run the kit's checks and tests
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MLCD := $(VENV)/bin/mlcd
STAMP := $(VENV)/.mlcd-installed
PYTEST_ARGS ?=
# benchmarks/ is linted once it exists (ruff fails on a path that does not)
LINT_PATHS := scripts tests $(wildcard benchmarks)

.PHONY: help setup system venv js demo test lint unit integration schema docs golden serve-lock bench-serve clean test-host test-host-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

system: ## Debian packages, Docker engine, local base image and registry (as root)
	@bash scripts/setup/all.sh

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
	@# kserve declares pandas<3 and python-dateutil<3: its own code without those pins (its imports are in the dev extra)
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt kserve 2>&1 | grep -v '^WARNING: Location' || true
	@# mlflow 3.17 declares pyarrow<26: its three packages without that pin (what they need is in the dev extra)
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt mlflow mlflow-skinny mlflow-tracing 2>&1 | grep -v '^WARNING: Location' || true
	@$(PY) -c 'import mlcd, kserve, mlflow.server' && touch $@ && echo "virtualenv ready: $(VENV)"

venv: $(STAMP) ## the virtualenv with mlcd and its tools
	@: # (no 'Nothing to be done' from make setup)

JS_STAMP := tests/js/node_modules/.package-lock.json
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: install Node.js 18+ with npm (Debian: apt-get install nodejs npm)" >&2; exit 3; }
	@npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
	@touch $@ && echo "tests/js ready (mermaid for the chart-render test)"

js: $(JS_STAMP) ## Mermaid from npm, for the test that renders the evaluation chart
	@:

# The three at once (they need nothing of each other): the Debian packages, daemons and base
# image take about as long as the virtualenv's download, and CI waited for both in turn.
setup: ## everything the demo and the tests need
	@$(MAKE) --no-print-directory -j3 --output-sync=line system venv js

# The local registry's port (scripts/setup/registry.sh); the demo's image follows it.
MLCD_REGISTRY_PORT ?= 5000
export MLCD_REGISTRY_PORT

demo: setup ## deliver the example model: lint → test → train → evaluate → build → scan → release → deploy
	@MLCD_IMAGE=127.0.0.1:$(MLCD_REGISTRY_PORT)/breast-cancer $(MLCD) run --config model/mlcd.yaml --out .mlcd

lint: venv ## ruff, mypy --strict and bandit on the kit's own code
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy
	$(VENV)/bin/bandit -q -c pyproject.toml -r scripts/mlcd

unit: venv ## unit tests only (no subprocess, no network)
	$(PY) -m pytest tests/unit -m unit $(PYTEST_ARGS)

test-host: system ## the second host of the docker-host tests (netns, dockerd, sshd), the three-node swarm of the swarm tests, and the router image
	@bash scripts/setup/test-host.sh
	@bash scripts/setup/test-cluster.sh
	@bash scripts/setup/router-image.sh

test-host-down: ## tear the test host, the test cluster (and a lane apart's host left behind) down
	@bash scripts/setup/test-host.sh down
	@bash scripts/setup/test-cluster.sh down
	@set -a; . scripts/setup/test-host-apart.env; set +a; \
	if [[ -e /var/run/netns/$$MLCD_TEST_HOST_NS ]]; then bash scripts/setup/test-host.sh down; fi

# The tests run as two pytest processes side by side (scripts/test-lanes.sh): the lane
# apart (tests marked apart: the github.com rehearsal; and the unit tests) on a test host of
# its own, which the script sets up and tears down, and the lane main (the other integration
# tests). Both must pass. MLCD_LANES=1 runs them in one process. docs/internals.md
integration: setup test-host ## integration tests with the real Docker engine, registry, trivy, nginx, act
	@rc=0; bash scripts/test-lanes.sh $(PY) integration tests/integration -- $(PYTEST_ARGS) || rc=$$?; \
	bash scripts/setup/test-host.sh down; bash scripts/setup/test-cluster.sh down; exit $$rc

# lint and the test host and cluster at once too (their set-up overlaps mypy)
test: setup ## the whole suite: lint, unit and integration tests
	@$(MAKE) --no-print-directory -j2 --output-sync=line lint test-host
	@rc=0; bash scripts/test-lanes.sh $(PY) '' tests -- $(PYTEST_ARGS) || rc=$$?; \
	bash scripts/setup/test-host.sh down; bash scripts/setup/test-cluster.sh down; exit $$rc

schema: venv ## regenerate schema/mlcd.schema.json from the code
	$(MLCD) validate --print-schema > schema/mlcd.schema.json

docs: schema ## regenerate docs/cli.md and docs/configuration.md (and the schema) from the code
	$(PY) scripts/gen_docs.py

golden: venv ## regenerate tests/golden/expected/ (SARIF, summaries, model card, page, PR comment)
	MLCD_UPDATE_GOLDEN=1 $(PY) -m pytest tests/unit/test_golden.py -m unit -q
	@git status --short tests/golden/expected

serve-lock: venv ## regenerate the serving image's hashed wheel lock from constraints.txt
	$(PY) -m mlcd.image.wheelhouse constraints.txt scripts/mlcd/data/serve-requirements.txt
	$(PY) -m mlcd.image.wheelhouse --dataframe constraints.txt scripts/mlcd/data/serve-requirements-dataframe.txt

bench-serve: setup ## mlcd's model server against in-process predict, FastAPI, MLflow, BentoML (wrk)
	$(PY) benchmarks/serve.py

clean: ## remove run folders and caches (keeps the virtualenv)
	rm -rf .mlcd .mlcd-registry .pytest_cache .mypy_cache .ruff_cache
