-- Opens and clicks are made durable in a local journal before they are answered, and reach
-- PostgreSQL afterwards in batches (app::HitJournal, issue 9). Each batch notes here, in its
-- own transaction, the number of the last journal line it holds, so a replay after a crash
-- skips exactly the lines PostgreSQL already has: every hit is counted once. A row goes when
-- its journal has been applied whole and deleted.
CREATE TABLE hit_journal (
  journal text PRIMARY KEY,
  applied bigint NOT NULL
);
