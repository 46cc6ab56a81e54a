#include "api/message.hpp"

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "store/store.hpp"

namespace channeld::api {

std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

Response json_error(int status, std::string_view message) {
  // Messages quote what was sent (a parser's "last read", a path, a query value), which need
  // not be UTF-8: a strict dump() would throw, turning a 400 or 404 into a 500.
  return Response{status,
                  "application/json",
                  nlohmann::json{{"error", message}}.dump(-1, ' ', false,
                                                          nlohmann::json::error_handler_t::replace),
                  {}};
}

Response failure_response(const std::exception_ptr& error, std::string_view context) {
  const std::string message =
      (context.empty() ? "" : std::string(context) + ": ") + describe(error);
  try {
    std::rethrow_exception(error);
  } catch (const store::StoreBusy&) {
    Response busy = json_error(503, message);
    busy.headers.emplace("Retry-After", "1");
    return busy;
  } catch (...) {
  }
  return json_error(500, message);
}

std::string iso_time(SysTime t) {
  const auto day = std::chrono::floor<std::chrono::days>(t);
  const std::chrono::year_month_day date{day};
  const std::chrono::hh_mm_ss time{t - day};
  char text[32];
  std::snprintf(text, sizeof text, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                static_cast<int>(time.hours().count()), static_cast<int>(time.minutes().count()),
                static_cast<int>(time.seconds().count()));
  return text;
}

}  // namespace channeld::api
