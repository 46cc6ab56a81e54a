-- Partner proofs: before a kit's first step each partner's reply_to gets a proof of the kit's
-- first email (an outbox row with channel 'proof', keyed per kit version, first email step and
-- partner), and a partner may opt out of the kit, by the signed link in the proof or through
-- the API. See docs/schema.md.

-- Widened, not replaced in meaning: a proof travels through the same outbox, leases, journal
-- and retries as any email, but is counted in no kit result (every result and MDF query reads
-- channel = 'email').
ALTER TABLE outbox DROP CONSTRAINT outbox_channel_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_channel_check
  CHECK (channel IN ('email', 'webhook', 'proof'));

-- A partner that opted out of a kit gets nothing more from it: the planner skips the pair, the
-- opt-out settles its queued messages, and the dispatcher settles any that slip past.
-- Never removed by channeld; an operator who deletes a row lets the kit plan again.
CREATE TABLE proof_opt_out (
  kit_id       text NOT NULL,
  partner_id   text NOT NULL,
  opted_out_at timestamptz NOT NULL,
  -- 'link' (the proof's /p/ page) or 'api:<token name>'
  via          text NOT NULL,
  PRIMARY KEY (kit_id, partner_id)
);
