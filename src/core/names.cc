#include "core/names.h"

#include <fmt/format.h>

namespace ck {

Result<void> validate_workspace_name(std::string_view name) {
  auto bad = [&](std::string_view why) {
    return fail(Errc::invalid_argument,
                fmt::format("invalid workspace name '{}': {} (names are 1-63 characters of a-z, 0-9 "
                            "and '-', starting with a letter or digit; rename the folder)",
                            name, why));
  };
  if (name.empty()) return bad("it is empty");
  if (name.size() > 63) return bad("it is longer than 63 characters");
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') return bad("it has uppercase letters");
  }
  char first = name.front();
  if (!((first >= 'a' && first <= 'z') || (first >= '0' && first <= '9'))) {
    return bad("it must start with a lowercase letter or a digit");
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) {
      if (c >= 'A' && c <= 'Z') return bad("it has uppercase letters");
      return bad(fmt::format("it contains '{}'", c));
    }
  }
  if (name == kReservedMonitor) return bad("'monitor' is reserved for the control plane");
  return outcome::success();
}

bool is_valid_workspace_name(std::string_view name) {
  return !validate_workspace_name(name).has_error();
}

Result<WorkspaceName> WorkspaceName::parse(std::string_view s) {
  BOOST_OUTCOME_TRY(validate_workspace_name(s));
  return WorkspaceName(std::string(s));
}

}  // namespace ck
