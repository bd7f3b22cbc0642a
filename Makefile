# optout: two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# bytecode for the package's own modules, as an installed copy has (an editable install has
# none, and PYTHONDONTWRITEBYTECODE would stop Python writing it): each `optout` process would
# otherwise compile them again. Up-to-date files are skipped.
.PHONY: bytecode
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 src/optout

demo: $(STAMP) bytecode
	$(BIN)/python -m optout.demo

test: $(STAMP) chromium bytecode
	$(BIN)/python -m pytest -q tests

# the web app's browser tests drive Debian's chromium (Playwright cannot download a browser here)
.PHONY: chromium
chromium:
	command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

bench: $(STAMP) bytecode
	$(BIN)/python -m bench $(ARGS)

.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict -d site

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
