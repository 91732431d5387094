"""Typed, frozen experiment configs filled from dicts, JSON files and ``key=value`` overrides.

An experiment declares its settings as a frozen dataclass deriving from :class:`ExperimentConfig`, one typed
field per setting (nested sections are nested :class:`ExperimentConfig` dataclasses). Values arrive as JSON
(a file, or the JSON text after ``=`` in ``key=value``; a value that is not valid JSON is taken as a string),
are checked against the field types, and the config is rebuilt, so that a typo or a wrong type fails before
anything runs, with a :class:`~irl_bilevel.validation.ValidationError` naming the dotted key and the
expected type.

Supported field types: ``bool``, ``int``, ``float`` (an int is accepted and converted), ``str``, ``None``,
``X | Y``, ``Literal[...]``, ``list[T]``, ``tuple[T, ...]`` (a JSON list is converted; prefer it, the config
is then immutable), ``dict[str, T]``, ``Any`` and nested configs. :meth:`ExperimentConfig.to_dict` gives plain
JSON-ready dicts and lists back: what the experiments read and what result files record.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union

from irl_bilevel.validation import ValidationError, read_json_file, reject_unknown_keys

C = TypeVar("C", bound="ExperimentConfig")
D = TypeVar("D")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Base class of typed experiment configs; subclasses are ``@dataclass(frozen=True)`` with typed fields."""

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Field name -> resolved type annotation, in declaration order."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any], where: str = "config") -> C:
        """Validate ``values`` (every field without a default must be present; no other key) into a config."""
        if not isinstance(values, Mapping):
            raise ValidationError(f"{where}: expected a JSON object of settings, got {type(values).__name__}")
        types_ = cls.field_types()
        reject_unknown_keys(values, types_, where)
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise ValidationError(f"{where}: missing key(s) {missing}")
        return cls(**{key: check_value(value, types_[key], f"{where}.{key}") for key, value in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-ready dicts and lists (tuples become lists), field order kept."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def updated(self: C, changes: Mapping[str, Any], where: str = "config") -> C:
        """A copy with ``changes`` applied and re-validated. Keys may be dotted (``"gridworld.size"``); a dict
        given for a nested config section updates only the keys it names (a ``dict`` field is replaced)."""
        values = self.to_dict()
        for key, value in changes.items():
            _assign(values, type(self), key.split("."), value, where)
        return type(self).from_dict(values, where)

    @classmethod
    def describe(cls) -> list[tuple[str, str]]:
        """``(dotted field name, type)`` of every leaf setting, for ``irlb config --types``."""
        rows: list[tuple[str, str]] = []
        for name, annotation in cls.field_types().items():
            if _is_config(annotation):
                rows += [(f"{name}.{sub}", kind) for sub, kind in annotation.describe()]
            else:
                rows.append((name, type_name(annotation)))
        return rows


def parse_overrides(overrides: Iterable[str], where: str = "--set") -> dict[str, Any]:
    """``["a.b=3", "c=[1, 2]", "d=text"]`` -> ``{"a.b": 3, "c": [1, 2], "d": "text"}`` (values parsed as JSON;
    text that is not JSON stays a string, so ``env_id=CartPole-v1`` needs no quotes)."""
    parsed: dict[str, Any] = {}
    for override in overrides:
        key, separator, raw = override.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ValidationError(f"{where}: expected key=value, got {override!r}")
        try:
            parsed[key] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key] = raw
    return parsed


def load_json_object(path: str | Path, where: str = "--config") -> dict[str, Any]:
    """Read a JSON file holding one object; a missing, unreadable or non-UTF-8 file, bad JSON or another JSON value
    is a :class:`ValidationError` naming ``where`` and the file (:func:`~irl_bilevel.validation.read_json_file`)."""
    return read_json_file(path, where)


def dataclass_from_sources(cls: type[D], config_file: str | Path | None = None,
                           overrides: Iterable[str] | None = None) -> D:
    """A plain (run-level) dataclass config from a JSON file of its fields, then ``key=value`` overrides
    (:func:`parse_overrides`); a key that is not a field is a :class:`ValidationError`. Type and range checks are
    the dataclass's own (``__post_init__``)."""
    values: dict[str, Any] = {} if config_file is None else load_json_object(config_file)
    values.update(parse_overrides(overrides or []))
    reject_unknown_keys(values, [f.name for f in dataclasses.fields(cls)], "config")  # type: ignore[arg-type]
    return cls(**values)


def scale_settings(config_class: type[C], scales: Mapping[str, Mapping[str, Any]], scale: str, experiment: str,
                   config: C | None = None) -> dict[str, Any]:
    """What an experiment's ``run(scale, ..., config=None)`` reads: the validated settings of ``scale``, or of
    ``config`` when one is given (``scale`` is then only the label its result records)."""
    if config is not None:
        if not isinstance(config, config_class):
            raise ValidationError(f"config: expected a {config_class.__name__} for {experiment}, "
                                  f"got {type(config).__name__}")
        return config.to_dict()
    return scale_config(config_class, scales, scale, experiment).to_dict()


def scale_config(config_class: type[C], scales: Mapping[str, Mapping[str, Any]], scale: str, experiment: str) -> C:
    """The typed config of the named scale; a :class:`ValidationError` naming the known scales otherwise."""
    if scale not in scales:
        raise ValidationError(f"scale: unknown scale {scale!r} for {experiment}; expected one of {list(scales)}")
    return config_class.from_dict(scales[scale], experiment)


def check_value(value: Any, annotation: Any, key: str) -> Any:
    """``value`` checked against ``annotation`` (converted where noted in the module docstring)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if _is_config(annotation):
        if isinstance(value, annotation):
            return value
        if isinstance(value, Mapping):
            return annotation.from_dict(value, key)
    elif origin in (Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return check_value(value, option, key)
            except ValidationError as error:
                errors.append(error)
        nested = [e for e in errors if str(e).startswith((f"{key}.", f"{key}["))]
        if nested:  # the value had the shape of an option and failed inside it: that error says most
            raise nested[0]
    elif origin is typing.Literal:
        if any(value == option and type(value) is type(option) for option in args):
            return value
    elif origin in (list, tuple) or annotation in (list, tuple):
        if isinstance(value, (list, tuple)):
            if origin is tuple and args and args[-1] is not Ellipsis:  # fixed-length tuple[A, B]
                if len(value) == len(args):
                    return tuple(check_value(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
            else:
                item = args[0] if args else Any
                checked = [check_value(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
                return tuple(checked) if (origin or annotation) is tuple else checked
    elif origin is dict or annotation is dict:
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            item = args[1] if args else Any
            return {k: check_value(v, item, f"{key}.{k}") for k, v in value.items()}
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is None or annotation is type(None):
        if value is None:
            return None
    elif isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
    else:
        raise ValidationError(f"{key}: unsupported config field type {type_name(annotation)}")
    raise ValidationError(f"{key}: expected {type_name(annotation)}, got {value!r} ({type(value).__name__})")


def type_name(annotation: Any) -> str:
    """A readable name: ``int``, ``tuple[int, ...]``, ``str | None``."""
    if annotation is type(None) or annotation is None:
        return "None"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def _assign(values: dict[str, Any], config_class: type[ExperimentConfig], path: list[str], value: Any,
            where: str) -> None:
    """Put ``value`` at the dotted ``path`` of the plain ``values`` of ``config_class``, merging dicts into
    nested config sections."""
    types_ = config_class.field_types()
    head = path[0]
    reject_unknown_keys([head], types_, where)
    annotation = _section_type(types_[head], values.get(head))
    if _is_config(annotation):
        section = values[head]
        if len(path) > 1:
            _assign(section, annotation, path[1:], value, f"{where}.{head}")
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                _assign(section, annotation, [key], item, f"{where}.{head}")
            return
    elif len(path) > 1:
        raise ValidationError(f"{where}.{head}: is a {type_name(annotation)} setting, not a section; "
                              f"{'.'.join(path[1:])!r} cannot be set inside it")
    values[head] = value


def _section_type(annotation: Any, current: Any) -> Any:
    """The config class of a ``Section | None`` field that currently holds a section, else ``annotation``."""
    if typing.get_origin(annotation) in (Union, types.UnionType) and isinstance(current, dict):
        sections = [option for option in typing.get_args(annotation) if _is_config(option)]
        if len(sections) == 1:
            return sections[0]
    return annotation


def _is_config(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, ExperimentConfig)


def _plain(value: Any) -> Any:
    if isinstance(value, ExperimentConfig):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
