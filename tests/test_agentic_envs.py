"""The multi-step text environments (llm/agentic): rules, start sets, solvers, counting, search, export, metrics."""

import itertools
import math
import subprocess
import sys
from collections import deque

import numpy as np
import pytest
import torch

from irl_bilevel.hypergradients import BilevelProblem, MaxEntHypergradient
from irl_bilevel.inner import SoftValueIterationSolver
from irl_bilevel.objectives import MaxEntDemonstrationLoss
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.tabular import soft_value_iteration
from irl_bilevel.validation import ValidationError
from llm.agentic import (
    ASPECT_NAMES,
    EpisodeRecord,
    GraphNavEnv,
    HanoiEnv,
    ToolUseEnv,
    build_tabular_mdp,
    check_aspect_names,
    invalid_action_rate,
    malformed_rate,
    optimal_demonstrations,
    plan_length_ratio,
    reward_guided_search,
    run_episode,
    solver_plans,
    success_rate,
    success_stability,
    summarize,
    text_demonstrations,
    text_step_reward,
)
from llm.agentic.export import AspectTableReward
from llm.agentic.graph_nav import ROOM_EDGES, TASKS
from llm.agentic.hanoi import goal_state, is_valid_state, start_states
from llm.agentic.tool_use import check_call, parse_call


# ---------------------------------------------------------------------- independent oracles
def hanoi_successors(state):
    """The MAP rules written out again, independently of the environment: last element moves onto smaller."""
    for source, target in itertools.permutations(range(3), 2):
        if state[source] and all(x < state[source][-1] for x in state[target]):
            lists = [list(peg) for peg in state]
            lists[target].append(lists[source].pop())
            yield tuple(tuple(peg) for peg in lists)


def bfs_distance(start, goal_test, successors):
    distance, queue = {start: 0}, deque([start])
    while queue:
        state = queue.popleft()
        if goal_test(state):
            return distance[state]
        for nxt in successors(state):
            if nxt not in distance:
                distance[nxt] = distance[state] + 1
                queue.append(nxt)
    return math.inf


def room_distance(start, target, locked=(), opened=()):
    edges = {frozenset(e) for e in ROOM_EDGES} - {frozenset(e) for e in locked} | {frozenset(e) for e in opened}
    return bfs_distance(start, lambda r: r == target, lambda r: [o for o in range(1, 16) if frozenset((r, o)) in edges])


def play(env, start, texts):
    env.reset(options={"start": start})
    out = None
    for text in texts:
        out = env.step(text)
        if out[2] or out[3]:
            break
    return out


# ---------------------------------------------------------------------- Tower of Hanoi
def test_hanoi_three_disk_starts_match_the_map_definition():
    """26 = all on A (1) + all on B (1) + 2+1 splits over two lists (3 lone disks × 6 ordered list pairs)
    + 1+1+1 splits (3! = 6); built from the definition's categories, compared with the env's start set."""
    n, disks = 3, range(3)
    built = [((0, 1, 2), (), ()), ((), (0, 1, 2), ())]
    for lone in disks:
        pair = tuple(d for d in disks if d != lone)
        for first, second in itertools.permutations(range(3), 2):
            lists = [(), (), ()]
            lists[first], lists[second] = pair, (lone,)
            built.append(tuple(lists))
    built += [tuple((d,) for d in order) for order in itertools.permutations(disks)]
    assert len(built) == 26 == len(set(built))
    starts = start_states(n)
    assert len(starts) == 26 == len(set(starts))
    assert set(built) == set(starts)
    assert goal_state(n) not in starts and all(is_valid_state(s, n) for s in starts)
    assert HanoiEnv(3).max_steps == 10


def test_hanoi_four_disk_starts_are_the_80_non_goal_states():
    """80 = 2 (all on A or B) + 24 (3+1 splits: 4 lone disks × 6 list pairs) + 18 (2+2: 6 ways × 3 list pairs)
    + 36 (2+1+1: 6 pairs of disks × 3! list assignments); 81 = 3^4 with the goal."""
    starts = start_states(4)
    assert len(starts) == 80 == len(set(starts)) and goal_state(4) not in starts
    assert all(is_valid_state(s, 4) for s in starts)
    sizes = [tuple(sorted((len(peg) for peg in s), reverse=True)) for s in starts]
    counts = {shape: sizes.count(shape) for shape in set(sizes)}
    assert counts == {(4, 0, 0): 2, (3, 1, 0): 24, (2, 2, 0): 18, (2, 1, 1): 36}
    assert HanoiEnv(4).max_steps == 20


@pytest.mark.parametrize("num_disks", [3, 4])
def test_hanoi_solver_plans_are_optimal_valid_and_solve_every_start(num_disks):
    env = HanoiEnv(num_disks)
    goal = goal_state(num_disks)
    lengths = []
    for index, (start, plan) in enumerate(solver_plans(env)):
        oracle = bfs_distance(start, lambda s: s == goal, hanoi_successors)
        assert len(plan) == oracle == env.distance_to_goal(start)
        _, _, terminated, truncated, info = play(env, index, [env.format_action(a) for a in plan])
        assert terminated and not truncated and info["solved"] and info["steps"] == oracle
        lengths.append(oracle)
    # The longest optimal plan is 2^n − 1 (7, 15), within the move caps 10 and 20.
    assert max(lengths) == 2**num_disks - 1 <= env.max_steps


def test_hanoi_top_of_a_list_is_its_last_element():
    env = HanoiEnv(3)
    state = ((0, 1), (2,), ())
    assert env.legality_error(state, (1, 0)) is None  # 2 goes on [0, 1]: all smaller
    assert env.transition(state, (1, 0)) == ((0, 1, 2), (), ())
    assert "larger" in env.legality_error(state, (0, 1))  # 1 cannot go on [2]
    assert env.legality_error(state, (2, 0)) == "list C is empty"
    observation, _ = env.reset(options={"start": 0})
    assert observation.endswith("State: A=[0, 1, 2] B=[] C=[]\nMove: ")
    for text in ["A C", "a->c", "A to C", "from A to C", "move A C", "A C\nState: ..."]:
        assert env.parse_action(text).action == (0, 2), text


# ---------------------------------------------------------------------- counting malformed and invalid actions
@pytest.mark.parametrize(
    ("env", "invalid", "legal"),
    [(HanoiEnv(3), "C A", "A C"), (GraphNavEnv(["steppath"]), "5", "11"), (ToolUseEnv(), "foo(x=1)", None)],
)
def test_malformed_and_invalid_actions_are_counted_penalised_and_never_crash(env, invalid, legal):
    env.reset(options={"start": 0})
    texts = ["", "@@@ nonsense", "A B C D (", invalid]
    infos, rewards = [], []
    for text in texts:
        _, reward, terminated, truncated, info = env.step(text)
        assert not terminated and not truncated
        infos.append(info)
        rewards.append(reward)
    assert [i["kind"] for i in infos] == ["malformed", "malformed", "malformed", "invalid"]
    assert infos[-1]["num_malformed"] == 3 and infos[-1]["num_invalid"] == 1 and infos[-1]["steps"] == 4
    assert infos[-1]["state"] == env.starts[0]  # nothing moved
    k = {name: i for i, name in enumerate(ASPECT_NAMES)}
    assert infos[0]["reward_aspects"][k["malformed"]] == -1 and infos[3]["reward_aspects"][k["invalid"]] == -1
    assert all(r < 0 for r in rewards)
    if legal is not None:
        _, _, _, _, info = env.step(legal)
        assert info["kind"] == "legal" and info["reward_aspects"][k["progress"]] == 1.0
    with pytest.raises(ValidationError, match="action_text"):
        env.step(3)  # type: ignore[arg-type]


def test_move_cap_truncates_and_stepping_after_the_end_is_an_error():
    env = HanoiEnv(3)
    with pytest.raises(ValidationError, match="reset"):
        env.step("A C")
    env.reset(options={"start": 0})
    for _ in range(9):
        assert not env.step("???")[3]
    _, _, terminated, truncated, info = env.step("???")
    assert truncated and not terminated and info["num_malformed"] == 10 and not info["solved"]
    with pytest.raises(ValidationError, match="reset"):
        env.step("A C")
    with pytest.raises(ValidationError, match=r"options\.start"):
        env.reset(options={"start": 26})
    with pytest.raises(ValidationError, match="unknown key"):
        env.reset(options={"task": 1})


def test_sparse_variant_rewards_success_only_and_structured_total_is_the_weighted_aspects():
    sparse, structured = HanoiEnv(3, reward_mode="sparse"), HanoiEnv(3)
    start = sparse.starts.index(((0, 1, 2), (), ()))
    plan = [sparse.format_action(a) for a in sparse.optimal_plan(sparse.starts[start])]
    for env in (sparse, structured):
        env.reset(options={"start": start})
        outs = [env.step(text) for text in ["xx", *plan]]
        aspects = np.stack([o[4]["reward_aspects"] for o in outs])
        rewards = np.array([o[1] for o in outs])
        if env is sparse:
            assert rewards.tolist() == [0.0] * len(plan) + [1.0]
        else:
            assert np.allclose(rewards, aspects @ np.asarray(env.weights))
            assert aspects[:, ASPECT_NAMES.index("progress")].sum() == len(plan)  # telescopes to d(start)
    with pytest.raises(ValidationError, match="reward_mode"):
        HanoiEnv(3, reward_mode="dense")
    with pytest.raises(ValidationError, match="weights"):
        HanoiEnv(3, weights=[1.0, 2.0])


def test_reward_model_aspects_must_match_the_environment():
    env = GraphNavEnv()
    check_aspect_names(env, ASPECT_NAMES)
    with pytest.raises(ValidationError, match="do not match the graph_nav environment"):
        check_aspect_names(env, ("success", "progress"))


# ---------------------------------------------------------------------- graph navigation
def test_graph_is_the_cogeval_15_room_castle():
    assert len(ROOM_EDGES) == 30 == len({frozenset(e) for e in ROOM_EDGES})
    degree = {room: sum(room in e for e in ROOM_EDGES) for room in range(1, 16)}
    assert set(degree.values()) == {4}
    distances = [room_distance(a, b) for a in range(1, 16) for b in range(a + 1, 16)]
    assert max(distances) == 4 and min(distances) == 1


def test_graph_tasks_match_their_definitions():
    by_name = {task.name: task for task in TASKS}
    for length in (2, 3, 4):
        (phase,) = by_name[f"steppath-{length}"].phases
        assert room_distance(phase.start, phase.target) == length
    (value,) = by_name["valuepath"].phases
    assert sorted(value.rewards.values()) == [10, 50] and value.rewards[value.target] == 50
    small = next(r for r, v in value.rewards.items() if v == 10)
    assert room_distance(value.start, small) < room_distance(value.start, value.target)  # the lure is closer
    first, second = by_name["detour"].phases
    assert first.target == second.target and second.locked and second.opened
    assert room_distance(1, 8, second.locked, second.opened) > room_distance(1, 8)  # a real detour
    before, after = by_name["revaluation"].phases
    assert sorted(after.rewards.values()) == [12, 48] and after.rewards[after.target] == 48
    assert before.rewards[before.target] == 50 and after.target != before.target
    for task in TASKS:  # every phase is solvable within the 6-move cap
        for phase in task.phases:
            assert room_distance(phase.start, phase.target, phase.locked, phase.opened) <= GraphNavEnv.max_steps


def test_graph_solver_plans_are_optimal_and_solve_every_task():
    env = GraphNavEnv()
    expected = {"steppath-2": 2, "steppath-3": 3, "steppath-4": 4, "valuepath": 3, "detour": 7, "revaluation": 5}
    for index, (start, plan) in enumerate(solver_plans(env)):
        task = env.tasks[index]
        oracle = sum(room_distance(p.start, p.target, p.locked, p.opened) for p in task.phases)
        assert len(plan) == oracle == expected[task.name] == env.distance_to_goal(start)
        _, _, terminated, _, info = play(env, index, [env.format_action(a) for a in plan])
        assert terminated and info["solved"]


def test_graph_changes_apply_after_the_first_answer_and_the_wrong_reward_ends_the_episode():
    env = GraphNavEnv()
    detour = [t.name for t in env.tasks].index("detour")
    env.reset(options={"start": detour})
    assert env.step("11")[4]["kind"] == "legal"  # door 1–11 still open in phase 1
    for room in ("2", "8"):
        env.step(room)
    assert env.state == (detour, 1, 1)
    assert env.step("11")[4]["kind"] == "invalid"  # now locked
    assert env.step("room 15")[4]["kind"] == "legal"  # the new door
    value = [t.name for t in env.tasks].index("valuepath")
    _, _, terminated, _, info = play(env, value, ["7", "4"])  # collects the 10
    assert terminated and not info["success"] and info["reward_aspects"][ASPECT_NAMES.index("progress")] == -1
    with pytest.raises(ValidationError, match="reset"):  # the episode is over
        env.step("1")
    assert play(env, 0, ["16"])[4]["error"].startswith("there is no room 16")



def test_the_observation_restates_the_current_rooms_doors_of_the_current_phase():
    env = GraphNavEnv()
    for state in env.reachable_states():
        if env.is_terminal(state):
            continue
        line = env.render_state(state).splitlines()[-2]
        exits = line.split("Doors from here lead to rooms ")[1].rstrip(".").split(", ")
        assert line.startswith(f"You are in room {state[2]}.") and [int(r) for r in exits] == env.legal_actions(state)
    detour = [t.name for t in env.tasks].index("detour")
    assert "lead to rooms 7, 10, 11, 13." in env.render_state((detour, 0, 1))
    assert "lead to rooms 7, 10, 13, 15." in env.render_state((detour, 1, 1))  # 1–11 locked, 1–15 opened


# ---------------------------------------------------------------------- tool use
def test_tool_use_gold_sequences_produce_the_gold_results():
    env = ToolUseEnv()
    for index, (start, plan) in enumerate(solver_plans(env)):
        assert plan == env.gold_plan(start)
        _, _, terminated, _, info = play(env, index, [env.format_action(a) for a in plan])
        assert terminated and info["solved"] and info["steps"] == len(env.tasks[index].gold)
        assert info["reward_aspects"][ASPECT_NAMES.index("success")] == 1.0
    assert env.gold[0] == (3500.0,)
    assert env.gold[[t.name for t in env.tasks].index("paris-berlin-miles")][-1] == 545.6


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('convert(value=3, from="km", to="kg")', "cannot convert length"),
        ('convert(value="3", from="km", to="m")', "expected a number"),
        ('convert(value=3, from="km")', "takes arguments"),
        ('convert(value=3, from="parsec", to="m")', "unknown unit"),
        ("round(value=2.5, digits=1.5)", "expected an integer"),
        ("add(a=$2, b=1)", "has not run"),
        ("divide(a=1, b=0)", "division by zero"),
        ('lookup(table="price_eur", key="pear")', "no key"),
        ("sqrt(x=4)", "unknown function"),
    ],
)
def test_tool_use_typed_validation_rejects_invalid_calls(text, why):
    parsed = parse_call(text)
    assert parsed.action is not None, parsed.error
    result, error = check_call(parsed.action, [1.0])
    assert result is None and why in error


@pytest.mark.parametrize("text", ["convert(3, 'km', 'm')", "add(a=1, a=2)", "add a=1 b=2", "add(a=1 b=2)", ""])
def test_tool_use_parser_reports_malformed_calls(text):
    assert parse_call(text).action is None


# ---------------------------------------------------------------------- reward-guided search
def test_search_with_the_true_reward_finds_optimal_plans_on_hanoi3():
    env = HanoiEnv(3)
    for start in env.starts:
        result = reward_guided_search(env, start, env.true_step_reward)
        assert result.found and len(result.plan) == env.distance_to_goal(start)
        assert env.is_success(result.states[-1])


@pytest.mark.parametrize("env", [GraphNavEnv(), ToolUseEnv()])
def test_search_is_generic_across_environments(env):
    for start in env.starts:
        result = reward_guided_search(env, start, env.true_step_reward)
        assert result.found and len(result.plan) == env.distance_to_goal(start)


def test_search_accepts_a_text_scorer_and_a_misleading_reward_costs_more_expansions():
    env = HanoiEnv(3)
    start = env.starts[0]  # all on A: 7 moves
    guided = reward_guided_search(env, start, env.true_step_reward)
    calls = []

    def uniform(observation, action):
        calls.append((observation, action))
        return -1.0  # a constant step cost: uniform-cost (breadth-first) search

    blind = reward_guided_search(env, start, text_step_reward(env, uniform))
    assert blind.found and len(blind.plan) == 7 and blind.expansions > guided.expansions
    assert calls[0][0].startswith("Tower of Hanoi") and calls[0][1] in {"A B", "A C"}
    capped = reward_guided_search(env, start, text_step_reward(env, uniform), max_expansions=3)
    assert not capped.found and capped.expansions == 3


# ---------------------------------------------------------------------- tabular export and demonstrations
@pytest.mark.parametrize("env", [HanoiEnv(3), GraphNavEnv()])
def test_soft_value_iteration_greedy_policy_on_the_exported_mdp_solves_every_start_optimally(env):
    export = build_tabular_mdp(env, discount=0.95)
    assert export.mdp.num_states == len(env.reachable_states())
    if env.name == "hanoi":
        assert export.mdp.num_states == 27 and export.mdp.num_actions == 6
    solution = soft_value_iteration(export.mdp, export.mdp.true_reward, temperature=0.01)
    greedy = solution.q.argmax(-1)
    for start in env.starts:
        state, moves = start, 0
        while not env.is_terminal(state) and moves <= 20:
            action = export.actions[int(greedy[export.state_index[state]])]
            assert env.legality_error(state, action) is None
            state, moves = env.transition(state, action), moves + 1
        assert env.is_success(state) and moves == env.distance_to_goal(start)


def test_exported_reward_is_the_weighted_aspect_table():
    env = HanoiEnv(3)
    export = build_tabular_mdp(env)
    assert torch.allclose(export.mdp.true_reward, export.aspect_table @ torch.as_tensor(env.weights))
    goal = export.state_index[goal_state(3)]
    assert bool((export.mdp.successors[goal, :, 0] == goal).all()) and float(export.aspect_table[goal].abs().sum()) == 0
    invalid = export.aspect_table[export.state_index[env.starts[0]], export.action_index[(1, 0)]]
    assert invalid.tolist() == [0.0, -1.0, 0.0, 0.0, -1.0]


def test_demonstrations_export_indices_and_text_pairs():
    env = HanoiEnv(3)
    export = build_tabular_mdp(env)
    demos = optimal_demonstrations(env, export)
    assert len(demos) == 26 and demos.num_states == 27 and demos.num_actions == 6
    assert demos.lengths.tolist() == [env.distance_to_goal(s) for s in env.starts]
    first = demos.observations[0, : demos.lengths[0]].tolist()
    assert export.states[first[0]] == env.starts[0]
    pairs = text_demonstrations(env, solver_plans(env))
    assert len(pairs) == 26 and pairs[0][0][0].endswith("Move: ") and pairs[0][0][1] == "A C"
    assert [len(p) for p in pairs] == demos.lengths.tolist()
    with pytest.raises(ValidationError, match="FiniteTextEnv"):
        build_tabular_mdp(ToolUseEnv())


# ---------------------------------------------------------------------- metrics
def record(seed, reached, steps, invalid=0, malformed=0, optimal=2.0):
    return EpisodeRecord("hanoi", 0, seed, reached, steps, invalid, malformed, optimal)


def test_metrics_on_hand_made_records():
    records = [
        record(0, True, 2),  # solved, optimal
        record(0, True, 4, invalid=1),  # goal but an invalid move: not solved
        record(1, True, 3, optimal=1.0),  # solved, 3× optimal
        record(1, False, 10, malformed=2),
    ]
    assert success_rate(records) == 0.5
    assert invalid_action_rate(records) == pytest.approx(1 / 19)
    assert malformed_rate(records) == pytest.approx(2 / 19)
    assert plan_length_ratio(records) == pytest.approx((1.0 + 3.0) / 2)
    stability = success_stability([*records, record(2, True, 2), record(2, True, 2)])
    assert stability["per_seed"] == {0: 0.5, 1: 0.5, 2: 1.0}
    assert stability["variance"] == pytest.approx(np.var([0.5, 0.5, 1.0], ddof=1))
    summary = summarize(records)
    assert summary["goal_rate"] == 0.75 and math.isnan(plan_length_ratio([records[-1]]))
    with pytest.raises(ValidationError, match="records"):
        success_rate([])
    with pytest.raises(ValidationError, match="exceed"):
        record(0, False, 1, invalid=1, malformed=1)


def test_run_episode_records_a_solver_and_a_noisy_policy():
    env = HanoiEnv(3)
    plans = {s: env.optimal_plan(s) for s in env.reachable_states() if not env.is_success(s)}

    def solver(observation):
        return env.format_action(plans[env.state][0])  # looks the state up instead of reading the text
    records = [run_episode(env, solver, start, seed=0) for start in range(len(env.starts))]
    assert success_rate(records) == 1.0 and plan_length_ratio(records) == 1.0
    noisy = run_episode(env, lambda observation: "B B", 0, seed=1)
    assert noisy.steps == 10 and noisy.num_invalid == 10 and not noisy.solved
    assert invalid_action_rate([*records, noisy]) == pytest.approx(10 / (sum(r.steps for r in records) + 10))
    assert len(noisy.aspects) == 10 and len(noisy.states) == 11


def test_the_core_bilevel_solver_learns_a_structured_hanoi_reward_from_solver_demonstrations():
    """MaxEnt IRL (exact soft-VI inner loop) on the exported Hanoi-3 MDP, over the true aspect features: the
    learned per-aspect scales give a greedy policy that solves all 26 starts optimally."""
    env = HanoiEnv(3)
    export = build_tabular_mdp(env, discount=0.9)
    demos = optimal_demonstrations(env, export, absorbing_steps=200)  # keeps the goal's occupancy mass
    reward_model = AspectTableReward(export, initial_scales=[0.0] * 5)
    inner = SoftValueIterationSolver(export.mdp, temperature=1.0, tol=1e-10)
    problem = BilevelProblem(reward_model, inner, MaxEntDemonstrationLoss.from_demonstrations(export.mdp, demos))
    # The expert is realizable, so the likelihood grows without bound: the L2 term keeps the scales finite.
    BilevelSolver(problem, MaxEntHypergradient(), OuterConfig(steps=10, l2=0.1), progress=False).run()
    learned = reward_model.reward_table(export.mdp.features, export.mdp.num_actions, export.mdp.expected_next)
    greedy = soft_value_iteration(export.mdp, learned.detach()).q.argmax(-1)
    for start in env.starts:
        state, moves = start, 0
        while not env.is_terminal(state) and moves <= 10:
            state, moves = env.transition(state, export.actions[int(greedy[export.state_index[state]])]), moves + 1
        assert env.is_success(state) and moves == env.distance_to_goal(start)
    # With the environment's weights and the plain sum, the aspect-table reward is the true reward.
    true_model = AspectTableReward(export, initial_scales=env.weights, learn_scales=False)
    assert torch.allclose(SoftValueIterationSolver(export.mdp).reward(true_model), export.mdp.true_reward)
    check_aspect_names(env, true_model.aspect_names)


def test_random_text_never_crashes_and_every_step_is_counted():
    rng = np.random.default_rng(0)
    alphabet = [*"ABCabc0123456789 ()=,$\"'->\n", "A C", "11", "add(a=1, b=2)", "room 7"]
    for env in (HanoiEnv(4), GraphNavEnv(), ToolUseEnv()):
        for episode in range(20):
            env.reset(seed=episode)
            done, kinds = False, []
            while not done:
                text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 6))))
                _, reward, terminated, truncated, info = env.step(text)
                assert np.isfinite(reward)
                kinds.append(info["kind"])
                done = terminated or truncated
            assert info["num_invalid"] == kinds.count("invalid") and info["num_malformed"] == kinds.count("malformed")
            assert info["steps"] == len(kinds)


def test_agentic_package_needs_neither_transformers_nor_gymnasium_nor_classic_rl():
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'transformers', 'peft', 'gymnasium', 'stable_baselines3', 'classic_rl'}:\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import llm.agentic.export, llm.agentic.search, llm.agentic.metrics\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_seeded_resets_are_reproducible():
    first, second = GraphNavEnv(), GraphNavEnv()
    starts = [first.reset(seed=7)[1]["start"], *(first.reset()[1]["start"] for _ in range(5))]
    again = [second.reset(seed=7)[1]["start"], *(second.reset()[1]["start"] for _ in range(5))]
    assert starts == again and len(set(starts)) > 1
