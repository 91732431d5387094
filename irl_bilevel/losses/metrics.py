"""The metrics every loss reports, as plain numbers for logs: loss, reward accuracy, margins, gradient weights."""

from __future__ import annotations

from irl_bilevel.losses.batches import LossOutput


def loss_metrics(output: LossOutput) -> dict[str, float]:
    """``loss`` (batch mean), ``reward_accuracy``, ``mean_margin``, mean chosen/rejected rewards and, when the
    output carries them, the mean and max gradient weight along the margin."""
    metrics = {
        "loss": float(output.loss.detach()),
        "reward_accuracy": output.reward_accuracy,
        "mean_margin": output.mean_margin,
        "chosen_reward": float(output.chosen_rewards.mean()) if output.chosen_rewards.numel() else float("nan"),
        "rejected_reward": float(output.rejected_rewards.mean()) if output.rejected_rewards.numel() else float("nan"),
    }
    if output.gradient_weights is not None:
        weights = output.gradient_weights.margin
        metrics["mean_gradient_weight"] = float(weights.mean())
        metrics["max_gradient_weight"] = float(weights.max())
    return metrics
