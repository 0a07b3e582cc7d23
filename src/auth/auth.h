#pragma once
// Authentication and authorization records for the control plane and the gateway: API tokens
// with scopes, the admin token, users with argon2id passwords, login sessions with CSRF tokens,
// login rate limiting, the audit log and workspace ownership. Pure logic over StateDb (which
// stores only hashes); no HTTP here — the api and gateway modules turn requests into calls.
//
// Threads: one Auth is shared by the control plane and every gateway thread; every method is
// thread-safe (StateDb serialises its own calls, the limiter has its own mutex, the rest is
// immutable after construction). Calls block on SQLite, and create_user/login also on argon2id
// (~100 ms and 64 MiB at the default cost), so callers on an io_context post them to a pool.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "auth/password.h"
#include "auth/rate_limit.h"
#include "core/error.h"
#include "state/state.h"

namespace ck::auth {

/// What a credential may do. Ordered: admin implies deploy implies read.
enum class Scope { read = 1, deploy = 2, admin = 3 };

/// A set of scopes, closed under the hierarchy (granting admin grants deploy and read).
class Scopes {
 public:
  Scopes() = default;
  Scopes(std::initializer_list<Scope> s);
  /// "read", "deploy", "admin", comma-separated, in any order and case-sensitive; empty or an
  /// unknown word is Errc::invalid_argument naming it.
  static Result<Scopes> parse(std::string_view text);
  bool has(Scope s) const { return (bits_ & bit(s)) != 0; }
  bool empty() const { return bits_ == 0; }
  /// "read", "read,deploy" or "read,deploy,admin".
  std::string str() const;
  bool operator==(const Scopes&) const = default;

 private:
  static unsigned bit(Scope s) { return 1u << static_cast<unsigned>(s); }
  void add(Scope s);
  unsigned bits_ = 0;
};

std::string_view scope_name(Scope s);

enum class PrincipalKind { token, user, admin };
std::string_view principal_kind_name(PrincipalKind k);  // "token", "user", "admin"

enum class Role { admin, member };
std::string_view role_name(Role r);  // "admin", "member"
std::optional<Role> parse_role(std::string_view s);

/// Who made a request, once a credential checked out.
struct Principal {
  PrincipalKind kind = PrincipalKind::token;
  std::string id;    // token id ("tok_..."), user id ("usr_...") or the admin token's id
  std::string name;  // token name, user name, or "admin"
  Scopes scopes;
  /// Whose workspaces it owns: the user's id for a login session, the creating user's id for a
  /// token a user made; "" for the admin token and the tokens it made (they own nothing).
  std::string user_id;
  /// "admin", "token:<id>" or "user:<name>": the audit log's principal column.
  std::string label() const;
};

/// A token as lists show it (never its plaintext or hash).
struct TokenInfo {
  std::string id, name;
  PrincipalKind kind = PrincipalKind::token;  // token or admin
  Scopes scopes;
  std::int64_t created_ms = 0, last_used_ms = 0, expires_ms = 0, revoked_ms = 0;  // 0 = never
  std::string user_id;  // the user who made it; "" = the admin token or one it made
};

struct NewToken {
  std::string id;
  std::string plaintext;  // "ck_" + 52 base32 characters; shown once, never stored
};

struct UserInfo {
  std::string id, name;
  Role role = Role::member;
  std::int64_t created_ms = 0;
};

struct NewSession {
  std::string id;    // the cookie value (52 base32 characters); stored only as its SHA-256
  std::string csrf;  // for the page (meta tag) or a non-HttpOnly cookie; see csrf_token()
  std::int64_t expires_ms = 0;
  Principal principal;
};

struct AuditEntry {
  std::int64_t id = 0, at_ms = 0;
  std::string principal, action, target, detail /* JSON object text */, ip;
};

struct AuthOptions {
  PasswordParams password;
  /// Sliding: each use moves the expiry to now + session_ttl, but never past
  /// created + session_max_age.
  std::chrono::milliseconds session_ttl{std::chrono::hours(24 * 7)};
  std::chrono::milliseconds session_max_age{std::chrono::hours(24 * 30)};
  LoginLimits login_limits;
  /// last_used / expiry writes are skipped when the stored value is younger than this, so a busy
  /// token or session costs a read, not a write, per request.
  std::chrono::milliseconds touch_interval{std::chrono::minutes(1)};
  /// How long an owner record read from the database is trusted (another control plane on
  /// the same database may change it; this one updates its own copy at once).
  std::chrono::milliseconds owner_cache_ttl{std::chrono::seconds(5)};
  /// Unix epoch ms; empty = the system clock. Used for every time auth stores or compares.
  std::function<std::int64_t()> clock;
};

inline constexpr std::string_view kTokenPrefix = "ck_";
inline constexpr std::string_view kSessionCookie = "ck_session";
/// With TLS: the __Host- prefix makes the browser insist on Secure, Path=/ and no Domain.
inline constexpr std::string_view kSecureSessionCookie = "__Host-ck_session";
inline constexpr std::size_t kMinConfiguredTokenLength = 16;
/// Login input beyond these is refused (Errc::invalid_argument) before any lookup, hash, rate
/// limiter entry or audit row: user names are at most 63 bytes (validate_user_name), so 64 is
/// generous; passwords at most kMaxPasswordBytes.
inline constexpr std::size_t kMaxLoginNameBytes = 64;
/// What the audit log keeps of a request's strings (longer ones are cut, marked with "...").
inline constexpr std::size_t kMaxAuditField = 256;
inline constexpr std::size_t kMaxAuditDetail = 4096;
/// The highest scope a user of `role` holds, and so may give a token it makes.
Scope max_scope(Role role);

/// The session cookie's name: kSecureSessionCookie when the gateway serves TLS, else
/// kSessionCookie. Whoever reads or filters the cookie asks this with the same flag.
std::string_view session_cookie_name(bool tls);

/// `<name>=<id>; Path=/; HttpOnly; SameSite=Strict; Max-Age=<s>` (+ `; Secure`), host-only (no
/// Domain); `secure` (TLS) also picks the `__Host-` name (session_cookie_name).
std::string session_cookie(std::string_view session_id, std::chrono::seconds max_age, bool secure);
/// The same cookie emptied with Max-Age=0 (logout).
std::string clear_session_cookie(bool secure);

/// Errc::invalid_argument unless `name` matches ^[a-z0-9][a-z0-9-]{0,62}$ (the workspace name
/// rule, so a user name can be used in paths and labels as is).
Result<void> validate_user_name(std::string_view name);

/// The auth service. Owned by the daemon next to its StateDb (which must outlive it).
class Auth {
 public:
  explicit Auth(StateDb& db, AuthOptions options = {});
  ~Auth();
  Auth(const Auth&) = delete;
  Auth& operator=(const Auth&) = delete;

  std::int64_t now_ms() const;

  // ---- API tokens ----
  /// A new token; `ttl` 0 = never expires. Errc::invalid_argument for an empty name (or one over
  /// 100 bytes) or no scopes. `user_id` (non-empty): the user making it, who it then acts as;
  /// Errc::not_found for no such user, Errc::forbidden for a scope above the user's role.
  Result<NewToken> create_token(const std::string& name, Scopes scopes,
                                std::chrono::milliseconds ttl = {},
                                const std::string& user_id = "");
  /// The principal behind a bearer token: looked up by its SHA-256, compared in constant time.
  /// Unknown, malformed, revoked or expired: Errc::unauthenticated (one message for all, so
  /// callers cannot probe which). Records last_used (at most once per touch_interval). A token
  /// bound to a user acts as that user: its user_id is set, it stops working when the user is
  /// gone, and its scopes never exceed the user's role.
  Result<Principal> verify_token(std::string_view plaintext);
  /// Errc::not_found for an unknown id. Revoking twice is fine. The admin token can be revoked
  /// too (a new one is generated on the next start unless the config sets one).
  /// With `only_user` non-empty, only that user's own tokens can be revoked (another's id is
  /// Errc::not_found, as if it did not exist).
  Result<void> revoke_token(const std::string& id, const std::string& only_user = "");
  /// Every token, or (with `only_user` non-empty) that user's own.
  Result<std::vector<TokenInfo>> list_tokens(const std::string& only_user = "");

  /// At startup. With `configured` non-empty (auth.admin_token): makes it the admin token (its
  /// hash replaces any other admin token) and returns nullopt; shorter than
  /// kMinConfiguredTokenLength is Errc::invalid_argument. Otherwise, when no unrevoked admin token
  /// exists, generates one and returns its plaintext for the caller to show once; else nullopt.
  Result<std::optional<std::string>> ensure_admin_token(const std::string& configured);

  // ---- users ----
  /// Errc::invalid_argument for a bad name or password (see validate_user_name,
  /// check_password_rules), Errc::already_exists for a taken name.
  Result<UserInfo> create_user(const std::string& name, const std::string& password, Role role);
  Result<std::vector<UserInfo>> list_users();
  /// The user's principal when the password matches, else Errc::unauthenticated (also for an
  /// unknown user, after the same argon2id work, so timing does not reveal which names exist).
  /// No rate limiting: use login() for requests from the network.
  Result<Principal> verify_password(const std::string& name, const std::string& password);

  // ---- sessions ----
  /// A new login session for a user id (Errc::not_found if there is no such user).
  Result<NewSession> create_session(const std::string& user_id);
  /// The rate-limited login. A name over kMaxLoginNameBytes or a password over kMaxPasswordBytes
  /// is Errc::invalid_argument before anything else (no lookup, argon2id, limiter entry or audit
  /// row). Errc::rate_limited while the user name or ip is locked out (then
  /// limiter().blocked(name, ip) gives Retry-After; every attempt, even a right one, counts
  /// against the limits until it succeeds), Errc::unauthenticated for a wrong name or
  /// password (counted as a failure), else a new session. Writes login / login.failed audit
  /// entries.
  Result<NewSession> login(const std::string& name, const std::string& password,
                           const std::string& ip);
  /// The principal behind a session cookie value; slides its expiry. Unknown, expired or past
  /// session_max_age: Errc::unauthenticated.
  Result<Principal> lookup_session(std::string_view session_id);
  /// Ends a session (logout); an unknown id is fine.
  Result<void> destroy_session(std::string_view session_id);
  /// Deletes expired sessions; returns how many.
  Result<int> prune_sessions();
  /// The session's CSRF token: HMAC-SHA-256(session id, "ck-csrf-v1") in base32. Derived, so
  /// nothing more is stored and a page can be rendered with it at any time; unguessable without
  /// the session id (which is HttpOnly).
  static std::string csrf_token(std::string_view session_id);
  /// Constant-time check of a request's CSRF token (header or form field) against the session.
  static bool verify_csrf(std::string_view session_id, std::string_view csrf);

  LoginLimiter& limiter() { return limiter_; }

  // ---- audit ----
  /// Appends an entry at now. `detail_json` must be a JSON object (empty = {}), else
  /// Errc::invalid_argument. Strings are cut to kMaxAuditField bytes and a detail over
  /// kMaxAuditDetail is replaced by {"truncated": <size>}, so a request cannot grow the log.
  Result<std::int64_t> audit(const std::string& principal, const std::string& action,
                             const std::string& target, const std::string& detail_json = "",
                             const std::string& ip = "");
  /// Newest first; `before` 0 = from the newest, else entries with id < before. limit 1..1000.
  Result<std::vector<AuditEntry>> audit_log(int limit, std::int64_t before = 0);

  // ---- ownership ----
  /// Owner user id (empty = none) and public flag; a workspace nobody set is public, unowned.
  /// Remembered in memory for owner_cache_ttl (set_workspace_owner updates it at once), so the
  /// per-event checks of /monitor/ws cost no SQLite read.
  Result<WorkspaceOwner> workspace_owner(const std::string& workspace);
  /// The owner record to authorize against, for a workspace whose current public flag (from
  /// its workspace.json, in the monitor's snapshot) is `is_public`. An unreadable record counts
  /// as private with no owner (admins only).
  WorkspaceOwner owner_record(const std::string& workspace, bool is_public);
  /// Whether the holder of a login session may open a private workspace through the gateway,
  /// by authorize() (auth/authorize.h): an admin may, its owner may; one with no recorded owner
  /// is for admins only. A missing or expired session means logging in first.
  enum class Reach { allowed, login, forbidden };
  Reach reach_private(std::string_view session_id, const std::string& workspace);
  Result<void> set_workspace_owner(const std::string& workspace, const std::string& owner_user_id,
                                   bool is_public);

 private:
  Result<Principal> user_principal(const UserRecord& u) const;
  const std::string& dummy_hash();
  struct CachedOwner {
    WorkspaceOwner owner;
    std::int64_t until_ms = 0;
  };

  StateDb& db_;
  AuthOptions options_;
  LoginLimiter limiter_;
  std::once_flag dummy_once_;
  std::string dummy_hash_;  // an argon2id hash to verify unknown users against
  std::mutex owners_mu_;
  std::unordered_map<std::string, CachedOwner> owners_;  // bounded: cleared past kMaxOwners
};

}  // namespace ck::auth
