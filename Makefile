# Everyday commands. `make run` and `make test` need only Python 3.11: the first call
# installs uv (from PyPI) into .tools/ and the locked dependencies into .venv/.
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000
UV := .tools/bin/uv
UV_VERSION := 0.13.9
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
# 48 MiB websocket messages (also in the Dockerfile and compose.yaml): daphne's own 1 MiB
# default closed the chat socket on any image over ~750 KB; the consumer refuses frames over
# 32 MiB itself, with an error frame.
DAPHNE_WS_LIMITS := --websocket-max-message-size 50331648 --websocket-max-frame-size 50331648

.PHONY: run test lint fmt migrations worker beat superuser clean bench bench-smoke

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Re-sync only when the lock or the project file changed. Bytecode is compiled at install
# time: with PYTHONDONTWRITEBYTECODE set (as on some machines) every start-up otherwise
# compiled every library again, 3 of the 4 seconds it took (bench/RESULTS.md).
$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

run: $(VENV)/.synced
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) -m compileall -q apps chatsite
	@echo "chatsite: serving on http://$(HOST):$(PORT)/"
	exec $(VENV)/bin/daphne --bind $(HOST) --port $(PORT) $(DAPHNE_WS_LIMITS) chatsite.asgi:application

test: $(VENV)/.synced
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Benchmarks (bench/run.py): the full run writes bench/RESULTS.md; the smoke run proves
# every scenario works, in a minute or two, and never asserts a time (CI runs it).
bench: $(VENV)/.synced
	$(PY) bench/run.py --uvicorn

bench-smoke: $(VENV)/.synced
	$(PY) bench/run.py --smoke

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy apps chatsite

fmt: $(VENV)/.synced
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrations: $(VENV)/.synced
	$(PY) manage.py makemigrations

worker: $(VENV)/.synced
	$(VENV)/bin/celery -A chatsite worker --loglevel=INFO

beat: $(VENV)/.synced
	$(VENV)/bin/celery -A chatsite beat --loglevel=INFO --schedule data/celerybeat-schedule

superuser: $(VENV)/.synced
	$(PY) manage.py createsuperuser

clean:
	rm -rf .tools $(VENV) staticfiles
