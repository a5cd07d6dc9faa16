# rendergate: validate GPU render images. `make validate` is the main job, `make test` the
# suite's own tests; both set up everything they need on a fresh Debian machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# No registry here: images build FROM a local Debian base made by debootstrap. On a GPU host that
# can pull, use the Dockerfiles' NVIDIA CUDA default: make validate BASE_IMAGE=
LOCAL_BASE := rendergate/debian:bookworm
BASE_IMAGE ?= $(LOCAL_BASE)
# A Modal matrix (GPUS) cannot reach the local base: its builds keep the Dockerfiles' CUDA default.
BUILD_BASE = $(if $(GPUS),$(filter-out $(LOCAL_BASE),$(BASE_IMAGE)),$(BASE_IMAGE))
# Extra CA trusted inside builds (TLS-intercepting proxies). Set EXTRA_CA= to build without one.
EXTRA_CA ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
# CPU-only machines: ALLOW_NO_GPU=1 turns GPU checks into "not validated" skips instead of failures.
ALLOW_NO_GPU ?=
# More pytest arguments, e.g. PYTEST_ARGS="--variant manim".
PYTEST_ARGS ?=
# The gate and promotion: make gate VARIANT=manim [IMAGE=ref | GPUS=T4,L4] [SIGNING_KEY=key.pem];
# make promote VARIANT=manim IMAGE=ref TO=tag [TRUSTED_KEY=pub.pem]; make verify IMAGE=registry/ref KEY=pub.pem;
# make diff VARIANT=manim: what changed since the variant's promoted image (packages, config, layers, outcomes, figures)
VARIANT ?=
GPUS ?=
IMAGE ?= $(if $(GPUS),,$(if $(wildcard $(IMAGES_DIR)/$(VARIANT)/Dockerfile),rendergate/$(VARIANT):dev))
TO ?=
# Attestations: the private key a passing gate signs with (or $RENDERGATE_SIGNING_KEY, its PEM text),
# the public key promotion trusts, the key `make verify` checks with.
SIGNING_KEY ?=
TRUSTED_KEY ?=
KEY ?=
IMAGES_DIR ?= images
# Folders of your own checks (README "Adding a check"), for the suites and the rendergate command alike
# (validate, gate, promote; not mutate).
CHECKS ?=
# Where the report, verdicts/, artifacts/ and logs/ go.
REPORTS_DIR ?= reports
# The last promoted verdict of each variant; workload figures are compared with it.
PROMOTED ?= $(REPORTS_DIR)/promoted
# Reports folders (or verdict files) of several hosts, for make merge.
REPORTS ?= $(REPORTS_DIR)
export BASE_IMAGE
export RENDERGATE_EXTRA_CA := $(EXTRA_CA)

CHECKS_FLAGS = $(foreach folder,$(CHECKS),--checks=$(folder))
# pytest plugins this venv has for rendergate's own tests (hypothesis) and Modal (anyio's): the suites use
# none of them, and every xdist worker would load them (hypothesis alone, about 0.7 s of CPU a process).
UNUSED_PLUGINS = -p no:hypothesispytest -p no:anyio
RG = $(PY) -m rendergate --images-dir=$(IMAGES_DIR) --reports-dir=$(REPORTS_DIR) $(CHECKS_FLAGS)
SUITE_FLAGS = -n auto $(UNUSED_PLUGINS) --images-dir=$(IMAGES_DIR) --reports-dir=$(REPORTS_DIR) $(CHECKS_FLAGS) --html=$(REPORTS_DIR)/report.html \
	--self-contained-html --junitxml=$(REPORTS_DIR)/junit.xml --promoted=$(PROMOTED) $(if $(ALLOW_NO_GPU),--allow-no-gpu) \
	$(if $(BUILD_BASE),--base-image=$(BUILD_BASE)) $(PYTEST_ARGS)

.PHONY: setup engine base images references validate gate diff promote verify merge mutate bench test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,modal]'
	touch $@

setup: $(VENV)/.installed

engine:
	@scripts/ensure-docker

base: engine
	@case "$(BASE_IMAGE)" in rendergate/*) scripts/make-base-image $(BASE_IMAGE);; esac

images: setup base
	$(RG) build

# Reference images of the workloads (fixtures/references/): review them before committing.
references: images
	$(PY) -m rendergate references

# Main job: build every variant (the suites build them, showing each step), validate each, write
# reports/report.html. Without a Docker engine, say so and validate the host itself.
validate: setup
	@mkdir -p $(REPORTS_DIR)
	@if scripts/ensure-docker; then \
	  $(MAKE) --no-print-directory base && $(PY) -m pytest suites $(SUITE_FLAGS); \
	else \
	  echo "no Docker engine: validating only the host variant on this machine"; \
	  $(PY) -m pytest suites --variant host $(SUITE_FLAGS); \
	fi

# The promotion gate for one image: build or pull it, run every suite on it, and pass only if
# every declared requirement passed on this complete run (--allow-no-gpu skips do not count).
# With GPUS=T4,L4,... the variant runs on that GPU matrix on Modal and every cell must pass.
gate: setup
	@test -n "$(VARIANT)" || { echo "usage: make gate VARIANT=name [IMAGE=ref | GPUS=T4,L4,...] [ALLOW_NO_GPU=1] [CHECKS=dir]"; exit 2; }
	@test -z "$(IMAGE)" -o -z "$(GPUS)" || { echo "IMAGE and GPUS exclude each other: Modal builds the variant's Dockerfile"; exit 2; }
	@mkdir -p $(REPORTS_DIR)/verdicts && rm -f $(REPORTS_DIR)/verdicts/$(VARIANT).json $(REPORTS_DIR)/verdicts/$(VARIANT)@*.json $(REPORTS_DIR)/attestations/$(VARIANT).intoto.json
	@if [ -n "$(IMAGE)" ]; then $(MAKE) --no-print-directory base && $(RG) obtain $(VARIANT) $(IMAGE); fi
	-$(PY) -m pytest suites --variant=$(VARIANT) $(if $(IMAGE),--image=$(IMAGE)) $(if $(GPUS),--target=modal --gpu=$(GPUS)) $(SUITE_FLAGS)
	$(RG) gate $(VARIANT) $(if $(IMAGE),--image=$(IMAGE)) $(if $(GPUS),--gpu=$(GPUS)) $(if $(SIGNING_KEY),--sign-key=$(SIGNING_KEY))

# Tag IMAGE as TO (pushed when TO names a registry) only on a complete, passing, fresh verdict about it.
diff: setup
	@test -n "$(VARIANT)" || { echo "usage: make diff VARIANT=name"; exit 2; }
	$(RG) diff $(VARIANT) --promoted-dir=$(PROMOTED)

promote: setup
	@test -n "$(VARIANT)" -a -n "$(IMAGE)" -a -n "$(TO)" || { echo "usage: make promote VARIANT=name IMAGE=ref TO=tag"; exit 2; }
	$(RG) promote $(VARIANT) --image=$(IMAGE) --to=$(TO) --promoted=$(PROMOTED) $(if $(TRUSTED_KEY),--trusted-key=$(TRUSTED_KEY)) $(if $(SIGNING_KEY),--sign-key=$(SIGNING_KEY))

# The signed verdict next to IMAGE in its registry: it verifies with KEY, is about IMAGE, and passes.
verify: setup
	@test -n "$(IMAGE)" -a -n "$(KEY)" || { echo "usage: make verify IMAGE=registry/path:tag KEY=pub.pem"; exit 2; }
	$(RG) verify $(IMAGE) --key=$(KEY)

# One matrix report (variant x GPU type x check) from the reports of several hosts.
merge: setup
	$(RG) merge $(REPORTS) --out=$(REPORTS_DIR)/merged.html --promoted-dir=$(PROMOTED)

# Mutation testing of one variant's image (a benchmark of the suites, not a test): single-defect copies
# of it, from the files its checks use, each validated by the whole suite; scores and each mutant in
# reports/mutate/VARIANT.html and .json. N mutants (default 40), SEED picks which.
N ?=
SEED ?=
mutate: setup base
	@test -n "$(VARIANT)" || { echo "usage: make mutate VARIANT=name [N=40] [SEED=1] [ALLOW_NO_GPU=1]"; exit 2; }
	$(RG) mutate $(VARIANT) $(if $(N),--n=$(N)) $(if $(SEED),--seed=$(SEED)) $(if $(ALLOW_NO_GPU),--allow-no-gpu)

# Benchmarks (benchmarks/bench.py), run alone on the machine: the check tier under -n auto and -n 0, collection
# per process, each check beside the raw commands it runs, the smoke workloads, make validate warm; JSON and a
# table in $(REPORTS_DIR)/bench. BASELINE=rev runs that commit side by side (else the figures recorded in
# benchmarks/recorded.json are beside); RECORD=1 records this run's; QUICK=1 runs every part once, small;
# FRESH=1 also runs the main job as on a fresh machine (minutes: every image rebuilt from nothing, then put back);
# REMOTE=1 measures only the check tier through an engine over ssh beside the local one (README "Remote GPU hosts").
BASELINE ?=
RECORD ?=
QUICK ?=
FRESH ?=
REMOTE ?=
bench: images
	$(PY) benchmarks/bench.py --out=$(REPORTS_DIR)/bench $(if $(BASELINE),--baseline=$(BASELINE)) $(if $(RECORD),--record) $(if $(QUICK),--quick) $(if $(FRESH),--fresh) $(if $(REMOTE),--only-remote)

# The suite's own tests: everything in parallel, then the timing tests alone (serial phase).
# Their tools: Debian's chromium + chromedriver (the report's browser test), docker-registry (promotion),
# and gVisor registered with the engine (the platform tests: Modal runs containers under gVisor).
# Each phase says how long it took (scripts/timed); the slowest tests are listed after each pytest run.
test:
	@scripts/timed setup $(MAKE) --no-print-directory setup
	@scripts/timed images $(MAKE) --no-print-directory images
	@scripts/timed tools sh -c 'scripts/ensure-test-tools && { scripts/ensure-gvisor || true; }'
	@scripts/timed parallel $(PY) -m pytest tests -n auto -m "not serial" --durations=15
	@scripts/timed serial $(PY) -m pytest tests -m serial --durations=5

clean:
	cd $(REPORTS_DIR) && rm -rf report.html junit.xml verdicts artifacts logs merged.html merged.json
