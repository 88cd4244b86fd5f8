# Rubble: two environments (Blender side, backend side), a demo and the tests.
#   make demo   set up everything and run the whole pipeline headless into build/demo/
#   make test   run the add-on tests (real bpy) and the backend tests (real diffusers)
PYTHON ?= python3.11
BLENDER_VENV := .venv-blender
BLENDER42_VENV := .venv-blender-4.2
INFERENCE_VENV := .venv-inference
FARM_VENV := .venv-farm
BPY := $(BLENDER_VENV)/bin/python
BPY42 := $(BLENDER42_VENV)/bin/python
IPY := $(INFERENCE_VENV)/bin/python
FPY := $(FARM_VENV)/bin/python
DEMO_DIR ?= build/demo
TINY_MODEL ?= build/tiny-model
BLENDER_EXT = $(firstword $(wildcard $(BLENDER_VENV)/lib/python3.*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py))

.PHONY: all venvs venv-blender venv-blender-4.2 venv-inference venv-farm demo test test-addon test-addon-4.2 test-presets test-farm test-inference extension bench clean

all: venvs

venvs: venv-blender venv-inference
venv-blender: $(BLENDER_VENV)/.installed
venv-blender-4.2: $(BLENDER42_VENV)/.installed
venv-inference: $(INFERENCE_VENV)/.installed
venv-farm: $(FARM_VENV)/.installed

# A stamp per environment: rebuilt only when its requirement files change.
$(BLENDER_VENV)/.installed: requirements/blender.txt requirements/blender-tools.txt requirements/blender.lock.txt
	$(PYTHON) -m venv $(BLENDER_VENV)
	$(BPY) -m pip install --quiet --disable-pip-version-check -r requirements/blender.txt -c requirements/blender.lock.txt
	touch $@

$(BLENDER42_VENV)/.installed: requirements/blender-4.2.txt requirements/blender-tools.txt requirements/blender.lock.txt
	$(PYTHON) -m venv $(BLENDER42_VENV)
	$(BPY42) -m pip install --quiet --disable-pip-version-check -r requirements/blender-4.2.txt -c requirements/blender.lock.txt
	touch $@

$(INFERENCE_VENV)/.installed: requirements/inference.txt requirements/inference.lock.txt
	$(PYTHON) -m venv $(INFERENCE_VENV)
	$(IPY) -m pip install --quiet --disable-pip-version-check -r requirements/inference.txt -c requirements/inference.lock.txt
	touch $@

# Farm tools only (openjd, Blender Asset Tracer): small, a few seconds to install.
$(FARM_VENV)/.installed: requirements/farm.txt requirements/farm.lock.txt
	$(PYTHON) -m venv $(FARM_VENV)
	$(FPY) -m pip install --quiet --disable-pip-version-check -r requirements/farm.txt -c requirements/farm.lock.txt
	touch $@

demo: venvs
	$(BPY) -m addon.cli shot $(DEMO_DIR) --preset presets/default.toml \
	    --backend-python $(IPY) --tiny-model $(TINY_MODEL)

# The add-on tests run on Blender 5.0 and on 4.2 LTS, the versions the manifest claims;
# every shipped preset is simulated full size once, on 5.0 (about 4 minutes); a small shot
# runs as a farm job through `openjd run` once, on 5.0 (test-farm).
# The backend suite runs alone (torch uses every core); the four Blender suites are mostly
# single-threaded, so they run two at a time, the longest first (CI figures in the README).
test: test-inference
	$(MAKE) --no-print-directory -j2 --output-sync=target test-presets test-addon test-addon-4.2 test-farm

test-addon: venv-blender venv-inference venv-farm
	RUBBLE_BACKEND_PYTHON=$(abspath $(IPY)) $(BPY) -m pytest tests/addon -q

test-addon-4.2: venv-blender-4.2 venv-inference venv-farm
	RUBBLE_BACKEND_PYTHON=$(abspath $(IPY)) $(BPY42) -m pytest tests/addon -q

test-presets: venv-blender
	RUBBLE_PRESET_TESTS=1 $(BPY) -m pytest tests/addon/test_destruction_presets.py -q

test-farm: venv-blender venv-inference venv-farm
	RUBBLE_FARM_TESTS=1 RUBBLE_BACKEND_PYTHON=$(abspath $(IPY)) $(BPY) -m pytest tests/addon/test_farm_job.py -q

test-inference: venv-inference
	$(IPY) -m pytest tests/inference -q

# The installable extension zip, built by Blender's own tool (shipped inside the bpy wheel).
extension: venv-blender
	mkdir -p build/dist
	$(BPY) $(BLENDER_EXT) build --source-dir . --output-dir build/dist

bench: venvs
	$(BPY) bench/bench_stages.py
	$(BPY) bench/bench_destruction.py
	$(IPY) bench/inference_cpu.py
	$(IPY) bench/control_stats.py
	$(IPY) bench/noise_warp.py
	$(BPY) bench/bench_passes.py
	$(IPY) bench/bench_control.py

clean:
	rm -rf build .pytest_cache
