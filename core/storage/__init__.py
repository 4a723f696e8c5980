"""Storage: the Database interface, migrations and the SQLite speed code behind it."""
