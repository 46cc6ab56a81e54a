// Throwaway TLS material for tests that talk TLS to a local peer (SmtpTestServer's STARTTLS and
// implicit TLS). There is no CA: a client verifies the server by trusting the certificate itself
// (cert as its CA file), so verification, host name included, runs as it would in production.
#pragma once

#include <filesystem>

namespace channeld::testing {

struct SelfSignedCert {
  std::filesystem::path cert;  // PEM; also the CA file a verifying client is given
  std::filesystem::path key;   // PEM, unencrypted
  bool available() const { return !cert.empty(); }
};

// Writes dir/cert.pem and dir/key.pem: RSA 2048, valid for 2 days, CN localhost, subjectAltName
// DNS:localhost, IP:127.0.0.1 and IP:::1, made by the openssl command line. Without
// /usr/bin/openssl, calls missing_server() (which skips or fails the test) and returns empty
// paths; if openssl fails, fails the test with its output and returns empty paths. Either way
// available() is false: return then.
SelfSignedCert make_self_signed_cert(const std::filesystem::path& dir);

}  // namespace channeld::testing
