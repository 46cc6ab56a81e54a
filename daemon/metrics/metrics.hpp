// metrics: counters, gauges and histograms rendered in Prometheus text format (version 0.0.4).
// Any thread may bump a counter (a short lock) or observe the histogram (lock-free); `render()`
// runs on an HTTP worker thread at scrape time.
//
// Names are given without the "channeld_" prefix ("messages_total"); the registry adds it, so no
// caller can publish outside the daemon's namespace. Label sets are passed as written in the
// exposition format, braces included ({state="sent"}), or "" for none; build them with
// label_set() whenever a value comes from user input (a partner id), so it is escaped.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace channeld::metrics {

inline constexpr std::string_view kPrefix = "channeld_";

// {a="x",b="y"} with values escaped as the text format requires (\\, \", \n); "" if empty.
std::string label_set(std::initializer_list<std::pair<std::string_view, std::string_view>> labels);

// Send latency in seconds, from hand-off to the connector until its verdict. Lock-free: the
// dispatcher observes from any thread while a scrape reads. _count is the sum of the buckets
// read, so it always equals the +Inf bucket; _sum may lag a racing observation by one sample.
class Histogram {
 public:
  static constexpr std::array<double, 12> kBounds{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                  0.1,   0.25,   0.5,   1,    2.5,   10};
  void observe(double seconds);
  // Appends the _bucket/_sum/_count lines for `name` (full name, prefix included).
  void render(const std::string& name, std::string& out) const;

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> sum_micros_{0};
};

class Registry {
 public:
  // Counters keyed by name and one label set written as Prometheus labels: {state="sent"}.
  void add(const std::string& name, const std::string& labels, std::uint64_t n = 1);
  // The # HELP text of counter `name`; a counter never described is rendered without one.
  void describe(const std::string& name, const std::string& help);
  Histogram& send_latency() { return send_latency_; }
  // Gauges are read at scrape time (queue depth, kits by state) through callbacks that may
  // query the database; each returns (labels, value) pairs. Callbacks run outside the registry's
  // lock; one that throws is left out of that scrape, with a comment line saying why.
  using GaugeSource = std::function<std::vector<std::pair<std::string, double>>()>;
  void gauge(const std::string& name, const std::string& help, GaugeSource source);

  // Counters (by name, then labels), then gauges (in registration order), then the histogram.
  std::string render() const;

 private:
  mutable std::mutex mutex_;  // guards counters_, help_ and gauges_ (not the histogram: atomics)
  std::map<std::string, std::map<std::string, std::uint64_t>> counters_;
  std::map<std::string, std::string> help_;
  std::vector<std::tuple<std::string, std::string, GaugeSource>> gauges_;
  Histogram send_latency_;
};

}  // namespace channeld::metrics
