# Developer and CI entry points. `make test` is what CI runs (via .ci/run).

GO                ?= go
VERSITYGW_VERSION ?= v1.8.0
# Where `go install` puts tools; internal/testservers looks there too.
GOBIN_DIR         := $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)
VERSITYGW         := $(GOBIN_DIR)/versitygw
TEST_TIMEOUT      ?= 14m
TESTFLAGS         ?=

.PHONY: all build test vet fmt-check bench fuzz demo tools clean release

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

## vet: go vet on every package (and on make release's own module, deploy/release)
vet:
	$(GO) vet ./...
	cd deploy/release && $(GO) vet ./...

## release: VERSION=x.y.z: reproducible binaries, .deb/.rpm, SBOMs and SHA256SUMS in dist/ (docs/install.md)
# PLATFORMS=linux/amd64 builds one platform only (what the install test does).
release:
	@if [ -z "$(VERSION)" ]; then echo "release: say which: make release VERSION=1.2.3" >&2; exit 2; fi
	cd deploy/release && $(GO) run . -version "$(VERSION)" -repo ../.. -dist ../../dist $(if $(PLATFORMS),-platforms $(PLATFORMS))

## fmt-check: fail when a file is not gofmt-clean
fmt-check:
	@out="$$(gofmt -l .)"; \
	if [ -n "$$out" ]; then echo "not gofmt-clean:"; echo "$$out"; exit 1; fi

# bench: BENCH_E2E is what ./tests/benchmarks runs (default all: end to end on
# local/SFTP/S3 vs ihr-loadgen, Coupa's 25 req/s budget (~200 s), peak RSS
# up to 10M rows); BENCH_OTHERS=0 skips the other packages' benchmarks.
BENCH_E2E    ?= .
BENCH_OTHERS ?= 1
FUZZTIME     ?= 5m

## bench: the end-to-end table (see BENCHMARKS.md "End to end"; ~20 min), then every other package's benchmarks
bench:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	$(GO) test ./tests/benchmarks -run '^$$' -bench '$(BENCH_E2E)' -benchtime 1x -timeout 2h | tee $$out; \
	$(GO) test ./mapping -run '^$$' -bench 'EncodingCSV|Parse$$' -benchtime 2x -cpu 1 | tee -a $$out; \
	echo; echo "## End to end (make bench)"; echo; \
	$(GO) run ./tests/benchmarks/cmd/benchtable < $$out; \
	if [ "$(BENCH_OTHERS)" = 1 ]; then \
		$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v -e /tests/benchmarks -e /mapping); \
	fi

## fuzz: every fuzz target in the repo (func FuzzX in *_test.go), one at a time, FUZZTIME each (default 5m)
fuzz:
	@targets=$$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); \
	if [ -z "$$targets" ]; then echo "fuzz: no fuzz targets"; exit 0; fi; \
	for f in $$targets; do \
		dir=$$(dirname $$f); \
		for fn in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== $$dir $$fn (fuzztime $(FUZZTIME))"; \
			$(GO) test $$dir -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) || exit 1; \
		done; \
	done; \
	echo "fuzz: every target ran $(FUZZTIME) without a failure"

## demo: build both binaries, start ihr-api on SQLite, import fixtures/demo once (see cmd/ihr-demo)
demo:
	$(GO) run ./cmd/ihr-demo -dir demo

## tools: install versitygw (the S3 server the tests use) when missing
tools:
	@if [ -x "$(VERSITYGW)" ] || command -v versitygw >/dev/null 2>&1; then \
		echo "versitygw: $$(command -v versitygw || echo $(VERSITYGW))"; \
	else \
		echo "installing versitygw $(VERSITYGW_VERSION) into $(GOBIN_DIR) (about 1.5 minutes)"; \
		$(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION); \
	fi

## servers: install sshd, vsftpd, PostgreSQL, wrk and versitygw when missing (apt-get needs root)
# A machine without them still gets the other tests: those skip, or fail
# under IHR_REQUIRE_SERVERS=1 as in CI.
.PHONY: servers
servers:
	@./.ci/install-servers

clean:
	rm -rf bin dist
