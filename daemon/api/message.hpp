// api/message: the request and response values Routes and its handlers exchange, free of any
// socket or HTTP library.
#pragma once

#include <exception>
#include <map>
#include <string>
#include <string_view>

#include "model/model.hpp"

namespace channeld::api {

struct Request {
  std::string method;                          // "GET", "HEAD", "POST", ...
  std::string path;                            // decoded, without the query string
  std::map<std::string, std::string> query;    // first value of each parameter
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  // Fields of a multipart/form-data body (its `body` is then empty). Fields of an
  // application/x-www-form-urlencoded body are in `query` as well as in `body`.
  std::map<std::string, std::string> form;
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::map<std::string, std::string> headers;  // beyond Content-Type and Content-Length
};

// {"error": message} with the given status: every error this API returns has this shape.
Response json_error(int status, std::string_view message);

// What a request's failure (an exception a handler or a lookup threw) is answered with: 503
// and Retry-After when the database had no session free for it within database.api_session_wait
// (a burst: the same request shortly after may well work), 500 for anything else. `context`
// prefixes the message when not empty.
Response failure_response(const std::exception_ptr& error, std::string_view context = {});

// The message of an exception caught as `error` ("unknown error" for what is not one).
std::string describe(const std::exception_ptr& error);

// "2026-12-01T09:00:00Z": how every time in a response body is written (UTC, whole seconds).
std::string iso_time(SysTime t);

}  // namespace channeld::api
