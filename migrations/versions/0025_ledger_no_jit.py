"""Ledger functions run without JIT compilation (issue 16).

The posting functions turn plan types off for their own statements (ledger_post_many:
nested loops and sequential scans; ledger_post: sequential scans, hash and merge joins) and a
function they call inherits those settings. A plan that cannot avoid a disabled node carries
PostgreSQL's disable cost (1e10) in its estimate, far above `jit_above_cost` (100,000) and the
inlining and optimisation thresholds, so PostgreSQL compiles it with LLVM, fully optimised, on
every execution. ledger_ensure_accounts, called by ledger_post_many when a batch names an
account that does not exist yet, joins its new accounts with generate_series (a join only a
nested loop can do): each such batch paid ~1.0 G instructions of LLVM compilation in its
backend (callgrind; ~0.2-0.5 s of CPU) for a statement that inserts a handful of rows. A
settlement's first pages create the house revenue account (each part of the first round
tries), bulk deposits create their players' accounts.

Every statement of these functions touches rows by key or one batch's rows; none runs long
enough for compiled expressions to pay back the compilation. `jit = off` on each function
(callees inherit it) keeps them interpreted whatever the server's JIT settings; the rest of
the database keeps the server's. Downgrade resets the setting.
"""

from alembic import op

revision = "0025_ledger_no_jit"
down_revision = "0024_settlement_posting"

FUNCTIONS = (
    "ledger_post(text, bytea, text, text, text, jsonb, jsonb)",
    "ledger_post_many(jsonb, jsonb)",
    "ledger_ensure_accounts(jsonb)",
    "ledger_hold(text, bytea, text, jsonb, jsonb)",
    "ledger_resolve_hold(text, bytea, text, text, bigint, jsonb)",
    "ledger_lock_hot_shard(bigint, smallint)",
)


def upgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} SET jit = off")


def downgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} RESET jit")
