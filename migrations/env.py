"""Alembic environment: hand-written migrations (raw SQL where the database enforces rules)."""

from alembic import context
from sqlalchemy import create_engine, pool

from settlepay.config import get_settings

url = context.config.get_main_option("sqlalchemy.url") or get_settings().sqlalchemy_url
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
