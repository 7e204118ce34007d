# The two commands a newcomer needs:
#   make run    start Relay (embedded PostgreSQL unless RELAY_DATABASE_URL is set)
#   make test   run the test suite (starts its own PostgreSQL and Redis)
.PHONY: run test lint bench-ingest

HOST ?= 127.0.0.1
PORT ?= 8000

run:
	@scripts/bootstrap.sh
	.venv/bin/python manage.py runrelay --host $(HOST) --port $(PORT)

test:
	@scripts/bootstrap.sh --test
	.venv/bin/python -m pytest $(PYTEST_ARGS)

lint:
	@scripts/bootstrap.sh --test
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	.venv/bin/mypy
