"""The run folder of an LM training loop (``output_dir`` of :class:`llm.accelerated.LoopSettings`): metrics, TensorBoard
and checkpoints, and how a command's ``--out`` resumes an unfinished run.

Layout (every file is the loop's own; nothing else in the folder is touched)::

    output_dir/
      metrics.jsonl                 one JSON row per logged step (rows after a resumed checkpoint are dropped)
      tensorboard/                  TensorBoard events (accelerate's tracker; purged after the resumed step)
      checkpoints/run.json          the run record: the loop and a fingerprint of its settings, data and initial
                                    parameters, written when the run starts; a rerun must match it
      checkpoints/step-00000040/    the last checkpoint: tensors.safetensors (parameters, random-generator states,
                                    the loop's tensors such as its sampler), objects.pt (optimizer, schedule and
                                    scaler states: tensors and plain containers, read with ``weights_only=True``),
                                    state.json (history, evaluations, Python's random state)

A checkpoint is written into a hidden temporary folder and renamed into place (an atomic rename), then older ones
are removed: a run killed at any moment leaves the previous complete checkpoint. A folder whose ``checkpoints/run.json``
exists but that holds no command output (the marker file a command writes last, e.g. ``irl_bilevel_adapter.json``) is
an *unfinished run*: :func:`claim_training_output` lets the same command resume it without ``--overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from irl_bilevel.runs import claim_output_folder, load_checkpoint, read_metrics, save_checkpoint, write_json
from irl_bilevel.validation import ValidationError, read_json_file, read_safetensors

CHECKPOINTS = "checkpoints"
RUN_RECORD = "run.json"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
STEP_PREFIX = "step-"


@dataclass
class Checkpoint:
    """A loaded checkpoint: its ``step``, ``tensors`` (safetensors), ``objects`` (optimizer, schedule, scaler state
    dicts) and JSON ``state``."""

    folder: Path
    step: int
    tensors: dict[str, torch.Tensor]
    objects: dict[str, Any]
    state: dict[str, Any]


class RunFolder:
    """The files of one training run in ``root`` (module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / CHECKPOINTS

    # ---------------------------------------------------------------- run record
    def check_run(self, record: dict[str, Any]) -> None:
        """A run record already there must be ``record`` (the same loop, settings, data and initial parameters)."""
        if self.root.exists() and not self.root.is_dir():
            raise ValidationError(f"output_dir: {self.root} is a file; expected a folder")
        existing = read_run(self.root)
        if existing is not None and existing != record:
            differing = sorted(k for k in set(existing.get("fingerprint", {})) | set(record["fingerprint"])
                               if existing.get("fingerprint", {}).get(k) != record["fingerprint"].get(k))
            what = existing.get("loop") if existing.get("loop") != record["loop"] else ", ".join(differing)
            raise ValidationError(f"output_dir: {self.root} holds an unfinished run with other settings or data "
                                  f"({what}); rerun it with the same settings to resume it, or start over in a new "
                                  f"folder (or with --overwrite)")

    def write_run(self, record: dict[str, Any]) -> None:
        if read_run(self.root) is None:
            write_json(self.checkpoints / RUN_RECORD, record)

    # ---------------------------------------------------------------- checkpoints
    def save(self, step: int, tensors: dict[str, torch.Tensor], objects: dict[str, Any], state: dict[str, Any]
             ) -> Path:
        """Write the checkpoint of ``step`` atomically (module docstring) and remove the older ones."""
        from safetensors.torch import save_file

        self.checkpoints.mkdir(parents=True, exist_ok=True)
        name = f"{STEP_PREFIX}{step:08d}"
        temporary = Path(tempfile.mkdtemp(dir=self.checkpoints, prefix=f".{name}."))
        try:
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()},
                      str(temporary / "tensors.safetensors"))
            save_checkpoint(temporary / "objects.pt", objects)
            write_json(temporary / "state.json", state)
            for path in temporary.iterdir():
                _fsync(path)
            target = self.checkpoints / name
            if target.exists():  # this step's checkpoint from an earlier attempt (ours): replaced
                shutil.rmtree(target)
            os.rename(temporary, target)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        _fsync(self.checkpoints)
        for path in self.checkpoints.iterdir():
            if path != target and (path.name.startswith(STEP_PREFIX) or path.name.startswith(f".{STEP_PREFIX}")):
                shutil.rmtree(path, ignore_errors=True)
        return target

    def latest(self) -> Checkpoint | None:
        """The last complete checkpoint, loaded (tensors with safetensors, objects with ``weights_only=True``). A
        damaged file of it is a :class:`ValidationError` naming the file and how to start over without it."""
        if not self.checkpoints.is_dir():
            return None
        steps = sorted((int(p.name[len(STEP_PREFIX):]), p) for p in self.checkpoints.iterdir()
                       if p.is_dir() and p.name.startswith(STEP_PREFIX) and p.name[len(STEP_PREFIX):].isdigit())
        if not steps:
            return None
        step, folder = steps[-1]
        recovery = damaged_checkpoint_hint(folder)
        tensors = read_safetensors(folder / "tensors.safetensors", "checkpoint", recovery)
        objects = load_checkpoint(folder / "objects.pt", required=("optimizer", "scheduler"),
                                  recovery=recovery.removeprefix("; "))
        state = read_json_file(folder / "state.json", "checkpoint", recovery=recovery)
        random_state = state.get("python_random")
        if not isinstance(state.get("loop"), dict) or not (isinstance(random_state, list) and len(random_state) == 3):
            raise ValidationError(f"checkpoint: {folder / 'state.json'} is not a checkpoint's state (a JSON object "
                                  f"with the loop's state and python_random){recovery}")
        return Checkpoint(folder, step, tensors, objects, state)

    # ---------------------------------------------------------------- metrics
    def trim_metrics(self, step: int) -> None:
        """Keep the rows of ``metrics.jsonl`` up to ``step`` (those after it are redone by the resumed run)."""
        path = self.root / METRICS
        if path.exists():
            rows = [row for row in read_metrics(path) if row.get("step", 0) <= step]
            from irl_bilevel.runs import write_metrics

            write_metrics(path, rows)

    def append_metrics(self, row: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / METRICS, "a") as file:
            file.write(json.dumps(row, sort_keys=True) + "\n")


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def damaged_checkpoint_hint(folder: Path) -> str:
    """How to go on past a damaged checkpoint ``folder``: without it the rerun starts the run over."""
    return f"; delete {folder} to start the run over (the folder's other files are kept)"


def read_run(folder: Path | str) -> dict[str, Any] | None:
    """The run record of ``folder`` (``checkpoints/run.json``), or None when there is none. A damaged one is a
    :class:`ValidationError` naming it (the run's settings can no longer be checked, so it cannot resume)."""
    path = Path(folder) / CHECKPOINTS / RUN_RECORD
    if not path.exists():
        return None
    recovery = f"; delete {path.parent} to start the run over (the folder's other files are kept)"
    record = read_json_file(path, "run record", recovery=recovery)
    if not (isinstance(record.get("loop"), str) and isinstance(record.get("fingerprint"), dict)):
        raise ValidationError(f"run record: {path} is not a training run's record (a JSON object with loop and "
                              f"fingerprint){recovery}")
    return record


def remove_run_files(folder: Path | str) -> None:
    """Remove a run's own files from ``folder``: checkpoints, metrics.jsonl, tensorboard/ (nothing else)."""
    folder = Path(folder)
    shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)
    shutil.rmtree(folder / TENSORBOARD, ignore_errors=True)
    (folder / METRICS).unlink(missing_ok=True)


def remove_checkpoints(folder: Path | str) -> None:
    """After a command wrote its output (marker last): the checkpoints are no longer needed."""
    shutil.rmtree(Path(folder) / CHECKPOINTS, ignore_errors=True)


def claim_training_output(folder: Path | str, marker: str, command: str, loop: str, *, overwrite: bool = False
                          ) -> Literal["new", "resume", "replace"]:
    """:func:`irl_bilevel.runs.claim_output_folder` for a training command, which also accepts an unfinished run of
    the same loop (a run record and no ``marker``): without ``overwrite`` it resumes (``"resume"``; the loop checks
    that the settings and data match), with ``overwrite`` it starts over (``"replace"``). An earlier complete output
    is ``"replace"`` with ``overwrite`` (refused without); a missing or empty folder is ``"new"``. Nothing is removed
    here: on ``"replace"`` the caller removes the earlier run's files (:func:`remove_run_files`) once its inputs are
    read and checked, so that a failed start leaves the folder as it was."""
    folder = Path(folder)
    record = read_run(folder) if folder.is_dir() else None
    if record is not None and not (folder / marker).is_file():
        if record.get("loop") != loop:
            raise ValidationError(f"--out: {folder} holds an unfinished {record.get('loop')} run, not a {command} "
                                  f"run; choose another folder (nothing was changed)")
        return "replace" if overwrite else "resume"
    return "replace" if claim_output_folder(folder, marker, command, overwrite=overwrite) else "new"
