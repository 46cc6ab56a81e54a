// app/reload: what a SIGHUP can change. Most of channeld.toml is read again on SIGHUP and used
// from the next message on; the keys below are read once, at start, by parts that are built
// once (the HTTP listener, the SMTP and webhook connectors, the dispatcher's batches, retry policy and rate
// limits, the folder watcher). Pure; runs on the catalog strand.
#pragma once

#include <string>
#include <vector>

#include "model/model.hpp"

namespace channeld::app {

// Every key that takes effect only at restart, in the order docs/operations.md lists them.
const std::vector<std::string>& restart_only_keys();

// The restart-only keys whose value differs between `before` and `after`, in that order.
std::vector<std::string> restart_only_changes(const Config& before, const Config& after);

}  // namespace channeld::app
