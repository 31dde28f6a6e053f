"""Custom search attributes: what operators filter on in Temporal UI.

Registered at start by `settlepay dev` and by the test fixtures. Upsert them in a workflow at
the step that changes them (e.g. `PaymentState='FAILED'`).
"""

from temporalio.common import SearchAttributeKey

PLAYER_ID = SearchAttributeKey.for_keyword("PlayerId")
AMOUNT = SearchAttributeKey.for_int("Amount")              # minor units
CURRENCY = SearchAttributeKey.for_keyword("Currency")
PAYMENT_STATE = SearchAttributeKey.for_keyword("PaymentState")
MARKET_ID = SearchAttributeKey.for_keyword("MarketId")
SETTLEMENT_PROGRESS = SearchAttributeKey.for_int("SettlementProgress")  # bets settled so far
KYC_STATE = SearchAttributeKey.for_keyword("KycState")
REVIEW_PENDING = SearchAttributeKey.for_keyword("ReviewPending")  # what waits for an operator
WITHDRAWAL_STATE = SearchAttributeKey.for_keyword("WithdrawalState")
RECONCILIATION_VERDICT = SearchAttributeKey.for_keyword("ReconciliationVerdict")

ALL = (PLAYER_ID, AMOUNT, CURRENCY, PAYMENT_STATE, MARKET_ID, SETTLEMENT_PROGRESS, KYC_STATE,
       REVIEW_PENDING, WITHDRAWAL_STATE, RECONCILIATION_VERDICT)


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    flags: list[str] = []
    for key in ALL:
        value_type = key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")
        kind = {"KEYWORD": "Keyword", "INT": "Int"}[value_type]
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags
