// store/session: what the store's implementation files share and nothing outside store/ may
// include: the session pool with its reconnect-on-next-lease policy (Store::Impl), and the
// helpers that move values across as PostgreSQL text. A domain's SQL lives in its own file
// (store.cpp for the outbox, suppression and kits); each borrows sessions through
// Store::Impl::run.
#pragma once

#include <soci/soci.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/store.hpp"

namespace channeld::store {

// ---- values as PostgreSQL text --------------------------------------------------------------
// Every value crosses as text (SOCI binds std::string parameters as text) and the SQL casts it
// to the column's type, so the server parses timestamps and arrays, never this code.

// "2026-12-01 09:00:00+00": an explicit offset, so the session's TimeZone never matters.
inline std::string timestamp_text(SysTime t) {
  const auto day = std::chrono::floor<std::chrono::days>(t);
  const std::chrono::year_month_day date{day};
  const std::chrono::hh_mm_ss time{t - day};
  char text[40];
  std::snprintf(text, sizeof text, "%04d-%02u-%02u %02d:%02d:%02d+00",
                static_cast<int>(date.year()), static_cast<unsigned>(date.month()),
                static_cast<unsigned>(date.day()), static_cast<int>(time.hours().count()),
                static_cast<int>(time.minutes().count()), static_cast<int>(time.seconds().count()));
  return text;
}

// Timestamps come back as whole epoch seconds (SELECT CAST(extract(epoch FROM x) AS bigint)),
// which avoids parsing the session's DateStyle.
inline SysTime from_epoch(long long seconds) {
  return SysTime{std::chrono::seconds{seconds}};
}

// A PostgreSQL array literal built one element at a time. Every element is double-quoted with
// '"' and '\' backslash-escaped, so commas, braces, spaces and the word NULL inside a value
// stay data. Lets a whole batch travel as one parameter per column (see enqueue, record).
class ArrayLiteral {
 public:
  void add(std::string_view element) {
    text_ += text_.empty() ? "{\"" : ",\"";
    for (char c : element) {
      if (c == '"' || c == '\\') text_ += '\\';
      text_ += c;
    }
    text_ += '"';
  }
  void add(long long element) { add(std::to_string(element)); }
  void add(SysTime element) { add(timestamp_text(element)); }

  std::string text() const { return text_.empty() ? "{}" : text_ + "}"; }

 private:
  std::string text_;
};

inline std::string lower_ascii(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  return lower;
}

// The password inside a libpq conninfo or URI, so messages can be scrubbed of it; empty if none.
std::string password_in(const std::string& url);

// `[database] url` in either libpq form (URI or key=value), as SOCI must be given it, and the
// password it holds (to scrub from messages). Throws StoreError, without the password, if
// libpq cannot parse it. Adds kConnectionDefaults for what the url leaves unset.
struct ConnectString {
  std::string soci;
  std::string password;
};
ConnectString connect_string(const std::string& url);

// Bounds on waiting for a database that has gone away (its host down or cut off, not merely
// refusing), added to the url unless it sets them itself (or PGCONNECT_TIMEOUT is set). libpq's
// own defaults leave a connect to a silent host waiting two minutes (the kernel's SYN retries)
// and a query on a dead connection waiting hours (TCP keepalive starts after 2 h idle), and
// every thread then waits with it, the shutdown drain included. With these a connect gives up
// after 10 s, and a connection whose peer stopped answering is dropped within about 30 s: 15 s
// idle, then three probes 5 s apart, and data left unacknowledged for 20 s. A busy server's
// kernel still answers probes and acknowledges, so a long query is never cut short. Unix
// sockets ignore the TCP ones.
inline constexpr std::pair<const char*, const char*> kConnectionDefaults[] = {
    {"connect_timeout", "10"}, {"keepalives_idle", "15"},       {"keepalives_interval", "5"},
    {"keepalives_count", "3"}, {"tcp_user_timeout", "20000"}};

// `message` with every occurrence of `secret` replaced by "***".
std::string redact(std::string message, const std::string& secret);

// Sends the server's notices and warnings on this connection (a skipped ANALYZE, say) to the
// sink set_notice_sink() names, which the daemon points at its log; libpq's default writes
// them raw to stderr. Applied to every connection the store opens, reconnects included.
void route_notices(soci::session& sql);

struct Store::Impl {
  using Clock = std::chrono::steady_clock;

  std::string password;  // only to scrub it from messages; the URL itself is never echoed
  soci::connection_pool pool;
  // Per pool slot: the last call on it failed, so check the connection before the next one.
  // A slot is touched only by the thread leasing it; the pool's lock orders the hand-overs.
  std::vector<char> suspect;
  // Per pool slot: when the call holding it took it (steady clock, nanoseconds since its
  // epoch), 0 while free. Written by the leasing thread, read by the watchdog (longest_call).
  std::vector<std::atomic<std::int64_t>> leased_at;
  // How long a call waits for a free session; zero: as long as it takes.
  std::chrono::milliseconds session_wait;

  Impl(std::string password_, std::size_t size, std::chrono::milliseconds session_wait_)
      : password(std::move(password_)),
        pool(size),
        suspect(size, 0),
        leased_at(size),
        session_wait(session_wait_) {}

  // A session borrowed from the pool for one call, returned on destruction.
  class Lease {
   public:
    Lease(Impl& impl, std::string_view what) : impl_(impl), slot_(take(impl, what)) {
      impl_.leased_at[slot_].store(Clock::now().time_since_epoch().count());
    }
    ~Lease() {
      impl_.leased_at[slot_].store(0);
      impl_.pool.give_back(slot_);
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    soci::session& session() { return impl_.pool.at(slot_); }
    void ensure_connected() {
      if (impl_.suspect[slot_] == 0) return;
      if (!session().is_connected()) {
        session().reconnect();
        route_notices(session());
      }
      impl_.suspect[slot_] = 0;
    }
    void mark_suspect() { impl_.suspect[slot_] = 1; }

   private:
    static std::size_t take(Impl& impl, std::string_view what) {
      if (impl.session_wait.count() <= 0) return impl.pool.lease();
      std::size_t slot = 0;
      if (!impl.pool.try_lease(slot, static_cast<int>(impl.session_wait.count())))
        throw StoreBusy(std::string(what) + ": all " + std::to_string(impl.suspect.size()) +
                        " database sessions stayed busy for " +
                        std::to_string(impl.session_wait.count()) + " ms");
      return slot;
    }

    Impl& impl_;
    std::size_t slot_;
  };

  // Runs `work` on a pooled session, turning SOCI errors into StoreError. The failed call is
  // not retried (it may have had effects); the session is checked, and reconnected if it broke,
  // when it is next leased.
  template <typename Work>
  auto run(std::string_view what, Work&& work) {
    Lease lease(*this, what);
    try {
      lease.ensure_connected();
      return work(lease.session());
    } catch (const soci::soci_error& e) {
      lease.mark_suspect();
      throw StoreError(std::string(what) + ": " + redact(e.get_error_message(), password));
    }
  }
};

}  // namespace channeld::store
