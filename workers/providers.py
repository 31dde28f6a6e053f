"""The outside providers a worker process hands to its activities, typed.

`Providers.from_settings` builds every adapter once per process; tests build `Providers` with
adapters pointing at the sandboxes. Building an adapter opens no connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters import gateway, kyc, notify
from adapters.gateway import PaymentGateway
from adapters.kyc import KycProvider
from adapters.notify import Notifier
from settlepay.config import Settings


@dataclass(frozen=True)
class Providers:
    gateway: PaymentGateway
    kyc: KycProvider
    notifier: Notifier

    @classmethod
    def from_settings(cls, settings: Settings) -> Providers:
        return cls(gateway=gateway.from_settings(settings), kyc=kyc.from_settings(settings),
                   notifier=notify.from_settings(settings))
