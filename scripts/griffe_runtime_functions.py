"""A Griffe extension (mkdocs.yml, mkdocstrings' ``extensions``) for the API reference: a public function
made at import time is read from the imported module.

``nst_jax.perceptual_loss = _total_of(perceptual_terms)`` gets its name and docstring when the module runs;
static analysis, which the rest of the reference uses, sees an attribute with no docstring. Such a name
(exported, a call's result, no docstring) is replaced by what inspecting the imported module finds, when
that is a function with a docstring. Only modules that have one are imported.
"""

from __future__ import annotations

import griffe


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
        modules = [pkg]
        while modules:
            module = modules.pop()
            modules.extend(m for m in module.modules.values() if not m.is_alias)
            names = made_at_import(module)
            if not names:
                continue
            inspected = griffe.inspect(module.path)
            for name in names:
                function = inspected.members.get(name)
                if function is not None and function.is_function and function.docstring is not None:
                    function.lineno = module.members[name].lineno
                    module.set_member(name, function)
