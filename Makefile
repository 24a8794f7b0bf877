# Entry points; each target does its own set-up (see README.md).
.PHONY: run test lint dashboards loadtest sweep image fuzz audit k8s

run:  ## Run the service on :8000 (PostgreSQL/Redis when up, else embedded)
	bash scripts/run.sh

test:  ## The whole test suite, installing what it needs
	bash scripts/test.sh

lint:  ## ruff and mypy only
	. .venv/bin/activate && ruff check . && ruff format --check . && mypy --strict app
