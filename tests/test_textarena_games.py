"""TextArena's games through the agentic interface (llm/agentic/textarena_games.py), checked against TextArena itself:
the project's Hanoi against TextArena's rules, solver plans replayed in fresh TextArena envs, the parsers against
TextArena's format errors, offline play, and the interface's counting on the adapted games."""

from __future__ import annotations

import random
import socket

import pytest

from llm.agentic import (
    TEXTARENA_GAMES,
    ArenaFrozenLake,
    ArenaHanoi,
    ArenaLightsOut,
    HanoiEnv,
    build_tabular_mdp,
    reward_guided_search,
)
from llm.agentic.textarena_games import make_raw_env, preserved_global_random

textarena = pytest.importorskip("textarena")

FORMAT_ERRORS = {"ta-hanoi": "did not respond with valid", "ta-frozenlake": "invalid action format",
                 "ta-frozenlake-5x5": "invalid action format", "ta-lightsout": "must be in format"}


@pytest.fixture(scope="module")
def games():
    """One instance of each game (the state graphs are memoized TextArena calls; built once per module)."""
    with preserved_global_random():
        return {name: cls() for name, cls in TEXTARENA_GAMES.items()}


def fresh_arena(game, seed):
    arena = make_raw_env(game.env_id, **game.env_kwargs)
    with preserved_global_random():
        arena.reset(num_players=1, seed=seed)
    return arena


def last_reason(arena) -> str:
    messages = [str(m) for _, m, _ in arena.state.observations[0] if "invalid move" in str(m).lower()]
    return messages[-1].lower() if messages else ""


def to_arena_hanoi(state):
    """The project's Hanoi state (numbers 0..2, 0 the largest) as TextArena's towers (disks 3..1, 3 the largest)."""
    return tuple(tuple(3 - k for k in tower) for tower in state)


# ---------------------------------------------------------------------- the project's Hanoi against TextArena's
def test_the_projects_hanoi_agrees_with_textarena_on_every_state_and_move_except_same_tower_moves(games):
    ours, arena = HanoiEnv(3), games["ta-hanoi"]
    differences = []
    for state in [*ours.reachable_states(), ((0, 1, 2), (), ())]:
        mapped = to_arena_hanoi(state)
        if ours.is_success(state):
            assert arena.is_success(mapped)  # TextArena's goal is the project's goal
            continue
        for source in range(3):
            for target in range(3):
                outcome = arena.play(mapped, (source, target))
                our_error = ours.legality_error(state, (source, target))
                if source == target:
                    # TextArena's only difference: [A A] on a non-empty tower is a legal move that changes nothing.
                    assert outcome.invalid == (not state[source])
                    if not outcome.invalid:
                        assert outcome.next_state == mapped
                        differences.append(state)
                    continue
                assert outcome.invalid == (our_error is not None), (state, source, target)
                if our_error is None:
                    following = ours.transition(state, (source, target))
                    assert outcome.next_state == to_arena_hanoi(following)
                    assert (outcome.status == "won") == ours.is_success(following)
                    assert outcome.status != "lost"  # Hanoi has no dead end
    assert differences  # the documented difference exists (if TextArena changes its rule, the docstring must too)
    assert arena.starts == [to_arena_hanoi(((0, 1, 2), (), ()))]  # TextArena's one start: all on A
    assert arena.distance_to_goal(arena.starts[0]) == 7 == HanoiEnv(3).distance_to_goal(((0, 1, 2), (), ()))


def test_random_move_sequences_in_one_continuous_textarena_game_match_the_adapter(games):
    """The adapter replays every move from a fresh reset; one continuous TextArena game gives the same states and the
    same end (legal, invalid and no-op moves mixed; an invalid move is never followed by a second one, which would
    end TextArena's game, not the adapter's; TextArena's 14-turn limit ends some games lost)."""
    game = games["ta-hanoi"]
    rng = random.Random(0)
    for _ in range(40):
        arena = fresh_arena(game, 0)
        state, previous_invalid = game.starts[0], False
        for _step in range(30):
            action = (rng.randrange(3), rng.randrange(3))
            outcome = game.play(state, action)
            if outcome.invalid and previous_invalid:
                continue
            done, _ = arena.step(game.format_action(action))
            assert (arena.state.error_count > 0) == outcome.invalid
            assert game.read_state(arena, 0) == outcome.next_state
            state, previous_invalid = outcome.next_state, outcome.invalid
            if done and outcome.status == "won":
                assert arena.state.rewards[0] == 1
                break
            if done:  # TextArena's own turn limit (14 turns), which the adapter leaves to the project's move cap
                assert arena.state.turn >= arena.max_turns and arena.state.rewards[0] < 1
                break
            assert outcome.status == "running"


# ---------------------------------------------------------------------- solvers, parsers, offline
@pytest.mark.parametrize("name", list(TEXTARENA_GAMES))
def test_every_solver_plan_wins_a_fresh_textarena_game(games, name):
    game = games[name]
    for start, seed in zip(game.starts, game.start_seeds):
        plan = game.optimal_plan(start)
        assert len(plan) == game.distance_to_goal(start) <= game.max_steps
        arena = fresh_arena(game, seed)
        assert game.read_state(arena, seed) == start
        for index, action in enumerate(plan):
            done, _ = arena.step(game.format_action(action))
            assert arena.state.error_count == 0
            assert done == (index == len(plan) - 1)
        rewards, _ = arena.close()
        assert rewards == {0: 1} or rewards == {0: 1.0}


@pytest.mark.parametrize("name", list(TEXTARENA_GAMES))
def test_the_parser_calls_malformed_exactly_what_textarena_cannot_read(games, name):
    game = games[name]
    canonical = [game.format_action(a) for a in game.canonical_actions()]
    texts = ["", "hello", "A C", "[A]", "[up", "up", "[1,2]", "[1 2", "1 2", "[ x ]", "[[A C]]", "[ a , c ]",
             "move [b c] now", "[W]", "[ down ]", "[10 0]", " [2 1] ", "[1 2] ok", "[LEFT]", *canonical]
    rng = random.Random(1)
    alphabet = "[]ABCabcupdownleftright 0123,"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(200)]
    malformed = 0
    for text in texts:
        arena = fresh_arena(game, game.start_seeds[0])
        arena.step(text)
        textarena_cannot_read = FORMAT_ERRORS[name] in last_reason(arena)
        parsed = game.parse_action(text)
        assert (parsed.action is None) == textarena_cannot_read, (name, text)
        malformed += parsed.action is None
    assert 0 < malformed < len(texts)


def test_the_games_play_with_the_network_off_and_leave_the_global_random_state_alone(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access in a test of offline games")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    random.seed(123)
    before = random.getstate()
    for cls in (ArenaHanoi, ArenaFrozenLake, ArenaLightsOut):
        game = cls()
        for start in game.starts[:3]:
            state = start
            for action in game.optimal_plan(start):
                state = game.transition(state, action)
            assert game.is_success(state)
    assert random.getstate() == before


# ---------------------------------------------------------------------- the interface on the adapted games
def test_text_steps_count_malformed_invalid_and_dead_ends_with_textarenas_verdicts(games):
    lake = games["ta-frozenlake"]
    observation, info = lake.reset(options={"start": 0})
    assert observation.endswith("You are at row 0 , column 0 .\nMove: ") and "+-----+" in observation
    _, reward, terminated, _, info = lake.step("go down please")
    assert info["kind"] == "malformed" and not terminated and reward == pytest.approx(-1.1)
    _, _, _, _, info = lake.step("[up]")  # off the grid: TextArena rejects it
    assert info["kind"] == "invalid" and "wall" in info["error"]
    _, _, _, _, info = lake.step("[s]")  # TextArena's w/a/s/d keys parse too
    assert info["kind"] == "legal" and info["state"] == (lake.starts[0][0], 1, 0)
    # A hole ends the game lost: a dead end with infinite distance and progress −1.
    holes = [s for s in lake.reachable_states() if lake.is_failure(s)]
    assert holes and all(lake.distance_to_goal(s) == float("inf") for s in holes)
    hole = holes[0]
    before = next(s for s, moves in lake.state_graph().items() if any(t == hole for _, t in moves))
    action = next(a for a, t in lake.state_graph()[before] if t == hole)
    aspects = lake.step_aspects(before, action, hole, "legal")
    assert aspects[lake.aspect_names.index("progress")] == -1.0
    lights = games["ta-lightsout"]
    assert lights.legality_error(lights.starts[0], (3, 0)) is not None  # TextArena: coordinates out of range
    assert len(lights.reachable_states()) == 512 and max(lights.distance_to_goal(s) for s in lights.starts) <= 9
    assert not any(s == (False,) * 9 for s in lights.starts)  # an all-off scramble is no start


@pytest.mark.parametrize("name", list(TEXTARENA_GAMES))
def test_export_and_search_run_on_the_adapted_games(games, name):
    game = games[name]
    export = build_tabular_mdp(game, 0.9)
    assert export.mdp.num_states == len(game.reachable_states())
    assert export.mdp.num_actions == len(game.canonical_actions())
    for start in game.starts[:4]:
        found = reward_guided_search(game, start, game.true_step_reward, max_expansions=2_000)
        assert found.found and len(found.plan) == game.distance_to_goal(start)


def test_the_recipe_takes_n_documents_per_environment_and_old_recipes_keep_their_key():
    from llm.builtin_model import AGENTIC_ENVS, BuiltinRecipe

    recipe = BuiltinRecipe.tiny(agentic_envs=("hanoi-3", "ta-lightsout"), n_positions=96, agentic_documents_per_env=100)
    documents = recipe.agentic_documents()
    hanoi = [d for d in documents if d.startswith("Tower of Hanoi. Move")]
    lights = [d for d in documents if d.startswith("Lights Out")]
    assert len(documents) == 200 and len(hanoi) == 100 and len(lights) == 100
    assert len(set(hanoi)) == 76 and len(set(lights)) == 100  # Hanoi's 76 cycled; 100 of Lights Out's 4,599
    assert recipe.agentic_documents() == documents  # seeded
    assert "agentic_documents_per_env" in recipe.as_dict()
    # Without the field a recipe's dictionary, hence its cache key and its document order, is what it was.
    old = BuiltinRecipe(agentic_envs=("hanoi-3", "steppath"), agentic_repeats=20, n_positions=96)
    assert "agentic_documents_per_env" not in old.as_dict() and old.key() == "600614b532053a67"
    # Every TextArena game of the built-in recipe's environments fits the agentic context (96) whole.
    for name in (name for name in TEXTARENA_GAMES if name in AGENTIC_ENVS):
        longest = max(len(d.split()) + 2 for d in BuiltinRecipe.tiny(agentic_envs=(name,), n_positions=96,
                                                                      agentic_documents_per_env=50).agentic_documents())
        assert longest <= 96
