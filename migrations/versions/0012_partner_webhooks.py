"""Partner webhooks (issue 10): endpoints, the partners' events, deliveries and their attempts.

- webhook_endpoints: a partner's URL, its event-type filters, its signing secret (sealed with
  Fernet; during a rotation the previous one too, until `previous_secret_expires_at`), and the
  delivery bookkeeping the dispatcher keeps (failing since, throttled until, rate window).
- webhook_events: what a partner sees at GET /v1/events, made by the dispatcher from
  outbox_events after commit (`outbox_id`), one row per partner concerned; `seq` orders them.
- webhook_messages: one delivery of an event to an endpoint. `scheduled` messages are unique per
  (event, endpoint) and retried on the schedule; `manual` / `recover` resends are messages of
  their own with one attempt. `sending` rows carry a lease (`lease_owner`, `lease_until`).
- webhook_attempts: every HTTP attempt, append-only.
- api_keys: keys holding every scope of their role's default get `webhooks:write`.
"""

from alembic import op

revision = "0012_partner_webhooks"
down_revision = "0011_settlement_safety"

UPGRADE = r"""
CREATE TABLE webhook_endpoints (
    id                          text PRIMARY KEY,
    partner_id                  text NOT NULL,
    url                         text NOT NULL,
    description                 text NOT NULL DEFAULT '',
    event_types                 text[] NOT NULL CHECK (cardinality(event_types) > 0),
    rate_limit_per_minute       integer CHECK (rate_limit_per_minute > 0),
    status                      text NOT NULL DEFAULT 'enabled'
                                CHECK (status IN ('enabled', 'disabled', 'deleted')),
    disabled_reason             text,       -- manual | gone (410) | failing (no success in days)
    secret_sealed               text NOT NULL,
    previous_secret_sealed      text,
    previous_secret_expires_at  timestamptz,
    failing_since               timestamptz,    -- first failure after the last success
    last_success_at             timestamptz,
    throttled_until             timestamptz,    -- after 429 / 502 / 504: nothing sent before
    rate_window_started_at      timestamptz,
    rate_window_count           integer NOT NULL DEFAULT 0,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CHECK ((previous_secret_sealed IS NULL) = (previous_secret_expires_at IS NULL)),
    CHECK ((status = 'disabled') = (disabled_reason IS NOT NULL))
);
CREATE INDEX webhook_endpoints_partner ON webhook_endpoints (partner_id, created_at);

CREATE TABLE webhook_events (
    id           text PRIMARY KEY,
    seq          bigserial UNIQUE NOT NULL,      -- newest first = seq descending
    partner_id   text NOT NULL,
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    occurred_at  timestamptz NOT NULL,           -- when the change committed its outbox event
    outbox_id    bigint,                         -- the domain event it was made from
    endpoint_id  text,                           -- for one endpoint only (webhook.test)
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_partner ON webhook_events (partner_id, seq DESC);
CREATE INDEX webhook_events_outbox ON webhook_events (outbox_id);

CREATE TABLE webhook_messages (
    id               bigserial PRIMARY KEY,
    event_id         text NOT NULL REFERENCES webhook_events (id),
    endpoint_id      text NOT NULL REFERENCES webhook_endpoints (id),
    partner_id       text NOT NULL,
    trigger          text NOT NULL CHECK (trigger IN ('scheduled', 'manual', 'recover')),
    status           text NOT NULL CHECK (status IN ('pending', 'sending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    lease_owner      integer,
    lease_until      timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL)),
    CHECK ((status = 'sending') = (lease_until IS NOT NULL))
);
CREATE UNIQUE INDEX webhook_messages_scheduled_once ON webhook_messages (event_id, endpoint_id)
    WHERE trigger = 'scheduled';
-- Two lanes: first attempts never wait behind retries.
CREATE INDEX webhook_messages_due_first ON webhook_messages (next_attempt_at)
    WHERE status = 'pending' AND attempts = 0;
CREATE INDEX webhook_messages_due_retry ON webhook_messages (next_attempt_at)
    WHERE status = 'pending' AND attempts > 0;
CREATE INDEX webhook_messages_sending ON webhook_messages (lease_owner, lease_until)
    WHERE status = 'sending';
CREATE INDEX webhook_messages_endpoint ON webhook_messages (endpoint_id, status, created_at);

CREATE TABLE webhook_attempts (
    id                    bigserial PRIMARY KEY,
    message_id            bigint NOT NULL REFERENCES webhook_messages (id),
    event_id              text NOT NULL,
    endpoint_id           text NOT NULL,
    partner_id            text NOT NULL,
    trigger               text NOT NULL,
    attempt_number        integer NOT NULL,
    status                text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    response_status_code  integer,              -- NULL: no HTTP answer (timeout, refused, SSRF)
    response_body         text NOT NULL DEFAULT '',    -- the first 20 kB
    error                 text,
    duration_ms           integer NOT NULL,
    started_at            timestamptz NOT NULL,
    next_attempt_at       timestamptz,          -- the message's next try after this one
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id, id DESC);
CREATE TRIGGER webhook_attempts_append_only BEFORE UPDATE OR DELETE ON webhook_attempts
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Keys made with every scope of their role's default before this revision (the dev stack's
-- operator key among them) get the new scope too; keys with a narrower list keep it.
UPDATE api_keys SET scopes = array_append(scopes, 'webhooks:write')
 WHERE NOT ('webhooks:write' = ANY(scopes))
   AND scopes @> CASE role
         WHEN 'operator' THEN ARRAY['players:read', 'players:write', 'deposits:write',
                                    'withdrawals:write', 'bets:write', 'results:write',
                                    'operator:review']
         ELSE ARRAY['players:read', 'players:write', 'deposits:write', 'withdrawals:write',
                    'bets:write'] END;
"""

DOWNGRADE = """
UPDATE api_keys SET scopes = array_remove(scopes, 'webhooks:write');
DROP TABLE webhook_attempts;
DROP TABLE webhook_messages;
DROP TABLE webhook_events;
DROP TABLE webhook_endpoints;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
