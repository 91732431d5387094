"""Tabular MDPs and demonstrations as ``.npz`` archives (the format is described in ``docs/npz_format.md``).

Archives are read with ``np.load(path, allow_pickle=False)``: only plain numeric (and string) arrays, no
pickled objects. Unknown array names are rejected, missing required ones are named, and every array is
validated (shapes, dtypes, NaNs, probabilities summing to one) with a :class:`ValidationError` naming the archive
and the array. Three kinds: tabular MDPs (:func:`load_mdp_npz`), tabular demonstrations of state and action indices
(:func:`load_demonstrations_npz`) and gymnasium demonstrations of observation vectors
(:func:`load_rollout_demonstrations_npz`, what ``irlb gym-irl --set demonstrations_file=...`` reads).
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from irl_bilevel.feedback import Demonstrations, Trajectories
from irl_bilevel.tabular import TabularMDP
from irl_bilevel.validation import ValidationError, reject_unknown_keys

MDP_KEYS = (
    "transitions",
    "successors",
    "successor_probabilities",
    "start",
    "discount",
    "horizon",
    "state_features",
    "state_action_features",
    "true_reward",
    "name",
)
DEMONSTRATION_KEYS = ("observations", "actions", "lengths")
ROLLOUT_KEYS = ("observations", "actions", "lengths", "terminated", "final_observations", "returns")

if TYPE_CHECKING:
    from classic_rl.experts import RolloutDemonstrations

PathLike = str | os.PathLike


# ---------------------------------------------------------------------- reading helpers
def _read_npz(path: PathLike, allowed: tuple[str, ...], where: str) -> dict[str, np.ndarray]:
    """All arrays of the archive at ``path`` (read eagerly), after rejecting unknown names."""
    if not os.path.exists(path):
        raise ValidationError(f"{where}: the file does not exist")
    if os.path.isdir(path):
        raise ValidationError(f"{where}: is a folder; expected an .npz file")
    with open(path, "rb") as handle:  # closed here whatever np.load raises (it leaks its own handle on errors)
        try:
            loaded = np.load(handle, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise ValidationError(f"{where}: cannot read it as an .npz archive of plain arrays ({error})") from error
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValidationError(f"{where}: expected an .npz archive of named arrays, got a single .npy array")
        with loaded as archive:
            reject_unknown_keys(archive.files, allowed, where)
            arrays = {}
            for key in archive.files:
                try:
                    arrays[key] = archive[key]
                except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
                    raise ValidationError(f"{where}: {key}: cannot read this array without pickle, or it is damaged "
                                          f"({error})") from error
    return arrays


@contextlib.contextmanager
def _naming(where: str) -> Iterator[None]:
    """Prefix the :class:`ValidationError` of an array's check with the archive it came from."""
    try:
        yield
    except ValidationError as error:
        if str(error).startswith(where):
            raise
        raise ValidationError(f"{where}: {error}") from error


def _numeric(arrays: dict[str, np.ndarray], key: str, integer: bool = False) -> np.ndarray:
    array = arrays[key]
    if integer:
        if not np.issubdtype(array.dtype, np.integer):
            raise ValidationError(f"{key}: expected an integer array, got dtype {array.dtype}")
    elif not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValidationError(f"{key}: expected a numeric array, got dtype {array.dtype}")
    elif np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ValidationError(f"{key}: contains {int((~np.isfinite(array)).sum())} NaN or infinite value(s)")
    return array


def _scalar(arrays: dict[str, np.ndarray], key: str, integer: bool = False) -> float | int:
    array = _numeric(arrays, key, integer=False)
    if array.size != 1 or array.ndim > 1:
        raise ValidationError(f"{key}: expected a scalar, got an array of shape {list(array.shape)}")
    value = array.reshape(()).item()
    if integer:
        if float(value) != int(value):
            raise ValidationError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    return float(value)


def _write_npz(path: PathLike, arrays: dict[str, Any]) -> None:
    """Write exactly to ``path`` (``np.savez`` would append ``.npz`` to a name lacking it)."""
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


# ---------------------------------------------------------------------- MDPs
def save_mdp_npz(path: PathLike, mdp: TabularMDP) -> None:
    """Write ``mdp`` to ``path`` (dense ``transitions`` or the sparse ``successors`` pair, as stored)."""
    if not isinstance(mdp, TabularMDP):
        raise ValidationError(f"mdp: expected a TabularMDP, got {type(mdp).__name__}")
    arrays: dict[str, Any] = {"start": _to_numpy(mdp.start), "discount": np.float64(mdp.discount)}
    if mdp.transitions is not None:
        arrays["transitions"] = _to_numpy(mdp.transitions)
    else:
        assert mdp.successors is not None and mdp.successor_probabilities is not None
        arrays["successors"] = _to_numpy(mdp.successors).astype(np.int64)
        arrays["successor_probabilities"] = _to_numpy(mdp.successor_probabilities)
    if mdp.horizon is not None:
        arrays["horizon"] = np.int64(mdp.horizon)
    for key in ("state_features", "state_action_features", "true_reward"):
        value = getattr(mdp, key)
        if value is not None:
            arrays[key] = _to_numpy(value)
    arrays["name"] = np.str_(mdp.name)
    _write_npz(path, arrays)


def load_mdp_npz(path: PathLike) -> TabularMDP:
    """Read a :class:`TabularMDP` written by :func:`save_mdp_npz` (or by hand, see ``docs/npz_format.md``).

    Floating arrays become tensors of torch's default dtype, as ``TabularMDP`` does for every input.
    """
    where = f"mdp archive {os.fspath(path)!r}"
    with _naming(where):
        return _mdp_from_arrays(_read_npz(path, MDP_KEYS, where), where)


def _mdp_from_arrays(arrays: dict[str, np.ndarray], where: str) -> TabularMDP:
    missing = [key for key in ("start", "discount") if key not in arrays]
    dense = "transitions" in arrays
    sparse = [key for key in ("successors", "successor_probabilities") if key in arrays]
    if not dense and not sparse:
        missing.append("transitions (or successors + successor_probabilities)")
    elif not dense and len(sparse) == 1:
        missing.append("successor_probabilities" if sparse == ["successors"] else "successors")
    if missing:
        raise ValidationError(f"{where}: missing required array(s) {missing}")
    if dense and sparse:
        raise ValidationError(
            f"{where}: transitions: give either dense `transitions` or `successors` + "
            f"`successor_probabilities`, not both"
        )
    kwargs: dict[str, Any] = {
        "start": torch.from_numpy(_numeric(arrays, "start")),
        "discount": _scalar(arrays, "discount"),
    }
    if "horizon" in arrays:
        kwargs["horizon"] = _scalar(arrays, "horizon", integer=True)
    if dense:
        kwargs["transitions"] = torch.from_numpy(_numeric(arrays, "transitions"))
    else:
        kwargs["successors"] = torch.from_numpy(_numeric(arrays, "successors", integer=True).astype(np.int64))
        kwargs["successor_probabilities"] = torch.from_numpy(_numeric(arrays, "successor_probabilities"))
    for key in ("state_features", "state_action_features", "true_reward"):
        if key in arrays:
            kwargs[key] = torch.from_numpy(_numeric(arrays, key))
    if "name" in arrays:
        name = arrays["name"]
        if name.dtype.kind != "U" or name.size != 1:
            raise ValidationError(f"name: expected a single string, got dtype {name.dtype}, shape {list(name.shape)}")
        kwargs["name"] = str(name.reshape(()).item())
    return TabularMDP(**kwargs)


# ---------------------------------------------------------------------- demonstrations
def save_demonstrations_npz(path: PathLike, demonstrations: Trajectories) -> None:
    """Write padded ``observations [N, T]``, ``actions [N, T]`` and ``lengths [N]`` to ``path``."""
    if not isinstance(demonstrations, Trajectories):
        raise ValidationError(f"demonstrations: expected Demonstrations, got {type(demonstrations).__name__}")
    observations, actions = demonstrations.observations, demonstrations.actions
    for key, value in (("observations", observations), ("actions", actions)):
        if value.is_floating_point() or value.dim() != 2:
            raise ValidationError(
                f"{key}: the npz format holds integer state/action indices of shape [N, T]; "
                f"got dtype {value.dtype}, shape {list(value.shape)}"
            )
    _write_npz(
        path,
        {
            "observations": _to_numpy(observations).astype(np.int64),
            "actions": _to_numpy(actions).astype(np.int64),
            "lengths": _to_numpy(demonstrations.lengths).astype(np.int64),
        },
    )


def load_demonstrations_npz(
    path: PathLike, num_states: int | None = None, num_actions: int | None = None
) -> Demonstrations:
    """Read demonstrations: integer ``observations [N, T]`` (state indices), ``actions [N, T]`` and optional
    ``lengths [N]`` (all ``T`` when absent). ``num_states``/``num_actions`` bound the indices when given."""
    where = f"demonstrations archive {os.fspath(path)!r}"
    with _naming(where):
        return _demonstrations_from_arrays(_read_npz(path, DEMONSTRATION_KEYS, where), where, num_states, num_actions)


def _demonstrations_from_arrays(arrays: dict[str, np.ndarray], where: str, num_states: int | None,
                                num_actions: int | None) -> Demonstrations:
    missing = [key for key in ("observations", "actions") if key not in arrays]
    if missing:
        raise ValidationError(f"{where}: missing required array(s) {missing}")
    observations = _numeric(arrays, "observations", integer=True)
    actions = _numeric(arrays, "actions", integer=True)
    if observations.ndim != 2:
        raise ValidationError(f"observations: expected shape [N, T], got {list(observations.shape)}")
    if observations.shape[0] == 0:
        raise ValidationError("observations: the archive holds no trajectories (N = 0); expected at least one")
    if actions.shape != observations.shape:
        raise ValidationError(
            f"actions: expected shape {list(observations.shape)} (as observations), got {list(actions.shape)}"
        )
    if "lengths" in arrays:
        lengths = _numeric(arrays, "lengths", integer=True)
    else:
        lengths = np.full(observations.shape[0], observations.shape[1], dtype=np.int64)
    return Demonstrations(
        torch.from_numpy(observations.astype(np.int64)),
        torch.from_numpy(actions.astype(np.int64)),
        torch.from_numpy(lengths.astype(np.int64)),
        num_states=num_states,
        num_actions=num_actions,
    )


# ---------------------------------------------------------------------- gymnasium demonstrations
def load_rollout_demonstrations_npz(path: PathLike) -> RolloutDemonstrations:
    """Demonstrations of a gymnasium environment (``docs/npz_format.md``): ``observations [N, T, *obs]`` (numbers),
    ``actions [N, T]`` (integers: discrete actions) or ``[N, T, *act]`` (floats: continuous), ``lengths [N]``, and
    optionally ``terminated [N]`` (booleans; all False when absent: every episode truncated), ``final_observations
    [N, *obs]`` and ``returns [N]`` (the true return of each episode; only the expert-return report reads it).
    Observations and continuous actions become float32 tensors, discrete actions int64."""
    from classic_rl.experts import RolloutDemonstrations

    where = f"demonstrations archive {os.fspath(path)!r}"
    with _naming(where):
        arrays = _read_npz(path, ROLLOUT_KEYS, where)
        missing = [key for key in ("observations", "actions", "lengths") if key not in arrays]
        if missing:
            raise ValidationError(f"missing required array(s) {missing}")
        observations = _numeric(arrays, "observations")
        if observations.ndim < 2:
            raise ValidationError(f"observations: expected shape [N, T, *obs], got {list(observations.shape)}")
        if observations.shape[0] == 0:
            raise ValidationError("observations: the archive holds no episodes (N = 0); expected at least one")
        actions = arrays["actions"]
        discrete = np.issubdtype(actions.dtype, np.integer)
        actions = _numeric(arrays, "actions", integer=discrete)
        lengths = _numeric(arrays, "lengths", integer=True)
        optional: dict[str, torch.Tensor | None] = {"terminated": None, "final_observations": None, "returns": None}
        if "terminated" in arrays:
            terminated = arrays["terminated"]
            if not (terminated.dtype == np.bool_ or (np.issubdtype(terminated.dtype, np.integer)
                                                    and np.isin(terminated, (0, 1)).all())):
                raise ValidationError(f"terminated: expected booleans (or 0/1), got dtype {terminated.dtype}")
            optional["terminated"] = torch.from_numpy(terminated.astype(np.bool_))
        if "final_observations" in arrays:
            optional["final_observations"] = torch.from_numpy(
                _numeric(arrays, "final_observations").astype(np.float32))
        if "returns" in arrays:
            optional["returns"] = torch.from_numpy(_numeric(arrays, "returns").astype(np.float64))
        num_actions = None
        if discrete:  # the number of actions the demonstrations use (the env may have more; gym-irl checks)
            if actions.shape != observations.shape[:2]:
                raise ValidationError(f"actions: integer (discrete) actions need shape {list(observations.shape[:2])} "
                                      f"([N, T] as observations), got {list(actions.shape)}")
            if lengths.shape != (len(actions),) or lengths.min() < 1 or lengths.max() > actions.shape[1]:
                raise ValidationError(f"lengths: expected {len(actions)} lengths in [1, {actions.shape[1]}], got "
                                      f"shape {list(lengths.shape)}, range [{lengths.min()}, {lengths.max()}]")
            used = actions[np.arange(actions.shape[1])[None, :] < lengths[:, None]]
            if int(used.min()) < 0:
                raise ValidationError(f"actions: expected discrete action indices >= 0, got {int(used.min())}")
            num_actions = int(used.max()) + 1
        return RolloutDemonstrations(
            torch.from_numpy(observations.astype(np.float32)),
            torch.from_numpy(actions.astype(np.int64 if discrete else np.float32)),
            torch.from_numpy(lengths.astype(np.int64)), None, num_actions, optional["terminated"],
            optional["final_observations"], optional["returns"])
