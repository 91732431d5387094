"""Which source tree each result file came from: the commits it records and whether any part of it was written from
a tree with uncommitted changes.

A result file may hold several provenance records: its own, and those of the runs it kept or resumed from, the
sweeps it merged, the parts it reran (``resumed_from``, ``kept_runs_from``, ``merged_from``, ``reruns``). Two
formats exist: ``irl_bilevel.runs.provenance`` (``git_commit``, ``-dirty`` suffixed, with ``git_diff`` since the
diff is saved) and the benchmarks' ``git`` block (``commit``, ``dirty``, ``diff_sha256``). A file counts as written
from a dirty tree when any of its records is dirty; ``diff saved`` says whether every dirty record kept the diff
(so the tree that ran can be restored). Run ``python -m irlb.paper.provenance [FOLDER ...]`` for the list.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from irl_bilevel.runs import TreeRecord, tree_records


@dataclass(frozen=True)
class ResultTree:
    """The source trees behind one result file."""

    path: Path
    records: tuple[TreeRecord, ...]

    @property
    def commits(self) -> list[str]:
        return list(dict.fromkeys(r.commit for r in self.records if r.commit))

    @property
    def dirty(self) -> bool:
        """True when any part of the file was written from a tree with uncommitted changes."""
        return any(r.dirty for r in self.records)

    @property
    def diff_saved(self) -> bool:
        """True when every dirty record kept its diff (the tree that ran can be restored)."""
        return all(r.diff_sha256 for r in self.records if r.dirty)

    @property
    def status(self) -> str:
        if not self.records:
            return "no provenance"
        if not self.dirty:
            return "clean"
        parts = "" if all(r.dirty for r in self.records) else "partly "
        return f"{parts}dirty tree, diff {'saved' if self.diff_saved else 'not saved'}"


def result_trees(folders: Iterable[Path]) -> list[ResultTree]:
    """The provenance of every ``*.json`` result file in ``folders`` (not recursive), sorted by path."""
    trees = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            trees.append(ResultTree(path, tuple(tree_records(json.loads(path.read_text())))))
    return trees


def dirty_without_diff(folders: Iterable[Path]) -> list[ResultTree]:
    """The result files written, wholly or in part, from a dirty tree whose diff was not saved."""
    return [tree for tree in result_trees(folders) if tree.dirty and not tree.diff_saved]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="List the result files with the source trees they were written from.")
    parser.add_argument("folders", nargs="*", type=Path, default=[Path("results"), Path("benchmarks/results")])
    args = parser.parse_args(argv)
    trees = result_trees(args.folders)
    for tree in trees:
        print(f"{tree.path}: {tree.status}; commit {', '.join(c[:12] for c in tree.commits) or 'unknown'}")
    dirty = [tree for tree in trees if tree.dirty]
    print(f"{len(dirty)} of {len(trees)} files written (wholly or in part) from a dirty tree, "
          f"{sum(1 for tree in dirty if not tree.diff_saved)} of them without the diff")


if __name__ == "__main__":
    main()
