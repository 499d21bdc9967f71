"""A package face whose names are imported when first used (PEP 562).

`import gankit` or `import gankit.analysis` then costs next to nothing, and importing a leaf
(`gankit.sampling`) does not drag in the trainer, matplotlib or scikit-learn.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, namespace: dict[str, Any], names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, given name -> relative module.

    The first lookup of a name imports its module and stores the value in `namespace` (the
    package's globals), so later lookups are ordinary ones.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
