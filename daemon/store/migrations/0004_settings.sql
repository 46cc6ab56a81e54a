-- Values the daemons of one installation must share, such as the key that signs unsubscribe
-- and tracking links when channeld.toml names no http.link_secret_file.
CREATE TABLE setting (
  name       text PRIMARY KEY,
  value      text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
