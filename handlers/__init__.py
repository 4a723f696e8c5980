"""Chat commands and card actions: parse → call core → return neutral replies."""

# Importing a module registers its commands and card actions.
from handlers import approvals as _approvals  # noqa: F401
from handlers import counts as _counts  # noqa: F401
from handlers import documents as _documents  # noqa: F401
from handlers import help as _help  # noqa: F401
from handlers import picking as _picking  # noqa: F401
from handlers import stock as _stock  # noqa: F401
