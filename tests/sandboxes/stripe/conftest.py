"""The Stripe sandbox, served over real HTTP (tests/support/stripe_servers.py)."""

from tests.support import stripe_servers

sandbox_url = stripe_servers.sandbox_url
sandbox = stripe_servers.sandbox
