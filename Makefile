# voxgate: build, run and test everything. GNU make.
#
#   make build   the wasm bundle (+ brotli twin, wasm_exec.js) and bin/server, bin/emulator
#   make run     build, then start bin/server on $(ADDR) with the emulator and a demo user
#   make test    every test: vet, unit, wasm size, wasm packages under Node, headless Chromium,
#                the official Cartesia SDK against the emulator and the proxy
#   make bench   server benchmarks
#   make soak    the token soak test (not part of make test): 3 minutes of calls of every
#                kind from two browser tabs with 4 s tokens; writes scripts/soak/RESULTS.md
#   make soak-direct  the same in direct mode (each tab mints its own tokens and calls the
#                emulator itself); writes scripts/soak/RESULTS-direct.md
#   make fuzz    every Go fuzz target for FUZZTIME each (make test runs only their seeds)
#
# Go's build cache already knows when a binary is stale, so the Go targets always ask it;
# files that feed later steps (the wasm, wasm_exec.js) are only replaced when their bytes
# change, which keeps the slow brotli step and the server relink for real changes.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:

GO     ?= go
ADDR   ?= 127.0.0.1:8080
GOROOT := $(shell $(GO) env GOROOT)
DIST   := web/dist
WASM   := $(DIST)/voxgate.wasm

# BROTLI_QUALITY: 10 compresses the wasm in ~12 s; 11 saves another 3% but takes ~30 s
# (measurements in scripts/precompress). `make build BROTLI_QUALITY=11` for a release.
BROTLI_QUALITY ?= 10

# Everything the server embeds besides Go code (web/embed.go: *.html *.js *.css *.d.ts dist).
WEB_FILES := $(wildcard web/*.html web/*.js web/*.css web/*.d.ts)

# The official-SDK witness tests (scripts/sdk) need the pinned npm packages; `npm ci`
# reinstalls them exactly from the lock file, and only when it (or package.json) changed.
SDK_DIR   := scripts/sdk
SDK_STAMP := $(SDK_DIR)/node_modules/.voxgate-installed

.PHONY: build run test bench soak soak-direct fuzz vet chromium sdk-deps clean FORCE

build: $(WASM) $(WASM).br $(DIST)/wasm_exec.js bin/server bin/emulator

# The wasm is linked into bin/ (where the go command can see it is up to date) and copied
# into dist/ only when it differs, so an unchanged bundle is not compressed again.
$(WASM): FORCE
	@mkdir -p bin/wasm $(DIST)
	GOOS=js GOARCH=wasm $(GO) build -trimpath -ldflags="-s -w" -o bin/wasm/voxgate.wasm \
		./wasm/cmd/voxgate
	@cmp -s bin/wasm/voxgate.wasm $@ || cp bin/wasm/voxgate.wasm $@

$(WASM).br: $(WASM)
	$(GO) run ./scripts/precompress -q $(BROTLI_QUALITY) $<

# wasm_exec.js must come from the toolchain that linked the wasm (its import module name
# and syscall table change between releases), so it is checked on every build.
$(DIST)/wasm_exec.js: FORCE
	@mkdir -p $(DIST)
	@cmp -s "$(GOROOT)/lib/wasm/wasm_exec.js" $@ || cp "$(GOROOT)/lib/wasm/wasm_exec.js" $@

# bin/server embeds web/ including dist/, so it is built after the bundle.
bin/server: $(WASM) $(WASM).br $(DIST)/wasm_exec.js $(WEB_FILES) FORCE
	$(GO) build -o $@ ./server/cmd/server

bin/emulator: FORCE
	$(GO) build -o $@ ./server/cmd/emulator

run: build
	ADDR="$(ADDR)" bin/server

chromium:
	scripts/ensure-chromium.sh

sdk-deps: $(SDK_STAMP)

$(SDK_STAMP): $(SDK_DIR)/package.json $(SDK_DIR)/package-lock.json
	npm ci --prefix $(SDK_DIR) --no-audit --no-fund
	@touch $@

vet:
	$(GO) vet ./...
	GOOS=js GOARCH=wasm $(GO) vet ./wasm/...

# The e2e package runs against the bin/server just built (VOXGATE_BIN); E2E_REQUIRED makes
# a missing browser or binary a failure rather than a skip. The SDK witness (scripts/sdk)
# runs the same binaries over TLS; SDK_REQUIRED makes a missing node or node_modules fail.
# The wasm packages then run under Node: the tracker a second time, the JS glue and the
# client against a fake fetch.
test: chromium sdk-deps
	$(GO) mod verify
	$(MAKE) --no-print-directory vet
	$(MAKE) --no-print-directory build
	E2E_REQUIRED=1 SDK_REQUIRED=1 VOXGATE_BIN="$(CURDIR)/bin/server" \
		VOXGATE_EMULATOR_BIN="$(CURDIR)/bin/emulator" VOXGATE_WASM_BR="$(CURDIR)/$(WASM).br" \
		$(GO) test ./...
	GOOS=js GOARCH=wasm $(GO) test -exec="$(GOROOT)/lib/wasm/go_js_wasm_exec" \
		./wasm/tracker/... ./wasm/jsx/... ./wasm/client/...

bench:
	$(GO) test -run='^$$' -bench=. ./server/... ./wasm/tracker/...

# SOAK_FLAGS passes options through, e.g. `make soak SOAK_FLAGS="-duration 10m -ttl 2"`
# (go run ./scripts/soak -h lists them). A failing verdict fails the target.
SOAK_FLAGS ?=

soak: chromium build
	$(GO) run ./scripts/soak -server bin/server $(SOAK_FLAGS)

# Direct mode for every grant, DIRECT_TOKEN_TTL = the soak's -ttl; SOAK_FLAGS as above.
soak-direct: chromium build
	$(GO) run ./scripts/soak -direct -server bin/server $(SOAK_FLAGS)

# FUZZTIME is per target; FUZZ narrows the run to targets whose package or name contains it,
# e.g. `make fuzz FUZZTIME=2m FUZZ=seal`. Failing inputs land in testdata/fuzz/<Target>/.
FUZZTIME ?= 20s
FUZZ     ?=

fuzz:
	scripts/fuzz.sh "$(FUZZTIME)" "$(FUZZ)"

clean:
	rm -rf bin
	find $(DIST) -mindepth 1 ! -name .gitkeep -delete

FORCE:
