#include "support/test_tls.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include "support/process.hpp"
#include "support/support.hpp"

namespace channeld::testing {

namespace {

// An absolute path: Process execs without a PATH search. Debian ships it in package openssl,
// which ca-certificates depends on.
constexpr const char* kOpenssl = "/usr/bin/openssl";

}  // namespace

SelfSignedCert make_self_signed_cert(const std::filesystem::path& dir) {
  if (::access(kOpenssl, X_OK) != 0) {
    missing_server("openssl command line (/usr/bin/openssl, to make a test certificate)");
    return {};
  }
  std::filesystem::create_directories(dir);
  SelfSignedCert made{dir / "cert.pem", dir / "key.pem"};
  // -nodes: an unencrypted key, so the server loads it without a passphrase. Both names a test
  // may connect by are in the subjectAltName, which is what clients match (not the CN).
  auto [code, output] =
      run_program({kOpenssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                   "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
                   "-keyout", made.key.string(), "-out", made.cert.string()});
  if (code != 0 || !std::filesystem::exists(made.cert) || !std::filesystem::exists(made.key)) {
    ADD_FAILURE() << "openssl req failed (exit " << code << "):\n" << output;
    return {};
  }
  return made;
}

}  // namespace channeld::testing
