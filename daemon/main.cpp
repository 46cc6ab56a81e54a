// The channeld binary: parse nothing, pick nothing: the CLI in app/ does both.
#include "app/cli.hpp"

int main(int argc, char** argv) { return channeld::app::run_cli(argc, argv); }
