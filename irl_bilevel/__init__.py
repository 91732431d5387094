"""Reward learning through bilevel optimization: the core (reward models, feedback, objectives, inner
solvers, hypergradients, the bilevel solver, metrics). Imports neither gymnasium nor transformers."""

from irl_bilevel.feedback import Demonstrations, Preferences, Rankings, Ratings, Trajectories, UnpairedLabels
from irl_bilevel.hypergradients import (
    BilevelProblem,
    FiniteDifferenceHypergradient,
    Hypergradient,
    HypergradientMethod,
    ImplicitHypergradient,
    MaxEntHypergradient,
    TapeHypergradientMethod,
    UnrolledHypergradient,
    ZeroOrderHypergradient,
    make_hypergradient,
)
from irl_bilevel.inner import FixedPointInnerSolver, InnerSolver, SoftValueIterationSolver
from irl_bilevel.objectives import MaxEntDemonstrationLoss, OuterObjective
from irl_bilevel.rewards import (
    FixedWeights,
    Gated,
    Lexicographic,
    LinearReward,
    MLPReward,
    PotentialShaping,
    RewardModel,
    RewardOutput,
    SimplexWeights,
    SoftMin,
    TabularReward,
    Transitions,
)
from irl_bilevel.solver import BilevelResult, BilevelSolver, DivergenceError, OuterConfig
from irl_bilevel.tabular import (
    TabularMDP,
    feature_expectations,
    soft_value_iteration,
    state_action_occupancy,
)
from irl_bilevel.validation import ValidationError

__version__ = "0.1.0"
__all__ = [
    "BilevelProblem",
    "BilevelResult",
    "BilevelSolver",
    "Demonstrations",
    "DivergenceError",
    "FiniteDifferenceHypergradient",
    "FixedPointInnerSolver",
    "FixedWeights",
    "Gated",
    "Hypergradient",
    "HypergradientMethod",
    "ImplicitHypergradient",
    "InnerSolver",
    "Lexicographic",
    "LinearReward",
    "MLPReward",
    "MaxEntDemonstrationLoss",
    "MaxEntHypergradient",
    "OuterConfig",
    "OuterObjective",
    "PotentialShaping",
    "Preferences",
    "Rankings",
    "Ratings",
    "RewardModel",
    "RewardOutput",
    "SimplexWeights",
    "SoftMin",
    "SoftValueIterationSolver",
    "TabularMDP",
    "TabularReward",
    "TapeHypergradientMethod",
    "Trajectories",
    "Transitions",
    "UnpairedLabels",
    "UnrolledHypergradient",
    "ValidationError",
    "ZeroOrderHypergradient",
    "feature_expectations",
    "make_hypergradient",
    "soft_value_iteration",
    "state_action_occupancy",
]
