"""settlepay/db.py: the engine's pool keeps every connection it opens (up to twice pool_size),
so bursts of concurrent work reuse connections instead of opening a PostgreSQL backend each."""

from __future__ import annotations

import threading

from sqlalchemy import event, text

from settlepay.db import make_engine, max_connections


def test_a_burst_reuses_the_connections_an_earlier_burst_opened(settings):
    engine = make_engine(settings.sqlalchemy_url, pool_size=2, settings=settings)
    opened: list[int] = []
    event.listen(engine, "connect", lambda *_: opened.append(1))
    barrier = threading.Barrier(max_connections(2))

    def work() -> None:
        with engine.connect() as conn:
            barrier.wait(timeout=10)       # all four connections checked out at once
            conn.execute(text("SELECT 1"))

    try:
        for _ in range(3):                 # three bursts of four concurrent checkouts
            threads = [threading.Thread(target=work) for _ in range(max_connections(2))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=20)
            assert not any(thread.is_alive() for thread in threads)
        # The first burst opened four; the later ones found them in the pool.
        assert len(opened) == max_connections(2) == engine.pool.checkedin() == 4
    finally:
        engine.dispose()
