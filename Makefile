# Every target sets up what it needs on a fresh machine: .venv, the package, the JS bundle.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH := torch==2.13.0
CHROMIUM := /usr/bin/chromium
PORT ?= 8888
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: install build contract demo test bench chromium clean vsix

$(VENV)/.installed: pyproject.toml onthefly_nb/static/widget.js
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[dev]"
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# every source of the bundles, in js/ and its subfolders (not the unit tests)
JS_SOURCES := $(shell find js widgets/src -name '*.ts' -not -path 'js/test/*') js/widget.css js/build.mjs widgets/build.mjs

onthefly_nb/static/widget.js: node_modules/.package-lock.json $(JS_SOURCES)
	npm run build

build: onthefly_nb/static/widget.js

# the front end's types, generated from the dashboard contract (a test fails while they differ)
contract: install
	$(PY) -c "from onthefly_nb.dashboard.contract import typescript; print(typescript(), end='')" > js/model/contract.ts

install: $(VENV)/.installed

chromium:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

demo: install
	@TOKEN=$$($(PY) -c "import secrets; print(secrets.token_hex(16))"); \
	echo "JupyterLab: http://127.0.0.1:$(PORT)/lab/tree/quickstart.ipynb?token=$$TOKEN"; \
	$(PY) -m jupyter lab --no-browser --ip=127.0.0.1 --port=$(PORT) --ServerApp.port_retries=0 \
	  --IdentityProvider.token=$$TOKEN --ServerApp.root_dir=notebooks $(ROOT_FLAG)

test: install chromium
	$(VENV)/bin/ruff check onthefly_nb onthefly tests bench
	npm run typecheck
	npm test
	$(PY) -m pytest -q

vsix: install  # widgets/onthefly-dashboard-<version>.vsix: code --install-extension it
	npm run vsix

bench: install chromium
	$(PY) bench/overhead.py
	$(PY) bench/payload.py
	$(PY) bench/dashboard.py
	$(PY) bench/export.py

clean:
	rm -rf $(VENV) node_modules onthefly_nb/static
