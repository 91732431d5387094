"""The README as a front door: at most 150 lines, and its five-minute tour runs as written.

Each ``console`` block of the tour (between ``<!-- tour:start -->`` and ``<!-- tour:end -->``) holds ``$ irlb ...``
commands followed by what they print on stdout. The test runs every command in a fresh folder (with the
repository's ``docs/`` beside it, for the example data) and compares the output line by line with every number
masked: the numbers vary with the machine, the lines, keys and words must not. The library snippet of the tour is
run by ``tests/test_solver.py``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NUMBER = re.compile(r"[−-]?\d+(?:\.\d+)?(?:e[−+-]?\d+)?")


def tour_blocks() -> list[list[tuple[str, list[str]]]]:
    """The tour's console blocks: per block, (command, expected stdout lines) for each ``$`` line."""
    text = README.read_text()
    tour = text[text.index("<!-- tour:start -->"):text.index("<!-- tour:end -->")]
    blocks = []
    for body in re.findall(r"```console\n(.*?)```", tour, re.S):
        commands: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            else:
                commands[-1][1].append(line)
        blocks.append(commands)
    return blocks


def _masked(lines: list[str]) -> list[str]:
    """Numbers masked and runs of spaces collapsed (a right-aligned column shifts with a number's width)."""
    return [re.sub(r" +", " ", NUMBER.sub("<n>", line.rstrip())) for line in lines]


def test_the_readme_is_a_front_door_of_at_most_150_lines() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    first = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first.splitlines()] == [["make", "figures"], ["make", "test"]]
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"


def test_the_tour_has_commands() -> None:
    blocks = tour_blocks()
    assert len(blocks) >= 3 and all(commands and all(cmd.startswith("irlb ") for cmd, _ in commands)
                                    for commands in blocks)


@pytest.mark.parametrize("index", range(len(tour_blocks())))
def test_the_tour_runs_as_written(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    # Seconds each: IRL on the 25-state gridworld, 8 DPO steps of the 2-layer tiny SmolLM2, one tiny experiment.
    from irlb.main import main

    (tmp_path / "docs").symlink_to(ROOT / "docs")
    monkeypatch.chdir(tmp_path)
    for command, expected in tour_blocks()[index]:
        capsys.readouterr()
        assert main(shlex.split(command)[1:]) == 0, command
        printed = capsys.readouterr().out.rstrip("\n").splitlines()
        assert _masked(printed) == _masked(expected), f"`{command}` printed:\n" + "\n".join(printed)
