// WebhookReceiver: a real HTTP webhook endpoint on 127.0.0.1 for integration tests. It runs
// tests/support/webhook_receiver.py (under /usr/bin/python3) as a child process, which checks
// every request's Standard Webhooks signature with Python's hmac (not channeld's code), answers
// with a scripted sequence of status codes and records each request.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "support/support.hpp"

namespace channeld::testing {

class WebhookReceiver {
 public:
  struct Options {
    std::string secret;                // "whsec_..." (required)
    std::vector<int> answers = {200};  // in turn; the last repeats
    std::string location;              // Location on 3xx answers
    std::string retry_after;           // Retry-After on 429 and 503 answers
  };

  struct Request {
    std::string id;         // webhook-id
    std::string timestamp;  // webhook-timestamp
    std::string signature;  // webhook-signature
    bool signature_ok = false;
    std::string why;  // why the signature was refused
    std::string content_type;
    std::string body;
    int answer = 0;
    std::string path;
  };

  // Starts the receiver and waits until it listens. Without /usr/bin/python3 calls
  // missing_server() and available() is false: return then.
  explicit WebhookReceiver(Options options);
  ~WebhookReceiver();
  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;

  bool available() const { return port_ != 0; }
  int port() const { return port_; }
  std::string url(const std::string& path = "/hooks/channeld") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  // Every request so far, in arrival order; each is recorded before it is answered.
  std::vector<Request> requests() const;
  // The log file: one JSON object per request (see the script).
  std::filesystem::path log() const { return dir_ / "requests.jsonl"; }

 private:
  TempDir dir_;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;  // closing it tells the receiver to exit
  int port_ = 0;
};

}  // namespace channeld::testing
