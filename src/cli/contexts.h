#pragma once
// The CLI's remote contexts (`cloudyknight login`, `context list|use|remove`): which control
// planes it talks to and with which API token, kept in $XDG_CONFIG_HOME/cloudyknight/contexts.yaml
// (else ~/.config/...), mode 0600, written atomically. Never holds a password. Pure parsing and
// formatting here (unit-tested); the file I/O is the two functions at the end. Main thread only.

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace ck::cli {

/// One control plane the CLI can talk to.
struct Context {
  std::string name;      // what `context use NAME` takes
  std::string url;       // the control plane's base URL, e.g. https://ck.example.com
  std::string token;     // an API token (ck_...) or the admin token
  std::string token_id;  // set when login made the token: `logout` revokes it on the server
  std::string user;      // the user login logged in as (shown by `context list`), if any
  std::string cacert;    // a CA bundle to trust for https (--cacert), if any
};

struct Contexts {
  std::string current;  // a name in `all`, or "" for none
  std::vector<Context> all;

  const Context* find(const std::string& name) const;
  Context* find(const std::string& name);
  /// Adds or replaces (by name).
  void put(Context c);
  /// False when there is no such context. Removing the current one leaves none current.
  bool remove(const std::string& name);
};

constexpr std::size_t kMaxContextsFile = 1 << 20;

/// Parses the file's text; `origin` names it in errors ("<path>: line 3: ...").
Result<Contexts> parse_contexts(const std::string& text, const std::string& origin);
std::string format_contexts(const Contexts& c);

/// Context names: what `[a-zA-Z0-9._:@-]{1,64}` allows (the default is the URL's host:port).
bool is_valid_context_name(const std::string& name);
/// The default context name for a URL: its host[:port] (e.g. "ck.example.com").
std::string context_name_for_url(const std::string& url);
/// Checks a control plane URL: http:// or https://, a host, no query; trailing slashes dropped.
Result<std::string> normalize_url(const std::string& url);

using EnvFn = std::function<std::optional<std::string>(const std::string&)>;
/// $XDG_CONFIG_HOME/cloudyknight/contexts.yaml, else $HOME/.config/cloudyknight/contexts.yaml.
Result<std::filesystem::path> contexts_path(const EnvFn& env);
/// An empty set when the file does not exist.
Result<Contexts> load_contexts(const std::filesystem::path& path);
/// Writes a temporary file (mode 0600) beside it and renames it into place; makes the folder
/// (mode 0700) when missing.
Result<void> save_contexts(const std::filesystem::path& path, const Contexts& c);

}  // namespace ck::cli
