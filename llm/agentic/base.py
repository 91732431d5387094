"""The common base of the multi-step text environments: gymnasium-style ``reset`` / ``step`` over text.

An environment holds a finite list of start states (Hanoi start configurations, navigation tasks, tool-use
tasks). States are plain hashable Python values that carry everything the dynamics need (task, phase,
position), so ``legal_actions(state)``, ``transition(state, action)`` and the reward are pure functions of the
state: search can branch from any state without cloning an environment, and the finite environments can be
enumerated into a tabular MDP (``llm.agentic.export``).

Interface (the gymnasium 1.x signatures, over strings):

* ``reset(seed=None, options={"start": i}) -> (observation_text, info)``;
* ``step(action_text) -> (observation_text, reward, terminated, truncated, info)``.

The observation is a prompt a small LM can continue (it ends with e.g. ``"Move: "``); the action is the
model's continuation, of which the parser reads the first non-empty line. An action is

* **malformed** when the parser cannot read it: the state stays, the ``malformed`` aspect is −1;
* **invalid** when it parses but breaks the rules in this state: the state stays, the ``invalid`` aspect is −1;
* **legal** otherwise: the state moves; ``progress`` is the drop of the (BFS) distance to the goal and
  ``success`` is 1 on the step that reaches the goal.

Every step, whatever its kind, costs ``step = −1`` and counts towards the move cap. Malformed and invalid
actions never end an episode; they are counted in ``info``.

Structured reward: the per-step aspect vector ``r_t ∈ R^K`` with names ``ASPECT_NAMES`` is in
``info["reward_aspects"]``; the scalar reward is ``wᵀ r_t`` with the environment's weights (``DEFAULT_WEIGHTS``)
in ``reward_mode="structured"`` and the success aspect alone in ``reward_mode="sparse"``. This is the
``RewardOutput(aspects [B, K], total [B])`` convention of ``irl_bilevel.rewards`` with a ``FixedWeights``
aggregator.

Why no ``gymnasium.Env`` subclass: gymnasium's ``Text`` space bounds length and charset, and a model's raw
continuation must reach the parser unfiltered so that malformed text is counted rather than rejected; SB3
does not train on ``Text`` spaces; and the extra methods the planner and the tabular export need
(``legal_actions``, ``transition``, aspect names) are outside ``gymnasium.Env`` anyway. The llm side therefore
does not depend on gymnasium; the method signatures are gymnasium's, so a wrapper is a few lines if needed.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from irl_bilevel.validation import ValidationError, reject_unknown_keys

ASPECT_NAMES: tuple[str, ...] = ("success", "invalid", "malformed", "progress", "step")
# Progress weight ≤ step weight: then −(true reward) is a consistent A* cost (progress telescopes into the
# potential −w_progress·d(s)), a legal move along a shortest path earns 0 and a detour loses.
DEFAULT_WEIGHTS: tuple[float, ...] = (1.0, 1.0, 1.0, 0.1, 0.1)
SPARSE_WEIGHTS: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 0.0)
REWARD_MODES = ("structured", "sparse")
ANSWER_FORMAT = "Reply with exactly one move, written like {example}, and nothing else."
"""The answer-format line of chat prompts (:meth:`TextEnv.chat_messages`): an instruction-tuned model otherwise
explains its move in prose, which the parsers (rightly) count as malformed."""

State = TypeVar("State", bound=Hashable)
Action = TypeVar("Action", bound=Hashable)


@dataclass(frozen=True)
class Parsed(Generic[Action]):
    """The parser's reading of a text action: ``action`` or, when it is ``None``, the ``error``."""

    action: Action | None
    error: str = ""


def first_line(text: str) -> str:
    """The first non-empty line of a continuation, stripped (models often go on after the action)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def check_aspect_names(env: TextEnv, names: Sequence[str], where: str = "reward model") -> None:
    """Raise ``ValidationError`` unless ``names`` are exactly the environment's aspect names, in order."""
    if tuple(names) != tuple(env.aspect_names):
        raise ValidationError(
            f"{where}: aspect names {list(names)} do not match the {env.name} environment's "
            f"{list(env.aspect_names)}"
        )


class TextEnv(ABC, Generic[State, Action]):
    """Gymnasium-style environment over text observations and text actions (see the module docstring).

    Subclasses define the dynamics as pure functions of hashable states and the text codec.

    Args:
        reward_mode: ``"structured"`` (scalar reward ``wᵀ r_t``) or ``"sparse"`` (success aspect only).
        weights: the aggregation weights ``w`` of the structured reward (``DEFAULT_WEIGHTS`` by default).
    """

    name: str = "text-env"
    aspect_names: tuple[str, ...] = ASPECT_NAMES
    # Move cap per phase: every step (legal, invalid or malformed) counts.
    max_steps: int = 10
    # Whether render_state's text already holds the tokenizer's special tokens (a chat template's rendering:
    # llm.agentic.chat.ChatEnv); such prompts are encoded with add_special_tokens=False.
    prompt_has_special_tokens: bool = False

    def __init__(self, reward_mode: str = "structured", weights: Sequence[float] | None = None) -> None:
        if reward_mode not in REWARD_MODES:
            raise ValidationError(f"reward_mode: expected one of {list(REWARD_MODES)}, got {reward_mode!r}")
        weights = DEFAULT_WEIGHTS if weights is None else tuple(float(w) for w in weights)
        if len(weights) != len(self.aspect_names) or not all(math.isfinite(w) for w in weights):
            raise ValidationError(
                f"weights: expected {len(self.aspect_names)} finite numbers (one per aspect "
                f"{list(self.aspect_names)}), got {list(weights)}"
            )
        self.reward_mode = reward_mode
        self.weights = np.asarray(weights, dtype=np.float64)
        self._rng = np.random.default_rng()
        self._state: State | None = None
        self._done = True
        self._counters: dict[str, int] = {}

    # ------------------------------------------------------------------ the task (subclasses)
    @property
    @abstractmethod
    def starts(self) -> Sequence[State]:
        """The start states, one per episode kind (start configuration or task)."""

    @abstractmethod
    def render_state(self, state: State) -> str:
        """The observation text: a prompt that ends where the model should write its action."""

    @abstractmethod
    def parse_action(self, text: str) -> Parsed[Action]:
        """Read an action from model text; never raises on bad text (returns ``Parsed(None, why)``)."""

    @abstractmethod
    def format_action(self, action: Action) -> str:
        """The canonical text of an action (``parse_action(format_action(a)).action == a``)."""

    @abstractmethod
    def legal_actions(self, state: State) -> list[Action]:
        """The legal actions in ``state``, in a fixed order (candidate set for infinite action spaces)."""

    @abstractmethod
    def legality_error(self, state: State, action: Action) -> str | None:
        """Why ``action`` is illegal in ``state``, or ``None`` when it is legal."""

    @abstractmethod
    def transition(self, state: State, action: Action) -> State:
        """The deterministic next state after a legal action."""

    @abstractmethod
    def is_success(self, state: State) -> bool:
        """Whether ``state`` is the goal (a terminal state)."""

    @abstractmethod
    def distance_to_goal(self, state: State) -> float:
        """Moves from ``state`` to the goal on a shortest legal path (``inf`` when unreachable)."""

    def is_failure(self, state: State) -> bool:
        """Whether ``state`` is a terminal dead end (e.g. the wrong reward collected)."""
        return False

    def is_terminal(self, state: State) -> bool:
        return self.is_success(state) or self.is_failure(state)

    def phase(self, state: State) -> int:
        """The phase of a multi-phase task; the move cap applies per phase."""
        return 0

    def chat_messages(self, state: State) -> list[dict[str, str]]:
        """The observation as chat messages for an instruction-tuned model (``llm.agentic.chat.ChatEnv`` renders
        them through its tokenizer's chat template): a system message that states the answer format, with the
        canonical text of a legal move of the first start as the example (:data:`ANSWER_FORMAT`), and the
        observation text as the user's message. Games with their own player prompt override it."""
        start = self.starts[0]
        example = self.format_action(self.legal_actions(start)[0])
        return [{"role": "system", "content": ANSWER_FORMAT.format(example=example)},
                {"role": "user", "content": self.render_state(state)}]

    # ------------------------------------------------------------------ reward
    def step_aspects(self, state: State, action: Action | None, next_state: State, kind: str) -> np.ndarray:
        """The true per-step aspect vector ``[K]`` for a step of ``kind`` (``legal``, ``invalid``, ``malformed``)."""
        aspects = np.zeros(len(self.aspect_names))
        aspects[self.aspect_names.index("step")] = -1.0
        if kind == "malformed":
            aspects[self.aspect_names.index("malformed")] = -1.0
        elif kind == "invalid":
            aspects[self.aspect_names.index("invalid")] = -1.0
        else:
            aspects[self.aspect_names.index("progress")] = self.progress(state, next_state)
            aspects[self.aspect_names.index("success")] = float(self.is_success(next_state))
        return aspects

    def progress(self, state: State, next_state: State) -> float:
        """``d(s) − d(s')``; −1 for a move into a dead end (whose distance is infinite)."""
        before, after = self.distance_to_goal(state), self.distance_to_goal(next_state)
        if math.isinf(after) or math.isinf(before):
            return -1.0
        return float(before - after)

    def aggregate(self, aspects: np.ndarray) -> float:
        """The scalar reward of an aspect vector under this environment's reward mode."""
        if self.reward_mode == "sparse":
            return float(aspects[self.aspect_names.index("success")])
        return float(self.weights @ aspects)

    def true_step_reward(self, state: State, action: Action) -> float:
        """The scalar true reward of a legal action in ``state`` (a scorer for ``reward_guided_search``)."""
        error = self.legality_error(state, action)
        if error is not None:
            return self.aggregate(self.step_aspects(state, None, state, "invalid"))
        return self.aggregate(self.step_aspects(state, action, self.transition(state, action), "legal"))

    # ------------------------------------------------------------------ gymnasium-style API
    @property
    def state(self) -> State:
        if self._state is None:
            raise ValidationError("state: the environment has not been reset; call reset() first")
        return self._state

    def reset(self, seed: int | None = None, options: Mapping[str, Any] | None = None) -> tuple[str, dict]:
        """Start an episode at ``options["start"]`` (an index into ``starts``) or a start drawn with ``seed``."""
        options = dict(options or {})
        reject_unknown_keys(options, ["start"], "options")
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if "start" in options:
            index = options["start"]
            if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < len(self.starts):
                raise ValidationError(f"options.start: expected an integer in [0, {len(self.starts)}), got {index!r}")
            index = int(index)
        else:
            index = int(self._rng.integers(len(self.starts)))
        self._state = self.starts[index]
        self._done = False
        self._counters = {"steps": 0, "phase_steps": 0, "invalid": 0, "malformed": 0}
        info = {
            "start": index,
            "state": self._state,
            "optimal_length": self.distance_to_goal(self._state),
            "aspect_names": self.aspect_names,
        }
        return self.render_state(self._state), info

    def step(self, action_text: str) -> tuple[str, float, bool, bool, dict]:
        """Apply one text action; see the module docstring for the malformed / invalid / legal cases."""
        if self._state is None or self._done:
            raise ValidationError("step: no episode is running; call reset() first")
        if not isinstance(action_text, str):
            raise ValidationError(f"action_text: expected a string, got {type(action_text).__name__}")
        state = self._state
        parsed = self.parse_action(action_text)
        action = parsed.action
        error = parsed.error
        if action is None:
            kind, next_state = "malformed", state
        else:
            illegal = self.legality_error(state, action)
            if illegal is not None:
                kind, next_state, error = "invalid", state, illegal
            else:
                kind, next_state = "legal", self.transition(state, action)
        aspects = self.step_aspects(state, action if kind == "legal" else None, next_state, kind)
        counters = self._counters
        counters["steps"] += 1
        counters["phase_steps"] += 1
        if kind != "legal":
            counters[kind] += 1
        if self.phase(next_state) != self.phase(state):  # a new phase gets a fresh move cap
            counters["phase_steps"] = 0
        terminated = self.is_terminal(next_state)
        truncated = not terminated and counters["phase_steps"] >= self.max_steps
        self._state = next_state
        self._done = terminated or truncated
        success = self.is_success(next_state)
        info = {
            "kind": kind,
            "malformed": kind == "malformed",
            "invalid": kind == "invalid",
            "error": error,
            "action": None if action is None else self.format_action(action),
            "state": next_state,
            "reward_aspects": aspects,
            "aspect_names": self.aspect_names,
            "steps": counters["steps"],
            "num_invalid": counters["invalid"],
            "num_malformed": counters["malformed"],
            "success": success,
            "solved": success and counters["invalid"] == 0 and counters["malformed"] == 0,
        }
        return self.render_state(next_state), self.aggregate(aspects), terminated, truncated, info


class FiniteTextEnv(TextEnv[State, Action]):
    """A text environment with a finite action list and a finite reachable state graph.

    ``canonical_actions()`` lists every action (legal or not) in a fixed order; the legal ones are those
    without a ``legality_error``. Distances to the goal come from a backward breadth-first search over the
    reachable graph (computed once). Terminal states have no outgoing moves.
    """

    _graph: dict[State, list[tuple[Action, State]]] | None = None
    _distances: dict[State, int] | None = None

    @abstractmethod
    def canonical_actions(self) -> list[Action]:
        """Every action of the action set, in a fixed order (the tabular action index)."""

    def legal_actions(self, state: State) -> list[Action]:
        if self.is_terminal(state):
            return []
        return [a for a in self.canonical_actions() if self.legality_error(state, a) is None]

    def state_graph(self) -> dict[State, list[tuple[Action, State]]]:
        """Reachable states (breadth-first from the starts, in a fixed order) with their legal moves."""
        if self._graph is None:
            graph: dict[State, list[tuple[Action, State]]] = {}
            queue = deque(self.starts)
            for start in self.starts:
                graph.setdefault(start, [])
            seen = set(self.starts)
            while queue:
                state = queue.popleft()
                moves = [(a, self.transition(state, a)) for a in self.legal_actions(state)]
                graph[state] = moves
                for _, next_state in moves:
                    if next_state not in seen:
                        seen.add(next_state)
                        queue.append(next_state)
            self._graph = graph
        return self._graph

    def reachable_states(self) -> list[State]:
        return list(self.state_graph())

    def distance_to_goal(self, state: State) -> float:
        if self._distances is None:
            graph = self.state_graph()
            predecessors: dict[State, list[State]] = {s: [] for s in graph}
            for source, moves in graph.items():
                for _, target in moves:
                    predecessors[target].append(source)
            goals = [s for s in graph if self.is_success(s)]
            distances = dict.fromkeys(goals, 0)
            queue = deque(goals)
            while queue:
                target = queue.popleft()
                for source in predecessors[target]:
                    if source not in distances:
                        distances[source] = distances[target] + 1
                        queue.append(source)
            self._distances = distances
        if state not in self.state_graph():
            raise ValidationError(f"state: {state!r} is not reachable in the {self.name} environment")
        return float(self._distances.get(state, math.inf))

    def optimal_plan(self, state: State) -> list[Action]:
        """A shortest legal action sequence from ``state`` to the goal (descends the BFS distance)."""
        distance = self.distance_to_goal(state)
        if math.isinf(distance):
            raise ValidationError(f"state: the goal cannot be reached from {state!r}")
        plan: list[Action] = []
        while not self.is_success(state):
            for action, next_state in self.state_graph()[state]:
                if self.distance_to_goal(next_state) == self.distance_to_goal(state) - 1:
                    plan.append(action)
                    state = next_state
                    break
        return plan
