#pragma once
// Where a command-line tool keeps its per-user files.

#include <filesystem>

namespace ck {

/// $XDG_CACHE_HOME when it is an absolute path, else $HOME/.cache, else the temporary folder
/// (the XDG Base Directory rules); callers add "cloudyknight/<what>".
std::filesystem::path user_cache_dir();

}  // namespace ck
