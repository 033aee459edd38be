# The two commands a newcomer needs: `make run` (the whole system, locally) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := libs/schema libs/platform services/ingest-api services/feed-poller services/reconciler services/pricing
STAMP := $(VENV)/.installed

export RWASYNC_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export RWASYNC_TEST_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/

.PHONY: run test test-slow check lint typecheck install services migrate clean

$(STAMP): $(foreach p,$(PACKAGES),$(p)/pyproject.toml) requirements-dev.txt constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	scripts/ensure-venv.sh $(PYTHON) $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt $(foreach p,$(PACKAGES),-e $(p)) -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

services:
	@scripts/ensure-services.sh

migrate: install services
	$(BIN)/rwasync migrate

## Run the whole system locally: four services and a demo provider, in the foreground (Ctrl-C stops).
# The demo's feed lives on 127.0.0.1, which feed URLs may use only when allowed; honcho pipes the
# output, so ask for readable console logs and unbuffered Python output explicitly. Ctrl-C or
# SIGTERM makes honcho stop every process and exit 130/143: a normal end of `make run`.
run: export RWASYNC_FEED_ALLOWED_NETWORKS := 127.0.0.0/8,::1
run: export RWASYNC_LOG_FORMAT := console
run: export PYTHONUNBUFFERED := 1
# Locally, keep the APIs on loopback (the services' own default, 0.0.0.0, suits containers).
run: export RWASYNC_INGEST_HOST := 127.0.0.1
run: export RWASYNC_FEED_POLLER_HOST := 127.0.0.1
run: export RWASYNC_PRICING_HOST := 127.0.0.1
run: export RWASYNC_RECONCILER_HOST := 127.0.0.1
run: install services
	@scripts/ports-free.sh $${RWASYNC_INGEST_PORT:-8080} $${RWASYNC_FEED_POLLER_PORT:-8081} \
		$${RWASYNC_PRICING_PORT:-8082} $${RWASYNC_RECONCILER_PORT:-8083} $${DEMO_FEED_PORT:-8090}
	$(BIN)/rwasync migrate
	@echo "Starting the four services and the demo provider (Procfile); the demo keeps its" \
		"identity in .run/demo.json. Ctrl-C stops everything."
	@$(BIN)/honcho start -f Procfile; status=$$?; \
		if [ $$status -eq 130 ] || [ $$status -eq 143 ]; then exit 0; fi; exit $$status

lint: install
	$(BIN)/ruff check libs services tests demo benchmarks
	$(BIN)/ruff format --check libs services tests demo benchmarks
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy libs/schema/src libs/platform/src services/*/src demo

check: lint typecheck

## Run the whole default suite: checks, then unit, integration and e2e tests.
test: install services check
	$(BIN)/pytest -m "not slow" -p no:cacheprovider

## Slow soak and fault runs, kept out of the default suite.
test-slow: install services
	$(BIN)/pytest -m slow -p no:cacheprovider -s

clean:
	rm -rf $(VENV)
