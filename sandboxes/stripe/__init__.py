"""A local Stripe-compatible sandbox: `create_app(...)`, or `python -m sandboxes.stripe --port N`.

Used by `settlepay dev` and the tests instead of Stripe. See app.py for the wire format it
speaks and faults.py for what it can be told to do wrong.
"""

from sandboxes.stripe.app import Sandbox, create_app

__all__ = ["Sandbox", "create_app"]
