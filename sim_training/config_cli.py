"""Command-line help for the training scripts' typed configs (CleanRL-style dataclasses)."""

from __future__ import annotations

import ast
import inspect


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
