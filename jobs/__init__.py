"""Scheduled jobs: importing this package registers every job module in it (registry.JOBS)."""

import importlib
import pkgutil

_INFRA = {"registry", "context", "config", "runner", "scheduler", "wiring"}
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in _INFRA:
        importlib.import_module(f"{__name__}.{_module}")
