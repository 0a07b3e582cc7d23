#pragma once
// `--watch` for the commands that send a folder (`ws upload --watch`, `deploy --watch`): one
// pass at once, then one after each burst of changes, until Ctrl-C (SIGINT) or SIGTERM.

#include <filesystem>
#include <functional>

namespace ck::cli {

/// Runs `pass(false)`, then `pass(true)` (quiet: say nothing when nothing changed) after each
/// batch of changes under `dir`. The watcher and the signal handler are set up before the first
/// pass, so a save made while it runs is caught and Ctrl-C at any point ends the command
/// cleanly. A pass that fails (false) leaves the watch running: the next save retries. The
/// exit code: 0 once stopped, 1 when the folder cannot be watched.
int watch_folder(const std::filesystem::path& dir, const std::function<bool(bool quiet)>& pass);

}  // namespace ck::cli
