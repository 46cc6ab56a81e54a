#include "support/raw_connection.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace channeld::testing {

RawConnection::RawConnection(int port) : sock_(::socket(AF_INET, SOCK_STREAM, 0)) {
  timeval timeout{5, 0};
  ::setsockopt(sock_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connected_ = ::connect(sock_, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
}

RawConnection::~RawConnection() {
  ::close(sock_);
}

bool RawConnection::send(const std::string& bytes) {
  return ::send(sock_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
         static_cast<ssize_t>(bytes.size());
}

std::string RawConnection::read_all() {
  std::string out = std::move(pending_);
  pending_.clear();
  char buffer[4096];
  for (ssize_t n; (n = ::recv(sock_, buffer, sizeof buffer, 0)) > 0;)
    out.append(buffer, static_cast<std::size_t>(n));
  return out;
}

int RawConnection::Reply::status() const {
  return head.size() > 12 ? std::stoi(head.substr(9, 3)) : 0;
}

bool RawConnection::Reply::has(const std::string& header_line) const {
  return head.find("\r\n" + header_line + "\r\n") != std::string::npos;
}

std::optional<RawConnection::Reply> RawConnection::read_reply(bool head_request) {
  for (;;) {
    const auto end = pending_.find("\r\n\r\n");
    if (end != std::string::npos) {
      Reply reply{pending_.substr(0, end + 2), {}};
      std::size_t length = 0;
      const auto at = reply.head.find("\r\nContent-Length: ");
      if (at != std::string::npos) length = std::stoul(reply.head.substr(at + 18));
      if (head_request) length = 0;
      if (pending_.size() >= end + 4 + length) {
        reply.body = pending_.substr(end + 4, length);
        pending_.erase(0, end + 4 + length);
        return reply;
      }
    }
    char buffer[4096];
    const ssize_t n = ::recv(sock_, buffer, sizeof buffer, 0);
    if (n <= 0) return std::nullopt;
    pending_.append(buffer, static_cast<std::size_t>(n));
  }
}

bool RawConnection::closed_by_server() {
  char buffer[256];
  for (;;) {
    const ssize_t n = ::recv(sock_, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

}  // namespace channeld::testing
