// Checks every request a test receiver logged (tests/support/webhook_receiver.py, one JSON object
// per line) with the Standard Webhooks reference verifier from npm, and prints one line per
// request: "ok <webhook-id>" or "bad <webhook-id> <reason>". Exits 0 when all verify, 1 when any
// does not, 3 when the package is not installed (scripts/bootstrap.sh installs it when node and
// npm are present).
//
//   node verify.mjs SECRET LOGFILE
import { readFileSync } from "node:fs";

let Webhook;
try {
  ({ Webhook } = await import("standardwebhooks"));
} catch (e) {
  console.error("standardwebhooks is not installed: npm ci --prefix tests/support/webhook_verify");
  process.exit(3);
}

const [secret, log] = process.argv.slice(2);
const wh = new Webhook(secret);
let failed = 0;
const lines = readFileSync(log, "utf8").split("\n").filter((l) => l.length > 0);
for (const line of lines) {
  const r = JSON.parse(line);
  try {
    wh.verify(r.body, {
      "webhook-id": r.id,
      "webhook-timestamp": r.timestamp,
      "webhook-signature": r.signature,
    });
    console.log(`ok ${r.id}`);
  } catch (e) {
    failed += 1;
    console.log(`bad ${r.id} ${e.message}`);
  }
}
process.exit(failed > 0 ? 1 : 0);
