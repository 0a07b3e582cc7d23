#pragma once
// Logging: one named spdlog logger per module, text on a terminal or JSON lines (--log-format json).

#include <memory>
#include <spdlog/spdlog.h>
#include <string>
#include <string_view>

#include "core/error.h"

namespace ck::log {

/// Configures every logger created afterwards and the existing ones. Call once at start-up.
/// format: "text" | "json"; level: "debug" | "info" | "warn" | "error".
Result<void> setup(std::string_view format, std::string_view level);

/// The logger of a module ("gateway", "monitor", ...), created on first use, writing to stderr.
std::shared_ptr<spdlog::logger> get(const std::string& module);

}  // namespace ck::log
