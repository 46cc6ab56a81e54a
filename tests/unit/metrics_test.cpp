#include "metrics/metrics.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <stdexcept>

#include "metrics/log_throttle.hpp"

namespace channeld::metrics {
namespace {

TEST(Registry, RendersCountersGaugesAndTheHistogramInTextFormat004) {
  Registry registry;
  registry.describe("messages_total", "Messages by final outcome.");
  registry.add("messages_total", R"({state="sent"})", 3);
  registry.add("messages_total", R"({state="bounced"})");
  registry.add("messages_total", R"({state="sent"})");
  registry.add("kit_reloads_total", "");
  registry.gauge("queue_depth", "Messages waiting in the outbox.", [] {
    return std::vector<std::pair<std::string, double>>{{"", 42}};
  });
  registry.send_latency().observe(0.001);  // on a bound: le is inclusive
  registry.send_latency().observe(0.2);
  registry.send_latency().observe(20);  // beyond the last bound

  EXPECT_EQ(registry.render(),
            "# TYPE channeld_kit_reloads_total counter\n"
            "channeld_kit_reloads_total 1\n"
            "# HELP channeld_messages_total Messages by final outcome.\n"
            "# TYPE channeld_messages_total counter\n"
            "channeld_messages_total{state=\"bounced\"} 1\n"
            "channeld_messages_total{state=\"sent\"} 4\n"
            "# HELP channeld_queue_depth Messages waiting in the outbox.\n"
            "# TYPE channeld_queue_depth gauge\n"
            "channeld_queue_depth 42\n"
            "# HELP channeld_send_latency_seconds Time from hand-off to the connector until its "
            "verdict.\n"
            "# TYPE channeld_send_latency_seconds histogram\n"
            "channeld_send_latency_seconds_bucket{le=\"0.001\"} 1\n"
            "channeld_send_latency_seconds_bucket{le=\"0.0025\"} 1\n"
            "channeld_send_latency_seconds_bucket{le=\"0.005\"} 1\n"
            "channeld_send_latency_seconds_bucket{le=\"0.01\"} 1\n"
            "channeld_send_latency_seconds_bucket{le=\"0.025\"} 1\n"
            "channeld_send_latency_seconds_bucket{le=\"0.05\"} 1\n"
            "channeld_send_latency_seconds_bucket{le=\"0.1\"} 1\n"
            "channeld_send_latency_seconds_bucket{le=\"0.25\"} 2\n"
            "channeld_send_latency_seconds_bucket{le=\"0.5\"} 2\n"
            "channeld_send_latency_seconds_bucket{le=\"1\"} 2\n"
            "channeld_send_latency_seconds_bucket{le=\"2.5\"} 2\n"
            "channeld_send_latency_seconds_bucket{le=\"10\"} 2\n"
            "channeld_send_latency_seconds_bucket{le=\"+Inf\"} 3\n"
            "channeld_send_latency_seconds_sum 20.201\n"
            "channeld_send_latency_seconds_count 3\n");
}

TEST(Registry, RendersAnEmptyHistogramWithZeroCounts) {
  Registry registry;
  const std::string text = registry.render();
  EXPECT_NE(text.find("channeld_send_latency_seconds_bucket{le=\"+Inf\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("channeld_send_latency_seconds_sum 0\n"), std::string::npos);
  EXPECT_NE(text.find("channeld_send_latency_seconds_count 0\n"), std::string::npos);
}

TEST(Registry, LeavesOutAGaugeWhoseSourceFailsAndSaysWhy) {
  Registry registry;
  registry.gauge("queue_depth", "Messages waiting in the outbox.",
                 []() -> std::vector<std::pair<std::string, double>> {
                   throw std::runtime_error("database unreachable");
                 });
  registry.gauge("kits", "Kits by state.", [] {
    return std::vector<std::pair<std::string, double>>{{R"({state="live"})", 2}};
  });
  const std::string text = registry.render();
  EXPECT_NE(text.find("# TYPE channeld_queue_depth gauge\n"
                      "# channeld_queue_depth unavailable: database unreachable\n"
                      "# HELP channeld_kits Kits by state.\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("channeld_kits{state=\"live\"} 2\n"), std::string::npos);
}

TEST(Registry, WritesNonFiniteGaugeValuesAsTheFormatSpellsThem) {
  Registry registry;
  registry.gauge("odd", "", [] {
    return std::vector<std::pair<std::string, double>>{
        {R"({v="a"})", std::numeric_limits<double>::infinity()},
        {R"({v="b"})", std::numeric_limits<double>::quiet_NaN()},
        {R"({v="c"})", 0.5}};
  });
  const std::string text = registry.render();
  EXPECT_NE(text.find("# TYPE channeld_odd gauge\n"
                      "channeld_odd{v=\"a\"} +Inf\n"
                      "channeld_odd{v=\"b\"} NaN\n"
                      "channeld_odd{v=\"c\"} 0.5\n"),
            std::string::npos)
      << text;
}

TEST(LabelSet, EscapesQuotesBackslashesAndNewlinesInValues) {
  EXPECT_EQ(label_set({}), "");
  EXPECT_EQ(label_set({{"partner", "acme-it"}, {"state", "sent"}}),
            R"({partner="acme-it",state="sent"})");
  EXPECT_EQ(label_set({{"reason", "say \"hi\"\\\nbye"}}), R"({reason="say \"hi\"\\\nbye"})");
}

}  // namespace
}  // namespace channeld::metrics

namespace channeld::metrics {
namespace {

using std::chrono::seconds;

TEST(LogThrottle, ReportsTheFirstFailureAtOnceThenOneLinePerIntervalWithTheCount) {
  LogThrottle throttle(seconds{60});
  const LogThrottle::Clock::time_point t0{seconds{1000}};
  EXPECT_EQ(throttle.failure(t0), 1);
  for (int i = 1; i < 600; ++i)
    EXPECT_EQ(throttle.failure(t0 + i * std::chrono::milliseconds{100}), 0);
  // 60 s after the first report: the 599 held back plus this one.
  EXPECT_EQ(throttle.failure(t0 + seconds{60}), 600);
  EXPECT_EQ(throttle.failure(t0 + seconds{61}), 0);
}

TEST(LogThrottle, SuccessReportsTheWholeOutageAndRearmsTheFirstLine) {
  LogThrottle throttle(seconds{60});
  const LogThrottle::Clock::time_point t0{seconds{1000}};
  EXPECT_EQ(throttle.success(), 0);  // nothing to recover from
  throttle.failure(t0);
  throttle.failure(t0 + seconds{1});
  throttle.failure(t0 + seconds{2});
  EXPECT_EQ(throttle.success(), 3);
  EXPECT_EQ(throttle.failure(t0 + seconds{3}), 1);  // a new outage is reported at once
}

}  // namespace
}  // namespace channeld::metrics
