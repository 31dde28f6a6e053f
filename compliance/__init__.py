"""Compliance: the gates every money path passes through (see `compliance.gates`).

Importing the package registers every capability's gates (`compliance.registry`), so whoever
calls `compliance.gates.check` gets all of them.
"""

from compliance import registry as _registry

_registry.register()
