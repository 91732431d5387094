"""Multi-step text environments (Tower of Hanoi, graph navigation, typed tool use, TextArena's single-player games)
and reward learning on them.

The environments, their tabular export, metrics and search (everything this package's ``__init__`` imports) are
pure Python (numpy; torch only for the tabular export): no transformers; TextArena (the optional ``textarena``
extra) is imported only when one of its games is built. The LoRA-policy parts import the language
model stack and are imported by name: :mod:`llm.agentic.preferences` (reward learning from preferences between a
policy's episodes) and :mod:`llm.agentic.shaping` (learned shaping through the LoRA inner solver). See
``docs/agentic.md``.
"""

from llm.agentic.base import (
    ASPECT_NAMES,
    DEFAULT_WEIGHTS,
    SPARSE_WEIGHTS,
    FiniteTextEnv,
    Parsed,
    TextEnv,
    check_aspect_names,
)
from llm.agentic.export import (
    TabularExport,
    build_tabular_mdp,
    demonstrations_from_plans,
    optimal_demonstrations,
    solver_plans,
    text_demonstrations,
)
from llm.agentic.graph_nav import GraphNavEnv
from llm.agentic.hanoi import HanoiEnv
from llm.agentic.metrics import (
    EpisodeRecord,
    invalid_action_rate,
    malformed_rate,
    plan_length_ratio,
    run_episode,
    success_rate,
    success_stability,
    summarize,
)
from llm.agentic.search import SearchResult, reward_guided_search, text_step_reward
from llm.agentic.textarena_games import TEXTARENA_GAMES, ArenaFrozenLake, ArenaHanoi, ArenaLightsOut, TextArenaGame
from llm.agentic.tool_use import ToolUseEnv

__all__ = [
    "ASPECT_NAMES",
    "DEFAULT_WEIGHTS",
    "SPARSE_WEIGHTS",
    "TEXTARENA_GAMES",
    "ArenaFrozenLake",
    "ArenaHanoi",
    "ArenaLightsOut",
    "EpisodeRecord",
    "FiniteTextEnv",
    "GraphNavEnv",
    "HanoiEnv",
    "Parsed",
    "SearchResult",
    "TabularExport",
    "TextArenaGame",
    "TextEnv",
    "ToolUseEnv",
    "build_tabular_mdp",
    "check_aspect_names",
    "demonstrations_from_plans",
    "invalid_action_rate",
    "malformed_rate",
    "optimal_demonstrations",
    "plan_length_ratio",
    "reward_guided_search",
    "run_episode",
    "solver_plans",
    "success_rate",
    "success_stability",
    "summarize",
    "text_demonstrations",
    "text_step_reward",
]
