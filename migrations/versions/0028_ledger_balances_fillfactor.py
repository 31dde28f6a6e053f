"""Balance rows are updated in place (issue 16): ledger_balances keeps room in its pages.

Every posting rewrites the balance rows it moves (posted, pending debits / credits: no indexed
column), so PostgreSQL can keep the new version in the same heap page without touching the
primary key index (a heap-only tuple), when the page has room. Balance rows are small and were
packed into full pages (fillfactor 100) as accounts were created, so the updates that followed
mostly went to another page and added an index entry: seeding 40,000 bets of 100,000 players
(a deposit and a stake each, bench/settlement.py) made 501 heap-only updates of 120,008; with
fillfactor 50, 118,666. A market with many players updates most of its players' in-play rows
once per round, each a row that was not touched for a long while.

Measured: ledger_post_many on a captured 5,101-transfer settlement page of that market (one
bet per player per page, as a 1,000,000-bet market of 100,000 players settles), backend
instructions per transfer (callgrind on a private postmaster, 5,101 minus 1,275 transfers,
fresh clone each): 625,015 -> 589,921 (-5.6 %); the lock of its balance rows reads 39,095 ->
17,512 buffers, its balance update writes 7,702 -> 5,625 WAL records. The table is not larger
for it: 13 -> 11 MB after that seeding (the dead versions and index entries of non-HOT updates
took more room than the free space does).

Pages written from now on keep the room; existing ones are not rewritten here (that takes the
table's lock: VACUUM FULL or pg_repack in a maintenance window). Downgrade resets it.
"""

from alembic import op

revision = "0028_ledger_balances_fillfactor"
down_revision = "0027_ledger_post_many_funds"

FILLFACTOR = 50


def upgrade() -> None:
    op.execute(f"ALTER TABLE ledger_balances SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    op.execute("ALTER TABLE ledger_balances RESET (fillfactor)")
