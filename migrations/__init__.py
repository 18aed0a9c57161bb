"""The project's Alembic migrations, shipped inside the package as `record_deleter.migrations`."""
