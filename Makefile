# orkstate — run `make help` for the targets.
# The database is DATABASE_URL, else postgres://postgres@localhost:5432/postgres?sslmode=disable.

GO            ?= go
GOBIN_DIR     := $(shell $(GO) env GOPATH)/bin
STATICCHECK   := $(GOBIN_DIR)/staticcheck
BENCH_OUT     ?= internal/bench/results
SCHEMA        ?= $(or $(ORK_SCHEMA),ork)
# auto: make test starts the tests' PgBouncer (.ci/pgbouncer) when pgbouncer is installed and PGBOUNCER_URL is
# not set; off: it does not, and TestPgBouncer skips saying how to get one (in CI, CI=true, it fails instead).
PGBOUNCER     ?= auto

.DEFAULT_GOAL := help
.PHONY: help test lint bench bench-full demo migrate

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

test: ## run every test with the race detector against PostgreSQL (DATABASE_URL), and through PgBouncer (PGBOUNCER_URL, else .ci/pgbouncer)
	@if [ -z "$$PGBOUNCER_URL" ] && [ "$(PGBOUNCER)" != off ]; then \
		PGBOUNCER_URL="$$(PGBOUNCER_INSTALL=0 .ci/pgbouncer start)" || PGBOUNCER_URL=""; export PGBOUNCER_URL; fi; \
	[ -n "$$PGBOUNCER_URL" ] || echo "make test: no PgBouncer (PGBOUNCER=$(PGBOUNCER)), so TestPgBouncer skips: install pgbouncer, or set PGBOUNCER_URL"; \
	echo "$(GO) test -race -count=1 ./..."; $(GO) test -race -count=1 ./...

lint: ## gofmt check, go vet, staticcheck (installed into GOPATH/bin when missing)
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	@if [ ! -x "$(STATICCHECK)" ]; then echo "installing staticcheck"; $(GO) install honnef.co/go/tools/cmd/staticcheck@latest; fi
	$(STATICCHECK) ./...

bench: ## quick benchmarks against ork-v1, River and the same-write floor (~10 min); writes $(BENCH_OUT)/quick.{json,txt,svg} and the README table
	$(GO) run ./cmd/orkstate bench --out $(BENCH_OUT)
	$(GO) test ./internal/bench -count=1 -run TestREADMEMatchesResults -update

bench-full: ## the large scenarios (1M blocked tasks, aged install, more runs); writes $(BENCH_OUT)/full.{json,txt,svg} and the README table
	$(GO) run ./cmd/orkstate bench --full --out $(BENCH_OUT)
	$(GO) test ./internal/bench -count=1 -run TestREADMEMatchesResults -update

demo: ## run a DAG workflow through two scheduler loops in a fresh schema (falls back to SQLite without PostgreSQL)
	$(GO) run ./cmd/orkstate demo

migrate: ## install or upgrade the schema SCHEMA (default: ORK_SCHEMA, else ork) with its functions
	$(GO) run ./cmd/orkstate migrate --schema $(SCHEMA)
