"""Configuration: every setting comes from an environment variable with the prefix SETTLEPAY_.

One documented prefix (README, docker-compose.yml). The database URL also honours the plain
DATABASE_URL, the name hosting platforms and docker images use. Nothing here reads files or
opens connections: the settings object is a value.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

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

    # --- payment gateway (Stripe or the local Stripe-compatible sandbox) -------------------
    stripe_api_base: str = "http://127.0.0.1:12111"
    stripe_api_key: str = "sk_test_settlepay_sandbox"
    stripe_webhook_secret: str = "whsec_settlepay_sandbox"
    stripe_timeout_seconds: float = 10.0
    sandbox_stripe_port: int = 12111
    # Where the Stripe sandbox POSTs its signed events (the API's webhook route).
    sandbox_stripe_webhook_url: str = "http://127.0.0.1:8000/v1/webhooks/stripe"
    # Where the customer returns after 3-D Secure (the partner's page; shown in next_action).
    deposit_return_url: str = "http://127.0.0.1:8000/deposit-return"
    # How long a deposit waits for the payment webhook before polling the gateway.
    deposit_webhook_wait_seconds: float = 30.0
    deposit_poll_interval_seconds: float = 10.0
    deposit_timeout_seconds: float = 1800.0
    # A payment the gateway cannot cancel at the timeout (processing) keeps its deposit open this
    # long (from the start of the wait), then the deposit goes to operator review.
    deposit_processing_limit_seconds: float = 259_200.0

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
    # Largest return a bet may ever pay (stake included, minor units): a bet whose legs could
    # all win to more than this is refused at intake (422 payout_above_maximum).
    bet_payout_max_minor: int = 10_000_000_000

    # --- sportsbook products: cash-out, free bets, bonus funds (issue 15) -------------------
    # Which funds a cash stake takes first: "cash_first" (player cash, then bonus funds) or
    # "bonus_first" (bonus funds, then player cash). Free bets are staked explicitly.
    bonus_stake_order: Literal["cash_first", "bonus_first"] = "cash_first"
    # A withdrawal requested before a bonus's wagering requirement is met forfeits the bonus.
    bonus_forfeit_on_withdrawal: bool = True
    # Terms of a bonus an operator credits without naming them: wagering requirement as a
    # multiple of the bonus, the lowest price a bet counts at, and how long the bonus lasts.
    bonus_wagering_multiplier: int = 10
    bonus_min_odds: str = "1.50"
    bonus_valid_days: int = 30
    # Operators may reverse a cash-out made on a palpable error.
    cash_out_reversal_enabled: bool = False

    # --- HTTP API (api/) -----------------------------------------------------------------
    # Processes serving the API on one port (api/server.py): `settlepay api` and `make dev`.
    # They share Idempotency-Key records and rate-limit buckets through the database.
    api_processes: int = 2
    # Database connections of one API process (routes run in a thread pool and each holds one).
    api_db_pool_size: int = 8
    # An Idempotency-Key whose first request has run this long without storing its answer is
    # presumed dead (process killed mid-request): a retry may run the request again.
    idempotency_stale_after_seconds: float = 60.0
    # Stored Idempotency-Key answers are pruned once this old (Stripe keeps them 24 hours), by
    # a task of every API process, every idempotency_prune_interval_seconds (api/housekeeping.py).
    idempotency_retention_hours: float = 24.0
    idempotency_prune_interval_seconds: float = 3600.0
    # A request body larger than this is refused (413) before it is read any further.
    api_max_body_bytes: int = 1_048_576
    # Rate limits (api/rate_limits.py): a token bucket per API key, `rate_limit_requests` per
    # `rate_limit_window_seconds` unless the key has its own; per scope where
    # rate_limit_scopes names one ({"deposits:write": {"requests": 20, "window_seconds": 1}}).
    # Buckets are shared by every API process: "postgres" (the database the API uses anyway),
    # "redis" (rate_limit_redis_url) or "off".
    rate_limit_backend: str = "postgres"
    rate_limit_redis_url: str = "redis://127.0.0.1:6379/0"
    rate_limit_requests: int = 100
    rate_limit_window_seconds: int = 1
    rate_limit_scopes: dict[str, dict[str, int]] = {}

    # --- worker process (settlepay worker) ---------------------------------------------------
    # Activities are sync SQLAlchemy code run in a thread pool, one pool per task queue; each
    # running activity may hold a database connection, so threads and pool size go together.
    worker_activity_threads: int = 16
    worker_db_pool_size: int = 8
    # On SIGTERM running activities get this long to finish before the worker cancels them.
    worker_graceful_shutdown_seconds: float = 10.0

    # --- observability (settlepay/observability/) -------------------------------------------
    # Off: no spans, no instrumentation, no business metrics recorded (benchmarks compare both).
    telemetry_enabled: bool = True
    # Where finished spans go: "none" (trace ids still reach logs and Temporal), "otlp" (the
    # collector at otlp_endpoint, OTLP over HTTP) or "console" (stdout, for debugging).
    traces_exporter: str = "none"
    otlp_endpoint: str = "http://127.0.0.1:4318"
    # Head sampling: the share of new traces recorded (ParentBased(TraceIdRatioBased)): a trace
    # started elsewhere keeps its caller's decision. Production default; `make dev` and the
    # tests record every trace (1.0). Unsampled operations still log their trace id.
    traces_sample_ratio: float = 0.01
    # The worker serves Prometheus /metrics here (0: not served); the API serves it on its port.
    worker_metrics_port: int = 9464

    # --- Temporal payload encryption (settlepay/codec.py, settlepay/codec_server.py) ----------
    # Key id -> base64 AES key (16, 24 or 32 bytes): the last one listed encrypts, all decrypt.
    # The default is for development only.
    payload_codec_keys: dict[str, str] = {
        "dev-1": "c2V0dGxlcGF5LWRldi1wYXlsb2FkLWNvZGVjLWtleTA="}
    # `settlepay codec-server`: the Temporal UI decrypts payloads for an operator through it.
    codec_server_port: int = 8234
    # Bearer token the codec server requires (Authorization: Bearer <token>); required to bind
    # anything but loopback. Empty: no token, loopback only (`make dev`).
    codec_server_token: str = ""

    # --- audit anchoring (audit/anchor.py) ----------------------------------------------------
    # The append-only anchor log of the audit chain head, outside the database (production:
    # write-once storage). Empty: `audit anchor` needs --anchors, `audit verify` checks none.
    audit_anchor_path: str = ""

    # --- geolocation (compliance/geolocation.py) --------------------------------------------
    # ISO 3166-2 codes of the jurisdictions the operator is licensed in.
    licensed_jurisdictions: list[str] = ["US-NJ", "US-PA"]
    geolocation_valid_minutes: int = 20
    # Within this distance of a border a check lasts only geolocation_border_valid_minutes.
    geolocation_border_miles: float = 1.0
    geolocation_border_valid_minutes: int = 5
    # Block when the IP geolocates to a country outside the licensed jurisdictions.
    geolocation_ip_country_must_match: bool = True
    # MaxMind DB files: empty city path = the GeoLite2-City shipped by maxminddb-geolite2;
    # the anonymous path is a licensed GeoIP2 Anonymous IP database (VPN/hosting/Tor flags).
    geoip_city_db_path: str = ""
    geoip_anonymous_db_path: str = ""
    # Ranges blocked as anonymous/VPN/hosting on top of the databases (CIDR strings).
    geoip_anonymous_cidrs: list[str] = []

    # --- responsible gaming (compliance/limits.py, commands/limits.py) -----------------------
    # A looser deposit limit takes effect only after this cool-off; a tighter one at once.
    deposit_limit_cool_off_hours: int = 24

    # --- KYC, 2FA and withdrawals (issue 5) ------------------------------------------------
    # Minimum age per jurisdiction; jurisdictions not listed use kyc_default_min_age.
    kyc_min_age_by_jurisdiction: dict[str, int] = {"US-NJ": 21, "US-PA": 21, "US-NY": 21,
                                                   "US-MI": 21, "US-IL": 21, "US-CO": 21,
                                                   "GB": 18}
    kyc_default_min_age: int = 21
    # Screening list (CSV: name,list,reference). Empty = the small list shipped for development.
    sanctions_list_path: Path | None = None
    # rapidfuzz score (0-100) above which a name match goes to operator review.
    sanctions_match_threshold: float = 88.0
    # How long the KYC workflow waits for the provider's webhook (and for a resubmitted document).
    kyc_document_timeout_seconds: float = 86_400.0
    # No verdict webhook this long after a document: ask the provider for the check (again each
    # interval, until the document timeout), in case the webhook was lost.
    kyc_verdict_poll_seconds: float = Field(900.0, gt=0)
    kyc_max_document_attempts: int = 3
    kyc_provider: str = "sandbox"
    # Key for the TOTP secrets at rest (Fernet, urlsafe base64 of 32 bytes) and for the one-time
    # withdrawal codes (HMAC). The defaults are for development only.
    totp_encryption_key: str = "c2V0dGxlcGF5LWRldi10b3RwLWtleS0wMDAwMDAwMDA="
    otp_code_secret: str = "settlepay-dev-otp-code-secret"
    totp_issuer: str = "settlepay"
    withdrawal_2fa_timeout_seconds: float = 600.0
    withdrawal_2fa_max_attempts: int = 3
    # Withdrawals above this amount (minor units) wait for an operator's approval.
    withdrawal_approval_threshold_minor: int = 500_000
    # The gateway (clearing account owner `gateway:<provider>`) withdrawals are paid through.
    withdrawal_gateway_provider: str = "stripe"
    # First wait before asking the gateway again about a pending refund/payout (then doubling).
    withdrawal_payout_poll_seconds: float = 5.0

    # --- payment reconciliation (reconciliation/, commands/reconciliation.py) ----------------
    # An item whose latest activity is younger than this is pending, not a break.
    reconciliation_grace_seconds: int = 900
    # A withdrawal still open (its hold on the player's cash) this long is a break.
    reconciliation_hold_max_seconds: int = 259_200
    # The daily run: a Temporal Schedule the worker creates (idempotently) at start; cron in UTC.
    reconciliation_schedule_enabled: bool = True
    reconciliation_schedule_cron: str = "30 2 * * *"

    # --- partner webhooks (webhooks/, commands/webhooks.py) --------------------------------
    # Waits before the 2nd, 3rd, ... attempt of a delivery (the first is immediate): a message
    # gets 1 + len(schedule) attempts. Each wait is jittered by +- webhooks_retry_jitter_ratio.
    webhooks_retry_schedule_seconds: list[float] = [5, 300, 1800, 7200, 18000, 36000, 50400,
                                                    72000, 86400]
    webhooks_retry_jitter_ratio: float = 0.2
    webhooks_timeout_seconds: float = 15.0
    # A Retry-After on 429 / 502 / 504 is honoured, clamped to this.
    webhooks_retry_after_max_seconds: float = 3600.0
    # An endpoint failing this long with no success is disabled (5 days).
    webhooks_disable_after_failing_seconds: float = 432_000.0
    # Networks (CIDR) a webhook URL may resolve to although they are loopback, private or
    # link-local: none in production; the dev stack and the tests allow 127.0.0.1.
    webhooks_allowed_networks: list[str] = []
    # Fernet key sealing the endpoints' signing secrets at rest; the default is for development.
    webhooks_secret_encryption_key: str = "c2V0dGxlcGF5LWRldi13ZWJob29rLXNlY3JldHMtMDA="
    # Deliveries in flight per dispatcher process, per lane (first attempts; retries).
    webhooks_dispatcher_concurrency: int = 64
    # How often an idle dispatcher looks for new outbox events and due retries.
    webhooks_poll_seconds: float = 0.1
    sandbox_webhook_receiver_port: int = 12114

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
