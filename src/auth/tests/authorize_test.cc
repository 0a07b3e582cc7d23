// authorize() as a table: every kind of caller × private/public, owned/unowned × see/act.
#include "auth/authorize.h"

#include <gtest/gtest.h>

#include <vector>

namespace ck::auth {
namespace {

struct Row {
  const char* what;
  std::optional<Principal> who;  // nullopt: anonymous
  WorkspaceOwner ws;
  Access access;
  Decision expected;
};

Principal user(const char* id, Scope top) { return {PrincipalKind::user, id, id, {top}, id}; }
Principal token(const char* user_id, Scope s) {
  return {PrincipalKind::token, "tok_x", "t", {s}, user_id};
}
Principal admin_token() { return {PrincipalKind::admin, "tok_a", "admin", {Scope::admin}, ""}; }

TEST(Authorize, Table) {
  const WorkspaceOwner anns_private{"usr_ann", false}, anns_public{"usr_ann", true};
  const WorkspaceOwner unowned_private{"", false}, unowned_public{"", true};
  const auto A = Access::act, S = Access::see;
  const auto ok = Decision::allowed, hid = Decision::hidden, no = Decision::forbidden,
             login = Decision::login;
  const std::vector<Row> rows = {
      // The owner, by session and by a token bound to them.
      {"owner sees", user("usr_ann", Scope::deploy), anns_private, S, ok},
      {"owner acts", user("usr_ann", Scope::deploy), anns_private, A, ok},
      {"owner's token acts", token("usr_ann", Scope::deploy), anns_private, A, ok},
      {"owner's read token sees", token("usr_ann", Scope::read), anns_private, S, ok},
      {"owner's read token may not act", token("usr_ann", Scope::read), anns_private, A, no},
      // Another member.
      {"other member", user("usr_ben", Scope::deploy), anns_private, S, hid},
      {"other member acting", user("usr_ben", Scope::deploy), anns_private, A, hid},
      {"other member's token", token("usr_ben", Scope::deploy), anns_private, S, hid},
      {"other member, public", user("usr_ben", Scope::deploy), anns_public, S, ok},
      {"other member acts on public", user("usr_ben", Scope::deploy), anns_public, A, ok},
      {"other member's read token on public", token("usr_ben", Scope::read), anns_public, A, no},
      // Unowned private: admins only (stricter than before issue 13).
      {"member, unowned private", user("usr_ben", Scope::deploy), unowned_private, S, hid},
      {"member, unowned public", user("usr_ben", Scope::deploy), unowned_public, A, ok},
      // Admins: a session, the admin token, a token with the admin scope.
      {"admin user", user("usr_root", Scope::admin), anns_private, A, ok},
      {"admin user, unowned", user("usr_root", Scope::admin), unowned_private, S, ok},
      {"admin token", admin_token(), anns_private, A, ok},
      {"admin-made admin token", token("", Scope::admin), unowned_private, A, ok},
      // A token the admin token made without the admin scope: public only.
      {"admin-made deploy token, private", token("", Scope::deploy), anns_private, S, hid},
      {"admin-made deploy token, unowned", token("", Scope::deploy), unowned_private, S, hid},
      {"admin-made deploy token, public", token("", Scope::deploy), anns_public, A, ok},
      {"admin-made read token, public", token("", Scope::read), unowned_public, A, no},
      // Anonymous.
      {"anonymous sees public", std::nullopt, anns_public, S, ok},
      {"anonymous acts on public", std::nullopt, unowned_public, A, login},
      {"anonymous, private", std::nullopt, anns_private, S, hid},
      {"anonymous acts on private", std::nullopt, anns_private, A, hid},
      // A user id never matches an empty owner.
      {"no user, no owner", token("", Scope::deploy), unowned_private, A, hid},
  };
  for (const auto& r : rows) {
    EXPECT_EQ(decision_name(authorize(r.who ? &*r.who : nullptr, r.ws, r.access)),
              decision_name(r.expected))
        << r.what;
  }
}

TEST(Authorize, SeesEverythingIsTheAdminScope) {
  EXPECT_FALSE(sees_everything(nullptr));
  auto member = user("usr_ann", Scope::deploy);
  EXPECT_FALSE(sees_everything(&member));
  auto root = user("usr_root", Scope::admin);
  EXPECT_TRUE(sees_everything(&root));
  auto a = admin_token();
  EXPECT_TRUE(sees_everything(&a));
}

}  // namespace
}  // namespace ck::auth
