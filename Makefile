# Ordo: `make run-engine` and `make test` do all set-up themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Caches live outside the checkout, so a fresh clone reuses them.
export ORDO_CACHE ?= $(HOME)/.cache/ordo
export CARGO_TARGET_DIR ?= $(ORDO_CACHE)/target
# No incremental artefacts in the shared target dir: each clone's path would add gigabytes
# that no later build reads (and a clean build is what CI does anyway).
export CARGO_INCREMENTAL ?= 0
# Local endpoints and credentials, unless the environment already says otherwise.
export AWS_ACCESS_KEY_ID ?= test
export AWS_SECRET_ACCESS_KEY ?= test
export AWS_REGION ?= us-east-1
export AWS_DEFAULT_REGION ?= $(AWS_REGION)
export AWS_ENDPOINT_URL ?= http://127.0.0.1:4566
export KAFKA_BROKERS ?= 127.0.0.1:9092
export PATH := $(ORDO_CACHE)/venv/bin:$(PATH)

PLUGINS := patient-profile-lww patient-profile-field-merge hostile backdoor legacy-lww
PLUGIN_DIR := plugins/build
# Plugins in Python: each folder plugins/<name>-py/ holds app.py (see plugins/README.md).
PY_PLUGINS := patient-profile-lww
PY_TOOLS := $(ORDO_CACHE)/py-plugins
# Plugins in JavaScript: each folder plugins/<name>-js/ holds app.js (see plugins/README.md).
JS_PLUGINS := patient-profile-lww
JS_TOOLS := $(ORDO_CACHE)/js-plugins
# The consume benchmark's Python peer (bench/peers/quix_app.py): Quix Streams and boto3, pinned
# by bench/peers/requirements.txt.
QUIX_TOOLS := $(ORDO_CACHE)/quix
# promtool, from Debian's prometheus package (unpacked, no root): checks the alert rules and
# the dashboard's queries.
PROM_TOOLS := $(ORDO_CACHE)/promtool
# Drives Chromium for the operator page's test (playwright-core, pinned by engine/tests/browser/package-lock.json).
BROWSER_TOOLS := $(ORDO_CACHE)/browser-tools
CHROMIUM ?= /usr/bin/chromium

MINUTES ?= 30

.PHONY: docs soak py-tools js-tools quix-tools prom-tools browser-tools ui-screenshot bench chaos help local-dev-stack stop-dev-stack dev-stack-status wasm-target plugins build run-engine test lint fmt clean-plugins

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

local-dev-stack: ## Start Kafka and DynamoDB locally (Docker when it answers, else native), installing once.
	@devstack/stack.sh start

stop-dev-stack: ## Stop the local stack.
	@devstack/stack.sh stop

dev-stack-status: ## Say whether Kafka and DynamoDB answer.
	@devstack/stack.sh status

wasm-target: ## Add the wasm32-wasip2 target (plugins) and wasm32-unknown-unknown (the Extism benchmark plugin) when missing.
	@for t in wasm32-wasip2 wasm32-unknown-unknown; do rustup target list --installed | grep -qx $$t || rustup target add $$t; done

plugins: wasm-target py-tools js-tools ## Build every plugin (Rust, Python, JavaScript) into plugins/build/; a failed build fails.
	@mkdir -p $(PLUGIN_DIR)
	cargo build --profile plugin --target wasm32-wasip2 $(addprefix -p ,$(PLUGINS))
	cargo build --profile plugin --target wasm32-unknown-unknown -p extism-lww
	@for p in $(PLUGINS); do cp "$(CARGO_TARGET_DIR)/wasm32-wasip2/plugin/$${p//-/_}.wasm" $(PLUGIN_DIR)/; done
	@cp "$(CARGO_TARGET_DIR)/wasm32-unknown-unknown/plugin/extism_lww.wasm" $(PLUGIN_DIR)/
	@for p in $(PY_PLUGINS); do \
	  echo "componentize-py: plugins/$$p-py -> $(PLUGIN_DIR)/$${p//-/_}_py.wasm"; \
	  "$(PY_TOOLS)/bin/componentize-py" -d plugins/wit -w policy-plugin componentize app \
	    -p "plugins/$$p-py" -p plugins/sdk-py -o "$(PLUGIN_DIR)/$${p//-/_}_py.wasm" >/dev/null || exit 1; \
	done
	@# componentize-js resolves imports inside the working directory, so app.js may import
	@# ../sdk-js/ordo_policy.js. No stdio, randomness, clocks or HTTP are compiled in.
	@for p in $(JS_PLUGINS); do \
	  echo "componentize-js: plugins/$$p-js -> $(PLUGIN_DIR)/$${p//-/_}_js.wasm"; \
	  "$(JS_TOOLS)/node_modules/.bin/componentize-js" "plugins/$$p-js/app.js" -w plugins/wit -n policy-plugin \
	    -d stdio random clocks http fetch-event -o "$(PLUGIN_DIR)/$${p//-/_}_js.wasm" || exit 1; \
	done
	@ls -l $(PLUGIN_DIR)

py-tools: ## Install the Python plugin toolchain (componentize-py, pinned) into $(ORDO_CACHE)/py-plugins, once.
	@if ! cmp -s plugins/sdk-py/requirements.txt "$(PY_TOOLS)/.requirements"; then \
	  echo "installing componentize-py into $(PY_TOOLS) (once)"; \
	  python3 -m venv "$(PY_TOOLS)" || { echo "python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }; \
	  "$(PY_TOOLS)/bin/pip" install --quiet --disable-pip-version-check -r plugins/sdk-py/requirements.txt && \
	  cp plugins/sdk-py/requirements.txt "$(PY_TOOLS)/.requirements"; \
	fi

js-tools: ## Install the JavaScript plugin toolchain (componentize-js, pinned by plugins/sdk-js/package-lock.json) into $(ORDO_CACHE)/js-plugins, once.
	@if ! cmp -s plugins/sdk-js/package-lock.json "$(JS_TOOLS)/package-lock.json" || [ ! -x "$(JS_TOOLS)/node_modules/.bin/componentize-js" ]; then \
	  echo "installing componentize-js into $(JS_TOOLS) (once)"; \
	  command -v npm >/dev/null || { echo "npm is needed to build JavaScript plugins (Debian: apt-get install npm; or Node.js 20+)" >&2; exit 1; }; \
	  mkdir -p "$(JS_TOOLS)" && cp plugins/sdk-js/package.json plugins/sdk-js/package-lock.json "$(JS_TOOLS)/" && \
	  npm ci --prefix "$(JS_TOOLS)" --no-audit --no-fund --loglevel=error; \
	fi

quix-tools: ## Install the consume benchmark's Python peer's packages (Quix Streams, boto3; pinned) into $(ORDO_CACHE)/quix, once (about 20 s).
	@if ! cmp -s bench/peers/requirements.txt "$(QUIX_TOOLS)/.requirements"; then \
	  echo "installing Quix Streams into $(QUIX_TOOLS) (once)"; \
	  python3 -m venv "$(QUIX_TOOLS)" || { echo "python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }; \
	  "$(QUIX_TOOLS)/bin/pip" install --quiet --disable-pip-version-check -r bench/peers/requirements.txt && \
	  cp bench/peers/requirements.txt "$(QUIX_TOOLS)/.requirements"; \
	fi

prom-tools: ## Unpack promtool from Debian's prometheus package into $(ORDO_CACHE)/promtool, once (apt-get download; no root).
	@if [ ! -x "$(PROM_TOOLS)/promtool" ]; then \
	  echo "installing promtool into $(PROM_TOOLS) (once)"; \
	  tmp=$$(mktemp -d) && \
	  (cd "$$tmp" && apt-get download prometheus >/dev/null 2>&1) || { echo "apt-get download prometheus failed (needs Debian's package index: apt-get update)" >&2; rm -rf "$$tmp"; exit 1; }; \
	  dpkg-deb -x "$$tmp"/prometheus_*.deb "$$tmp/x" && mkdir -p "$(PROM_TOOLS)" && \
	  cp "$$tmp/x/usr/bin/promtool" "$(PROM_TOOLS)/promtool" && rm -rf "$$tmp" && \
	  "$(PROM_TOOLS)/promtool" --version | head -1; \
	fi

browser-tools: ## Install Debian's Chromium (when missing; needs root or sudo) and playwright-core into $(BROWSER_TOOLS), once.
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "installing Debian's chromium (once)"; \
	  if [ "$$(id -u)" = 0 ]; then apt=(apt-get); else apt=(sudo apt-get); fi; \
	  "$${apt[@]}" install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	    { "$${apt[@]}" update >/dev/null 2>&1 && "$${apt[@]}" install -y --no-install-recommends chromium >/dev/null; } || \
	    { echo "cannot install chromium: apt-get install chromium (or set CHROMIUM=/path/to/chromium)" >&2; exit 1; }; \
	fi
	@if ! cmp -s engine/tests/browser/package-lock.json "$(BROWSER_TOOLS)/package-lock.json" || [ ! -d "$(BROWSER_TOOLS)/node_modules/playwright-core" ]; then \
	  echo "installing playwright-core into $(BROWSER_TOOLS) (once)"; \
	  command -v npm >/dev/null || { echo "npm is needed to drive the browser tests (Debian: apt-get install npm; or Node.js 20+)" >&2; exit 1; }; \
	  mkdir -p "$(BROWSER_TOOLS)" && cp engine/tests/browser/package.json engine/tests/browser/package-lock.json "$(BROWSER_TOOLS)/" && \
	  npm ci --prefix "$(BROWSER_TOOLS)" --no-audit --no-fund --loglevel=error; \
	fi

ui-screenshot: local-dev-stack plugins browser-tools ## Retake docs/operator-page.png: the operator page in headless Chromium while events flow.
	ORDO_UI_SCREENSHOT=$(CURDIR)/docs/operator-page.png ORDO_BROWSER_TOOLS=$(BROWSER_TOOLS) ORDO_CHROMIUM=$(CHROMIUM) \
	  cargo test -p ordo --test operator_page -- the_page_renders --nocapture

build: plugins ## Build the engine and the plugins.
	cargo build -p ordo

run-engine: local-dev-stack build ## Start the stack if needed, build, and run the engine in the foreground.
	cargo run -p ordo -- --config pipelines.toml

test: local-dev-stack plugins prom-tools browser-tools quix-tools ## Start the stack if needed, build, and run every test (the fault suite at its short scale, then each benchmark once).
	@# The Kubernetes manifests against the Kubernetes schemas and the engine's own constants.
	deploy/check.sh
	@# The alert rules (and their unit tests) and the dashboard's queries, with promtool.
	deploy/check_observability.sh
	@# The Python SDK and each Python plugin's rule, under a plain CPython.
	python3 -m unittest discover -q -s plugins/sdk-py
	@for p in $(PY_PLUGINS); do PYTHONPATH=plugins/sdk-py python3 -m unittest discover -q -s "plugins/$$p-py" || exit 1; done
	@# The JavaScript SDK and each JavaScript plugin's rule, under a plain Node.
	node --test --test-reporter=dot plugins/sdk-js/ $(addprefix plugins/,$(addsuffix -js/,$(JS_PLUGINS)))
	cargo test --workspace --no-fail-fast -- --skip chaos_ --skip testing::sim::
	@# The simulation of the apply path: 10,000 seeds (ORDO_SIM_SEEDS), and three past mistakes each found.
	cargo test -p ordo --lib testing::sim:: -- --nocapture --test-threads=1
	@# The same package set as above, so nothing is built again.
	cargo test --workspace --test faults -- --nocapture --test-threads=1
	@echo "benchmarks, each once at a small scale (proves they run; no timing claims; the Extism comparison is left to make bench):"
	cargo test --workspace --test smoke -- --ignored --test-threads=1

chaos: local-dev-stack plugins ## The fault suite at five times the events (ORDO_CHAOS_SCALE), one line per scenario.
	ORDO_CHAOS_SCALE=$${ORDO_CHAOS_SCALE:-5} cargo test --workspace --test faults -- --nocapture --test-threads=1

soak: local-dev-stack plugins ## Two engines, a steady stream and a fault every 5-30 s for MINUTES (30), then the independent checker; a table per fault kind (not in make test).
	ORDO_SOAK_MINUTES=$(MINUTES) cargo test -p ordo --test soak -- --ignored --nocapture

lint: ## rustfmt, clippy with warnings as errors, and no dependency cycle among engine/src's modules.
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	python3 .ci/modgraph.py engine/src

docs: ## Regenerate docs/config.md from the code (a test fails when it is out of date).
	cargo run -q -p ordo -- config docs > docs/config.md

fmt: ## Format the code.
	cargo fmt --all

bench: local-dev-stack plugins quix-tools ## Every benchmark against its baseline, measured in one run; writes BENCHMARKS.md (under an hour on a warm cache: the latency sweep takes a minute per rate).
	cargo build --release -p ordo --bins
	cargo build --release -p ordo-bench --features extism --bins
	bench/bench.sh BENCHMARKS.md
