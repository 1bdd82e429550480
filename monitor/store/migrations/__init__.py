"""Alembic migrations of the store (run by :func:`monitor.store.Store.open`)."""
