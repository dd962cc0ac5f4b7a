"""The fleet store: every kernel's journal shipped to one PostgreSQL database (psycopg 3).

``schema`` holds the store's forward-only migrations, ``store`` the connection, the ingest with its
chain check and the comparison used by ``audit verify --against``. See docs/fleet.md.
"""
