"""Side by side: our tabular MCE IRL (``classic_rl.maxent_irl``) against imitation 1.0.1's ``MCEIRL``.

One invocation runs every (problem, side) pair, each in a fresh subprocess with one torch thread, one after
the other, and writes one JSON file (``benchmarks/results/mce_irl_vs_imitation.json`` by default).

Problems: seals' ``RandomTransitionEnv`` (A = 4, branching 5, horizon 20, random 16-dim observations, reward
linear in them) at S = 64, 256, 1024 (and 4096, imitation capped by wall time), and seals' ``CliffWorldEnv``
(7 × 4, horizon 8) with one-hot observations (a linear reward is then a free table: realizable) and with its
(x, y) observations (a linear reward cannot express the cliff: nobody reaches the stop rule).

Protocol (see benchmarks/README.md):

* every env is converted into our ``TabularMDP`` (dense ``[S, A, S]`` and padded sparse successors) and
  checked: the soft-optimal state visits of the true reward and of a random linear reward computed by
  imitation (``mce_occupancy_measures``) and by us (dense and sparse) must agree to 1e-9;
* one expert for both: the exact occupancy of the soft-optimal policy for the true reward, as imitation's
  state-visit counts (its ``demonstrations=``) and as our ``[H, S, A]`` occupancy of the same policy;
* both learn a linear reward of the observations and stop on the same rule: ``max_s |D_E(s) − D_π(s)| ≤
  1e-3``, ``D`` the expected visits of each state over ``t = 0..H`` (imitation's ``linf_eps``). imitation:
  Adam lr 1e-2, ``BasicRewardNet(hid_sizes=[])`` (a linear layer with bias), its second rule (gradient
  L2 ≤ 1e-4), an iteration cap and a wall-time cap. Ours: L-BFGS (strong Wolfe) on the MaxEnt likelihood
  with exact hypergradients (``MaxEntHypergradient``), dense and sparse transitions;
* the final error of both learned rewards is computed by one function of ours (``evaluate_reward``);
* time: ``time.perf_counter`` around training only (imitation's ``train()``, our ``maxent_irl()`` call);
  memory: the peak resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs`` when training
  starts) in the worker process, which sees torch and numpy allocations alike.

Run: ``make benchmark`` (full, about ten minutes) or ``python benchmarks/mce_irl_vs_imitation.py --quick``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import re
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from irlb.worker_processes import run_worker_process, worker_or_driver

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "mce_irl_vs_imitation.json"
SIDES = ("imitation", "ours_dense", "ours_sparse")

# Shared settings (the protocol): the stop rule and imitation's defaults.
LINF_EPS = 1e-3  # imitation's default linf_eps; our stop_metric="state_visitation_linf" uses the same value
IMITATION_LR = 1e-2
IMITATION_GRAD_L2_EPS = 1e-4  # imitation's default second stop rule
IMITATION_MAX_ITER = 10_000
OURS_MAX_STEPS = 500
OURS_GRAD_TOL = 1e-6  # our second rule (‖dL/dθ‖_∞ of the per-step-normalized likelihood), for unrealizable cases
OURS_LBFGS_ITERATIONS_PER_STEP = 25  # OuterConfig's default; see README (1 stalls on CliffWorld)
EPIC_MAX_STATES = 1024  # EPIC materializes [S, A, S] rewards
CONVERSION_TOLERANCE = 1e-9


# ---------------------------------------------------------------------- problems
def problem_specs(quick: bool, sizes: list[int] | None, include_4096: bool, cap_4096_s: float,
                  cap_s: float) -> list[dict[str, Any]]:
    sizes = sizes or ([64] if quick else [64, 256, 1024] + ([4096] if include_4096 else []))
    specs: list[dict[str, Any]] = [
        {"name": f"random_S{s}", "kind": "random", "num_states": s, "num_actions": 4, "branching": 5,
         "horizon": 20, "obs_dim": 16, "imitation_wall_cap_s": cap_4096_s if s >= 4096 else cap_s}
        for s in sizes
    ]
    if not quick:
        for xy in (False, True):
            specs.append({"name": "cliffworld_xy" if xy else "cliffworld", "kind": "cliff", "width": 7,
                          "height": 4, "horizon": 8, "use_xy_obs": xy, "imitation_wall_cap_s": cap_s})
    return specs


def make_env(spec: dict[str, Any], seed: int):
    """The seals tabular env of a problem (deterministic in ``seed``)."""
    if spec["kind"] == "random":
        from seals.diagnostics.random_trans import RandomTransitionEnv

        return RandomTransitionEnv(n_states=spec["num_states"], n_actions=spec["num_actions"],
                                   branch_factor=spec["branching"], horizon=spec["horizon"], random_obs=True,
                                   obs_dim=spec["obs_dim"], generator_seed=seed)
    from seals.diagnostics.cliff_world import CliffWorldEnv

    return CliffWorldEnv(width=spec["width"], height=spec["height"], horizon=spec["horizon"],
                         use_xy_obs=spec["use_xy_obs"])


def env_fingerprint(env) -> str:
    digest = hashlib.sha256()
    for array in (env.transition_matrix, env.observation_matrix, env.reward_matrix, env.initial_state_dist):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def to_tabular_mdp(env, sparse: bool):
    """The seals env as our ``TabularMDP`` in float64 (the workers also set torch's default dtype to float64,
    so that the reward model's parameters match), undiscounted finite horizon, observations as features."""
    from irl_bilevel.tabular import TabularMDP

    assert torch.get_default_dtype() == torch.float64, "set torch's default dtype to float64 first"
    transitions = torch.as_tensor(np.asarray(env.transition_matrix, dtype=np.float64))
    common: dict[str, Any] = {
        "start": torch.as_tensor(np.asarray(env.initial_state_dist, dtype=np.float64)),
        "discount": 1.0,
        "horizon": int(env.horizon),
        "state_features": torch.as_tensor(np.asarray(env.observation_matrix, dtype=np.float64)),
        "true_reward": torch.as_tensor(np.asarray(env.reward_matrix, dtype=np.float64)),
        "name": type(env).__name__,
    }
    if not sparse:
        return TabularMDP(transitions=transitions, **common)
    # Padded successor lists: the k largest entries of every row (k = the most successors of any pair);
    # padding entries carry probability 0.
    k = int((transitions > 0).sum(-1).max())
    probabilities, successors = transitions.topk(k, dim=-1)
    return TabularMDP(successors=successors, successor_probabilities=probabilities, **common)


# ---------------------------------------------------------------------- shared measurement helpers
def memory_status() -> dict[str, float]:
    """Current and peak resident set of this process in MiB (Linux /proc/self/status)."""
    text = Path("/proc/self/status").read_text()
    out = {}
    for key in ("VmRSS", "VmHWM"):
        match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        out[key] = int(match.group(1)) / 1024 if match else math.nan
    return out


def reset_peak_memory() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); returns whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def evaluate_reward(mdp, reward: np.ndarray, expert_visits: torch.Tensor, expert_log_policy: torch.Tensor):
    """The one scoring function applied to both sides' learned state rewards ``[S]``.

    Soft-optimal policy of the reward (finite-horizon soft value iteration, float64), its expected state
    visits ``D`` over ``t = 0..H`` (``state_visitation``), and L∞ / L1 of ``D − D_E``; EPIC distance to the
    true reward (``S ≤ 1024``) and the expert-normalized return of that policy under the true reward.
    """
    from classic_rl.maxent_irl import state_visitation
    from irl_bilevel.metrics import epic_distance, normalized_return
    from irl_bilevel.tabular import soft_value_iteration, state_action_occupancy

    reward_t = torch.as_tensor(np.asarray(reward, dtype=np.float64))
    log_policy = soft_value_iteration(mdp, reward_t).log_policy
    visits = state_visitation(mdp, state_action_occupancy(mdp, log_policy))
    difference = visits - expert_visits
    result = {
        "state_visitation_linf": float(difference.abs().max()),
        "state_visitation_l1": float(difference.abs().sum()),
        "epic": None,
        "normalized_return": normalized_return(mdp, reward_t, expert_log_policy),
    }
    if mdp.num_states <= EPIC_MAX_STATES:
        result["epic"] = epic_distance(reward_t, mdp.true_reward, mdp.num_states, mdp.num_actions, 0.99)
    return result


# ---------------------------------------------------------------------- workers (one process each)
def worker_check(spec: dict[str, Any], seed: int, expert_path: Path) -> dict[str, Any]:
    """Convert the env, check the conversion against imitation, and save the one expert both sides use."""
    from imitation.algorithms import mce_irl as imitation_mce

    from classic_rl.maxent_irl import state_visitation
    from irl_bilevel.tabular import soft_value_iteration, state_action_occupancy

    torch.set_default_dtype(torch.float64)
    env = make_env(spec, seed)
    dense, sparse = to_tabular_mdp(env, sparse=False), to_tabular_mdp(env, sparse=True)
    random_reward = env.observation_matrix.astype(np.float64) @ np.random.default_rng(seed + 1).normal(
        size=env.observation_matrix.shape[1])
    checks: dict[str, float] = {}
    for label, reward in (("true_reward", np.asarray(env.reward_matrix, dtype=np.float64)),
                          ("random_linear_reward", random_reward)):
        _, theirs = imitation_mce.mce_occupancy_measures(env, reward=reward)
        for form, mdp in (("dense", dense), ("sparse", sparse)):
            log_policy = soft_value_iteration(mdp, torch.as_tensor(reward)).log_policy
            ours = state_visitation(mdp, state_action_occupancy(mdp, log_policy)).numpy()
            checks[f"{label}_{form}_max_abs_diff"] = float(np.abs(ours - theirs).max())
    worst = max(checks.values())
    if worst > CONVERSION_TOLERANCE:
        raise SystemExit(f"{spec['name']}: conversion check failed: {checks}")
    # The expert: the soft-optimal policy of the true reward (ours from the dense MDP; checked above).
    log_policy = soft_value_iteration(dense, dense.true_reward).log_policy
    occupancy = state_action_occupancy(dense, log_policy)
    _, imitation_visits = imitation_mce.mce_occupancy_measures(env)
    np.savez(expert_path, occupancy=occupancy.numpy(), log_policy=log_policy.numpy(),
             imitation_visits=np.asarray(imitation_visits, dtype=np.float64))
    return {
        "fingerprint": env_fingerprint(env),
        "num_states": int(env.state_dim),
        "num_actions": int(env.action_dim),
        "num_features": int(env.observation_matrix.shape[1]),
        "horizon": int(env.horizon),
        "max_successors": int(sparse.successors.shape[-1]),
        "expert_visits_sum": float(imitation_visits.sum()),
        "conversion_check": {**checks, "tolerance": CONVERSION_TOLERANCE, "passed": True},
    }


def _load_expert(expert_path: Path) -> dict[str, np.ndarray]:
    with np.load(expert_path) as data:
        return {key: data[key] for key in data.files}


def _score(spec: dict[str, Any], seed: int, env, rewards: dict[str, np.ndarray],
           expert: dict[str, np.ndarray]) -> dict[str, Any]:
    torch.set_default_dtype(torch.float64)
    from classic_rl.maxent_irl import state_visitation

    mdp = to_tabular_mdp(env, sparse=True)  # checked equal to the dense form and to imitation
    expert_visits = state_visitation(mdp, torch.as_tensor(expert["occupancy"]))
    log_policy = torch.as_tensor(expert["log_policy"])
    return {label: evaluate_reward(mdp, reward, expert_visits, log_policy) for label, reward in rewards.items()}


def worker_imitation(spec: dict[str, Any], seed: int, expert_path: Path) -> dict[str, Any]:
    from imitation.algorithms import mce_irl as imitation_mce
    from imitation.rewards.reward_nets import BasicRewardNet
    from imitation.util import logger as imitation_logger

    class WallCap(Exception):
        pass

    class CountingMCEIRL(imitation_mce.MCEIRL):
        """imitation's MCEIRL, unchanged, plus: iteration count, the last reward and visits it computed (the
        ones its stop rule tested), and a wall-time cap checked before each iteration."""

        iterations = 0
        deadline = math.inf
        last_reward: np.ndarray | None = None
        last_visits: np.ndarray | None = None

        def _train_step(self, obs_mat):
            if time.perf_counter() > self.deadline:
                raise WallCap
            self.iterations += 1
            reward, visits = super()._train_step(obs_mat)
            self.last_reward, self.last_visits = reward, visits
            return reward, visits

    env = make_env(spec, seed)
    expert = _load_expert(expert_path)
    torch.manual_seed(seed)
    reward_net = BasicRewardNet(env.observation_space, env.action_space, hid_sizes=[], use_action=False,
                                use_next_state=False, use_done=False)
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = CountingMCEIRL(
            expert["imitation_visits"], env, reward_net, rng=np.random.default_rng(seed),
            optimizer_kwargs={"lr": IMITATION_LR}, discount=1.0, linf_eps=LINF_EPS,
            grad_l2_eps=IMITATION_GRAD_L2_EPS, log_interval=None,
            custom_logger=imitation_logger.configure(log_dir, format_strs=[]),
        )
        cap_s = float(spec["imitation_wall_cap_s"])
        memory_before = memory_status()
        peak_reset = reset_peak_memory()
        load_before = os.getloadavg()
        started = time.perf_counter()
        trainer.deadline = started + cap_s
        capped_by_wall = False
        try:
            trainer.train(max_iter=IMITATION_MAX_ITER)
        except WallCap:
            capped_by_wall = True
        seconds = time.perf_counter() - started
        memory_after = memory_status()
    assert trainer.last_reward is not None and trainer.last_visits is not None
    own_linf = float(np.max(np.abs(expert["imitation_visits"] - trainer.last_visits)))
    grads = [p.grad for p in reward_net.parameters() if p.grad is not None]
    grad_l2 = float(torch.cat([g.double().reshape(-1) for g in grads]).norm())  # imitation's grad_norm
    if own_linf <= LINF_EPS:
        stopped_by = "linf_eps"
    elif grad_l2 <= IMITATION_GRAD_L2_EPS:
        stopped_by = "grad_l2_eps"
    else:
        stopped_by = "wall_cap" if capped_by_wall else "max_iter"
    with torch.no_grad():
        final_reward = reward_net(torch.as_tensor(env.observation_matrix, dtype=reward_net.dtype), None, None,
                                  None).double().numpy()
    scores = _score(spec, seed, env, {"at_stop": trainer.last_reward, "final_parameters": final_reward}, expert)
    return {
        "fingerprint": env_fingerprint(env),
        "seconds": seconds,
        "outer_steps": trainer.iterations,
        "hypergradient_evaluations": trainer.iterations,
        "seconds_per_iteration": seconds / max(trainer.iterations, 1),
        "stopped_by": stopped_by,
        "capped": stopped_by in ("wall_cap", "max_iter"),
        "caps": {"max_iter": IMITATION_MAX_ITER, "wall_s": cap_s},
        "own_final_linf": own_linf,
        "own_final_grad_l2": grad_l2,
        "error": scores["at_stop"],
        "error_final_parameters": scores["final_parameters"],
        "memory_mib": _memory_record(memory_before, memory_after, peak_reset),
        "load_average_1min": _load_record(load_before),
        "settings": {"optimizer": "Adam", "lr": IMITATION_LR, "reward_net": "BasicRewardNet(hid_sizes=[])",
                     "linf_eps": LINF_EPS, "grad_l2_eps": IMITATION_GRAD_L2_EPS, "log_interval": None,
                     "torch_seed": seed, "dtype": str(reward_net.dtype)},
    }


def _load_record(before: tuple[float, float, float]) -> dict[str, float]:
    """1-minute load average when training started and ended: the machine is shared (2 cores here), so a
    high load marks a time measured while other jobs ran."""
    return {"at_start": round(before[0], 2), "at_end": round(os.getloadavg()[0], 2)}


def _memory_record(before: dict[str, float], after: dict[str, float], peak_reset: bool) -> dict[str, Any]:
    return {
        "rss_before_training": before["VmRSS"],
        "peak_rss_during_training": after["VmHWM"],
        "peak_increase_during_training": after["VmHWM"] - before["VmRSS"],
        "process_peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "method": "VmHWM from /proc/self/status" + (", reset via /proc/self/clear_refs at training start"
                                                     if peak_reset else " (could not reset: process peak)"),
    }


def worker_ours(spec: dict[str, Any], seed: int, expert_path: Path, sparse: bool) -> dict[str, Any]:
    from classic_rl.maxent_irl import make_reward_model, maxent_irl
    from irl_bilevel.hypergradients import MaxEntHypergradient
    from irl_bilevel.solver import OuterConfig

    torch.set_default_dtype(torch.float64)
    env = make_env(spec, seed)
    mdp = to_tabular_mdp(env, sparse=sparse)
    expert = _load_expert(expert_path)
    occupancy = torch.as_tensor(expert["occupancy"])
    torch.manual_seed(seed)
    model = make_reward_model("linear", mdp)  # zero-initialized weights, no bias
    config = OuterConfig(steps=OURS_MAX_STEPS, optimizer="lbfgs", lr=1.0, grad_tol=OURS_GRAD_TOL, loss_rtol=0.0,
                         checkpoint_every=10**9, lbfgs_iterations_per_step=OURS_LBFGS_ITERATIONS_PER_STEP)
    # The first torch.optim optimizer built in a process imports torch._dynamo (about 1 s): a one-time
    # import, not training (imitation's side pays it in its constructor, outside its timed train()).
    torch.optim.LBFGS([torch.nn.Parameter(torch.zeros(1))])
    memory_before = memory_status()
    peak_reset = reset_peak_memory()
    load_before = os.getloadavg()
    started = time.perf_counter()
    outcome = maxent_irl(mdp, occupancy, model, method=MaxEntHypergradient(), config=config,
                         occupancy_target=LINF_EPS, stop_metric="state_visitation_linf", log_epic=False,
                         progress=False)
    seconds = time.perf_counter() - started
    memory_after = memory_status()
    result = outcome.result
    last = result.history[-1] if result.history else {}
    if last.get("state_visitation_linf", math.inf) <= LINF_EPS:
        stopped_by = "linf_eps"
    elif result.converged:
        stopped_by = "grad_tol"
    else:
        stopped_by = "max_steps"
    scores = _score(spec, seed, env, {"final": outcome.learned_reward.numpy()}, expert)
    return {
        "fingerprint": env_fingerprint(env),
        "seconds": seconds,
        "outer_steps": result.steps,
        "hypergradient_evaluations": int(last.get("hypergradient_evaluations", 0)),
        "stopped_by": stopped_by,
        "capped": stopped_by == "max_steps",
        "own_final_linf": last.get("state_visitation_linf"),
        "error": scores["final"],
        "memory_mib": _memory_record(memory_before, memory_after, peak_reset),
        "load_average_1min": _load_record(load_before),
        "settings": {"optimizer": "lbfgs (strong Wolfe)", "lr": 1.0, "method": "MaxEntHypergradient (exact)",
                     "transitions": "sparse" if sparse else "dense", "stop_metric": "state_visitation_linf",
                     "occupancy_target": LINF_EPS, "grad_tol": OURS_GRAD_TOL, "max_steps": OURS_MAX_STEPS,
                     "lbfgs_iterations_per_step": OURS_LBFGS_ITERATIONS_PER_STEP, "dtype": "float64"},
    }


def run_worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    spec = json.loads(args.spec)
    expert_path = Path(args.expert)
    if args.worker == "check":
        result = worker_check(spec, args.seed, expert_path)
    elif args.worker == "imitation":
        result = worker_imitation(spec, args.seed, expert_path)
    else:
        result = worker_ours(spec, args.seed, expert_path, sparse=args.worker == "ours_sparse")
    result["torch_threads"] = torch.get_num_threads()
    Path(args.result).write_text(json.dumps(result))


# ---------------------------------------------------------------------- the driver
def _spawn(role: str, spec: dict[str, Any], seed: int, expert: Path, work: Path) -> dict[str, Any]:
    result_path = work / f"{spec['name']}-{role}.json"
    returncode = run_worker_process(__file__, role, {"spec": json.dumps(spec), "seed": str(seed),
                                                     "expert": str(expert), "result": str(result_path)})
    if returncode != 0:
        raise SystemExit(f"worker {role} on {spec['name']} failed with exit code {returncode}")
    return json.loads(result_path.read_text())


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_table(problems: list[dict[str, Any]]) -> None:
    header = (f"{'problem':<15} {'side':<12} {'time s':>9} {'steps':>6} {'evals':>6} {'L∞ visits':>10} "
              f"{'L1 visits':>10} {'peak MiB':>9} {'+MiB':>6} {'imit./ours':>10}  stop")
    print(header)
    print("-" * len(header))
    for problem in problems:
        for side in SIDES:
            r = problem[side]
            ratio = problem["time_ratio_imitation_over"].get(side)
            bound = "≥" if problem["imitation_time_is_lower_bound"] else ""
            ratio_text = "" if side == "imitation" else bound + _fmt(ratio, ".1f")
            stop = r["stopped_by"] + (" (capped)" if r["capped"] else "")
            memory = r["memory_mib"]
            print(f"{problem['name']:<15} {side:<12} {r['seconds']:>9.3f} {r['outer_steps']:>6} "
                  f"{r['hypergradient_evaluations']:>6} {r['error']['state_visitation_linf']:>10.2e} "
                  f"{r['error']['state_visitation_l1']:>10.2e} {memory['peak_rss_during_training']:>9.0f} "
                  f"{memory['peak_increase_during_training']:>6.0f} {ratio_text:>10}  {stop}")


def _add_projections(problems: list[dict[str, Any]]) -> None:
    """For a random MDP where imitation hit its wall cap: its measured seconds per iteration times the
    iterations it needed on the largest random MDP it finished. An estimate, not a measurement."""
    finished = [p for p in problems if p["spec"]["kind"] == "random" and not p["imitation"]["capped"]]
    if not finished:
        return
    reference = max(finished, key=lambda p: p["num_states"])
    for problem in problems:
        imitation = problem["imitation"]
        if problem["spec"]["kind"] != "random" or not imitation["capped"]:
            continue
        seconds = imitation["seconds_per_iteration"] * reference["imitation"]["outer_steps"]
        problem["imitation_projection"] = {
            "assumes_iterations_as_at": reference["name"],
            "iterations": reference["imitation"]["outer_steps"],
            "seconds": seconds,
            "time_ratio_over": {side: _ratio(seconds, problem[side]["seconds"]) for side in SIDES[1:]},
            "note": "estimate (measured s/iteration x iterations imitation needed at the reference size), "
                    "not a measurement",
        }


def run_driver(args: argparse.Namespace) -> None:
    from irl_bilevel.runs import git_state, package_versions

    specs = problem_specs(args.quick, args.sizes, not args.skip_4096, args.imitation_cap_4096_s,
                          args.imitation_cap_s)
    started = datetime.datetime.now(datetime.timezone.utc)
    problems = []
    with tempfile.TemporaryDirectory(prefix="mce-bench-") as tmp:
        work = Path(tmp)
        for spec in specs:
            expert = work / f"{spec['name']}-expert.npz"
            print(f"== {spec['name']}", flush=True)
            entry: dict[str, Any] = {"name": spec["name"], "spec": spec}
            entry.update(_spawn("check", spec, args.seed, expert, work))
            for side in SIDES:
                entry[side] = _spawn(side, spec, args.seed, expert, work)
                if entry[side]["fingerprint"] != entry["fingerprint"]:
                    raise SystemExit(f"{spec['name']}: {side} built a different env")
                print(f"   {side}: {entry[side]['seconds']:.3f} s, {entry[side]['outer_steps']} steps, "
                      f"L∞ {entry[side]['error']['state_visitation_linf']:.2e}", flush=True)
            imitation_seconds = entry["imitation"]["seconds"]
            entry["time_ratio_imitation_over"] = {
                side: _ratio(imitation_seconds, entry[side]["seconds"]) for side in SIDES if side != "imitation"
            }
            entry["imitation_time_is_lower_bound"] = entry["imitation"]["capped"]
            problems.append(entry)
    _add_projections(problems)
    goal = next((p for p in problems if p["name"] == "random_S1024"), None)
    summary: dict[str, Any] = {"goal": "at least 10x faster than imitation at S=1024 at equal or better accuracy"}
    if goal is not None:
        for side in ("ours_dense", "ours_sparse"):
            summary[side] = {
                "time_ratio": goal["time_ratio_imitation_over"][side],
                "linf_ours_vs_imitation": [goal[side]["error"]["state_visitation_linf"],
                                           goal["imitation"]["error"]["state_visitation_linf"]],
                "met": bool((goal["time_ratio_imitation_over"][side] or 0) >= 10
                            and goal[side]["error"]["state_visitation_linf"]
                            <= max(goal["imitation"]["error"]["state_visitation_linf"], LINF_EPS)),
            }
    report = {
        "benchmark": "mce_irl_vs_imitation",
        "mode": "quick" if args.quick else "full",
        "date": started.isoformat(timespec="seconds"),
        "wall_seconds": (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(),
        "git": git_state(ROOT),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads_per_worker": 1,
                    "note": "shared machine; workers run one at a time, each in a fresh process"},
        "versions": package_versions(),
        "seeds": {"env_generator_seed": args.seed, "torch_seed": args.seed, "imitation_rng_seed": args.seed,
                  "random_reward_check_seed": args.seed + 1},
        "protocol": {
            "stop_rule": f"max_s |D_E(s) - D_pi(s)| <= {LINF_EPS}, D = expected visits of each state over "
                         "t = 0..H (imitation's linf_eps; ours: stop_metric='state_visitation_linf')",
            "error_metric": "evaluate_reward(): soft-optimal policy of the learned reward, L-inf / L1 of its "
                            "state visits minus the expert's (same function for both sides)",
            "imitation_error_reward": "the reward whose visits imitation's stop rule tested last (its policy's "
                                      "reward); error_final_parameters scores the reward net after its last "
                                      "Adam step",
            "time": "time.perf_counter around imitation's train() / our maxent_irl() only",
            "memory": "VmHWM of the worker process, reset at training start (MiB)",
            "imitation_caps": {"max_iter": IMITATION_MAX_ITER, "wall_s": args.imitation_cap_s,
                               "wall_s_4096": args.imitation_cap_4096_s},
        },
        "problems": problems,
        "summary": summary,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print_table(problems)
    print()
    for problem in problems:
        projection = problem.get("imitation_projection")
        if projection:
            ratios = ", ".join(f"{side} {_fmt(value, '.0f')}x" for side, value in
                               projection["time_ratio_over"].items())
            print(f"{problem['name']}: imitation capped; at {projection['iterations']} iterations (as at "
                  f"{projection['assumes_iterations_as_at']}) it would take ~{projection['seconds']:.0f} s "
                  f"(estimate: {ratios})")
    for side, verdict in ((k, v) for k, v in summary.items() if isinstance(v, dict)):
        print(f"S=1024 goal ({side}): ratio {_fmt(verdict['time_ratio'], '.1f')}x, "
              f"L∞ ours {verdict['linf_ours_vs_imitation'][0]:.2e} vs imitation "
              f"{verdict['linf_ours_vs_imitation'][1]:.2e}: {'met' if verdict['met'] else 'NOT met'}")
    print(f"wrote {output}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: random MDP with S=64 only")
    parser.add_argument("--sizes", type=int, nargs="+", help="random-MDP sizes (default 64 256 1024 4096)")
    parser.add_argument("--skip-4096", action="store_true", help="leave S=4096 out of the full run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--imitation-cap-s", type=float, default=900.0,
                        help="wall-time cap on imitation's training (S <= 1024 and CliffWorld)")
    parser.add_argument("--imitation-cap-4096-s", type=float, default=120.0,
                        help="wall-time cap on imitation's training at S >= 4096")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    worker_or_driver(parser, argv, ("check", *SIDES), ("spec", "expert", "result"), run_worker, run_driver)


if __name__ == "__main__":
    main()
