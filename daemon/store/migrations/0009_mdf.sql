-- MDF claims as received, one row per (partner, claim_id). Amounts in minor units of `currency`.
-- A claim is never edited, with one exception: a claim received without an invoice_ref gets
-- one when the same claim arrives again with it (invoice_at records when).
CREATE TABLE mdf_claim (
  id             bigserial PRIMARY KEY,
  partner_id     text NOT NULL,
  claim_id       text NOT NULL,
  kit_id         text NOT NULL,
  period         text NOT NULL,
  activity_start date NOT NULL,
  activity_end   date NOT NULL,
  amount_claimed bigint NOT NULL CHECK (amount_claimed >= 0),
  actual_spend   bigint NOT NULL CHECK (actual_spend >= 0),
  currency       text NOT NULL,
  invoice_ref    text,
  -- where it came from: "claims/q4.csv:7" or "POST /v1/claims"
  source         text NOT NULL,
  received_at    timestamptz NOT NULL,
  -- when the claim became complete (had an invoice_ref): funds are drawn in this order
  invoice_at     timestamptz,
  UNIQUE (partner_id, claim_id),
  CHECK ((invoice_ref IS NULL) = (invoice_at IS NULL))
);
-- The same invoice claimed twice by one partner is a duplicate, whatever the claim_id.
CREATE UNIQUE INDEX mdf_claim_invoice ON mdf_claim (partner_id, invoice_ref)
  WHERE invoice_ref IS NOT NULL;
CREATE INDEX mdf_claim_period ON mdf_claim (period);

-- Every decision on a claim, append-only: a reconciliation whose outcome or inputs differ from
-- the claim's latest record adds a row that supersedes it; unchanged ones add nothing.
CREATE TABLE mdf_decision (
  id              bigserial PRIMARY KEY,
  claim           bigint NOT NULL REFERENCES mdf_claim (id),
  decided_at      timestamptz NOT NULL,
  decision        text NOT NULL
                  CHECK (decision IN ('approved', 'partially_approved', 'rejected', 'pending')),
  amount_approved bigint NOT NULL CHECK (amount_approved >= 0),
  reasons         text NOT NULL,  -- JSON array of sentences
  inputs          text NOT NULL   -- JSON object: what the decision used (see mdf::Inputs)
);
CREATE INDEX mdf_decision_claim ON mdf_decision (claim, id);
