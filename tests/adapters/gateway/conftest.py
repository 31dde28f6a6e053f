"""The Stripe adapter's contract runs against our sandbox and localstripe
(tests/support/stripe_servers.py)."""

from tests.support import stripe_servers

sandbox_url = stripe_servers.sandbox_url
sandbox = stripe_servers.sandbox
localstripe_url = stripe_servers.localstripe_url
stripe_server = stripe_servers.stripe_server
