#pragma once
// Pieces shared by the files of ck_compose; not part of its interface.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "compose/model.h"

namespace ck::compose::detail {

/// One file, parsed and interpolated, without the whole-project checks (an override file
/// may name services and volumes its base declares).
Project parse_file(std::string_view text, const std::string& file, const Vars& vars,
                   const std::filesystem::path& dir, std::size_t max_bytes);

/// The whole-project checks, then profiles: every service has an image or a build, every
/// depends_on, volume and network it names exists, no dependency cycle; services whose
/// profiles are not active (`profiles` plus COMPOSE_PROFILES in `vars`) are dropped.
void finalize(Project& project, const std::vector<std::string>& profiles, const Vars& vars);

/// The file's bytes, or Error (at `shown`) when it is missing, unreadable or over `max_bytes`.
std::string read_limited(const std::filesystem::path& path, const std::string& shown,
                         std::size_t max_bytes, const Location& where);

/// True when `path` (lexically normalised) is `root` or below it.
bool is_within(const std::filesystem::path& root, const std::filesystem::path& path);

/// Compose's service / volume / network name rule: [a-zA-Z0-9][a-zA-Z0-9_.-]*.
bool valid_name(std::string_view name);

inline constexpr std::size_t kMaxPorts = 10000;  // per service, ranges expanded

// Value syntaxes (values.cc); each throws Error at `where` saying what is expected.
bool to_int(std::string_view s, long min, long max, long& out);
bool port_range(std::string_view s, long& lo, long& hi);  // "3000" or "3000-3005"
bool known_protocol(const std::string& p);                // tcp, udp, sctp
/// "a:b:c" → {"a", "b", "c"}: a port or volume spec's fields, empty ones kept.
std::vector<std::string> split_colons(const std::string& spec);
/// Appends the ports of a short-syntax spec to `out` (ranges expanded, at most 10000).
void parse_port_spec(std::string spec, const Location& where, std::vector<Port>& out);
std::chrono::milliseconds parse_duration(const std::string& s, const Location& where);
std::uint64_t parse_memory(const std::string& s, const Location& where);
double parse_cpus(const std::string& s, const Location& where);

}  // namespace ck::compose::detail
