# Developer and CI entry points. `make test` is what CI runs (via .ci/run).

GO                ?= go
VERSITYGW_VERSION ?= v1.8.0
# Where `go install` puts tools; internal/testservers looks there too.
GOBIN_DIR         := $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)
VERSITYGW         := $(GOBIN_DIR)/versitygw
TEST_TIMEOUT      ?= 14m
TESTFLAGS         ?=

.PHONY: all build test vet fmt-check bench fuzz demo tools clean

all: build

## build: compile the commands (ihr-api, ihr-worker) into ./bin
build:
	@mkdir -p bin
	@if [ -n "$$($(GO) list ./cmd/... 2>/dev/null)" ]; then \
		$(GO) build -o bin/ ./cmd/... && ls bin; \
	else \
		echo "build: nothing under ./cmd to build yet"; \
	fi

## test: install missing test servers (as root), vet, then every test against real servers on loopback
test: servers vet
	$(GO) test ./... -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS)

## vet: go vet on every package
vet:
	$(GO) vet ./...

## fmt-check: fail when a file is not gofmt-clean
fmt-check:
	@out="$$(gofmt -l .)"; \
	if [ -n "$$out" ]; then echo "not gofmt-clean:"; echo "$$out"; exit 1; fi

## bench: benchmarks only (no unit tests)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: placeholder until the fuzz targets land
fuzz:
	@echo "fuzz: no fuzz targets yet"

## demo: build both binaries, start ihr-api on SQLite, import fixtures/demo once (see deploy/demo)
demo:
	$(GO) run ./deploy/demo -dir demo

## tools: install versitygw (the S3 server the tests use) when missing
tools:
	@if [ -x "$(VERSITYGW)" ] || command -v versitygw >/dev/null 2>&1; then \
		echo "versitygw: $$(command -v versitygw || echo $(VERSITYGW))"; \
	else \
		echo "installing versitygw $(VERSITYGW_VERSION) into $(GOBIN_DIR) (about 1.5 minutes)"; \
		$(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION); \
	fi

## servers: install sshd, vsftpd, PostgreSQL and versitygw when missing (apt-get needs root)
# A machine without them still gets the other tests: those skip, or fail
# under IHR_REQUIRE_SERVERS=1 as in CI.
.PHONY: servers
servers:
	@./.ci/install-servers

clean:
	rm -rf bin
