"""``${...}`` templates in connector properties, as Mirth's Velocity replacement does.

``${name}`` looks ``name`` up in the variables given (message facts such as ``message.messageId``
and the message's maps); a dotted name is tried whole first, then as attribute/key steps. A
name that resolves to nothing is left in place, exactly as Mirth leaves an unknown reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_MISSING = object()


def _lookup(variables: Mapping[str, Any], name: str) -> Any:
    if name in variables:
        return variables[name]
    head, _, rest = name.partition(".")
    value: Any = variables.get(head, _MISSING)
    for part in rest.split(".") if rest else ():
        if value is _MISSING:
            break
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        else:
            value = getattr(value, part, _MISSING)
    return value


def render_template(template: str, variables: Mapping[str, Any]) -> str:
    """Replace every ``${name}`` in ``template`` that ``variables`` can resolve."""
    if "${" not in template:
        return template

    def replace(match: re.Match[str]) -> str:
        value = _lookup(variables, match.group(1))
        return match.group(0) if value is _MISSING or value is None else str(value)

    return _REFERENCE.sub(replace, template)
