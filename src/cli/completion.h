#pragma once
// `cloudyknight completion bash|zsh|fish`: shell completion scripts generated from the CLI11
// app's subcommands and options, so they never drift from the parser.

#include <string>

namespace CLI {
class App;
}

namespace ck::cli {

/// The completion script for `shell` (bash, zsh or fish); "" for another shell.
std::string completion_script(const CLI::App& app, const std::string& shell);

}  // namespace ck::cli
