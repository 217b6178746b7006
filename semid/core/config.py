"""YAML configs into typed dataclasses. Unknown keys are refused with the list of valid ones."""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from semid.core.errors import SemidError

T = TypeVar("T")

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # semid/core/config.py -> repo root


def resolve_conf(name_or_path: str | Path, group: str) -> Path:
    """A path as given, or a preset name looked up in ``conf/<group>/<name>.yaml``."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise SemidError(f"config file {p} does not exist")
        return p
    candidate = CONF_DIR / group / f"{name_or_path}.yaml"
    if not candidate.exists():
        names = sorted(q.stem for q in (CONF_DIR / group).glob("*.yaml"))
        raise SemidError(f"no preset '{name_or_path}' in conf/{group}/ (valid: {', '.join(names) or 'none'})")
    return candidate


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SemidError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SemidError(f"{path}: expected a mapping of keys to values at the top level")
    return data


class ConfigFieldError(SemidError, ValueError):
    """A config value that cannot be used: names the file (``where``), the field's dotted path and the fix.
    A ValueError too, so that a config dataclass's ``__post_init__`` can raise it through ``from_dict``."""

    def __init__(self, field: str, problem: str, where: str = "") -> None:
        self.field, self.problem, self.where = field, problem, where
        named = f"field '{field}': {problem}" if field else problem  # "" = the file's top level
        super().__init__(f"{where}: {named}" if where else named)


def require(ok: bool, field: str, problem: str) -> None:
    """In a config's ``__post_init__``: ``field`` (its own name) must satisfy ``ok``."""
    if not ok:
        raise ConfigFieldError(field, problem)


def require_int(value: object, field: str, minimum: int = 1) -> None:
    require(isinstance(value, int) and not isinstance(value, bool) and value >= minimum, field,
            f"must be an integer >= {minimum} (got {value!r})")


def require_positive(value: object, field: str, *, allow_zero: bool = False, maximum: float | None = None) -> None:
    """A finite number > 0 (>= 0 with ``allow_zero``), at most ``maximum``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and \
        (value >= 0 if allow_zero else value > 0) and (maximum is None or value <= maximum)
    bound = f"{'>= 0' if allow_zero else '> 0'}" + (f" and <= {maximum:g}" if maximum is not None else "")
    require(ok, field, f"must be a finite number {bound} (got {value!r})")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config", _path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclasses recurse; unknown keys and bad values are a
    ``ConfigFieldError`` naming ``where`` (the file) and the field's dotted path."""
    if not isinstance(data, dict):
        raise ConfigFieldError(_path, f"expected a mapping, got {type(data).__name__}", where)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigFieldError(_path, f"unknown key(s) {', '.join(unknown)} "
                               f"(valid: {', '.join(sorted(fields))})", where)
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(hints[k], v, where, f"{_path}.{k}".lstrip(".")) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigFieldError as e:
        if e.where:
            raise
        raise ConfigFieldError(f"{_path}.{e.field}".lstrip("."), e.problem, where) from None
    except (TypeError, ValueError) as e:
        raise ConfigFieldError(_path, str(e), where) from None


_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(tp: Any, value: Any, where: str, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, path)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where, path) if len(args) == 1 else value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigFieldError(path, f"expected a list, got {value!r}", where)
        (inner, *_) = typing.get_args(tp) or (Any,)
        return origin(_coerce(inner, v, where, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            # PyYAML follows YAML 1.1, where 1e-3 and 1e30 (no dot) are strings: read them as the numbers meant
            return float(value)
        raise ConfigFieldError(path, f"expected a number, got {value!r}", where)
    if tp in (int, str, bool) and not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigFieldError(path, f"expected {tp.__name__}, got {value!r}", where)
    return value


def blame_overrides(err: ConfigFieldError, overrides: list[str]) -> SemidError:
    """The error as the user caused it: a field set with ``--set key=value`` is blamed on that --set,
    not on the YAML file it overrode."""
    for item in reversed(overrides):
        key = item.split("=", 1)[0]
        inside = err.field.startswith((key + ".", key + "[")) or (bool(err.field) and key.startswith(err.field + "."))
        if err.field == key or inside:
            return SemidError(f"--set {item}: {err.problem}")
    return err


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``a.b=3`` style overrides from the command line, values parsed as YAML scalars."""
    out = dict(data)
    for item in overrides:
        if "=" not in item:
            raise SemidError(f"override '{item}' must look like key=value (e.g. rqvae.levels=4)")
        key, raw = item.split("=", 1)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node[p] = dict(node.get(p) or {})
            node = node[p]
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise SemidError(f"override '{item}': the value is not valid YAML ({str(e).splitlines()[0]}); "
                             "quote list items that contain brackets or commas") from None
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, mappings merged key by key (lists and scalars replaced)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_layered(name_or_path: str | Path, group: str) -> tuple[Path, dict[str, Any]]:
    """A config file with its ``base:`` chain merged under it (a config may build on another preset)."""
    path = resolve_conf(name_or_path, group)
    data = load_yaml(path)
    seen = {path.resolve()}
    while (base := data.pop("base", None)) is not None:
        base_path = resolve_conf(base, group)
        if base_path.resolve() in seen:
            raise SemidError(f"{path}: field 'base': '{base}' builds on itself (a cycle of base: keys)")
        seen.add(base_path.resolve())
        data = merge(load_yaml(base_path), data)
    return path, data
