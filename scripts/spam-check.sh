#!/usr/bin/env bash
# Scores every bundled sample kit's email, rendered for every sample partner by `channeld
# preview`, with SpamAssassin's local rules (`spamassassin -L -t`: no network tests, so the score
# depends only on the message) and fails if any message scores above MAX_SCORE (default 0).
#
#   scripts/spam-check.sh CHANNELD_BINARY [CONFIG]        CONFIG: samples/channeld.toml
#
# It prints one line per message with its score and the rules that fired, so a failure says
# what to change in the kit or the layout.
set -euo pipefail
cd "$(dirname "$0")/.."
channeld=${1:?usage: scripts/spam-check.sh CHANNELD_BINARY [CONFIG]}
config=${2:-samples/channeld.toml}
max=${MAX_SCORE:-0}
command -v spamassassin >/dev/null || { echo "spam-check: spamassassin is not installed (scripts/bootstrap.sh)" >&2; exit 1; }

out=$(mktemp -d /tmp/channeld-spam.XXXXXX)
trap 'rm -rf "$out"' EXIT
partners_dir=$(dirname "$config")/partners
for kit in campaigns/*/kit.toml; do
  kit_id=$(basename "$(dirname "$kit")")
  # The kit's email steps, in order: the id of each [[steps]] table whose channel is email.
  steps=$(awk '/^\[\[steps\]\]/ { if (id != "" && ch == "email") print id; id = ""; ch = ""; in_step = 1; next }
               /^\[/ { if (in_step && id != "" && ch == "email") print id; in_step = 0; id = ""; ch = "" }
               in_step && /^id *=/ { gsub(/.*= *"|".*/, ""); id = $0 }
               in_step && /^channel *=/ { gsub(/.*= *"|".*/, ""); ch = $0 }
               END { if (in_step && id != "" && ch == "email") print id }' "$kit")
  for partner in "$partners_dir"/*.toml; do
    partner_id=$(basename "$partner" .toml)
    for step in $steps; do
      "$channeld" preview --config "$config" --kit "$kit_id" --partner "$partner_id" \
        --step "$step" --out "$out/$kit_id-$partner_id" >/dev/null 2>&1 ||
        { echo "spam-check: preview of $kit_id step $step for $partner_id failed" >&2; exit 1; }
    done
  done
done

shopt -s nullglob
messages=("$out"/*/*.eml)
[ "${#messages[@]}" -gt 0 ] || { echo "spam-check: preview wrote no message" >&2; exit 1; }
worst=0
failed=0
for eml in "${messages[@]}"; do
  report=$(spamassassin -L -t <"$eml" 2>/dev/null)
  score=$(sed -n 's/^Content analysis details: *(\(-\{0,1\}[0-9.]*\) points.*/\1/p' <<<"$report")
  [ -n "$score" ] || { echo "spam-check: no score for $eml" >&2; exit 1; }
  rules=$(awk '/^ *-?[0-9.]+ [A-Z_0-9]+ /{ if ($1 + 0 != 0) printf "%s(%s) ", $2, $1 }' <<<"$report")
  printf '%5s  %s  %s\n' "$score" "${eml#"$out"/}" "$rules"
  if awk -v s="$score" -v m="$max" 'BEGIN { exit !(s > m) }'; then failed=$((failed + 1)); fi
  worst=$(awk -v s="$score" -v w="$worst" 'BEGIN { print (s > w) ? s : w }')
done
echo "spam-check: ${#messages[@]} messages, highest score $worst (allowed $max)"
[ "$failed" -eq 0 ] || { echo "spam-check: $failed messages score above $max" >&2; exit 1; }
