-- Identical hits recorded together are one event row (issue 9). Link scanners and security
-- gateways fetch the same link of the same message many times a second; each fetch was its
-- own delivery_event row (a heap tuple and three index entries). Hits of one batch that are
-- the same in everything an event row keeps (message, kind, link, user agent, and `at`, which
-- is whole seconds) are now one row with `hits` saying how many: nothing is lost, and
-- sum(hits) is the number of fetches. Every other event stands for one.
ALTER TABLE delivery_event ADD COLUMN hits integer NOT NULL DEFAULT 1 CHECK (hits > 0);
