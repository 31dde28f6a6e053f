"""Configuration: every setting comes from an environment variable with the prefix SETTLEPAY_.

One documented prefix (README, docker-compose.yml). The database URL also honours the plain
DATABASE_URL, the name hosting platforms and docker images use. Nothing here reads files or
opens connections: the settings object is a value.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SETTLEPAY_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # --- infrastructure -------------------------------------------------------------------
    # Empty means "start the embedded PostgreSQL (pgserver) under data_dir" for `settlepay dev`.
    database_url: str = Field(
        default="",
        validation_alias=AliasChoices("SETTLEPAY_DATABASE_URL", "DATABASE_URL"),
    )
    data_dir: Path = Path(".data")
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    log_level: str = "INFO"
    # Printed by `settlepay dev` and created at start when it does not exist (operator scope).
    dev_api_key: str = "sp_dev_operator_localdevelopmentkey000000"

    # --- money ----------------------------------------------------------------------------
    supported_currencies: list[str] = ["USD", "EUR", "GBP"]
    deposit_min_minor: int = 500  # 5.00
    deposit_max_minor: int = 1_000_000  # 10,000.00
    # Hot accounts (house revenue, gateway clearing) are split into this many balance rows.
    hot_account_shards: int = 16

    # --- payment gateway (Stripe or the local Stripe-compatible sandbox) -------------------
    stripe_api_base: str = "http://127.0.0.1:12111"
    stripe_api_key: str = "sk_test_settlepay_sandbox"
    stripe_webhook_secret: str = "whsec_settlepay_sandbox"
    stripe_timeout_seconds: float = 10.0
    sandbox_stripe_port: int = 12111
    # How long a deposit waits for the payment webhook before polling the gateway.
    deposit_webhook_wait_seconds: float = 30.0
    deposit_poll_interval_seconds: float = 10.0
    deposit_timeout_seconds: float = 1800.0

    # --- KYC, geolocation, notifications ---------------------------------------------------
    kyc_api_base: str = "http://127.0.0.1:12112"
    kyc_webhook_secret: str = "whsec_a3ljc2FuZGJveHNlY3JldGZvcmRldg=="
    sandbox_kyc_port: int = 12112
    notify_api_base: str = "http://127.0.0.1:12113"
    sandbox_notify_port: int = 12113

    # --- settlement ------------------------------------------------------------------------
    resettlement_policy: str = "full"  # "full" | "upgrade_only"
    correction_window_hours: int = 72
    settlement_batch_size: int = 2000

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg 3 driver named, as SQLAlchemy wants it."""
        url = self.database_url
        for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
