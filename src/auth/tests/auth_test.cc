#include "auth/auth.h"

#include <gtest/gtest.h>

#include "core/testing/temp_dir.h"
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "auth/crypto.h"
#include "auth/password.h"
#include "auth/rate_limit.h"

namespace ck::auth {
namespace {
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr std::int64_t kT0 = 1'700'000'000'000;
// Tiny argon2id cost so tests run fast; production defaults are checked separately.
constexpr PasswordParams kFastHash{1, 8, 1};

struct TempDir : ck::test_util::TempDir {
  TempDir() : ck::test_util::TempDir("auth-test") {}
};

template <class T>
T ok(Result<T> r) {
  if (r.has_error()) {
    ADD_FAILURE() << r.error().message;
    throw std::runtime_error(r.error().message);
  }
  return std::move(r.value());
}
void ok(Result<void> r) {
  if (r.has_error()) {
    ADD_FAILURE() << r.error().message;
    throw std::runtime_error(r.error().message);
  }
}

template <class T>
Errc err(const Result<T>& r) {
  EXPECT_TRUE(r.has_error());
  return r.has_error() ? r.error().code : Errc::internal;
}

std::unique_ptr<StateDb> open_db(const fs::path& file) {
  auto r = StateDb::open(file);
  if (r.has_error()) {
    throw std::runtime_error(r.error().message);
  }
  return std::move(r.value());
}

bool is_base32(std::string_view s) {
  return s.find_first_not_of("abcdefghijklmnopqrstuvwxyz234567") == std::string_view::npos;
}

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// An Auth over an in-memory StateDb with a clock the test moves.
class AuthTest : public ::testing::Test {
 protected:
  AuthTest() : db_(open_db(":memory:")) { make_auth(); }
  void make_auth(AuthOptions o = {}) {
    o.password = kFastHash;
    o.clock = [this] { return now_.load(); };
    auth_ = std::make_unique<Auth>(*db_, std::move(o));
  }
  void advance(std::chrono::milliseconds d) { now_ += d.count(); }

  std::atomic<std::int64_t> now_{kT0};
  std::unique_ptr<StateDb> db_;
  std::unique_ptr<Auth> auth_;
};

// ---- primitives ----

TEST(Crypto, Base32MatchesRfc4648InLowerCaseWithoutPadding) {
  EXPECT_EQ(base32(""), "");
  EXPECT_EQ(base32("f"), "my");
  EXPECT_EQ(base32("fo"), "mzxq");
  EXPECT_EQ(base32("foo"), "mzxw6");
  EXPECT_EQ(base32("foob"), "mzxw6yq");
  EXPECT_EQ(base32("fooba"), "mzxw6ytb");
  EXPECT_EQ(base32("foobar"), "mzxw6ytboi");
}

TEST(Crypto, Sha256AndHmacKnownAnswers) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // RFC 4231 test case 2.
  std::string mac = hmac_sha256("Jefe", "what do ya want for nothing?");
  std::string hex;
  for (unsigned char c : mac) {
    hex += "0123456789abcdef"[c >> 4];
    hex += "0123456789abcdef"[c & 15];
  }
  EXPECT_EQ(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Crypto, RandomBytesDifferAndConstantTimeEqualCompares) {
  EXPECT_EQ(random_bytes(32).size(), 32u);
  EXPECT_NE(random_bytes(32), random_bytes(32));
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  EXPECT_TRUE(constant_time_equal("", ""));
}

TEST(ScopesTest, HierarchyAndParsing) {
  Scopes read{Scope::read}, deploy{Scope::deploy}, admin{Scope::admin};
  EXPECT_TRUE(read.has(Scope::read));
  EXPECT_FALSE(read.has(Scope::deploy));
  EXPECT_FALSE(read.has(Scope::admin));
  EXPECT_TRUE(deploy.has(Scope::read));
  EXPECT_TRUE(deploy.has(Scope::deploy));
  EXPECT_FALSE(deploy.has(Scope::admin));
  EXPECT_TRUE(admin.has(Scope::read));
  EXPECT_TRUE(admin.has(Scope::deploy));
  EXPECT_TRUE(admin.has(Scope::admin));
  EXPECT_EQ(admin.str(), "read,deploy,admin");
  EXPECT_EQ(ok(Scopes::parse("deploy")), deploy);
  EXPECT_EQ(ok(Scopes::parse("read, admin")), admin);
  EXPECT_EQ(ok(Scopes::parse(read.str())), read);
  EXPECT_EQ(err(Scopes::parse("")), Errc::invalid_argument);
  auto bad = Scopes::parse("read,root");
  ASSERT_TRUE(bad.has_error());
  EXPECT_NE(bad.error().message.find("'root'"), std::string::npos);
}

TEST(Cookie, SessionCookieHeaderValue) {
  EXPECT_EQ(session_cookie("abc", 604800s, false),
            "ck_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=604800");
  EXPECT_EQ(session_cookie("abc", 60s, true),
            "__Host-ck_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure");
  EXPECT_EQ(clear_session_cookie(true),
            "__Host-ck_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure");
  EXPECT_EQ(session_cookie_name(false), "ck_session");
  EXPECT_EQ(session_cookie_name(true), "__Host-ck_session");
  // Host-only: no Domain attribute, whatever the flag.
  EXPECT_EQ(session_cookie("abc", 60s, false).find("Domain"), std::string::npos);
  EXPECT_EQ(session_cookie("abc", 60s, true).find("Domain"), std::string::npos);
}

// ---- tokens ----

TEST_F(AuthTest, CreatedTokenVerifiesWithItsNameAndScopes) {
  auto t = ok(auth_->create_token("ci", Scopes{Scope::deploy}));
  ASSERT_EQ(t.plaintext.substr(0, 3), "ck_");
  EXPECT_EQ(t.plaintext.size(), 3u + 52u);
  EXPECT_TRUE(is_base32(t.plaintext.substr(3)));
  EXPECT_EQ(t.id.substr(0, 4), "tok_");
  auto p = ok(auth_->verify_token(t.plaintext));
  EXPECT_EQ(p.kind, PrincipalKind::token);
  EXPECT_EQ(p.id, t.id);
  EXPECT_EQ(p.name, "ci");
  EXPECT_TRUE(p.scopes.has(Scope::read));
  EXPECT_TRUE(p.scopes.has(Scope::deploy));
  EXPECT_FALSE(p.scopes.has(Scope::admin));
  EXPECT_EQ(p.label(), "token:" + t.id);
  // Two tokens never share a secret or an id.
  auto t2 = ok(auth_->create_token("ci", Scopes{Scope::deploy}));
  EXPECT_NE(t2.plaintext, t.plaintext);
  EXPECT_NE(t2.id, t.id);
}

TEST_F(AuthTest, ScopeHierarchyCarriesThroughVerification) {
  auto r = ok(auth_->create_token("r", Scopes{Scope::read}));
  auto a = ok(auth_->create_token("a", Scopes{Scope::admin}));
  auto pr = ok(auth_->verify_token(r.plaintext));
  EXPECT_TRUE(pr.scopes.has(Scope::read));
  EXPECT_FALSE(pr.scopes.has(Scope::deploy));
  auto pa = ok(auth_->verify_token(a.plaintext));
  EXPECT_TRUE(pa.scopes.has(Scope::read));
  EXPECT_TRUE(pa.scopes.has(Scope::deploy));
  EXPECT_TRUE(pa.scopes.has(Scope::admin));
}

TEST_F(AuthTest, WrongTamperedAndMalformedTokensFail) {
  auto t = ok(auth_->create_token("ci", Scopes{Scope::read}));
  std::string tampered = t.plaintext;
  tampered.back() = tampered.back() == 'a' ? 'b' : 'a';
  std::string flipped_prefix = "CK_" + t.plaintext.substr(3);
  for (const std::string& bad :
       {std::string(""), std::string("ck_"), tampered, flipped_prefix,
        t.plaintext.substr(0, t.plaintext.size() - 1), t.plaintext + "a", " " + t.plaintext,
        std::string(10000, 'a'), ok(auth_->create_token("x", Scopes{Scope::read})).plaintext + "x",
        "ck_" + random_base32(32)}) {
    auto r = auth_->verify_token(bad);
    ASSERT_TRUE(r.has_error()) << bad;
    EXPECT_EQ(r.error().code, Errc::unauthenticated);
    EXPECT_EQ(r.error().message, "missing, wrong, expired or revoked token");
  }
  ok(auth_->verify_token(t.plaintext));
}

TEST_F(AuthTest, RevokedTokenFailsAndIsListedAsRevoked) {
  auto t = ok(auth_->create_token("ci", Scopes{Scope::read}));
  ok(auth_->verify_token(t.plaintext));
  advance(5s);
  ok(auth_->revoke_token(t.id));
  EXPECT_EQ(err(auth_->verify_token(t.plaintext)), Errc::unauthenticated);
  ok(auth_->revoke_token(t.id));  // twice is fine, keeps the first time
  EXPECT_EQ(err(auth_->revoke_token("tok_nope")), Errc::not_found);
  auto list = ok(auth_->list_tokens());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].id, t.id);
  EXPECT_EQ(list[0].name, "ci");
  EXPECT_EQ(list[0].revoked_ms, kT0 + 5000);
  EXPECT_EQ(list[0].created_ms, kT0);
  EXPECT_EQ(list[0].last_used_ms, kT0);
  EXPECT_EQ(list[0].scopes, Scopes{Scope::read});
}

TEST_F(AuthTest, TokenExpiresAfterItsTtl) {
  auto t = ok(auth_->create_token("short", Scopes{Scope::read}, 1h));
  auto forever = ok(auth_->create_token("forever", Scopes{Scope::read}));
  advance(1h - 1ms);
  ok(auth_->verify_token(t.plaintext));
  advance(1ms);
  EXPECT_EQ(err(auth_->verify_token(t.plaintext)), Errc::unauthenticated);
  advance(24h * 3650);
  ok(auth_->verify_token(forever.plaintext));
  auto list = ok(auth_->list_tokens());
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].expires_ms, kT0 + 3600'000);
  EXPECT_EQ(list[1].expires_ms, 0);
}

TEST_F(AuthTest, LastUsedIsRecordedAtMostOncePerInterval) {
  auto t = ok(auth_->create_token("ci", Scopes{Scope::read}));
  ok(auth_->verify_token(t.plaintext));
  EXPECT_EQ(ok(auth_->list_tokens())[0].last_used_ms, kT0);
  advance(30s);
  ok(auth_->verify_token(t.plaintext));
  EXPECT_EQ(ok(auth_->list_tokens())[0].last_used_ms, kT0);  // within touch_interval
  advance(31s);
  ok(auth_->verify_token(t.plaintext));
  EXPECT_EQ(ok(auth_->list_tokens())[0].last_used_ms, kT0 + 61'000);
}

TEST_F(AuthTest, BadTokenRequestsAreRefused) {
  EXPECT_EQ(err(auth_->create_token("", Scopes{Scope::read})), Errc::invalid_argument);
  EXPECT_EQ(err(auth_->create_token(std::string(101, 'x'), Scopes{Scope::read})),
            Errc::invalid_argument);
  EXPECT_EQ(err(auth_->create_token("x", Scopes{})), Errc::invalid_argument);
  EXPECT_EQ(err(auth_->create_token("x", Scopes{Scope::read}, -1ms)), Errc::invalid_argument);
}

// ---- admin token ----

TEST(AdminToken, GeneratedOnFirstStartOnlyAndSurvivesRestarts) {
  TempDir dir;
  const fs::path file = dir.path / "state.db";
  std::string plaintext;
  {
    auto db = open_db(file);
    Auth auth(*db);
    auto first = ok(auth.ensure_admin_token(""));
    ASSERT_TRUE(first.has_value());
    plaintext = *first;
    EXPECT_EQ(plaintext.substr(0, 3), "ck_");
    auto p = ok(auth.verify_token(plaintext));
    EXPECT_EQ(p.kind, PrincipalKind::admin);
    EXPECT_EQ(p.name, "admin");
    EXPECT_EQ(p.label(), "admin");
    EXPECT_TRUE(p.scopes.has(Scope::admin));
    // Same process, called again: nothing new.
    EXPECT_FALSE(ok(auth.ensure_admin_token("")).has_value());
  }
  {
    auto db = open_db(file);  // second start
    Auth auth(*db);
    EXPECT_FALSE(ok(auth.ensure_admin_token("")).has_value());
    EXPECT_EQ(ok(auth.verify_token(plaintext)).kind, PrincipalKind::admin);
    auto list = ok(auth.list_tokens());
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].kind, PrincipalKind::admin);
    // Revoking it makes the next start generate a new one.
    ok(auth.revoke_token(list[0].id));
    auto again = ok(auth.ensure_admin_token(""));
    ASSERT_TRUE(again.has_value());
    EXPECT_NE(*again, plaintext);
    EXPECT_EQ(err(auth.verify_token(plaintext)), Errc::unauthenticated);
    ok(auth.verify_token(*again));
  }
}

TEST(AdminToken, ConfiguredTokenIsUsedAndReplacesAGeneratedOne) {
  auto db = open_db(":memory:");
  Auth auth(*db);
  auto generated = ok(auth.ensure_admin_token(""));
  ASSERT_TRUE(generated.has_value());
  const std::string configured = "my-very-own-admin-token-1234";
  EXPECT_FALSE(ok(auth.ensure_admin_token(configured)).has_value());  // never printed
  EXPECT_EQ(ok(auth.verify_token(configured)).kind, PrincipalKind::admin);
  EXPECT_EQ(err(auth.verify_token(*generated)), Errc::unauthenticated);
  auto before = ok(auth.list_tokens());
  ASSERT_EQ(before.size(), 1u);
  // Next start with the same config: unchanged (same row).
  EXPECT_FALSE(ok(auth.ensure_admin_token(configured)).has_value());
  auto after = ok(auth.list_tokens());
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].id, before[0].id);
  // Config removed later: the configured one stays the admin token; nothing is generated.
  EXPECT_FALSE(ok(auth.ensure_admin_token("")).has_value());
  ok(auth.verify_token(configured));
  // Too short is a clear startup error.
  auto shorty = auth.ensure_admin_token("secret");
  ASSERT_TRUE(shorty.has_error());
  EXPECT_EQ(shorty.error().code, Errc::invalid_argument);
  EXPECT_NE(shorty.error().message.find("auth.admin_token"), std::string::npos);
}

TEST(AdminToken, ConfiguredOnFirstStartGeneratesNothing) {
  auto db = open_db(":memory:");
  Auth auth(*db);
  EXPECT_FALSE(ok(auth.ensure_admin_token("0123456789abcdef0123")).has_value());
  EXPECT_EQ(ok(auth.list_tokens()).size(), 1u);
  EXPECT_EQ(ok(auth.verify_token("0123456789abcdef0123")).kind, PrincipalKind::admin);
}

// ---- secrets at rest ----

TEST(SecretsAtRest, NoPlaintextTokenPasswordOrSessionIdInTheDatabaseFiles) {
  TempDir dir;
  const fs::path file = dir.path / "state.db";
  std::vector<std::string> secrets;
  {
    auto db = open_db(file);
    AuthOptions o;
    o.password = kFastHash;
    Auth auth(*db, o);
    secrets.push_back(*ok(auth.ensure_admin_token("")));
    secrets.push_back(ok(auth.create_token("ci", Scopes{Scope::deploy})).plaintext);
    const std::string password = "correct horse battery staple";
    secrets.push_back(password);
    auto user = ok(auth.create_user("alice", password, Role::member));
    auto s = ok(auth.create_session(user.id));
    secrets.push_back(s.id);
    secrets.push_back(s.csrf);
    ok(auth.verify_token(secrets[1]));
    ok(auth.lookup_session(s.id));
    // While open: the WAL holds the recent writes.
    for (const fs::path& f : {file, fs::path(file.string() + "-wal")}) {
      std::string bytes = file_bytes(f);
      for (const auto& secret : secrets) {
        EXPECT_EQ(bytes.find(secret), std::string::npos) << f << " holds " << secret;
        EXPECT_EQ(bytes.find(secret.substr(3)), std::string::npos) << f;  // without "ck_"
      }
    }
  }
  std::string bytes = file_bytes(file);               // checkpointed on close
  EXPECT_NE(bytes.find("alice"), std::string::npos);  // the scan does see stored text
  EXPECT_NE(bytes.find("$argon2id$"), std::string::npos);
  for (const auto& secret : secrets) {
    EXPECT_EQ(bytes.find(secret), std::string::npos) << secret;
  }
}

// ---- users and passwords ----

TEST(Password, HashAndVerifyWithSmallParameters) {
  auto h = ok(hash_password("correct horse battery", kFastHash));
  EXPECT_EQ(h.rfind("$argon2id$v=19$m=8,t=1,p=1$", 0), 0u) << h;
  EXPECT_TRUE(verify_password("correct horse battery", h));
  EXPECT_FALSE(verify_password("correct horse batterY", h));
  EXPECT_FALSE(verify_password("", h));
  EXPECT_FALSE(verify_password("correct horse battery", "$argon2i$v=19$m=8,t=1,p=1$xx$yy"));
  EXPECT_FALSE(verify_password("correct horse battery", "garbage"));
  // A fresh salt each time.
  EXPECT_NE(ok(hash_password("correct horse battery", kFastHash)), h);
}

TEST(Password, DefaultsAreArgon2idT3M64MiBP1) {
  PasswordParams p;
  EXPECT_EQ(p.t_cost, 3u);
  EXPECT_EQ(p.m_cost_kib, 65536u);
  EXPECT_EQ(p.parallelism, 1u);
}

TEST(Password, RulesGiveClearErrors) {
  auto shorty = check_password_rules("123456789");
  ASSERT_TRUE(shorty.has_error());
  EXPECT_EQ(shorty.error().code, Errc::invalid_argument);
  EXPECT_EQ(shorty.error().message, "the password is too short (9 characters): use at least 10");
  ok(check_password_rules("1234567890"));
  // Characters, not bytes: nine 2-byte letters are still too short.
  EXPECT_TRUE(check_password_rules("ééééééééé").has_error());
  ok(check_password_rules("éééééééééé"));
  EXPECT_TRUE(check_password_rules(std::string(kMaxPasswordBytes + 1, 'a')).has_error());
}

TEST_F(AuthTest, CreateUserAndVerifyPassword) {
  auto u = ok(auth_->create_user("alice", "correct horse battery", Role::admin));
  EXPECT_EQ(u.id.substr(0, 4), "usr_");
  EXPECT_EQ(u.name, "alice");
  EXPECT_EQ(u.role, Role::admin);
  auto p = ok(auth_->verify_password("alice", "correct horse battery"));
  EXPECT_EQ(p.kind, PrincipalKind::user);
  EXPECT_EQ(p.id, u.id);
  EXPECT_EQ(p.label(), "user:alice");
  EXPECT_TRUE(p.scopes.has(Scope::admin));
  auto m = ok(auth_->create_user("bob", "another long password", Role::member));
  auto pb = ok(auth_->verify_password("bob", "another long password"));
  EXPECT_TRUE(pb.scopes.has(Scope::deploy));
  EXPECT_FALSE(pb.scopes.has(Scope::admin));

  auto wrong = auth_->verify_password("alice", "correct horse batterY");
  ASSERT_TRUE(wrong.has_error());
  EXPECT_EQ(wrong.error().code, Errc::unauthenticated);
  auto nobody = auth_->verify_password("carol", "correct horse battery");
  ASSERT_TRUE(nobody.has_error());
  EXPECT_EQ(nobody.error().message, wrong.error().message);  // no hint which one was wrong
  EXPECT_EQ(err(auth_->verify_password("Not A Name", "correct horse battery")),
            Errc::unauthenticated);

  auto list = ok(auth_->list_users());
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "alice");
  EXPECT_EQ(list[1].id, m.id);
}

TEST_F(AuthTest, CreateUserRefusesBadInput) {
  auto shorty = auth_->create_user("alice", "short", Role::member);
  ASSERT_TRUE(shorty.has_error());
  EXPECT_EQ(shorty.error().code, Errc::invalid_argument);
  EXPECT_NE(shorty.error().message.find("at least 10"), std::string::npos);
  for (const char* bad : {"", "Alice", "-alice", "al ice", "alice!", "a/b"}) {
    EXPECT_EQ(err(auth_->create_user(bad, "correct horse battery", Role::member)),
              Errc::invalid_argument)
        << bad;
  }
  EXPECT_EQ(err(auth_->create_user(std::string(64, 'a'), "correct horse battery", Role::member)),
            Errc::invalid_argument);
  ok(auth_->create_user(std::string(63, 'a'), "correct horse battery", Role::member));
  ok(auth_->create_user("alice", "correct horse battery", Role::member));
  EXPECT_EQ(err(auth_->create_user("alice", "other long password", Role::admin)),
            Errc::already_exists);
}

// ---- sessions ----

TEST_F(AuthTest, SessionLookupSlidesAndExpires) {
  AuthOptions o;
  o.session_ttl = 1h;
  o.session_max_age = 5h;
  make_auth(o);
  auto u = ok(auth_->create_user("alice", "correct horse battery", Role::member));
  auto s = ok(auth_->create_session(u.id));
  EXPECT_EQ(s.id.size(), 52u);
  EXPECT_TRUE(is_base32(s.id));
  EXPECT_EQ(s.expires_ms, kT0 + 3600'000);
  EXPECT_EQ(s.principal.name, "alice");
  auto p = ok(auth_->lookup_session(s.id));
  EXPECT_EQ(p.kind, PrincipalKind::user);
  EXPECT_EQ(p.id, u.id);
  // Sliding: each use within the ttl pushes the end out.
  for (int i = 0; i < 4; ++i) {
    advance(50min);
    ok(auth_->lookup_session(s.id));
  }
  // ...but never past the maximum age (5 h from creation).
  advance(50min);  // 4h10m
  ok(auth_->lookup_session(s.id));
  advance(50min);  // 5h00m
  EXPECT_EQ(err(auth_->lookup_session(s.id)), Errc::unauthenticated);

  // Idle longer than the ttl: expired, and deleted.
  auto s2 = ok(auth_->create_session(u.id));
  advance(1h - 1ms);
  ok(auth_->lookup_session(s2.id));
  advance(1h);
  EXPECT_EQ(err(auth_->lookup_session(s2.id)), Errc::unauthenticated);
  EXPECT_FALSE(ok(db_->login_session(sha256_hex(s2.id))).has_value());
}

TEST_F(AuthTest, SessionDefaultsToSevenDays) {
  auto u = ok(auth_->create_user("alice", "correct horse battery", Role::member));
  auto s = ok(auth_->create_session(u.id));
  EXPECT_EQ(s.expires_ms, kT0 + 7 * 24 * 3600'000LL);
  advance(7 * 24h - 1s);
  ok(auth_->lookup_session(s.id));
}

TEST_F(AuthTest, DestroyAndPruneSessions) {
  auto u = ok(auth_->create_user("alice", "correct horse battery", Role::member));
  auto s = ok(auth_->create_session(u.id));
  ok(auth_->destroy_session(s.id));
  EXPECT_EQ(err(auth_->lookup_session(s.id)), Errc::unauthenticated);
  ok(auth_->destroy_session(s.id));  // again: fine
  ok(auth_->destroy_session(""));
  EXPECT_EQ(err(auth_->lookup_session("")), Errc::unauthenticated);
  EXPECT_EQ(err(auth_->lookup_session(random_base32(32))), Errc::unauthenticated);
  EXPECT_EQ(err(auth_->create_session("usr_nope")), Errc::not_found);
  ok(auth_->create_session(u.id));
  ok(auth_->create_session(u.id));
  EXPECT_EQ(ok(auth_->prune_sessions()), 0);
  advance(8 * 24h);
  EXPECT_EQ(ok(auth_->prune_sessions()), 2);
}

TEST_F(AuthTest, CsrfTokenIsPerSessionAndVerifiedInConstantTime) {
  auto u = ok(auth_->create_user("alice", "correct horse battery", Role::member));
  auto a = ok(auth_->create_session(u.id));
  auto b = ok(auth_->create_session(u.id));
  EXPECT_FALSE(a.csrf.empty());
  EXPECT_NE(a.csrf, b.csrf);
  EXPECT_NE(a.csrf, a.id);
  EXPECT_EQ(Auth::csrf_token(a.id), a.csrf);  // re-derivable for the next page
  EXPECT_TRUE(Auth::verify_csrf(a.id, a.csrf));
  EXPECT_FALSE(Auth::verify_csrf(a.id, b.csrf));
  EXPECT_FALSE(Auth::verify_csrf(b.id, a.csrf));
  EXPECT_FALSE(Auth::verify_csrf(a.id, ""));
  EXPECT_FALSE(Auth::verify_csrf("", Auth::csrf_token("")));
  std::string tampered = a.csrf;
  tampered[0] = tampered[0] == 'a' ? 'b' : 'a';
  EXPECT_FALSE(Auth::verify_csrf(a.id, tampered));
}

// ---- login and rate limiting ----

TEST(Limiter, LocksAfterFiveFailuresAndRecovers) {
  std::int64_t now = kT0;
  LoginLimiter lim({}, [&now] { return now; });
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(lim.blocked("alice", "10.0.0.1").has_value()) << i;
    lim.record_failure("alice", "10.0.0.1");
  }
  auto wait = lim.blocked("alice", "10.0.0.1");
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(*wait, 60s);  // 5 per 5 minutes: one more try a minute later
  // The address is locked for any user, but the user not from another address (row 8).
  EXPECT_FALSE(lim.blocked("alice", "10.0.0.2").has_value());
  EXPECT_TRUE(lim.blocked("bob", "10.0.0.1").has_value());
  EXPECT_FALSE(lim.blocked("bob", "10.0.0.2").has_value());
  now += 30'000;
  EXPECT_EQ(*lim.blocked("alice", "10.0.0.1"), 30s);
  now += 30'000;
  EXPECT_FALSE(lim.blocked("alice", "10.0.0.1").has_value());
  lim.record_failure("alice", "10.0.0.1");  // spends the refilled try
  EXPECT_EQ(*lim.blocked("alice", "10.0.0.1"), 60s);
  now += 5 * 60'000;  // a full window: all five back
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(lim.blocked("alice", "10.0.0.1").has_value()) << i;
    lim.record_failure("alice", "10.0.0.1");
  }
  EXPECT_TRUE(lim.blocked("alice", "10.0.0.1").has_value());
}

TEST(Limiter, SuccessResetsTheUserButNotTheAddress) {
  std::int64_t now = kT0;
  LoginLimiter lim({}, [&now] { return now; });
  for (int i = 0; i < 4; ++i) {
    lim.record_failure("alice", "10.0.0.1");
  }
  lim.record_success("alice");
  lim.record_failure("alice", "10.0.0.1");  // the address's fifth
  EXPECT_TRUE(lim.blocked("carol", "10.0.0.1").has_value());
  EXPECT_FALSE(lim.blocked("alice", "10.0.0.9").has_value());
}

TEST(Limiter, OneNameFromManyAddressesHitsTheUserCeiling) {
  std::int64_t now = kT0;
  LoginLimiter lim({}, [&now] { return now; });
  // 100 failures per 5 minutes for one name, spread over addresses (5 each, so no address or
  // pair is the limit).
  for (int i = 0; i < 100; ++i) {
    const std::string ip = "10.0." + std::to_string(i / 5) + ".1";
    ASSERT_FALSE(lim.acquire("alice", ip).has_value()) << i;
  }
  auto wait = lim.blocked("alice", "10.9.9.9");
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(*wait, 3s);  // 100 per 300 s: one every 3 s
  EXPECT_FALSE(lim.blocked("bob", "10.9.9.9").has_value());
}

TEST(Limiter, SuccessClearsItsPairOnly) {
  std::int64_t now = kT0;
  LoginLimits limits;
  limits.per_ip = {50, std::chrono::minutes(5)};
  LoginLimiter lim(limits, [&now] { return now; });
  for (int i = 0; i < 5; ++i) lim.record_failure("alice", "10.0.0.1");
  EXPECT_TRUE(lim.blocked("alice", "10.0.0.1").has_value());  // the pair
  EXPECT_FALSE(lim.blocked("bob", "10.0.0.1").has_value());   // the address allows 50
  lim.record_success("alice", "10.0.0.1");
  EXPECT_FALSE(lim.blocked("alice", "10.0.0.1").has_value());
}

TEST(Limiter, PerIpPolicyAndBoundedMemory) {
  std::int64_t now = kT0;
  LoginLimits limits;
  limits.per_ip = {20, std::chrono::minutes(10)};
  limits.max_keys = 10;
  LoginLimiter lim(limits, [&now] { return now; });
  for (int i = 0; i < 19; ++i) {
    lim.record_failure("", "10.0.0.1");
  }
  EXPECT_FALSE(lim.blocked("", "10.0.0.1").has_value());
  lim.record_failure("", "10.0.0.1");
  EXPECT_EQ(*lim.blocked("", "10.0.0.1"), 30s);  // 20 per 10 min: one per 30 s
  // Many distinct users: past max_keys, buckets that refilled are dropped, locked ones kept.
  for (int i = 0; i < 10; ++i) {
    lim.record_failure("u" + std::to_string(i), "");
  }
  EXPECT_EQ(lim.tracked(), 11u);  // 10 users + 1 address
  now += 10 * 60'000;             // everything refilled
  for (int i = 0; i < 100; ++i) {
    lim.record_failure("locked", "");  // the 11th user: the 10 full user buckets go
  }
  EXPECT_EQ(lim.tracked(), 2u);
  EXPECT_TRUE(lim.blocked("locked", "").has_value());
}

TEST_F(AuthTest, LoginIsRateLimitedAndAudited) {
  auto u = ok(auth_->create_user("alice", "correct horse battery", Role::member));
  for (int i = 0; i < 5; ++i) {
    auto r = auth_->login("alice", "wrong password!", "10.0.0.1");
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().code, Errc::unauthenticated) << i;
  }
  auto locked = auth_->login("alice", "correct horse battery", "10.0.0.1");
  ASSERT_TRUE(locked.has_error());
  EXPECT_EQ(locked.error().code, Errc::rate_limited);
  EXPECT_NE(locked.error().message.find("try again in 60 s"), std::string::npos)
      << locked.error().message;
  EXPECT_EQ(*auth_->limiter().blocked("alice", "10.0.0.1"), 60s);  // for Retry-After
  advance(60s);
  auto s = ok(auth_->login("alice", "correct horse battery", "10.0.0.1"));
  EXPECT_EQ(ok(auth_->lookup_session(s.id)).id, u.id);
  EXPECT_TRUE(Auth::verify_csrf(s.id, s.csrf));

  auto log = ok(auth_->audit_log(10));
  ASSERT_EQ(log.size(), 6u);
  EXPECT_EQ(log[0].action, "login");
  EXPECT_EQ(log[0].principal, "user:alice");
  EXPECT_EQ(log[0].ip, "10.0.0.1");
  EXPECT_EQ(log[1].action, "login.failed");
  EXPECT_EQ(log[1].target, "alice");
  EXPECT_EQ(log[1].principal, "");
}

TEST_F(AuthTest, ParallelLoginsCannotOutrunTheLimiter) {
  ok(auth_->create_user("alice", "correct horse battery", Role::member));
  std::atomic<int> wrong{0}, limited{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      auto r = auth_->login("alice", "wrong password!", "10.0.0.1");
      if (r.has_error() && r.error().code == Errc::unauthenticated) {
        ++wrong;
      } else if (r.has_error() && r.error().code == Errc::rate_limited) {
        ++limited;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(wrong.load(), 5);  // exactly the burst got to try a password
  EXPECT_EQ(limited.load(), 11);
}

TEST_F(AuthTest, OversizedLoginsAreRefusedBeforeAnything) {
  ok(auth_->create_user("alice", "correct horse battery", Role::member));
  const std::string huge(1 << 20, 'a');
  EXPECT_EQ(err(auth_->login(huge, "whatever password", "10.0.0.1")), Errc::invalid_argument);
  EXPECT_EQ(err(auth_->login(std::string(65, 'a'), "whatever password", "10.0.0.1")),
            Errc::invalid_argument);
  EXPECT_EQ(err(auth_->login("alice", std::string(2000, 'p'), "10.0.0.1")), Errc::invalid_argument);
  EXPECT_EQ(auth_->limiter().tracked(), 0u);    // no bucket for them
  EXPECT_TRUE(ok(auth_->audit_log(10)).empty());  // no audit row
  // The audit log cuts what it stores.
  ok(auth_->audit("", "login.failed", std::string(5000, 'x'), "", "10.0.0.1"));
  EXPECT_LE(ok(auth_->audit_log(1))[0].target.size(), kMaxAuditField);
}

TEST_F(AuthTest, TokensBoundToAUserActAsThem) {
  auto ann = ok(auth_->create_user("ann", "correct horse battery", Role::member));
  auto root = ok(auth_->create_user("root", "correct horse battery", Role::admin));
  EXPECT_EQ(err(auth_->create_token("t", Scopes{Scope::admin}, {}, ann.id)), Errc::forbidden);
  auto t = ok(auth_->create_token("t", Scopes{Scope::deploy}, {}, ann.id));
  auto p = ok(auth_->verify_token(t.plaintext));
  EXPECT_EQ(p.user_id, ann.id);
  EXPECT_EQ(p.scopes, (Scopes{Scope::deploy}));
  auto r = ok(auth_->create_token("r", Scopes{Scope::admin}, {}, root.id));
  EXPECT_TRUE(ok(auth_->verify_token(r.plaintext)).scopes.has(Scope::admin));
  auto free = ok(auth_->create_token("f", Scopes{Scope::deploy}));
  EXPECT_EQ(ok(auth_->verify_token(free.plaintext)).user_id, "");
  ASSERT_EQ(ok(auth_->list_tokens(ann.id)).size(), 1u);
  EXPECT_EQ(ok(auth_->list_tokens(ann.id))[0].id, t.id);
  EXPECT_EQ(err(auth_->revoke_token(free.id, ann.id)), Errc::not_found);  // not hers
  ok(auth_->revoke_token(t.id, ann.id));
  EXPECT_EQ(err(auth_->verify_token(t.plaintext)), Errc::unauthenticated);
}

TEST_F(AuthTest, SuccessfulLoginsDoNotLockAnAddress) {
  ok(auth_->create_user("alice", "correct horse battery", Role::member));
  for (int i = 0; i < 20; ++i) {
    ok(auth_->login("alice", "correct horse battery", "10.0.0.1"));
  }
  EXPECT_FALSE(auth_->limiter().blocked("alice", "10.0.0.1").has_value());
}

// ---- audit ----

TEST_F(AuthTest, AuditLogIsNewestFirstAndPaginates) {
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 25; ++i) {
    ids.push_back(ok(auth_->audit("admin", "workspace.create", "ws" + std::to_string(i),
                                  R"({"n":)" + std::to_string(i) + "}", "127.0.0.1")));
    advance(1s);
  }
  auto page1 = ok(auth_->audit_log(10));
  ASSERT_EQ(page1.size(), 10u);
  EXPECT_EQ(page1[0].id, ids[24]);
  EXPECT_EQ(page1[0].target, "ws24");
  EXPECT_EQ(page1[0].detail, R"({"n":24})");
  EXPECT_EQ(page1[0].at_ms, kT0 + 24'000);
  EXPECT_EQ(page1[0].principal, "admin");
  EXPECT_EQ(page1[0].ip, "127.0.0.1");
  for (std::size_t i = 1; i < page1.size(); ++i) {
    EXPECT_LT(page1[i].id, page1[i - 1].id);
  }
  auto page2 = ok(auth_->audit_log(10, page1.back().id));
  ASSERT_EQ(page2.size(), 10u);
  EXPECT_EQ(page2[0].target, "ws14");
  auto page3 = ok(auth_->audit_log(10, page2.back().id));
  ASSERT_EQ(page3.size(), 5u);
  EXPECT_EQ(page3.back().target, "ws0");
  EXPECT_TRUE(ok(auth_->audit_log(10, page3.back().id)).empty());

  EXPECT_EQ(ok(auth_->audit_log(1))[0].detail, R"({"n":24})");
  ok(auth_->audit("admin", "token.create", "tok_x"));
  EXPECT_EQ(ok(auth_->audit_log(1))[0].detail, "{}");
  EXPECT_EQ(err(auth_->audit("admin", "x", "y", "[1,2]")), Errc::invalid_argument);
  EXPECT_EQ(err(auth_->audit("admin", "x", "y", "{nope")), Errc::invalid_argument);
  EXPECT_EQ(err(auth_->audit("admin", "", "y")), Errc::invalid_argument);
  EXPECT_EQ(err(auth_->audit_log(0)), Errc::invalid_argument);
  EXPECT_EQ(err(auth_->audit_log(1001)), Errc::invalid_argument);
}

// ---- ownership ----

TEST_F(AuthTest, WorkspaceOwnershipAndVisibility) {
  auto none = ok(auth_->workspace_owner("site"));
  EXPECT_EQ(none.owner, "");
  EXPECT_TRUE(none.is_public);  // public unless someone says otherwise
  auto u = ok(auth_->create_user("alice", "correct horse battery", Role::member));
  ok(auth_->set_workspace_owner("site", u.id, false));
  auto got = ok(auth_->workspace_owner("site"));
  EXPECT_EQ(got.owner, u.id);
  EXPECT_FALSE(got.is_public);
  ok(auth_->set_workspace_owner("site", u.id, true));
  EXPECT_TRUE(ok(auth_->workspace_owner("site")).is_public);
  ok(auth_->set_workspace_owner("site", "", false));  // no owner
  EXPECT_EQ(ok(auth_->workspace_owner("site")).owner, "");
  EXPECT_EQ(err(auth_->set_workspace_owner("site", "usr_nope", true)), Errc::not_found);
  EXPECT_EQ(err(auth_->set_workspace_owner("Bad Name", u.id, true)), Errc::invalid_argument);
}

TEST_F(AuthTest, WhoReachesAPrivateWorkspace) {
  auto ann = ok(auth_->create_user("ann", "correct horse battery", Role::member));
  auto ben = ok(auth_->create_user("ben", "correct horse battery", Role::member));
  auto root = ok(auth_->create_user("root", "correct horse battery", Role::admin));
  auto ann_s = ok(auth_->create_session(ann.id)).id;
  auto ben_s = ok(auth_->create_session(ben.id)).id;
  auto root_s = ok(auth_->create_session(root.id)).id;
  using R = Auth::Reach;
  // Nobody owns it (it came from storage): admins only (issue 13; it was any user before).
  EXPECT_EQ(auth_->reach_private(ben_s, "site"), R::forbidden);
  EXPECT_EQ(auth_->reach_private(root_s, "site"), R::allowed);
  EXPECT_EQ(auth_->reach_private("", "site"), R::login);
  EXPECT_EQ(auth_->reach_private("forged", "site"), R::login);
  // Ann's: Ann and admins.
  ok(auth_->set_workspace_owner("site", ann.id, false));
  EXPECT_EQ(auth_->reach_private(ann_s, "site"), R::allowed);
  EXPECT_EQ(auth_->reach_private(ben_s, "site"), R::forbidden);
  EXPECT_EQ(auth_->reach_private(root_s, "site"), R::allowed);
  ok(auth_->destroy_session(ann_s));
  EXPECT_EQ(auth_->reach_private(ann_s, "site"), R::login);
}

// ---- concurrency ----

TEST(Concurrency, EightThreadsVerifyWhileOneCreates) {
  TempDir dir;
  auto db = open_db(dir.path / "state.db");
  Auth auth(*db);
  std::vector<std::string> tokens;
  for (int i = 0; i < 8; ++i) {
    tokens.push_back(ok(auth.create_token("t" + std::to_string(i), Scopes{Scope::read})).plaintext);
  }
  std::atomic<bool> stop{false};
  std::atomic<int> verified{0}, failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 8; ++t) {
    readers.emplace_back([&, t] {
      int n = 0;
      while (!stop.load() || n < 50) {
        auto p = auth.verify_token(tokens[static_cast<std::size_t>((t + n) % 8)]);
        if (p.has_error() || p.value().name != "t" + std::to_string((t + n) % 8)) {
          ++failures;
        }
        auto bad = auth.verify_token("ck_" + std::to_string(n));
        if (!bad.has_error()) {
          ++failures;
        }
        ++verified;
        ++n;
      }
    });
  }
  std::vector<NewToken> created;
  for (int i = 0; i < 100; ++i) {
    auto r = auth.create_token("new" + std::to_string(i), Scopes{Scope::deploy});
    ASSERT_TRUE(r.has_value()) << r.error().message;
    created.push_back(r.value());
  }
  stop = true;
  for (auto& th : readers) {
    th.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GE(verified.load(), 8 * 50);
  for (const auto& c : created) {
    EXPECT_EQ(ok(auth.verify_token(c.plaintext)).id, c.id);
  }
  EXPECT_EQ(ok(auth.list_tokens()).size(), 108u);
}

}  // namespace
}  // namespace ck::auth
