#pragma once
// The CLI as a remote client (issue 18): `login`, `logout`, `context list|use|remove`, and the
// `workspace` commands over the control-plane API. Each returns the process exit code:
// 0 ok, 1 failure, 2 usage, 3 not found, 4 not allowed (401/403); a failure prints one line on
// stderr ("cloudyknight: <message> (<code>, HTTP <status>)" for the server's refusals).

#include <optional>
#include <string>
#include <vector>

#include "cli/api_client.h"
#include "cli/contexts.h"

namespace ck::cli {

constexpr int kExitOk = 0, kExitFailure = 1, kExitUsage = 2, kExitNotFound = 3, kExitNotAllowed = 4;

/// Where the API commands go: CK_URL (with CK_TOKEN, CK_CACERT) when set, else the current
/// context (CK_TOKEN and CK_CACERT still override its token and CA). nullopt: neither, so the
/// commands that also exist for storage run locally.
Result<std::optional<Endpoint>> resolve_remote(const EnvFn& env);

struct LoginOptions {
  std::string url;
  std::optional<std::string> token;  // "-": read from stdin
  std::string user;
  std::string cacert;
  std::string name;  // context name; default: the URL's host[:port]
};
int login_command(const LoginOptions& o, const EnvFn& env);
/// Revokes the context's token on the server when login made it, then forgets the token.
int logout_command(const std::string& context, const EnvFn& env);
int context_list(bool json, const EnvFn& env);
int context_use(const std::string& name, const EnvFn& env);
int context_remove(const std::string& name, const EnvFn& env);

int remote_list(const Endpoint& e, bool json);
int remote_status(const Endpoint& e, const std::string& name, bool json);
struct CreateOptions {
  std::string name, template_name, clone_of, git_url;
  bool private_ws = false;
  bool json = false;
};
int remote_create(const Endpoint& e, const CreateOptions& o);
int remote_delete(const Endpoint& e, const std::string& name, bool yes);
/// start, stop or restart.
int remote_action(const Endpoint& e, const std::string& name, const std::string& action);
int remote_logs(const Endpoint& e, const std::string& name, bool follow, int tail,
                const std::string& service);
int remote_run(const Endpoint& e, const std::string& name, const std::string& timeout,
               const std::vector<std::string>& argv);
int remote_open(const Endpoint& e, const std::string& name, bool browser);
int remote_sync(const Endpoint& e, const std::string& name);
/// `cloudyknight gc`: a cleanup on the server (admin), or with dry_run its plan; prints the report.
int remote_gc(const Endpoint& e, bool dry_run, bool json);

/// The line printed when an API-only command has no control plane to talk to.
std::string no_remote_message(const std::string& command);

}  // namespace ck::cli
