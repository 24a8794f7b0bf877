# Entry points; each target does its own set-up (see README.md).
.PHONY: run test lock lint dashboards loadtest sweep image fuzz audit k8s bench token-throughput ha

run:  ## Run the service on :8000 (PostgreSQL/Redis when up, else embedded)
	bash scripts/run.sh

test:  ## The whole test suite, installing what it needs
	bash scripts/test.sh

lock:  ## Regenerate scripts/requirements/*.txt (hashes) from pyproject.toml's pins, after changing one
	bash scripts/lock.sh

lint:  ## ruff and mypy only
	bash scripts/venv-run.sh dev bash -c 'ruff check . && ruff format --check . && mypy --strict app'

dashboards:  ## Rebuild dashboard JSON and chart copies; check and unit-test the alert rules
	bash scripts/venv-run.sh dev python -m dashboards.build
	bash scripts/install-promtool.sh
	promtool check rules dashboards/alerts/user-service.rules.yaml
	cd dashboards/alerts && promtool test rules user-service.rules.test.yaml

k8s:  ## Regenerate the chart's app defaults and README values table; re-render k8s/ from the chart
	. .venv/bin/activate && python -m scripts.chart.app_defaults --write && python -m scripts.chart.readme --write
	. .venv/bin/activate && PATH="$$(bash scripts/install-helm.sh):$$PATH" python -m scripts.chart.k8s_manifests --write

bench:  ## Service vs bare FastAPI baselines: req/s, CPU, instructions, queries per request (PROFILE=1: flame graph)
	PROFILE=$(PROFILE) INSTRUCTIONS=$(INSTRUCTIONS) bash scripts/bench.sh

token-throughput:  ## Offline token verification and introspection next to the cached read, one run
	. .venv/bin/activate && python -m scripts.token_throughput

image:  ## Build the container image with buildah (root; no Docker engine needed)
	bash scripts/image.sh build

loadtest:  ## Release gate; starts the service on 127.0.0.1 unless HOST is given
	bash scripts/venv-run.sh dev python -m loadtests.gate $(if $(HOST),--host $(HOST)) --users $(or $(USERS),20) --spawn-rate $(or $(SPAWN_RATE),10) --duration $(or $(DURATION),60s) --thresholds loadtests/thresholds.toml --out build/loadtest

sweep:  ## Tuning sweep (~6-10 min): report, plots and Helm values in build/sweep
	bash scripts/venv-run.sh dev python -m loadtests.sweep --grid loadtests/sweep.toml --out build/sweep --max-connections $(or $(MAX_CONNECTIONS),100) --replicas $(or $(REPLICAS),4)

fuzz:  ## Long schemathesis run against the real service (FUZZ_EXAMPLES, FUZZ_SEED, FUZZ_MAX_TIME)
	bash scripts/fuzz.sh

ha:  ## The high-availability tests alone (~3 min): PgBouncer, PostgreSQL failover, Redis Sentinel and Cluster
	bash scripts/test.sh tests/ha

audit:  ## pip-audit of the pinned dependencies (accepted findings: tests/security/pip-audit-accepted.txt)
	bash scripts/audit.sh
