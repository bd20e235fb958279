"""SQL statements with ``${name}`` values bound as parameters, as Mirth's ``JdbcUtils`` does.

Mirth replaces each ``${...}`` in a Database Reader/Writer statement by a ``?`` placeholder and
binds the value with ``setObject``: a value is never pasted into the SQL text, so a value
holding a quote (or ``'; DROP TABLE x; --``) is stored as it is. Pannier does the same through
SQLAlchemy: each ``${...}`` becomes a bound parameter of a ``text()`` clause. Other colons in
the statement are escaped so that SQLAlchemy does not mistake them for parameters (``'10:30'``
stays text), and ``%`` is doubled by SQLAlchemy for drivers that need it.

Do not put quotes around ``${...}`` (``'${name}'``): it is a parameter, not text, exactly as in
Mirth where ``'?'`` is a literal question mark.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pannier import render_template

_REFERENCE = re.compile(r"\$\{([^}]*)\}")  # Mirth's JdbcUtils.extractParameters pattern
# Exactly the colons SQLAlchemy's text() would read as ":name" parameters.
_BIND_LIKE = re.compile(r"(?<![:\w\\]):(?=\w)")


def _name(index: int) -> str:
    return f"pannier_p{index}"


@dataclass(frozen=True)
class Statement:
    """A statement ready to run: ``clause`` with one bound parameter per ``${...}``."""

    text: str
    """The statement as configured."""
    names: tuple[str, ...]
    """What each ``${...}`` names, in order (a name used twice appears twice)."""
    clause: sa.TextClause

    def parameters(self, values: Sequence[Any]) -> dict[str, Any]:
        """The execute() parameters for ``values`` (one per entry of ``names``)."""
        return {_name(i): value for i, value in enumerate(values)}


def prepare(text: str) -> Statement:
    """Turn ``text`` into a :class:`Statement`."""
    names: list[str] = []
    pieces: list[str] = []
    position = 0
    for match in _REFERENCE.finditer(text):
        before = _BIND_LIKE.sub(r"\\:", text[position : match.start()])
        pieces.append(before)
        # A parameter right after a word character, or right before a colon ("${x}::int"),
        # would not be read as one: a space keeps it apart (SQL does not mind).
        if before and (before[-1].isalnum() or before[-1] in "_:\\"):
            pieces.append(" ")
        pieces.append(f":{_name(len(names))}")
        after = text[match.end() : match.end() + 1]
        if after and (after.isalnum() or after in "_:"):
            pieces.append(" ")
        names.append(match.group(1))
        position = match.end()
    pieces.append(_BIND_LIKE.sub(r"\\:", text[position:]))
    return Statement(text, tuple(names), sa.text("".join(pieces)))


def template_value(name: str, variables: Mapping[str, Any]) -> str:
    """What Mirth's template replacer makes of ``${name}``: the variable as text, or the
    reference itself (``"${name}"``) when nothing by that name is known."""
    return render_template("${" + name + "}", variables)
