// make_smtp_connector: N single-connection curl connectors, one per delivery thread, behind one
// EmailConnector on the caller's io_context.
//
// Why: libcurl 7.88 waits for the reply to the end of DATA inside curl_multi_socket_action
// (curl/curl#8555). With every connection in one multi handle on one thread, each message holds
// that thread for a whole relay round trip, so sixteen connections deliver one message per
// round trip. A lane of its own per connection makes that wait cost only its own connection.
//
// Threads: the facade's state (idle lanes, waiting sends, callbacks) is owned by `io_`'s thread,
// like any connector's. Each lane's connector lives on its lane's thread and is reached only by
// posting there; it reports back by posting to `io_`. A lane is busy from the moment a send is
// handed to it until its completion has come back to `io_`, so a lane never holds two messages,
// and a message's `done` (which journals its verdict) runs before the lane takes the next one.

#include <pthread.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"  // see smtp_connector.cpp
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#pragma GCC diagnostic pop

#include <algorithm>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "deliver/connector.hpp"

namespace channeld::deliver {
namespace {

using SteadyClock = std::chrono::steady_clock;

SendResult unsent(std::int64_t id, std::string detail) {
  SendResult result;
  result.id = id;
  result.verdict = Verdict::unsent;
  result.detail = std::move(detail);
  return result;
}

class ParallelSmtp final : public EmailConnector {
 public:
  ParallelSmtp(boost::asio::io_context& io, SmtpSettings settings) : io_(io) {
    const int lanes = std::max(1, settings.max_connections);
    SmtpSettings one = settings;
    one.max_connections = 1;
    for (int i = 0; i < lanes; ++i) {
      auto lane = std::make_unique<Lane>();
      lane->connection = make_curl_multi_smtp_connector(lane->io, one);
      lanes_.push_back(std::move(lane));
    }
    std::fill(one.password.begin(), one.password.end(), '\0');
    std::fill(settings.password.begin(), settings.password.end(), '\0');
    for (std::size_t i = 0; i < lanes_.size(); ++i) {
      Lane& lane = *lanes_[i];
      lane.thread = std::thread([&lane] { lane.io.run(); });
      const std::string name = "smtp-" + std::to_string(i);
      pthread_setname_np(lane.thread.native_handle(), name.c_str());
      idle_.push_back(i);
    }
  }

  ~ParallelSmtp() override {
    alive_.reset();
    for (auto& lane : lanes_) {
      lane->guard.reset();
      lane->io.stop();
    }
    for (auto& lane : lanes_) {
      if (lane->thread.joinable()) lane->thread.join();
      lane->connection.reset();  // its io_context has stopped, as a connector requires
    }
  }

  ParallelSmtp(const ParallelSmtp&) = delete;
  ParallelSmtp& operator=(const ParallelSmtp&) = delete;

  void send(OutgoingEmail email, Done done) override {
    waiting_.push_back({std::move(email), std::move(done)});
    // `done` must not run inside send(): a message already past its deadline is posted back.
    boost::asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
      if (!alive.expired()) start_waiting();
    });
  }

  std::size_t in_flight() const override { return reported_by_lanes_ + waiting_.size(); }
  std::size_t parallelism() const override { return lanes_.size(); }

  void cancel_all() override {
    std::vector<std::pair<Done, SendResult>> cancelled;
    for (auto& lane : lanes_) {
      if (!lane->done) continue;
      SendResult result;
      result.id = lane->id;
      result.verdict = Verdict::retry;
      result.detail = "cancelled before the server accepted it";
      cancelled.emplace_back(std::move(lane->done), std::move(result));
      lane->done = nullptr;
      --reported_by_lanes_;
      // The lane stays busy until its connector reports; that report is then dropped.
      boost::asio::post(lane->io, [&lane = *lane] { lane.connection->cancel_all(); });
    }
    for (auto& w : waiting_)
      cancelled.emplace_back(std::move(w.done), unsent(w.email.id, "not started: cancelled"));
    waiting_.clear();
    std::weak_ptr<int> alive = alive_;
    for (auto& [done, result] : cancelled) {
      done(std::move(result));
      if (alive.expired()) return;
    }
  }

 private:
  struct Lane {
    boost::asio::io_context io{1};
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard{
        io.get_executor()};
    std::unique_ptr<EmailConnector> connection;  // used on `thread` only
    std::thread thread;
    // Owned by the facade's thread:
    bool busy = false;
    std::int64_t id = 0;  // the message it carries
    Done done;            // empty once reported or cancelled
  };
  struct Waiting {
    OutgoingEmail email;
    Done done;
  };

  void start_waiting() {
    std::weak_ptr<int> alive = alive_;
    while (!waiting_.empty()) {
      Waiting next = std::move(waiting_.front());
      if (SteadyClock::now() > next.email.deadline) {
        waiting_.pop_front();
        next.done(unsent(next.email.id, "not started: its deadline passed while it waited"));
        if (alive.expired()) return;
        continue;
      }
      if (idle_.empty()) {
        waiting_.front() = std::move(next);
        return;
      }
      waiting_.pop_front();
      const std::size_t index = idle_.back();
      idle_.pop_back();
      Lane& lane = *lanes_[index];
      lane.busy = true;

      lane.id = next.email.id;
      lane.done = std::move(next.done);
      ++reported_by_lanes_;
      boost::asio::post(
          lane.io, [this, &lane, index, alive, email = std::move(next.email)]() mutable {
            // On the lane's thread. `io_` outlives every connector, so posting to it is safe even
            // if the facade is gone; the handler checks `alive` on the facade's thread.
            lane.connection->send(std::move(email), [this, index, alive](SendResult result) {
              boost::asio::post(io_, [this, index, alive, result = std::move(result)]() mutable {
                if (!alive.expired()) finished(index, std::move(result));
              });
            });
          });
    }
  }

  void finished(std::size_t index, SendResult result) {
    Lane& lane = *lanes_[index];
    lane.busy = false;
    Done done = std::move(lane.done);
    lane.done = nullptr;
    idle_.push_back(index);
    if (done) {
      --reported_by_lanes_;
      std::weak_ptr<int> alive = alive_;
      done(std::move(result));  // journals the verdict before the lane's next message starts
      if (alive.expired()) return;
    }
    start_waiting();
  }

  boost::asio::io_context& io_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::vector<std::size_t> idle_;
  std::deque<Waiting> waiting_;
  std::size_t reported_by_lanes_ = 0;  // handed to a lane, `done` not yet called
  // Completions arrive from the lanes' threads: `io_` must not run out of work (and leave run())
  // while one is on its way, so the connector keeps it busy for as long as it exists.
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> io_work_{
      io_.get_executor()};
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace

std::unique_ptr<EmailConnector> make_smtp_connector(boost::asio::io_context& io,
                                                    SmtpSettings settings) {
  return std::make_unique<ParallelSmtp>(io, std::move(settings));
}

}  // namespace channeld::deliver
