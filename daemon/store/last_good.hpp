// store/last_good: the last good version of each kit folder and partner file (migration 0005),
// so that one broken while the daemon was down still has its previous version in force after
// a restart. Bytes go in and come back unchanged; what "good" means is the app's business.
//
// Threads: like Store, safe from any thread; calls block on the database.
#pragma once

#include <map>
#include <string>

#include "store/store.hpp"

namespace channeld::store {

class LastGoodFiles {
 public:
  explicit LastGoodFiles(Store& store) : store_(store) {}

  enum class Kind { kit, partner };
  // Files by path ("" for a partner file), all of one owner.
  using Files = std::map<std::string, std::string>;

  // Replaces the owner's files unless the stored digest is already `digest`. Returns true if
  // it wrote.
  bool save(Kind kind, const std::string& owner_id, const std::string& digest, const Files& files);
  // Every owner's files of `kind`, by owner id.
  std::map<std::string, Files> load(Kind kind);

 private:
  Store& store_;
};

}  // namespace channeld::store
