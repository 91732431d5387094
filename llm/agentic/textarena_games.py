"""TextArena's single-player games through the project's agentic interface: TextArena decides every move.

TextArena (PyPI ``textarena``; Guertler et al. 2025, "TextArena") is a suite of text games for LLM agents with its own
``ta.make(env_id)``, ``reset(num_players=1, seed)``, ``step(action_text) -> (done, info)`` and ``close() -> (rewards,
game_info)``. :class:`TextArenaGame` is a :class:`~llm.agentic.base.FiniteTextEnv` whose dynamics are TextArena's own
code: to know what an action does in a state, the adapter resets a raw TextArena env (``<env_id>-raw``, no wrappers)
with the state's board seed, writes the state into TextArena's ``game_state``, calls TextArena's ``step`` with the
action's canonical text and reads back

* whether TextArena rejected it (``set_invalid_move``: its error counter went up) → ``invalid``,
* the new ``game_state`` → the next state,
* whether the game ended (``done``) and with reward 1 (won: ``success``) or below (lost: a dead end, e.g. a hole).

Each (state, action) is asked once (memoized), so the state graph, BFS distances, the optimal solver, the tabular
export and the text episodes all rest on TextArena's rules; nothing of a game's rules is written here. What is
written here is each game's *codec*: how a state is stored in TextArena's ``game_state`` and read back, the parser
(TextArena's own action regex, applied to the whole text as TextArena does, so that text TextArena cannot read is
``malformed``) and the observation text (TextArena's own board renderer under a one-line condensation of its player
prompt; see :meth:`TextArenaGame.render_state`). Tests check the codecs against the real game: every solver plan,
replayed from ``reset(seed)`` in a fresh TextArena env, ends with TextArena's reward 1; the parsers agree with
TextArena's format errors on malformed text; the project's own :class:`~llm.agentic.hanoi.HanoiEnv` agrees with
TextArena's Tower of Hanoi on every state and move except the one difference found (below).

Games (all offline: no network, no nltk corpora; checked with the network off):

* :class:`ArenaHanoi` — ``TowerOfHanoi-v0``: 3 disks on towers A, B, C (TextArena numbers disks by size, 3 the
  largest, lists bottom → top); one start (all on A); goal C = [3, 2, 1]; action ``[A C]``. Move cap 14, TextArena's
  ``max_turns``. **Rule difference from the project's Hanoi**: TextArena accepts ``[A A]`` (source = target, source not
  empty) as a legal move that changes nothing (its checks are empty source and larger-on-smaller only); the
  project's Hanoi calls it invalid. The adapter keeps TextArena's rule: same-tower moves are legal self-loops here.
* :class:`ArenaFrozenLake` — ``FrozenLake-v0``: a 4×4 lake, start top-left, goal bottom-right, 3 holes placed by the
  reset's seed; one start per board seed (``board_seeds``); action ``[up]`` (``down``, ``left``, ``right``; TextArena
  also reads ``w a s d``). A move off the grid is invalid; a move into a hole ends the game lost (a dead end). Move
  cap 10 (TextArena: 100 turns; the longest optimal path of the default boards is 6).
* :class:`ArenaLightsOut` — ``LightsOut-v0`` at ``size=3`` (TextArena registers 5×5, whose 2^25 states no table
  holds; 3×3 has 512, every one solvable): pressing a light toggles it and its 4-neighbours; goal: all off. One start
  per board seed: TextArena's scramble of 5–15 random presses (seeds whose scramble leaves every light off are
  skipped); action ``[row col]``. Coordinates outside the grid are invalid. Move cap 10 (TextArena: 20; optimal
  solutions here have at most 9 presses).

Episode semantics are the project's (``llm.agentic.base``), not TextArena's, in two documented points: an invalid
move costs a step and never ends an episode (TextArena gives one free retry and ends the game at the second
consecutive invalid move), and the move cap is the project's (above). TextArena applies every bracketed move of a
message in one turn (Hanoi, ``findall``); the parser reads the first one, one action per step as everywhere here.

TextArena's ``State`` seeds Python's global ``random`` on every reset; the adapter saves and restores the global
random state around each call, so running a game never changes anyone else's random stream.
"""

from __future__ import annotations

import random
import re
from abc import abstractmethod
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from irl_bilevel.validation import ValidationError
from llm.agentic.base import FiniteTextEnv, Parsed

State = TypeVar("State", bound=Hashable)
Action = TypeVar("Action", bound=Hashable)

TEXTARENA_VERSION = "0.7.4"
"""The TextArena release the codecs were written against (``constraints.txt`` pins it; see the comment there)."""

RUNNING, WON, LOST = "running", "won", "lost"
ARENA_ANSWER_FORMAT = "Reply with exactly one move in that format and nothing else."
"""The line added to TextArena's player prompt in chat prompts (:meth:`TextArenaGame.chat_messages`): TextArena's
prompts state the format but not that the answer must hold nothing else (its parsers search the whole message)."""


@dataclass(frozen=True)
class ArenaOutcome(Generic[State]):
    """What TextArena's ``step`` did with one action: ``next_state``, ``status`` (running / won / lost) and, when it
    rejected the action, ``invalid`` with TextArena's ``reason``."""

    next_state: State
    status: str
    invalid: bool
    reason: str = ""


@contextmanager
def preserved_global_random() -> Iterator[None]:
    """Run a block without changing Python's global ``random`` state (TextArena's resets reseed it)."""
    saved = random.getstate()
    try:
        yield
    finally:
        random.setstate(saved)


def make_raw_env(env_id: str, **kwargs: Any) -> Any:
    """``textarena.make(env_id + "-raw", **kwargs)``: the game without TextArena's observation wrappers; a clear error
    when the optional ``textarena`` extra is not installed."""
    try:
        import textarena
    except ImportError as error:  # the optional extra
        raise ValidationError("TextArena games need the optional 'textarena' extra: pip install -e '.[textarena]'"
                              ) from error
    with preserved_global_random():
        return textarena.make(f"{env_id}-raw", **kwargs)


class TextArenaGame(FiniteTextEnv[State, Action]):
    """A TextArena single-player game whose moves TextArena itself plays (module docstring).

    Subclasses give the TextArena id and keyword arguments, the codec (:meth:`write_state`, :meth:`read_state`,
    :meth:`board_text`, :meth:`seed_of`), the parser and the canonical actions.

    Args:
        board_seeds: the reset seeds whose boards are the start states (duplicates and already-won boards dropped;
            the game's ``default_board_seeds`` when omitted).
        reward_mode, weights: as for every :class:`~llm.agentic.base.TextEnv`.
        max_steps: the move cap (the game's default when omitted).
    """

    env_id: str = ""
    env_kwargs: ClassVar[Mapping[str, Any]] = {}
    instruction: str = ""  # one line condensed from TextArena's player prompt (the observation's first line)
    default_max_steps: int = 10
    default_board_seeds: tuple[int, ...] = (0,)  # the start boards when ``board_seeds`` is omitted

    def __init__(self, board_seeds: Sequence[int] | None = None, reward_mode: str = "structured", weights=None,
                 max_steps: int | None = None) -> None:
        super().__init__(reward_mode, weights)
        if board_seeds is None:
            board_seeds = self.default_board_seeds
        if len(board_seeds) == 0 or not all(isinstance(s, int) and s >= 0 for s in board_seeds):
            raise ValidationError(f"board_seeds: expected non-empty non-negative integers, got {list(board_seeds)}")
        cap = self.default_max_steps if max_steps is None else max_steps
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ValidationError(f"max_steps: expected a positive integer, got {cap!r}")
        self.max_steps = cap
        self.board_seeds = tuple(int(s) for s in board_seeds)
        self._arenas: dict[int, Any] = {}
        self._outcomes: dict[tuple[State, Action], ArenaOutcome[State]] = {}
        self._status: dict[State, str] = {}
        self._texts: dict[State, str] = {}
        self._prompt: str | None = None
        starts: list[State] = []
        self.start_seeds: list[int] = []  # the board seed of each start
        for seed in self.board_seeds:
            arena = self.reset_arena(seed)
            start = self.read_state(arena, seed)
            if start in starts or arena.state.done or not self.playable_start(start):
                continue
            self._status[start] = RUNNING
            starts.append(start)
            self.start_seeds.append(seed)
        if not starts:
            raise ValidationError(f"board_seeds: no seed of {list(self.board_seeds)} gives a game that is not over "
                                  "at its start")
        self._starts = starts

    # ------------------------------------------------------------------ the codec (subclasses)
    @abstractmethod
    def write_state(self, arena: Any, state: State) -> None:
        """Store ``state`` in a freshly reset TextArena env (its ``state.game_state`` and board attributes)."""

    @abstractmethod
    def read_state(self, arena: Any, seed: int) -> State:
        """The state a TextArena env (reset with board ``seed``) is in."""

    @abstractmethod
    def board_text(self, arena: Any) -> str:
        """TextArena's own rendering of the board of the env (its renderer, untouched)."""

    @abstractmethod
    def seed_of(self, state: State) -> int:
        """The board seed whose reset gives ``state``'s fixed parts (holes, …)."""

    def playable_start(self, state: State) -> bool:
        """Whether a reset's state is a start (not already solved where TextArena only checks after a move)."""
        return True

    # ------------------------------------------------------------------ TextArena calls
    def reset_arena(self, seed: int) -> Any:
        """A raw TextArena env of this game after ``reset(num_players=1, seed=seed)`` (one env object per seed)."""
        if seed not in self._arenas:
            self._arenas[seed] = make_raw_env(self.env_id, **self.env_kwargs)
        arena = self._arenas[seed]
        with preserved_global_random():
            arena.reset(num_players=1, seed=seed)
        return arena

    def arena_at(self, state: State) -> Any:
        """A TextArena env reset with ``state``'s board seed and set to ``state``."""
        arena = self.reset_arena(self.seed_of(state))
        self.write_state(arena, state)
        return arena

    def play(self, state: State, action: Action) -> ArenaOutcome[State]:
        """TextArena's verdict on ``action`` in ``state`` (memoized; module docstring)."""
        key = (state, action)
        if key not in self._outcomes:
            if self._status.get(state, RUNNING) != RUNNING:
                raise ValidationError(f"state: the game is over in {state!r}; there is no move to play")
            arena = self.arena_at(state)
            with preserved_global_random():
                done, _ = arena.step(self.format_action(action))
            invalid = arena.state.error_count > 0 or bool(arena.state.game_info[0].get("invalid_move"))
            reason = ""
            if invalid:
                messages = [m for _, m, _ in arena.state.observations[0] if "invalid move" in str(m).lower()]
                reason = str(messages[-1]) if messages else "rejected by TextArena"
                outcome = ArenaOutcome(state, RUNNING, True, reason)
            else:
                next_state = self.read_state(arena, self.seed_of(state))
                status = RUNNING if not done else (WON if arena.state.rewards.get(0) == 1 else LOST)
                previous = self._status.setdefault(next_state, status)
                if previous != status:  # the codec lost something TextArena's verdict depends on
                    raise RuntimeError(f"{self.name}: TextArena ends {next_state!r} as {status} after {action!r} but "
                                       f"as {previous} elsewhere; the state codec is incomplete")
                outcome = ArenaOutcome(next_state, status, False)
            self._outcomes[key] = outcome
        return self._outcomes[key]

    # ------------------------------------------------------------------ FiniteTextEnv
    @property
    def starts(self) -> list[State]:
        return self._starts

    def render_state(self, state: State) -> str:
        """``instruction``, TextArena's board text (whitespace-normalised: the built-in model's tokens are whitespace
        words), an optional restatement line (:meth:`restated`), then ``"Move: "``. TextArena's full player prompt
        (60–90 words of rules) is condensed into the first line: the built-in model's context is short and it never
        reads instructions; the board is TextArena's renderer untouched."""
        if state not in self._texts:
            board = " ".join(self.board_text(self.arena_at(state)).split())
            lines = [self.instruction, f"Board: {board}"]
            restated = self.restated(state)
            if restated:
                lines.append(restated)
            lines.append("Move: ")
            self._texts[state] = "\n".join(lines)
        return self._texts[state]

    def restated(self, state: State) -> str:
        """A line restating what the board shows in a form a small LM can read (empty by default)."""
        return ""

    def player_prompt(self) -> str:
        """TextArena's own prompt to the player (rules and action format), as its reset writes it for player 0."""
        if self._prompt is None:
            arena = self.reset_arena(self.start_seeds[0])
            prompts = [str(message) for _, message, kind in arena.state.observations[0] if kind.name == "PROMPT"]
            if not prompts:
                raise RuntimeError(f"{self.name}: TextArena's reset wrote no player prompt")
            self._prompt = prompts[0].strip()
        return self._prompt

    def chat_messages(self, state: State) -> list[dict[str, str]]:
        """The game's own text for an instruction-tuned model: TextArena's player prompt (which states the action
        format) and :data:`ARENA_ANSWER_FORMAT` as the system message, and TextArena's board rendering verbatim (its
        newlines kept; nothing restated) as the user's message. :meth:`render_state`'s condensed one-line text is the
        built-in model's; a real LM reads TextArena's own."""
        board = self.board_text(self.arena_at(state)).strip("\n")
        return [{"role": "system", "content": f"{self.player_prompt()}\n{ARENA_ANSWER_FORMAT}"},
                {"role": "user", "content": f"Current board:\n{board}"}]

    def legality_error(self, state: State, action: Action) -> str | None:
        outcome = self.play(state, action)
        return outcome.reason if outcome.invalid else None

    def transition(self, state: State, action: Action) -> State:
        outcome = self.play(state, action)
        if outcome.invalid:
            raise ValidationError(f"action: {self.format_action(action)!r} is not legal in {state!r}: {outcome.reason}")
        return outcome.next_state

    def game_status(self, state: State) -> str:
        """running / won / lost, as TextArena declared it when the state was reached."""
        if state not in self._status:
            raise ValidationError(f"state: {state!r} was never reached in the {self.name} game (TextArena decides "
                                  "whether a state ends the game, so only reached states are known)")
        return self._status[state]

    def is_success(self, state: State) -> bool:
        return self.game_status(state) == WON

    def is_failure(self, state: State) -> bool:
        return self.game_status(state) == LOST


# ---------------------------------------------------------------------- Tower of Hanoi
ArenaHanoiState = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # towers A, B, C bottom → top
TOWERS = "ABC"
# TextArena 0.7.4, envs/TowerOfHanoi/env.py: re.compile(r"\[([ABCabc])\s*,?\s*([ABCabc])\]").findall(action)
_HANOI_MOVE = re.compile(r"\[([ABCabc])\s*,?\s*([ABCabc])\]")


class ArenaHanoi(TextArenaGame[ArenaHanoiState, tuple[int, int]]):
    """TextArena's ``TowerOfHanoi-v0`` (3 disks; module docstring)."""

    name = "ta-hanoi"
    env_id = "TowerOfHanoi-v0"
    env_kwargs: ClassVar[Mapping[str, Any]] = {"num_disks": 3}
    instruction = "Tower of Hanoi . Move all disks from tower A to tower C , one top disk at a time , never a " \
                  "bigger disk on a smaller one . Type [source target] ."
    default_max_steps = 14

    def write_state(self, arena: Any, state: ArenaHanoiState) -> None:
        arena.state.game_state["towers"] = {name: list(tower) for name, tower in zip(TOWERS, state)}

    def read_state(self, arena: Any, seed: int) -> ArenaHanoiState:
        towers = arena.state.game_state["towers"]
        return (tuple(towers["A"]), tuple(towers["B"]), tuple(towers["C"]))

    def board_text(self, arena: Any) -> str:
        return arena._render_board()

    def seed_of(self, state: ArenaHanoiState) -> int:
        return self.start_seeds[0]

    def parse_action(self, text: str) -> Parsed[tuple[int, int]]:
        match = _HANOI_MOVE.search(text)
        if match is None:
            return Parsed(None, f"expected a move like '[A C]' (TextArena's format), got {text[:40]!r}")
        return Parsed((TOWERS.index(match.group(1).upper()), TOWERS.index(match.group(2).upper())))

    def format_action(self, action: tuple[int, int]) -> str:
        return f"[{TOWERS[action[0]]} {TOWERS[action[1]]}]"

    def canonical_actions(self) -> list[tuple[int, int]]:
        # All nine pairs: TextArena plays a same-tower move as a legal no-op (module docstring).
        return [(i, j) for i in range(3) for j in range(3)]


# ---------------------------------------------------------------------- FrozenLake
ArenaLakeState = tuple[int, int, int]  # (board seed, row, column)
LAKE_ACTIONS = ("up", "down", "left", "right")
# TextArena 0.7.4, envs/FrozenLake/env.py: re.compile(r"\[\s*(up|down|left|right|w|a|s|d)\s*\]", re.IGNORECASE).search
_LAKE_MOVE = re.compile(r"\[\s*(up|down|left|right|w|a|s|d)\s*\]", re.IGNORECASE)
_WASD = {"w": "up", "a": "left", "s": "down", "d": "right"}


class ArenaFrozenLake(TextArenaGame[ArenaLakeState, str]):
    """TextArena's ``FrozenLake-v0`` (4×4, 3 holes per board seed; module docstring)."""

    name = "ta-frozenlake"
    env_id = "FrozenLake-v0"
    instruction = "Frozen Lake . Walk from the top left to the goal G at the bottom right without falling into a " \
                  "hole H . Type [up] , [down] , [left] or [right] ."
    default_max_steps = 10
    default_board_seeds = tuple(range(8))

    def write_state(self, arena: Any, state: ArenaLakeState) -> None:
        arena.state.game_state["player_pos"] = (state[1], state[2])

    def read_state(self, arena: Any, seed: int) -> ArenaLakeState:
        row, column = arena.state.game_state["player_pos"]
        return (seed, int(row), int(column))

    def board_text(self, arena: Any) -> str:
        return arena._render_board()

    def seed_of(self, state: ArenaLakeState) -> int:
        return state[0]

    def restated(self, state: ArenaLakeState) -> str:
        # As steppath restates the current room's doors: a 2-layer LM cannot find P by counting '|' tokens.
        return f"You are at row {state[1]} , column {state[2]} ."

    def parse_action(self, text: str) -> Parsed[str]:
        match = _LAKE_MOVE.search(text)
        if match is None:
            return Parsed(None, f"expected [up], [down], [left] or [right] (TextArena's format), got {text[:40]!r}")
        word = match.group(1).lower()
        return Parsed(_WASD.get(word, word))

    def format_action(self, action: str) -> str:
        return f"[{action}]"

    def canonical_actions(self) -> list[str]:
        return list(LAKE_ACTIONS)


class ArenaFrozenLake5x5(ArenaFrozenLake):
    """TextArena's ``FrozenLake-v0-hardcore``: a 5×5 lake with 6 holes per board seed (module docstring); a larger
    map than ``FrozenLake-v0``'s, on which blind (sparse-reward) search needs more expansions."""

    name = "ta-frozenlake-5x5"
    env_id = "FrozenLake-v0-hardcore"
    default_max_steps = 14


# ---------------------------------------------------------------------- Lights Out
ArenaLightsState = tuple[bool, ...]  # the lights row-major, True = on
# TextArena 0.7.4, envs/LightsOut/env.py: re.compile(r'\[(\d+)\s+(\d+)\]').fullmatch(action.strip())
_LIGHTS_PRESS = re.compile(r"\[(\d+)\s+(\d+)\]")


class ArenaLightsOut(TextArenaGame[ArenaLightsState, tuple[int, int]]):
    """TextArena's ``LightsOut-v0`` at 3×3 (module docstring)."""

    name = "ta-lightsout"
    env_id = "LightsOut-v0"
    size = 3
    env_kwargs: ClassVar[Mapping[str, Any]] = {"size": 3}
    instruction = "Lights Out . Pressing a light toggles it and its neighbours up , down , left and right . Turn " \
                  "every light off ( O is on , . is off ) . Type [row col] ."
    default_max_steps = 10
    default_board_seeds = tuple(range(16))

    def write_state(self, arena: Any, state: ArenaLightsState) -> None:
        n = self.size
        arena.state.game_state["grid"] = [[bool(state[r * n + c]) for c in range(n)] for r in range(n)]

    def read_state(self, arena: Any, seed: int) -> ArenaLightsState:
        return tuple(bool(light) for row in arena.state.game_state["grid"] for light in row)

    def board_text(self, arena: Any) -> str:
        return arena._grid_to_string(arena.state.game_state["grid"])

    def seed_of(self, state: ArenaLightsState) -> int:
        # The dynamics do not depend on the scramble; a playable one (TextArena divides by its count of lights on).
        return self.start_seeds[0]

    def playable_start(self, state: ArenaLightsState) -> bool:
        return any(state)  # TextArena checks "all off" only after a press: an all-off scramble is no game

    def parse_action(self, text: str) -> Parsed[tuple[int, int]]:
        match = _LIGHTS_PRESS.fullmatch(text.strip())
        if match is None:
            return Parsed(None, f"expected a press like '[1 2]' (TextArena's format), got {text[:40]!r}")
        return Parsed((int(match.group(1)), int(match.group(2))))

    def format_action(self, action: tuple[int, int]) -> str:
        return f"[{action[0]} {action[1]}]"

    def canonical_actions(self) -> list[tuple[int, int]]:
        return [(r, c) for r in range(self.size) for c in range(self.size)]


TEXTARENA_GAMES: dict[str, type[TextArenaGame]] = {
    "ta-hanoi": ArenaHanoi, "ta-frozenlake": ArenaFrozenLake, "ta-frozenlake-5x5": ArenaFrozenLake5x5,
    "ta-lightsout": ArenaLightsOut}
"""The adapted games by the project's env name (``llm.builtin_model.AGENTIC_ENVS`` builds them with defaults)."""
