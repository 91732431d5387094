"""Provenance of a result: a dirty tree's diff is kept with its SHA-256 and restores the tree; compared libraries'
versions are recorded; the benchmarks use the one provenance helper; a resumed run records the provenance of the one
it resumes."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

from irl_bilevel import runs

ROOT = Path(__file__).resolve().parents[1]


def _git(folder: Path, *arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=folder, check=True, capture_output=True, text=True).stdout


def _repository(folder: Path) -> Path:
    folder.mkdir()
    _git(folder, "init", "-q")
    _git(folder, "config", "user.email", "test@example.com")
    _git(folder, "config", "user.name", "test")
    (folder / "code.py").write_text("x = 1\n")
    (folder / "data.bin").write_bytes(bytes(range(256)))
    _git(folder, "add", ".")
    _git(folder, "commit", "-q", "-m", "first")
    return folder


def test_clean_tree_has_no_diff(tmp_path: Path) -> None:
    repository = _repository(tmp_path / "repo")
    state = runs.git_state(repository)
    assert state is not None
    assert state["commit"] == _git(repository, "rev-parse", "HEAD").strip()
    assert not state["dirty"] and "diff" not in state and state["untracked"] == []
    assert runs.git_commit(repository) == state["commit"]


def test_dirty_tree_diff_is_hashed_and_restores_the_tree(tmp_path: Path) -> None:
    repository = _repository(tmp_path / "repo")
    (repository / "code.py").write_text("x = 2\n")
    (repository / "data.bin").write_bytes(bytes(reversed(range(256))))
    (repository / "new.txt").write_text("not added\n")
    _git(repository, "add", "data.bin")  # staged changes count as well as unstaged ones
    state = runs.git_state(repository)
    assert state is not None and state["dirty"]
    assert state["diff_sha256"] == hashlib.sha256(state["diff"].encode()).hexdigest()
    assert state["untracked"] == ["new.txt"]
    assert runs.git_commit(repository) == state["commit"] + "-dirty"
    # The recorded diff applied to a clean checkout of the commit gives back the tree that ran.
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(repository), str(clone))
    (tmp_path / "run.diff").write_text(state["diff"])
    _git(clone, "apply", str(tmp_path / "run.diff"))
    assert (clone / "code.py").read_text() == "x = 2\n"
    assert (clone / "data.bin").read_bytes() == bytes(reversed(range(256)))


def test_outside_git_there_is_no_state(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # the temp folder may be inside a checkout
    assert runs.git_state(tmp_path) is None and runs.git_commit(tmp_path) is None


def test_provenance_records_the_diff_and_the_compared_libraries(monkeypatch) -> None:
    state = {"commit": "a" * 40, "dirty": True, "untracked": ["notes.txt"], "diff": "diff --git a/x b/x\n",
             "diff_sha256": "b" * 64}
    monkeypatch.setattr(runs, "git_state", lambda path=None: state)
    record = runs.provenance(3)
    assert record["seed"] == 3 and record["git_commit"] == "a" * 40 + "-dirty"
    assert record["git_diff"] == {"sha256": "b" * 64, "text": "diff --git a/x b/x\n"}
    assert record["git_untracked"] == ["notes.txt"]
    monkeypatch.setattr(runs, "git_state", lambda path=None: {**state, "dirty": False, "untracked": []})
    assert "git_diff" not in runs.provenance(3) and "git_untracked" not in runs.provenance(3)
    # Every library a benchmark compares against is looked up (recorded when installed).
    for package in ("trl", "textarena", "imitation", "seals", "torch", "transformers", "stable-baselines3"):
        assert package in runs._PACKAGES
    versions = runs.package_versions()
    assert versions["torch"] and versions["textarena"]  # both installed by `make install`


def test_benchmarks_use_the_shared_provenance_helpers() -> None:
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        text = script.read_text()
        assert not re.search(r'"rev-parse"|def _git\b|def _versions\b', text), \
            f"{script.name}: has its own git or versions helper; use irl_bilevel.runs.git_state/package_versions"


def test_the_results_page_names_every_result_file_written_from_a_dirty_tree() -> None:
    """The results page's note lists exactly the committed result files from a dirty tree whose diff was not kept."""
    from irlb.paper.provenance import dirty_without_diff, result_trees

    page = (ROOT / "docs" / "results.md").read_text()
    note = page[page.index("<!-- dirty-tree:start -->"):page.index("<!-- dirty-tree:end -->")]
    folders = [ROOT / "results", ROOT / "benchmarks" / "results"]
    dirty = dirty_without_diff(folders)
    listed = set(re.findall(r"`((?:benchmarks/)?results/[\w.-]+\.json)`", note))
    assert listed == {str(tree.path.relative_to(ROOT)) for tree in dirty}
    partly = {str(tree.path.relative_to(ROOT)) for tree in dirty if tree.status.startswith("partly")}
    assert partly == set(re.findall(r"`([\w/.-]+\.json)` \(in part\)", note))
    assert f"{len(dirty)} of the {len(result_trees(folders))} result files" in " ".join(note.split())


def test_result_tree_states_in_both_formats(tmp_path: Path) -> None:
    from irlb.paper.provenance import ResultTree, result_trees

    clean = "c" * 40
    files = {
        "clean": {"provenance": {"git_commit": clean}},
        "saved": {"provenance": {"git_commit": clean + "-dirty", "git_diff": {"sha256": "d" * 64, "text": "x"}}},
        "kept": {"provenance": {"git_commit": clean}, "kept_runs_from": {"provenance": {"git_commit": "e" * 40 +
                                                                                        "-dirty"}}},
        "bench": {"git": {"commit": clean, "dirty": True, "diff_sha256": "f" * 64, "diff": "x"}},
        "old_bench": {"git": {"commit": clean, "dirty": True}},
        "none": {"scale": "tiny"},
    }
    for name, record in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    trees: dict[str, ResultTree] = {tree.path.stem: tree for tree in result_trees([tmp_path])}
    assert {name: tree.status for name, tree in trees.items()} == {
        "clean": "clean", "saved": "dirty tree, diff saved", "kept": "partly dirty tree, diff not saved",
        "bench": "dirty tree, diff saved", "old_bench": "dirty tree, diff not saved", "none": "no provenance"}
    assert trees["kept"].commits == [clean, "e" * 40]


def test_resumable_record_resumes_only_an_unfinished_run_of_the_same_settings(tmp_path: Path) -> None:
    path, config = tmp_path / "run.json", {"steps": 3}
    fresh, previous = runs.resumable_record(path, "run", "tiny", config, 5, extra=[1])
    assert previous is None and list(fresh) == ["name", "scale", "config", "provenance", "torch_threads", "extra"]
    assert fresh["provenance"]["seed"] == 5 and fresh["extra"] == [1]
    runs.write_json(path, {**fresh, "complete": False, "done": [0]})
    record, previous = runs.resumable_record(path, "run", "tiny", config, 5)
    assert previous is not None and previous["done"] == [0]
    assert record["resumed_from"] == fresh["provenance"] and "done" not in record
    for other in ({"scale": "quick"}, {"config": {"steps": 4}}, {"complete": True}):
        runs.write_json(path, {**fresh, "complete": False, **other})
        record, previous = runs.resumable_record(path, "run", "tiny", config, 5)
        assert previous is None and "resumed_from" not in record, other
