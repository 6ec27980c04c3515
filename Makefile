# paysettle's everyday commands. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets with what they do
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

.PHONY: run
run: ## Build and run the demo: paysettle serve (embedded defaults, no broker), then the provider simulator; one line per settlement; Ctrl-C stops
	$(CARGO) build --release --workspace --bin paysettle --bin paysettle-sim
	bash scripts/demo.sh

.PHONY: build
build: ## Build every crate in release mode
	$(CARGO) build --release --workspace

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: lint
lint: ## Check formatting, clippy with warnings as errors, the crate walls, and cargo deny (advisories, bans, licences, sources)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	bash scripts/check-walls.sh
	bash scripts/deny.sh

.PHONY: test
test: lint ## Lint, then run every test (needs RabbitMQ at 127.0.0.1:5672)
	$(CARGO) test --workspace

.PHONY: bench
bench: ## Run every benchmark and write docs/benchmarks.md (needs RabbitMQ)
	bash scripts/bench.sh full

.PHONY: bench-quick
bench-quick: ## A short run of every benchmark (under two minutes)
	bash scripts/bench.sh quick

.PHONY: bench-attack
bench-attack: ## Only the "under attack" section of docs/benchmarks.md (needs RabbitMQ)
	bash scripts/bench.sh attack

.PHONY: bench-ledger-workers
bench-ledger-workers: ## Only the "shared ledger: 1, 2, 3 workers" section of docs/benchmarks.md (needs PostgreSQL)
	bash scripts/bench.sh ledger-workers

# `make soak REPLICAS=3`: three workers on one PostgreSQL ledger.
REPLICAS ?= $(or $(PAYSETTLE_SOAK_REPLICAS),1)

.PHONY: soak
soak: ## Ten-minute chaos soak with the invariant checker (REPLICAS=3: three workers on PostgreSQL; PAYSETTLE_SOAK_BROKER_RESTART=1 also restarts RabbitMQ)
	PAYSETTLE_SOAK_REPLICAS=$(REPLICAS) bash scripts/soak.sh

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZ_SECONDS (default 60) each; fails on a crash (installs cargo-fuzz)
	bash scripts/fuzz.sh

.PHONY: api-fuzz
api-fuzz: ## Fuzz both HTTP listeners against docs/openapi.yaml with schemathesis: no 5xx, nothing undocumented
	bash scripts/api-fuzz.sh

.PHONY: clean
clean: ## Remove build output
	$(CARGO) clean
