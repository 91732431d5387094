"""Graph navigation over text: the CogEval tasks used by MAP (steppath, valuepath, detour, reward revaluation).

The graph is CogEval's 15-room "n15star" castle (Momennejad et al. 2023, ``cogeval/cogmaps``,
``task_templates/n15star``), the community graph of Schapiro et al. (2013): 30 undirected doors, every room
has 4 doors, and shortest paths between rooms have length 1 to 4 (``ROOM_EDGES``).

Tasks (each an episode; the start is always room 1, as in CogEval's prompts):

* ``steppath-2``, ``steppath-3``, ``steppath-4``: reach rooms 2, 15, 12 (CogEval's 2stepPath, 3stepPath and
  nstepPath pairs; optimal lengths 2, 3, 4).
* ``valuepath``: reward 50 in room 8 (3 moves away) and 10 in room 4 (2 moves away); entering either reward
  room collects it and ends the episode, so only one can be collected; success = room 8 reached.
* ``detour``: two phases. Phase 1 (the "first answer"): reach room 8. Then the door 1–11 is locked and a new
  door 1–15 opens (CogEval's nonteleDetour change); the agent is back in room 1 and must reach room 8 again
  (4 moves now: e.g. 1, 15, 12, 3, 8).
* ``revaluation``: two phases. Phase 1 is valuepath; then the rewards change to 12 (room 8) and 48 (room 4),
  the agent is back in room 1 and must collect the larger one (room 4, 2 moves).

Solved = the (last) target reached with no invalid transition, within 6 moves per phase (the move cap).
Entering a non-target reward room is a terminal failure. States are ``(task, phase, room)``; the goal of a
task is ``(task, number of phases, target)``.

Text: the observation lists the doors, the announced changes, the rewards, the current room and its doors
(restated from the list: ``"You are in room 1. Doors from here lead to rooms 7, 10, 11, 13."``), and ends with
``"Move to room: "``; an action is a room number (``"11"``; ``"room 11"``, ``"go to room 11"`` parse too).
Naming a room without a door from here (or the current room, or a room number outside 1..15) is invalid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from irl_bilevel.validation import ValidationError
from llm.agentic.base import FiniteTextEnv, Parsed, first_line

NUM_ROOMS = 15
MOVE_CAP = 6
# cogeval/cogmaps task_templates/n15star/ordRooms.md (Schapiro et al. 2013 community graph).
ROOM_EDGES: tuple[tuple[int, int], ...] = (
    (1, 7), (1, 10), (1, 13), (1, 11), (2, 5), (2, 8), (2, 11), (2, 14),
    (3, 6), (3, 9), (3, 12), (3, 8), (4, 7), (4, 10), (4, 13), (4, 15),
    (5, 8), (5, 11), (5, 14), (6, 9), (6, 12), (6, 15), (7, 10), (7, 13),
    (8, 14), (9, 12), (9, 15), (10, 13), (11, 14), (12, 15),
)  # fmt: skip

Edge = frozenset[int]
NavState = tuple[int, int, int]  # (task index, phase, room)

_ROOM = re.compile(r"(?:(?:go|move)\s+(?:to\s+)?)?(?:room\s+)?(\d+)\s*\.?", re.IGNORECASE)


def _edge(a: int, b: int) -> Edge:
    return frozenset((a, b))


@dataclass(frozen=True)
class Phase:
    """One question of a task: reach ``target`` from ``start``; ``rewards`` rooms end the phase when entered.

    ``locked`` doors are removed from and ``opened`` doors added to the base graph; ``announcement`` tells the
    agent about the change.
    """

    start: int
    target: int
    rewards: Mapping[int, int] = field(default_factory=dict)
    locked: tuple[tuple[int, int], ...] = ()
    opened: tuple[tuple[int, int], ...] = ()
    announcement: str = ""

    def doors(self) -> frozenset[Edge]:
        edges = {_edge(a, b) for a, b in ROOM_EDGES}
        edges -= {_edge(a, b) for a, b in self.locked}
        edges |= {_edge(a, b) for a, b in self.opened}
        return frozenset(edges)


@dataclass(frozen=True)
class NavTask:
    name: str
    kind: str  # steppath, valuepath, detour, revaluation
    phases: tuple[Phase, ...]


_VALUE_REWARDS = {8: 50, 4: 10}
_REVALUED = {8: 12, 4: 48}
_DETOUR_NOTE = "The door between rooms 1 and 11 is now locked, and a new door between rooms 1 and 15 is open."
_REVALUATION_NOTE = "The rewards have changed: room 8 now holds 12 and room 4 holds 48."

TASKS: tuple[NavTask, ...] = (
    NavTask("steppath-2", "steppath", (Phase(1, 2),)),
    NavTask("steppath-3", "steppath", (Phase(1, 15),)),
    NavTask("steppath-4", "steppath", (Phase(1, 12),)),
    NavTask("valuepath", "valuepath", (Phase(1, 8, _VALUE_REWARDS),)),
    NavTask("detour", "detour", (Phase(1, 8), Phase(1, 8, {}, ((1, 11),), ((1, 15),), _DETOUR_NOTE))),
    NavTask(
        "revaluation", "revaluation", (Phase(1, 8, _VALUE_REWARDS), Phase(1, 4, _REVALUED, (), (), _REVALUATION_NOTE))
    ),
)
TASK_KINDS = ("steppath", "valuepath", "detour", "revaluation")


class GraphNavEnv(FiniteTextEnv[NavState, int]):
    """Navigation in the 15-room castle over the tasks of ``kinds`` (all four kinds by default)."""

    name = "graph_nav"
    max_steps = MOVE_CAP

    def __init__(self, kinds: Sequence[str] = TASK_KINDS, reward_mode: str = "structured", weights=None) -> None:
        unknown = sorted(set(kinds) - set(TASK_KINDS))
        if unknown or not kinds:
            raise ValidationError(f"kinds: expected a non-empty subset of {list(TASK_KINDS)}, got {list(kinds)}")
        super().__init__(reward_mode, weights)
        self.tasks = tuple(task for task in TASKS if task.kind in kinds)
        self._doors = [[phase.doors() for phase in task.phases] for task in self.tasks]
        self._starts = [(index, 0, task.phases[0].start) for index, task in enumerate(self.tasks)]

    @property
    def starts(self) -> list[NavState]:
        return self._starts

    def neighbours(self, state: NavState) -> list[int]:
        task, phase, room = state
        doors = self._doors[task][phase]
        return sorted(other for other in range(1, NUM_ROOMS + 1) if _edge(room, other) in doors)

    def render_state(self, state: NavState) -> str:
        task_index, phase_index, room = state
        task = self.tasks[task_index]
        phase = task.phases[min(phase_index, len(task.phases) - 1)]
        doors = sorted(tuple(sorted(edge)) for edge in self._doors[task_index][min(phase_index, len(task.phases) - 1)])
        lines = [
            f"A castle has {NUM_ROOMS} rooms. Doors connect rooms " + ", ".join(f"{a}-{b}" for a, b in doors) + "."
        ]
        if phase.announcement and phase_index > 0:
            lines.append(phase.announcement)
        if phase.rewards:
            listed = " and ".join(f"room {r} holds {v}" for r, v in sorted(phase.rewards.items()))
            lines.append(f"Rewards: {listed}. Entering a reward room collects it; only one can be collected.")
            lines.append("Goal: collect the largest reward by the shortest path.")
        else:
            lines.append(f"Goal: reach room {phase.target} by the shortest path.")
        # The doors of the current room are restated next to it (the information is the door list's, so the task
        # is unchanged): with whitespace tokens ("1-7,") a small LM cannot look a room's doors up in the list, and
        # the built-in model's legal-move rate on steppath stayed at chance (4 of 15 rooms) without this line.
        exits = ", ".join(str(other) for other in self.neighbours((task_index, min(phase_index, len(task.phases) - 1),
                                                                   room)))
        lines += [f"You are in room {room}. Doors from here lead to rooms {exits}.", "Move to room: "]
        return "\n".join(lines)

    def parse_action(self, text: str) -> Parsed[int]:
        match = _ROOM.fullmatch(first_line(text))
        if match is None:
            return Parsed(None, f"expected a room number like '11', got {text[:40]!r}")
        return Parsed(int(match.group(1)))

    def format_action(self, action: int) -> str:
        return str(action)

    def canonical_actions(self) -> list[int]:
        return list(range(1, NUM_ROOMS + 1))

    def legality_error(self, state: NavState, action: int) -> str | None:
        if not 1 <= action <= NUM_ROOMS:
            return f"there is no room {action}; rooms are 1..{NUM_ROOMS}"
        if action == state[2]:
            return f"already in room {action}"
        if action not in self.neighbours(state):
            return f"no door from room {state[2]} to room {action}"
        return None

    def transition(self, state: NavState, action: int) -> NavState:
        task_index, phase_index, _ = state
        phases = self.tasks[task_index].phases
        if action == phases[phase_index].target:
            if phase_index + 1 == len(phases):
                return (task_index, phase_index + 1, action)
            return (task_index, phase_index + 1, phases[phase_index + 1].start)
        return (task_index, phase_index, action)

    def is_success(self, state: NavState) -> bool:
        return state[1] == len(self.tasks[state[0]].phases)

    def is_failure(self, state: NavState) -> bool:
        task_index, phase_index, room = state
        phases = self.tasks[task_index].phases
        if phase_index == len(phases):
            return False
        phase = phases[phase_index]
        return room in phase.rewards and room != phase.target

    def phase(self, state: NavState) -> int:
        return state[1]
