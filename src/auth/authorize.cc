#include "auth/authorize.h"

namespace ck::auth {

std::string_view decision_name(Decision d) {
  switch (d) {
    case Decision::allowed:
      return "allowed";
    case Decision::login:
      return "login";
    case Decision::forbidden:
      return "forbidden";
    case Decision::hidden:
      return "hidden";
  }
  return "hidden";
}

bool sees_everything(const Principal* who) {
  return who != nullptr && who->scopes.has(Scope::admin);
}

Decision authorize(const Principal* who, const WorkspaceOwner& ws, Access what) {
  if (who == nullptr) {
    if (!ws.is_public) {
      return Decision::hidden;
    }
    return what == Access::see ? Decision::allowed : Decision::login;
  }
  bool sees = sees_everything(who);
  if (!sees) {
    // A user's own workspace: a session, or a token bound to the user who made it. A token
    // with no user (made by the admin token) owns nothing. An unowned private one: admins only.
    const bool own = !who->user_id.empty() && !ws.owner.empty() && ws.owner == who->user_id;
    sees = ws.is_public || own;
  }
  if (!sees) {
    return Decision::hidden;
  }
  if (what == Access::act && !who->scopes.has(Scope::deploy)) {
    return Decision::forbidden;
  }
  return Decision::allowed;
}

}  // namespace ck::auth
