#pragma once
// Who may see or act on a workspace: the one decision every per-workspace endpoint of the API,
// the gateway's private check and every /monitor/ws event pass through (issue 13). Pure: no
// I/O; callers bring the caller's principal and the workspace's owner record.
//
// Rules: admins (any credential with the admin scope) see and act on every workspace. Other
// signed-in callers see and act on public workspaces and on those their user owns (a login
// session, or a token bound to the user who created it); a private workspace with no recorded
// owner is for admins only. Anonymous callers see public workspaces and act on nothing. Acting
// also needs the deploy scope. Thread-safe (a function).

#include <string>

#include "auth/auth.h"
#include "state/state.h"

namespace ck::auth {

/// What is asked of a workspace.
enum class Access {
  see,  // list it, read it, its status, history, logs, jobs and events; clone it; open it
  act,  // start, stop, restart, run, sync, delete
};

/// The answer, and how an endpoint says it.
enum class Decision {
  allowed,
  login,      // anonymous, and signing in may help (acting on a public workspace): 401
  forbidden,  // may see it but not do this (e.g. a read-only token acting): 403
  hidden,     // may not know it exists: 404, as if there were no such workspace
};

std::string_view decision_name(Decision d);  // "allowed", "login", "forbidden", "hidden"

/// The decision for `who` (nullptr: anonymous) on a workspace whose owner record (owner user
/// id, "" for none; and whether it is public) is `ws`, asking `what`.
Decision authorize(const Principal* who, const WorkspaceOwner& ws, Access what);

/// Whether `who` sees every workspace (the admin scope).
bool sees_everything(const Principal* who);

}  // namespace ck::auth
