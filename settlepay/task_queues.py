"""Task-queue names, in one place. Workflows and activities of every capability share one
queue today; settlement batches get their own so a big market cannot starve deposits."""

MAIN = "settlepay"
SETTLEMENT = "settlepay-settlement"

ALL = (MAIN, SETTLEMENT)
