# The two commands a newcomer needs: `make run` (the whole system, locally) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := libs/schema libs/platform libs/feeds libs/store tools/cli services/ingest-api services/feed-poller services/reconciler services/pricing
STAMP := $(VENV)/.installed

export RWASYNC_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export RWASYNC_TEST_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/
# Tests never read a developer's .env: every process they start gets its settings explicitly.
test test-slow test-faults: export RWASYNC_ENV_FILE := /dev/null

.PHONY: run test test-slow test-faults check lint typecheck install services deploy-tools chromium migrate clean

$(STAMP): $(foreach p,$(PACKAGES),$(p)/pyproject.toml) requirements-dev.txt constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	scripts/ensure-venv.sh $(PYTHON) $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt $(foreach p,$(PACKAGES),-e $(p)) -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

services:
	@scripts/ensure-services.sh

## docker-compose and Caddy, which the deployment tests run (no Docker engine needed).
deploy-tools: install
	@scripts/ensure-deploy-tools.sh $(VENV)

## Debian's Chromium and ChromeDriver, for the live price page's browser test.
chromium:
	@scripts/ensure-chromium.sh

migrate: install services
	$(BIN)/rwasync migrate

## The settings `make run` and a bare `.venv/bin/rwasync` share; created once, then yours to edit.
## A key of its own seals feed credentials, so that a provider's feed with a password works at once.
.env: | $(STAMP)
	cp .env.example .env
	@echo "RWASYNC_FEED_SECRETS_KEY=$$($(BIN)/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" >> .env
	@echo "created .env from .env.example (loopback feeds allowed, console logs, APIs on 127.0.0.1, a new feed secrets key)"

## Run the whole system locally: four services and a demo provider, in the foreground (Ctrl-C stops).
# Every process reads its settings from .env itself (see .env.example), variables set in the
# environment winning, so honcho is told to load no file (it would let .env win); the port check
# reads .env the same way. honcho pipes the output, so ask for unbuffered Python output. Ctrl-C
# or SIGTERM makes honcho stop every process and exit 130/143: a normal end of `make run`.
run: export PYTHONUNBUFFERED := 1
run: install services .env
	@environment="$$(export -p)"; set -a; . ./.env; set +a; eval "$$environment"; \
		ingest=$${RWASYNC_INGEST_PORT:-8080}; \
		case "$$(printf %s "$${RWASYNC_INGEST_REUSE_PORT:-}" | tr A-Z a-z)" in \
			1|true|t|yes|y|on) ingest= ;; esac; \
		scripts/ports-free.sh $$ingest \
		$${RWASYNC_FEED_POLLER_PORT:-8081} $${RWASYNC_PRICING_PORT:-8082} \
		$${RWASYNC_RECONCILER_PORT:-8083} $${DEMO_FEED_PORT:-8090}
	$(BIN)/rwasync migrate
	@echo "Starting the four services and the demo provider (Procfile); the demo keeps its" \
		"identity in .run/demo.json. Ctrl-C stops everything."
	@$(BIN)/honcho start -f Procfile -e /dev/null; status=$$?; \
		if [ $$status -eq 130 ] || [ $$status -eq 143 ]; then exit 0; fi; exit $$status

lint: install
	$(BIN)/ruff check libs tools services tests demo benchmarks
	$(BIN)/ruff format --check libs tools services tests demo benchmarks
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy libs/*/src tools/*/src services/*/src demo

check: lint typecheck

## Run the whole default suite: checks, then unit, integration and e2e tests, on two pytest-xdist
## workers (a module's tests stay on one; docs/architecture.md, "Tests"). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: install services deploy-tools chromium check
	$(BIN)/pytest -m "not slow" -p no:cacheprovider --durations=15 -n $(TEST_WORKERS) --dist loadfile

## Slow soak and fault runs, kept out of the default suite.
test-slow: install services
	$(BIN)/pytest -m slow -p no:cacheprovider -s

## The fault suite (docs/reliability.md): private RabbitMQ nodes (a 3-node cluster among them) and
## Postgres clusters killed under load, lock and statement timeouts, alarms, proxied faults, the soak;
## about 22–27 minutes here (the limit is 45).
## Each scenario prints a FIGURES line; the table in docs/reliability.md holds the last ones.
FAULT_TESTS := tests/e2e/test_cluster_failover.py tests/e2e/test_fault_scenarios.py tests/e2e/test_feed_faults.py \
	tests/e2e/test_soak.py tests/e2e/test_private_servers.py tests/e2e/test_faults.py \
	tests/e2e/test_reconciler.py tests/integration/feed_poller/test_holds_and_faults.py \
	tests/integration/test_broker.py tests/unit/test_ledger_checker.py tests/e2e/test_vanished_host.py \
	tests/e2e/test_poller_crash.py
test-faults: install services
	mkdir -p .run; $(BIN)/pytest $(FAULT_TESTS) -p no:cacheprovider -s --timeout 1200 2>&1 | tee .run/faults.log; \
		status=$${PIPESTATUS[0]}; grep '^FIGURES' .run/faults.log || true; exit $$status

clean:
	rm -rf $(VENV)
