# The README's two commands:  `make demo`  and  `make test`.
# Both create .venv, install system packages when run as root (EGL/Mesa for the headless
# simulator) or print what to install otherwise, then run.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# ROS 2 Jazzy rclpy + message wheels from PyPI: a TEST dependency only (robots use their ROS).
ROS_TEST_WHEELS := "ros-rclpy[fastrtps]==7.1.6" ros-std-msgs==5.3.6 ros-sensor-msgs==5.3.6 \
	ros-geometry-msgs==5.3.6 ros-diagnostic-msgs==5.3.6 ros-nav-msgs==5.3.6
SYSTEM_PACKAGES := python3-venv libegl1 libgl1 libgl1-mesa-dri libglu1-mesa
export PYGLET_HEADLESS := 1
PY310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) \
	$(shell command -v python3.10 2>/dev/null))

.PHONY: demo test system venv venv-test lint bench clean help

help:
	@echo "make demo   - set up and run the closed-loop real-to-sim demo on the shipped weights"
	@echo "make test   - set up and run the whole test suite"
	@echo "make lint   - ruff + flake8 + pydocstyle"
	@echo "make bench  - engine, simulator and node benchmarks"

demo: system venv
	$(BIN)/vr-goggles demo --out out/demo

test: system venv-test
	$(BIN)/python -m pytest -ra --durations=15 test
	@if [ -n "$(PY310)" ]; then $(MAKE) --no-print-directory test-py310; \
	else echo "python3.10 not found: skipping the ROS-free core tests under 3.10"; fi

# The ROS-free core (codec, preprocessing, actions, frame history) must also run on Humble's
# Python 3.10.
test-py310:
	@[ -x $(VENV)-py310/bin/python ] || $(PY310) -m venv $(VENV)-py310
	$(VENV)-py310/bin/python -m pip install -q numpy opencv-python-headless hypothesis pytest \
		pytest-timeout safetensors rosbags
	PYTHONPATH=$(CURDIR) $(VENV)-py310/bin/python -m pytest -q -p no:cacheprovider \
		test/test_ros_image.py test/test_preprocess.py test/test_actions.py \
		test/test_frame_stack.py test/test_turn_memory.py test/test_floor_prior.py

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing system packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
		echo "missing system packages:$$missing"; \
		echo "install them with: sudo apt-get install -y$$missing"; exit 1; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.stamp-runtime: $(PY) setup.py
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train]"
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp-runtime
	$(PY) -m pip install -q -e ".[train,test]" $(ROS_TEST_WHEELS)
	touch $@

venv: $(VENV)/.stamp-runtime
venv-test: $(VENV)/.stamp-test

lint: venv-test
	$(BIN)/ruff check .
	$(BIN)/flake8 vr_goggles sim_training launch test setup.py
	$(BIN)/pydocstyle vr_goggles sim_training launch

bench: venv
	$(BIN)/vr-goggles bench --json out/bench_engines.json
	$(PY) -m sim_training.bench_env
	$(PY) -m vr_goggles.bench.node
	$(PY) -m vr_goggles.bench.startup --json out/bench_startup.json

clean:
	rm -rf out build install log .pytest_cache
