# Set-up and the two README commands. Needs only python3 (with venv) and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= runs/synthetic/heatmap

.PHONY: install demo test test-fast lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The main job on the embedded synthetic default: train, evaluate, print the metric table (again from scratch on a
# second run: --overwrite replaces the demo's earlier outputs).
demo: install
	$(PY) train.py --config configs/data/synthetic.yaml --config configs/heads/heatmap.yaml --trainer.default_root_dir $(RUN) --overwrite
	$(PY) evaluate.py --config $(RUN)/config.yaml --ckpt_path $(RUN)/checkpoints/best.ckpt --json $(RUN)/metrics.json --overwrite

# The test suite (wandb offline: nothing waits on a login), one worker per core; a test module stays on one worker,
# so its trained fixtures are built once.
test: install
	WANDB_MODE=offline $(PY) -m pytest -q -n auto --dist loadfile

# The fast tier for the edit-test loop: everything but the end-to-end runs of the entry points.
test-fast: install
	WANDB_MODE=offline $(PY) -m pytest -q -n auto --dist loadfile -m "not slow"

# ruff, and the import layering of ../shared/DESIGN.md (the contract is in pyproject.toml; CI runs both).
lint: install
	$(VENV)/bin/ruff check kpreg tests benchmarks train.py evaluate.py study.py predict.py export.py
	$(VENV)/bin/lint-imports

clean:
	rm -rf runs wandb lightning_logs .pytest_cache
