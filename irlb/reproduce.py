"""`irlb reproduce`: every experiment behind the paper, then every figure, with a final table."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from irl_bilevel.validation import ValidationError

# (experiment module, figure module); both named after the figure they produce.
EXPERIMENTS = {
    "reward_recovery": ("classic_rl.experiments.reward_recovery", "figures.reward_recovery"),
    "hypergradient_accuracy": ("classic_rl.experiments.hypergradient_accuracy", "figures.hypergradient_accuracy"),
    "loss_gradient_weights": ("irlb.experiments.loss_gradient_weights", "figures.loss_gradient_weights"),
    "loss_sweep": ("classic_rl.experiments.loss_sweep", "figures.loss_sweep"),
    "feedback_consistency": ("classic_rl.experiments.feedback_consistency", "figures.feedback_consistency"),
    "learned_shaping": ("classic_rl.experiments.learned_shaping", "figures.learned_shaping"),
    "preference_noise": ("classic_rl.experiments.preference_noise", "figures.preference_noise"),
    "sentiment_frontier": ("llm.experiments.sentiment_frontier", "figures.sentiment_frontier"),
    "shaping_classic_control": ("classic_rl.experiments.shaping_classic_control", "figures.shaping_classic_control"),
    "aspect_labels": ("classic_rl.experiments.aspect_labels", "figures.aspect_labels"),
    "agentic_reward_learning": ("llm.experiments.agentic_reward_learning", "figures.agentic_reward_learning"),
    "agentic_shaping": ("llm.experiments.agentic_shaping", "figures.agentic_shaping"),
    "preference_feedback": ("classic_rl.experiments.preference_feedback", "figures.preference_feedback"),
}
# Run only with `extended=True` (`irlb reproduce --extended`, `make figures-extended`) or by name (`--only`): each
# takes 10–35 minutes at quick scale on two cores, which would double the default reproduction.
EXTENDED = ("agentic_reward_learning", "agentic_shaping", "preference_feedback")


def selected_experiments(only: list[str] | None = None, extended: bool = False) -> list[str]:
    """``only`` (checked against :data:`EXPERIMENTS`), else every experiment but :data:`EXTENDED` (all if
    ``extended``)."""
    if not only:
        return [name for name in EXPERIMENTS if extended or name not in EXTENDED]
    unknown = sorted(set(only) - set(EXPERIMENTS))
    if unknown:
        raise ValidationError(f"--only: unknown experiment(s) {unknown}; expected some of {sorted(EXPERIMENTS)}")
    return list(only)


def reproduce(scale: str, results_dir: Path, figures_dir: Path, only: list[str] | None = None,
              seed: int = 0, config_file: str | Path | None = None,
              overrides: list[str] | None = None, extended: bool = False) -> list[tuple[str, float, list[Path]]]:
    """``config_file`` (``{experiment: {settings}}``) and ``overrides`` (``experiment.key=value``) change the
    scale's settings; every config is checked before the first experiment starts. Without ``only``, every
    experiment except those of :data:`EXTENDED` runs (all of them with ``extended``)."""
    from irlb.config import reproduce_configs

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
