-- The last version of each kit folder and partner file that passed validation, byte for byte,
-- so that a file broken while no daemon was running keeps its previous version in force after
-- a restart (its queued mail then goes from that version instead of waiting). One row per file;
-- every row of one (kind, owner_id) carries the same digest, replaced together.
CREATE TABLE last_good_file (
  kind      text NOT NULL CHECK (kind IN ('kit', 'partner')),
  owner_id  text NOT NULL,       -- kit id or partner id
  path      text NOT NULL,       -- relative to the kit folder; '' for a partner file
  content   bytea NOT NULL,
  digest    text NOT NULL,       -- of the whole kit folder or partner file
  saved_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kind, owner_id, path)
);
