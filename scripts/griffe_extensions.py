"""Griffe extensions (mkdocs.yml, mkdocstrings' ``extensions``) for the API reference.

- ``RuntimeFunctions``: a public function made at import time is read from the imported module.
  ``nst_jax.perceptual_loss = _total_of(perceptual_terms)`` gets its name and docstring when the module
  runs; static analysis, which the rest of the reference uses, sees an attribute with no docstring. Such a
  name (exported, a call's result, no docstring) is replaced by what inspecting the imported module finds,
  when that is a function with a docstring. Only modules that have one are imported.
- ``CommentDocstrings``: a module-level constant with no docstring takes the comment that introduces it (the
  ``#`` lines right above its assignment, or a comment at the end of its line), as the code writes them.
- ``PlainRoles``: the docstrings' Sphinx roles (``:class:`LossConfig```, ``:func:`~nst_jax.stylize```) and
  literal-block markers (a line ending ``::``) read as code and a colon in Markdown, not as raw markup.
"""

from __future__ import annotations

import io
import re
import tokenize

import griffe

# :class:`X`, :func:`~a.b.X`, ... -> `X` (the role and the ~ go; the name stays code).
ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`~?")
LITERAL_MARKER = re.compile(r"(?<=\S)::$", re.M)


def plain_markdown(docstring: str) -> str:
    """A docstring's Sphinx roles and ``::`` literal markers made plain Markdown.

    Args:
        docstring: the docstring's text.

    Returns:
        The text with ``:role:`name``` as ```name``` and a line-final ``::`` as ``:``.
    """
    return LITERAL_MARKER.sub(":", ROLE.sub("`", docstring))


def _objects(root: griffe.Object) -> list[griffe.Object]:
    """Every object defined under ``root`` (aliases left out: their targets are visited where defined)."""
    found, stack = [], [root]
    while stack:
        obj = stack.pop()
        found.append(obj)
        stack.extend(m for m in obj.members.values() if not m.is_alias)
    return found


def trailing_comment(line: str) -> str:
    """The comment at the end of a line of code, without its ``#``, or "" (a ``#`` inside a string is no comment)."""
    try:
        for token in tokenize.generate_tokens(io.StringIO(line).readline):
            if token.type == tokenize.COMMENT:
                return token.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):  # the line ends inside a bracket: the statement goes on
        pass
    return ""


def introducing_comment(lines: list[str], lineno: int) -> str:
    """The comment that introduces the statement on line ``lineno`` (1-based): the ``#`` lines right
    above it, else a comment at the end of its line; "" if neither.

    Args:
        lines: the module's source lines.
        lineno: the statement's first line.

    Returns:
        The comment's text, its lines joined with spaces.
    """
    above, index = [], lineno - 2
    while index >= 0 and lines[index].startswith("#"):
        above.insert(0, lines[index].lstrip("#").strip())
        index -= 1
    return " ".join(above) or trailing_comment(lines[lineno - 1])


class CommentDocstrings(griffe.Extension):
    """Gives each module-level constant with no docstring the comment ``introducing_comment`` finds."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: object) -> None:
        """Reads the comments once the package is loaded.

        Args:
            pkg: the loaded package.
            **kwargs: Griffe's other arguments, unused.
        """
        for module in [obj for obj in _objects(pkg) if obj.is_module]:
            for member in module.members.values():  # every one: a public module may re-export it
                if not member.is_alias and member.is_attribute and member.docstring is None and member.lineno:
                    text = introducing_comment(module.lines, member.lineno)
                    if text:
                        member.docstring = griffe.Docstring(text, parent=member, lineno=member.lineno)


class PlainRoles(griffe.Extension):
    """Applies ``plain_markdown`` to every docstring of the package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: object) -> None:
        """Rewrites the docstrings once the package is loaded.

        Args:
            pkg: the loaded package.
            **kwargs: Griffe's other arguments, unused.
        """
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = plain_markdown(obj.docstring.value)


def made_at_import(module: griffe.Module) -> list[str]:
    """The exported names of a module that static analysis cannot document: calls' results, no docstring.

    Args:
        module: a module loaded by static analysis.

    Returns:
        Their names, in the module's order.
    """
    exports = set(module.exports or ())
    return [name for name, member in module.members.items()
            if name in exports and not member.is_alias and member.is_attribute and member.docstring is None
            and isinstance(member.value, griffe.ExprCall)]


class RuntimeFunctions(griffe.Extension):
    """Replaces each name ``made_at_import`` finds with the function that inspecting its module gives."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: object) -> None:
        """Walks the package's modules once it is loaded.

        Args:
            pkg: the loaded package.
            **kwargs: Griffe's other arguments, unused.
        """
        for module in [obj for obj in _objects(pkg) if obj.is_module]:
            names = made_at_import(module)
            if not names:
                continue
            inspected = griffe.inspect(module.path)
            for name in names:
                function = inspected.members.get(name)
                if function is not None and function.is_function and function.docstring is not None:
                    function.lineno = module.members[name].lineno
                    module.set_member(name, function)
