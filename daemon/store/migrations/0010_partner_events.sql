-- The partner event feed: channeld's own events about a partner's campaign (a message sent,
-- bounced, opened, clicked, unsubscribed from), pushed to that partner's [webhook] url for the
-- partners whose file asks for them ([webhook] events). See docs/formats.md and
-- docs/architecture.md.

-- Which partners want which events, as the partner files say: replaced whenever the daemon
-- loads its partners. The statements that record a fact join it, so a partner with no row here
-- (the feed off) costs no write per message.
CREATE TABLE partner_feed (
  partner_id  text NOT NULL,
  event_type  text NOT NULL
              CHECK (event_type IN ('sent', 'bounced', 'opened', 'clicked', 'unsubscribed')),
  PRIMARY KEY (partner_id, event_type)
);

-- One row per event to push, written in the transaction that records the fact it reports, and
-- leased, retried and failed like a webhook step's outbox row. `event_key` names the fact
-- ("opened:<outbox id>", "clicked:<outbox id>:<link>"), so a fact recorded twice (a second
-- open, a journal replayed after a crash) is one event, and the webhook-id derived from it is
-- the same on every attempt and replay.
CREATE TABLE partner_event (
  id           bigserial PRIMARY KEY,
  event_key    text NOT NULL UNIQUE,
  partner_id   text NOT NULL,
  outbox_id    bigint NOT NULL REFERENCES outbox (id),
  event_type   text NOT NULL,
  -- the JSON body, built when the fact is recorded; sent verbatim on every attempt
  body         text NOT NULL,
  state        text NOT NULL DEFAULT 'queued'
               CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
  attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  due_at       timestamptz NOT NULL,
  lease_owner  text,
  lease_until  timestamptz,
  last_error   text,
  created_at   timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL,
  sent_at      timestamptz,
  CONSTRAINT partner_event_lease_iff_sending
    CHECK ((state = 'sending') = (lease_owner IS NOT NULL AND lease_until IS NOT NULL))
);

CREATE INDEX partner_event_due ON partner_event (due_at, id) WHERE state = 'queued';
CREATE INDEX partner_event_lease ON partner_event (lease_until) WHERE state = 'sending';
CREATE INDEX partner_event_failed ON partner_event (partner_id, updated_at) WHERE state = 'failed';

-- The body of a feed event (docs/formats.md, "Partner event feed"), built by the statements that
-- queue one, so every kind of event has one shape. `link` is only for clicks.
CREATE FUNCTION partner_event_body(kind text, at timestamptz, kit text, step text,
                                   partner text, message_id text, email text, link text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN link IS NULL THEN
    json_build_object('type', kind,
                      'timestamp', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                      'kit', kit, 'step', step, 'partner', partner, 'message_id', message_id,
                      'email', email)::text
  ELSE
    json_build_object('type', kind,
                      'timestamp', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                      'kit', kit, 'step', step, 'partner', partner, 'message_id', message_id,
                      'email', email, 'link', link)::text
  END
$$;

-- The fact an event reports, as partner_event.event_key: "clicked:4711:2". A function, so the
-- statements in daemon/store (bound by name through SOCI, which reads ':' as a parameter) need
-- no ':' literal.
CREATE FUNCTION partner_event_key(kind text, message bigint, fact text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT kind || ':' || message || CASE WHEN fact = '' THEN '' ELSE ':' || fact END
$$;

-- Queues the event `kind` about outbox row `message` if its partner's feed wants that
-- type (else writes nothing) and it is not queued already. `fact` tells apart events of one
-- type about one message (the link of a click); '' for the others. Returns 1 if queued.
CREATE FUNCTION queue_partner_event(kind text, message bigint, fact text,
                                    at timestamptz, link text)
RETURNS integer LANGUAGE sql VOLATILE AS $$
  WITH queued AS (
    INSERT INTO partner_event (event_key, partner_id, outbox_id, event_type, body, due_at,
                               created_at, updated_at)
    SELECT partner_event_key(kind, o.id, fact),
           o.partner_id, o.id, kind,
           partner_event_body(kind, at, o.kit_id, o.step_id, o.partner_id, o.message_id,
                              o.email, link),
           at, at, at
    FROM outbox o
    JOIN partner_feed f ON f.partner_id = o.partner_id AND f.event_type = kind
    WHERE o.id = message AND o.channel = 'email'
    ON CONFLICT (event_key) DO NOTHING
    RETURNING 1)
  SELECT CAST(count(*) AS integer) FROM queued
$$;
