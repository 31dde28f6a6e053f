"""A local notification provider for development and tests (`python -m sandboxes.notify`).

POST /v1/messages {to, subject, body} with an Idempotency-Key stores the message (the same key
answers the first message again, nothing is sent twice); GET /_sandbox/outbox?to=... lists what
was "sent", newest last, so a developer (or a test) can read the one-time code. Nothing leaves
the machine. Must never be used in production.
"""

from sandboxes.notify.app import create_app

__all__ = ["create_app"]
