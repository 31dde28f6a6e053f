"""The chaos workload's own setup write (a player's location on record) outlives a PostgreSQL
that drops its connections, as every client of the run must: the chaos run (seed 1) failed
one journey on `AdminShutdown` when PostgreSQL was SIGKILLed under it."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from chaos.proxy import FaultProxy, Upstream
from chaos.workload import located
from tests.support.factories import make_player


def test_a_location_is_recorded_once_across_dropped_connections(engine: Engine,
                                                                database_url: str) -> None:
    player = make_player(engine, located=False, purpose="chaos locate")
    url = make_url(database_url)
    proxy = FaultProxy("postgres", Upstream(port=url.port or 5432), seed=1)
    port = proxy.start()
    try:
        locate = located(url.set(drivername="postgresql+psycopg", host="127.0.0.1",
                                 port=port).render_as_string(hide_password=False))
        proxy.set_faults(reset=True)              # every connection cut, as PostgreSQL dies
        done = threading.Event()
        worker = threading.Thread(target=lambda: (locate(player.id), done.set()))
        worker.start()
        time.sleep(1.5)
        assert not done.is_set()                  # it waits for the database, not fails
        proxy.clear()                             # PostgreSQL is back
        worker.join(30)
        assert done.is_set()
    finally:
        proxy.stop()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM geolocation_checks"
                                 " WHERE player_id = :p AND provider = 'chaos'"),
                            {"p": player.id}).scalar_one()
    assert rows == 1
