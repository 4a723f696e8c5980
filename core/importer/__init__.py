"""Excel/CSV import of products, warehouses, users and opening stock: validate every row, then write all or nothing."""

from core.importer.demo import DEMO_DIR, load_demo
from core.importer.results import ImportFailed, ImportReport, RowError
from core.importer.run import import_file
from core.importer.specs import COLUMNS, KINDS, Column, header
from core.importer.template import write_template

__all__ = [
    "COLUMNS",
    "DEMO_DIR",
    "KINDS",
    "Column",
    "ImportFailed",
    "ImportReport",
    "RowError",
    "header",
    "import_file",
    "load_demo",
    "write_template",
]
