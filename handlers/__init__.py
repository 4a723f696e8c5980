"""Chat commands and card actions: parse → call core → return neutral replies."""

import importlib
import pkgutil

# Importing a module registers its commands and card actions: every module of this package is imported, in name
# order, so a new capability is one new module (registry, help and the other helpers register nothing).
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
