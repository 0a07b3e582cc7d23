#pragma once
// Parsing of the human units used in config files and workspace.json: durations and sizes.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"

namespace ck {

using Duration = std::chrono::milliseconds;

/// "300ms", "30s", "10m", "2h", "1d"; a bare number is seconds.
Result<Duration> parse_duration(std::string_view text);
/// "512", "16k", "64m", "1g" (binary multiples; an optional trailing "b"/"ib" is accepted).
Result<std::uint64_t> parse_size(std::string_view text);
std::string format_duration(Duration d);
std::string format_size(std::uint64_t bytes);

}  // namespace ck
