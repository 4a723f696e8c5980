"""Chat commands and card actions: parse → call core → return neutral replies."""

from handlers import help as _help  # noqa: F401  (registers the command)
from handlers import stock as _stock  # noqa: F401
