-- Fewer writes per message (issue 8). A message is inserted, claimed and settled: three row
-- versions, and none of the updates can be HOT because each changes an indexed column (state,
-- lease_until, sent_at), so every version adds an entry to every index on the table. Each index
-- therefore costs three writes per message, and the 'sent' event row cost another heap tuple
-- and three index entries.
--
-- Every lookup by address has the address as an equality (a contact has a handful of rows), so
-- `outbox_email` alone serves what `outbox_partner_email_sent` did.
DROP INDEX IF EXISTS outbox_partner_email_sent;

-- Who sent a message, on the row itself: the 'sent' outcome no longer adds a delivery_event
-- (state, sent_at and sent_by already say everything it said). Other outcomes (retry, deferred,
-- failed, bounced, suppressed, expired) still add one, so a message's history is complete.
ALTER TABLE outbox ADD COLUMN sent_by text;
