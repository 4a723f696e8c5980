"""How every benchmark prints: the table on stdout, or with --json the table on stderr and one JSON object on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(table: str, result: dict[str, Any], as_json: bool) -> None:
    """Print a benchmark's human table and (with --json) its result object."""
    if as_json:
        print(table, file=sys.stderr)
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(table)
