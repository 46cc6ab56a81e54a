// app/claims: MDF at the edges: the claims folder intake, the reconciliation pass that feeds
// mdf::reconcile_all with facts from the snapshot and the store and records what changed, and
// the finance report built from the recorded decisions. Every function here blocks on files
// and the database: the daemon runs them on the catalog strand of its pool (after each planning
// pass); the CLI calls them directly.
#pragma once

#include <string>
#include <vector>

#include "app/snapshot.hpp"
#include "mdf/mdf.hpp"
#include "store/mdf.hpp"

namespace channeld::app {

struct IntakeSummary {
  std::size_t files = 0;
  std::size_t added = 0;              // new claims and supplied invoices
  std::size_t refused = 0;            // bad rows and duplicates
  std::vector<std::string> problems;  // one line per refused row, "file:line: why"
};

// Processes every `*.csv` directly in `dir` (oldest name first; dot-files and other names are
// left alone): each good row is added, each bad or duplicate row reported; then the file moves
// to `dir/processed/` with `<name>.result.csv` beside it (line, claim_id, partner_id, outcome,
// detail), so it is processed once. A file that cannot be read at all is moved aside the same
// way with the error as its result. Files should be moved into `dir` whole (write elsewhere,
// then rename), as for any spool folder.
IntakeSummary take_in_claims(store::Store& store, const std::string& dir, SysTime now);

// What reconciliation knows about partners and kits, from the snapshot.
mdf::Facts facts_from(const Snapshot& snapshot);

// Decides every stored claim against the snapshot and the store's campaign results, in fund
// order, and records each decision that differs from the claim's latest one. Returns how many
// records were added (0 when nothing changed).
std::size_t reconcile_claims(store::Store& store, const Snapshot& snapshot, SysTime now);

// The period's report from the recorded decisions (a claim not reconciled yet shows as pending),
// the config's [mdf] terms and the partner files.
mdf::Report build_report(store::Store& store, const Config& config,
                         const catalog::PartnerSet& partners, const mdf::Period& period);

// `channeld claims show`: the claim and each decision record with the inputs it used.
std::string claim_history_text(store::Store& store, const std::string& claim_id,
                               const std::string& partner);

}  // namespace channeld::app
