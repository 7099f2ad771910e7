"""Typed configs of the training scripts (CleanRL-style dataclasses): command-line help.

Also the settings check of the jobs that resume a saved run (segmenter training, translator
selection, the demo).
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterable, Mapping
import dataclasses
import inspect
from typing import Any


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of dataclass ``cls`` (the string under each field), for ``--help``.

    Ready for argparse: ``%`` is escaped, since argparse %-formats help strings and a docstring
    that says "36 %" would otherwise crash ``--help``. Empty when the source is not available
    (a zipped install): the flags still work.
    """
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = nxt.value.value.replace('%', '%%')
    return docs


_TYPES = {'int': int, 'float': float, 'str': str, 'bool': bool}


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--kebab-name`` flag per field of dataclass ``cls``, its docstring as help.

    Booleans get ``--x/--no-x``; other fields parse as their annotated scalar type, so
    ``cls(**vars(parser.parse_args()))`` builds the config.
    """
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        flag = '--' + f.name.replace('_', '-')
        typ = f.type if isinstance(f.type, type) else _TYPES.get(str(f.type), type(f.default))
        if typ is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=docs.get(f.name, ''))
        else:
            parser.add_argument(flag, type=typ, default=f.default, help=docs.get(f.name, ''))


def setting_differences(saved: Mapping[str, Any], wanted: Mapping[str, Any],
                        keys: Iterable[str]) -> str:
    """Where a saved run's settings differ from this run's, over ``keys``.

    ``'key=saved vs wanted, ...'``, or ``''`` where they agree: a resumed job refuses to mix
    figures or weights made under other settings, and says which.
    """
    return ', '.join(f'{k}={saved.get(k)!r} vs {wanted[k]!r}' for k in keys
                     if saved.get(k) != wanted[k])
