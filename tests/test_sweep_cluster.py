"""`irlb sweep --address` on a real two-node Ray cluster on this machine (two `ray start` nodes), losing its worker
node in the middle: the rerun finishes every trial, runs no finished trial again, and every result equals that of a
local sweep of the same spec.

Every process the test starts carries the environment variable NODE_MARKER (see irlb.ray_processes); the test
stops one node, and at the end everything it started, by that marker, never by process name (`ray stop` would stop
every Ray of this user on the machine, other people's included)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from irlb.ray_processes import kill_marked_processes, marked_processes

NODE_MARKER = "IRLB_TEST_RAY_NODE"  # value: <cluster token>-<head | worker | driver | local>
BIN = Path(sys.executable).parent

# loss_sweep (a real experiment: PPO expert, preference data, DPO-family losses; ~1-2 s at tiny scale, seeded)
# behind a gate the test opens trial by trial: a trial counts its runs, says on which node it waits
# (<gate>/<trial>.holding holds the node's name from NODE_MARKER), and starts once <gate>/<trial>.release or
# <gate>/open exists.
GATED_MODULE = '''
import os
import time
from pathlib import Path

from classic_rl.experiments import loss_sweep

NAME = "gated_loss_sweep"
CONFIG = loss_sweep.CONFIG
SCALES = loss_sweep.SCALES
GATE = Path(GATE_DIR)


def run(scale, results_dir, seed=0, progress=True, config=None):
    results_dir = Path(results_dir)
    counter = results_dir / "runs.txt"
    counter.write_text(str(int(counter.read_text()) + 1 if counter.exists() else 1))
    holding = GATE / f"{results_dir.name}.holding"
    holding.write_text(os.environ.get("IRLB_TEST_RAY_NODE", "-").rsplit("-", 1)[-1])
    while not (GATE / "open").exists() and not (GATE / f"{results_dir.name}.release").exists():
        time.sleep(0.1)
    holding.unlink()
    return loss_sweep.run(scale, results_dir, seed=seed, progress=progress, config=config)
'''
# The metric: the held-out reward margin of the sigmoid (DPO) loss, which training moves (the return barely does at
# this scale).
SPEC = {"experiment": "gated_loss_sweep", "module": "sweep_cluster_experiment", "scale": "tiny",
        "grid": {"epochs": [1, 2]}, "seeds": [0, 1, 2], "metric": "summary.sigmoid.mean_margin.iqm",
        "extra_metrics": ["summary.sigmoid.normalized_return_stochastic.iqm"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TwoNodeCluster:
    """A head node and a worker node, one CPU each, started with `ray start` on this machine. Each node has its
    own temp dir and ports; its processes carry NODE_MARKER=<token>-<node>."""

    def __init__(self, root: Path, python_path: Path) -> None:
        self.root, self.token = root, uuid.uuid4().hex[:12]
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.python_path = os.pathsep.join([str(python_path), os.environ.get("PYTHONPATH", "")])

    def env(self, role: str) -> dict[str, str]:
        return {**os.environ, NODE_MARKER: f"{self.token}-{role}", "PYTHONPATH": self.python_path,
                "RAY_TMPDIR": str(self.root), "RAY_AUTH_MODE": "disabled",
                "SPT_NOENV": "1",  # Ray's process titles must not hide NODE_MARKER (as irlb.sweep.start_ray does)
                # the GCS declares a silent node dead after 3 missed health checks 0.5 s apart (default 5 x 3 s)
                "RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3"}

    def start(self) -> None:
        common = ["--num-cpus", "1", "--disable-usage-stats", "--dashboard-agent-listen-port"]
        head = [str(BIN / "ray"), "start", "--head", "--port", str(self.port), "--include-dashboard", "false",
                "--ray-client-server-port", str(free_port()), *common, str(free_port()),
                "--temp-dir", str(self.root / "head")]
        worker = [str(BIN / "ray"), "start", "--address", self.address, *common, str(free_port()),
                  "--temp-dir", str(self.root / "worker")]
        for role, command in (("head", head), ("worker", worker)):
            started = subprocess.run(command, env=self.env(role), capture_output=True, timeout=180)
            assert started.returncode == 0, f"ray start ({role}): {started.stderr.decode()[-2000:]}"

    def processes(self, role: str) -> list[int]:
        return marked_processes(f"{self.token}-{role}", NODE_MARKER)

    def services(self, role: str) -> list[int]:
        """The GCS server and raylet processes among those of ``role``."""
        return sorted(pid for pid in self.processes(role) if Path(f"/proc/{pid}/exe").resolve().name in
                      ("gcs_server", "raylet"))

    def stop(self, role: str) -> None:
        kill_marked_processes(f"{self.token}-{role}", NODE_MARKER)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[TwoNodeCluster]:
    (tmp_path / "gate").mkdir()
    module_dir = tmp_path / "module"
    module_dir.mkdir()
    (module_dir / "sweep_cluster_experiment.py").write_text(
        textwrap.dedent(GATED_MODULE).replace("GATE_DIR", repr(str(tmp_path / "gate"))))
    root = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # short: Ray's socket paths are length-limited
    nodes = TwoNodeCluster(root, module_dir)
    try:
        nodes.start()
        yield nodes
    finally:
        for role in ("driver", "local", "worker", "head"):  # everything this test started, and nothing else
            nodes.stop(role)
        shutil.rmtree(root, ignore_errors=True)


def waiting(gate: Path, count: int, known: dict[str, str] | None = None) -> dict[str, str] | None:
    """Trial id -> node name of the trials waiting at the gate, if ``count`` of them wait (none of ``known``)."""
    found = {}
    for path in gate.glob("*.holding"):
        try:
            found[path.name.removesuffix(".holding")] = path.read_text()
        except FileNotFoundError:  # released meanwhile
            pass
    return found if len(found) == count and not set(found) & set(known or {}) else None


def wait_for(condition: Any, driver: subprocess.Popen[bytes], what: str, timeout: float = 240.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert driver.poll() is None, f"the sweep ended (exit {driver.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def comparable(result: Any) -> Any:
    """A result file without what differs between two runs of the same trial (provenance, wall-clock times)."""
    if isinstance(result, dict):
        return {k: comparable(v) for k, v in result.items() if k not in ("provenance", "seconds", "times")}
    if isinstance(result, list):
        return [comparable(v) for v in result]
    return result


@pytest.mark.slow  # ~2-3 min on 2 busy cores: two `ray start` nodes, a sweep on them, its rerun, and a local sweep
def test_a_sweep_on_two_nodes_loses_its_worker_node_and_the_rerun_finishes_it(cluster, tmp_path):
    gate, out, spec_file = tmp_path / "gate", tmp_path / "cluster", tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SPEC))
    command = [str(BIN / "irlb"), "sweep", "--spec", str(spec_file), "--out", str(out), "--address",
               cluster.address, "--max-failures", "0"]
    with (tmp_path / "driver.log").open("wb") as log:
        driver = subprocess.Popen(command, env=cluster.env("driver"), stdout=log, stderr=subprocess.STDOUT)
    try:
        # The first two trials wait at the gate, one on each node (a trial takes its node's one CPU); both finish.
        first = wait_for(lambda: waiting(gate, 2), driver, "two waiting trials")
        assert sorted(first.values()) == ["head", "worker"]
        for trial in first:
            (gate / f"{trial}.release").touch()
        wait_for(lambda: all((out / t / "done.json").exists() for t in first), driver, "the first two trials")

        # The next two wait, one on each node; the worker node dies (its processes, and only those) under its trial.
        second = wait_for(lambda: waiting(gate, 2, first), driver, "two more waiting trials")
        assert sorted(second.values()) == ["head", "worker"]
        head_services = cluster.services("head")
        assert len(head_services) == 2 and len(cluster.services("worker")) == 1  # GCS + raylet; a raylet
        cluster.stop("worker")
        assert cluster.processes("worker") == [] and cluster.services("head") == head_services
        (gate / "open").touch()
        assert driver.wait(timeout=300) == 1, (tmp_path / "driver.log").read_text()[-3000:]  # 1: a trial failed
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait()
    lost = next(t for t, node in second.items() if node == "worker")
    statuses = {row["trial_id"]: row["status"] for row in json.loads((out / "sweep.json").read_text())["trials"]}
    assert len(statuses) == 6 and statuses.pop(lost) == "failed" and set(statuses.values()) == {"done"}

    # Placement, from the trials' own records: the first two ran on two Ray nodes of one host.
    nodes = [json.loads((out / t / "done.json").read_text())["node"] for t in first]
    assert nodes[0]["node_id"] != nodes[1]["node_id"] and nodes[0]["hostname"] == nodes[1]["hostname"]
    assert json.loads((out / lost / "trial.json").read_text())["node"]["node_id"] == \
        next(n["node_id"] for n, t in zip(nodes, first) if first[t] == "worker")

    # The rerun, on the head node alone, runs the lost trial only: no finished trial starts again.
    finished = {t: (out / t / "done.json").read_bytes() for t in statuses}
    rerun = subprocess.run(command, env=cluster.env("driver"), capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout.decode()[-3000:]
    summary = json.loads((out / "sweep.json").read_text())
    assert {row["trial_id"]: row["status"] for row in summary["trials"]} == {**{t: "skipped" for t in finished},
                                                                            lost: "done"}
    assert {t: (out / t / "done.json").read_bytes() for t in finished} == finished
    runs = {t: int((out / t / "runs.txt").read_text()) for t in [*finished, lost]}
    assert runs == {**{t: 1 for t in finished}, lost: 2}
    assert json.loads((out / lost / "done.json").read_text())["attempt"] == 2

    # The same sweep in local mode (its own Ray, 2 CPUs, even with RAY_ADDRESS naming the cluster): the same
    # metrics, bit for bit, and the same result files.
    local = subprocess.run([str(BIN / "irlb"), "sweep", "--spec", str(spec_file), "--out", str(tmp_path / "local"),
                            "--num-cpus", "2"], env={**cluster.env("local"), "RAY_ADDRESS": cluster.address},
                           capture_output=True, timeout=300)
    assert local.returncode == 0, local.stdout.decode()[-3000:]
    assert cluster.processes("local") == []  # its Ray ended with it
    local_summary = json.loads((tmp_path / "local" / "sweep.json").read_text())
    local_nodes = {r["node"]["node_id"] for r in local_summary["trials"]}
    assert len(local_nodes) == 1 and not local_nodes & {r["node"]["node_id"] for r in summary["trials"]}
    assert [(r["trial_id"], r["metric"]) for r in local_summary["trials"]] == \
        [(r["trial_id"], r["metric"]) for r in summary["trials"]]
    assert len({r["metric"] for r in summary["trials"]}) == 6  # each trial its own number: no mix-up goes unseen
    for row in summary["trials"]:
        on_cluster, alone = (json.loads((folder / row["trial_id"] / "loss_sweep.json").read_text())
                             for folder in (out, tmp_path / "local"))
        assert comparable(on_cluster) == comparable(alone)
    assert json.dumps(summary["grid_points"]) == json.dumps(local_summary["grid_points"])
