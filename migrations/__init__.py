"""Alembic migrations of Lethe's database (one environment, ``versions/`` holds the revisions).

A package so that ``app.db.migrate`` can locate it from any working directory.
"""
