"""Typed configs of the reproduction experiments: a scale's settings, then a JSON file, then ``key=value`` overrides.

Every experiment of :data:`irlb.registry.EXPERIMENTS` exposes ``CONFIG`` (a frozen
:class:`~irl_bilevel.config.Config` dataclass), ``SCALES`` (scale name -> the settings of that scale)
and ``run(scale, results_dir, seed=0, progress=True, config=None)``. A config file or override names only the
settings it changes; nested sections merge (``gridworld.size=6``); unknown keys and wrongly typed values are a
:class:`~irl_bilevel.validation.ValidationError` naming the key and the expected type.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from irl_bilevel.config import Config, load_json_object, parse_overrides, scale_config
from irl_bilevel.validation import ValidationError
from irlb.registry import EXPERIMENTS


def experiment_names() -> list[str]:
    return list(EXPERIMENTS)


def experiment_module(name: str) -> ModuleType:
    """The module of experiment ``name`` (a :class:`ValidationError` listing the known ones otherwise)."""
    if name not in EXPERIMENTS:
        raise ValidationError(f"experiment: unknown experiment {name!r}; expected one of {sorted(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name][0])


def experiment_config(name: str, scale: str, config_file: str | Path | None = None,
                      overrides: Iterable[str] | dict[str, Any] = (), module: ModuleType | None = None
                      ) -> Config:
    """The typed config of ``name`` at ``scale``, updated by ``config_file`` (a JSON object of settings) and
    then by ``overrides`` (``"key=json"`` strings or an already parsed ``{dotted key: value}`` dict)."""
    module = module or experiment_module(name)
    config = scale_config(_config_class(module, name), module.SCALES, scale, name)
    if config_file is not None:
        config = config.updated(load_json_object(config_file), where=name)
    changes = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    return config.updated(changes, where=name)


def _config_class(module: ModuleType, name: str) -> type[Config]:
    config_class = getattr(module, "CONFIG", None)
    if config_class is None:
        raise ValidationError(f"{name}: the experiment declares no typed config (CONFIG in {module.__name__}), "
                              f"so its settings cannot be changed or swept")
    return config_class


def reproduce_configs(names: Sequence[str], scale: str, config_file: str | Path | None = None,
                      overrides: Iterable[str] = ()) -> dict[str, Config | None]:
    """Configs of the experiments ``names`` for ``irlb reproduce``: the file holds ``{experiment: {settings}}``,
    each override reads ``experiment.key=value``; naming an experiment outside ``names`` is an error. An
    experiment without a ``CONFIG`` gets None (it runs with its scale's settings and cannot be changed)."""
    known = experiment_names()
    per_file: dict[str, Any] = load_json_object(config_file) if config_file is not None else {}
    per_set: dict[str, dict[str, Any]] = {}
    for key, value in parse_overrides(overrides).items():
        experiment, _, setting = key.partition(".")
        if not setting:
            raise ValidationError(f"--set: expected experiment.key=value (e.g. loss_sweep.seeds=5), got {key!r}")
        per_set.setdefault(experiment, {})[setting] = value
    for source, named in (("--config", per_file), ("--set", per_set)):
        unknown = sorted(set(named) - set(known))
        if unknown:
            raise ValidationError(f"{source}: unknown experiment(s) {unknown}; expected some of {sorted(known)}")
        unselected = sorted(set(named) - set(names))
        if unselected:
            raise ValidationError(f"{source}: settings for {unselected}, which this run does not include "
                                  f"(selected: {list(names)})")
    configs: dict[str, Config | None] = {}
    for name in names:
        module = experiment_module(name)
        if getattr(module, "CONFIG", None) is None and name not in per_file and name not in per_set:
            configs[name] = None
            continue
        config_class = _config_class(module, name)
        config = scale_config(config_class, module.SCALES, scale, name)
        if name in per_file:
            config = config.updated(per_file[name], where=name) if isinstance(per_file[name], dict) else \
                config_class.from_dict(per_file[name], name)  # not a dict: from_dict names the error
        configs[name] = config.updated(per_set.get(name, {}), where=name)
    return configs
