"""A corpus of bad inputs across every ``irlb`` command and the loaders users call directly (issue 28).

Each :class:`Case` builds its inputs in a folder of its own (the *user's* folder: input files, the ``--out`` folder,
run folders to resume), runs one command in-process through :func:`irlb.main.main` (or one library loader) and is
judged by :func:`run_case`:

* ``ok``: exit status 2, the message starts with ``irlb: error:`` (a library loader raises
  :class:`~irl_bilevel.validation.ValidationError`), names what the case lists in ``names`` (the file, line, array
  or field), no traceback, and the case's folder holds the same names and bytes as before;
* ``traceback``: an exception other than ``ValidationError`` reached the caller;
* ``silent``: the command exited 0 (or ran past :data:`TIME_LIMIT` seconds): the bad input was accepted;
* ``misleading``: exit status 2, but the message does not name what ``names`` lists;
* ``exit-status``: the command failed with another exit status and no traceback (e.g. 1: a sweep whose trials
  failed on the input);
* ``changed``: the command failed as it should, but left the case's folder changed (a file written, replaced or
  deleted; an empty out folder created).

``needs`` (the name of a branch) marks a case that a change not merged yet fixes; the suite expects it to fail until
then (``xfail(strict=True)``: an unexpected pass fails, so the tag goes with the merge). No case carries one now.

Run ``python tests/bad_inputs.py`` for a table of outcomes by family (``--verbose`` prints each failing case's
message or traceback). Cheap by construction: tiny models and testbeds built once (:class:`Artifacts`), tiny
budgets in every base invocation, so that a bad input the code accepts costs seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import sys
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

TIME_LIMIT = 60  # seconds: a case still running by then accepted its bad input (every base run takes a few)

Invocation = list[str] | Callable[[], Any]


# ---------------------------------------------------------------------- cases
@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: ``build(context)`` writes the case's files and returns the ``irlb`` arguments (or a callable
    that runs a library loader); ``names``: what the message must name (case-insensitive substrings)."""

    family: str
    name: str
    build: Callable[[Context], Invocation]
    names: tuple[str, ...]
    needs: str | None = None

    @property
    def id(self) -> str:
        return f"{self.family}/{self.name}"

    @property
    def slow(self) -> bool:
        """Whether the case runs long until ``needs`` is merged: the command accepts the input and trains."""
        return self.needs is not None and self.name.split()[0] in TRAINING_COMMANDS


# Commands that train (seconds to a minute at the tiny budgets here) when they accept an input.
TRAINING_COMMANDS = ("gym-irl", "preference-rl", "agentic", "sweep", "reproduce")


CASES: list[Case] = []


def case(family: str, name: str, names: str | tuple[str, ...], needs: str | None = None):
    """Register ``build`` as a :class:`Case` (a decorator)."""
    def register(build: Callable[[Context], Invocation]) -> Callable[[Context], Invocation]:
        CASES.append(Case(family, name, build, (names,) if isinstance(names, str) else names, needs))
        return build
    return register


def add(family: str, name: str, names: str | tuple[str, ...], build: Callable[[Context], Invocation],
        needs: str | None = None) -> None:
    CASES.append(Case(family, name, build, (names,) if isinstance(names, str) else names, needs))


def families() -> list[str]:
    return list(dict.fromkeys(c.family for c in CASES))


def cases_of(family: str) -> list[Case]:
    return [c for c in CASES if c.family == family]


# ---------------------------------------------------------------------- good inputs, built once
class Artifacts:
    """Good inputs that cases copy and break, each built on first use under ``root``: a tiny causal LM folder with a
    chat-template tokenizer, a text reward model and a LoRA adapter on it, preference files, tabular MDP and
    demonstration archives, gymnasium demonstrations, a finished ``tabular-irl`` run folder, a saved reward model
    and a finished (fabricated) sweep folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _folder(self, name: str) -> Path:
        path = self.root / name
        if path.exists():
            shutil.rmtree(path)
        return path

    @cached_property
    def lm(self) -> Path:
        import torch
        from conftest import chat_tokenizer, tiny_config
        from transformers import AutoModelForCausalLM

        tokenizer = chat_tokenizer()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(tiny_config("gpt2", tokenizer), dtype=torch.float32)
        folder = self._folder("lm")
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return folder

    @cached_property
    def text_reward_model(self) -> Path:
        from llm.reward_models import backbone_reward_model, save_text_reward_model

        folder = self._folder("text_reward_model")
        save_text_reward_model(backbone_reward_model(self.lm), folder)
        return folder

    @cached_property
    def adapter(self) -> Path:
        from llm.models import load_causal_lm, save_adapter, with_lora

        model, _ = load_causal_lm(self.lm)
        return save_adapter(with_lora(model, seed=0), self._folder("adapter"))

    @cached_property
    def pairs(self) -> Path:
        path = self.root / "pairs.jsonl"
        rows = [{"prompt": "A movie was", "chosen": " good.", "rejected": " bad."},
                {"prompt": "The plot is", "chosen": " clever.", "rejected": " dull."}]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return path

    @cached_property
    def mdp(self) -> Path:
        from conftest import random_mdp

        from classic_rl.npz_io import save_mdp_npz

        path = self.root / "mdp.npz"
        save_mdp_npz(path, random_mdp(num_states=5, num_actions=2, num_features=3))
        return path

    def mdp_arrays(self) -> dict[str, np.ndarray]:
        with np.load(self.mdp) as archive:
            return {key: archive[key] for key in archive.files}

    @cached_property
    def demonstrations(self) -> Path:
        path = self.root / "demonstrations.npz"
        np.savez(path, observations=np.array([[0, 1, 2], [3, 4, 4]]), actions=np.array([[0, 1, 1], [1, 0, 0]]),
                 lengths=np.array([3, 2]))
        return path

    @cached_property
    def gym_demonstrations(self) -> dict[str, np.ndarray]:
        """Arrays of three CartPole-v1 episodes of the random policy (every optional array included)."""
        from classic_rl.experts import rollout_demonstrations, uniform_random_policy

        demos = rollout_demonstrations(uniform_random_policy("CartPole-v1", 0), "CartPole-v1", 3, seed=0)
        assert demos.terminated is not None and demos.final_observations is not None and demos.returns is not None
        return {"observations": demos.observations.numpy(), "actions": demos.actions.numpy(),
                "lengths": demos.lengths.numpy(), "terminated": demos.terminated.numpy(),
                "final_observations": demos.final_observations.numpy(), "returns": demos.returns.numpy()}

    @cached_property
    def tabular_run(self) -> Path:
        """A finished ``tabular-irl`` run folder (3 steps, a checkpoint after each) of :data:`TABULAR`."""
        folder = self._folder("tabular_run")
        _build_run([*TABULAR, "--set", "checkpoint_every=1", "--out", str(folder)])
        return folder

    @cached_property
    def preference_run(self) -> Path:
        """A finished ``preference-rl`` run folder of :func:`preference_rl`'s settings (a few seconds)."""
        folder = self._folder("preference_run")
        _build_run(preference_rl(Context(self.root, self), out="preference_run"))
        return folder

    @cached_property
    def gym_run(self) -> Path:
        """A finished ``gym-irl`` run folder of :func:`gym`'s settings on :attr:`gym_demonstrations` (seconds)."""
        folder = self._folder("gym_run")
        context = Context(self.root, self)
        _build_run(gym(context, demos=gym_demos(context, "gym_run_demos.npz"), out="gym_run"))
        return folder

    @cached_property
    def training_run(self) -> Path:
        """An unfinished ``train-preferences`` run folder (:func:`training_run_arguments`): the run stopped right
        after its checkpoint of step 2 of 4, as a kill -9 there leaves it (the rerun of the same command resumes)."""
        import llm.checkpoints
        from irlb.main import main

        folder = self._folder("training_run")
        save = llm.checkpoints.RunFolder.save

        class Stop(Exception):
            pass

        def save_then_stop(run_folder: Any, step: int, *arguments: Any, **options: Any) -> Path:
            save(run_folder, step, *arguments, **options)
            raise Stop

        llm.checkpoints.RunFolder.save = save_then_stop  # type: ignore[method-assign]
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                main(training_run_arguments(self.lm, self.pairs, folder))
        except Stop:
            pass
        finally:
            llm.checkpoints.RunFolder.save = save  # type: ignore[method-assign]
        if not (folder / TRAINING_CHECKPOINT / "state.json").is_file():
            raise RuntimeError(f"the unfinished training run in {folder} has no checkpoint of step 2")
        return folder

    @cached_property
    def reward_model(self) -> Path:
        from irl_bilevel.reward_io import RewardSpec, build_reward_model, save_reward_model

        folder = self._folder("reward_model")
        spec = RewardSpec(input_dim=5, hidden_sizes=[4])
        save_reward_model(build_reward_model(spec), spec, folder)
        return folder

    @cached_property
    def sweep(self) -> Path:
        """A finished sweep folder of ``loss_gradient_weights`` at tiny scale (two seeds), with trial folders,
        ``done.json`` files and results written as ``irlb sweep`` writes them (without running Ray)."""
        from irl_bilevel.runs import write_json
        from irlb.sweep import expand, load_spec, summarize

        folder = self._folder("sweep")
        spec = load_spec(experiment=SWEEP_EXPERIMENT, scale="tiny", seeds=[0, 1], metric=SWEEP_METRIC)
        write_json(folder / "spec.json", spec.to_dict())
        trials = expand(spec)
        for number, trial in enumerate(trials):
            write_json(folder / trial.trial_id / f"{SWEEP_EXPERIMENT}.json", {"metric": float(number)})
            write_json(folder / trial.trial_id / "done.json", {
                "trial_id": trial.trial_id, "status": "done", "seconds": 1.0, "metric": float(number),
                "metric_path": spec.metric_path(), "result_file": f"{SWEEP_EXPERIMENT}.json", "attempt": 1})
        write_json(folder / "sweep.json", summarize(spec, folder, trials, set()))
        return folder


def _build_run(arguments: list[str]) -> None:
    """Run a good invocation that an artifact needs (it must succeed: every case of it builds on it)."""
    from irlb.main import main

    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = main(arguments)
    if code != 0:
        raise RuntimeError(f"the good run {arguments} failed (exit {code}): {stderr.getvalue()[-2000:]}")


SWEEP_EXPERIMENT = "loss_gradient_weights"
SWEEP_METRIC = "metric"
TRAINING_CHECKPOINT = "checkpoints/step-00000002"


def training_run_arguments(model: Path, data: Path, out: Path) -> list[str]:
    """``train-preferences`` of 4 steps with a checkpoint every 2 (the unfinished run of ``Artifacts.training_run``;
    rerun on a copy of it, it resumes)."""
    return ["train-preferences", "--model", str(model), "--data", str(data), "--steps", "4", "--batch-size", "2",
            "--checkpoint-every", "2", "--threads", "1", "--quiet", "--out", str(out)]


# ---------------------------------------------------------------------- a case's own folder
@dataclasses.dataclass
class Context:
    """The case's folder ``dir`` (everything in it is the user's) and the shared :class:`Artifacts`."""

    dir: Path
    art: Artifacts

    def path(self, name: str) -> Path:
        return self.dir / name

    def s(self, name: str) -> str:
        return str(self.dir / name)

    def copy(self, source: Path, name: str | None = None) -> Path:
        target = self.dir / (name or source.name)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        return target

    def file(self, name: str, data: bytes | str) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def json(self, name: str, value: Any) -> Path:
        return self.file(name, json.dumps(value))

    def jsonl(self, name: str, rows: list[Any]) -> Path:
        return self.file(name, "".join(json.dumps(row) + "\n" for row in rows))

    def npz(self, file_name: str, /, **arrays: Any) -> Path:
        path = self.dir / file_name
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
        return path

    def user_folder(self, name: str = "mine") -> Path:
        """A folder of the user's own files (what no command may delete or replace)."""
        folder = self.dir / name
        (folder / "notes").mkdir(parents=True)
        (folder / "thesis.tex").write_text("\\section{Mine}\n")
        (folder / "data.json").write_text('{"mine": true}\n')
        (folder / "config.json").write_text('{"my": "config"}\n')
        (folder / "notes" / "todo.txt").write_text("keep me\n")
        return folder


def truncated(path: Path) -> Path:
    """Keep the first half of the file's bytes (a copy cut short by a full disk or a killed transfer)."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def random_bytes(path: Path, size: int = 512) -> Path:
    path.write_bytes(np.random.default_rng(zlib.crc32(path.name.encode())).bytes(size))
    return path


def emptied(path: Path) -> Path:
    path.write_bytes(b"")
    return path


CORRUPTIONS: dict[str, Callable[[Path], Path]] = {"empty": emptied, "truncated": truncated,
                                                  "random": random_bytes}


# ---------------------------------------------------------------------- running a case
@dataclasses.dataclass
class Outcome:
    status: str  # ok | traceback | silent | misleading | changed
    exit_code: int | None
    message: str
    trace: str = ""
    changes: list[str] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        text = f"{self.status} (exit {self.exit_code})"
        if self.changes:
            text += f"; changed: {self.changes[:5]}"
        if self.trace:
            return f"{text}\n{self.trace}"
        return f"{text}\n{self.message.strip()[-1500:]}"


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (relative) with its bytes (``None`` for a folder)."""
    state: dict[str, bytes | None] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        state[key] = None if path.is_dir() else path.read_bytes() if path.is_file() else b"<special>"
    return state


def differences(before: dict[str, bytes | None], after: dict[str, bytes | None]) -> list[str]:
    changed = [f"+{k}" for k in after if k not in before] + [f"-{k}" for k in before if k not in after]
    return changed + [f"~{k}" for k in before if k in after and before[k] != after[k]]


ERROR_LINE = re.compile(r"^irlb( [a-z-]+)?: error: ")


class CaseTimedOut(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expire(signum, frame):
        raise CaseTimedOut(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_case(case: Case, art: Artifacts, folder: Path) -> Outcome:
    """Build ``case`` in ``folder`` (created empty), run it and classify the result (module docstring)."""
    from irl_bilevel.validation import ValidationError
    from irlb.main import main

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    invocation = case.build(Context(folder, art))
    before = snapshot(folder)
    stdout, stderr = io.StringIO(), io.StringIO()
    code: int | None = None
    trace = ""
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), time_limit(TIME_LIMIT):
            if callable(invocation):
                try:
                    invocation()
                    code = 0
                except ValidationError as error:
                    print(f"irlb: error: {error}", file=sys.stderr)
                    code = 2
            else:
                try:
                    code = main([str(a) for a in invocation])
                except SystemExit as exit_:  # argparse
                    code = exit_.code if isinstance(exit_.code, int) else 1
    except CaseTimedOut as error:
        return Outcome("silent", None, str(error) + "\n" + stderr.getvalue()[-2000:])
    except BaseException:
        trace = traceback.format_exc()
    message = stderr.getvalue()
    changes = differences(before, snapshot(folder))
    if trace:
        return Outcome("traceback", None, message, trace, changes=changes)
    if code == 0:
        return Outcome("silent", code, message + stdout.getvalue()[-500:], changes=changes)
    if "Traceback (most recent call last)" in message:
        return Outcome("traceback", code, message)
    if code != 2:
        return Outcome("exit-status", code, message, changes=changes)
    # `irlb: error: ...` (argparse: `irlb <command>: error: ...`); progress bars may come before it
    lines = [line for line in message.splitlines() if ERROR_LINE.match(line)]
    named = all(any(n.lower() in line.lower() for line in lines) for n in case.names)
    if not lines or not named:
        return Outcome("misleading", code, message, changes=changes)
    if changes:
        return Outcome("changed", code, message, changes=changes)
    return Outcome("ok", code, message)


# ---------------------------------------------------------------------- base invocations (tiny budgets)
# The two spellings of this branch's command line that the CLI generated from the typed configs changes (main):
# set them to ("--frozen-backbone",) and "--lora-target-modules" there. Everything else is spelt alike.
FROZEN_BACKBONE: tuple[str, ...] = ("--frozen-backbone",)  # train-reward-model: a linear probe on the frozen backbone
TARGET_MODULES = "--lora-target-modules"  # the LoRA target modules of train-preferences, train-reward-model and rloo

# Settings a case may change go through --set (a later --set wins; a flag would win over any --set or --config).
# occupancy_target=null, grad_tol=0, loss_rtol=0: no early stop, so a run folder's checkpoint is at step 3 with 3 rows
# of metrics.
TABULAR = ["tabular-irl", "--testbed", "gridworld", "--set", "reward_model=tabular", "--set", "steps=3", "--set",
           "occupancy_target=null", "--set", "grad_tol=0", "--set", "loss_rtol=0", "--quiet"]


def tabular(c: Context, *extra: str, out: str = "run") -> list[str]:
    return [*TABULAR, "--out", c.s(out), *extra]


def tabular_file(c: Context, *extra: str, out: str = "run") -> list[str]:
    """tabular-irl on the user's own MDP and demonstrations (copied into the case's folder)."""
    return ["tabular-irl", "--mdp-file", str(c.copy(c.art.mdp)), "--demonstrations-file",
            str(c.copy(c.art.demonstrations)), "--steps", "2", "--quiet", "--out", c.s(out), *extra]


def gym_demos(c: Context, name: str = "demos.npz", drop: tuple[str, ...] = (), **changes: Any) -> Path:
    arrays = {k: v for k, v in c.art.gym_demonstrations.items() if k not in drop}
    arrays.update(changes)
    return c.npz(name, **arrays)


def gym(c: Context, *extra: str, demos: Path | None = None, out: str = "run") -> list[str]:
    demos = demos if demos is not None else gym_demos(c)
    return ["gym-irl", "--set", "env_id=CartPole-v1", "--set", "outer_steps=1", "--env-steps-per-outer-step", "32",
            "--set", "eval_episodes=1", "--set", f"demonstrations_file={demos}", "--quiet", "--out", c.s(out), *extra]


def preference_rl(c: Context, *extra: str, out: str = "run") -> list[str]:
    return ["preference-rl", "--set", "env_id=CartPole-v1", "--total-env-steps", "128", "--query-budget", "4",
            "--set", "selection=uniform", "--set", "env_steps_per_outer_step=64", "--set", "segment_length=5",
            "--set", "segment_window=128", "--set", "query_sessions=1", "--set", "ensemble_size=1",
            "--set", "eval_episodes=1", "--quiet", "--out", c.s(out), *extra]


def train_preferences(c: Context, *extra: str, data: Path | None = None, model: Path | None = None,
                      out: str = "adapter") -> list[str]:
    return ["train-preferences", "--model", str(model or c.art.lm), "--data", str(data or c.copy(c.art.pairs)),
            "--steps", "1", "--batch-size", "2", "--threads", "1", "--quiet", "--out", c.s(out), *extra]


def train_reward_model(c: Context, *extra: str, data: Path | None = None, model: Path | None = None,
                       out: str = "reward", frozen: bool = True) -> list[str]:
    """``frozen``: a linear probe on the frozen backbone (fast); False: LoRA on the backbone (its settings apply)."""
    return ["train-reward-model", "--model", str(model or c.art.lm), "--data", str(data or c.copy(c.art.pairs)),
            "--steps", "1", "--batch-size", "2", *(FROZEN_BACKBONE if frozen else ()), "--threads", "1", "--out",
            c.s(out), *extra]


def rloo(c: Context, *extra: str, prompts: Path | None = None, reward: Path | None = None, model: Path | None = None,
         out: str = "adapter") -> list[str]:
    return ["rloo", "--model", str(model or c.art.lm), "--prompts", str(prompts or c.copy(c.art.pairs)),
            "--reward-model", str(reward or c.art.text_reward_model), "--steps", "1", "--prompts-per-step", "1",
            "--samples-per-prompt", "2", "--max-new-tokens", "2", "--threads", "1", "--quiet", "--out", c.s(out),
            *extra]


def rewardbench(c: Context, *extra: str, file: Path | None = None, model: Path | None = None) -> list[str]:
    return ["rewardbench", "--model", str(model or c.art.text_reward_model), "--file",
            str(file or c.copy(c.art.pairs)), "--threads", "1", *extra]


def agentic(c: Context, *extra: str, model: Path | None = None, out: str = "out") -> list[str]:
    return ["agentic", "--model", str(model or c.art.lm), "--scale", "tiny", "--threads", "1", "--quiet",
            "--out", c.s(out), *extra]


def sweep(c: Context, *extra: str, out: str = "sweep") -> list[str]:
    return ["sweep", "--experiment", SWEEP_EXPERIMENT, "--scale", "tiny", "--seeds", "0,1", "--metric", SWEEP_METRIC,
            "--out", c.s(out), *extra]


def sweep_seeds(c: Context, seeds: str) -> list[str]:
    """The base sweep with ``--seeds seeds`` instead of its own (a second --seeds would add to them)."""
    return [seeds if argument == "0,1" else argument for argument in sweep(c)]


def reproduce(c: Context, *extra: str) -> list[str]:
    return ["reproduce", "--scale", "tiny", "--only", "loss_gradient_weights", "--results", c.s("results"),
            "--figures", c.s("figures"), *extra]


def paper(c: Context, *extra: str, results: Path | None = None) -> list[str]:
    return ["paper", "--results", str(results or c.dir / "results"), "--benchmarks", c.s("benchmarks"),
            "--out", c.s("generated"), *extra]


def paper_results(c: Context) -> Path:
    """A results folder holding one good result file, copied from the repository's results/."""
    folder = c.dir / "results"
    folder.mkdir()
    shutil.copy2(REPOSITORY / "results" / "loss_gradient_weights.json", folder)
    (c.dir / "benchmarks").mkdir()
    return folder


REPOSITORY = Path(__file__).resolve().parent.parent


# ====================================================================== the corpus
# Family `missing_file`: a file or folder the user names does not exist.
add("missing_file", "tabular-irl --mdp-file", "no.npz",
    lambda c: ["tabular-irl", "--mdp-file", c.s("no.npz"), "--quiet", "--out", c.s("run")])
add("missing_file", "tabular-irl --demonstrations-file", "no_demos.npz",
    lambda c: tabular(c, "--demonstrations-file", c.s("no_demos.npz")))
add("missing_file", "tabular-irl --config", "no_config.json", lambda c: tabular(c, "--config", c.s("no_config.json")))
add("missing_file", "gym-irl demonstrations_file", "no_demos.npz", lambda c: gym(c, demos=c.path("no_demos.npz")))
add("missing_file", "gym-irl --config", "no_config.json", lambda c: gym(c, "--config", c.s("no_config.json")))
add("missing_file", "preference-rl --config", "no_config.json",
    lambda c: preference_rl(c, "--config", c.s("no_config.json")))
add("missing_file", "rewardbench --file", "no_pairs.jsonl", lambda c: rewardbench(c, file=c.path("no_pairs.jsonl")))
add("missing_file", "rewardbench --model", "no_model", lambda c: rewardbench(c, model=c.path("no_model")))
add("missing_file", "rewardbench --backbone", "no_backbone",
    lambda c: rewardbench(c, "--backbone", c.s("no_backbone"), model=c.art.adapter))
add("missing_file", "train-preferences --data", "no_pairs.jsonl",
    lambda c: train_preferences(c, data=c.path("no_pairs.jsonl")))
add("missing_file", "train-preferences --model", "no_model", lambda c: train_preferences(c, model=c.path("no_model")))
add("missing_file", "train-reward-model --data", "no_pairs.jsonl",
    lambda c: train_reward_model(c, data=c.path("no_pairs.jsonl")))
add("missing_file", "train-reward-model --model", "no_model", lambda c: train_reward_model(c, model=c.path("no_model")))
add("missing_file", "rloo --prompts", "no_prompts.jsonl", lambda c: rloo(c, prompts=c.path("no_prompts.jsonl")))
add("missing_file", "rloo --reward-model", "no_reward", lambda c: rloo(c, reward=c.path("no_reward")))
add("missing_file", "rloo --model", "no_model", lambda c: rloo(c, model=c.path("no_model")))
add("missing_file", "agentic --model", "no_model", lambda c: agentic(c, model=c.path("no_model")))
add("missing_file", "agentic --config", "no_config.json", lambda c: agentic(c, "--config", c.s("no_config.json")))
add("missing_file", "reproduce --config", "no_config.json", lambda c: reproduce(c, "--config", c.s("no_config.json")))
add("missing_file", "config --config", "no_config.json",
    lambda c: ["config", SWEEP_EXPERIMENT, "--scale", "tiny", "--config", c.s("no_config.json")])
add("missing_file", "sweep --spec", "no_spec.json",
    lambda c: ["sweep", "--spec", c.s("no_spec.json"), "--out", c.s("s")])
add("missing_file", "merge-sweeps summary", "no_sweep.json",
    lambda c: ["merge-sweeps", str(c.copy(c.art.sweep / "sweep.json")), c.s("no_sweep.json"),
               "--out", c.s("m.json")])
add("missing_file", "paper --results", "no_results", lambda c: paper(c, results=c.path("no_results")))


def _library(function: Callable[..., Any], *arguments: Any, **options: Any) -> Callable[[], Any]:
    return lambda: function(*arguments, **options)


def load_mdp(path: Path) -> Any:
    from classic_rl.npz_io import load_mdp_npz

    return load_mdp_npz(path)


def load_tabular_demos(path: Path, num_states: int | None = None, num_actions: int | None = None) -> Any:
    from classic_rl.npz_io import load_demonstrations_npz

    return load_demonstrations_npz(path, num_states, num_actions)


def load_gym_demos(path: Path) -> Any:
    from classic_rl.gym_irl import load_demonstrations

    return load_demonstrations(path)


def load_reward(folder: Path) -> Any:
    from irl_bilevel.reward_io import load_reward_model

    return load_reward_model(folder)


def load_checkpoint(path: Path) -> Any:
    from irl_bilevel.runs import load_checkpoint as load

    return load(path)


def read_preferences(path: Path, **options: Any) -> Any:
    from llm.preference_data import read_preference_file

    return read_preference_file(path, **options)


def load_lm(path: Path, **options: Any) -> Any:
    from llm.models import load_causal_lm

    return load_causal_lm(path, **options)


def load_adapter_on_lm(c: Context, folder: Path) -> Callable[[], Any]:
    def load() -> Any:
        from llm.models import load_adapter, load_causal_lm

        base, _ = load_causal_lm(c.art.lm)
        return load_adapter(base, folder)
    return load


def load_text_reward(folder: Path) -> Any:
    from llm.reward_models import load_text_reward_model

    return load_text_reward_model(folder)


def load_pairs_file(path: Path) -> Any:
    from llm.evaluation import load_rewardbench_file

    return load_rewardbench_file(path)


add("missing_file", "load_mdp_npz", "no.npz", lambda c: _library(load_mdp, c.path("no.npz")))
add("missing_file", "load_demonstrations_npz", "no.npz", lambda c: _library(load_tabular_demos, c.path("no.npz")))
add("missing_file", "gym_irl.load_demonstrations", "no.npz", lambda c: _library(load_gym_demos, c.path("no.npz")))
add("missing_file", "load_reward_model", "no_dir", lambda c: _library(load_reward, c.path("no_dir")))
add("missing_file", "load_checkpoint", "no.pt", lambda c: _library(load_checkpoint, c.path("no.pt")))
add("missing_file", "read_preference_file", "no.jsonl", lambda c: _library(read_preferences, c.path("no.jsonl")))
add("missing_file", "load_causal_lm", "no_model", lambda c: _library(load_lm, c.path("no_model")))
add("missing_file", "load_adapter", "no_adapter", lambda c: load_adapter_on_lm(c, c.path("no_adapter")))
add("missing_file", "load_text_reward_model", "no_dir", lambda c: _library(load_text_reward, c.path("no_dir")))
add("missing_file", "load_rewardbench_file", "no.jsonl", lambda c: _library(load_pairs_file, c.path("no.jsonl")))


# Families `empty_file`, `truncated_file`, `random_bytes`: one good file of every kind a user hands over (or a run
# folder holds), broken three ways. Each target: (label, what the message names, build(context, corrupt)).
def _corrupt_copy(c: Context, source: Path, corrupt: Callable[[Path], Path], name: str | None = None) -> Path:
    return corrupt(c.copy(source, name))


def _corrupt_in(c: Context, folder: Path, file: str, corrupt: Callable[[Path], Path]) -> Path:
    copy = c.copy(folder)
    corrupt(copy / file)
    return copy


def _good_config(c: Context, values: dict[str, Any], corrupt: Callable[[Path], Path]) -> str:
    return str(corrupt(c.json("settings.json", values)))


def _sweep_trial_file(c: Context, file: str, corrupt: Callable[[Path], Path]) -> list[str]:
    folder = c.copy(c.art.sweep)
    trial = sorted(p for p in folder.iterdir() if p.is_dir())[0]
    corrupt(trial / file)
    return sweep(c, out=folder.name)


def _paper_result(c: Context, corrupt: Callable[[Path], Path]) -> list[str]:
    results = paper_results(c)
    corrupt(results / "loss_gradient_weights.json")
    return paper(c)


def _datasets_folder(c: Context, corrupt: Callable[[Path], Path]) -> list[str]:
    import datasets

    folder = c.dir / "pairs_dataset"
    rows = [json.loads(line) for line in c.art.pairs.read_text().splitlines()]
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    corrupt(next(folder.glob("*.arrow")))
    return train_preferences(c, data=folder)


def _training_run_with(c: Context, change: Callable[[Path], Any]) -> list[str]:
    """Rerun the unfinished training run (it would resume) on a copy of it changed by ``change(folder)``."""
    folder = c.copy(c.art.training_run)
    change(folder)
    return training_run_arguments(c.art.lm, c.copy(c.art.pairs), folder)


FILE_TARGETS: list[tuple[str, tuple[str, ...], Callable[[Context, Callable[[Path], Path]], Invocation]]] = [
    ("tabular-irl --mdp-file", ("mdp.npz",), lambda c, k: [
        *tabular_file(c), "--mdp-file", str(_corrupt_copy(c, c.art.mdp, k, "bad_mdp.npz"))]),
    ("tabular-irl --demonstrations-file", ("demonstrations.npz",), lambda c, k: [
        *tabular_file(c), "--demonstrations-file",
        str(_corrupt_copy(c, c.art.demonstrations, k, "bad_demonstrations.npz"))]),
    ("gym-irl demonstrations", ("demos.npz",), lambda c, k: gym(c, demos=k(gym_demos(c)))),
    ("tabular-irl --config", ("settings.json",), lambda c, k: tabular(c, "--config", _good_config(c, {"lr": 0.5}, k))),
    ("gym-irl --config", ("settings.json",), lambda c, k: gym(c, "--config", _good_config(c, {"lr": 0.01}, k))),
    ("preference-rl --config", ("settings.json",),
     lambda c, k: preference_rl(c, "--config", _good_config(c, {"lr": 0.5}, k))),
    ("agentic --config", ("settings.json",), lambda c, k: agentic(c, "--config", _good_config(c, {"seeds": 1}, k))),
    ("reproduce --config", ("settings.json",),
     lambda c, k: reproduce(c, "--config", _good_config(c, {"loss_gradient_weights": {}}, k))),
    ("config --config", ("settings.json",), lambda c, k: [
        "config", SWEEP_EXPERIMENT, "--scale", "tiny", "--config", _good_config(c, {}, k)]),
    ("sweep --spec", ("settings.json",), lambda c, k: [
        "sweep", "--spec", _good_config(c, {"experiment": SWEEP_EXPERIMENT, "scale": "tiny", "seeds": [0]}, k),
        "--metric", SWEEP_METRIC, "--out", c.s("s")]),
    ("train-preferences --data", ("pairs.jsonl",), lambda c, k: train_preferences(c, data=k(c.copy(c.art.pairs)))),
    ("train-preferences --data (datasets folder)", ("pairs_dataset",), _datasets_folder),
    ("train-reward-model --data", ("pairs.jsonl",), lambda c, k: train_reward_model(c, data=k(c.copy(c.art.pairs)))),
    ("rloo --prompts", ("pairs.jsonl",), lambda c, k: rloo(c, prompts=k(c.copy(c.art.pairs)))),
    ("rewardbench --file", ("pairs.jsonl",), lambda c, k: rewardbench(c, file=k(c.copy(c.art.pairs)))),
    ("merge-sweeps summary", ("sweep.json",), lambda c, k: [
        "merge-sweeps", str(c.copy(c.art.sweep / "sweep.json", "first.json")),
        str(k(c.copy(c.art.sweep / "sweep.json"))), "--out", c.s("merged.json")]),
    ("paper result file", ("loss_gradient_weights.json",), _paper_result),
    ("tabular-irl run checkpoint.pt", ("checkpoint.pt",), lambda c, k: [
        *TABULAR, "--set", "checkpoint_every=1", "--out", str(_corrupt_in(c, c.art.tabular_run, "checkpoint.pt", k))]),
    ("tabular-irl run config.json", ("config.json",), lambda c, k: [
        *TABULAR, "--set", "checkpoint_every=1", "--out", str(_corrupt_in(c, c.art.tabular_run, "config.json", k))]),
    ("tabular-irl run metrics.jsonl", ("metrics.jsonl",), lambda c, k: [
        *TABULAR, "--set", "checkpoint_every=1", "--out", str(_corrupt_in(c, c.art.tabular_run, "metrics.jsonl", k))]),
    ("train-preferences unfinished run tensors.safetensors", ("tensors.safetensors",),
     lambda c, k: _training_run_with(c, lambda f: k(f / TRAINING_CHECKPOINT / "tensors.safetensors"))),
    ("train-preferences unfinished run objects.pt", ("objects.pt",),
     lambda c, k: _training_run_with(c, lambda f: k(f / TRAINING_CHECKPOINT / "objects.pt"))),
    ("train-preferences unfinished run state.json", ("state.json",),
     lambda c, k: _training_run_with(c, lambda f: k(f / TRAINING_CHECKPOINT / "state.json"))),
    ("train-preferences unfinished run run.json", ("run.json",),
     lambda c, k: _training_run_with(c, lambda f: k(f / "checkpoints" / "run.json"))),
    ("sweep trial done.json", ("done.json",), lambda c, k: _sweep_trial_file(c, "done.json", k)),
    ("rewardbench --model reward.json", ("reward.json",), lambda c, k: rewardbench(
        c, model=_corrupt_in(c, c.art.text_reward_model, "reward.json", k))),
    ("rewardbench --model reward.safetensors", ("reward.safetensors",), lambda c, k: rewardbench(
        c, model=_corrupt_in(c, c.art.text_reward_model, "reward.safetensors", k))),
    ("rloo --reward-model reward.safetensors", ("reward.safetensors",), lambda c, k: rloo(
        c, reward=_corrupt_in(c, c.art.text_reward_model, "reward.safetensors", k))),
    ("train-preferences --model config.json", ("config.json",), lambda c, k: train_preferences(
        c, model=_corrupt_in(c, c.art.lm, "config.json", k))),
    ("train-preferences --model model.safetensors", ("model.safetensors",), lambda c, k: train_preferences(
        c, model=_corrupt_in(c, c.art.lm, "model.safetensors", k))),
    ("train-preferences --model tokenizer.json", ("tokenizer.json",), lambda c, k: train_preferences(
        c, model=_corrupt_in(c, c.art.lm, "tokenizer.json", k))),
    ("rewardbench --model adapter_config.json", ("adapter_config.json",), lambda c, k: rewardbench(
        c, model=_corrupt_in(c, c.art.adapter, "adapter_config.json", k))),
    ("rewardbench --model adapter_model.safetensors", ("adapter_model.safetensors",), lambda c, k: rewardbench(
        c, model=_corrupt_in(c, c.art.adapter, "adapter_model.safetensors", k))),
    ("load_reward_model reward.json", ("reward.json",),
     lambda c, k: _library(load_reward, _corrupt_in(c, c.art.reward_model, "reward.json", k))),
    ("load_reward_model reward.safetensors", ("reward.safetensors",),
     lambda c, k: _library(load_reward, _corrupt_in(c, c.art.reward_model, "reward.safetensors", k))),
    ("load_checkpoint", ("checkpoint.pt",),
     lambda c, k: _library(load_checkpoint, _corrupt_copy(c, c.art.tabular_run / "checkpoint.pt", k))),
    ("load_mdp_npz", ("mdp.npz",), lambda c, k: _library(load_mdp, _corrupt_copy(c, c.art.mdp, k))),
    ("load_demonstrations_npz", ("demonstrations.npz",),
     lambda c, k: _library(load_tabular_demos, _corrupt_copy(c, c.art.demonstrations, k))),
    ("gym_irl.load_demonstrations", ("demos.npz",), lambda c, k: _library(load_gym_demos, k(gym_demos(c)))),
    ("read_preference_file", ("pairs.jsonl",),
     lambda c, k: _library(read_preferences, _corrupt_copy(c, c.art.pairs, k))),
    ("load_causal_lm model.safetensors", ("model.safetensors",),
     lambda c, k: _library(load_lm, _corrupt_in(c, c.art.lm, "model.safetensors", k))),
    ("load_text_reward_model reward.safetensors", ("reward.safetensors",),
     lambda c, k: _library(load_text_reward, _corrupt_in(c, c.art.text_reward_model, "reward.safetensors", k))),
    ("load_adapter adapter_model.safetensors", ("adapter_model.safetensors",),
     lambda c, k: load_adapter_on_lm(c, _corrupt_in(c, c.art.adapter, "adapter_model.safetensors", k))),
]
for _family, _corrupt in (("empty_file", emptied), ("truncated_file", truncated), ("random_bytes", random_bytes)):
    for _label, _names, _build in FILE_TARGETS:
        add(_family, _label, _names, (lambda build, corrupt: lambda c: build(c, corrupt))(_build, _corrupt))



# Family `wrong_json_types`: well-formed JSON of the wrong shape or types.
add("wrong_json_types", "tabular-irl --config a list", "settings.json",
    lambda c: tabular(c, "--config", str(c.json("settings.json", [1, 2]))))
add("wrong_json_types", "tabular-irl --config lr a string", "lr",
    lambda c: tabular(c, "--config", str(c.json("settings.json", {"lr": "fast"}))))
add("wrong_json_types", "tabular-irl --config testbed_options a number", "testbed_options",
    lambda c: tabular(c, "--config", str(c.json("settings.json", {"testbed_options": 3}))))
add("wrong_json_types", "gym-irl --config hidden_sizes a string", "hidden_sizes",
    lambda c: gym(c, "--config", str(c.json("settings.json", {"hidden_sizes": "abc"}))))
add("wrong_json_types", "preference-rl --config teacher_options a list", "teacher_options",
    lambda c: preference_rl(c, "--config", str(c.json("settings.json", {"teacher_options": []}))))
add("wrong_json_types", "agentic --config envs a number", "envs",
    lambda c: agentic(c, "--config", str(c.json("settings.json", {"envs": 3}))))
add("wrong_json_types", "reproduce --config an experiment's settings a number", "loss_gradient_weights",
    lambda c: reproduce(c, "--config", str(c.json("settings.json", {"loss_gradient_weights": 3}))))
add("wrong_json_types", "reproduce --config a list", "settings.json",
    lambda c: reproduce(c, "--config", str(c.json("settings.json", ["loss_gradient_weights"]))))
add("wrong_json_types", "sweep --spec experiment a number", "experiment",
    lambda c: ["sweep", "--spec", str(c.json("spec.json", {"experiment": 5})), "--out", c.s("s")])
add("wrong_json_types", "sweep --spec grid a list", "grid",
    lambda c: ["sweep", "--spec", str(c.json("spec.json", {"experiment": SWEEP_EXPERIMENT, "grid": [1, 2]})),
               "--out", c.s("s")])
add("wrong_json_types", "sweep --spec seeds a string", "seeds",
    lambda c: ["sweep", "--spec", str(c.json("spec.json", {"experiment": SWEEP_EXPERIMENT, "seeds": "0,1"})),
               "--out", c.s("s")])
add("wrong_json_types", "sweep --spec a list", "spec.json",
    lambda c: ["sweep", "--spec", str(c.json("spec.json", [SWEEP_EXPERIMENT])), "--out", c.s("s")])


def _summary(c: Context, name: str, change: Callable[[dict[str, Any]], Any]) -> str:
    summary = json.loads((c.art.sweep / "sweep.json").read_text())
    return str(c.json(name, change(summary)))


def _merge(c: Context, change: Callable[[dict[str, Any]], Any]) -> list[str]:
    first = str(c.copy(c.art.sweep / "sweep.json", "first.json"))
    return ["merge-sweeps", first, _summary(c, "second.json", change), "--out", c.s("merged.json")]


add("wrong_json_types", "merge-sweeps summary a list", "second.json", lambda c: _merge(c, lambda s: [s]))
add("wrong_json_types", "merge-sweeps summary without trials", "trials",
    lambda c: _merge(c, lambda s: {k: v for k, v in s.items() if k != "trials"}))
add("wrong_json_types", "merge-sweeps summary spec a number", "spec", lambda c: _merge(c, lambda s: {**s, "spec": 3}))
add("wrong_json_types", "merge-sweeps summary trials not objects", "trials",
    lambda c: _merge(c, lambda s: {**s, "trials": [1, 2]}))
add("wrong_json_types", "merge-sweeps summary without experiment", "experiment",
    lambda c: _merge(c, lambda s: {k: v for k, v in s.items() if k != "experiment"}))


def _paper_with(c: Context, value: Any) -> list[str]:
    results = paper_results(c)
    (results / "loss_gradient_weights.json").write_text(json.dumps(value))
    return paper(c)


add("wrong_json_types", "paper result file a list", "loss_gradient_weights.json", lambda c: _paper_with(c, [1, 2]))
add("wrong_json_types", "paper result file without its results", "loss_gradient_weights.json",
    lambda c: _paper_with(c, {"name": "loss_gradient_weights"}))


def _reward_spec(c: Context, change: Callable[[dict[str, Any]], Any]) -> Callable[[], Any]:
    folder = c.copy(c.art.reward_model)
    spec = json.loads((folder / "reward.json").read_text())
    (folder / "reward.json").write_text(json.dumps(change(spec)))
    return _library(load_reward, folder)


add("wrong_json_types", "reward.json a list", "reward.json", lambda c: _reward_spec(c, lambda s: [s]))
add("wrong_json_types", "reward.json input_dim a string", "input_dim",
    lambda c: _reward_spec(c, lambda s: {**s, "input_dim": "five"}))
add("wrong_json_types", "reward.json hidden_sizes a string", "hidden_sizes",
    lambda c: _reward_spec(c, lambda s: {**s, "hidden_sizes": "abc"}))
add("wrong_json_types", "reward.json aspect_names a number", "aspect_names",
    lambda c: _reward_spec(c, lambda s: {**s, "aspect_names": 5}))
add("wrong_json_types", "reward.json architecture a number", "architecture",
    lambda c: _reward_spec(c, lambda s: {**s, "architecture": 3}))
add("wrong_json_types", "reward.json without input_dim", "input_dim",
    lambda c: _reward_spec(c, lambda s: {k: v for k, v in s.items() if k != "input_dim"}))
add("wrong_json_types", "reward.json discount a string", "discount",
    lambda c: _reward_spec(c, lambda s: {**s, "discount": "high"}))
add("wrong_json_types", "reward.json uses_actions maybe", "uses_actions",
    lambda c: _reward_spec(c, lambda s: {**s, "uses_actions": "maybe"}))
add("wrong_json_types", "reward.json hidden_sizes of another model", "reward.safetensors",
    lambda c: _reward_spec(c, lambda s: {**s, "hidden_sizes": [7]}))


def _text_spec(c: Context, change: Callable[[dict[str, Any]], Any]) -> list[str]:
    folder = c.copy(c.art.text_reward_model)
    spec = json.loads((folder / "reward.json").read_text())
    (folder / "reward.json").write_text(json.dumps(change(spec)))
    return rewardbench(c, model=folder)


add("wrong_json_types", "text reward.json a list", "reward.json", lambda c: _text_spec(c, lambda s: [s]))
add("wrong_json_types", "text reward.json kind a number", "kind", lambda c: _text_spec(c, lambda s: {**s, "kind": 5}))
add("wrong_json_types", "text reward.json aspect_names a string", "aspect_names",
    lambda c: _text_spec(c, lambda s: {**s, "aspect_names": "reward"}))
add("wrong_json_types", "text reward.json backbone a string", "backbone",
    lambda c: _text_spec(c, lambda s: {**s, "backbone": "lm"}))
add("wrong_json_types", "text reward.json lora a string", "lora", lambda c: _text_spec(c, lambda s: {**s, "lora": "x"}))
add("wrong_json_types", "text reward.json without kind", "kind",
    lambda c: _text_spec(c, lambda s: {k: v for k, v in s.items() if k != "kind"}))
add("wrong_json_types", "text reward.json feature_dim a string", "feature_dim",
    lambda c: _text_spec(c, lambda s: {**s, "feature_dim": "32"}))


def _done(c: Context, change: Callable[[dict[str, Any]], Any]) -> list[str]:
    return _sweep_trial_file(c, "done.json", lambda path: c.json(str(path.relative_to(c.dir)),
                                                                  change(json.loads(path.read_text()))))


add("wrong_json_types", "done.json a list", "done.json", lambda c: _done(c, lambda d: [d]))
add("wrong_json_types", "done.json without metric", "done.json",
    lambda c: _done(c, lambda d: {k: v for k, v in d.items() if k != "metric"}))
add("wrong_json_types", "done.json metric a string", "done.json", lambda c: _done(c, lambda d: {**d, "metric": "x"}))
add("wrong_json_types", "done.json seconds a list", "done.json", lambda c: _done(c, lambda d: {**d, "seconds": []}))


def _adapter_config(c: Context, change: Callable[[dict[str, Any]], Any]) -> list[str]:
    folder = c.copy(c.art.adapter)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps(change(config)))
    return rewardbench(c, model=folder)


add("wrong_json_types", "adapter_config.json a list", "adapter_config.json",
    lambda c: _adapter_config(c, lambda a: [a]))
add("wrong_json_types", "adapter_config.json r a string", "adapter_config.json",
    lambda c: _adapter_config(c, lambda a: {**a, "r": "eight"}))
add("wrong_json_types", "adapter_config.json base model a number", "adapter_config.json",
    lambda c: _adapter_config(c, lambda a: {**a, "base_model_name_or_path": 5}))


def _run_config(c: Context, change: Callable[[dict[str, Any]], Any]) -> list[str]:
    folder = c.copy(c.art.tabular_run)
    record = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(change(record)))
    return [*TABULAR, "--set", "checkpoint_every=1", "--out", str(folder)]


add("wrong_json_types", "run config.json a list", "config.json", lambda c: _run_config(c, lambda r: [r]))
add("wrong_json_types", "run config.json config a number", "config.json",
    lambda c: _run_config(c, lambda r: {**r, "config": 3}))



# Family `npz_arrays`: archives whose arrays are missing, misshapen, of the wrong dtype or out of range.
def _mdp(c: Context, drop: tuple[str, ...] = (), via_cli: bool = False, **changes: Any) -> Invocation:
    arrays = {k: v for k, v in c.art.mdp_arrays().items() if k not in drop}
    arrays.update(changes)
    path = c.npz("user_mdp.npz", **arrays)
    if via_cli:
        return ["tabular-irl", "--mdp-file", str(path), "--demonstrations-file", str(c.copy(c.art.demonstrations)),
                "--steps", "2", "--quiet", "--out", c.s("run")]
    return _library(load_mdp, path)


def _transitions(c: Context) -> np.ndarray:
    return c.art.mdp_arrays()["transitions"].copy()


def _bad_rows(c: Context) -> np.ndarray:
    transitions = _transitions(c)
    transitions[1, 0] *= 0.5
    return transitions


def _negative(c: Context) -> np.ndarray:
    transitions = _transitions(c)
    transitions[0, 0, 0] -= 1.0
    transitions[0, 0, 1] += 1.0
    return transitions


def _nan(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float64).copy()
    array.flat[0] = np.nan
    return array


def _sparse(c: Context, **changes: Any) -> Invocation:
    successors = np.tile(np.arange(5)[None, None, :2], (5, 2, 1))
    probabilities = np.full((5, 2, 2), 0.5)
    arrays = {"successors": changes.pop("successors", successors),
              "successor_probabilities": changes.pop("successor_probabilities", probabilities)}
    return _mdp(c, drop=("transitions",), **arrays, **changes)


MDP_CASES: list[tuple[str, str, Callable[[Context], Invocation]]] = [
    ("missing start", "start", lambda c: _mdp(c, drop=("start",))),
    ("missing discount", "discount", lambda c: _mdp(c, drop=("discount",))),
    ("missing transitions", "transitions", lambda c: _mdp(c, drop=("transitions",))),
    ("dense and sparse transitions", "transitions", lambda c: _mdp(
        c, successors=np.zeros((5, 2, 1), dtype=np.int64), successor_probabilities=np.ones((5, 2, 1)))),
    ("successors without probabilities", "successor_probabilities", lambda c: _mdp(
        c, drop=("transitions",), successors=np.zeros((5, 2, 1), dtype=np.int64))),
    ("transitions 2-D", "transitions", lambda c: _mdp(c, transitions=_transitions(c)[:, :, 0])),
    ("transitions to more states", "transitions", lambda c: _mdp(c, transitions=np.concatenate(
        [_transitions(c), np.zeros((5, 2, 1))], axis=2))),
    ("transitions NaN", "transitions", lambda c: _mdp(c, transitions=_nan(_transitions(c)))),
    ("transitions negative", "transitions", lambda c: _mdp(c, transitions=_negative(c))),
    ("transitions rows not summing to 1", "transitions", lambda c: _mdp(c, transitions=_bad_rows(c))),
    ("transitions strings", "transitions", lambda c: _mdp(c, transitions=np.array(["a", "b"]))),
    ("transitions complex", "transitions", lambda c: _mdp(c, transitions=_transitions(c).astype(np.complex128))),
    ("transitions pickled objects", "transitions", lambda c: _mdp(
        c, transitions=np.array([{"p": 1}, None], dtype=object))),
    ("start not summing to 1", "start", lambda c: _mdp(c, start=np.full(5, 0.5))),
    ("start of another size", "start", lambda c: _mdp(c, start=np.full(4, 0.25))),
    ("start negative", "start", lambda c: _mdp(c, start=np.array([1.5, -0.5, 0.0, 0.0, 0.0]))),
    ("discount 1.5", "discount", lambda c: _mdp(c, discount=np.float64(1.5))),
    ("discount negative", "discount", lambda c: _mdp(c, discount=np.float64(-0.1))),
    ("discount NaN", "discount", lambda c: _mdp(c, discount=np.float64("nan"))),
    ("discount a vector", "discount", lambda c: _mdp(c, discount=np.array([0.9, 0.9]))),
    ("discount a string", "discount", lambda c: _mdp(c, discount=np.str_("0.9"))),
    ("horizon 2.5", "horizon", lambda c: _mdp(c, horizon=np.float64(2.5))),
    ("horizon 0", "horizon", lambda c: _mdp(c, horizon=np.int64(0))),
    ("horizon negative", "horizon", lambda c: _mdp(c, horizon=np.int64(-3))),
    ("successors out of range", "successors", lambda c: _sparse(c, successors=np.full((5, 2, 2), 7))),
    ("successors negative", "successors", lambda c: _sparse(c, successors=np.full((5, 2, 2), -1))),
    ("successors floats", "successors", lambda c: _sparse(c, successors=np.zeros((5, 2, 2)))),
    ("successor_probabilities of another shape", "successor_probabilities",
     lambda c: _sparse(c, successor_probabilities=np.full((5, 2, 3), 1 / 3))),
    ("successor_probabilities not summing to 1", "successor_probabilities",
     lambda c: _sparse(c, successor_probabilities=np.full((5, 2, 2), 0.3))),
    ("state_features of another number of states", "state_features",
     lambda c: _mdp(c, state_features=np.zeros((6, 3)))),
    ("state_features NaN", "state_features", lambda c: _mdp(c, state_features=_nan(np.zeros((5, 3))))),
    ("state_features 1-D", "state_features", lambda c: _mdp(c, state_features=np.zeros(5))),
    ("state_action_features of another shape", "state_action_features",
     lambda c: _mdp(c, state_action_features=np.zeros((5, 3, 2)))),
    ("true_reward of another size", "true_reward", lambda c: _mdp(c, true_reward=np.zeros(6))),
    ("true_reward NaN", "true_reward", lambda c: _mdp(c, true_reward=_nan(np.zeros(5)))),
    ("name a number", "name", lambda c: _mdp(c, name=np.int64(3))),
    ("unknown array", "rewards", lambda c: _mdp(c, rewards=np.zeros(5))),
    ("a single .npy array", "mdp", lambda c: _npy_instead(c)),
    ("cli transitions rows not summing to 1", "transitions", lambda c: _mdp(c, via_cli=True, transitions=_bad_rows(c))),
    ("cli discount 1.5", "discount", lambda c: _mdp(c, via_cli=True, discount=np.float64(1.5))),
    ("cli missing start", "start", lambda c: _mdp(c, via_cli=True, drop=("start",))),
]


def _npy_instead(c: Context) -> Invocation:
    path = c.dir / "mdp.npy"
    np.save(path, np.zeros((2, 2)))
    return _library(load_mdp, path)


for _label, _names, _build in MDP_CASES:
    add("npz_arrays", f"mdp {_label}", (_names, "mdp.npy" if _label.endswith(".npy array") else "user_mdp.npz"), _build)


def _tabular_demos(c: Context, via_cli: bool = False, drop: tuple[str, ...] = (), **changes: Any) -> Invocation:
    with np.load(c.art.demonstrations) as archive:
        arrays = {key: archive[key] for key in archive.files if key not in drop}
    arrays.update(changes)
    path = c.npz("user_demos.npz", **arrays)
    if via_cli:
        return ["tabular-irl", "--mdp-file", str(c.copy(c.art.mdp)), "--demonstrations-file", str(path),
                "--steps", "2", "--quiet", "--out", c.s("run")]
    return _library(load_tabular_demos, path, 5, 2)


DEMONSTRATION_CASES: list[tuple[str, str, Callable[[Context], Invocation]]] = [
    ("missing observations", "observations", lambda c: _tabular_demos(c, drop=("observations",))),
    ("missing actions", "actions", lambda c: _tabular_demos(c, drop=("actions",))),
    ("observations floats", "observations", lambda c: _tabular_demos(c, observations=np.zeros((2, 3)))),
    ("observations 1-D", "observations", lambda c: _tabular_demos(c, observations=np.zeros(3, dtype=np.int64))),
    ("actions of another shape", "actions", lambda c: _tabular_demos(c, actions=np.zeros((2, 2), dtype=np.int64))),
    ("state index out of range", "observations",
     lambda c: _tabular_demos(c, observations=np.array([[0, 1, 9], [3, 4, 4]]))),
    ("action index negative", "actions", lambda c: _tabular_demos(c, actions=np.array([[0, -1, 1], [1, 0, 0]]))),
    ("lengths longer than T", "lengths", lambda c: _tabular_demos(c, lengths=np.array([3, 5]))),
    ("lengths 0", "lengths", lambda c: _tabular_demos(c, lengths=np.array([0, 2]))),
    ("lengths of another size", "lengths", lambda c: _tabular_demos(c, lengths=np.array([3, 2, 1]))),
    ("lengths floats", "lengths", lambda c: _tabular_demos(c, lengths=np.array([3.0, 2.0]))),
    ("no trajectories", "observations", lambda c: _tabular_demos(
        c, observations=np.zeros((0, 3), dtype=np.int64), actions=np.zeros((0, 3), dtype=np.int64), drop=("lengths",))),
    ("no steps", "observations", lambda c: _tabular_demos(
        c, observations=np.zeros((2, 0), dtype=np.int64), actions=np.zeros((2, 0), dtype=np.int64), drop=("lengths",))),
    ("unknown array", "rewards", lambda c: _tabular_demos(c, rewards=np.zeros(2))),
    ("cli state index out of range", "observations",
     lambda c: _tabular_demos(c, via_cli=True, observations=np.array([[0, 1, 9], [3, 4, 4]]))),
    ("cli action index out of range", "actions",
     lambda c: _tabular_demos(c, via_cli=True, actions=np.array([[0, 1, 2], [1, 0, 0]]))),
]
for _label, _names, _build in DEMONSTRATION_CASES:
    add("npz_arrays", f"demonstrations {_label}", (_names, "user_demos.npz"), _build)


def _gym(c: Context, via_cli: bool = True, drop: tuple[str, ...] = (), **changes: Any) -> Invocation:
    path = gym_demos(c, drop=drop, **changes)
    return gym(c, demos=path) if via_cli else _library(load_gym_demos, path)


def _gym_array(c: Context, key: str) -> np.ndarray:
    return c.art.gym_demonstrations[key].copy()


def _gym_actions_out_of_range(c: Context) -> np.ndarray:
    actions = _gym_array(c, "actions")
    actions[0, 0] = 5
    return actions


GYM_CASES: list[tuple[str, str, Callable[[Context], Invocation]]] = [
    ("missing observations", "observations", lambda c: _gym(c, drop=("observations",))),
    ("missing actions", "actions", lambda c: _gym(c, drop=("actions",))),
    ("missing lengths", "lengths", lambda c: _gym(c, drop=("lengths",))),
    ("observations of another size", "observations",
     lambda c: _gym(c, observations=_gym_array(c, "observations")[..., :3])),
    ("observations NaN", "observations", lambda c: _gym(c, observations=_nan(_gym_array(c, "observations")))),
    ("observations strings", "observations", lambda c: _gym(c, observations=np.array([["a"]]))),
    ("actions out of range", "actions", lambda c: _gym(c, actions=_gym_actions_out_of_range(c))),
    ("actions floats for discrete actions", "actions",
     lambda c: _gym(c, actions=_gym_array(c, "actions").astype(np.float32))),
    ("actions of another shape", "actions", lambda c: _gym(c, actions=_gym_array(c, "actions")[:2])),
    ("lengths longer than T", "lengths", lambda c: _gym(c, lengths=_gym_array(c, "lengths") + 1000)),
    ("terminated of another size", "terminated", lambda c: _gym(c, terminated=np.array([True]))),
    ("final_observations of another shape", "final_observations",
     lambda c: _gym(c, final_observations=np.zeros((3, 2), dtype=np.float32))),
    ("returns of another size", "returns", lambda c: _gym(c, returns=np.zeros(7))),
    ("returns NaN", "returns", lambda c: _gym(c, returns=_nan(np.zeros(3)))),
    ("unknown array", "rewards", lambda c: _gym(c, rewards=np.zeros(3))),
    ("no episodes", "observations", lambda c: _gym(c, observations=np.zeros((0, 5, 4), np.float32),
                                                   actions=np.zeros((0, 5), np.int64), lengths=np.zeros(0, np.int64),
                                                   drop=("terminated", "final_observations", "returns"))),
    ("library actions floats", "actions", lambda c: _gym(c, via_cli=False, actions=np.array([[0.5]]))),
    ("library observations 1-D", "observations", lambda c: _gym(c, via_cli=False, observations=np.zeros(3))),
]
ENV_MISMATCHES = ("actions out of range", "actions floats for discrete actions")  # checked against the env, by id
for _label, _names, _build in GYM_CASES:
    add("npz_arrays", f"gym demonstrations {_label}",
        (_names, "CartPole-v1" if _label in ENV_MISMATCHES else "demos.npz"), _build)



# Family `run_folder`: files of an earlier run (what resuming reads) damaged in ways other than their bytes.
def _tabular_run_with(c: Context, change: Callable[[Path], Any]) -> list[str]:
    folder = c.copy(c.art.tabular_run)
    change(folder)
    return [*TABULAR, "--set", "checkpoint_every=1", "--out", str(folder)]


def _save_torch(path: Path, value: Any) -> None:
    import torch

    torch.save(value, path)


def _save_safetensors(path: Path) -> None:
    """A readable safetensors file of tensors that belong to no run of this model."""
    import torch
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(path))


class Opaque:
    """A class instance: what an unpickling checkpoint loader would run code for."""


def _checkpoint_dict(folder: Path) -> dict[str, Any]:
    import torch

    return torch.load(folder / "checkpoint.pt", weights_only=True)


add("run_folder", "checkpoint.pt holding a list", "checkpoint.pt",
    lambda c: _tabular_run_with(c, lambda f: _save_torch(f / "checkpoint.pt", [1, 2, 3])))
add("run_folder", "checkpoint.pt holding a pickled object", "checkpoint.pt",
    lambda c: _tabular_run_with(c, lambda f: _save_torch(f / "checkpoint.pt", {"step": Opaque()})))
add("run_folder", "checkpoint.pt without its step", "checkpoint.pt",
    lambda c: _tabular_run_with(c, lambda f: _save_torch(f / "checkpoint.pt", {
        k: v for k, v in _checkpoint_dict(f).items() if k != "step"})))
add("run_folder", "checkpoint.pt of another reward model", "checkpoint.pt",
    lambda c: _tabular_run_with(c, lambda f: _save_torch(f / "checkpoint.pt", {
        **_checkpoint_dict(f), "reward_model": {"weights": __import__("torch").zeros(3)}})))
add("run_folder", "checkpoint.pt a folder", "checkpoint.pt",
    lambda c: _tabular_run_with(c, lambda f: ((f / "checkpoint.pt").unlink(), (f / "checkpoint.pt").mkdir())))
add("run_folder", "train-preferences unfinished run state.json a list", "state.json",
    lambda c: _training_run_with(c, lambda f: (f / TRAINING_CHECKPOINT / "state.json").write_text("[1, 2]")))
add("run_folder", "train-preferences unfinished run state.json without python_random", "state.json",
    lambda c: _training_run_with(c, lambda f: (f / TRAINING_CHECKPOINT / "state.json").write_text('{"loop": {}}')))
add("run_folder", "train-preferences unfinished run objects.pt without the optimizer", "objects.pt",
    lambda c: _training_run_with(c, lambda f: _save_torch(f / TRAINING_CHECKPOINT / "objects.pt", {"scheduler": {}})))
add("run_folder", "train-preferences unfinished run optimizer state of another optimizer", TRAINING_CHECKPOINT,
    lambda c: _training_run_with(c, lambda f: _save_torch(f / TRAINING_CHECKPOINT / "objects.pt", {
        "optimizer": {"state": {}, "param_groups": []}, "scheduler": {}})))
add("run_folder", "train-preferences unfinished run tensors.safetensors of another model", "tensors.safetensors",
    lambda c: _training_run_with(c, lambda f: _save_safetensors(f / TRAINING_CHECKPOINT / "tensors.safetensors")))
add("run_folder", "train-preferences unfinished run without tensors.safetensors", "tensors.safetensors",
    lambda c: _training_run_with(c, lambda f: (f / TRAINING_CHECKPOINT / "tensors.safetensors").unlink()))
add("run_folder", "train-preferences unfinished run run.json a list", "run.json",
    lambda c: _training_run_with(c, lambda f: (f / "checkpoints" / "run.json").write_text("[]")))
add("run_folder", "train-preferences unfinished run run.json without its fingerprint", "run.json",
    lambda c: _training_run_with(c, lambda f: (f / "checkpoints" / "run.json").write_text(
        '{"loop": "train_preferences"}')))
add("run_folder", "metrics.jsonl a line that is a list", "metrics.jsonl",
    lambda c: _tabular_run_with(c, lambda f: (f / "metrics.jsonl").write_text("[1, 2]\n")))
add("run_folder", "metrics.jsonl rows without step", "metrics.jsonl",
    lambda c: _tabular_run_with(c, lambda f: (f / "metrics.jsonl").write_text('{"loss": 1.0}\n')))
add("run_folder", "metrics.jsonl step a string", "metrics.jsonl",
    lambda c: _tabular_run_with(c, lambda f: (f / "metrics.jsonl").write_text('{"step": "one"}\n')))
add("run_folder", "metrics.jsonl rows missing", "metrics.jsonl",
    lambda c: _tabular_run_with(c, lambda f: (f / "metrics.jsonl").write_text(
        (f / "metrics.jsonl").read_text().splitlines()[0] + "\n")))
add("run_folder", "config.json without its config", "config.json",
    lambda c: _tabular_run_with(c, lambda f: (f / "config.json").write_text('{"seed": 0}')))
add("run_folder", "config.json a folder", "config.json",
    lambda c: _tabular_run_with(c, lambda f: ((f / "config.json").unlink(), (f / "config.json").mkdir())))
add("run_folder", "text reward model without reward.safetensors", "reward.safetensors",
    lambda c: rewardbench(c, model=_corrupt_in(c, c.art.text_reward_model, "reward.safetensors",
                                               lambda p: p.unlink() or p)))
add("run_folder", "text reward model weights of another model", "reward.safetensors",
    lambda c: rewardbench(c, model=_swap_weights(c)))
add("run_folder", "adapter without adapter_model.safetensors", "adapter_model.safetensors",
    lambda c: rewardbench(c, model=_corrupt_in(c, c.art.adapter, "adapter_model.safetensors",
                                               lambda p: p.unlink() or p)))
add("run_folder", "adapter weights of another shape", "adapter_model.safetensors",
    lambda c: rewardbench(c, model=_corrupt_in(c, c.art.adapter, "adapter_model.safetensors", _shrunk_adapter)))
add("run_folder", "model folder without tokenizer", ("no tokenizer", "lm"),
    lambda c: train_preferences(c, model=_without_tokenizer(c)))
add("run_folder", "model folder without weights", "lm",
    lambda c: train_preferences(c, model=_corrupt_in(c, c.art.lm, "model.safetensors", lambda p: p.unlink() or p)))
add("run_folder", "model weights of another architecture", "model.safetensors",
    lambda c: train_preferences(c, model=_corrupt_in(c, c.art.lm, "model.safetensors", _other_weights)))


def _swap_weights(c: Context) -> Path:
    import torch
    from safetensors.torch import save_file

    folder = c.copy(c.art.text_reward_model)
    save_file({"heads.weight": torch.zeros(1, 7)}, str(folder / "reward.safetensors"))
    return folder


def _shrunk_adapter(path: Path) -> Path:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    save_file({k: v[..., :1].contiguous() for k, v in state.items()}, str(path))
    return path


def _other_weights(path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    save_file({"transformer.wte.weight": torch.zeros(3, 3)}, str(path))
    return path


def _without_tokenizer(c: Context) -> Path:
    folder = c.copy(c.art.lm)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        (folder / name).unlink(missing_ok=True)
    return folder


# Family `chat_messages`: conversational rows with bad roles, contents or messages.
def _chat_row(prompt: Any = None, chosen: Any = None, rejected: Any = None) -> dict[str, Any]:
    return {"prompt": prompt if prompt is not None else [{"role": "user", "content": "Rate the movie."}],
            "chosen": chosen if chosen is not None else [{"role": "assistant", "content": "Great."}],
            "rejected": rejected if rejected is not None else [{"role": "assistant", "content": "Bad."}]}


def _chat(c: Context, command: str, *rows: dict[str, Any]) -> list[str]:
    path = c.jsonl("chat.jsonl", [_chat_row(), *rows])
    if command == "train-preferences":
        return train_preferences(c, data=path)
    if command == "train-reward-model":
        return train_reward_model(c, data=path)
    return rloo(c, prompts=path)


CHAT_CASES: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
    ("role robot", ("role", "robot", "line 2"), _chat_row(prompt=[{"role": "robot", "content": "Hi."}])),
    ("role a number", ("role", "line 2"), _chat_row(prompt=[{"role": 5, "content": "Hi."}])),
    ("role empty", ("role", "line 2"), _chat_row(prompt=[{"role": "", "content": "Hi."}])),
    ("content a number", ("content", "string", "line 2"), _chat_row(prompt=[{"role": "user", "content": 7}])),
    ("content null", ("content", "line 2"), _chat_row(prompt=[{"role": "user", "content": None}])),
    ("content a list of parts", ("content", "line 2"),
     _chat_row(prompt=[{"role": "user", "content": [{"type": "text", "text": "Hi."}]}])),
    ("content empty", ("content", "line 2"), _chat_row(chosen=[{"role": "assistant", "content": "  "}])),
    ("message a string", ("message", "line 2"), _chat_row(prompt=["Hi."])),
    ("message without content", ("content", "line 2"), _chat_row(prompt=[{"role": "user"}])),
    ("message with an unknown key", ("weight", "line 2"),
     _chat_row(prompt=[{"role": "user", "content": "Hi.", "weight": 2}])),
    ("no messages", ("chosen", "line 2"), _chat_row(chosen=[])),
    ("text among messages", ("chosen", "line 2"), _chat_row(chosen="Great.")),
]
for _command in ("train-preferences", "train-reward-model", "rloo"):
    for _label, _names, _row in CHAT_CASES:
        if _command == "rloo" and _label in ("content empty", "no messages", "text among messages"):
            continue  # rloo reads the prompt column alone
        add("chat_messages", f"{_command} {_label}", _names,
            (lambda command, row: lambda c: _chat(c, command, row))(_command, _row))


# Family `jsonl_lines`: JSON Lines and JSON files of preference pairs with bad lines, rows or fields.
def _pairs(c: Context, command: str, second: Any, name: str = "pairs.jsonl") -> list[str]:
    first = {"prompt": "A movie was", "chosen": " good.", "rejected": " bad."}
    if name.endswith(".jsonl"):
        text = json.dumps(first) + "\n" + (second if isinstance(second, str) else json.dumps(second)) + "\n"
        path = c.file(name, text)
    else:
        path = c.file(name, second if isinstance(second, str) else json.dumps(second))
    if command == "train-preferences":
        return train_preferences(c, data=path)
    if command == "train-reward-model":
        return train_reward_model(c, data=path)
    if command == "rewardbench":
        return rewardbench(c, file=path)
    return rloo(c, prompts=path)


LINE_CASES: list[tuple[str, tuple[str, ...], Any, tuple[str, ...]]] = [
    ("line not JSON", ("line 2",), '{"prompt": "x", chosen', ()),
    ("line a list", ("line 2",), ["x", "y", "z"], ()),
    ("line a number", ("line 2",), 5, ()),
    ("line null", ("line 2",), "null", ()),
    ("line of invalid UTF-8", ("pairs.jsonl",), "\udcff", ()),
    ("chosen missing", ("chosen", "line 2"), {"prompt": "x", "rejected": "y"}, ("rloo",)),
    ("chosen null", ("chosen", "line 2"), {"prompt": "x", "chosen": None, "rejected": "y"}, ("rloo",)),
    ("chosen a number", ("chosen", "line 2"), {"prompt": "x", "chosen": 5, "rejected": "y"}, ("rloo",)),
    ("prompt empty", ("prompt", "line 2"), {"prompt": "", "chosen": "x", "rejected": "y"}, ("rewardbench",)),
    ("prompt a number", ("prompt", "line 2"), {"prompt": 5, "chosen": "x", "rejected": "y"}, ()),
    ("prompt missing", ("prompt", "line 2"), {"chosen": "x", "rejected": "y"}, ()),
    ("misspelt column", ("choosen", "line 2"), {"prompt": "x", "choosen": "y", "rejected": "z"}, ("rloo",)),
    ("subset a number", ("subset", "line 2"), {"prompt": "x", "chosen": "y", "rejected": "z", "subset": 5},
     ("train-preferences", "train-reward-model", "rloo")),
    ("aspect_labels text", ("aspect_labels", "line 2"),
     {"prompt": "x", "chosen": "y", "rejected": "z", "aspect_labels": "good"}, ("rewardbench", "rloo")),
]
for _command in ("train-preferences", "train-reward-model", "rloo", "rewardbench"):
    for _label, _names, _second, _skip in LINE_CASES:
        if _command in _skip:
            continue
        add("jsonl_lines", f"{_command} {_label}", _names,
            (lambda command, second: lambda c: _pairs(c, command, second))(_command, _second))


def _invalid_utf8(c: Context, command: str) -> list[str]:
    first = json.dumps({"prompt": "A movie was", "chosen": " good.", "rejected": " bad."}).encode()
    path = c.file("pairs.jsonl", first + b"\n" + b'{"prompt": "\xff\xfe", "chosen": "a", "rejected": "b"}\n')
    return _pairs_path(c, command, path)


def _pairs_path(c: Context, command: str, path: Path) -> list[str]:
    if command == "train-preferences":
        return train_preferences(c, data=path)
    if command == "train-reward-model":
        return train_reward_model(c, data=path)
    if command == "rewardbench":
        return rewardbench(c, file=path)
    return rloo(c, prompts=path)


CASES[:] = [item for item in CASES if not item.name.endswith("line of invalid UTF-8")]
for _command in ("train-preferences", "rewardbench"):
    add("jsonl_lines", f"{_command} line of invalid UTF-8", ("pairs.jsonl", "line 2"),
        (lambda command: lambda c: _invalid_utf8(c, command))(_command))
add("jsonl_lines", "train-preferences label not a boolean", ("label", "line 2"), lambda c: train_preferences(
    c, "--loss", "kto", data=c.jsonl("kto.jsonl", [{"prompt": "x", "completion": " y", "label": True},
                                                   {"prompt": "x", "completion": " z", "label": "yes"}])))
add("jsonl_lines", "train-preferences unpaired row among pairs", ("completion", "line 2"), lambda c: train_preferences(
    c, data=c.jsonl("mixed.jsonl", [{"prompt": "x", "chosen": " y", "rejected": " z"},
                                    {"prompt": "x", "completion": " y", "label": True}])))
add("jsonl_lines", "train-preferences per-pair parameter NaN", ("other_chosen_rewards", "line 2"),
    lambda c: train_preferences(c, data=c.file(
        "pairs.jsonl", '{"prompt": "x", "chosen": " y", "rejected": " z", "other_chosen_rewards": 1.0}\n'
                       '{"prompt": "x", "chosen": " y", "rejected": " z", "other_chosen_rewards": NaN}\n')))
add("jsonl_lines", "train-preferences .json an object", ("pairs.json",),
    lambda c: train_preferences(c, data=c.json("pairs.json", {"prompt": "x", "chosen": "y"})))
add("jsonl_lines", "train-preferences .json items not objects", ("pairs.json", "item 0"),
    lambda c: train_preferences(c, data=c.json("pairs.json", ["x", "y"])))
add("jsonl_lines", "rewardbench .json data a number", ("pairs.json",),
    lambda c: rewardbench(c, file=c.json("pairs.json", {"data": 3})))
add("jsonl_lines", "rewardbench chosen a list of messages", ("chosen", "line 2"), lambda c: _pairs(
    c, "rewardbench", {"prompt": "x", "chosen": [{"role": "assistant", "content": "y"}], "rejected": "z"}))
add("jsonl_lines", "train-preferences datasets folder without the split", ("split",), lambda c: _dataset_dict(c))
add("jsonl_lines", "train-preferences a folder of other files", ("data",),
    lambda c: train_preferences(c, data=c.user_folder("not_a_dataset")))


def _dataset_dict(c: Context) -> list[str]:
    import datasets

    folder = c.dir / "pairs_dataset"
    rows = [json.loads(line) for line in c.art.pairs.read_text().splitlines()]
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(folder))
    return train_preferences(c, data=folder)



# Family `out_folder`: an output place that is a file, inside a file, unwritable, or a folder of the user's files.
UNWRITABLE = "/proc/irlb-bad-inputs"  # no one can create it, root included (the suite may run as root)

OUT_COMMANDS: dict[str, Callable[..., list[str]]] = {
    "tabular-irl": lambda c, out: tabular(c, out=out),
    "gym-irl": lambda c, out: gym(c, out=out),
    "preference-rl": lambda c, out: preference_rl(c, out=out),
    "train-preferences": lambda c, out: train_preferences(c, out=out),
    "train-reward-model": lambda c, out: train_reward_model(c, out=out),
    "rloo": lambda c, out: rloo(c, out=out),
    "agentic": lambda c, out: agentic(c, out=out),
    "sweep": lambda c, out: sweep(c, out=out),
    "paper": lambda c, out: [*paper(c, results=paper_results(c))[:-1], out],
    "reproduce --results": lambda c, out: ["reproduce", "--scale", "tiny", "--only", SWEEP_EXPERIMENT,
                                           "--results", out, "--figures", c.s("figures")],
    "reproduce --figures": lambda c, out: ["reproduce", "--scale", "tiny", "--only", SWEEP_EXPERIMENT,
                                           "--results", c.s("results"), "--figures", out],
}
# Commands whose --out is one file (written whole): a folder there, or a user's file, is refused.
OUT_FILE_COMMANDS: dict[str, Callable[..., list[str]]] = {
    "merge-sweeps": lambda c, out: ["merge-sweeps", str(c.copy(c.art.sweep / "sweep.json", "a.json")),
                                    _summary(c, "b.json", _other_seeds), "--out", out],
    "rewardbench": lambda c, out: rewardbench(c, "--out", out),
}


def _other_seeds(summary: dict[str, Any]) -> dict[str, Any]:
    """The same sweep run with seeds 2 and 3 (what merge-sweeps joins)."""
    summary = json.loads(json.dumps(summary))
    summary["spec"]["seeds"] = [2, 3]
    for row in summary["trials"]:
        row["trial_id"] = row["trial_id"].replace("-s0", "-s2").replace("-s1", "-s3")
        row["seed"] += 2
    return summary


def _out_option(command: str) -> str:
    return "--" + command.split("--")[1] if "--" in command else "--out"


for _command, _build in OUT_COMMANDS.items():
    _option = _out_option(_command)
    add("out_folder", f"{_command} {_option} a file", ("out.txt",),
        (lambda build: lambda c: build(c, str(c.file("out.txt", "my results\n"))))(_build))
    add("out_folder", f"{_command} {_option} inside a file", ("out.txt",),
        (lambda build: lambda c: build(c, str(c.file("out.txt", "my results\n") / "sub")))(_build))
    add("out_folder", f"{_command} {_option} unwritable", ("irlb-bad-inputs",),
        (lambda build: lambda c: build(c, UNWRITABLE))(_build))
    add("out_folder", f"{_command} {_option} a folder of the user's files", ("mine",),
        (lambda build: lambda c: build(c, str(c.user_folder())))(_build))
for _command, _build in OUT_FILE_COMMANDS.items():
    add("out_folder", f"{_command} --out a folder", ("mine",),
        (lambda build: lambda c: build(c, str(c.user_folder())))(_build))
    add("out_folder", f"{_command} --out a file of the user's", ("notes.json",),
        (lambda build: lambda c: build(c, str(c.file("notes.json", '{"mine": true}'))))(_build))
    add("out_folder", f"{_command} --out unwritable", ("irlb-bad-inputs",),
        (lambda build: lambda c: build(c, UNWRITABLE + "/result.json"))(_build))


# Family `numeric_settings`: zero, negative, NaN, infinite, fractional counts and non-booleans.
NUMERIC_CASES: list[tuple[str, Callable[[Context], list[str]], tuple[str, ...], str | None]] = [
    ("tabular-irl --steps 0", lambda c: tabular(c, "--steps", "0"), ("steps",), None),
    ("tabular-irl --steps -1", lambda c: tabular(c, "--steps", "-1"), ("steps",), None),
    ("tabular-irl steps=2.5", lambda c: tabular(c, "--set", "steps=2.5"), ("steps",), None),
    ("tabular-irl --lr nan", lambda c: tabular(c, "--lr", "nan"), ("lr",), None),
    ("tabular-irl --lr inf", lambda c: tabular(c, "--lr", "inf"), ("lr",), None),
    ("tabular-irl --lr -1", lambda c: tabular(c, "--optimizer", "adam", "--lr", "-1"), ("lr",), None),
    ("tabular-irl --num-demonstrations 0", lambda c: tabular(c, "--num-demonstrations", "0"),
     ("num_demonstrations",), None),
    ("tabular-irl demonstration_length=0", lambda c: tabular(c, "--num-demonstrations", "3", "--set",
                                                             "demonstration_length=0"),
     ("demonstration_length",), None),
    ("tabular-irl checkpoint_every=0", lambda c: tabular(c, "--set", "checkpoint_every=0"), ("checkpoint_every",),
     None),
    ("tabular-irl state_action_reward=maybe", lambda c: tabular(c, "--set", "state_action_reward=maybe"),
     ("state_action_reward",), None),
    ("tabular-irl hidden_sizes=[0]", lambda c: tabular(c, "--reward-model", "mlp", "--set", "hidden_sizes=[0]"),
     ("hidden_sizes",), None),
    ("tabular-irl lp_l1_penalty=-1", lambda c: tabular(c, "--algorithm", "lp", "--set", "lp_l1_penalty=-1"),
     ("lp_l1_penalty",), None),
    ("tabular-irl occupancy_target=-1", lambda c: tabular(c, "--set", "occupancy_target=-1"),
     ("occupancy_target",), None),
    ("tabular-irl testbed size 0", lambda c: tabular(c, "--set", 'testbed_options={"size": 0}'),
     ("size",), None),
    ("tabular-irl testbed size 2.5", lambda c: tabular(c, "--set", 'testbed_options={"size": 2.5}'),
     ("size",), None),
    ("gym-irl --outer-steps 0", lambda c: gym(c, "--outer-steps", "0"), ("outer_steps",), None),
    ("gym-irl outer_steps=2.5", lambda c: gym(c, "--set", "outer_steps=2.5"), ("outer_steps",), None),
    ("gym-irl lr=nan", lambda c: gym(c, "--set", "lr=NaN"), ("lr",), None),
    ("gym-irl lr=inf", lambda c: gym(c, "--set", "lr=Infinity"), ("lr",), None),
    ("gym-irl discount=1.5", lambda c: gym(c, "--set", "discount=1.5"), ("discount",), None),
    ("gym-irl n_envs=2.5", lambda c: gym(c, "--set", "n_envs=2.5"), ("n_envs",), None),
    ("gym-irl state_action_reward=maybe", lambda c: gym(c, "--set", "state_action_reward=maybe"),
     ("state_action_reward",), None),
    ("gym-irl hidden_sizes=[-1]", lambda c: gym(c, "--set", "hidden_sizes=[-1]"), ("hidden_sizes",), None),
    ("gym-irl eval_episodes=0", lambda c: gym(c, "--set", "eval_episodes=0"), ("eval_episodes",), None),
    ("gym-irl occupancy_discount=1.5", lambda c: gym(c, "--set", "occupancy_discount=1.5"),
     ("occupancy_discount",), None),
    ("gym-irl --transfer-steps -5", lambda c: gym(c, "--transfer-steps", "-5"), ("transfer_steps",), None),
    ("gym-irl l2=-1", lambda c: gym(c, "--set", "l2=-1"), ("l2",), None),
    ("gym-irl --num-demonstrations 0", lambda c: gym(c, "--num-demonstrations", "0"), ("num_demonstrations",), None),
    ("preference-rl --query-budget 0", lambda c: preference_rl(c, "--query-budget", "0"), ("query_budget",), None),
    ("preference-rl query_fraction=0", lambda c: preference_rl(c, "--set", "query_fraction=0"),
     ("query_fraction",), None),
    ("preference-rl lr=nan", lambda c: preference_rl(c, "--set", "lr=NaN"), ("lr",), None),
    ("preference-rl ensemble_size=2.5", lambda c: preference_rl(c, "--set", "ensemble_size=2.5"),
     ("ensemble_size",), None),
    ("preference-rl segment_length=0", lambda c: preference_rl(c, "--set", "segment_length=0"),
     ("segment_length",), None),
    ("preference-rl termination_queries=maybe", lambda c: preference_rl(c, "--set", "termination_queries=maybe"),
     ("termination_queries",), None),
    ("preference-rl --total-env-steps -1", lambda c: preference_rl(c, "--total-env-steps", "-1"),
     ("total_env_steps",), None),
    ("preference-rl l2=nan", lambda c: preference_rl(c, "--set", "l2=NaN"), ("l2",), None),
    ("train-preferences --steps 0", lambda c: train_preferences(c, "--steps", "0"), ("steps",), None),
    ("train-preferences --batch-size 0", lambda c: train_preferences(c, "--batch-size", "0"), ("batch_size",), None),
    ("train-preferences --learning-rate nan", lambda c: train_preferences(c, "--learning-rate", "nan"),
     ("learning_rate",), None),
    ("train-preferences --learning-rate -1", lambda c: train_preferences(c, "--learning-rate", "-1"),
     ("learning_rate",), None),
    ("train-preferences --learning-rate inf", lambda c: train_preferences(c, "--learning-rate", "inf"),
     ("learning_rate",), None),
    ("train-preferences --beta -1", lambda c: train_preferences(c, "--beta", "-1"), ("beta",), None),
    ("train-preferences --beta nan", lambda c: train_preferences(c, "--beta", "nan"), ("beta",), None),
    ("train-preferences --lora-r 0", lambda c: train_preferences(c, "--lora-r", "0"), ("r",), None),
    ("train-preferences --lora-alpha 0", lambda c: train_preferences(c, "--lora-alpha", "0"), ("alpha",), None),
    ("train-preferences --lora-dropout 1.5", lambda c: train_preferences(c, "--lora-dropout", "1.5"),
     ("dropout",), None),
    ("train-preferences --lora-alpha nan", lambda c: train_preferences(c, "--lora-alpha", "nan"), ("alpha",), None),
    ("train-preferences --lora-alpha inf", lambda c: train_preferences(c, "--lora-alpha", "inf"), ("alpha",), None),
    ("rewardbench --beta inf", lambda c: rewardbench(c, "--beta", "inf", model=c.art.adapter), ("beta",), None),
    ("train-preferences --max-grad-norm nan", lambda c: train_preferences(c, "--max-grad-norm", "nan"),
     ("max_grad_norm",), None),
    ("train-preferences --weight-decay -1", lambda c: train_preferences(c, "--weight-decay", "-1"),
     ("weight_decay",), None),
    ("train-preferences loss parameter maybe", lambda c: train_preferences(c, "--loss", "simpo", "--set",
                                                                           "gamma=maybe"), ("gamma",), None),
    ("train-preferences --threads 0", lambda c: train_preferences(c, "--threads", "0"), ("threads",), None),
    ("train-preferences --steps 2.5", lambda c: train_preferences(c, "--steps", "2.5"), ("steps",), None),
    ("train-reward-model --steps 0", lambda c: train_reward_model(c, "--steps", "0"), ("steps",), None),
    ("train-reward-model --batch-size -1", lambda c: train_reward_model(c, "--batch-size", "-1"),
     ("batch_size",), None),
    ("train-reward-model --learning-rate nan", lambda c: train_reward_model(c, "--learning-rate", "nan"),
     ("learning_rate",), None),
    ("train-reward-model --lora-r -1", lambda c: train_reward_model(c, "--lora-r", "-1"), ("r",), None),
    ("train-reward-model --beta nan", lambda c: train_reward_model(c, "--beta", "nan"), ("beta",), None),
    ("train-reward-model --weight-decay nan", lambda c: train_reward_model(c, "--weight-decay", "nan"),
     ("weight_decay",), None),
    ("rloo --steps 0", lambda c: rloo(c, "--steps", "0"), ("steps",), None),
    ("rloo --prompts-per-step 0", lambda c: rloo(c, "--prompts-per-step", "0"), ("prompts_per_step",), None),
    ("rloo --samples-per-prompt 1", lambda c: rloo(c, "--samples-per-prompt", "1"), ("samples_per_prompt",), None),
    ("rloo --kl-coef -1", lambda c: rloo(c, "--kl-coef", "-1"), ("kl_coef",), None),
    ("rloo --kl-coef nan", lambda c: rloo(c, "--kl-coef", "nan"), ("kl_coef",), None),
    ("rloo --max-new-tokens 0", lambda c: rloo(c, "--max-new-tokens", "0"), ("max_new_tokens",), None),
    ("rloo --learning-rate nan", lambda c: rloo(c, "--learning-rate", "nan"), ("learning_rate",), None),
    ("rloo --lora-dropout -0.1", lambda c: rloo(c, "--lora-dropout", "-0.1"), ("dropout",), None),
    ("rewardbench --batch-size 0", lambda c: rewardbench(c, "--batch-size", "0"), ("batch_size",), None),
    ("rewardbench --beta nan", lambda c: rewardbench(c, "--beta", "nan", model=c.art.adapter), ("beta",), None),
    ("rewardbench --beta -1", lambda c: rewardbench(c, "--beta", "-1", model=c.art.adapter), ("beta",), None),
    ("sweep --cpus-per-trial 0", lambda c: sweep(c, "--cpus-per-trial", "0"), ("cpus_per_trial",), None),
    ("sweep --max-failures -1", lambda c: sweep(c, "--max-failures", "-1"), ("max_failures",), None),
    ("sweep --max-concurrent 0", lambda c: sweep(c, "--max-concurrent", "0"), ("max_concurrent",), None),
    ("sweep --num-cpus 0", lambda c: sweep(c, "--num-cpus", "0"), ("num_cpus",), None),
    ("sweep --seeds a,b", lambda c: sweep_seeds(c, "a,b"), ("seeds",), None),
    ("sweep --seeds [1.5]", lambda c: sweep_seeds(c, "[1.5]"), ("seeds",), None),
    ("sweep --seeds empty", lambda c: sweep_seeds(c, ","), ("seeds",), None),
    ("sweep --grid not a list", lambda c: sweep(c, "--grid", "seeds=3"), ("grid",), None),
    ("sweep --grid an empty list", lambda c: sweep(c, "--grid", "seeds=[]"), ("seeds",), None),
    ("agentic --set a count 2.5", lambda c: agentic(c, "--set", "agentic_documents=2.5"),
     ("agentic_documents",), None),
    ("agentic --threads 0", lambda c: agentic(c, "--threads", "0"), ("threads",), None),
    ("config --set a count 2.5", lambda c: ["config", "agentic_reward_learning", "--set", "agentic_documents=2.5"],
     ("agentic_documents",), None),
    ("reproduce --set a count 2.5", lambda c: reproduce(c, "--set", "agentic_reward_learning.agentic_documents=2.5"),
     ("agentic_reward_learning",), None),
]
for _label, _build, _names, _needs in NUMERIC_CASES:
    add("numeric_settings", _label, _names, _build, needs=_needs)


# Family `unknown_names`: names of losses, testbeds, environments, modules, devices and dtypes that do not exist.
UNKNOWN_CASES: list[tuple[str, Callable[[Context], Invocation], tuple[str, ...], str | None]] = [
    ("tabular-irl --testbed", lambda c: tabular(c, "--testbed", "mazeworld"), ("mazeworld",), None),
    ("tabular-irl --hypergradient", lambda c: tabular(c, "--hypergradient", "bogus"), ("bogus",), None),
    ("tabular-irl optimizer", lambda c: tabular(c, "--set", "optimizer=bogus"), ("bogus",), None),
    ("tabular-irl reward_model", lambda c: tabular(c, "--set", "reward_model=bogus"), ("bogus",), None),
    ("tabular-irl algorithm", lambda c: tabular(c, "--set", "algorithm=bogus"), ("bogus",), None),
    ("tabular-irl --algorithm", lambda c: tabular(c, "--algorithm", "bogus"), ("algorithm", "bogus"), None),
    ("tabular-irl hypergradient option", lambda c: tabular(c, "--set", 'hypergradient_options={"bogus": 1}'),
     ("bogus",), None),
    ("tabular-irl setting", lambda c: tabular(c, "--set", "stepz=3"), ("stepz",), None),
    ("gym-irl env_id", lambda c: gym(c, "--set", "env_id=Bogus-v0"), ("Bogus-v0",), None),
    ("gym-irl env_id module", lambda c: gym(c, "--set", "env_id=no_such_module:Env-v0"), ("no_such_module",), None),
    ("gym-irl algorithm", lambda c: gym(c, "--set", "algorithm=bogus"), ("bogus",), None),
    ("gym-irl hypergradient", lambda c: gym(c, "--set", "hypergradient=bogus"), ("bogus",), None),
    ("gym-irl optimizer", lambda c: gym(c, "--set", "optimizer=bogus"), ("bogus",), None),
    ("gym-irl SB3 hyperparameter", lambda c: gym(c, "--set", 'hyperparameters={"bogus_kw": 1}'),
     ("bogus_kw",), None),
    ("gym-irl --reward-structure", lambda c: gym(c, "--reward-structure", "bogus"), ("reward_structure", "bogus"),
     None),
    ("preference-rl env_id", lambda c: preference_rl(c, "--set", "env_id=Bogus-v0"), ("Bogus-v0",), None),
    ("preference-rl --loss", lambda c: preference_rl(c, "--loss", "bogus"), ("bogus",), None),
    ("preference-rl teacher", lambda c: preference_rl(c, "--set", "teacher=bogus"), ("bogus",), None),
    ("preference-rl selection", lambda c: preference_rl(c, "--set", "selection=bogus"), ("bogus",), None),
    ("preference-rl exploration", lambda c: preference_rl(c, "--set", "exploration=bogus"), ("bogus",), None),
    ("preference-rl algorithm", lambda c: preference_rl(c, "--set", "algorithm=bogus"), ("bogus",), None),
    ("preference-rl teacher option", lambda c: preference_rl(c, "--set", 'teacher_options={"bogus": 1}'),
     ("bogus",), None),
    ("train-preferences --loss", lambda c: train_preferences(c, "--loss", "bogus"), ("bogus",), None),
    ("train-preferences --loss of a reward model", lambda c: train_preferences(c, "--loss", "bradley_terry"),
     ("bradley_terry",), None),
    ("train-preferences --target-modules", lambda c: train_preferences(c, TARGET_MODULES, "bogus"),
     ("bogus", "c_attn"), None),
    ("train-preferences --device cuda", lambda c: train_preferences(c, "--device", "cuda"), ("--device",), None),
    ("train-preferences --device tpu", lambda c: train_preferences(c, "--device", "tpu"), ("device", "tpu"), None),
    ("train-preferences --device cuda:7", lambda c: train_preferences(c, "--device", "cuda:7"), ("--device",), None),
    ("train-preferences --dtype", lambda c: train_preferences(c, "--dtype", "float16"), ("dtype", "float16"), None),
    ("train-preferences loss parameter", lambda c: train_preferences(c, "--set", "bogus=1"), ("bogus",), None),
    ("train-reward-model --loss", lambda c: train_reward_model(c, "--loss", "bogus"), ("bogus",), None),
    ("train-reward-model --loss of a policy", lambda c: train_reward_model(c, "--loss", "sigmoid"), ("sigmoid",), None),
    ("train-reward-model --target-modules", lambda c: train_reward_model(c, "--lora-r", "4", TARGET_MODULES,
                                                                         "bogus", frozen=False), ("bogus", "c_attn"),
     None),
    ("train-reward-model --device cuda", lambda c: train_reward_model(c, "--device", "cuda"), ("--device",), None),
    ("rloo --device cuda", lambda c: rloo(c, "--device", "cuda"), ("--device",), None),
    ("rloo --target-modules", lambda c: rloo(c, TARGET_MODULES, "bogus"), ("bogus", "c_attn"), None),
    ("rewardbench --device cuda", lambda c: rewardbench(c, "--device", "cuda"), ("--device",), None),
    ("rewardbench --stem", lambda c: rewardbench(c, "--stem", "bogus"), ("bogus",), None),
    ("agentic --device cuda", lambda c: agentic(c, "--device", "cuda"), ("--device",), None),
    ("agentic setting", lambda c: agentic(c, "--set", "bogus=1"), ("bogus",), None),
    ("agentic --scale", lambda c: agentic(c, "--scale", "huge"), ("--scale",), None),
    ("config experiment", lambda c: ["config", "bogus"], ("bogus",), None),
    ("config --scale", lambda c: ["config", SWEEP_EXPERIMENT, "--scale", "huge"], ("scale", "huge"), None),
    ("reproduce --only", lambda c: reproduce(c, "--only", "bogus"), ("bogus",), None),
    ("reproduce setting", lambda c: reproduce(c, "--set", "loss_gradient_weights.bogus=1"), ("bogus",), None),
    ("sweep --experiment", lambda c: [*sweep(c), "--experiment", "bogus"], ("bogus",), None),
    ("sweep setting", lambda c: sweep(c, "--set", "bogus=1"), ("bogus",), None),
    ("sweep --grid setting", lambda c: sweep(c, "--grid", "bogus=[1, 2]"), ("bogus",), None),
    ("command", lambda c: ["bogus-command"], ("bogus-command",), None),
    ("load_causal_lm device cuda", lambda c: _library(load_lm, c.art.lm, device="cuda"), ("device",), None),
    ("load_causal_lm dtype int8", lambda c: _library(load_lm, c.art.lm, dtype="int8"), ("dtype", "int8"), None),
    ("load_causal_lm dtype bogus", lambda c: _library(load_lm, c.art.lm, dtype="bogus"), ("dtype", "bogus"), None),
    ("with_lora target module", lambda c: _with_lora_targets(c, ("bogus",)), ("bogus", "c_attn"), None),
]


def _with_lora_targets(c: Context, targets: tuple[str, ...]) -> Callable[[], Any]:
    def build() -> Any:
        from llm.models import LoraSettings, load_causal_lm, with_lora

        model, _ = load_causal_lm(c.art.lm)
        return with_lora(model, LoraSettings(target_modules=targets))
    return build


for _label, _build, _names, _needs in UNKNOWN_CASES:
    add("unknown_names", _label, _names, _build, needs=_needs)



# More settings: seeds, experiment settings out of range, options of named components, model configs.
def _model_config(c: Context, change: Callable[[dict[str, Any]], Any]) -> Path:
    folder = c.copy(c.art.lm)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(change(config)))
    return folder


MORE_CASES: list[tuple[str, str, Callable[[Context], Invocation], tuple[str, ...], str | None]] = [
    # gymnasium and numpy refuse negative seeds deep inside a run (torch takes them: the other commands accept -1)
    ("numeric_settings", "gym-irl --seed -1", lambda c: gym(c, "--seed", "-1"), ("seed",), None),
    ("numeric_settings", "preference-rl --seed -1", lambda c: preference_rl(c, "--seed", "-1"), ("seed",),
     None),
    # experiment settings out of their range: the typed experiment configs check types, not ranges yet
    ("numeric_settings", "config a count 0", lambda c: ["config", SWEEP_EXPERIMENT, "--set", "num_margins=0"],
     ("num_margins",), None),
    ("numeric_settings", "config a limit NaN",
     lambda c: ["config", SWEEP_EXPERIMENT, "--set", "scaled_margin_limit=NaN"], ("scaled_margin_limit",),
     None),
    ("numeric_settings", "reproduce a count -1", lambda c: reproduce(c, "--set", f"{SWEEP_EXPERIMENT}.num_margins=-1"),
     ("num_margins",), None),
    ("numeric_settings", "sweep a count 0", lambda c: sweep(c, "--set", "num_margins=0"), ("num_margins",),
     None),
    ("numeric_settings", "agentic a count 0", lambda c: agentic(c, "--set", "agentic_documents=0"),
     ("agentic_documents",), None),
    ("unknown_names", "tabular-irl testbed option", lambda c: tabular(c, "--set", 'testbed_options={"bogus": 1}'),
     ("bogus",), None),
    ("unknown_names", "gym-irl SB3 hyperparameter value", lambda c: gym(
        c, "--set", 'hyperparameters={"learning_rate": "fast"}'), ("learning rate", "fast"), None),
    ("unknown_names", "preference-rl loss option", lambda c: preference_rl(c, "--set", 'loss_options={"bogus": 1}'),
     ("bogus",), None),
    ("unknown_names", "train-preferences model type", lambda c: train_preferences(
        c, model=_model_config(c, lambda config: {**config, "model_type": "bogus_model"})), ("config.json",), None),
    ("unknown_names", "train-preferences a model that is not a causal LM", lambda c: train_preferences(
        c, model=_model_config(c, lambda config: {**config, "model_type": "bert", "architectures": ["BertModel"]})),
     ("lm",), None),
    ("wrong_json_types", "train-preferences model config.json without model_type", lambda c: train_preferences(
        c, model=_model_config(c, lambda config: {k: v for k, v in config.items() if k != "model_type"})),
     ("config.json",), None),
    ("wrong_json_types", "train-preferences model config.json a list", lambda c: train_preferences(
        c, model=_model_config(c, lambda config: [config])), ("config.json",), None),
    ("missing_file", "tabular-irl --config a folder", lambda c: tabular(c, "--config", str(c.user_folder("cfg"))),
     ("cfg",), None),
    ("missing_file", "train-preferences --model a file", lambda c: train_preferences(
        c, model=c.file("model.bin", b"\0" * 16)), ("model.bin",), None),
]
for _family, _label, _build, _names, _needs in MORE_CASES:
    add(_family, _label, _names, _build, needs=_needs)


# Finished preference-rl and gym-irl run folders: what a rerun on the folder reads.
def _rerun(c: Context, artifact: Path, command: Callable[..., list[str]], change: Callable[[Path], Any]) -> list[str]:
    folder = c.copy(artifact)
    change(folder)
    arguments = command(c, out=folder.name)
    if command is gym:  # the same demonstrations file as the run's (its path is part of the config)
        arguments = command(c, demos=c.art.root / "gym_run_demos.npz", out=folder.name)
    return arguments


def _pending_trial(c: Context, corrupt: Callable[[Path], Path]) -> list[str]:
    """The sweep with its first trial interrupted (no done.json) and that trial's trial.json damaged."""
    def change(path: Path) -> Path:
        (path.parent / "done.json").unlink()
        path.write_text(json.dumps({"attempt": 1}))
        return corrupt(path)
    return _sweep_trial_file(c, "trial.json", change)


RUN_CASES: list[tuple[str, str, Callable[[Context], Invocation], tuple[str, ...], str | None]] = [
    *[("run_folder", f"sweep interrupted trial's trial.json {kind}",
       (lambda k: lambda c: _pending_trial(c, CORRUPTIONS[k]))(kind), ("trial.json",), None) for kind in CORRUPTIONS],
    *[("run_folder", f"preference-rl summary.json {kind}", (lambda k: lambda c: _rerun(
        c, c.art.preference_run, preference_rl, lambda f: CORRUPTIONS[k](f / "summary.json")))(kind),
       ("summary.json",), None) for kind in CORRUPTIONS],
    ("run_folder", "preference-rl summary.json a list", lambda c: _rerun(
        c, c.art.preference_run, preference_rl, lambda f: (f / "summary.json").write_text("[]")), ("summary.json",),
     None),
    ("run_folder", "preference-rl config.json cut short", lambda c: _rerun(
        c, c.art.preference_run, preference_rl, lambda f: truncated(f / "config.json")), ("config.json",), None),
    *[("run_folder", f"gym-irl checkpoint.pt {kind}", (lambda k: lambda c: _rerun(
        c, c.art.gym_run, gym, lambda f: CORRUPTIONS[k](f / "checkpoint.pt")))(kind), ("checkpoint.pt",),
       None) for kind in CORRUPTIONS],
    ("run_folder", "gym-irl metrics.jsonl cut short", lambda c: _rerun(
        c, c.art.gym_run, gym, lambda f: truncated(f / "metrics.jsonl")), ("metrics.jsonl",), None),
    ("run_folder", "gym-irl config.json random bytes", lambda c: _rerun(
        c, c.art.gym_run, gym, lambda f: random_bytes(f / "config.json")), ("config.json",), None),
    ("run_folder", "load_reward_model of a gym-irl run, reward.safetensors cut short", lambda c: _library(
        load_reward, _corrupt_in(c, c.art.gym_run, "reward.safetensors", truncated)), ("reward.safetensors",), None),
    ("run_folder", "load_reward_model of a gym-irl run, reward.json without aspect_names", lambda c: _library(
        load_reward, _corrupt_in(c, c.art.gym_run, "reward.json", lambda p: p.write_text(json.dumps(
            {k: v for k, v in json.loads(p.read_text()).items() if k != "aspect_names"} | {"aspect_names": []})))),
     ("aspect_names",), None),
]
for _family, _label, _build, _names, _needs in RUN_CASES:
    add(_family, _label, _names, _build, needs=_needs)


# Families a fresh probe tries beyond the ones above: `irlb results`, symbolic links as the output place, negative
# and too large seeds, experiment settings out of their range, malformed --set, SB3 settings of preference-rl and of
# a configured expert, files of the user where `irlb paper` and `irlb reproduce` would write theirs.
def results_page(c: Context, *extra: str, page: Path | None = None, blocks: Path | None = None) -> list[str]:
    """``irlb results`` on a results folder of one good file, writing ``page.md`` and the blocks of ``notes.md``."""
    folder = c.dir / "results" if (c.dir / "results").is_dir() else paper_results(c)
    blocks = blocks if blocks is not None else c.file("notes.md", "# My notes\n")
    return ["results", "--results", str(folder), "--benchmarks", c.s("benchmarks"), "--page",
            str(page if page is not None else c.path("page.md")), "--blocks", str(blocks), *extra]


def _symlink(c: Context, name: str, target: Path) -> Path:
    link = c.dir / name
    link.symlink_to(target)
    return link


def _earlier_reproduction(c: Context) -> list[str]:
    """A results folder of an earlier reproduction (reward_recovery's result) where the user keeps a file named like
    the result file of the experiment to run."""
    folder = c.dir / "results"
    folder.mkdir()
    shutil.copy2(REPOSITORY / "results" / "reward_recovery.json", folder)
    (folder / f"{SWEEP_EXPERIMENT}.json").write_text('{"mine": true}\n')
    return ["reproduce", "--scale", "tiny", "--only", SWEEP_EXPERIMENT, "--results", str(folder), "--figures",
            c.s("figures")]


def _generated_with_user_table(c: Context) -> list[str]:
    """An earlier `irlb paper` output folder where the user keeps a table of theirs named like a generated one."""
    out = c.dir / "generated"
    out.mkdir()
    (out / "numbers.tex").write_text("% Generated by `irlb paper` from the result files named below; do not edit.\n")
    (out / "loss_catalog.tex").write_text("% my own loss table\n")
    return [*paper(c, results=paper_results(c))[:-1], str(out)]


PROBE_CASES: list[tuple[str, str, Callable[[Context], Invocation], tuple[str, ...]]] = [
    # irlb results: its inputs, its page and its blocks
    ("missing_file", "results --results", lambda c: ["results", "--results", c.s("no_results"), "--benchmarks",
                                                     c.s("no_benchmarks"), "--page", c.s("page.md")],
     ("no_results",)),
    ("missing_file", "results --blocks", lambda c: results_page(c, blocks=c.path("no_notes.md")), ("no_notes.md",)),
    ("random_bytes", "results --page", lambda c: results_page(c, page=random_bytes(c.file("page.md", b"x"))),
     ("page.md",)),
    ("random_bytes", "results --blocks", lambda c: results_page(c, blocks=random_bytes(c.file("notes.md", b"x"))),
     ("notes.md",)),
    ("unknown_names", "results a generated block of no name known", lambda c: results_page(
        c, blocks=c.file("notes.md", "<!-- generated:bogus -->\nold\n<!-- /generated:bogus -->\n")), ("bogus",)),
    ("out_folder", "results --page a file of the user's", lambda c: results_page(
        c, page=c.file("page.md", "# my page\n")), ("page.md",)),
    ("out_folder", "results --page a folder", lambda c: results_page(c, page=c.user_folder()), ("mine",)),
    ("out_folder", "results --page inside a file", lambda c: results_page(
        c, page=c.file("out.txt", "my results\n") / "page.md"), ("out.txt",)),
    ("out_folder", "results --page unwritable", lambda c: results_page(c, page=Path(UNWRITABLE) / "page.md"),
     ("irlb-bad-inputs",)),
    # symbolic links as the output place: one to the user's folder, one that points nowhere
    ("out_folder", "tabular-irl --out a link to the user's folder", lambda c: tabular(
        c, out=str(_symlink(c, "link", c.user_folder()))), ("link",)),
    ("out_folder", "tabular-irl --out a dangling link", lambda c: tabular(
        c, out=str(_symlink(c, "link", c.path("nowhere")))), ("link",)),
    ("out_folder", "train-preferences --out a link to the user's folder", lambda c: train_preferences(
        c, out=str(_symlink(c, "link", c.user_folder()).name)), ("link",)),
    ("out_folder", "train-preferences --out a dangling link", lambda c: train_preferences(
        c, out=str(_symlink(c, "link", c.path("nowhere")).name)), ("link",)),
    ("out_folder", "paper --out a dangling link", lambda c: [
        *paper(c, results=paper_results(c))[:-1], str(_symlink(c, "link", c.path("nowhere")))], ("link",)),
    # files of the user where irlb paper and irlb reproduce would write theirs
    ("out_folder", "paper --out a table of the user's named like a generated one", _generated_with_user_table,
     ("loss_catalog.tex",)),
    ("out_folder", "reproduce --results a file of the user's named like a result", _earlier_reproduction,
     (f"{SWEEP_EXPERIMENT}.json",)),
    # seeds: numpy, gymnasium and SB3 take 0 .. 2**32 - 1; every config refuses what they would
    ("numeric_settings", "tabular-irl --seed -1", lambda c: tabular(c, "--seed", "-1"), ("seed",)),
    ("numeric_settings", "gym-irl --seed 2**32", lambda c: gym(c, "--seed", str(2**32)), ("seed",)),
    ("numeric_settings", "gym-irl eval_seed=-5", lambda c: gym(c, "--set", "eval_seed=-5"), ("eval_seed",)),
    ("numeric_settings", "preference-rl eval_seed 2**40", lambda c: preference_rl(c, "--set", f"eval_seed={2**40}"),
     ("eval_seed",)),
    ("numeric_settings", "train-reward-model --seed -1", lambda c: train_reward_model(c, "--seed", "-1"), ("seed",)),
    ("numeric_settings", "reproduce --seed -1", lambda c: reproduce(c, "--seed", "-1"), ("seed",)),
    ("numeric_settings", "sweep --seeds -1", lambda c: sweep_seeds(c, "-1"), ("seeds", "-1")),
    # experiment settings out of their range (every experiment's config declares them)
    ("numeric_settings", "config reward_recovery slip 2", lambda c: [
        "config", "reward_recovery", "--set", "gridworld.slip=2"], ("gridworld.slip",)),
    ("numeric_settings", "config reward_recovery num_demos []", lambda c: [
        "config", "reward_recovery", "--set", "objectworld.num_demos=[]"], ("objectworld.num_demos",)),
    ("numeric_settings", "config hypergradient_accuracy discount 1", lambda c: [
        "config", "hypergradient_accuracy", "--set", "discount=1"], ("discount",)),
    ("numeric_settings", "config hypergradient_accuracy ks [0]", lambda c: [
        "config", "hypergradient_accuracy", "--set", "ks=[0]"], ("ks",)),
    ("numeric_settings", "config loss_sweep held_out_fraction 1", lambda c: [
        "config", "loss_sweep", "--set", "held_out_fraction=1"], ("held_out_fraction",)),
    ("numeric_settings", "config loss_sweep epsilons [1.5]", lambda c: [
        "config", "loss_sweep", "--set", "epsilons=[1.5]"], ("epsilons",)),
    ("numeric_settings", "config learned_shaping step_cost NaN", lambda c: [
        "config", "learned_shaping", "--set", "step_cost=NaN"], ("step_cost",)),
    ("numeric_settings", "config feedback_consistency concentration 0", lambda c: [
        "config", "feedback_consistency", "--set", "concentration=0"], ("concentration",)),
    ("numeric_settings", "config preference_noise mistake_rates [-0.1]", lambda c: [
        "config", "preference_noise", "--set", "mistake_rates=[-0.1]"], ("mistake_rates",)),
    ("numeric_settings", "config sentiment_frontier rl_samples_per_prompt 1", lambda c: [
        "config", "sentiment_frontier", "--set", "rl_samples_per_prompt=1"], ("rl_samples_per_prompt",)),
    ("numeric_settings", "config shaping_classic_control goal_threshold 2", lambda c: [
        "config", "shaping_classic_control", "--set", "goal_threshold=2"], ("goal_threshold",)),
    ("numeric_settings", "config seed_sweeps seeds 0", lambda c: [
        "config", "seed_sweeps", "--set", "seeds=0"], ("seeds",)),
    ("numeric_settings", "config smollm2_frontier batch_size -2", lambda c: [
        "config", "smollm2_frontier", "--set", "batch_size=-2"], ("batch_size",)),
    ("numeric_settings", "config smollm2_agentic seeds 0", lambda c: [
        "config", "smollm2_agentic", "--set", "seeds=0"], ("seeds",)),
    ("numeric_settings", "config smollm2_agentic rl_episodes_per_start 1", lambda c: [
        "config", "smollm2_agentic", "--set", "rl_episodes_per_start=1"], ("rl_episodes_per_start",)),
    ("numeric_settings", "config smollm2_agentic discount 1", lambda c: [
        "config", "smollm2_agentic", "--set", "discount=1"], ("discount",)),
    ("numeric_settings", "config smollm2_agentic search_expansions 0", lambda c: [
        "config", "smollm2_agentic", "--set", "search_expansions.ta-hanoi=0"], ("search_expansions",)),
    ("numeric_settings", "train-preferences --seed -1", lambda c: train_preferences(c, "--seed", "-1"), ("seed",)),
    ("numeric_settings", "rloo --seed 2.5", lambda c: rloo(c, "--seed", "2.5"), ("seed",)),
    ("numeric_settings", "train-preferences --gradient-accumulation-steps 0", lambda c: train_preferences(
        c, "--gradient-accumulation-steps", "0"), ("gradient_accumulation_steps",)),
    ("numeric_settings", "train-reward-model --checkpoint-every -1", lambda c: train_reward_model(
        c, "--checkpoint-every", "-1"), ("checkpoint_every",)),
    ("unknown_names", "config smollm2_agentic a search budget for an unknown game", lambda c: [
        "config", "smollm2_agentic", "--set", "search_expansions.chess=5"], ("search_expansions",)),
    ("numeric_settings", "reproduce an experiment's learning rate -1", lambda c: [
        "reproduce", "--scale", "tiny", "--only", "aspect_labels", "--results", c.s("results"), "--figures",
        c.s("figures"), "--set", "aspect_labels.learning_rate=-1"], ("learning_rate",)),
    ("numeric_settings", "sweep a grid value out of range", lambda c: sweep(c, "--grid", "num_margins=[5, -5]"),
     ("num_margins",)),
    # --set that is not KEY=VALUE
    ("wrong_json_types", "tabular-irl --set without =", lambda c: tabular(c, "--set", "steps"), ("steps",)),
    ("wrong_json_types", "tabular-irl --set without a key", lambda c: tabular(c, "--set", "=3"), ("=3",)),
    ("wrong_json_types", "tabular-irl --set an empty value", lambda c: tabular(c, "--set", "steps="), ("steps",)),
    ("wrong_json_types", "gym-irl --set into a setting that is no section", lambda c: gym(
        c, "--set", "outer_steps.inner=1"), ("outer_steps",)),
    # SB3 settings the algorithm does not take (found before anything is written)
    ("unknown_names", "preference-rl SB3 hyperparameter", lambda c: preference_rl(
        c, "--set", 'hyperparameters={"bogus_kw": 1}'), ("bogus_kw",)),
    ("unknown_names", "preference-rl SB3 hyperparameter value", lambda c: preference_rl(
        c, "--set", 'hyperparameters={"n_steps": "many"}'), ("hyperparameters",)),
    ("unknown_names", "gym-irl expert hyperparameter", lambda c: gym(
        c, "--set", "demonstrations_file=null", "--set", "expert_algorithm=ppo", "--set", "expert_timesteps=64",
        "--set", 'expert_hyperparameters={"bogus_kw": 1}'), ("bogus_kw",)),
    ("unknown_names", "gym-irl an expert that cannot act", lambda c: gym(
        c, "--set", "demonstrations_file=null", "--set", "expert_algorithm=sac", "--set", "expert_timesteps=64"),
     ("expert_algorithm",)),
    ("unknown_names", "gym-irl env_id empty", lambda c: gym(c, "--set", 'env_id=""'), ("env_id",)),
]
for _family, _label, _build, _names in PROBE_CASES:
    add(_family, _label, _names, _build)


# The data-safety test: a folder of the user's files (Context.user_folder) given to every command, as its output
# folder, as an output file inside it, or as an input. (label, build(context, folder) -> arguments, needs).
def _into(build: Callable[..., list[str]], file: str = "") -> Callable[[Context, Path], Invocation]:
    """``build(context, out)`` with ``out`` the user's folder (or ``file`` inside it)."""
    return lambda c, folder: build(c, str(folder / file if file else folder))


DATA_SAFETY: list[tuple[str, Callable[[Context, Path], Invocation], str | None]] = [
    *[(f"{command} {_out_option(command)}", _into(build), None) for command, build in OUT_COMMANDS.items()],
    *[(f"{command} --out (the folder)", _into(build), None) for command, build in OUT_FILE_COMMANDS.items()],
    *[(f"{command} --out (a file in it)", _into(build, "data.json"), None)
      for command, build in OUT_FILE_COMMANDS.items()],
    ("tabular-irl --mdp-file", lambda c, folder: ["tabular-irl", "--mdp-file", str(folder), "--out", c.s("run")],
     None),
    ("tabular-irl --config", lambda c, folder: tabular(c, "--config", str(folder / "data.json")), None),
    ("gym-irl demonstrations_file", lambda c, folder: gym(c, demos=folder), None),
    ("preference-rl --config", lambda c, folder: preference_rl(c, "--config", str(folder / "config.json")), None),
    ("train-preferences --data", lambda c, folder: train_preferences(c, data=folder), None),
    ("train-preferences --model", lambda c, folder: train_preferences(c, model=folder), None),
    ("train-reward-model --model", lambda c, folder: train_reward_model(c, model=folder), None),
    ("rloo --reward-model", lambda c, folder: rloo(c, reward=folder), None),
    ("rloo --prompts", lambda c, folder: rloo(c, prompts=folder / "data.json"), None),
    ("rewardbench --model", lambda c, folder: rewardbench(c, model=folder), None),
    ("rewardbench --file", lambda c, folder: rewardbench(c, file=folder / "data.json"), None),
    ("agentic --config", lambda c, folder: agentic(c, "--config", str(folder / "data.json")), None),
    ("config --config", lambda c, folder: ["config", SWEEP_EXPERIMENT, "--config", str(folder / "config.json")], None),
    ("reproduce --config", lambda c, folder: reproduce(c, "--config", str(folder / "config.json")), None),
    ("sweep --spec", lambda c, folder: ["sweep", "--spec", str(folder / "data.json"), "--out", c.s("s")], None),
    ("merge-sweeps summaries", lambda c, folder: ["merge-sweeps", str(folder / "data.json"),
                                                  str(folder / "config.json"), "--out", c.s("merged.json")], None),
    ("paper --results", lambda c, folder: paper(c, results=folder), None),
    ("results --results", lambda c, folder: ["results", "--results", str(folder), "--benchmarks", str(folder),
                                             "--page", c.s("page.md"), "--blocks", str(folder / "notes")], None),
    ("results --page", lambda c, folder: results_page(c, page=folder / "thesis.tex"), None),
]


# ====================================================================== the report script
def report(selected: list[Case], root: Path, verbose: bool = False) -> dict[str, int]:
    """Run ``selected`` under ``root`` and print one line per case and the counts of each outcome, with the files of
    the case folders (all the user's) that the cases deleted or changed, and how many failed starts (every outcome
    but ``silent``) left their folder changed."""
    art = Artifacts(root / "artifacts")
    counts: dict[str, int] = {}
    damage = {"failed starts that changed the folder": 0, "files deleted": 0, "files changed": 0}
    for number, item in enumerate(selected):
        started = time.perf_counter()
        try:
            outcome = run_case(item, art, root / "cases" / f"{number:03d}")
        except Exception:  # the case's good inputs could not be built: report it and go on
            outcome = Outcome("build-error", None, "", traceback.format_exc())
        seconds = time.perf_counter() - started
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
        if outcome.changes:
            damage["failed starts that changed the folder"] += outcome.status != "silent"
            damage["files deleted"] += sum(change.startswith("-") for change in outcome.changes)
            damage["files changed"] += sum(change.startswith("~") for change in outcome.changes)
        tag = f" [needs {item.needs}]" if item.needs else ""
        first = next((line for line in (outcome.trace or outcome.message).strip().splitlines()[-1:]), "")
        print(f"{outcome.status:10s} {seconds:5.1f}s {item.id}{tag}: {first[:200]}", flush=True)
        if verbose and outcome.status != "ok":
            print("    " + outcome.describe().replace("\n", "\n    "), flush=True)
    print(json.dumps({"cases": len(selected), **counts, **damage}, sort_keys=True))
    return counts


def _main(argv: list[str]) -> int:  # pragma: no cover - the report script
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="Run the corpus of bad inputs and count the outcomes.")
    parser.add_argument("--family", action="append", help="only these families")
    parser.add_argument("-k", dest="match", help="only cases whose id contains this")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--root", help="working folder (default: a new temporary one)")
    parser.add_argument("--skip-listed", metavar="LOG", help="skip the cases an earlier report (its output) lists")
    args = parser.parse_args(argv)
    listed = set()
    if args.skip_listed:
        listed = {match.group(1) for match in re.finditer(r"^\w+ +[\d.]+s (\S.*?)(?: \[needs [\w-]+\])?: ",
                                                            Path(args.skip_listed).read_text(), re.M)}
    selected = [c for c in CASES if (not args.family or c.family in args.family)
                and (not args.match or args.match in c.id) and c.id not in listed]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    root = Path(args.root or tempfile.mkdtemp(prefix="bad-inputs-"))
    os.environ.setdefault("IRL_BILEVEL_CACHE", str(root / "cache"))
    report(selected, root, args.verbose)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(_main(sys.argv[1:]))
