"""Tower of Hanoi over text, with the rules, start sets and move caps of MAP (Webb et al. 2023).

Rules: three lists A, B, C hold the numbers ``0..n−1``; only the **last** element of
a list moves; a number may be appended to a list only if every element already there is smaller. The goal
is ``A = [] B = [] C = [0, 1, …, n−1]``.

Which end is the top: the last element is the only one that moves, so lists are written bottom → top. A
number lands only on smaller numbers, so every reachable list is increasing, and the goal ``C = [0..n−1]``
has 0 at the bottom and ``n−1`` on top. Number ``k`` is thus physical disk ``n−1−k`` (0 is the largest
disk). The state graph is the ordinary Hanoi graph: ``3^n`` states, every legal move reversible.

Start sets: every configuration except the goal, i.e. ``3^n − 1`` states: 26 for three disks (all on A, all
on B, 18 splits 2+1 over two lists, 6 splits 1+1+1) and 80 for four. Move caps: 10 (n = 3), 20 (n = 4); the
longest optimal solution is ``2^n − 1`` (7 and 15), so every start is solvable within its cap.

Text: observation ``"…State: A=[0, 1, 2] B=[] C=[]\\nMove: "``; action ``"A C"`` (move the last number
of A to the end of C). The parser also accepts ``A->C``, ``A to C``, ``from A to C``, ``move A C``.
"""

from __future__ import annotations

import itertools
import re

from irl_bilevel.validation import ValidationError
from llm.agentic.base import FiniteTextEnv, Parsed, first_line

PEGS = "ABC"
MOVE_CAPS = {3: 10, 4: 20}
HanoiState = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
HanoiMove = tuple[int, int]  # (source list, destination list), indices into "ABC"

_MOVE = re.compile(
    r"(?:move\s+)?(?:(?:disk|number)\s+\d+\s+)?(?:from\s+)?([abc])\s*(?:->|→|to|,|\s)\s*(?:to\s+)?([abc])\s*\.?",
    re.IGNORECASE,
)


def all_states(num_disks: int) -> list[HanoiState]:
    """Every configuration: each number goes to one of the lists, where the numbers sit in increasing order."""
    states = []
    for assignment in itertools.product(range(3), repeat=num_disks):
        lists = tuple(tuple(d for d in range(num_disks) if assignment[d] == peg) for peg in range(3))
        states.append(lists)
    return states  # type: ignore[return-value]


def goal_state(num_disks: int) -> HanoiState:
    return ((), (), tuple(range(num_disks)))


def start_states(num_disks: int) -> list[HanoiState]:
    """MAP's start set: every configuration except the (already solved) goal; 26 for n = 3, 80 for n = 4."""
    goal = goal_state(num_disks)
    return [s for s in all_states(num_disks) if s != goal]


def is_valid_state(state: HanoiState, num_disks: int) -> bool:
    """Three increasing lists that hold each of ``0..n−1`` exactly once."""
    return (
        len(state) == 3
        and sorted(d for peg in state for d in peg) == list(range(num_disks))
        and all(list(peg) == sorted(peg) for peg in state)
    )


def render_lists(state: HanoiState) -> str:
    return " ".join(f"{name}=[{', '.join(map(str, peg))}]" for name, peg in zip(PEGS, state))


class HanoiEnv(FiniteTextEnv[HanoiState, HanoiMove]):
    """Tower of Hanoi with ``num_disks`` ∈ {3, 4} (MAP's start sets and caps; other sizes get cap ``2^n + 3``)."""

    name = "hanoi"

    def __init__(self, num_disks: int = 3, reward_mode: str = "structured", weights=None) -> None:
        if not isinstance(num_disks, int) or not 1 <= num_disks <= 6:
            raise ValidationError(f"num_disks: expected an integer in [1, 6], got {num_disks!r}")
        super().__init__(reward_mode, weights)
        self.num_disks = num_disks
        self.max_steps = MOVE_CAPS.get(num_disks, 2**num_disks + 3)
        self._starts = start_states(num_disks)
        self._goal = goal_state(num_disks)

    @property
    def starts(self) -> list[HanoiState]:
        return self._starts

    def render_state(self, state: HanoiState) -> str:
        return (
            "Tower of Hanoi. Move the last number of one list to the end of another list. A number may only "
            "be placed on a list whose numbers are all smaller.\n"
            f"Goal: {render_lists(self._goal)}\n"
            f"State: {render_lists(state)}\n"
            "Move: "
        )

    def parse_action(self, text: str) -> Parsed[HanoiMove]:
        match = _MOVE.fullmatch(first_line(text))
        if match is None:
            return Parsed(None, f"expected a move like 'A C' (source list, destination list), got {text[:40]!r}")
        return Parsed((PEGS.index(match.group(1).upper()), PEGS.index(match.group(2).upper())))

    def format_action(self, action: HanoiMove) -> str:
        return f"{PEGS[action[0]]} {PEGS[action[1]]}"

    def canonical_actions(self) -> list[HanoiMove]:
        return [(i, j) for i in range(3) for j in range(3) if i != j]

    def legality_error(self, state: HanoiState, action: HanoiMove) -> str | None:
        source, target = action
        if source == target:
            return f"source and destination are both {PEGS[source]}"
        if not state[source]:
            return f"list {PEGS[source]} is empty"
        disk = state[source][-1]
        if state[target] and state[target][-1] > disk:
            return f"{disk} cannot go on {PEGS[target]}, which holds the larger number {state[target][-1]}"
        return None

    def transition(self, state: HanoiState, action: HanoiMove) -> HanoiState:
        source, target = action
        lists = [list(peg) for peg in state]
        lists[target].append(lists[source].pop())
        return tuple(tuple(peg) for peg in lists)  # type: ignore[return-value]

    def is_success(self, state: HanoiState) -> bool:
        return state == self._goal
