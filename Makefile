# Two commands on a fresh Debian machine: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
PYTEST_ARGS ?=
# Two pytest-xdist workers, one test module each at a time (module fixtures stay in one process):
# most end-to-end time is waiting on real servers, so two run side by side on 2 cores.
TEST_WORKERS ?= 2

.PHONY: install demo test test-fast ui ui-team stack-up stack-down bench check clean

install:
	@scripts/install.sh

demo: install
	@mkdir -p $(DAGSTER_HOME) && cp -n dagster.yaml $(DAGSTER_HOME)/dagster.yaml 2>/dev/null || true
	$(PY) -m deploy_pipelines.cli demo

# Two workers, a module each at a time, longest modules first (deploy_pipelines_tests/conftest.py).
test: install
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-fast: install
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow" $(PYTEST_ARGS)

# The Dagster UI over the demo's history (run `make demo` first). set -m: see LOCAL_STACK.md.
ui: install
	@set -m; source .stack/env && DEPLOY_CATALOG=$(CURDIR)/examples/demo/deploy.yaml \
	  $(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p $${UI_PORT:-3000}

# The same UI for a team: instance storage on the local stack's PostgreSQL (README "Running for a team").
ui-team: install
	@set -m; source .stack/env && $(PY) -m deploy_pipelines.stack.team $(CURDIR)/.dagster_home_team && \
	  DAGSTER_HOME=$(CURDIR)/.dagster_home_team DEPLOY_CATALOG=$${DEPLOY_CATALOG:-$(CURDIR)/examples/demo/deploy.yaml} \
	  $(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p $${UI_PORT:-3000}

stack-up: install
	$(PY) -m deploy_pipelines.cli stack up

stack-down:
	$(PY) -m deploy_pipelines.cli stack down

check: install
	$(PY) -m deploy_pipelines.cli check examples/demo/deploy.yaml

bench: install
	$(PY) -m bench.run_all

clean: stack-down
	rm -rf .stack .dagster_home .dagster_home_team
