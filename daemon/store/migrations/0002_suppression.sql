-- Addresses that must not be mailed. partner_id '' means every partner (hard bounces,
-- complaints); otherwise only that partner's sends (an unsubscribe from its emails). Rows are
-- only ever added: re-importing a list never lifts or rewrites a suppression.
CREATE TABLE suppression (
  email      text NOT NULL,
  partner_id text NOT NULL DEFAULT '',
  reason     text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (email, partner_id)
);
