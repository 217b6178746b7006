"""The CLI reference, generated from the argparse parsers ``semid.cli.build_parser`` builds: one page per
command with its usage and a table of its options, so a new or renamed flag reaches the docs by
``semid docs generate`` (and a stale page fails ``tests/semid/site/test_generated_up_to_date.py``).

Example::

    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="semid")
    >>> sub = p.add_subparsers(dest="command", metavar="COMMAND")
    >>> hello = sub.add_parser("hello", help="say hello")
    >>> _ = hello.add_argument("--times", type=int, default=1, help="how often")
    >>> pages = cli_pages(p)
    >>> sorted(pages)
    ['reference/cli/hello.md', 'reference/cli/index.md']
    >>> "| `--times` | `TIMES` | `1` | how often |" in pages["reference/cli/hello.md"]
    True
"""
from __future__ import annotations

import argparse
import functools
import html
from pathlib import PurePath

CLI_DIR = "reference/cli"
USAGE_WIDTH = 78  # a fixed width: the usage must not depend on the terminal, and fits the page's column


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each sub-command, in registration order.

    argparse keeps these on private attributes (``_actions``, ``_choices_actions``); every argparse
    documentation tool reads them, as there is no public accessor."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            out += [(name, helps.get(name, ""), p) for name, p in action.choices.items()]
    return out


def _text(s: str | None) -> str:
    """Help text as safe Markdown inside a table cell: ``<out>`` must not be read as an HTML tag."""
    return html.escape(" ".join((s or "").split()), quote=False).replace("|", "\\|")


def _code(s: str) -> str:
    # a `|` inside a code span still splits a Markdown table cell, and an escaped one shows its backslash:
    # alternatives become separate code spans
    return " \\| ".join(f"`{part}`" for part in s.split("|"))


def _default(action: argparse.Action) -> str:
    d = action.default
    if action.required:
        return "required"
    if d is None or d is argparse.SUPPRESS or isinstance(action, (argparse._StoreTrueAction,
                                                                  argparse._StoreFalseAction)):
        return ""
    if isinstance(d, PurePath):
        d = str(d)
    if isinstance(d, (list, tuple)):
        return _code(" ".join(map(str, d))) if d else ""
    return _code(str(d))


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return " \\| ".join(_code(str(c)) for c in action.choices)
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    text = " ".join(metavar) if isinstance(metavar, tuple) else str(metavar)
    if action.nargs in ("*", "+"):
        text += " ..."
    return _code(text)


def _help(action: argparse.Action, prog: str) -> str:
    if not action.help or action.help is argparse.SUPPRESS:
        return ""
    params = {**vars(action), "prog": prog}
    params = {k: (v.__name__ if hasattr(v, "__name__") else v) for k, v in params.items()}
    try:
        text = action.help % params  # argparse's own %(default)s expansion
    except (KeyError, TypeError, ValueError):
        text = action.help
    return _text(text)


def _usage(parser: argparse.ArgumentParser) -> str:
    fmt = parser.formatter_class
    parser.formatter_class = functools.partial(fmt, width=USAGE_WIDTH)  # type: ignore[assignment]
    try:
        return parser.format_usage().strip()
    finally:
        parser.formatter_class = fmt


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help is argparse.SUPPRESS:
            continue
        name = ", ".join(_code(o) for o in action.option_strings) or _code(action.dest)
        rows.append(f"| {name} | {_value(action)} | {_default(action)} | {_help(action, parser.prog)} |")
    if not rows:
        return []
    return ["| option | value | default | what it does |", "|---|---|---|---|", *rows, ""]


def _section(parser: argparse.ArgumentParser, help_line: str, depth: int) -> list[str]:
    lines = [f"{'#' * depth} `{parser.prog}`", ""]
    about = parser.description or help_line
    if about:
        lines += [_text(about), ""]
    lines += ["```text", _usage(parser), "```", ""]
    lines += _options_table(parser)
    subs = _subcommands(parser)
    if subs:
        lines += ["| sub-command | what it does |", "|---|---|"]
        lines += [f"| [`{name}`](#{_anchor(p.prog)}) | {_text(h)} |" for name, h, p in subs] + [""]
        for _name, h, p in subs:
            lines += _section(p, h, min(depth + 1, 4))
    return lines


def _anchor(prog: str) -> str:
    """The id Python-Markdown's toc gives the heading `` `semid sids train` ``."""
    return prog.replace(" ", "-").lower()


def cli_pages(parser: argparse.ArgumentParser | None = None) -> dict[str, str]:
    """Markdown pages of the CLI reference, keyed by their path under ``docs/``: an index of the commands
    and one page per top-level command (its sub-commands are sections of that page). ``parser`` defaults
    to the ``semid`` command's own."""
    if parser is None:
        from semid.cli import build_parser  # the CLI module imports every command room: only when asked

        parser = build_parser()
    subs = _subcommands(parser)
    index = ["# Command line", "",
             "Generated from the argparse parsers by `semid docs generate`; `semid COMMAND --help` prints the same.",
             "", _text(parser.description), "",
             "```text", _usage(parser), "```", "", *_options_table(parser),
             "Every command prints one line and exits with code 2 on a user error (`semid --debug ...` shows the "
             "traceback); Ctrl-C and SIGTERM exit with 130 and 143.", "",
             "| command | what it does |", "|---|---|"]
    pages = {}
    for name, help_line, p in subs:
        index.append(f"| [`semid {name}`]({name}.md) | {_text(help_line)} |")
        body = _section(p, help_line, 1)
        body[0] = f"# `{p.prog}`"
        body.insert(2, "*Generated from the argparse parser by `semid docs generate`.*\n")
        pages[f"{CLI_DIR}/{name}.md"] = "\n".join(body).rstrip() + "\n"
    pages[f"{CLI_DIR}/index.md"] = "\n".join(index).rstrip() + "\n"
    return pages
