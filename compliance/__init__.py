"""Compliance: the gates every money path passes through, as pure decisions over reads.

`compliance.gates` holds the one ordered list of gates and `check`; each gate lives in the
module of its concern (core, limits, geolocation, kyc, debt). Changes of state that the gates
read (limits, exclusions, reservations, geolocation checks) are made by `commands/`.
Must never: write audit records, outbox events or any row; import `commands`.
"""
