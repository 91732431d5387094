"""Typed, frozen configs: one class per run, command and experiment, filled from dicts, JSON files, ``key=value``
overrides and command-line flags, and checked by one validation path.

A config is a frozen dataclass deriving from :class:`Config`, one typed field per setting, each followed by its
docstring (the attribute docstrings of CleanRL's and tyro's configs)::

    @dataclass(frozen=True)
    class RunConfig(Config):
        steps: PositiveInt = 100
        \"\"\"outer optimizer steps\"\"\"
        optimizer: Literal["lbfgs", "adam"] = "lbfgs"
        \"\"\"outer optimizer\"\"\"

        def validate(self) -> None:  # cross-field constraints; field types and ranges are already checked
            ...

**One validation path.** Every way of making a config ends in its ``__post_init__``: each field's value is checked
against its annotation by :func:`check_value` (and converted: an int for a float, a JSON list for a tuple), the
constraints in its ``Annotated[...]`` metadata (:class:`Range`, :class:`OneOf`, :class:`NonEmpty`) are applied, then
the class's :meth:`Config.validate` hook runs the checks that involve several fields. :meth:`Config.from_dict`
(what JSON files, ``--set key=value`` and the generated command-line flags of :mod:`irl_bilevel.config_cli` go
through) checks with the dotted key of each value and prefixes the hook's errors with it, so ``--steps 2.5``,
``--set steps=2.5`` and ``{"steps": 2.5}`` in a ``--config`` file all fail with ``<command>.steps: expected int, got
2.5 (float)``. A subclass therefore never defines ``__post_init__`` (enforced): constraints live in the annotations
and in ``validate()``, whose messages start with the field's name.

**Field documentation** is the string literal after each field, read once per class from the source with
:mod:`ast` (:meth:`Config.field_docs`). Attribute docstrings, not ``field(metadata={"help": ...})`` as
``HfArgumentParser`` has it: a config then reads as a plain typed class with its documentation under each line, the
way CleanRL's ``Args`` and tyro's examples do, Sphinx's autodoc shows the same text, and a field needs no
``field()`` call just to be documented. Tests check that every field of every command and experiment config has one.

**Sections.** A field whose type is a :class:`Config` is a nested section: ``{"gridworld": {"size": 6}}`` in dicts
and files, ``gridworld.size=6`` as an override, ``--gridworld.size 6`` on the command line. A section declared with
:func:`section` and a ``prefix`` is *flattened*: its fields appear among the parent's, named ``prefix + name``
(``section(LoraSettings, prefix="lora_")`` gives ``lora_r``, ``lora_alpha``, ...; ``prefix=""`` merges them as they
are). That is how a command config combines run configs (:class:`llm.training.PreferenceTrainingConfig`,
:class:`llm.models.LoraSettings`) without a second copy of their fields, while Python code reads
``config.training.learning_rate`` and the public (dict, file, flag) form stays flat.

Supported field types: ``bool``, ``int``, ``float`` (finite; an int is accepted and converted), ``str``, ``None``,
``X | Y``, ``Literal[...]``, ``list[T]``, ``tuple[T, ...]`` (a JSON list is converted; prefer it, the config is then
immutable), ``tuple[A, B]``, ``dict[str, T]``, ``Any``, ``Annotated[T, constraint, ...]`` and nested configs.
:meth:`Config.to_dict` gives plain JSON-ready dicts and lists back: what result files record and resumed runs
compare.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import json
import math
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union

from irl_bilevel.validation import ValidationError, read_json_file, reject_unknown_keys

C = TypeVar("C", bound="Config")


# ---------------------------------------------------------------------- constraints (Annotated metadata)
class Constraint:
    """A check on a value that already has the field's type; ``describe()`` is what help texts show."""

    def check(self, value: Any, key: str) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Range(Constraint):
    """``low <= value <= high`` (``<`` where ``low_open``/``high_open``); either bound may be None. A float must also
    be finite (JSON reads ``NaN`` and ``Infinity``)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, value: Any, key: str) -> None:
        if value is None:
            return
        ok = not (isinstance(value, float) and not math.isfinite(value))
        if self.low is not None:
            ok = ok and (value > self.low if self.low_open else value >= self.low)
        if self.high is not None:
            ok = ok and (value < self.high if self.high_open else value <= self.high)
        if not ok:
            raise ValidationError(f"{key}: expected {self.describe()}, got {value!r}")

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"a value in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            if self.low == 0 and self.low_open:
                return "a positive number"
            if self.low == 1 and not self.low_open:
                return "a positive integer"
            return f"a value {'>' if self.low_open else '>='} {_number(self.low)}"
        if self.high is not None:
            return f"a value {'<' if self.high_open else '<='} {_number(self.high)}"
        return "a finite number"


@dataclasses.dataclass(frozen=True)
class OneOf(Constraint):
    """The value is one of ``choices``: names, or a zero-argument callable returning them (a registry read when
    the config is checked, e.g. ``lambda: sorted(PREFERENCE_LOSSES)``), so a new registry entry is accepted and
    listed in ``--help`` without other edits. ``what`` names the kind in messages (``"preference loss"``);
    ``explain(value)`` may say more about a known value that does not fit here."""

    choices: Iterable[str] | Callable[[], Iterable[str]]
    what: str = ""
    explain: Callable[[Any], str | None] | None = None  # a more specific message for a value outside the choices

    def names(self) -> list[str]:
        return list(self.choices() if callable(self.choices) else self.choices)

    def check(self, value: Any, key: str) -> None:
        names = self.names()
        if value not in names:
            reason = self.explain(value) if self.explain is not None else None
            if reason:
                raise ValidationError(f"{key}: {reason}")
            kind = f"unknown {self.what} " if self.what else "unknown value "
            raise ValidationError(f"{key}: {kind}{value!r}; expected one of {names}")

    def describe(self) -> str:
        return "one of " + ", ".join(self.names())


@dataclasses.dataclass(frozen=True)
class NonEmpty(Constraint):
    """A list or tuple with at least one item (a sweep over nothing runs nothing)."""

    def check(self, value: Any, key: str) -> None:
        if value is not None and len(value) == 0:
            raise ValidationError(f"{key}: expected {self.describe()}, got {list(value)!r}")

    def describe(self) -> str:
        return "a non-empty list"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


PositiveInt = Annotated[int, Range(low=1)]
NonNegativeInt = Annotated[int, Range(low=0)]
PositiveFloat = Annotated[float, Range(low=0, low_open=True)]
NonNegativeFloat = Annotated[float, Range(low=0)]
Probability = Annotated[float, Range(low=0, high=1)]
Discount = Annotated[float, Range(low=0, high=1, high_open=True)]
Seed = Annotated[int, Range(low=0, high=2**32 - 1)]
"""A random seed: numpy, gymnasium and SB3 take ``0 .. 2**32 - 1`` (torch takes more; one range for every run)."""


# ---------------------------------------------------------------------- sections
def section(config_class: type[C], *, prefix: str | None = None, default: C | None = None) -> Any:
    """A nested config field with a default (``config_class()`` unless ``default``). ``prefix=None``: a nested
    section (``name.field``); a string: a flattened section whose fields appear in the parent as
    ``prefix + field`` (module docstring)."""
    factory: Callable[[], C] = config_class if default is None else (lambda: default)
    metadata = {} if prefix is None else {"prefix": prefix}
    return dataclasses.field(default_factory=factory, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One leaf setting of a config as the outside sees it: its public dotted key, type, default and doc."""

    key: str
    annotation: Any
    default: Any  # dataclasses.MISSING when the setting is required
    doc: str
    cli: bool  # False: reachable through --config and --set only (field(metadata={"cli": False}))
    group: str  # the section it belongs to ("" for the config's own fields)
    positional: bool = False  # a positional argument on the command line (field(metadata={"positional": True}))
    aliases: tuple[str, ...] = ()  # more flags for it (field(metadata={"aliases": ("--env",)})), e.g. a short form


# ---------------------------------------------------------------------- the base class
@dataclasses.dataclass(frozen=True)
class Config:
    """Base class of typed configs; subclasses are ``@dataclass(frozen=True)`` with typed, documented fields."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__post_init__" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: a Config checks its fields in Config.__post_init__; put value checks "
                            f"in validate() (or in Annotated constraints) instead of defining __post_init__")

    def __post_init__(self) -> None:
        for name, annotation in _field_types(type(self)).items():
            value = getattr(self, name)
            checked = check_value(value, annotation, name)
            if checked is not value:
                object.__setattr__(self, name, checked)
        self.validate()

    def validate(self) -> None:
        """Checks that involve several fields (or a registry call); raise :class:`ValidationError` with a message
        that starts with the field's name. Field types and ``Annotated`` constraints are checked before."""

    # ------------------------------------------------------------------ introspection
    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Field name -> resolved type annotation (``Annotated`` kept), in declaration order."""
        return dict(_field_types(cls))

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Field name -> its docstring (the string literal after the field; base classes first)."""
        return dict(_field_docs(cls))

    @classmethod
    def public_types(cls) -> dict[str, Any]:
        """Public key -> annotation: the class's own fields, with the fields of flattened sections merged in under
        their prefixed names; a nested section's annotation is its config class."""
        return {key: annotation for key, (_, _, annotation) in _public_fields(cls).items()}

    @classmethod
    def settings(cls) -> list[Setting]:
        """Every leaf setting (nested sections expanded to dotted keys), in declaration order."""
        return _settings(cls, "", "")

    @classmethod
    def describe(cls) -> list[tuple[str, str]]:
        """``(dotted key, type)`` of every leaf setting, for ``irlb config --types``."""
        return [(s.key, type_name(s.annotation)) for s in cls.settings()]

    # ------------------------------------------------------------------ dict, file and override forms
    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any], where: str = "config") -> C:
        """Validate the public form ``values`` into a config: every required setting present, no other key, each
        value checked (errors name ``where.key``), then ``validate()`` (its errors are prefixed with ``where``)."""
        return _from_public(cls, values, where, "")

    def to_dict(self) -> dict[str, Any]:
        """The public form: plain JSON-ready dicts and lists (tuples become lists), field order kept; flattened
        sections merged in, nested sections as dicts."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            prefix = f.metadata.get("prefix")
            if prefix is not None and isinstance(value, Config):
                values.update({prefix + key: item for key, item in value.to_dict().items()})
            else:
                values[f.name] = _plain(value)
        return values

    def updated(self: C, changes: Mapping[str, Any], where: str = "config") -> C:
        """A copy with ``changes`` applied and re-validated. Keys may be dotted (``"gridworld.size"``); a dict
        given for a nested section updates only the keys it names; ``"name.key"`` on a ``dict`` field sets one
        entry of it (a dict given for the field itself replaces it)."""
        return type(self).from_sources(changes=changes, where=where, base=self)

    @classmethod
    def from_sources(cls: type[C], config_file: str | Path | None = None, overrides: Iterable[str] = (),
                     changes: Mapping[str, Any] | None = None, where: str = "config", base: C | None = None) -> C:
        """``base`` (default: the class's defaults), then the JSON object in ``config_file``, then ``key=value``
        ``overrides`` (:func:`parse_overrides`), then the already parsed ``changes`` (``{dotted key: value}``),
        each layer merged like :meth:`updated`, and the result validated once."""
        values: dict[str, Any] = base.to_dict() if base is not None else {}
        layers: list[tuple[Mapping[str, Any], str]] = []
        if config_file is not None:
            layers.append((load_json_object(config_file), f"{where} (--config {config_file})"))
        layers.append((parse_overrides(overrides), f"{where} (--set)"))
        if changes:
            layers.append((changes, where))
        for layer, source in layers:
            for key, value in layer.items():
                _assign(values, cls, key.split("."), value, source)
        return cls.from_dict(values, where)


ExperimentConfig = Config  # the name before run and command configs shared the class; kept for existing imports


# ---------------------------------------------------------------------- sources
def parse_overrides(overrides: Iterable[str], where: str = "--set") -> dict[str, Any]:
    """``["a.b=3", "c=[1, 2]", "d=text"]`` -> ``{"a.b": 3, "c": [1, 2], "d": "text"}`` (values parsed as JSON;
    text that is not JSON stays a string, so ``env_id=CartPole-v1`` needs no quotes)."""
    parsed: dict[str, Any] = {}
    for override in overrides:
        key, separator, raw = override.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ValidationError(f"{where}: expected key=value, got {override!r}")
        parsed[key] = parse_value(raw)
    return parsed


def parse_value(raw: str) -> Any:
    """``raw`` read as JSON, or kept as the string it is when it is not JSON."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def load_json_object(path: str | Path, where: str = "--config") -> dict[str, Any]:
    """Read a JSON file holding one object; a missing, unreadable or non-UTF-8 file, bad JSON or another JSON value
    is a :class:`ValidationError` naming ``where`` and the file (:func:`~irl_bilevel.validation.read_json_file`)."""
    return read_json_file(path, where)


def experiment_settings(config_class: type[C], scales: Mapping[str, Mapping[str, Any]], scale: str,
                        experiment: str, config: C | None = None) -> C:
    """What an experiment's ``run(scale, ..., config=None)`` reads: the typed settings of ``scale``, or ``config``
    when one is given (``scale`` is then only the label its result records)."""
    if config is not None:
        if not isinstance(config, config_class):
            raise ValidationError(f"config: expected a {config_class.__name__} for {experiment}, "
                                  f"got {type(config).__name__}")
        return config
    return scale_config(config_class, scales, scale, experiment)


def scale_config(config_class: type[C], scales: Mapping[str, Mapping[str, Any]], scale: str, experiment: str) -> C:
    """The typed config of the named scale; a :class:`ValidationError` naming the known scales otherwise."""
    if scale not in scales:
        raise ValidationError(f"scale: unknown scale {scale!r} for {experiment}; expected one of {list(scales)}")
    return config_class.from_dict(scales[scale], experiment)


# ---------------------------------------------------------------------- the type checker
def check_value(value: Any, annotation: Any, key: str) -> Any:
    """``value`` checked against ``annotation`` (converted where noted in the module docstring); the one type
    check behind every config."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is Annotated:
        if isinstance(value, float) and not math.isfinite(value):  # a Range says better what is expected instead
            for constraint in annotation.__metadata__:
                if isinstance(constraint, Range):
                    constraint.check(value, key)
        checked = check_value(value, args[0], key)
        for constraint in annotation.__metadata__:
            if isinstance(constraint, Constraint):
                constraint.check(checked, key)
        return checked
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
        # The value had the type of an option and failed its constraint or failed inside it: that error says most.
        specific = [e for e in errors if str(e).startswith((f"{key}.", f"{key}[")) or "expected" not in str(e)
                    or f"got {value!r} (" not in str(e)]
        if specific:
            raise specific[0]
    elif origin is typing.Literal:
        if any(value == option and type(value) is type(option) for option in args):
            return value
        raise ValidationError(f"{key}: expected one of {list(args)}, got {value!r} ({type(value).__name__})")
    elif origin in (list, tuple) or annotation in (list, tuple):
        if isinstance(value, (list, tuple)):
            if origin is tuple and args and args[-1] is not Ellipsis:  # fixed-length tuple[A, B]
                if len(value) == len(args):
                    return tuple(check_value(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
            else:
                item = args[0] if args else Any
                checked = [check_value(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
                if (origin or annotation) is tuple:
                    return value if isinstance(value, tuple) and all(a is b for a, b in zip(checked, value)) \
                        else tuple(checked)
                return value if isinstance(value, list) and all(a is b for a, b in zip(checked, value)) \
                    else checked
    elif origin is dict or annotation is dict:
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            item = args[1] if args else Any
            checked_items = {k: check_value(v, item, f"{key}.{k}") for k, v in value.items()}
            return value if isinstance(value, dict) and all(checked_items[k] is v for k, v in value.items()) \
                else checked_items
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # JSON reads NaN and Infinity; no setting means them
                raise ValidationError(f"{key}: expected a finite number, got {value!r}")
            return value if isinstance(value, float) else float(value)
    elif annotation is None or annotation is type(None):
        if value is None:
            return None
    elif isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
    else:
        raise ValidationError(f"{key}: unsupported config field type {type_name(annotation)}")
    raise ValidationError(f"{key}: expected {type_name(annotation)}, got {value!r} ({type(value).__name__})")


def typed_fields(cls: type, values: Any) -> dict[str, Any]:
    """``values`` (a mapping read from a file) checked against the fields of the dataclass ``cls``: no unknown field,
    every field without a default present, each value of its annotated type (:func:`check_value`: an
    int is no float's substitute the other way round, ``"maybe"`` is no bool). Returns the checked values, ready
    for ``cls(**...)``. Errors name the field; the caller adds the file."""
    if not isinstance(values, Mapping):
        raise ValidationError(f"expected a JSON object of fields, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValidationError(f"unknown key(s) {unknown}; expected some of {sorted(fields)}")
    missing = [name for name, f in fields.items() if name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValidationError(f"missing field(s) {missing}")
    hints = typing.get_type_hints(cls)
    return {key: check_value(value, hints[key], key) for key, value in values.items()}


def type_name(annotation: Any) -> str:
    """A readable name: ``int``, ``tuple[int, ...]``, ``str | None``, ``int >= 1``, ``one of 'a', 'b'``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return "None"
    if origin is Annotated:
        base = type_name(args[0])
        constraints = [c.describe() for c in annotation.__metadata__ if isinstance(c, Constraint)]
        return f"{base} ({'; '.join(constraints)})" if constraints else base
    if origin is typing.Literal:
        return " | ".join(json.dumps(option) for option in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(option) for option in args)
    if origin in (list, tuple, dict):
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]" if args else origin.__name__
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


# ---------------------------------------------------------------------- internals
_TYPES: dict[type, dict[str, Any]] = {}
_DOCS: dict[type, dict[str, str]] = {}
_PUBLIC: dict[type, dict[str, tuple[str, str | None, Any]]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    if cls not in _TYPES:
        hints = typing.get_type_hints(cls, include_extras=True)
        _TYPES[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _TYPES[cls]


def _field_docs(cls: type) -> dict[str, str]:
    if cls not in _DOCS:
        docs: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            if klass is object or not dataclasses.is_dataclass(klass):
                continue
            docs.update(_attribute_docstrings(klass))
        _DOCS[cls] = docs
    return _DOCS[cls]


def _attribute_docstrings(klass: type) -> dict[str, str]:
    """``name -> docstring`` of the class body's ``name: type [= default]`` statements followed by a string."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # no source (an interactive session, a frozen build): no docs
        return {}
    body = ast.parse(source).body
    if not body or not isinstance(body[0], ast.ClassDef):
        return {}
    docs: dict[str, str] = {}
    statements = body[0].body
    for statement, following in itertools.pairwise(statements):
        if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[statement.target.id] = " ".join(inspect.cleandoc(following.value.value).split())
    return docs


def _public_fields(cls: type[Config]) -> dict[str, tuple[str, str | None, Any]]:
    """Public key -> (field name, key inside the flattened section or None, annotation)."""
    if cls not in _PUBLIC:
        _PUBLIC[cls] = _collect_public_fields(cls)
    return _PUBLIC[cls]


def _collect_public_fields(cls: type[Config]) -> dict[str, tuple[str, str | None, Any]]:
    public: dict[str, tuple[str, str | None, Any]] = {}
    types_ = _field_types(cls)
    for f in dataclasses.fields(cls):
        prefix = f.metadata.get("prefix")
        annotation = types_[f.name]
        if prefix is not None:
            if not _is_config(annotation):
                raise TypeError(f"{cls.__name__}.{f.name}: only a Config field can be a flattened section")
            entries = [(prefix + sub, (f.name, sub, kind)) for sub, kind in annotation.public_types().items()]
        else:
            entries = [(f.name, (f.name, None, annotation))]
        for key, entry in entries:
            if key in public:
                raise TypeError(f"{cls.__name__}: the setting {key!r} is declared twice (flattened sections must not "
                                f"share names with the fields around them)")
            public[key] = entry
    return public


def _from_public(cls: type[C], values: Mapping[str, Any], where: str, key_prefix: str) -> C:
    """:meth:`Config.from_dict` with errors named ``where.key_prefix + key`` (``key_prefix``: a flattened
    section's prefix)."""
    if not isinstance(values, Mapping):
        raise ValidationError(f"{where}: expected a JSON object of settings, got {type(values).__name__}")
    public = _public_fields(cls)
    reject_unknown_keys([key_prefix + k for k in values], [key_prefix + k for k in public], where)
    missing = [key_prefix + key for key, (name, sub, _) in public.items()
               if key not in values and _field_is_required(cls, name, sub)]
    if missing:
        raise ValidationError(f"{where}: missing key(s) {missing}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    own: dict[str, Any] = {}
    flattened: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        name, sub, annotation = public[key]
        if sub is None:
            own[name] = check_value(value, annotation, _join(where, key_prefix + key))
        else:
            flattened.setdefault(name, {})[sub] = value
    for name, section_values in flattened.items():
        section_class = _field_types(cls)[name]
        base = _field_default(fields[name])
        merged = {**(base.to_dict() if isinstance(base, Config) else {}), **section_values}
        own[name] = _from_public(section_class, merged, where, key_prefix + fields[name].metadata["prefix"])
    try:
        return cls(**own)
    except ValidationError as error:  # validate()'s message starts with the field's name
        raise ValidationError(_join(where, key_prefix + str(error))) from error


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _field_is_required(cls: type[Config], name: str, sub: str | None) -> bool:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = _field_default(f)
    if sub is None:
        return default is dataclasses.MISSING
    section_class = _field_types(cls)[name]
    if isinstance(default, Config):
        return False
    inner = _public_fields(section_class)[sub]
    return _field_is_required(section_class, inner[0], inner[1])


def _settings(cls: type[Config], key_prefix: str, group: str) -> list[Setting]:
    _public_fields(cls)  # a TypeError if two settings share a public name
    rows: list[Setting] = []
    docs = _field_docs(cls)
    types_ = _field_types(cls)
    for f in dataclasses.fields(cls):
        annotation = types_[f.name]
        prefix = f.metadata.get("prefix")
        if _is_config(annotation):
            default = _field_default(f)
            inner = annotation.settings()
            if prefix is not None:
                children = [dataclasses.replace(s, key=key_prefix + prefix + s.key, group=s.group or f.name)
                            for s in inner]
            else:
                children = [dataclasses.replace(s, key=f"{key_prefix}{f.name}.{s.key}", group=f"{key_prefix}{f.name}")
                            for s in inner]
            if isinstance(default, Config):  # the section's defaults as the parent declares them
                current = default.to_dict()
                children = [dataclasses.replace(child, default=_dig(current, s.key)) for child, s in
                            zip(children, inner)]
            rows += children
            continue
        rows.append(Setting(key=key_prefix + f.name, annotation=annotation, default=_plain(_field_default(f)),
                            doc=docs.get(f.name, ""), cli=f.metadata.get("cli", True), group=group,
                            positional=f.metadata.get("positional", False),
                            aliases=tuple(f.metadata.get("aliases", ()))))
    return rows


def _dig(values: Mapping[str, Any], dotted: str) -> Any:
    value: Any = values
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return dataclasses.MISSING
        value = value[part]
    return value


def _assign(values: dict[str, Any], config_class: type[Config], path: list[str], value: Any, where: str) -> None:
    """Put ``value`` at the dotted ``path`` of the public ``values`` of ``config_class``: merging dicts into nested
    sections, setting one entry of a ``dict`` field."""
    types_ = config_class.public_types()
    head = path[0]
    reject_unknown_keys([head], types_, where)
    annotation = _section_type(types_[head], values.get(head))
    if _is_config(annotation):
        section_values = values.get(head)
        if not isinstance(section_values, dict):
            section_values = {}
            if len(path) > 1 or isinstance(value, Mapping):
                values[head] = section_values
        if len(path) > 1:
            _assign(section_values, annotation, path[1:], value, f"{where}.{head}")
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                _assign(section_values, annotation, [key], item, f"{where}.{head}")
            return
    elif len(path) > 1:
        if _is_dict_type(annotation):
            entries = dict(values.get(head) or {})
            entries[path[1]] = value if len(path) == 2 else _nested(entries.get(path[1]), path[2:], value)
            values[head] = entries
            return
        raise ValidationError(f"{where}.{head}: is a {type_name(annotation)} setting, not a section; "
                              f"{'.'.join(path[1:])!r} cannot be set inside it")
    values[head] = value


def _nested(current: Any, path: list[str], value: Any) -> dict[str, Any]:
    entries = dict(current) if isinstance(current, Mapping) else {}
    entries[path[0]] = value if len(path) == 1 else _nested(entries.get(path[0]), path[1:], value)
    return entries


def _is_dict_type(annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _is_dict_type(args[0])
    if origin in (Union, types.UnionType):
        return any(_is_dict_type(option) for option in args)
    return origin is dict or annotation is dict


def _section_type(annotation: Any, current: Any) -> Any:
    """The config class of a ``Section | None`` field that currently holds a section, else ``annotation``."""
    if typing.get_origin(annotation) in (Union, types.UnionType) and isinstance(current, dict):
        sections = [option for option in typing.get_args(annotation) if _is_config(option)]
        if len(sections) == 1:
            return sections[0]
    return annotation


def _is_config(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Config)


def _plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
