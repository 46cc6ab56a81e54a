-- The last verdict on each kit folder, for `channeld kits` and for noticing a changed digest.
CREATE TABLE kit_state (
  kit_id     text PRIMARY KEY,
  version    integer NOT NULL,
  digest     text NOT NULL,
  state      text NOT NULL CHECK (state IN ('live', 'refused', 'expired', 'done', 'removed')),
  error      text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL
);

-- Which (kit, step, partner) the planner already expanded into the outbox, for which contact
-- list (by digest), so a rescan skips unchanged audiences without touching the outbox.
CREATE TABLE expansion (
  kit_id          text NOT NULL,
  step_id         text NOT NULL,
  partner_id      text NOT NULL,
  contacts_digest text NOT NULL,
  expanded_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kit_id, step_id, partner_id, contacts_digest)
);
