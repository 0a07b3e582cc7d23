#pragma once
// Workspace names: the one rule (DESIGN.md "Workspace names") every module checks against.

#include <string>
#include <string_view>

#include "core/error.h"

namespace ck {

inline constexpr std::string_view kHomeWorkspace = "www";
inline constexpr std::string_view kReservedMonitor = "monitor";

/// Succeeds when `name` matches ^[a-z0-9][a-z0-9-]{0,62}$ and is not reserved. The error
/// message says why and how to fix it; names are never sanitised silently.
Result<void> validate_workspace_name(std::string_view name);
bool is_valid_workspace_name(std::string_view name);

/// A validated workspace name.
class WorkspaceName {
 public:
  static Result<WorkspaceName> parse(std::string_view s);
  const std::string& str() const { return value_; }
  bool operator==(const WorkspaceName&) const = default;
  auto operator<=>(const WorkspaceName&) const = default;

 private:
  explicit WorkspaceName(std::string v) : value_(std::move(v)) {}
  std::string value_;
};

}  // namespace ck
