#pragma once
// Small file helpers shared by modules.

#include <filesystem>
#include <optional>
#include <string>

namespace ck {

/// The whole content of a regular file (symlinks followed), or nothing if it is missing,
/// not a regular file, or unreadable.
std::optional<std::string> read_file(const std::filesystem::path& path);

}  // namespace ck
