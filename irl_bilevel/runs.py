"""Run folders: config, provenance (seed, versions, git commit), per-step metrics, summary, checkpoints.

Files are written atomically (to a temporary name, then renamed), so a killed run never leaves a
half-written file; checkpoints are plain tensors and containers that ``torch.load(..., weights_only=True)``
reads back.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import zipfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)

_PACKAGES = (
    "torch",
    "torchopt",
    "higher",
    "numpy",
    "scipy",
    "gymnasium",
    "stable-baselines3",
    "transformers",
    "peft",
    "irl-bilevel",
)


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the source tree (with ``-dirty`` if it has uncommitted changes), or None outside git."""
    where = Path(path or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def provenance(seed: int | None) -> dict[str, Any]:
    return {
        "seed": seed,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def claim_output_folder(folder: Path | str, marker: str, command: str, *, overwrite: bool = False,
                        option: str = "--out") -> bool:
    """Check, before anything is read, trained or written, that ``command`` may write into ``folder``.

    * a missing folder, or an empty one: free (the command creates it when it writes); returns False;
    * a folder holding ``marker`` (the file that ``command`` writes last): an earlier output of the same command.
      Refused unless ``overwrite`` (the caller then replaces only its own files); returns True;
    * anything else (a file, a folder of other files, an unwritable place): a :class:`ValidationError` naming the
      folder. Nothing a command did not write is ever deleted or replaced.
    """
    from irl_bilevel.validation import ValidationError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValidationError(f"{option}: {folder} is a file; expected a folder for the {command} output (nothing "
                              f"was changed)")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / marker).is_file():
            raise ValidationError(f"{option}: {folder} is not empty and holds no {command} output ({marker}); choose a "
                                  f"new or empty folder (nothing was changed)")
        if not overwrite:
            raise ValidationError(f"{option}: {folder} already holds a {command} output; pass --overwrite to replace "
                                  f"its files (other files there are kept), or choose a new folder")
        _check_writable(folder, option)
        return True
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValidationError(f"{option}: {existing} is a file, so {folder} cannot be created (nothing was changed)")
    _check_writable(existing, option)
    return False


def _check_writable(folder: Path, option: str) -> None:
    from irl_bilevel.validation import ValidationError

    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValidationError(f"{option}: cannot write into {folder} (permission denied); choose another folder")


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


# What a damaged file of a run folder's is answered with: the run can always start over without it.
RESTART_HINT = ("delete it to restart the run from the beginning (or restore it from a backup); the folder's other "
                "files are kept")
# What torch.load raises on bytes that are not a checkpoint (empty: EOFError; cut short: OSError or RuntimeError;
# random: IndexError, UnpicklingError, ...; a pickled object: UnpicklingError under weights_only=True).
_UNREADABLE_CHECKPOINT = (pickle.UnpicklingError, EOFError, OSError, RuntimeError, ValueError, IndexError, KeyError,
                          TypeError, AttributeError, zipfile.BadZipFile)


def load_checkpoint(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The state dict saved by :func:`save_checkpoint` at ``path``, read with ``torch.load(weights_only=True)``: plain
    tensors and containers only, nothing of the file is run. A missing, unreadable or damaged file, one that holds
    no dict, or one without the ``required`` entries is a :class:`~irl_bilevel.validation.ValidationError` naming it
    and how to recover."""
    from irl_bilevel.validation import ValidationError

    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"checkpoint: {path} {'is a folder' if path.is_dir() else 'does not exist'}; expected a "
                              f"checkpoint.pt file written by a run")
    try:
        state = torch.load(path, weights_only=True)
    except _UNREADABLE_CHECKPOINT as error:
        reason = ": ".join([type(error).__name__, *str(error).strip().splitlines()[:1]])[:200]
        raise ValidationError(f"checkpoint: {path} is damaged or not a checkpoint of this library ({reason}); "
                              f"{RESTART_HINT}") from error
    if not isinstance(state, dict):
        raise ValidationError(f"checkpoint: {path} holds a {type(state).__name__}, not a checkpoint's dict of states; "
                              f"{RESTART_HINT}")
    missing = [key for key in required if key not in state]
    if missing:
        raise ValidationError(f"checkpoint: {path} lacks {missing}; it is not a checkpoint of this run; "
                              f"{RESTART_HINT}")
    return state


def read_metrics(path: Path, through_step: int | None = None) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl`` (none when the file is missing): one JSON object per line, each with an
    integer ``step``. A damaged file is a :class:`~irl_bilevel.validation.ValidationError` naming the line.

    ``through_step`` (a resume at the checkpoint's step): only the rows of steps ``1..through_step``, which must all
    be there, once each and in order (the solver writes the metrics before the checkpoint, so a complete run folder
    always has them); a file that lost rows is an error instead of a run whose history silently starts late."""
    from irl_bilevel.validation import ValidationError, read_text_file

    path = Path(path)
    hint = "; restore it, or delete it together with checkpoint.pt to restart the run from the beginning"
    text = read_text_file(path, "metrics", hint) if path.exists() else ""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValidationError(f"metrics: {path} line {number} is not valid JSON ({error.msg}){hint}") from error
        if not isinstance(row, dict) or isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int):
            raise ValidationError(f"metrics: {path} line {number} is not a row of metrics (a JSON object with an "
                                  f"integer step){hint}")
        rows.append(row)
    if through_step is not None:
        rows = [row for row in rows if row["step"] <= through_step]
        if [row["step"] for row in rows] != list(range(1, through_step + 1)):
            raise ValidationError(f"metrics: {path} holds {len(rows)} row(s) for the {through_step} step(s) the "
                                  f"checkpoint has run{hint}")
    return rows


def read_run_config(path: Path) -> dict[str, Any]:
    """The ``config`` object of a run folder's ``config.json`` at ``path`` (what a rerun compares its settings with);
    a damaged file is a :class:`~irl_bilevel.validation.ValidationError` naming it."""
    from irl_bilevel.validation import ValidationError, read_json_file

    hint = ("; it records the settings of the run in this folder: restore it, or choose a new output folder (or "
            "empty this one) to start a new run")
    record = read_json_file(path, "config.json", recovery=hint)
    if not isinstance(record.get("config"), dict):
        raise ValidationError(f"config.json: {path} holds no run settings (a \"config\" object){hint}")
    return record["config"]


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomic(
        path, "".join(json.dumps(r, sort_keys=True, default=_jsonable) + "\n" for r in rows).encode()
    )


def earlier_record(path: Path, scale: str, config: dict[str, Any], *,
                   differing: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The record an earlier run left at ``path`` (finished or not) with the same ``scale`` and the same ``config``
    except for the keys named in ``differing`` (e.g. ``("seeds",)``: a rerun with more seeds keeps the runs it
    shares with it); ``None`` when there is none (no file, other settings or an unreadable file)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("scale") != scale or not isinstance(record.get("config"), dict):
        return None
    ours = json.loads(json.dumps(config, default=_jsonable))
    if {k: v for k, v in record["config"].items() if k not in differing} != \
            {k: v for k, v in ours.items() if k not in differing}:
        return None
    return record


def unfinished_record(path: Path, scale: str, config: dict[str, Any]) -> dict[str, Any] | None:
    """The record an interrupted run left at ``path`` (``complete`` false, same ``scale`` and ``config``), so that a
    rerun keeps its finished seeds and starts where it stopped; ``None`` when there is none to resume (no file, a
    finished run, other settings or an unreadable file: the run then starts afresh and overwrites it)."""
    record = earlier_record(path, scale, config)
    return None if record is None or record.get("complete", True) else record
