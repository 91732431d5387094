"""A state-entropy exploration reward: the particle-based k-nearest-neighbour novelty of a state.

PEBBLE (Lee, Smith, Abbeel 2021, "PEBBLE: Feedback-efficient interactive reinforcement learning via relabeling
experience and unsupervised pre-training") trains the agent on an intrinsic reward before it asks a teacher anything,
so that the first queries compare diverse behaviour rather than what a random network happens to reward. The
reward is the per-state term of the particle estimate of the state entropy ``H(s)`` (Singh et al. 2003; Liu and
Abbeel 2021, APT):

    r_int(s) = log(1 + ‖s − s^{(k)}‖₂),

with ``s^{(k)}`` the ``k``-th nearest neighbour of ``s`` among reference states (recent learner states). PEBBLE
divides it by a running standard deviation; here it is standardized over the reference set itself,
``(r_int(s) − μ) / σ`` with ``μ, σ`` the mean and standard deviation of ``r_int`` on the reference states (each
against the others), so that an average state pays 0. That matters under absorbing-state termination
(``classic_rl.learned_reward_env``): DAC's absorbing state pays exactly 0 here, so ending an episode is neither
rewarded nor punished as such; only states more novel than average are worth staying alive for. A purely positive
novelty (PEBBLE's) would make every termination a loss of future reward, which prejudges what a termination means.
"""

from __future__ import annotations

import torch

from irl_bilevel.rewards import RewardModel, Transitions
from irl_bilevel.validation import ValidationError, check_finite


class StateEntropyReward(RewardModel):
    """``(log(1 + ‖s − s^{(k)}‖) − μ) / σ`` against a reference set of states (module docstring); no parameters.

    ``reference``: ``[N, D]`` states in the reward model's input layout (``set_reference`` replaces them). With
    ``absorbing_indicator`` the last input feature is DAC's absorbing flag: reference rows must have it 0, and rows
    with it set (the absorbing state) get reward 0. A row identical to a reference state still counts it as its
    nearest neighbour (distance 0); the reference statistics leave each state's own copy out.
    """

    def __init__(self, state_dim: int, k: int = 5, absorbing_indicator: bool = False) -> None:
        super().__init__(("novelty",), None, uses_actions=False)
        if k < 1:
            raise ValidationError(f"k: expected at least 1 neighbour, got {k}")
        if state_dim < 1:
            raise ValidationError(f"state_dim: expected a positive input width, got {state_dim}")
        self.k, self.state_dim, self.absorbing_indicator = int(k), int(state_dim), bool(absorbing_indicator)
        self.register_buffer("reference", torch.zeros(0, state_dim, dtype=torch.float64))
        self.register_buffer("center", torch.zeros((), dtype=torch.float64))
        self.register_buffer("scale", torch.ones((), dtype=torch.float64))

    def set_reference(self, states: torch.Tensor) -> None:
        """Use ``states`` ``[N, D]`` (``N > k``) as the reference set and standardize over it."""
        if states.ndim != 2 or states.shape[1] != self.state_dim:
            raise ValidationError(f"states: expected [N, {self.state_dim}] reference states, got {list(states.shape)}")
        if states.shape[0] <= self.k:
            raise ValidationError(f"states: expected more than k = {self.k} reference states, got {states.shape[0]}")
        check_finite(states, "states")
        if self.absorbing_indicator and bool((states[:, -1] != 0).any()):
            raise ValidationError("states: reference states must be real states (absorbing indicator 0)")
        reference = states.detach().to(torch.float64)
        # Each reference state against the others: its own copy (distance 0) is the first neighbour, so skip it.
        own = self._log_distances(reference, reference, self.k + 1)
        self.reference = reference
        self.center = own.mean()
        self.scale = own.std().clamp_min(1e-8)

    def _log_distances(self, states: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
        distances = torch.cdist(states, reference)  # [B, N]
        return torch.log1p(distances.kthvalue(k, dim=1).values)

    def aspect_rewards(self, batch: Transitions) -> torch.Tensor:
        if self.reference.shape[0] == 0:
            raise RuntimeError("StateEntropyReward: call set_reference() before evaluating the reward")
        states = batch.states
        novelty = (self._log_distances(states.to(torch.float64), self.reference, self.k) - self.center) / self.scale
        if self.absorbing_indicator:
            novelty = torch.where(states[:, -1] != 0, torch.zeros_like(novelty), novelty)
        return novelty.to(states.dtype)[:, None]
