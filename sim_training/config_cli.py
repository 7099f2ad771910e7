"""Typed configs of the training scripts (CleanRL-style dataclasses): command-line help.

One builder, :func:`add_config_flags`, turns a config dataclass into flags for every training
CLI, with each field's documentation as its ``--help``. A field is documented either by an
attribute docstring (the string literal under it) or by ``#:`` comments (Sphinx style): one at
the end of its line, continued by the ``#:`` comment lines right below it (up to the first
other line), or ``#:`` lines right above a field that has none on its own line. With
``presets``, every flag defaults to None so that :func:`preset_config` can lay the flags a
user gave over the chosen preset's values.

Also the settings check of the jobs that resume a saved run (segmenter training, translator
selection, the demo).
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterable, Mapping
import dataclasses
import inspect
import io
import tokenize
from typing import Any


def _comment_docs(source: str, body: list[ast.stmt]) -> dict[str, str]:
    """``#:`` comments of the annotated fields in a class ``body`` parsed from ``source``."""
    comments = {tok.start[0]: tok.string[2:].strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT and tok.string.startswith('#:')}
    code_lines = {n for node in body for n in range(node.lineno, node.end_lineno + 1)}
    alone = {n for n in comments if n not in code_lines}   # lines holding only a comment
    docs, claimed = {}, set()
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        own = [n for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        if own:   # trailing comment, continued by the comment-only lines below
            n = node.end_lineno + 1
            while n in alone:
                own.append(n)
                n += 1
        else:     # or a block of comment-only lines right above
            n = node.lineno - 1
            while n in alone and n not in claimed:
                own.insert(0, n)
                n -= 1
        claimed.update(own)
        text = ' '.join(comments[n] for n in own if comments[n])
        if text:
            docs[node.target.id] = text
    return docs


def field_docs(cls: type) -> dict[str, str]:
    """Documentation of each field of dataclass ``cls`` (docstring or ``#:``), for ``--help``.

    Ready for argparse: ``%`` is escaped, since argparse %-formats help strings and a docstring
    that says "36 %" would otherwise crash ``--help``. Empty when the source is not available
    (a zipped install): the flags still work.
    """
    try:
        source = inspect.getsource(cls)
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body
    docs = _comment_docs(source, body)
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = nxt.value.value
    return {k: v.replace('%', '%%') for k, v in docs.items()}


_TYPES = {'int': int, 'float': float, 'str': str, 'bool': bool}


def _default_text(name: str, default: Any, presets: Mapping[str, Mapping[str, Any]]) -> str:
    """``(default X; preset P: Y, ...)``: the dataclass default and where a preset differs."""
    own = [f'{p}: {v!r}' for p, values in presets.items()
           for k, v in values.items() if k == name and v != default]
    text = f'default {default!r}' + (f'; preset {", ".join(own)}' if own else '')
    return '(' + text.replace('%', '%%') + ')'


def add_config_flags(parser: argparse.ArgumentParser, cls: type, *,
                     presets: Mapping[str, Mapping[str, Any]] | None = None,
                     exclude: Iterable[str] = (),
                     choices: Mapping[str, Iterable[Any]] | None = None,
                     bare: Mapping[str, Any] | None = None) -> None:
    """One ``--kebab-name`` flag per field of dataclass ``cls``, its documentation as help.

    Booleans get ``--x/--no-x``; other fields parse as their annotated scalar type, so
    ``cls(**vars(parser.parse_args()))`` builds the config (without ``presets``). Fields named
    in ``exclude`` get no flag (e.g. a dict of extras); ``choices`` restricts a field's values;
    ``bare`` gives the value a flag means when given without one (``{'resume': 'auto'}``).

    ``presets``: name -> {field: value}. Every flag then defaults to None, so a parse tells the
    flags given from the rest (:func:`preset_config` builds the config), and each help line
    ends with the dataclass default and the presets that set another value.
    """
    docs = field_docs(cls)
    skip = set(exclude)
    choices = dict(choices or {})
    bare = dict(bare or {})
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = '--' + f.name.replace('_', '-')
        typ = f.type if isinstance(f.type, type) else _TYPES.get(str(f.type), type(f.default))
        help_text = docs.get(f.name, '')
        default = f.default
        if presets is not None:
            help_text = f'{help_text} {_default_text(f.name, f.default, presets)}'.strip()
            default = None
        kw: dict[str, Any] = {'default': default, 'help': help_text}
        if f.name in choices:
            kw['choices'] = list(choices[f.name])
        if f.name in bare:
            kw.update(nargs='?', const=bare[f.name])
        if typ is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            parser.add_argument(flag, type=typ, **kw)


def preset_config(cls: type, args: argparse.Namespace,
                  presets: Mapping[str, Mapping[str, Any]], *, preset_field: str = 'preset',
                  default_preset: str | None = None) -> Any:
    """``cls`` from the chosen preset's values with the flags given (not None) on top.

    For a parser built by :func:`add_config_flags` with ``presets``; the preset is the
    ``preset_field`` flag, else ``default_preset``, else the field's dataclass default.
    """
    given = {k: v for k, v in vars(args).items() if v is not None}
    if default_preset is None:
        default_preset = next(f.default for f in dataclasses.fields(cls)
                              if f.name == preset_field)
    name = given.get(preset_field, default_preset)
    return cls(**{**presets[name], preset_field: name, **given})


def setting_differences(saved: Mapping[str, Any], wanted: Mapping[str, Any],
                        keys: Iterable[str]) -> str:
    """Where a saved run's settings differ from this run's, over ``keys``.

    ``'key=saved vs wanted, ...'``, or ``''`` where they agree: a resumed job refuses to mix
    figures or weights made under other settings, and says which.
    """
    return ', '.join(f'{k}={saved.get(k)!r} vs {wanted[k]!r}' for k in keys
                     if saved.get(k) != wanted[k])
