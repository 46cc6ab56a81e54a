// The ceiling channeld's SMTP path is measured against: libcurl's multi interface sending the
// same message N times over P reused connections, with nothing else in the loop (no database,
// no rendering, no Asio, no per-message bookkeeping beyond a fresh recipient). channeld's
// connector drives the same libcurl with the same parallelism and connection cache, so the gap
// between the two is what the durable outbox, the rendering and the event loop cost.
//
// Single-threaded: one curl_multi_poll / curl_multi_perform loop, P easy handles made once and
// re-added after each message, which keeps each handle's connection in the multi's cache.
//
//   bench_bare_curl_smtp --url smtp://127.0.0.1:2525 --messages 100000 --parallel 16
//                        (--size BYTES | --message FILE)
//
// Prints one line: "bare-curl sent=N failed=F seconds=T msgs_per_s=R" (run.sh parses it).

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string url = "smtp://127.0.0.1:2525";
  long messages = 10000;
  long parallel = 16;  // channeld's smtp.max_connections default
  std::size_t size = 10240;
  std::string message_file;
};

// One easy handle with the message it is uploading. The recipient changes per message, as in
// a real campaign; MAIL FROM, URL and the body never do.
struct Sender {
  CURL* easy = nullptr;
  const std::string* message = nullptr;
  std::size_t uploaded = 0;
  char recipient_text[64] = {};
  curl_slist recipient{};
};

std::size_t read_message(char* buffer, std::size_t size, std::size_t count, void* userdata) {
  auto& s = *static_cast<Sender*>(userdata);
  const std::size_t n = std::min(size * count, s.message->size() - s.uploaded);
  std::memcpy(buffer, s.message->data() + s.uploaded, n);
  s.uploaded += n;
  return n;
}

// A plain-text message of exactly `size` bytes: headers, then 76-character CRLF lines.
std::string synthetic_message(std::size_t size) {
  std::string m =
      "From: Bench <bench@mkt.vendor.example>\r\n"
      "To: <contact@bench.example>\r\n"
      "Subject: bare libcurl throughput\r\n"
      "MIME-Version: 1.0\r\n"
      "Content-Type: text/plain; charset=utf-8\r\n"
      "\r\n";
  const std::string line(74, 'x');
  while (m.size() + line.size() + 2 <= size) m += line + "\r\n";
  if (m.size() + 2 <= size) m += std::string(size - m.size() - 2, 'y') + "\r\n";
  return m;
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "bench_bare_curl_smtp: %s\nusage: bench_bare_curl_smtp [--url URL] [--messages N] "
               "[--parallel P] [--size BYTES | --message FILE]\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + flag).c_str());
    const std::string value = argv[++i];
    if (flag == "--url") {
      o.url = value;
    } else if (flag == "--messages") {
      o.messages = std::stol(value);
    } else if (flag == "--parallel") {
      o.parallel = std::stol(value);
    } else if (flag == "--size") {
      o.size = std::stoul(value);
    } else if (flag == "--message") {
      o.message_file = value;
    } else {
      usage(("unknown option " + flag).c_str());
    }
  }
  if (o.messages < 1 || o.parallel < 1) usage("--messages and --parallel must be >= 1");
  return o;
}

void check(CURLcode rc, const char* what) {
  if (rc != CURLE_OK) throw std::runtime_error(std::string(what) + ": " + curl_easy_strerror(rc));
}

int run(const Options& o) {
  const std::string message =
      o.message_file.empty() ? synthetic_message(o.size) : read_whole_file(o.message_file);
  check(curl_global_init(CURL_GLOBAL_DEFAULT), "curl_global_init");
  CURLM* multi = curl_multi_init();
  if (multi == nullptr) throw std::runtime_error("curl_multi_init failed");
  // The same connection policy as channeld's connector: at most P connections, all cached.
  curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, o.parallel);
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, o.parallel);
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, o.parallel);

  std::vector<std::unique_ptr<Sender>> senders;
  for (long i = 0; i < o.parallel; ++i) {
    auto s = std::make_unique<Sender>();
    s->easy = curl_easy_init();
    if (s->easy == nullptr) throw std::runtime_error("curl_easy_init failed");
    s->message = &message;
    CURL* e = s->easy;
    check(curl_easy_setopt(e, CURLOPT_URL, o.url.c_str()), "CURLOPT_URL");
    check(curl_easy_setopt(e, CURLOPT_UPLOAD, 1L), "CURLOPT_UPLOAD");
    check(curl_easy_setopt(e, CURLOPT_READFUNCTION, &read_message), "CURLOPT_READFUNCTION");
    check(curl_easy_setopt(e, CURLOPT_READDATA, s.get()), "CURLOPT_READDATA");
    check(curl_easy_setopt(e, CURLOPT_PRIVATE, s.get()), "CURLOPT_PRIVATE");
    check(curl_easy_setopt(e, CURLOPT_MAIL_FROM, "<bench@mkt.vendor.example>"), "MAIL_FROM");
    check(curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(message.size())),
          "CURLOPT_INFILESIZE_LARGE");
    check(curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L), "CURLOPT_NOSIGNAL");
    check(curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 60000L), "CURLOPT_TIMEOUT_MS");
    check(curl_easy_setopt(e, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_TRY)), "USE_SSL");
    check(curl_easy_setopt(e, CURLOPT_MAXCONNECTS, o.parallel), "CURLOPT_MAXCONNECTS");
    senders.push_back(std::move(s));
  }

  long started = 0, sent = 0, failed = 0;
  auto start_next = [&](Sender& s) {
    s.uploaded = 0;
    std::snprintf(s.recipient_text, sizeof s.recipient_text, "<contact%ld@bench.example>",
                  started++);
    s.recipient.data = s.recipient_text;
    s.recipient.next = nullptr;
    curl_easy_setopt(s.easy, CURLOPT_MAIL_RCPT, &s.recipient);
    curl_multi_add_handle(multi, s.easy);
  };

  const auto t0 = std::chrono::steady_clock::now();
  for (auto& s : senders)
    if (started < o.messages) start_next(*s);
  int running = 1;
  while (sent + failed < o.messages) {
    curl_multi_perform(multi, &running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      const CURLcode result = msg->data.result;
      char* priv = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
      curl_multi_remove_handle(multi, easy);
      if (result == CURLE_OK) {
        ++sent;
      } else {
        if (failed++ < 5) std::fprintf(stderr, "send failed: %s\n", curl_easy_strerror(result));
      }
      if (started < o.messages) start_next(*reinterpret_cast<Sender*>(priv));
    }
    if (sent + failed < o.messages) curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  for (auto& s : senders) curl_easy_cleanup(s->easy);
  curl_multi_cleanup(multi);
  curl_global_cleanup();
  std::printf("bare-curl sent=%ld failed=%ld bytes=%zu parallel=%ld seconds=%.3f msgs_per_s=%.0f\n",
              sent, failed, message.size(), o.parallel, seconds,
              static_cast<double>(sent) / seconds);
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_bare_curl_smtp: %s\n", e.what());
    return 1;
  }
}
