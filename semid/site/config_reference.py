"""The configuration reference, generated from the config dataclasses: every key with its type, default,
valid values and the comment beside it in the source.

Valid values are not restated by hand: each key is *probed*. The generator builds the config through the
same ``from_dict`` a YAML file or ``--set`` goes through, once per probe value (ints -1, 0, 1, 2; floats -1,
0, 0.5, 1, 2; an unknown string; an empty list), and prints the messages of the checks that refused a probe,
in the checks' own words. A bound added to a ``__post_init__`` therefore reaches the page at the next
``semid docs generate``, and a key whose values are not checked when the config is read says so.

Example::

    >>> from semid.rqvae.config import ModelConfig
    >>> row = config_rows(ModelConfig)[0]
    >>> row.key, row.default, row.valid, row.about
    ('levels', '8', 'model.levels must be >= 1', 'L: codes per item')
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import io
import json
import re
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

from semid.core.config import ConfigFieldError, from_dict, to_dict
from semid.core.errors import SemidError

_STR_PROBE = "?"
_NOT_CHECKED = "not checked when the config is read"


@dataclass(frozen=True)
class ConfigRow:
    """One key of a config: dotted path, type, default (as YAML would write it), valid values, comment."""

    key: str
    type: str
    default: str
    valid: str
    about: str


def field_comments(cls: type) -> dict[str, str]:
    """field name -> the comment on its line and the comment lines right above it, from ``cls``'s source."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # defined where there is no source file (an interactive session)
        return {}
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, whole line)
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip().strip("-").strip()
            comments[tok.start[0]] = (text, tok.line.strip().startswith("#"))
    node = ast.parse(src).body[0]
    assert isinstance(node, ast.ClassDef)
    out = {}
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            above, line = [], stmt.lineno - 1
            while line in comments and comments[line][1]:
                above.insert(0, comments[line][0])
                line -= 1
            end = stmt.end_lineno or stmt.lineno
            trailing = [comments[n][0] for n in range(stmt.lineno, end + 1) if n in comments and not comments[n][1]]
            out[stmt.target.id] = " ".join(t for t in above + trailing if t)
    return out


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _probes(tp: Any) -> list[Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _probes(args[0]) if len(args) == 1 else [_STR_PROBE]
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        return [[]] + [[p] for p in _probes(inner)[:2]]
    if tp is bool:
        return []
    if tp is int:
        return [-1, 0, 1, 2]
    if tp is float:
        return [-1.0, 0.0, 0.5, 1.0, 2.0]
    if tp is str:
        return [_STR_PROBE]
    return []


def _message(err: Exception, path: str, probe: Any) -> str:
    if isinstance(err, ConfigFieldError):
        text = err.problem
        blamed = err.field
        if blamed and blamed != path and not path.startswith(blamed + ".") and not text.startswith(blamed):
            text = f"{blamed}: {text}"
    else:
        text = str(err)
    text = re.sub(r"\s*\(got [^()]*(\([^()]*\))?[^()]*\)", "", text)  # the probe's value is not the rule
    for shown in (repr(probe), json.dumps(probe)):
        text = text.replace(f", got {shown}", "").replace(f" ({shown})", "").replace(f"{shown}: ", "")
        text = text.replace(f"{shown} ", "")
    return text.strip()


def _set(data: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """A copy of ``data`` with the key at ``path`` set (``name[]`` steps into a list's first element)."""
    out = copy.deepcopy(data)
    node: Any = out
    for part in path[:-1]:
        node = node[part.removesuffix("[]")][0] if part.endswith("[]") else node[part]
    node[path[-1]] = value
    return out


def config_rows(cls: type, base: dict[str, Any] | None = None,
                build: Callable[[dict[str, Any]], object] | None = None,
                skip: tuple[str, ...] = ()) -> list[ConfigRow]:
    """One row per key of dataclass ``cls`` (nested dataclasses flattened to dotted keys; a list of
    dataclasses as ``key[].field``). ``base`` is a valid mapping to probe from (default: the dataclass
    defaults); ``build`` turns a mapping into the config (default ``from_dict(cls, ...)``), so that the
    checks of every enclosing config run too. Keys in ``skip`` get a row but no probes."""
    base = to_dict(cls()) if base is None else base
    build = build or (lambda d: from_dict(cls, d, where=""))
    build(base)  # the base must be valid, or every probe would report its error
    rows: list[ConfigRow] = []
    _walk(cls, base, [], build, skip, rows)
    return rows


def _walk(cls: type, base: dict[str, Any], prefix: list[str], build: Callable[[dict[str, Any]], object],
          skip: tuple[str, ...], rows: list[ConfigRow]) -> None:
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    node: Any = base
    for part in prefix:
        node = node[part.removesuffix("[]")][0] if part.endswith("[]") else node[part]
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        tp = hints[f.name]
        path = prefix + [f.name]
        key = ".".join(path)
        if dataclasses.is_dataclass(tp):
            _walk(tp, base, path, build, skip, rows)  # type: ignore[arg-type]
            continue
        (inner, *_) = typing.get_args(tp) or (None,)
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(inner):
            element = to_dict(inner())  # type: ignore[operator]
            rows.append(ConfigRow(key, f"list of {inner.__name__}", _json(node.get(f.name)),  # type: ignore[union-attr]
                                  "a list of mappings with the keys below", comments.get(f.name, "")))
            with_one = _set(base, path, [element])
            _walk(inner, with_one, prefix + [f.name + "[]"], build, skip, rows)  # type: ignore[arg-type]
            continue
        messages: list[str] = []
        for probe in ([] if key in skip else _probes(tp)):
            try:
                build(_set(base, path, probe))
            except (SemidError, ValueError, TypeError) as e:  # ConfigFieldError is both; synth raises SemidError
                msg = _message(e, key, probe)
                if msg not in messages:
                    messages.append(msg)
        if tp is bool:
            valid = "true or false"
        elif key in skip:
            valid = ""
        else:
            valid = "; ".join(messages) or _NOT_CHECKED
        rows.append(ConfigRow(key, _type_name(tp), _json(node.get(f.name)), valid, comments.get(f.name, "")))


def _json(value: Any) -> str:
    """A default as YAML/JSON writes it (a nested config object as its mapping)."""
    return json.dumps(value, default=lambda o: to_dict(o) if dataclasses.is_dataclass(o) else str(o))


def _cell(s: str) -> str:
    s = s.replace("``", "`")  # docstrings and comments write RST literals
    return " ".join(s.split()).replace("|", "\\|").replace("<", "&lt;")


def rows_markdown(rows: list[ConfigRow]) -> list[str]:
    """A Markdown table of ``rows``."""
    lines = ["| key | type | default | valid values | what it is |", "|---|---|---|---|---|"]
    lines += [f"| `{r.key}` | `{_cell(r.type)}` | `{_cell(r.default)}` | {_cell(r.valid)} | {_cell(r.about)} |"
              for r in rows]
    return lines + [""]


def _doc(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    if doc.startswith(f"{cls.__name__}("):  # the signature dataclasses write when there is no docstring
        return ""
    return _cell(doc.split("\n\n")[0]).removesuffix("::").removesuffix(":") + "."


@dataclass(frozen=True)
class Section:
    """One config file family of the page: its dataclass, where it is written and how it is probed."""

    title: str
    cls: Callable[[], type]  # imported when the page is made: the rooms load only when asked
    where: str
    base: Callable[[], dict[str, Any]] | None = None
    build: Callable[[dict[str, Any]], object] | None = None
    skip: tuple[str, ...] = ()
    intro: str = ""


def _rqvae() -> type:
    from semid.rqvae.config import RqvaeConfig

    return RqvaeConfig


def _synth() -> type:
    from semid.datamodules.synth import SynthConfig

    return SynthConfig


def _experiment() -> type:
    from semid.study.experiment import ExperimentConfig

    return ExperimentConfig


def _rank_fit() -> type:
    from semid.rankers.config import RankFitConfig

    return RankFitConfig


def _rank_base() -> dict[str, Any]:
    from semid.embeddings.hashing import HashConfig

    return to_dict(_rank_fit()(representation=HashConfig()))


def _rank_build(data: dict[str, Any]) -> object:
    from semid.embeddings.hashing import HashConfig

    return from_dict(_rank_fit(), {**data, "representation": HashConfig()}, where="")


def _representation_sections() -> list[Section]:
    """One section per ``kind``. A kind without usable defaults (a hybrid needs parts, a random-SID
    representation its base) is probed from its first preset in ``conf/embeddings``."""
    from semid.core.config import CONF_DIR, load_yaml
    from semid.embeddings.registry import KINDS, load_representation_config

    out = []
    for kind, (cls, _factory) in KINDS.items():
        skip = ("parts", "base", "kind")
        try:
            cls()
        except (SemidError, ValueError, TypeError):
            preset = next(p for p in sorted((CONF_DIR / "embeddings").glob("*.yaml")) if load_yaml(p).get("kind") == kind)
            cfg = load_representation_config(preset.stem)
            kept = {k: getattr(cfg, k) for k in skip if hasattr(cfg, k)}
            out.append(Section(f"`kind: {kind}`", lambda c=cls: c, "conf/embeddings/*.yaml",
                               base=lambda c=cfg, k=kept: {**to_dict(c), **k},
                               build=lambda d, c=cls, k=kept: from_dict(c, {**d, **k}, where=""), skip=skip,
                               intro=f"Defaults as in `conf/embeddings/{preset.name}` (this kind has no defaults "
                                     "for all its keys)."))
        else:
            out.append(Section(f"`kind: {kind}`", lambda c=cls: c, "conf/embeddings/*.yaml", skip=skip))
    return out


SECTIONS: tuple[Section, ...] = (
    Section("Stage 1: the quantizer (`RqvaeConfig`)", _rqvae,
            "`conf/rqvae/*.yaml`; `semid sids train --config NAME --set model.levels=4`"),
    Section("Ranker fits (`RankFitConfig`)", _rank_fit,
            "`conf/ranker/*.yaml`; `semid rank fit --set optim.table.lr=0.1`, an experiment's `ranker_overrides`",
            base=_rank_base, build=_rank_build, skip=("representation",),
            intro="`representation` names a `conf/embeddings` preset, a YAML path or an inline mapping with a "
                  "`kind` (the keys of each kind are under [Representations](#representations))."),
    Section("Synthetic corpus (`SynthConfig`)", _synth,
            "`conf/data/*.yaml`; `semid data synth --preset small --set memorization_share=0.8`, an experiment's "
            "`corpus.synth_overrides`"),
    Section("Experiment (`ExperimentConfig`)", _experiment,
            "`conf/experiment/*.yaml`; `semid experiment --preset small --set seeds=[0,1,2]`"),
)


def config_page() -> str:
    """The configuration reference page (Markdown)."""
    lines = ["# Configuration keys", "",
             "*Generated from the config dataclasses by `semid docs generate`.* Defaults are the dataclass "
             "defaults; a preset in `conf/` sets some of them differently (`base:` chains a preset onto another). "
             "**Valid values** are the messages of the checks that run when a config is read, in their own words: "
             "each key was set to a few probe values (-1, 0, 0.5, 1, 2, an unknown name, an empty list) and each "
             "refusal is listed. \"" + _NOT_CHECKED + "\" means no probe was refused (a name is resolved later, "
             "for example a preset that must exist). Any key can be set with `--set key=value` (YAML syntax: "
             "`--set seeds=[0,1,2]`); an unknown key is refused with the list of valid ones.", ""]
    for s in SECTIONS:
        cls = s.cls()
        lines += [f"## {s.title}", "", f"Where: {s.where}.", ""]
        if _doc(cls):
            lines += [_doc(cls), ""]
        if s.intro:
            lines += [s.intro, ""]
        base = s.base() if s.base else None
        lines += rows_markdown(config_rows(cls, base, s.build, s.skip))
    lines += ["## Representations", "",
              "Where: `conf/embeddings/*.yaml` (one file per representation; `name` defaults to the file name). "
              "`kind` picks the dataclass; `hybrid` lists `parts` (each a representation mapping), `random_sid` "
              "names its `base` (an ngram, prefix_ngram or spm preset or mapping).", ""]
    for s in _representation_sections():
        cls = s.cls()
        lines += [f"### {s.title}", ""]
        if _doc(cls):
            lines += [_doc(cls), ""]
        if s.intro:
            lines += [s.intro, ""]
        lines += rows_markdown(config_rows(cls, s.base() if s.base else None, s.build, s.skip))
    return "\n".join(lines).rstrip() + "\n"
