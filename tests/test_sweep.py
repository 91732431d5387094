"""Sweeps on Ray Tune (irlb.sweep): a grid × seeds runs locally, failed trials are retried, and a re-run
finishes only the trials that have no completion marker. One in-process Ray for the whole module."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from irl_bilevel.runs import write_json
from irl_bilevel.validation import ValidationError
from irlb.main import main
from irlb.ray_processes import kill_marked_processes, marked_processes
from irlb.sweep import expand, load_spec, merge_sweeps, parse_grid, run_sweep, start_ray, stop_ray

# An experiment registered only here: it counts its runs in its trial folder; the trial of value 2 fails its first
# attempt (a flaky failure: the retry succeeds), the trial of value 3 every attempt while a block file exists (a
# trial that dies until the cause is fixed, like a sweep killed half-way).
FLAKY_MODULE = '''
from dataclasses import dataclass
from pathlib import Path

from irl_bilevel.config import Config, experiment_settings
from irl_bilevel.runs import write_json

NAME = "flaky"


@dataclass(frozen=True)
class FlakyConfig(Config):
    value: float
    block_file: str


SCALES = {"tiny": {"value": 0.0, "block_file": BLOCK_FILE}}
CONFIG = FlakyConfig


def run(scale, results_dir, seed=0, progress=True, config=None):
    settings = experiment_settings(FlakyConfig, SCALES, scale, NAME, config)
    counter = Path(results_dir) / "runs.txt"
    runs = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(runs))
    if settings.value == 2.0 and runs == 1:
        raise RuntimeError("flaky: first attempt fails")
    if settings.value == 3.0 and Path(settings.block_file).exists():
        raise RuntimeError("blocked")
    if settings.value == 4.0 and Path(settings.block_file).exists():
        import time

        time.sleep(120)  # a long trial, killed with its sweep in test_killed_sweep_...
    path = Path(results_dir) / "flaky.json"
    write_json(path, {"score": 10 * settings.value + seed})
    return path
'''


@pytest.fixture(scope="module")
def flaky_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flaky_module")
    block = folder / "block"
    (folder / "sweep_flaky_experiment.py").write_text(
        textwrap.dedent(FLAKY_MODULE).replace("BLOCK_FILE", repr(str(block))))
    return folder


@pytest.fixture(scope="module")
def ray_session(flaky_dir):
    """Ray started once, in this process, with 2 CPUs; its workers import the test-only experiment module."""
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: ray's socket paths are length-limited
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_TMPDIR", ray_tmp)
        patch.setenv("PYTHONPATH", os.pathsep.join([str(flaky_dir), os.environ.get("PYTHONPATH", "")]))
        patch.syspath_prepend(str(flaky_dir))
        assert start_ray(num_cpus=2)
        try:
            assert not start_ray(num_cpus=2)  # already running: reused, not restarted
            yield
        finally:
            stop_ray()
            sys.modules.pop("sweep_flaky_experiment", None)
            shutil.rmtree(ray_tmp, ignore_errors=True)


def _result_mtimes(sweep_dir: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in sweep_dir.glob("*/loss_gradient_weights.json")}


def test_sweep_runs_grid_times_seeds_then_only_missing_trials(ray_session, tmp_path):
    sweep_dir = tmp_path / "sweep"
    spec = load_spec(experiment="loss_gradient_weights", scale="tiny", grid={"num_margins": [11, 21]},
                     seeds=[0, 1], overrides={"scaled_margin_limit": 5.0})
    trials = expand(spec)
    assert len(trials) == 4 and len({t.trial_id for t in trials}) == 4
    assert [t.trial_id for t in expand(spec)] == [t.trial_id for t in trials]  # stable ids

    summary = run_sweep(spec, sweep_dir, max_concurrent=2, verbose=False)
    assert [r["status"] for r in summary["trials"]] == ["done"] * 4 and summary["complete"]
    for trial in trials:
        folder = sweep_dir / trial.trial_id
        record = json.loads((folder / "trial.json").read_text())
        assert record["seed"] == trial.seed and record["config"]["num_margins"] == trial.point["num_margins"]
        assert record["config"]["scaled_margin_limit"] == 5.0 and "versions" in record["provenance"]
        result = json.loads((folder / "loss_gradient_weights.json").read_text())
        assert len(result["scaled_margins"]) == trial.point["num_margins"]
        assert result["provenance"]["seed"] == trial.seed
        assert json.loads((folder / "done.json").read_text())["metric"] == pytest.approx(result["seconds"])
    aggregate = json.loads((sweep_dir / "sweep.json").read_text())
    assert [p["point"] for p in aggregate["grid_points"]] == [{"num_margins": 11}, {"num_margins": 21}]
    for point in aggregate["grid_points"]:
        assert point["n"] == 2 and point["seeds"] == [0, 1]
        assert point["low"] <= point["iqm"] <= point["high"] and point["iqm"] == pytest.approx(sum(point["values"]) / 2)

    # A trial interrupted before its marker was written: the re-run (through the CLI) runs only that one.
    before = _result_mtimes(sweep_dir)
    (sweep_dir / trials[1].trial_id / "done.json").unlink()
    assert main(["sweep", "--experiment", "loss_gradient_weights", "--scale", "tiny", "--grid", "num_margins=[11,21]",
                 "--seeds", "0,1", "--set", "scaled_margin_limit=5.0", "--out", str(sweep_dir),
                 "--max-concurrent", "2"]) == 0
    rerun = json.loads((sweep_dir / "sweep.json").read_text())
    assert [r["status"] for r in rerun["trials"]] == ["skipped", "done", "skipped", "skipped"]
    after = _result_mtimes(sweep_dir)
    assert {k for k in before if before[k] != after[k]} == {trials[1].trial_id}
    assert json.loads((sweep_dir / trials[1].trial_id / "trial.json").read_text())["attempt"] == 2

    # Nothing missing: no trial runs (and Ray is not needed).
    again = run_sweep(spec, sweep_dir, verbose=False)
    assert [r["status"] for r in again["trials"]] == ["skipped"] * 4 and _result_mtimes(sweep_dir) == after

    # Extra metrics are read from the finished trials' result files: added to a finished sweep, nothing reruns.
    extra = load_spec(experiment="loss_gradient_weights", scale="tiny", grid={"num_margins": [11, 21]},
                      seeds=[0, 1], overrides={"scaled_margin_limit": 5.0},
                      extra_metrics=["seconds", "no.such.path"])
    summary = run_sweep(extra, sweep_dir, verbose=False)
    assert [r["status"] for r in summary["trials"]] == ["skipped"] * 4 and _result_mtimes(sweep_dir) == after
    assert summary["extra_metrics"] == ["seconds", "no.such.path"]
    for point in summary["grid_points"]:
        assert point["extra_metrics"]["seconds"]["values"] == pytest.approx(point["values"])
        assert point["extra_metrics"]["no.such.path"]["n"] == 0

    # Seeds added later: seed 1 swept on its own (its trial folders copied, so nothing reruns) and merged with a
    # sweep of seed 0 gives the statistics of the sweep over both seeds.
    parts = []
    for seed in (0, 1):
        part_dir = tmp_path / f"seed{seed}"
        for trial in trials:
            if trial.seed == seed:
                shutil.copytree(sweep_dir / trial.trial_id, part_dir / trial.trial_id)
        part = load_spec(experiment="loss_gradient_weights", scale="tiny", grid={"num_margins": [11, 21]},
                         seeds=[seed], overrides={"scaled_margin_limit": 5.0},
                         extra_metrics=["seconds", "no.such.path"])
        parts.append(run_sweep(part, part_dir, verbose=False))
    write_json(tmp_path / "part0.json", parts[0])
    write_json(tmp_path / "part1.json", parts[1])
    assert main(["merge-sweeps", str(tmp_path / "part0.json"), str(tmp_path / "part1.json"),
                 "--out", str(tmp_path / "merged.json")]) == 0
    merged = json.loads((tmp_path / "merged.json").read_text())
    # compared as JSON text: the metric no trial has is NaN in both, and NaN != NaN
    assert json.dumps(merged["grid_points"], sort_keys=True) == json.dumps(summary["grid_points"], sort_keys=True)
    assert merged["spec"]["seeds"] == [0, 1]
    assert sorted(r["trial_id"] for r in merged["trials"]) == sorted(t.trial_id for t in trials)
    assert len(merged["merged_from"]) == 2 and merged["complete"]
    with pytest.raises(ValidationError, match="more than one sweep"):
        merge_sweeps([parts[0], parts[0]])
    with pytest.raises(ValidationError, match=r"summaries\[1\]\.spec\.grid"):
        merge_sweeps([parts[0], {**parts[1], "spec": {**parts[1]["spec"], "grid": {"num_margins": [11]}}}])
    with pytest.raises(ValidationError, match="at least two"):
        merge_sweeps([parts[0]])


def test_failed_trials_are_retried_and_a_rerun_finishes_only_them(ray_session, flaky_dir, tmp_path):
    sweep_dir = tmp_path / "sweep"
    (flaky_dir / "block").write_text("")
    spec = load_spec(experiment="flaky", module="sweep_flaky_experiment", scale="tiny",
                     grid={"value": [1.0, 2.0, 3.0]}, seeds=[5], metric="score")
    trials = expand(spec)

    def runs() -> list[int]:
        return [int((sweep_dir / t.trial_id / "runs.txt").read_text()) for t in trials]

    first = run_sweep(spec, sweep_dir, max_failures=1, verbose=False)
    assert [r["status"] for r in first["trials"]] == ["done", "done", "failed"]
    assert runs() == [1, 2, 2]  # the flaky trial succeeded on its retry; the blocked one failed twice
    assert first["trials"][2]["error"] == "RuntimeError('blocked')" and not first["complete"]
    assert [p["values"] for p in first["grid_points"]] == [[15.0], [25.0], []]
    assert first["grid_points"][2]["n"] == 0

    (flaky_dir / "block").unlink()
    second = run_sweep(spec, sweep_dir, max_failures=0, verbose=False)
    assert [r["status"] for r in second["trials"]] == ["skipped", "skipped", "done"]
    assert runs() == [1, 2, 3] and second["complete"]  # only the missing trial ran
    assert not (sweep_dir / trials[2].trial_id / "error.json").exists()
    assert second["grid_points"][2] == {"point": {"value": 3.0}, "seeds": [5], "values": [35.0], "iqm": 35.0,
                                        "low": 35.0, "high": 35.0, "n": 1}


def test_bad_sweeps_fail_before_anything_runs(tmp_path):
    with pytest.raises(ValidationError, match=r"loss_gradient_weights\.num_margins: expected int"):
        expand(load_spec(experiment="loss_gradient_weights", scale="tiny", grid={"num_margins": [11, "many"]}))
    with pytest.raises(ValidationError, match=r"sweep: unknown key\(s\) \['seed'\]"):
        load_spec(experiment="loss_gradient_weights", seed=[1])
    with pytest.raises(ValidationError, match="unknown experiment"):
        expand(load_spec(experiment="nope"))
    with pytest.raises(ValidationError, match="JSON list"):
        parse_grid(["num_margins=11"])
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"experiment": "loss_gradient_weights", "grid": {"num_margins": [3]},
                                     "seeds": [0, 1, 2]}))
    spec = load_spec(spec_file, scale="tiny")
    assert spec.scale == "tiny" and len(expand(spec)) == 3
    assert main(["sweep", "--spec", str(spec_file), "--out", str(tmp_path / "s"), "--max-failures", "-1"]) == 2


@pytest.mark.slow  # ~30-45 s: a second Ray in a subprocess; test_ray_processes checks the watchdog without Ray
def test_a_killed_sweep_leaves_no_ray_process_and_resumes_with_only_the_missing_trials(ray_session, flaky_dir,
                                                                                       tmp_path):
    """`kill -9` of the `irlb sweep` driver alone, while one trial runs: within seconds no process of its Ray is
    left (GCS, raylet, agents, workers), and the re-run runs only the unfinished trial."""
    sweep_dir, block = tmp_path / "sweep", flaky_dir / "block"
    block.write_text("")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"experiment": "flaky", "module": "sweep_flaky_experiment", "scale": "tiny",
                                     "grid": {"value": [1.0, 4.0]}, "seeds": [0], "metric": "score"}))
    fast, slow = expand(load_spec(spec_file))
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    token = uuid.uuid4().hex  # every process the sweep starts inherits it: the test's own way to find them
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "IRLB_TEST_SWEEP": token}
    command = [str(Path(sys.executable).parent / "irlb"), "sweep", "--spec", str(spec_file), "--out", str(sweep_dir),
               "--num-cpus", "2", "--max-failures", "0"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not ((sweep_dir / fast.trial_id / "done.json").exists() and
                   (sweep_dir / slow.trial_id / "runs.txt").exists()):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.5)
        started = marked_processes(token, "IRLB_TEST_SWEEP")
        assert len(started) >= 6  # the driver's watchdog, GCS server, raylet, its two agents, the trial's worker...
        # Every process of that Ray shows both markers, the ones that renamed themselves "ray::..." too (their
        # title must not overwrite /proc/<pid>/environ); only the driver and the watchdog lack the watchdog's.
        described = list(map(_describe, started))
        assert {"ray::DashboardA", "ray::RuntimeEnv"} <= {line.split()[1] for line in described}, described
        assert len([line for line in described if "marker False" in line]) == 2, described
        process.send_signal(signal.SIGKILL)  # the driver only, as `kill -9 PID` of `irlb sweep` does
        process.wait()
        deadline = time.monotonic() + 10
        while (left := marked_processes(token, "IRLB_TEST_SWEEP")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == [], [_describe(pid) for pid in left]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        kill_marked_processes(token, "IRLB_TEST_SWEEP")
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not (sweep_dir / slow.trial_id / "done.json").exists()

    block.unlink()
    summary = run_sweep(load_spec(spec_file), sweep_dir, verbose=False)
    assert [r["status"] for r in summary["trials"]] == ["skipped", "done"]
    runs = [int((sweep_dir / t.trial_id / "runs.txt").read_text()) for t in (fast, slow)]
    assert runs == [1, 2] and summary["complete"]
    assert [r["metric"] for r in summary["trials"]] == [10.0, 40.0]


def _describe(pid: int) -> str:
    """What a process is, for failure messages: its name, state and parent, and whether the watchdog could
    see it (its environment carries the watchdog's marker)."""
    try:
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":\t" in line)
        owner = b"IRLB_RAY_OWNER=" in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return f"{pid}: gone"
    return (f"{pid}: {status.get('Name', '?').strip()} state {status.get('State', '?').strip()} "
            f"parent {status.get('PPid', '?').strip()} watchdog marker {owner}")


def test_a_deep_ray_temp_dir_is_replaced_by_a_short_one(monkeypatch, tmp_path):
    from irlb.sweep import short_ray_temp_dir

    monkeypatch.setenv("RAY_TMPDIR", "/tmp/x")
    assert short_ray_temp_dir() is None  # short enough: ray uses it as is
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / ("deep" * 20)))
    short = short_ray_temp_dir()
    assert short is not None and len(short) <= 40 and Path(short).is_dir()
    Path(short).rmdir()
