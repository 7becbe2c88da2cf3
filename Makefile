.PHONY: help build test race lint check ci

help: ## show the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build ./coffer
	go build -o coffer ./cmd/coffer

test: ## run the tests (skips what needs missing programs)
	go test ./...

race: ## race detector on the concurrent packages
	go test -race ./internal/blockdev/ ./internal/chunkstore/ ./internal/store/... ./internal/nbd/ ./internal/operation/

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	go vet ./...

check: lint test ## lint and test

ci: ## what CI runs (installs qemu-utils and libnbd-bin when missing)
	bash .ci/run
