-- Webhook endpoints channeld stopped sending to: the partner's receiver answered 410 Gone, or
-- the retry schedule was spent. Keyed by partner and URL: a partner whose file names a new URL
-- gets a fresh start without an operator. Partners without a row are enabled.
CREATE TABLE webhook_endpoint (
  partner_id  text NOT NULL,
  url         text NOT NULL,
  reason      text NOT NULL,
  disabled_at timestamptz NOT NULL,
  PRIMARY KEY (partner_id, url)
);

-- `channeld webhooks failed|replay` look up a partner's failed webhook deliveries.
CREATE INDEX outbox_failed_webhook ON outbox (partner_id, updated_at)
  WHERE state = 'failed' AND channel = 'webhook';
