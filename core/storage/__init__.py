"""Storage: the one Database interface (and its prepared statements); the SQLite speed code stays behind it."""

from core.storage.database import Database, is_retryable, savepoint
from core.storage.fastsql import Fast
from core.storage.orm_rows import loaded, with_defaults

__all__ = ["Database", "Fast", "is_retryable", "loaded", "savepoint", "with_defaults"]
