"""`settlepay settlement verify <market>`: print what checks/settlement.py verifies about a
market (each invariant in words) and every difference it finds. Exit 1 on any difference.

Read-only: one REPEATABLE READ snapshot, nothing is written.
"""

from __future__ import annotations

import argparse

from checks import settlement as settlement_checks
from settlepay.cli_commands import USAGE, NoDatabase, in_one_snapshot, report
from settlepay.config import get_settings


def settlement_verify(args: argparse.Namespace) -> int:
    try:
        checked, found = in_one_snapshot(
            lambda conn: settlement_checks.run(conn, get_settings(), args.market_id))
    except NoDatabase:
        return USAGE
    return report(f"settlement verify {args.market_id}",
                  [words for words, _ in settlement_checks.CHECKS], found, "DIFFERENCE",
                  f"{checked} bets, payouts match the ledger",
                  f"{len(found)} difference(s) in {checked} bets")
