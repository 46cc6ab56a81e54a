#!/usr/bin/env bash
# Prints a TCP port on 127.0.0.1 that nothing listens on, starting from $1 (default 55433).
p=${1:-55433}
while (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; do p=$((p + 1)); done
echo "$p"
