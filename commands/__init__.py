"""Business commands: the one place that changes state.

One module per capability (players, deposits, withdrawals, kyc, second_factor, bets,
settlement, limits, geolocation, api_keys). A command takes the caller's connection (its
transaction), writes the state rows through `store/`, posts to the ledger where money moves, and
writes the audit record (`audit.record`) and outbox event (`outbox.emit`) of the change in that
same transaction, so all of it commits together or not at all. API routes and activities call
commands; nothing else writes audit or outbox records (an import-linter contract keeps it so).
Must never: open its own transaction, talk to a provider over the network, or start a workflow.
"""
