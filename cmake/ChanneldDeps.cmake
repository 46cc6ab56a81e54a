# Third-party libraries, all from Debian 12 packages (scripts/bootstrap installs them).
find_package(Threads REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(CURL REQUIRED)
find_package(date REQUIRED)            # libhowardhinnant-date-dev: date::date-tz
find_package(nlohmann_json 3 REQUIRED)
find_package(spdlog REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(OpenSSL REQUIRED)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)

# SOCI ships neither a CMake config nor a pkg-config file on Debian.
find_library(SOCI_CORE_LIB soci_core REQUIRED)
find_library(SOCI_PG_LIB soci_postgresql REQUIRED)
find_library(PQ_LIB pq REQUIRED)
add_library(soci_pg INTERFACE)
target_link_libraries(soci_pg INTERFACE ${SOCI_PG_LIB} ${SOCI_CORE_LIB} ${PQ_LIB})
target_include_directories(soci_pg INTERFACE /usr/include/postgresql)

# Header-only: toml11 and kainjow mustache live in /usr/include.
find_path(TOML11_INCLUDE toml.hpp REQUIRED)
find_path(MUSTACHE_INCLUDE kainjow/mustache.hpp REQUIRED)
