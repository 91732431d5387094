"""irlb.ray_processes: the processes a driver tagged die with it, however it dies; untagged ones are left alone.
No Ray here (a fake driver with Ray-like children); the Ray version is test_sweep's slow kill test."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from irlb.ray_processes import MARKER, kill_marked_processes, marked_processes, start_watchdog

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs /proc (Linux)")

# A driver as `start_ray` is one: the watchdog first, then children that carry the token, as Ray's do: one in a
# session of its own (Ray's workers take their own process group), one that ignores SIGTERM and has a child of its
# own, orphaned when its parent dies. It prints "ready" when all run, then waits to be killed.
FAKE_DRIVER = r'''
import os, subprocess, sys, time
from irlb.ray_processes import MARKER, marked_processes, start_watchdog

token, temp_dir = sys.argv[1], sys.argv[2]
watchdog = start_watchdog(token, temp_dir)
env = {**os.environ, MARKER: token}
subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)
subprocess.Popen([sys.executable, "-c", "import signal, subprocess, time; signal.signal(signal.SIGTERM, "
                  "signal.SIG_IGN); subprocess.Popen(['sleep', '300']); time.sleep(300)"], env=env)
while len(marked_processes(token)) < 3:
    time.sleep(0.05)
print("ready", flush=True)
if sys.argv[3] == "close":
    watchdog.close()
    print("closed", flush=True)
time.sleep(300)
'''


def _driver(token: str, temp_dir: Path, how: str) -> subprocess.Popen[str]:
    driver = subprocess.Popen([sys.executable, "-c", FAKE_DRIVER, token, str(temp_dir), how], text=True,
                              stdout=subprocess.PIPE)
    assert driver.stdout is not None
    if driver.stdout.readline() != "ready\n":
        driver.kill()
        driver.wait()
        pytest.fail("the fake driver did not start")
    return driver


def _wait_until_none(token: str, seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := marked_processes(token)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _ignores(pid: int, number: int) -> bool:
    """Whether process ``pid`` ignores signal ``number`` (the SigIgn bit mask of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (number - 1) & 1)
    return False


def test_a_killed_driver_leaves_none_of_its_tagged_processes_and_no_one_elses(tmp_path):
    token, other = f"test-{uuid.uuid4().hex}", f"test-{uuid.uuid4().hex}"
    temp_dir = tmp_path / "ray-temp"
    temp_dir.mkdir()
    bystander = subprocess.Popen(["sleep", "300"], env={**os.environ, MARKER: other})  # another driver's
    driver = None
    try:
        driver = _driver(token, temp_dir, "wait")
        assert len(marked_processes(token)) == 3  # the driver and the watchdog do not carry the token
        driver.send_signal(signal.SIGKILL)  # as `kill -9` of `irlb sweep`
        driver.wait()
        assert _wait_until_none(token) == []
        deadline = time.monotonic() + 5
        while temp_dir.exists() and time.monotonic() < deadline:  # removed right after the last kill
            time.sleep(0.05)
        assert not temp_dir.exists()  # the Ray temp folder the driver created is gone too
        assert bystander.poll() is None and marked_processes(other) == [bystander.pid]
    finally:
        kill_marked_processes(token)
        bystander.kill()
        bystander.wait()
        if driver is not None:
            driver.stdout.close()  # type: ignore[union-attr]


def test_closing_the_watchdog_kills_the_leftovers_and_a_group_sigterm_does_not_stop_it(tmp_path):
    token = f"test-{uuid.uuid4().hex}"
    driver = _driver(token, tmp_path / "ray-temp", "close")
    try:
        assert driver.stdout is not None and driver.stdout.readline() == "closed\n"
        assert marked_processes(token) == []  # close() returns once the watchdog has killed them all
    finally:
        driver.kill()
        driver.wait()
        driver.stdout.close()  # type: ignore[union-attr]

    # SIGTERM to the watchdog itself (as `kill` of the sweep's process group sends it) leaves it watching.
    watchdog = start_watchdog(token)
    assert watchdog is not None
    child = subprocess.Popen(["sleep", "300"], env={**os.environ, MARKER: token})
    try:
        deadline = time.monotonic() + 10
        while not _ignores(watchdog.process.pid, signal.SIGTERM):  # set first thing once Python has started
            assert time.monotonic() < deadline
            time.sleep(0.05)
        watchdog.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert watchdog.process.poll() is None and child.poll() is None
        watchdog.close()
        assert watchdog.process.returncode == 0 and child.wait(5) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()
