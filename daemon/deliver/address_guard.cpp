#include "deliver/address_guard.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace channeld::deliver {
namespace {

IpAddress v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  IpAddress ip;
  ip.bytes = {a, b, c, d};
  return ip;
}

bool in(const IpAddress& ip, const IpAddress& base, int prefix) {
  return Cidr{base, prefix}.contains(ip);
}

bool in6(const IpAddress& ip, std::string_view base, int prefix) {
  return in(ip, *IpAddress::parse(base), prefix);
}

AddressKind classify_v4(const IpAddress& ip) {
  const auto& b = ip.bytes;
  if (b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0) return AddressKind::unspecified;
  // Alibaba's metadata service lives in the carrier-grade NAT range; name it for what it is.
  if (ip == v4(169, 254, 169, 254) || ip == v4(100, 100, 100, 200)) {
    return AddressKind::cloud_metadata;
  }
  if (b[0] == 127) return AddressKind::loopback;
  if (b[0] == 10 || in(ip, v4(172, 16, 0, 0), 12) || in(ip, v4(192, 168, 0, 0), 16)) {
    return AddressKind::private_network;
  }
  if (in(ip, v4(100, 64, 0, 0), 10)) return AddressKind::shared;
  if (in(ip, v4(169, 254, 0, 0), 16)) return AddressKind::link_local;
  if (b[0] >= 224 && b[0] < 240) return AddressKind::multicast;
  if (b[0] == 0 || b[0] >= 240 || in(ip, v4(192, 0, 0, 0), 24) || in(ip, v4(192, 0, 2, 0), 24) ||
      in(ip, v4(198, 18, 0, 0), 15) || in(ip, v4(198, 51, 100, 0), 24) ||
      in(ip, v4(203, 0, 113, 0), 24)) {
    return AddressKind::reserved;
  }
  return AddressKind::global;
}

// The IPv4 address inside a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address: a gateway would
// forward the packets there, so it is judged like the IPv4 address itself.
std::optional<IpAddress> embedded_v4(const IpAddress& ip) {
  const auto& b = ip.bytes;
  if (in6(ip, "64:ff9b::", 96)) return v4(b[12], b[13], b[14], b[15]);
  if (b[0] == 0x20 && b[1] == 0x02) return v4(b[2], b[3], b[4], b[5]);
  return std::nullopt;
}

AddressKind classify_v6(const IpAddress& ip) {
  if (ip == *IpAddress::parse("::")) return AddressKind::unspecified;
  if (ip == *IpAddress::parse("::1")) return AddressKind::loopback;
  // AWS's IPv6 metadata endpoint; inside fc00::/7 too, but worth its own name in a refusal.
  if (ip == *IpAddress::parse("fd00:ec2::254")) return AddressKind::cloud_metadata;
  if (auto inner = embedded_v4(ip)) {
    AddressKind kind = classify_v4(*inner);
    if (kind != AddressKind::global) return kind;
  }
  if (in6(ip, "fc00::", 7)) return AddressKind::private_network;
  if (in6(ip, "fe80::", 10)) return AddressKind::link_local;
  if (in6(ip, "ff00::", 8)) return AddressKind::multicast;
  // ::/96 (IPv4-compatible, deprecated), 100::/64 (discard), 2001:db8::/32 (documentation),
  // fec0::/10 (site-local, deprecated).
  if (in6(ip, "::", 96) || in6(ip, "100::", 64) || in6(ip, "2001:db8::", 32) ||
      in6(ip, "fec0::", 10)) {
    return AddressKind::reserved;
  }
  return AddressKind::global;
}

std::string_view article_phrase(AddressKind kind) {
  switch (kind) {
    case AddressKind::global:
      return "a public address";
    case AddressKind::unspecified:
      return "the unspecified address";
    case AddressKind::loopback:
      return "a loopback address";
    case AddressKind::private_network:
      return "a private address";
    case AddressKind::shared:
      return "a carrier-grade NAT address";
    case AddressKind::link_local:
      return "a link-local address";
    case AddressKind::cloud_metadata:
      return "a cloud metadata address";
    case AddressKind::multicast:
      return "a multicast address";
    case AddressKind::reserved:
      return "a reserved address";
  }
  return "an unknown kind of address";
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  std::string s(text);
  IpAddress ip;
  in_addr a4{};
  if (::inet_pton(AF_INET, s.c_str(), &a4) == 1) {
    std::memcpy(ip.bytes.data(), &a4, 4);
    return ip;
  }
  in6_addr a6{};
  if (::inet_pton(AF_INET6, s.c_str(), &a6) != 1) return std::nullopt;
  ip.v6 = true;
  std::memcpy(ip.bytes.data(), &a6, 16);
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(ip.bytes.data(), kMapped, 12) == 0) {
    return v4(ip.bytes[12], ip.bytes[13], ip.bytes[14], ip.bytes[15]);
  }
  return ip;
}

std::optional<IpAddress> IpAddress::from_sockaddr(const sockaddr* address, socklen_t length) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address->sa_family == AF_INET && length >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    sockaddr_in a{};
    std::memcpy(&a, address, sizeof a);
    ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
  } else if (address->sa_family == AF_INET6 &&
             length >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    sockaddr_in6 a{};
    std::memcpy(&a, address, sizeof a);
    ::inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof text);
  } else {
    return std::nullopt;
  }
  return parse(text);
}

std::string IpAddress::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), text, sizeof text);
  return text;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  auto slash = text.find('/');
  auto ip = IpAddress::parse(text.substr(0, slash));
  if (!ip) return std::nullopt;
  // A mapped address was turned into IPv4 by parse(); its prefix counts IPv6 bits.
  bool written_v6 = text.substr(0, slash).find(':') != std::string_view::npos;
  int width = written_v6 ? 128 : 32;
  int prefix = ip->v6 ? 128 : 32;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty() || prefix < 0 ||
        prefix > width) {
      return std::nullopt;
    }
    if (written_v6 && !ip->v6) {
      if (prefix < 96) return std::nullopt;  // wider than ::ffff:0:0/96 makes no sense
      prefix -= 96;
    }
  }
  Cidr cidr{*ip, prefix};
  for (int bit = prefix; bit < (ip->v6 ? 128 : 32); ++bit) {
    cidr.base.bytes[static_cast<std::size_t>(bit / 8)] &=
        static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
  }
  return cidr;
}

bool Cidr::contains(const IpAddress& address) const {
  if (address.v6 != base.v6) return false;
  int whole = prefix / 8;
  if (std::memcmp(address.bytes.data(), base.bytes.data(), static_cast<std::size_t>(whole)) != 0) {
    return false;
  }
  int rest = prefix % 8;
  if (rest == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff00u >> rest);
  auto i = static_cast<std::size_t>(whole);
  return (address.bytes[i] & mask) == (base.bytes[i] & mask);
}

AddressKind classify_address(const IpAddress& address) {
  return address.v6 ? classify_v6(address) : classify_v4(address);
}

std::string_view to_string(AddressKind kind) {
  switch (kind) {
    case AddressKind::global:
      return "global";
    case AddressKind::unspecified:
      return "unspecified";
    case AddressKind::loopback:
      return "loopback";
    case AddressKind::private_network:
      return "private";
    case AddressKind::shared:
      return "shared";
    case AddressKind::link_local:
      return "link-local";
    case AddressKind::cloud_metadata:
      return "cloud-metadata";
    case AddressKind::multicast:
      return "multicast";
    case AddressKind::reserved:
      return "reserved";
  }
  return "unknown";
}

std::optional<std::string> refusal(const IpAddress& address, const std::vector<Cidr>& allow) {
  AddressKind kind = classify_address(address);
  if (kind == AddressKind::global) return std::nullopt;
  for (const auto& range : allow) {
    if (range.contains(address)) return std::nullopt;
  }
  return address.to_string() + " is " + std::string(article_phrase(kind)) +
         " (not in [webhooks] allow)";
}

}  // namespace channeld::deliver
