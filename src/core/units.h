#pragma once
// Parsing of the human units used in config files and workspace.json: durations and sizes.

#include <chrono>
#include <cstdint>
#include <ctime>
#include <optional>
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
/// For people: "512 B", "1.5 KiB", "12.0 MiB" (one decimal from KiB up).
std::string format_bytes(std::uint64_t bytes);
/// "2026-12-06T19:40:15Z" (RFC 3339, UTC).
std::string format_utc(std::time_t t);
/// The inverse of format_utc, also with a fraction (".123456789") and a "+01:00" offset after
/// the seconds, as the Docker engine and S3 write times; nullopt for anything else.
std::optional<std::time_t> parse_utc(std::string_view text);
/// "2026-12-06 19:40:15" in the local time zone (TZ), with " CET" after it when `zone`.
std::string format_local(std::time_t t, bool zone = false);

}  // namespace ck
