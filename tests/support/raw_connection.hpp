// tests/support/raw_connection: a TCP connection to 127.0.0.1 for HTTP written byte for byte:
// idle clients, slowloris clients, pipelined and malformed requests, and replies read as bytes.
#pragma once

#include <optional>
#include <string>

namespace channeld::testing {

class RawConnection {
 public:
  // Connects at once; reads wait at most 5 s.
  explicit RawConnection(int port);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return connected_; }
  bool send(const std::string& bytes);
  // Everything until the server closes (or 5 s pass).
  std::string read_all();
  // One response: its head, and as many body bytes as its Content-Length says (none for HEAD).
  struct Reply {
    std::string head;
    std::string body;
    int status() const;
    bool has(const std::string& header_line) const;
  };
  std::optional<Reply> read_reply(bool head_request = false);
  // True once the server closed its end (EOF or reset), without waiting.
  bool closed_by_server();

 private:
  int sock_;
  bool connected_ = false;
  std::string pending_;  // read but not yet returned
};

}  // namespace channeld::testing
