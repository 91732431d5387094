"""Tabular MDPs and demonstrations as ``.npz`` archives (the format is described in ``docs/npz_format.md``).

Archives are read with ``np.load(path, allow_pickle=False)``: only plain numeric (and string) arrays, no
pickled objects. Unknown array names are rejected, missing required ones are named, and every array is
validated (shapes, dtypes, NaNs, probabilities summing to one) with a :class:`ValidationError` naming it.
"""

from __future__ import annotations

import os
import zipfile
from typing import Any

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

PathLike = str | os.PathLike


# ---------------------------------------------------------------------- reading helpers
def _read_npz(path: PathLike, allowed: tuple[str, ...], where: str) -> dict[str, np.ndarray]:
    """All arrays of the archive at ``path`` (read eagerly), after rejecting unknown names."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
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
                raise ValidationError(f"{key}: cannot read this array without pickle ({error})") from error
    return arrays


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
    arrays = _read_npz(path, MDP_KEYS, where)
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
    arrays = _read_npz(path, DEMONSTRATION_KEYS, where)
    missing = [key for key in ("observations", "actions") if key not in arrays]
    if missing:
        raise ValidationError(f"{where}: missing required array(s) {missing}")
    observations = _numeric(arrays, "observations", integer=True)
    actions = _numeric(arrays, "actions", integer=True)
    if observations.ndim != 2:
        raise ValidationError(f"observations: expected shape [N, T], got {list(observations.shape)}")
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
