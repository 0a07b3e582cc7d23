#pragma once
// Logging: one named spdlog logger per module, text on a terminal or JSON lines (--log-format json).

#include <memory>
#include <spdlog/spdlog.h>
#include <string>
#include <string_view>
#include <vector>
#include <cstdint>

#include "core/error.h"

namespace ck::log {

/// Configures every logger created afterwards and the existing ones. Call once at start-up.
/// format: "text" | "json"; level: "debug" | "info" | "warn" | "error".
Result<void> setup(std::string_view format, std::string_view level);

/// The logger of a module ("gateway", "monitor", ...), created on first use, writing to stderr
/// and to the in-memory ring that recent() reads.
std::shared_ptr<spdlog::logger> get(const std::string& module);

/// One logged line, as the ring keeps it.
struct Record {
  std::uint64_t seq = 0;  // 1, 2, ... in logging order
  std::string time;       // "2026-11-26T03:12:15.123Z"
  std::string level;      // "info"
  std::string logger;     // "monitor"
  std::string msg;
};

/// How many records the ring keeps.
inline constexpr std::size_t kRingSize = 2000;

/// The newest records with seq > `after`, at most `max` of them, oldest first. Thread-safe.
std::vector<Record> recent(std::size_t max, std::uint64_t after = 0);

}  // namespace ck::log
