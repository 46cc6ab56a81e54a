-- Engagement: what recipients and CRMs did after a message went out (opens, clicks,
-- unsubscribes, bounces and complaints reported later, leads), and the API tokens that may
-- report and read it. See docs/schema.md.

-- One row per message that was engaged with at all: first and total opens and clicks. Opens
-- and clicks from privacy proxies and link scanners (Apple Mail Privacy Protection, Gmail's
-- image proxy, security gateways) are counted but kept apart from human ones.
CREATE TABLE message_engagement (
  outbox_id        bigint PRIMARY KEY REFERENCES outbox (id),
  kit_id           text NOT NULL,
  partner_id       text NOT NULL,
  first_open_at    timestamptz,
  opens            integer NOT NULL DEFAULT 0,
  proxy_opens      integer NOT NULL DEFAULT 0,
  first_click_at   timestamptz,
  clicks           integer NOT NULL DEFAULT 0,
  human_clicks     integer NOT NULL DEFAULT 0,
  unsubscribed_at  timestamptz,
  complained_at    timestamptz,
  soft_bounces     integer NOT NULL DEFAULT 0
);
CREATE INDEX message_engagement_kit_partner ON message_engagement (kit_id, partner_id);

-- Leads reported by partners' CRMs. Attribution (kit, step, message) is decided once, when the
-- lead is first reported; a later report with the same external_id moves the stage and amount.
CREATE TABLE lead (
  id           bigserial PRIMARY KEY,
  partner_id   text NOT NULL,
  external_id  text NOT NULL,
  email        text NOT NULL DEFAULT '',
  stage        text NOT NULL CHECK (stage IN ('lead', 'opportunity', 'won')),
  amount_minor bigint NOT NULL DEFAULT 0,
  currency     text NOT NULL DEFAULT '',
  -- the last touch it is attributed to; NULL when no message reached the contact in the window
  outbox_id    bigint REFERENCES outbox (id),
  kit_id       text,
  step_id      text,
  origin       text NOT NULL CHECK (origin IN ('partner_sourced', 'influenced', 'unattributed')),
  created_at   timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL,
  UNIQUE (partner_id, external_id)
);
CREATE INDEX lead_kit_partner ON lead (kit_id, partner_id);

-- API tokens: only a SHA-256 of each token is kept (the token itself is printed once).
CREATE TABLE api_token (
  name        text PRIMARY KEY,
  token_hash  text NOT NULL UNIQUE,
  role        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);

-- Looking up the messages a contact received from a partner, newest first (lead attribution,
-- bounces and complaints reported by address).
CREATE INDEX outbox_partner_email_sent ON outbox (partner_id, email, sent_at);
CREATE INDEX outbox_email ON outbox (email);
