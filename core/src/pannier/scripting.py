"""Script engines: the languages filters, transformers and channel scripts are written in.

Python is built in (registered by core through ``pannier_register_script_engines`` like any
plugin); other languages — Mirth's JavaScript, to run imported Mirth channels unchanged — come
as plugins. An engine compiles a script once, at deploy, into a function the kernel calls per
message with keyword arguments (the names in scope: ``msg``, ``channel_map``...).
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

ScriptFunction = Callable[..., Any]


class ScriptError(Exception):
    """A script cannot be compiled or has no engine; the text names the element."""


@dataclass(frozen=True)
class ScriptEngineSpec:
    """A script language a plugin provides, named as channels name it (``"python"``,
    ``"javascript"``; lower case)."""

    language: str
    compile: Callable[[str, Sequence[str], str, bool], ScriptFunction]
    """``compile(code, names, where, verdict)`` returns a function taking the ``names`` as
    keyword arguments and returning the script's result. With ``verdict`` the code is a
    filter rule whose result is its accept/reject answer. Raises :class:`ScriptError` naming
    ``where`` when the code cannot compile."""
    description: str = ""


def compile_python(code: str, names: Sequence[str], where: str, verdict: bool) -> ScriptFunction:
    """Python: statements (``return`` gives the result) or, for a rule, an expression."""
    body = code
    if verdict:
        try:
            ast.parse(code.strip(), mode="eval")
            body = f"return ({code.strip()})"
        except SyntaxError:
            body = code
    source = f"def __script({', '.join(names)}):\n{textwrap.indent(body, '    ')}\n    pass\n"
    namespace: dict[str, Any] = {}
    try:
        exec(compile(source, f"<{where}>", "exec"), namespace)
    except SyntaxError as exc:
        raise ScriptError(f"{where}: {exc.msg} (line {exc.lineno})") from None
    function: ScriptFunction = namespace["__script"]
    return function


PYTHON = ScriptEngineSpec("python", compile_python, "Python, built into the kernel")
