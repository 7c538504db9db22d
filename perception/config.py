"""Typed configuration: dataclasses with defaults, filled from YAML files and the command line.

Precedence, lowest first: the dataclass defaults, ``--config FILE`` (YAML, repeatable),
``--params YAML`` (an inline map, what the launcher passes), then one option per field
(``--fps 10``, ``--bus.transport tcp``). Unknown keys and values of the wrong type are a
:class:`UserError` naming the key, never a silent default.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from perception.errors import UserError

T = TypeVar("T")
_UNSET = object()


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a YAML-loaded value to the annotated type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"{where}: bad value {value!r}")
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a map, got {value!r}")
        return from_dict(tp, value, where)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UserError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise UserError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{where}: expected a string, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a map, got {value!r}")
        return {
            _coerce(k, key_tp, where): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()
        }
    raise UserError(f"{where}: unsupported type {tp}")  # pragma: no cover


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build ``cls`` from a (nested) map, checking every key and type."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise UserError(
            f"unknown parameter {prefix}{unknown[0]}; known: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"{where or cls.__name__}: {exc}") from None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _flat_fields(cls: type, prefix: str = "") -> list[tuple[str, Any, dataclasses.Field[Any]]]:
    out = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_dataclass_type(tp):
            out.extend(_flat_fields(tp, f"{prefix}{f.name}."))
        else:
            out.append((prefix + f.name, tp, f))
    return out


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return repr(f.default_factory())
    return "required"


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add --config, --params and one option per (nested) field of ``cls``."""
    parser.add_argument(
        "--config", action="append", default=[], metavar="FILE", help="YAML file of parameters"
    )
    parser.add_argument("--params", metavar="YAML", help="inline YAML map of parameters")
    group = parser.add_argument_group("parameters (YAML values: lists and maps too)")
    for name, tp, f in _flat_fields(cls):
        doc = f.metadata.get("help", "")
        type_name = getattr(tp, "__name__", str(tp).replace("typing.", ""))
        group.add_argument(
            f"--{name}",
            dest=f"cfg:{name}",
            default=_UNSET,
            metavar=type_name.upper(),
            help=f"{doc} (default: {_default_text(f)})".strip(),
        )


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Combine defaults, files, --params and field options into a ``cls``."""
    data: dict[str, Any] = {}
    for path in args.config:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise UserError(f"config file {path} does not exist") from None
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"config file {path} cannot be read: {exc}") from None
        if not isinstance(loaded, dict):
            raise UserError(f"config file {path} must hold a map of parameters")
        data = _merge(data, loaded)
    if args.params:
        try:
            inline = yaml.safe_load(args.params) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"--params is not valid YAML: {exc}") from None
        if not isinstance(inline, dict):
            raise UserError("--params must be a map, e.g. '{fps: 10}'")
        data = _merge(data, inline)
    for name, tp, _ in _flat_fields(cls):
        raw = getattr(args, f"cfg:{name}", _UNSET)
        if raw is _UNSET:
            continue
        value: Any = raw if tp is str else _parse_scalar(str(raw), name)
        node = data
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(cls, data)


def _parse_scalar(raw: str, name: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise UserError(f"--{name}: {exc}") from None


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
