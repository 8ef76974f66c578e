# llm-proxy-extproc. `make help` lists the targets.

VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -s -w -X main.version=$(VERSION)
BIN          := bin
GO_TEST_ARGS ?=
STATICCHECK  := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCH_TIME   ?= 2s

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build extproc, fakellm and envoyemu into bin/.
	@mkdir -p $(BIN)
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

.PHONY: version
version: ## Print the version that builds embed.
	@echo $(VERSION)

.PHONY: run
run: build ## Run the ext_proc server with configs/base.yml.
	LOG_FORMAT=text $(BIN)/extproc

.PHONY: dev
dev: ## Run the server from source with debug logs.
	LOG_FORMAT=text LOG_LEVEL=debug go run ./cmd/extproc

.PHONY: demo
demo: build ## Run server, fake vendor and emulated Envoy on :9002 (no Docker, no keys).
	./scripts/demo.sh

.PHONY: test
test: ## Run every test with the race detector.
	go test -race -count=1 $(GO_TEST_ARGS) ./...

.PHONY: test-stress
test-stress: ## Run every test with -race -count=3 beside a CPU hog (catches scheduling-dependent tests).
	./scripts/test-stress.sh

# SOAK_DURATION is the fault campaign's load time, split over its three Redis deployments.
SOAK_DURATION ?= 3m

.PHONY: soak
soak: ## Run the fault campaign: 2 instances per Redis deployment (single, Sentinel, Cluster) under vendor and Redis faults, with its figures (docs/soak.md).
	LLM_PROXY_SOAK=1 SOAK_DURATION=$(SOAK_DURATION) go test -race -count=1 -timeout 30m -run '^TestSoak$$' -v ./e2e/

.PHONY: e2e
e2e: ## Run the end-to-end suite (emulated Envoy, fake vendor, official SDKs).
	go test -race -count=1 $(GO_TEST_ARGS) ./e2e/...

.PHONY: e2e-docker
e2e-docker: ## Run the same e2e scenarios against real Envoy in Docker (skips without a Docker engine).
	E2E_DOCKER=1 go test -count=1 -timeout 30m -run Docker $(GO_TEST_ARGS) ./e2e/...

.PHONY: bench
bench: ## Run the benchmarks and print the comparisons with ratios.
	go test -run '^$$' -bench . -benchmem -benchtime $(BENCH_TIME) ./pkg/providers/ ./pkg/ratelimit/ ./pkg/breaker/ ./bench/...

# LOAD_ARGS are passed to bench/load, e.g. LOAD_ARGS='-conc 32 -rules off,memory -rounds 7'.
LOAD_ARGS ?=

.PHONY: bench-load
bench-load: ## Load-test the server built as cmd/extproc against a null ext_proc server (child processes, alternating rounds, ratios).
	mkdir -p bin && go build -o bin/extproc-bench ./cmd/extproc && go build -o bin/bench-load ./bench/load
	bin/bench-load -extproc bin/extproc-bench $(LOAD_ARGS)

.PHONY: bench-streams
# STREAMS_ARGS are passed to bench/load's long-streams mode, e.g. STREAMS_ARGS='-long-streams 2000 -long-hold 30s'.
STREAMS_ARGS ?= -long-streams 10000 -long-hold 60s
bench-streams: ## Hold 10,000 streamed responses open through the null server and ours: memory per open stream, CPU per chunk, goroutines left.
	mkdir -p bin && go build -o bin/extproc-bench ./cmd/extproc && go build -o bin/bench-load ./bench/load
	bin/bench-load -extproc bin/extproc-bench $(STREAMS_ARGS)

.PHONY: update-prices
update-prices: ## Refresh pkg/cost's vendored price catalog from the latest @pydantic/genai-prices on npm (needs npm).
	cd tools/pricecheck && npm install --no-audit --no-fund --save-exact @pydantic/genai-prices@latest
	SNAPSHOT_DATE=$$(date -u +%F) node tools/pricecheck/snapshot.mjs > pkg/cost/catalog/genai-prices.json.new
	cp tools/pricecheck/node_modules/@pydantic/genai-prices/LICENSE pkg/cost/catalog/LICENSE.genai-prices
	mv pkg/cost/catalog/genai-prices.json.new pkg/cost/catalog/genai-prices.json
	go test -count=1 ./pkg/cost/

.PHONY: fmt
fmt: ## Format the code.
	gofmt -w .

.PHONY: check
check: ## gofmt (no diff), go vet, staticcheck.
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	go run $(STATICCHECK) ./...

.PHONY: docker-build
docker-build: ## Build the extproc and fakellm images.
	docker build --target extproc --build-arg VERSION=$(VERSION) -t llm-proxy-extproc:$(VERSION) .
	docker build --target fakellm --build-arg VERSION=$(VERSION) -t llm-proxy-fakellm:$(VERSION) .

.PHONY: clean
clean: ## Remove build output.
	rm -rf $(BIN)
