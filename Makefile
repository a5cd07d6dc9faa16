# rendergate: validate GPU render images. `make validate` is the main job, `make test` the
# suite's own tests; both set up everything they need on a fresh Debian machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# No registry here: images build FROM a local Debian base made by debootstrap. On a GPU host that
# can pull, use the Dockerfiles' NVIDIA CUDA default: make validate BASE_IMAGE=
BASE_IMAGE ?= rendergate/debian:bookworm
# Extra CA trusted inside builds (TLS-intercepting proxies). Set EXTRA_CA= to build without one.
EXTRA_CA ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
# CPU-only machines: ALLOW_NO_GPU=1 turns GPU checks into "not validated" skips instead of failures.
ALLOW_NO_GPU ?=
# More pytest arguments, e.g. PYTEST_ARGS="--variant manim".
PYTEST_ARGS ?=
export BASE_IMAGE
export RENDERGATE_EXTRA_CA := $(EXTRA_CA)

SUITE_FLAGS = -n auto --html=reports/report.html --self-contained-html --junitxml=reports/junit.xml \
	--results-json=reports/results.json $(if $(ALLOW_NO_GPU),--allow-no-gpu) \
	$(if $(BASE_IMAGE),--base-image=$(BASE_IMAGE)) $(PYTEST_ARGS)

.PHONY: setup engine images references validate test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

setup: $(VENV)/.installed

engine:
	@scripts/ensure-docker

images: setup engine
	@case "$(BASE_IMAGE)" in rendergate/*) scripts/make-base-image $(BASE_IMAGE);; esac
	$(PY) -m rendergate build

# Reference images of the workloads (fixtures/references/): review them before committing.
references: images
	$(PY) -m rendergate references

# Main job: build every variant, validate each, write reports/report.html. Without a Docker
# engine, say so and validate the host itself.
validate: setup
	@mkdir -p reports
	@if scripts/ensure-docker; then \
	  $(MAKE) --no-print-directory images && $(PY) -m pytest suites $(SUITE_FLAGS); \
	else \
	  echo "no Docker engine: validating only the host variant on this machine"; \
	  $(PY) -m pytest suites --variant host --target local $(SUITE_FLAGS); \
	fi

# The suite's own tests: everything in parallel, then the timing tests alone (serial phase).
test: images
	$(PY) -m pytest tests -n auto -m "not serial"
	$(PY) -m pytest tests -m serial

clean:
	rm -rf reports/report.html reports/junit.xml reports/results.json reports/artifacts reports/logs
