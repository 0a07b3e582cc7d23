#include "core/error.h"

namespace ck {

std::string_view errc_name(Errc c) {
  switch (c) {
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::not_found: return "not_found";
    case Errc::already_exists: return "already_exists";
    case Errc::conflict: return "conflict";
    case Errc::forbidden: return "forbidden";
    case Errc::unauthenticated: return "unauthenticated";
    case Errc::rate_limited: return "rate_limited";
    case Errc::precondition_failed: return "precondition_failed";
    case Errc::too_large: return "too_large";
    case Errc::unavailable: return "unavailable";
    case Errc::timeout: return "timeout";
    case Errc::io: return "io_error";
    case Errc::internal: return "internal";
  }
  return "internal";
}

bool is_retryable(Errc c) { return c == Errc::unavailable || c == Errc::timeout || c == Errc::io; }

}  // namespace ck
