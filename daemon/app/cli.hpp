// app/cli: the command line of the contract (run, check-config, migrate, kits, preview,
// --version, --help). Returns the process exit code: 0 success, 1 runtime failure, 2 bad usage
// or invalid input.
#pragma once

namespace channeld::app {
int run_cli(int argc, char** argv);
}
