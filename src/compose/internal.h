#pragma once
// Pieces shared by the files of ck_compose; not part of its interface.

#include <filesystem>
#include <set>
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

// Keys and names (keys.cc).
/// The keys the Compose specification defines at the top level / for a service.
const std::set<std::string>& top_level_keys();
const std::set<std::string>& service_keys();
/// The key of `keys` within two edits of `key` (a typo's likely meaning), else "".
std::string closest_key(const std::string& key, const std::set<std::string>& keys);
/// A container hostname: dot-separated labels of letters, digits and '-', each 1-63 long.
bool valid_hostname(const std::string& host);
/// A stop signal: SIGNAME / NAME (upper case) or a number 1-99.
bool valid_signal(const std::string& sig);

}  // namespace ck::compose::detail
