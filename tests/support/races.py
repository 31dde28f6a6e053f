"""Interleaving two database connections on purpose: a connection named in pg_stat_activity,
whether it is waiting on a lock, and work run in a thread whose outcome the test reads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, text


@contextmanager
def named_connection(engine: Engine, name: str) -> Iterator[Connection]:
    """A connection that pg_stat_activity shows under `name` (reset before it goes back)."""
    with engine.connect() as conn:
        conn.exec_driver_sql(f"SET application_name = '{name}'")
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            conn.exec_driver_sql("RESET application_name")
            conn.commit()


def waiting_on_a_lock(engine: Engine, application_name: str) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("""SELECT count(*) FROM pg_stat_activity
                                          WHERE application_name = :a
                                            AND wait_event_type = 'Lock'"""),
                                 {"a": application_name}).scalar())


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `work` in a thread; the dict gets its "value" or its "error"."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:   # reported by the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome
