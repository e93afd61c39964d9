# Flowgate developer commands. `make run` and `make test` are the two set-up commands.
CARGO ?= cargo
BIN_RELEASE := target/release/flowgate

.PHONY: run test lint fmt bench openapi openapi-check schemathesis build build-release ci

run: build-release
	@bash tools/dev-run.sh $(BIN_RELEASE)

build:
	$(CARGO) build --workspace

build-release:
	$(CARGO) build --release -p flowgate

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
	@$(MAKE) --no-print-directory schemathesis

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Criterion benches of the crates, then the load harnesses against a release server.
bench: build-release
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

ci:
	bash .ci/run
