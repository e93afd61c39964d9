# Flowgate developer commands. `make run` and `make test` are the two set-up commands.
CARGO ?= cargo
BIN_RELEASE := target/release/flowgate

.PHONY: run cluster-demo test lint fmt bench bench-cluster bench-footprint bench-rss bench-instructions bench-backlog bench-schedules bench-criterion openapi openapi-check schemathesis build build-release ci console console-check browser-test

run: build-release
	@bash tools/dev-run.sh $(BIN_RELEASE)

build:
	$(CARGO) build --workspace

build-release:
	$(CARGO) build --release -p flowgate

# Three nodes on one local PostgreSQL (ports 8081-8083); Ctrl-C stops them all.
cluster-demo: build-release
	@bash tools/cluster-demo.sh $(BIN_RELEASE)

test:
	@if [ -z "$$FLOWGATE_TEST_POSTGRES_URL" ]; then \
	  echo "NOTE: FLOWGATE_TEST_POSTGRES_URL is not set: the PostgreSQL half of the suite is SKIPPED (see .ci/pg-start.sh)."; \
	fi
	$(CARGO) build --workspace --all-targets
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi
	$(CARGO) test --workspace --doc
	@$(MAKE) --no-print-directory openapi-check
	@$(MAKE) --no-print-directory browser-test
	@$(MAKE) --no-print-directory schemathesis

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# The wrk harness: bare actix-web baseline beside Flowgate (none / full
# security / async), servers on one core, wrk on another (see BENCHMARKS.md).
bench:
	@bash tools/bench/run.sh

# One node vs three on one PostgreSQL database (sync, async) and the change-notification
# latency between nodes (tools/bench/cluster.py, see BENCHMARKS.md).
bench-cluster:
	@BENCH_CLUSTER=1 bash tools/bench/run.sh

# Cold start to /readyz and RSS with many published flows (BENCH_FLOWS, 1000).
bench-footprint: build-release
	FLOWGATE_BIN=$(BIN_RELEASE) python3 tools/bench/footprint.py

# User-space instructions per sync call under callgrind, a figure noise does not
# move (tools/bench/instructions.sh; needs valgrind). BENCH_FLOW picks the flow:
# transform (auth none), transform-secure (API key), transform-async.
bench-instructions: build-release
	@bash tools/bench/instructions.sh $(BIN_RELEASE)

# Async acknowledgements on one connection while a backlog of queued runs drains
# (tools/bench/backlog.py).
bench-backlog: build-release
	FLOWGATE_BIN=$(BIN_RELEASE) python3 tools/bench/backlog.py

# RSS under 60 s of API-key load, every 10 s, beside bare actix-web (tools/bench/rss.py).
bench-rss: build-release
	$(CARGO) build --release -p flowgate-bench-bare
	FLOWGATE_BIN=$(BIN_RELEASE) BARE_BIN=$(CURDIR)/target/release/bench-bare python3 tools/bench/rss.py

# Schedule lag end to end: 300 every-second crons (BENCH_SCHEDULE_FLOWS, _SECS,
# _SPREAD=1 for per-minute crons spread over the minute; see tools/bench/schedules.py).
bench-schedules: build-release
	FLOWGATE_BIN=$(BIN_RELEASE) python3 tools/bench/schedules.py

# The criterion benches of the crates and the older in-process load harnesses.
bench-criterion: build-release
	FLOWGATE_BIN=$(BIN_RELEASE) $(CARGO) bench --workspace

openapi: build
	./target/debug/flowgate openapi export --out openapi/

openapi-check:
	@[ -x target/debug/flowgate ] || $(CARGO) build -p flowgate
	@tmp=$$(mktemp -d); ./target/debug/flowgate openapi export --out $$tmp >/dev/null && \
	  if diff -u openapi/admin.json $$tmp/admin.json; then echo "openapi/admin.json is up to date"; \
	  else echo "openapi/admin.json drifted from the code: run 'make openapi' and commit"; exit 1; fi

# Fuzz the admin and flow OpenAPI documents against a real server (PyPI schemathesis, ~3 min).
schemathesis:
	@[ -x target/debug/flowgate ] || $(CARGO) build -p flowgate
	bash tools/schemathesis.sh

# The analyst console: console/src -> console/dist (committed; embedded by `cargo build`).
console:
	cd console && npm ci --no-audit --no-fund && npm run --silent build

# CI: the committed bundle is exactly what its sources and lockfile build.
console-check: console
	@if git diff --exit-code --stat -- console/dist && [ -z "$$(git status --porcelain -- console/dist)" ]; then \
	  echo "console/dist matches console/src"; \
	else echo "console/dist drifted from console/src: run 'make console' and commit"; exit 1; fi

# The console in a real browser (Debian chromium + Playwright from PyPI); fails if either is missing.
browser-test:
	@[ -x target/debug/flowgate ] || $(CARGO) build -p flowgate
	python3 tests/browser/console_test.py

ci:
	bash .ci/run
