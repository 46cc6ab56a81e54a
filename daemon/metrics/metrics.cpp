#include "metrics/metrics.hpp"

#include <charconv>
#include <cmath>
#include <exception>

namespace channeld::metrics {
namespace {

// Shortest text that reads back as the same double ("0.0025", "1", "1e+20"), with the spellings
// the exposition format uses for the non-finite values.
std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, v);
  return std::string(buffer, result.ptr);
}

// HELP text escapes backslash and newline; label values also escape the double quote.
std::string escape(std::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

void family_header(std::string& out, const std::string& full_name, const std::string& help,
                   std::string_view type) {
  if (!help.empty()) out += "# HELP " + full_name + " " + escape(help, false) + "\n";
  out += "# TYPE " + full_name + " ";
  out += type;
  out += "\n";
}

std::string full_name(const std::string& name) {
  return std::string(kPrefix) + name;
}

}  // namespace

std::string label_set(std::initializer_list<std::pair<std::string_view, std::string_view>> labels) {
  if (labels.size() == 0) return "";
  std::string out = "{";
  for (const auto& [name, value] : labels) {
    if (out.size() > 1) out += ",";
    out += name;
    out += "=\"" + escape(value, true) + "\"";
  }
  return out + "}";
}

void Histogram::observe(double seconds) {
  // A negative or NaN duration can only come from a clock step; count it as instantaneous
  // rather than corrupting _sum.
  if (!(seconds >= 0)) seconds = 0;
  std::size_t bucket = 0;
  while (bucket < kBounds.size() && seconds > kBounds[bucket]) ++bucket;
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<std::uint64_t>(std::llround(seconds * 1e6)),
                        std::memory_order_relaxed);
}

void Histogram::render(const std::string& name, std::string& out) const {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    const std::string le = i < kBounds.size() ? format_value(kBounds[i]) : "+Inf";
    out += name + "_bucket{le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  const double sum = static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
  out += name + "_sum " + format_value(sum) + "\n";
  out += name + "_count " + std::to_string(cumulative) + "\n";
}

void Registry::add(const std::string& name, const std::string& labels, std::uint64_t n) {
  std::lock_guard lock(mutex_);
  counters_[name][labels] += n;
}

void Registry::describe(const std::string& name, const std::string& help) {
  std::lock_guard lock(mutex_);
  help_[name] = help;
}

void Registry::gauge(const std::string& name, const std::string& help, GaugeSource source) {
  std::lock_guard lock(mutex_);
  gauges_.emplace_back(name, help, std::move(source));
}

std::string Registry::render() const {
  std::string out;
  decltype(gauges_) gauges;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, series] : counters_) {
      const auto help = help_.find(name);
      family_header(out, full_name(name), help == help_.end() ? "" : help->second, "counter");
      for (const auto& [labels, value] : series) {
        out += full_name(name) + labels + " " + std::to_string(value) + "\n";
      }
    }
    gauges = gauges_;
  }

  // Gauge sources may block on the database, so they run with the lock released: a slow scrape
  // must never stall the dispatcher bumping a counter.
  for (const auto& [name, help, source] : gauges) {
    family_header(out, full_name(name), help, "gauge");
    std::vector<std::pair<std::string, double>> samples;
    try {
      samples = source();
    } catch (const std::exception& e) {
      out += "# " + full_name(name) + " unavailable: " + escape(e.what(), false) + "\n";
    }
    for (const auto& [labels, value] : samples) {
      out += full_name(name) + labels + " " + format_value(value) + "\n";
    }
  }

  const std::string latency = full_name("send_latency_seconds");
  family_header(out, latency, "Time from hand-off to the connector until its verdict.",
                "histogram");
  send_latency_.render(latency, out);
  return out;
}

}  // namespace channeld::metrics
