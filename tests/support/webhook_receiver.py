#!/usr/bin/python3
"""A real HTTP webhook receiver for channeld's integration tests, on 127.0.0.1.

It checks every request's Standard Webhooks signature with Python's own hmac and base64, an
implementation that shares nothing with channeld's, and records what it saw. Once listening it
prints "PORT <n>" on stdout, and it exits when its stdin reaches end of file, so a test process
that dies never leaves a receiver behind.

  --secret TEXT        the partner's secret, "whsec_<base64>" (required)
  --log PATH           append one JSON line per request, written before the answer is sent:
                       {"id", "timestamp", "signature", "signature_ok", "why", "body",
                       "answer", "path", "content_type"}
  --answers LIST       status codes to answer in turn, e.g. "500,500,500,200"; the last one
                       repeats (default "200")
  --location URL       Location header on 3xx answers
  --retry-after TEXT   Retry-After header on 429 and 503 answers
  --tolerance SECONDS  how far webhook-timestamp may be from now (default 300, as the spec's
                       reference verifiers use)
"""

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading
import time


def verify(secret, headers, body):
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        return False, "missing header"
    try:
        ts = int(timestamp)
    except ValueError:
        return False, "bad timestamp"
    if abs(time.time() - ts) > ARGS.tolerance:
        return False, "timestamp out of tolerance"
    key = base64.b64decode(secret[len("whsec_"):], validate=True)
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True, ""
    return False, "no matching v1 signature"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        ok, why = verify(ARGS.secret, self.headers, body)
        with LOCK:
            index = STATE["requests"]
            STATE["requests"] += 1
        answer = ANSWERS[min(index, len(ANSWERS) - 1)]
        record = {
            "id": self.headers.get("webhook-id"),
            "timestamp": self.headers.get("webhook-timestamp"),
            "signature": self.headers.get("webhook-signature"),
            "signature_ok": ok,
            "why": why,
            "content_type": self.headers.get("Content-Type"),
            "body": body.decode("utf-8", "replace"),
            "answer": answer,
            "path": self.path,
        }
        with LOCK:
            with open(ARGS.log, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        reply = json.dumps({"ok": 200 <= answer < 300}).encode()
        self.send_response(answer)
        if 300 <= answer < 400 and ARGS.location:
            self.send_header("Location", ARGS.location)
        if answer in (429, 503) and ARGS.retry_after:
            self.send_header("Retry-After", ARGS.retry_after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("PORT %d" % server.server_address[1], flush=True)
    sys.stdin.read()  # until the test closes its end, or dies
    server.shutdown()


parser = argparse.ArgumentParser()
parser.add_argument("--secret", required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--answers", default="200")
parser.add_argument("--location", default="")
parser.add_argument("--retry-after", default="")
parser.add_argument("--tolerance", type=int, default=300)
ARGS = parser.parse_args()
ANSWERS = [int(a) for a in ARGS.answers.split(",")]
LOCK = threading.Lock()
STATE = {"requests": 0}

if __name__ == "__main__":
    main()
