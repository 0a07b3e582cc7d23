#pragma once
// Error values shared by every module: a machine-readable code plus the sentence a user reads.

#include <boost/outcome/result.hpp>
#include <boost/outcome/try.hpp>
#include <string>
#include <string_view>

namespace ck {

/// What kind of failure, so callers branch on it (retry, HTTP status) without parsing text.
enum class Errc {
  invalid_argument,  // bad input from a user or a file: names, JSON, YAML, paths
  not_found,
  already_exists,
  conflict,  // the workspace's state does not allow it: static, stopped, wrong storage (HTTP 409)
  forbidden,
  unauthenticated,  // no credentials, or wrong/expired ones (HTTP 401)
  rate_limited,     // too many attempts; try again later (HTTP 429)
  precondition_failed,  // an If-Match / If-None-Match condition does not hold (HTTP 412)
  too_large,            // a body or file over a configured size limit (HTTP 413)
  unavailable,  // a dependency (upstream, engine, port range) cannot serve now; retryable
  timeout,      // retryable
  io,           // the filesystem or a socket failed
  internal,
};

std::string_view errc_name(Errc c);

/// True for failures that may go away by themselves (the monitor retries only these).
bool is_retryable(Errc c);

struct Error {
  Errc code = Errc::internal;
  std::string message;  // says what happened and, where it can, what to do next
};

inline Error make_error(Errc code, std::string message) { return Error{code, std::move(message)}; }

namespace outcome = boost::outcome_v2;
template <class T>
using Result = outcome::result<T, Error, outcome::policy::terminate>;

inline auto fail(Errc code, std::string message) {
  return outcome::failure(Error{code, std::move(message)});
}

}  // namespace ck
