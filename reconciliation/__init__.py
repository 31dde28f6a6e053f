"""Payment reconciliation (issue 11): the gateway, our records and the ledger agree.

    model.py    the records of each side, break classes, verdicts, repairs (plain values)
    engine.py   matching by our own keys and break classification (pure, deterministic)
    sources.py  reading each side: the gateway (SDK lists), our tables and the ledger
    runner.py   one run: read, reconcile, record (commands.reconciliation), auto-repair
    report.py   the report: PNG charts of breaks by class and by day (matplotlib), HTML page
"""
