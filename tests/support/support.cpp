#include "support/support.hpp"

#include <soci/soci.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <fstream>
#include <random>
#include <sstream>

namespace channeld::testing {

std::filesystem::path source_dir() { return CHANNELD_SOURCE_DIR; }
std::filesystem::path channeld_binary() { return CHANNELD_BINARY; }

void missing_server(const std::string& what) {
  const char* require = std::getenv("CHANNELD_REQUIRE_SERVERS");
  if (require != nullptr && std::string(require) == "1") {
    FAIL() << what << " is required (CHANNELD_REQUIRE_SERVERS=1) but not available";
  }
  GTEST_SKIP() << what << " not available; run the suite through scripts/test.sh";
}

std::string fresh_database(const std::string& name) {
  const char* base = std::getenv("CHANNELD_TEST_PG");
  if (base == nullptr || *base == '\0') {
    missing_server("PostgreSQL (CHANNELD_TEST_PG)");
    return "";
  }
  {
    soci::session admin("postgresql", std::string(base));
    admin << "SET client_min_messages = warning";
    admin << "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)";
    admin << "CREATE DATABASE " + name;
  }
  std::string conninfo = base;
  auto pos = conninfo.find("dbname=");
  if (pos != std::string::npos) {
    auto end = conninfo.find(' ', pos);
    conninfo.erase(pos, end == std::string::npos ? std::string::npos : end - pos);
  }
  return conninfo + " dbname=" + name;
}

std::string database_for_this_test(const std::string& prefix) {
  std::string name = prefix + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  // PostgreSQL cuts names at 63 bytes: keep them unique with a hash of the whole name.
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016zx", std::hash<std::string>{}(name));
  return name.substr(0, 40) + "_" + hash;
}

TempDir::TempDir() {
  std::random_device rd;
  std::ostringstream name;
  name << "channeld-test-" << std::hex << rd() << rd();
  path_ = std::filesystem::temp_directory_path() / name.str();
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_file(const std::filesystem::path& path, const std::string& content) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace channeld::testing
