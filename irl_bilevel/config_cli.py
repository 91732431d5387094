"""Command-line flags generated from a :class:`~irl_bilevel.config.Config` class, as CleanRL (tyro) and TRL
(``HfArgumentParser``) generate theirs: one ``--flag`` per leaf setting, its help the field's docstring, its type,
choices and default read from the class, so that a field added to a config is on the command line without other
edits, and the command line cannot drift from the config.

``add_config_arguments(parser, RunConfig)`` adds ``--config FILE`` (a JSON object of settings), ``--set KEY=VALUE``
(repeatable; JSON value) and, per setting, ``--name`` (underscores become dashes; nested sections as
``--section.name``). :func:`config_from_arguments` then builds the config from the defaults, the file, the ``--set``
overrides and the flags, in that order, through :meth:`Config.from_sources`: the one validation path, so a flag
value is checked by the same type checker, constraints and ``validate()`` as a file or an override, with the same
message (``<command>.steps: expected int, got 2.5 (float)``).

Flag values: a ``str`` setting takes the text as it is (``null`` is None where None is allowed); any other setting
reads it as JSON, or as text when it is not JSON (``--hidden-sizes 64 64``, ``--hyperparameters '{"n_steps": 512}'``).
A list or tuple setting takes one or more values (or one JSON list, or comma-separated numbers); a ``bool``
setting is ``--name`` (true), ``--name false`` or ``--no-name``. argparse does no checking of its own (no
``type=``, no ``choices=``): the choices of a ``Literal`` or :class:`~irl_bilevel.config.OneOf` field are listed in
the help, read from the registry when the parser is built.

Why not tyro, simple-parsing or ``HfArgumentParser``: each validates with its own machinery (argparse ``type=`` and
``choices=`` errors, or its own constructors) and none layers a ``--config`` JSON file under ``key=value`` overrides
the way our run folders and sweeps record and replay configs; keeping our checker, our messages (``irlb: error:``,
exit status 2) and one validation path would mean working around the library at every step. The generator is the
small part: this module.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import textwrap
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar, Union

from irl_bilevel.config import Config, OneOf, Setting, parse_value, type_name

C = TypeVar("C", bound=Config)

_DEST = "config:"  # namespace attributes of the generated flags: config:<dotted key>
_MANY_CHOICES = 6  # more choices than this: listed in the help, not in the usage line


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help layout, without breaking words at hyphens: flag names, env ids (``CartPole-v1``) and file
    names stay whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False)


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type[Config], *, sources: bool = True,
                         defaults: Mapping[str, str] | None = None, title: str | None = None) -> None:
    """Add a flag per leaf setting of ``config_class`` (and ``--config``/``--set`` when ``sources``).

    ``defaults``: public key -> the text to show as the default in the help (e.g. per-scale values), instead of the
    class's own default."""
    if sources:
        group = parser.add_argument_group("config sources (applied before the flags below)")
        group.add_argument("--config", metavar="FILE", help=f"JSON file of {config_class.__name__} settings (only the "
                           "settings it changes; nested sections merge)")
        group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="change one setting (dotted key; JSON value, text otherwise; repeatable)")
    groups: dict[str, Any] = {}
    heading = title or f"settings ({config_class.__module__}.{config_class.__qualname__})"
    for setting in config_class.settings():
        if not setting.cli:
            continue
        if setting.group not in groups:
            groups[setting.group] = parser.add_argument_group(
                heading if not setting.group else f"{setting.group} settings")
        _add_flag(groups[setting.group], setting, None if defaults is None else defaults.get(setting.key))


def flag_name(key: str) -> str:
    """``lora_r`` -> ``--lora-r``; ``gridworld.num_demos`` -> ``--gridworld.num-demos``."""
    return "--" + key.replace("_", "-")


def config_from_arguments(args: argparse.Namespace, config_class: type[C], where: str, *, sources: bool = True,
                          base: C | None = None, changes: Mapping[str, Any] | None = None) -> C:
    """The config of ``config_class``: ``base`` (default: the class's defaults), then ``--config`` and ``--set``
    (when ``sources``, as :func:`add_config_arguments` added them), ``changes`` and the flags given on the command
    line, validated once (errors name ``where.key``)."""
    flags = {name[len(_DEST):]: value for name, value in vars(args).items() if name.startswith(_DEST)}
    public = {s.key: s for s in config_class.settings()}
    parsed = {key: _parse_flag(raw, public[key].annotation) for key, raw in flags.items()}
    return config_class.from_sources(getattr(args, "config", None) if sources else None,
                                     (getattr(args, "set", None) or []) if sources else [],
                                     changes={**(changes or {}), **parsed}, where=where, base=base)


# ---------------------------------------------------------------------- flags
def _add_flag(group: Any, setting: Setting, shown_default: str | None) -> None:
    annotation = setting.annotation
    flag, dest = flag_name(setting.key), _DEST + setting.key
    choices = _choices(annotation)
    help_parts = [_escape(setting.doc) if setting.doc else ""]
    kind = type_name(annotation) if not choices else None
    if choices and len(choices) > _MANY_CHOICES:
        help_parts.append(f"one of: {', '.join(choices)}")
    if shown_default is not None:
        help_parts.append(f"default: {_escape(shown_default)}")
    elif setting.default is dataclasses.MISSING:
        help_parts.append("required")
    else:
        help_parts.append(f"default: {_escape(_show(setting.default))}")
    if kind and not _is_plain(annotation):
        help_parts.insert(1, _escape(kind))
    text = "; ".join(part for part in help_parts if part)
    metavar = _metavar(annotation, choices)
    if setting.positional:
        many = _sequence_item(annotation) is not None
        optional = setting.default is not dataclasses.MISSING
        group.add_argument(dest, metavar=setting.key, help=text,
                           nargs=("*" if optional else "+") if many else ("?" if optional else None),
                           default=argparse.SUPPRESS)
    elif _base(annotation) is bool:
        group.add_argument(flag, *setting.aliases, dest=dest, nargs="?", const="true", default=argparse.SUPPRESS,
                           metavar="true|false", help=text)
        if "." not in setting.key:
            group.add_argument(flag_name("no_" + setting.key), dest=dest, action="store_const", const="false",
                               default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    elif _sequence_item(annotation) is not None:
        group.add_argument(flag, *setting.aliases, dest=dest, nargs="+", action="extend", default=argparse.SUPPRESS,
                           metavar=metavar, help=text)
    else:
        group.add_argument(flag, *setting.aliases, dest=dest, default=argparse.SUPPRESS, metavar=metavar, help=text)


def _parse_flag(raw: Any, annotation: Any) -> Any:
    """The value of a flag as given (a string, or the list of strings of a list setting)."""
    if isinstance(raw, list):  # a list or tuple setting: one JSON list, "null", comma-separated or one per token
        item = _sequence_item(annotation)
        if len(raw) == 1:
            single = parse_value(raw[0])
            if isinstance(single, list) or single is None:
                return single
        if not _takes_text(item):  # "--seeds 0,1 --seeds 2" is 0, 1, 2 too
            raw = [part.strip() for token in raw for part in token.split(",") if part.strip()]
        return [_parse_token(token, item) for token in raw]
    return _parse_token(raw, annotation)


def _parse_token(token: str, annotation: Any) -> Any:
    if _takes_text(annotation):
        return None if token == "null" and _allows_none(annotation) else token
    return parse_value(token)


# ---------------------------------------------------------------------- reading annotations
def _options(annotation: Any) -> list[Any]:
    """The options of a union (without None), or ``[annotation]``; ``Annotated`` kept."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _strip(annotation: Any) -> Any:
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is Annotated else annotation


def _base(annotation: Any) -> Any:
    options = _options(annotation)
    return _strip(options[0]) if len(options) == 1 else annotation


def _allows_none(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType) and type(None) in typing.get_args(annotation)


def _takes_text(annotation: Any) -> bool:
    """Only text fits (``str``, a ``Literal`` of strings, optionally None): the flag's text is the value."""
    options = _options(annotation)
    if len(options) != 1:
        return False
    base = _strip(options[0])
    if base is str:
        return True
    return typing.get_origin(base) is typing.Literal and all(isinstance(a, str) for a in typing.get_args(base))


def _sequence_item(annotation: Any) -> Any:
    """The item type of a ``list[T]`` / ``tuple[T, ...]`` setting (optionally ``| None``), else None."""
    options = _options(annotation)
    if len(options) != 1:
        return None
    base = _strip(options[0])
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return args[0] if args else Any
    return None


def _choices(annotation: Any) -> list[str]:
    options = _options(annotation)
    if len(options) != 1:
        return []
    option = options[0]
    item = _sequence_item(option)
    if item is not None:
        option = item
    if typing.get_origin(option) is Annotated:
        for constraint in option.__metadata__:
            if isinstance(constraint, OneOf):
                return [str(name) for name in constraint.names()]
        option = typing.get_args(option)[0]
    if typing.get_origin(option) is typing.Literal:
        return [str(a) for a in typing.get_args(option)]
    return []


def _is_plain(annotation: Any) -> bool:
    """Types whose metavar says everything (``int``, ``float``, ``str``, ``bool``)."""
    return annotation in (int, float, str, bool)


def _metavar(annotation: Any, choices: list[str]) -> str:
    if choices:
        if len(choices) <= _MANY_CHOICES:
            return "{" + ",".join(choices) + "}"
        return "NAME"
    base = _strip(_options(annotation)[0]) if len(_options(annotation)) == 1 else None
    item = _sequence_item(annotation)
    if item is not None:
        return _metavar(item, [])
    names = {int: "INT", float: "FLOAT", str: "TEXT"}
    if base in names:
        return names[base]
    if typing.get_origin(base) is dict or base is dict:
        return "JSON"
    return "VALUE"


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _escape(text: str) -> str:
    """Help text for argparse: reStructuredText's double backquotes dropped, ``%`` escaped."""
    return text.replace("``", "").replace("%", "%%")
