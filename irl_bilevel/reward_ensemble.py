"""Reward-model ensembles: several reward models of the same aspects, their mean and their disagreement.

The members' spread is what disagreement-based query selection reads (Christiano et al. 2017, Lee et al. 2021):
``member_totals`` gives ``[M, B]``, ``mean_and_std`` the per-transition mean and standard deviation over members,
``preference_probabilities`` each member's Bradley-Terry probability that the first segment of a query is
preferred, ``[M, N]``, whose standard deviation over members is the disagreement score.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from irl_bilevel.rewards import RewardModel, RewardOutput, Transitions
from irl_bilevel.validation import ValidationError


class RewardEnsemble(nn.Module):
    """``M >= 1`` reward models with the same aspect names; its output is the members' mean.

    ``forward(batch)`` returns ``RewardOutput`` with the mean per-aspect rewards and the mean total over members
    (so an ensemble is itself usable wherever a reward model's output is).
    """

    def __init__(self, members: Sequence[RewardModel]) -> None:
        super().__init__()
        if len(members) == 0:
            raise ValidationError("members: expected at least one reward model")
        names = {tuple(m.aspect_names) for m in members}
        if len(names) != 1:
            raise ValidationError(f"members: expected the same aspect names for every member, got {sorted(names)}")
        self.members = nn.ModuleList(members)
        self.aspect_names: tuple[str, ...] = tuple(members[0].aspect_names)

    def __len__(self) -> int:
        return len(self.members)

    def member_outputs(self, batch: Transitions) -> list[RewardOutput]:
        return [member(batch) for member in self.members]

    def member_totals(self, batch: Transitions) -> torch.Tensor:
        """``[M, B]``: each member's total reward."""
        return torch.stack([output.total for output in self.member_outputs(batch)])

    def mean_and_std(self, batch: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation (population, ``unbiased=False``; 0 for one member) of the totals, ``[B]``."""
        totals = self.member_totals(batch)
        return totals.mean(dim=0), totals.std(dim=0, unbiased=False)

    def forward(self, batch: Transitions) -> RewardOutput:
        outputs = self.member_outputs(batch)
        aspects = torch.stack([o.aspects for o in outputs]).mean(dim=0)
        total = torch.stack([o.total for o in outputs]).mean(dim=0)
        return RewardOutput(aspects, total, self.aspect_names)

    def segment_returns(self, steps: Transitions, mask: torch.Tensor) -> torch.Tensor:
        """``[M, N]`` per-member returns of ``N`` segments: ``steps`` holds ``N·T`` transitions segment-major and
        ``mask [N, T]`` marks real steps (padding contributes nothing)."""
        n, t = mask.shape
        if len(steps) != n * t:
            raise ValidationError(f"steps: expected N·T = {n * t} transitions (mask {list(mask.shape)}), "
                                  f"got {len(steps)}")
        totals = self.member_totals(steps).reshape(len(self), n, t)
        return (totals * mask.to(totals.dtype)).sum(dim=-1)

    @staticmethod
    def preference_probabilities(first_returns: torch.Tensor, second_returns: torch.Tensor,
                                 beta: float = 1.0) -> torch.Tensor:
        """``σ(β (R_first − R_second))`` per member and query, ``[M, N]`` from ``[M, N]`` returns."""
        if first_returns.shape != second_returns.shape:
            raise ValidationError(f"second_returns: expected shape {list(first_returns.shape)}, got "
                                  f"{list(second_returns.shape)}")
        return torch.sigmoid(beta * (first_returns - second_returns))

    @staticmethod
    def disagreement(first_returns: torch.Tensor, second_returns: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """``[N]``: standard deviation over members of their preference probabilities (Lee et al. 2021's
        ensemble-disagreement score)."""
        probabilities = RewardEnsemble.preference_probabilities(first_returns, second_returns, beta)
        return probabilities.std(dim=0, unbiased=False)
