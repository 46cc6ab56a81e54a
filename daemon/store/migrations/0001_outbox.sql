-- The durable outbox: one row per message (kit, step, partner, contact), from the moment the
-- planner expands a step until the row reaches a final state. Dispatchers lease rows by moving
-- them to 'sending'; see docs/schema.md for the state machine.
CREATE TABLE outbox (
  id               bigserial PRIMARY KEY,
  -- kit/step/partner/email without the kit version: a new version never re-sends a step.
  idem_key         text NOT NULL UNIQUE,
  kit_id           text NOT NULL,
  kit_version      integer NOT NULL,
  step_id          text NOT NULL,
  partner_id       text NOT NULL,
  channel          text NOT NULL CHECK (channel IN ('email', 'webhook')),
  email            text NOT NULL,
  -- the contact row as JSON text, read back verbatim at send time; text, not jsonb, because
  -- nothing queries inside it and jsonb would parse it on insert and print it on every claim
  contact          text NOT NULL,
  state            text NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'bounced',
                                    'suppressed', 'expired')),
  attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  due_at           timestamptz NOT NULL,
  lease_owner      text,
  lease_until      timestamptz,
  -- Set once a lease of this row expired mid-send: the message may have gone out twice.
  reclaimed        boolean NOT NULL DEFAULT false,
  last_error       text,
  message_id       text,
  rendered_version integer,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  sent_at          timestamptz,
  -- A lease exists exactly while a row is being sent.
  CONSTRAINT outbox_lease_iff_sending
    CHECK ((state = 'sending') = (lease_owner IS NOT NULL AND lease_until IS NOT NULL))
);

-- The two halves of claim(): due queued rows in order, and leases that ran out.
CREATE INDEX outbox_due ON outbox (due_at, id) WHERE state = 'queued';
CREATE INDEX outbox_lease ON outbox (lease_until) WHERE state = 'sending';
-- Results per kit and partner (index-only scans for delivery counts).
CREATE INDEX outbox_kit_partner_state ON outbox (kit_id, partner_id, state);
-- Bounce, complaint and lead reports name the Message-ID channeld set.
CREATE INDEX outbox_message_id ON outbox (message_id) WHERE message_id IS NOT NULL;

-- Everything that happened to a message, one row per event, append-only. Today: the outcome of
-- each attempt (sent, retry, failed, bounced, suppressed, expired, deferred). Tracking adds
-- kinds such as opened, clicked and complained against the same outbox row.
CREATE TABLE delivery_event (
  id         bigserial PRIMARY KEY,
  outbox_id  bigint NOT NULL REFERENCES outbox (id),
  at         timestamptz NOT NULL,
  kind       text NOT NULL,
  detail     text NOT NULL DEFAULT '',
  -- the lease owner (host:pid:nonce) that recorded it; '' for events not tied to a send
  recorded_by text NOT NULL DEFAULT ''
);

CREATE INDEX delivery_event_outbox ON delivery_event (outbox_id, at);
CREATE INDEX delivery_event_kind_at ON delivery_event (kind, at);
