"""The one list of capability gates, appended to `compliance.gates.GATES` at import.

Each entry names a module and a gate function in it (`(conn, settings, GateRequest) ->
GateDecision | None`). Order matters: cheap, certain checks first; the first refusal wins.
Capabilities add ONE line here for each gate they own. `register()` is idempotent, so
importing `compliance` twice (tests, reloads) never runs a gate twice.
Must never: hold gate logic itself.
"""

from __future__ import annotations

import importlib

# (module, gate function). Core gates (player active, currency, amount bounds) live in gates.py.
GATE_FUNCTIONS: list[tuple[str, str]] = [
    ("compliance.responsible_gaming", "exclusion_gate"),      # self-exclusion, time-out
    ("compliance.geolocation", "geolocation_gate"),           # a valid location check on record
    ("compliance.responsible_gaming", "deposit_limit_gate"),  # advisory: the reservation decides
    ("compliance.kyc", "kyc_gate"),                          # withdrawals: identity verified
    ("compliance.debt", "debt_gate"),                        # withdrawals: no open debt
]


def register() -> None:
    from compliance import gates

    for module_name, function in GATE_FUNCTIONS:
        gate = getattr(importlib.import_module(module_name), function)
        if gate not in gates.GATES:
            gates.GATES.append(gate)
