"""The API's scopes: the names live in `domain.scopes` (store and commands read them too)."""

from domain.scopes import ALL_SCOPES, OPERATOR_DEFAULT, PARTNER_DEFAULT, Role, Scope, unknown

__all__ = ["ALL_SCOPES", "OPERATOR_DEFAULT", "PARTNER_DEFAULT", "Role", "Scope", "unknown"]
