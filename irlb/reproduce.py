"""`irlb reproduce`: every experiment behind the paper, then every figure, with a final table."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from irlb.config import reproduce_configs
from irlb.registry import EXPERIMENTS, selected_experiments


def reproduce(scale: str, results_dir: Path, figures_dir: Path, only: list[str] | None = None,
              seed: int = 0, config_file: str | Path | None = None,
              overrides: list[str] | None = None, extended: bool = False) -> list[tuple[str, float, list[Path]]]:
    """``config_file`` (``{experiment: {settings}}``) and ``overrides`` (``experiment.key=value``) change the
    scale's settings; every config is checked before the first experiment starts. Without ``only``, every
    experiment except those of :data:`irlb.registry.EXTENDED` runs (all of them with ``extended``)."""
    selected = selected_experiments(only, extended)
    configs = reproduce_configs(selected, scale, config_file, overrides or [])
    produced = []
    for index, name in enumerate(selected, 1):
        experiment_module, figure_module = EXPERIMENTS[name]
        print(f"[{index}/{len(selected)}] {name} ({scale})", flush=True)
        started = time.perf_counter()
        typed = {} if configs[name] is None else {"config": configs[name]}
        importlib.import_module(experiment_module).run(scale, results_dir, seed=seed, **typed)
        files = importlib.import_module(figure_module).plot(results_dir, figures_dir)
        produced.append((name, time.perf_counter() - started, files))
    print("\nexperiment                 seconds  files")
    for name, seconds, files in produced:
        print(f"{name:26s} {seconds:7.1f}  {', '.join(str(f) for f in files)}")
    return produced
