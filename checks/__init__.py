"""Read-only consistency checks over the database, each invariant stated in words beside the
logic that proves it (the style of ledger/check.py). The CLI's check commands print them.

    checks/settlement.py   `settlepay settlement verify MARKET`: a market's payouts against
                           the ledger

Must never: write anything (a check reads the caller's snapshot and reports).
"""
