"""The experiments behind the paper: each one's module and the figure module that draws its result file.

The one list that `irlb reproduce`, `irlb config`, `irlb sweep` and `irlb paper` read; it imports nothing of
the project, so every command module can import it at the top.
"""

from __future__ import annotations

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
    "agentic_search": ("llm.experiments.agentic_search", "figures.agentic_search"),
    "preference_feedback": ("classic_rl.experiments.preference_feedback", "figures.preference_feedback"),
    "seed_sweeps": ("irlb.experiments.seed_sweeps", "figures.seed_sweeps"),
    "smollm2_frontier": ("llm.experiments.smollm2_frontier", "figures.smollm2_frontier"),
    "smollm2_ai_feedback": ("llm.experiments.smollm2_ai_feedback", "figures.smollm2_ai_feedback"),
    "smollm2_agentic": ("llm.experiments.smollm2_agentic", "figures.smollm2_agentic"),
}
# Run only with `extended=True` (`irlb reproduce --extended`, `make figures-extended`) or by name (`--only`): each
# takes 10 minutes to a few hours at quick scale on two cores, which would more than double the default reproduction.
EXTENDED = ("agentic_reward_learning", "agentic_shaping", "preference_feedback", "seed_sweeps", "smollm2_frontier",
            "smollm2_ai_feedback", "smollm2_agentic")


FIGURE_SOFTWARE = "irl-bilevel"
"""The start of every figure's Software (PNG) / Creator (PDF) metadata (``figures/style.py``): how ``irlb reproduce``
recognises the figures it drew."""


def selected_experiments(only: list[str] | None = None, extended: bool = False) -> list[str]:
    """``only`` (checked against :data:`EXPERIMENTS`), else every experiment but :data:`EXTENDED` (all if
    ``extended``)."""
    if not only:
        return [name for name in EXPERIMENTS if extended or name not in EXTENDED]
    unknown = sorted(set(only) - set(EXPERIMENTS))
    if unknown:
        raise ValidationError(f"--only: unknown experiment(s) {unknown}; expected some of {sorted(EXPERIMENTS)}")
    return list(only)
