"""A small typed tool-use task in the spirit of ToolChain* (Zhuang et al. 2023).

API (every argument is named and typed; ``number`` is an int or float literal or a reference ``$k`` to the
result of the k-th executed call, 1-based):

* ``convert(value: number, from: unit, to: unit)``: unit conversion within one dimension (length
  ``mm cm m km in ft mi``, mass ``g kg lb``, time ``s min h``);
* ``add(a: number, b: number)``, ``subtract(a, b)``, ``multiply(a, b)``, ``divide(a, b)`` (``b ≠ 0``);
* ``lookup(table: name, key: name)``: a fixed table (``distance_km`` between cities, ``price_eur`` of items);
* ``round(value: number, digits: int)`` with ``0 <= digits <= 6``.

Each call's result is appended to the results list; the state is ``(task index, results)``. A task has a
question, constants and a gold call sequence; success = a call returns the gold result (the gold
sequence's last result, up to ``1e-9`` relative). An action is a call such as
``convert(value=3, from="km", to="m")``. **Malformed**: not of the form ``name(key=value, …)`` with quoted
strings, numbers or ``$k``. **Invalid**: parses but fails the typed check or execution (unknown function,
missing/extra/mistyped argument, unknown unit, mixed dimensions, ``$k`` beyond the results, unknown key,
division by zero). Move cap per task: ``len(gold) + 4`` calls.

Progress aspect: the number of gold intermediate results produced, counted as the longest prefix of the
gold results that all appear among the executed results; the distance to the goal is the rest of the gold
sequence. The action space is infinite; ``legal_actions`` enumerates a finite candidate set (the task's
constants and the ``$k`` references as numbers, same-dimension unit pairs, every table key, digits 0..2) for
search.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from irl_bilevel.validation import ValidationError
from llm.agentic.base import Parsed, TextEnv, first_line

UNITS: dict[str, tuple[str, float]] = {
    # unit: (dimension, size in the dimension's base unit)
    "mm": ("length", 0.001), "cm": ("length", 0.01), "m": ("length", 1.0), "km": ("length", 1000.0),
    "in": ("length", 0.0254), "ft": ("length", 0.3048), "mi": ("length", 1609.344),
    "g": ("mass", 0.001), "kg": ("mass", 1.0), "lb": ("mass", 0.45359237),
    "s": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0),
}  # fmt: skip
TABLES: dict[str, dict[str, float]] = {
    "distance_km": {"paris-berlin": 878.0, "paris-madrid": 1053.0, "rome-vienna": 765.0},
    "price_eur": {"apple": 0.4, "bread": 2.5, "coffee": 3.2},
}
# Argument types: "number" (literal or $k), "unit", "name", "int".
SIGNATURES: dict[str, tuple[tuple[str, str], ...]] = {
    "convert": (("value", "number"), ("from", "unit"), ("to", "unit")),
    "add": (("a", "number"), ("b", "number")),
    "subtract": (("a", "number"), ("b", "number")),
    "multiply": (("a", "number"), ("b", "number")),
    "divide": (("a", "number"), ("b", "number")),
    "lookup": (("table", "name"), ("key", "name")),
    "round": (("value", "number"), ("digits", "int")),
}

ArgValue = int | float | str  # a "$k" reference is kept as the string "$k"; a quoted string as "'text"
ToolCall = tuple[str, tuple[tuple[str, ArgValue], ...]]  # (function, ((argument, value), ...)) in signature order
ToolState = tuple[int, tuple[float, ...]]  # (task index, results so far)

_CALL = re.compile(r"([A-Za-z_]\w*)\s*\((.*)\)\s*;?")
_ARGUMENT = re.compile(
    r"\s*([A-Za-z_]\w*)\s*=\s*(\"[^\"]*\"|'[^']*'|\$\d+|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?:,|$)"
)


@dataclass(frozen=True)
class ToolTask:
    name: str
    question: str
    gold: tuple[str, ...]  # the gold call sequence, as text
    constants: tuple[float, ...]  # the numbers of the question (the search's literal candidates)


TASKS: tuple[ToolTask, ...] = (
    ToolTask("km-to-m", "How many metres are 3.5 km?", ('convert(value=3.5, from="km", to="m")',), (3.5,)),
    ToolTask(
        "apples",
        "What do 3 apples cost in EUR?",
        ('lookup(table="price_eur", key="apple")', "multiply(a=$1, b=3)"),
        (3.0,),
    ),
    ToolTask(
        "paris-berlin-miles",
        "How many miles is it from Paris to Berlin, rounded to 1 decimal?",
        (
            'lookup(table="distance_km", key="paris-berlin")',
            'convert(value=$1, from="km", to="mi")',
            "round(value=$2, digits=1)",
        ),
        (1.0,),
    ),
    ToolTask(
        "minutes",
        "How many minutes are 2.5 hours plus 45 minutes?",
        ('convert(value=2.5, from="h", to="min")', "add(a=$1, b=45)"),
        (2.5, 45.0),
    ),
    ToolTask(
        "bags-in-pounds",
        "How many pounds do 4 bags of 1.2 kg weigh?",
        ("multiply(a=4, b=1.2)", 'convert(value=$1, from="kg", to="lb")'),
        (4.0, 1.2),
    ),
    ToolTask(
        "average-speed",
        "A train goes from Paris to Berlin in 9.5 hours. What is its average speed in km/h, rounded to 1 decimal?",
        ('lookup(table="distance_km", key="paris-berlin")', "divide(a=$1, b=9.5)", "round(value=$2, digits=1)"),
        (9.5, 1.0),
    ),
)


def same_number(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def parse_call(text: str) -> Parsed[ToolCall]:
    """Syntax only: ``name(key=value, ...)``; the typed check is ``check_call``."""
    line = first_line(text)
    match = _CALL.fullmatch(line)
    if match is None:
        return Parsed(None, f"expected a call like add(a=1, b=2), got {line[:40]!r}")
    arguments: list[tuple[str, ArgValue]] = []
    rest = match.group(2).strip()
    position = 0
    while position < len(rest):
        argument = _ARGUMENT.match(rest, position)
        if argument is None:
            return Parsed(None, f"cannot read the arguments {rest[position:][:40]!r}; expected key=value pairs")
        key, raw = argument.group(1), argument.group(2)
        value: ArgValue
        if raw[0] in "\"'":
            value = "'" + raw[1:-1]
        elif raw.startswith("$"):
            value = raw
        else:
            number = float(raw)
            value = int(number) if re.fullmatch(r"[-+]?\d+", raw) else number
        arguments.append((key, value))
        position = argument.end()
    names = [key for key, _ in arguments]
    if len(set(names)) != len(names):
        return Parsed(None, f"repeated argument in {line[:40]!r}")
    return Parsed((match.group(1), tuple(arguments)))


def format_call(call: ToolCall) -> str:
    def show(value: ArgValue) -> str:
        if isinstance(value, str):
            return f'"{value[1:]}"' if value.startswith("'") else value
        return repr(value)

    name, arguments = call
    return f"{name}(" + ", ".join(f"{key}={show(value)}" for key, value in arguments) + ")"


def check_call(call: ToolCall, results: Sequence[float]) -> tuple[float | None, str | None]:
    """Type-check and execute ``call`` given the earlier ``results``: ``(result, None)`` or ``(None, why)``."""
    name, arguments = call
    if name not in SIGNATURES:
        return None, f"unknown function {name!r}; expected one of {sorted(SIGNATURES)}"
    signature = SIGNATURES[name]
    given = dict(arguments)
    expected = [key for key, _ in signature]
    if sorted(given) != sorted(expected):
        return None, f"{name} takes arguments {expected}, got {sorted(given)}"
    values: dict[str, float | str | int] = {}
    for key, kind in signature:
        value = given[key]
        if kind == "number":
            if isinstance(value, str) and value.startswith("$"):
                index = int(value[1:])
                if not 1 <= index <= len(results):
                    return None, f"{key}: {value} refers to a call that has not run ({len(results)} results so far)"
                values[key] = results[index - 1]
            elif isinstance(value, (int, float)):
                values[key] = float(value)
            else:
                return None, f"{key}: expected a number or $k, got a string"
        elif kind == "int":
            if not isinstance(value, int) or not 0 <= value <= 6:
                return None, f"{key}: expected an integer in [0, 6], got {value!r}"
            values[key] = value
        else:
            if not isinstance(value, str) or not value.startswith("'"):
                return None, f"{key}: expected a quoted {kind}, got {value!r}"
            values[key] = value[1:]
    return _execute(name, values)


def _execute(name: str, v: dict[str, float | str | int]) -> tuple[float | None, str | None]:
    if name == "convert":
        source, target = str(v["from"]), str(v["to"])
        for unit in (source, target):
            if unit not in UNITS:
                return None, f"unknown unit {unit!r}; expected one of {sorted(UNITS)}"
        if UNITS[source][0] != UNITS[target][0]:
            return None, f"cannot convert {UNITS[source][0]} ({source}) to {UNITS[target][0]} ({target})"
        return float(v["value"]) * UNITS[source][1] / UNITS[target][1], None
    if name == "lookup":
        table, key = str(v["table"]), str(v["key"])
        if table not in TABLES:
            return None, f"unknown table {table!r}; expected one of {sorted(TABLES)}"
        if key not in TABLES[table]:
            return None, f"table {table} has no key {key!r}; keys are {sorted(TABLES[table])}"
        return TABLES[table][key], None
    if name == "round":
        return float(round(float(v["value"]), int(v["digits"]))), None
    a, b = float(v["a"]), float(v["b"])
    if name == "divide":
        if b == 0:
            return None, "division by zero"
        return a / b, None
    return {"add": a + b, "subtract": a - b, "multiply": a * b}[name], None


def gold_results(task: ToolTask) -> tuple[float, ...]:
    """The results of the gold call sequence (each gold call must parse and run)."""
    results: list[float] = []
    for text in task.gold:
        parsed = parse_call(text)
        if parsed.action is None:
            raise ValidationError(f"task {task.name}: gold call {text!r} does not parse: {parsed.error}")
        result, error = check_call(parsed.action, results)
        if result is None:
            raise ValidationError(f"task {task.name}: gold call {text!r} fails: {error}")
        results.append(result)
    return tuple(results)


class ToolUseEnv(TextEnv[ToolState, ToolCall]):
    """The typed tool-use tasks (all of ``TASKS`` by default)."""

    name = "tool_use"

    def __init__(self, tasks: Sequence[ToolTask] = TASKS, reward_mode: str = "structured", weights=None) -> None:
        if not tasks:
            raise ValidationError("tasks: expected at least one tool-use task")
        super().__init__(reward_mode, weights)
        self.tasks = tuple(tasks)
        self.gold = [gold_results(task) for task in self.tasks]
        self.max_steps = max(len(task.gold) for task in self.tasks) + 4
        self._starts: list[ToolState] = [(index, ()) for index in range(len(self.tasks))]
        self._candidates: dict[tuple[int, int], list[ToolCall]] = {}

    @property
    def starts(self) -> list[ToolState]:
        return self._starts

    def render_state(self, state: ToolState) -> str:
        task_index, results = state
        signatures = "; ".join(
            f"{name}(" + ", ".join(f"{key}: {kind}" for key, kind in signature) + ")"
            for name, signature in SIGNATURES.items()
        )
        lines = [
            f"Tools: {signatures}. A number may be $k, the result of call k.",
            f"Task: {self.tasks[task_index].question}",
        ]
        lines += [f"${k} = {value:g}" for k, value in enumerate(results, start=1)]
        lines.append("Call: ")
        return "\n".join(lines)

    def parse_action(self, text: str) -> Parsed[ToolCall]:
        return parse_call(text)

    def format_action(self, action: ToolCall) -> str:
        return format_call(action)

    def legality_error(self, state: ToolState, action: ToolCall) -> str | None:
        return check_call(action, state[1])[1]

    def transition(self, state: ToolState, action: ToolCall) -> ToolState:
        result, error = check_call(action, state[1])
        if result is None:
            raise ValidationError(f"action: {format_call(action)} is not legal here: {error}")
        return (state[0], (*state[1], result))

    def is_success(self, state: ToolState) -> bool:
        return bool(state[1]) and same_number(state[1][-1], self.gold[state[0]][-1])

    def matched_gold(self, state: ToolState) -> int:
        """The longest prefix of the gold results that all appear among the executed results."""
        task_index, results = state
        matched = 0
        for value in self.gold[task_index]:
            if not any(same_number(value, r) for r in results):
                break
            matched += 1
        return matched

    def distance_to_goal(self, state: ToolState) -> float:
        if self.is_success(state):
            return 0.0
        return float(max(1, len(self.gold[state[0]]) - self.matched_gold(state)))

    def gold_plan(self, state: ToolState) -> list[ToolCall]:
        """The optimal solver: the gold call sequence of the state's task (from its start)."""
        plan = []
        for text in self.tasks[state[0]].gold:
            parsed = parse_call(text)
            assert parsed.action is not None
            plan.append(parsed.action)
        return plan

    def legal_actions(self, state: ToolState) -> list[ToolCall]:
        if self.is_terminal(state):
            return []
        return [call for call in self.candidate_calls(state) if self.legality_error(state, call) is None]

    def candidate_calls(self, state: ToolState) -> list[ToolCall]:
        """The finite candidate grammar of ``state`` before the typed check (``legal_actions`` filters it); it
        depends only on the task and the number of results so far, so it is built once per pair."""
        key = (state[0], len(state[1]))
        if key not in self._candidates:
            self._candidates[key] = self._build_candidates(*key)
        return self._candidates[key]

    def _build_candidates(self, task_index: int, num_results: int) -> list[ToolCall]:
        numbers: list[ArgValue] = [*self.tasks[task_index].constants, *(f"${k}" for k in range(1, num_results + 1))]
        candidates: list[ToolCall] = []
        for value, source, target in itertools.product(numbers, UNITS, UNITS):
            if source != target and UNITS[source][0] == UNITS[target][0]:
                candidates.append(("convert", (("value", value), ("from", "'" + source), ("to", "'" + target))))
        for name in ("add", "subtract", "multiply", "divide"):
            for a, b in itertools.product(numbers, numbers):
                candidates.append((name, (("a", a), ("b", b))))
        for table, keys in TABLES.items():
            candidates += [("lookup", (("table", "'" + table), ("key", "'" + key))) for key in keys]
        for value, digits in itertools.product(numbers, range(3)):
            candidates.append(("round", (("value", value), ("digits", digits))))
        return candidates
