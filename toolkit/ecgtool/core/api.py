"""Stage subpackages that are also the stage's main function: `ecgtool.train(...)` next to `ecgtool.train.run`.

The public names of `import ecgtool` (train, evaluate, export, bench, report, search, pipeline) are also
subpackage names, and importing a subpackage binds it as an attribute of `ecgtool`, so a plain function of
that name would be replaced by the module. Instead the subpackage module itself is made callable: calling
it imports the stage's function (lazily: the subpackage stays light) and calls it.
"""

from __future__ import annotations

import importlib
import sys
import types


class _StageModule(types.ModuleType):
    """A subpackage that calls `__stage_function__` ("module:attribute") when called."""

    def __call__(self, *args, **kwargs):
        return self.stage_function()(*args, **kwargs)

    def stage_function(self):
        module, attr = self.__dict__["__stage_function__"].split(":")
        return getattr(importlib.import_module(module), attr)


def make_callable(module_name: str, target: str) -> None:
    """Make the (already imported) module `module_name` callable as the function `target` ("module:attr")."""
    mod = sys.modules[module_name]
    mod.__stage_function__ = target
    mod.__class__ = _StageModule
