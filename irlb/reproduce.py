"""`irlb reproduce`: every experiment behind the paper, then every figure, with a final table."""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

from irl_bilevel.runs import check_creatable
from irl_bilevel.validation import ValidationError
from irlb.config import reproduce_configs
from irlb.registry import EXPERIMENTS, FIGURE_SOFTWARE, selected_experiments


def is_result_file(path: Path, name: str) -> bool:
    """Whether ``path`` is a result file an experiment of :data:`~irlb.registry.EXPERIMENTS` wrote: a JSON object
    with its ``scale`` and its ``name`` (a seed sweep's summary: its ``experiment``)."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "scale" in record and (record.get("name") == name or "experiment" in record)


def is_figure_file(path: Path) -> bool:
    """Whether ``path`` is a figure drawn by ``figures/`` (its metadata names :data:`irlb.registry.FIGURE_SOFTWARE`)."""
    try:
        return path.is_file() and f"{FIGURE_SOFTWARE} figures/".encode() in path.read_bytes()
    except OSError:
        return False


def claim_folders(results_dir: Path, figures_dir: Path, selected: list[str]) -> None:
    """Check, before any experiment runs, that ``irlb reproduce`` may write its result files into ``results_dir`` and
    its figures into ``figures_dir``: each is new, empty, or a folder of an earlier reproduction (it holds result
    files, resp. figures, that the experiments and ``figures/`` wrote, which are regenerated in place). A file, a
    place that cannot be written, a folder of other files, or a file of someone else's where a result or a figure
    is to be written is a :class:`~irl_bilevel.validation.ValidationError`; nothing is changed."""
    for option, folder, ours, targets in (
            ("--results", results_dir, lambda path: is_result_file(path, path.stem),
             [(results_dir / f"{name}.json", name) for name in selected]),
            ("--figures", figures_dir, lambda path: is_figure_file(path),
             [(figures_dir / f"{name}{suffix}", name) for name in selected for suffix in (".png", ".pdf")])):
        if folder.exists() and not folder.is_dir():
            raise ValidationError(f"{option}: {folder} is a file; expected a folder (nothing was changed)")
        check_creatable(folder, option)
        if folder.is_dir() and any(folder.iterdir()) and not any(ours(path) for path in folder.iterdir()):
            raise ValidationError(f"{option}: {folder} is not empty and holds no output of irlb reproduce; choose a "
                                  f"new or empty folder (nothing was changed)")
        for path, name in targets:
            if path.exists() and not (is_result_file(path, name) if option == "--results" else ours(path)):
                raise ValidationError(f"{option}: {path} is not an output of irlb reproduce, and {name} would "
                                      f"replace it; move it away or choose another folder (nothing was changed)")


def reproduce(scale: str, results_dir: Path, figures_dir: Path, only: list[str] | None = None,
              seed: int = 0, config_file: str | Path | None = None,
              overrides: list[str] | None = None, extended: bool = False) -> list[tuple[str, float, list[Path]]]:
    """``config_file`` (``{experiment: {settings}}``) and ``overrides`` (``experiment.key=value``) change the
    scale's settings; every config is checked before the first experiment starts. Without ``only``, every
    experiment except those of :data:`irlb.registry.EXTENDED` runs (all of them with ``extended``). The folders are
    checked first (:func:`claim_folders`)."""
    selected = selected_experiments(only, extended)
    configs = reproduce_configs(selected, scale, config_file, overrides or [])
    claim_folders(Path(results_dir), Path(figures_dir), selected)
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
