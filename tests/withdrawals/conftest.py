"""Withdrawal tests use the shared KYC + withdrawal stack (tests/kyc/stack.py)."""

from tests.kyc.stack import http, stack, worker  # noqa: F401  (fixtures)
