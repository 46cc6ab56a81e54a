// deliver/address_guard: which network addresses a webhook may reach (the SSRF guard). Pure.
//
// A partner's webhook URL is written by whoever edits partner files, and its host name is
// resolved by whoever runs that partner's DNS; either could point channeld at the vendor's own
// network (a database on 10.x, a cloud metadata service on 169.254.169.254). So every address
// the webhook connector is about to connect to, after DNS and for every connection, is put to
// refusal() here. Addresses not on the public internet are refused unless an operator listed
// them in `[webhooks] allow`.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace channeld::deliver {

// An IPv4 or IPv6 address. IPv4-mapped IPv6 addresses (::ffff:10.0.0.1) are stored as the IPv4
// address they carry, since that is where the packets go.
struct IpAddress {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};  // IPv4 uses the first 4

  static std::optional<IpAddress> parse(std::string_view text);  // "10.0.0.1", "::1"
  // From a socket address curl is about to connect to; nullopt for other families.
  static std::optional<IpAddress> from_sockaddr(const sockaddr* address, socklen_t length);
  std::string to_string() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// An address range, "10.0.0.0/8" or "fd00::/8"; a bare address is a range of one.
struct Cidr {
  IpAddress base;  // host bits cleared
  int prefix = 0;

  static std::optional<Cidr> parse(std::string_view text);
  bool contains(const IpAddress& address) const;
};

enum class AddressKind {
  global,           // on the public internet
  unspecified,      // 0.0.0.0, ::
  loopback,         // 127.0.0.0/8, ::1
  private_network,  // RFC 1918, fc00::/7 (unique local)
  shared,           // 100.64.0.0/10, carrier-grade NAT (RFC 6598)
  link_local,       // 169.254.0.0/16, fe80::/10
  cloud_metadata,   // instance metadata services: 169.254.169.254, fd00:ec2::254, ...
  multicast,        // 224.0.0.0/4, ff00::/8
  reserved,         // 0.0.0.0/8, 240.0.0.0/4 (with broadcast), 192.0.0.0/24, 198.18.0.0/15,
                    // documentation ranges
};

AddressKind classify_address(const IpAddress& address);
std::string_view to_string(AddressKind kind);

// Why a connection to `address` is refused ("10.1.2.3 is a private address"), or nullopt when
// it may go ahead: the address is global or inside one of `allow`.
std::optional<std::string> refusal(const IpAddress& address, const std::vector<Cidr>& allow);

}  // namespace channeld::deliver
