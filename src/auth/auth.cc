#include "auth/auth.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "auth/authorize.h"
#include "auth/crypto.h"
#include "core/names.h"

namespace ck::auth {

namespace {

constexpr std::size_t kSecretBytes = 32;          // tokens and session ids: 256 bits
constexpr std::size_t kMaxCredentialBytes = 512;  // longer input is refused before hashing
constexpr std::size_t kMaxTokenName = 100;
constexpr std::string_view kCsrfLabel = "ck-csrf-v1";
constexpr std::string_view kBadToken = "missing, wrong, expired or revoked token";
constexpr std::string_view kBadSession = "not logged in, or the session expired: log in again";
constexpr std::string_view kBadLogin = "wrong user name or password";

std::int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string new_id(std::string_view prefix) { return std::string(prefix) + random_base32(10); }

constexpr std::size_t kMaxOwners = 10000;  // cached owner records

// At most `max` bytes of `s`, cut on a UTF-8 character boundary and marked with "...".
std::string clip(const std::string& s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t n = max - 3;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n) + "...";
}

// The scopes `s` narrowed to at most `top`.
Scopes at_most(const Scopes& s, Scope top) {
  Scope best = Scope::read;
  for (Scope x : {Scope::read, Scope::deploy, Scope::admin}) {
    if (s.has(x) && static_cast<int>(x) <= static_cast<int>(top)) best = x;
  }
  return Scopes{best};
}

}  // namespace

// ---- scopes, names ----

std::string_view scope_name(Scope s) {
  switch (s) {
    case Scope::read:
      return "read";
    case Scope::deploy:
      return "deploy";
    case Scope::admin:
      return "admin";
  }
  return "read";
}

Scopes::Scopes(std::initializer_list<Scope> s) {
  for (Scope x : s) {
    add(x);
  }
}

void Scopes::add(Scope s) {
  // The hierarchy: a scope brings every lower one.
  for (int v = static_cast<int>(Scope::read); v <= static_cast<int>(s); ++v) {
    bits_ |= bit(static_cast<Scope>(v));
  }
}

Result<Scopes> Scopes::parse(std::string_view text) {
  Scopes out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    std::string_view word =
        text.substr(pos, comma == std::string_view::npos ? text.size() - pos : comma - pos);
    while (!word.empty() && word.front() == ' ') {
      word.remove_prefix(1);
    }
    while (!word.empty() && word.back() == ' ') {
      word.remove_suffix(1);
    }
    bool known = false;
    for (Scope s : {Scope::read, Scope::deploy, Scope::admin}) {
      if (word == scope_name(s)) {
        out.add(s);
        known = true;
      }
    }
    if (!known && !word.empty()) {
      return ck::fail(Errc::invalid_argument,
                      fmt::format("unknown scope '{}': use read, deploy or admin", word));
    }
    if (comma == std::string_view::npos) {
      break;
    }
    pos = comma + 1;
  }
  if (out.empty()) {
    return ck::fail(Errc::invalid_argument, "no scope given: use read, deploy or admin");
  }
  return out;
}

std::string Scopes::str() const {
  std::string out;
  for (Scope s : {Scope::read, Scope::deploy, Scope::admin}) {
    if (has(s)) {
      out += out.empty() ? "" : ",";
      out += scope_name(s);
    }
  }
  return out;
}

std::string_view principal_kind_name(PrincipalKind k) {
  switch (k) {
    case PrincipalKind::token:
      return "token";
    case PrincipalKind::user:
      return "user";
    case PrincipalKind::admin:
      return "admin";
  }
  return "token";
}

std::string_view role_name(Role r) { return r == Role::admin ? "admin" : "member"; }

Scope max_scope(Role role) { return role == Role::admin ? Scope::admin : Scope::deploy; }

std::optional<Role> parse_role(std::string_view s) {
  if (s == "admin") {
    return Role::admin;
  }
  if (s == "member") {
    return Role::member;
  }
  return std::nullopt;
}

std::string Principal::label() const {
  switch (kind) {
    case PrincipalKind::admin:
      return "admin";
    case PrincipalKind::token:
      return "token:" + id;
    case PrincipalKind::user:
      return "user:" + name;
  }
  return id;
}

std::string_view session_cookie_name(bool tls) {
  return tls ? kSecureSessionCookie : kSessionCookie;
}

std::string session_cookie(std::string_view session_id, std::chrono::seconds max_age, bool secure) {
  // Host-only: never a Domain attribute, so no other host (a workspace at <name>.<domain>)
  // receives it.
  return fmt::format("{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                     session_cookie_name(secure),
                     session_id, std::max<std::int64_t>(max_age.count(), 0),
                     secure ? "; Secure" : "");
}

std::string clear_session_cookie(bool secure) {
  return session_cookie("", std::chrono::seconds(0), secure);
}

Result<void> validate_user_name(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 63;
  for (std::size_t i = 0; ok && i < name.size(); ++i) {
    char c = name[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    ok = alnum || (i > 0 && c == '-');
  }
  if (!ok) {
    return ck::fail(Errc::invalid_argument,
                    fmt::format("invalid user name '{}': use 1 to 63 lower-case letters, digits "
                                "and '-', starting with a letter or digit",
                                name));
  }
  return outcome::success();
}

// ---- Auth ----

Auth::Auth(StateDb& db, AuthOptions options)
    : db_(db), options_(std::move(options)), limiter_(options_.login_limits, options_.clock) {}

Auth::~Auth() = default;

std::int64_t Auth::now_ms() const { return options_.clock ? options_.clock() : system_now_ms(); }

Result<NewToken> Auth::create_token(const std::string& name, Scopes scopes,
                                    std::chrono::milliseconds ttl, const std::string& user_id) {
  if (name.empty() || name.size() > kMaxTokenName) {
    return ck::fail(Errc::invalid_argument,
                    fmt::format("a token needs a name of 1 to {} bytes", kMaxTokenName));
  }
  if (scopes.empty()) {
    return ck::fail(Errc::invalid_argument, "a token needs a scope: read, deploy or admin");
  }
  if (ttl.count() < 0) {
    return ck::fail(Errc::invalid_argument, "a token's lifetime cannot be negative");
  }
  if (!user_id.empty()) {
    BOOST_OUTCOME_TRY(user, db_.user_by_id(user_id));
    if (!user) {
      return ck::fail(Errc::not_found, fmt::format("there is no user {}", user_id));
    }
    const Scope top = max_scope(parse_role(user->role).value_or(Role::member));
    if (scopes.has(Scope::admin) && top != Scope::admin) {
      return ck::fail(Errc::forbidden,
                      fmt::format("{} is a {} and may give a token at most the '{}' scope",
                                  user->name, user->role, scope_name(top)));
    }
  }
  const std::int64_t now = now_ms();
  NewToken out{new_id("tok_"), std::string(kTokenPrefix) + random_base32(kSecretBytes)};
  TokenRecord rec{out.id,
                  "token",
                  name,
                  sha256_hex(out.plaintext),
                  scopes.str(),
                  now,
                  0,
                  ttl.count() > 0 ? now + ttl.count() : 0,
                  0,
                  user_id};
  BOOST_OUTCOME_TRY(db_.insert_token(rec));
  return out;
}

Result<Principal> Auth::verify_token(std::string_view plaintext) {
  if (plaintext.empty() || plaintext.size() > kMaxCredentialBytes) {
    return ck::fail(Errc::unauthenticated, std::string(kBadToken));
  }
  const std::string hash = sha256_hex(plaintext);
  BOOST_OUTCOME_TRY(found, db_.token_by_hash(hash));
  // The lookup is by hash (an index); the comparison that decides is constant-time.
  if (!found || !constant_time_equal(found->hash, hash)) {
    return ck::fail(Errc::unauthenticated, std::string(kBadToken));
  }
  const std::int64_t now = now_ms();
  if (found->revoked_ms != 0 || (found->expires_ms != 0 && now >= found->expires_ms)) {
    return ck::fail(Errc::unauthenticated, std::string(kBadToken));
  }
  auto scopes = Scopes::parse(found->scopes);
  if (scopes.has_error()) {
    return ck::fail(Errc::internal,
                    fmt::format("token {} has unreadable scopes '{}'", found->id, found->scopes));
  }
  if (now - found->last_used_ms >= options_.touch_interval.count()) {
    // Best effort: a failed write must not turn a valid token away.
    (void)db_.touch_token(found->id, now);
  }
  const bool admin = found->kind == "admin";
  Scopes granted = scopes.value();
  if (!admin && !found->user_id.empty()) {
    // Bound to its user: gone with them, and never above their role (now, not when made).
    BOOST_OUTCOME_TRY(user, db_.user_by_id(found->user_id));
    if (!user) {
      return ck::fail(Errc::unauthenticated, std::string(kBadToken));
    }
    granted = at_most(granted, max_scope(parse_role(user->role).value_or(Role::member)));
  }
  return Principal{admin ? PrincipalKind::admin : PrincipalKind::token, found->id,
                   admin ? std::string("admin") : found->name, granted,
                   admin ? std::string() : found->user_id};
}

Result<void> Auth::revoke_token(const std::string& id, const std::string& only_user) {
  if (!only_user.empty()) {
    BOOST_OUTCOME_TRY(found, db_.token_by_id(id));
    if (!found || found->user_id != only_user) {
      return ck::fail(Errc::not_found, fmt::format("there is no token {}", id));
    }
  }
  return db_.revoke_token(id, now_ms());
}

Result<std::vector<TokenInfo>> Auth::list_tokens(const std::string& only_user) {
  BOOST_OUTCOME_TRY(rows, db_.tokens());
  std::vector<TokenInfo> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    if (!only_user.empty() && r.user_id != only_user) continue;
    auto scopes = Scopes::parse(r.scopes);
    out.push_back(TokenInfo{r.id, r.name,
                            r.kind == "admin" ? PrincipalKind::admin : PrincipalKind::token,
                            scopes ? scopes.value() : Scopes{}, r.created_ms, r.last_used_ms,
                            r.expires_ms, r.revoked_ms, r.user_id});
  }
  return out;
}

Result<std::optional<std::string>> Auth::ensure_admin_token(const std::string& configured) {
  const std::int64_t now = now_ms();
  const Scopes admin{Scope::admin};
  if (!configured.empty()) {
    if (configured.size() < kMinConfiguredTokenLength || configured.size() > kMaxCredentialBytes) {
      return ck::fail(Errc::invalid_argument,
                      fmt::format("auth.admin_token must be {} to {} characters long; generate one "
                                  "with `openssl rand -hex 32`, or leave it empty to have one "
                                  "generated and printed once",
                                  kMinConfiguredTokenLength, kMaxCredentialBytes));
    }
    const std::string hash = sha256_hex(configured);
    BOOST_OUTCOME_TRY(found, db_.token_by_hash(hash));
    if (found && found->kind == "admin" && found->revoked_ms == 0) {
      return std::optional<std::string>();  // already the admin token
    }
    TokenRecord rec{new_id("tok_"), "admin", "admin", hash, admin.str(), now, 0, 0, 0, ""};
    BOOST_OUTCOME_TRY(db_.put_admin_token(rec, /*replace=*/true));
    return std::optional<std::string>();
  }
  std::string plaintext = std::string(kTokenPrefix) + random_base32(kSecretBytes);
  TokenRecord rec{
      new_id("tok_"), "admin", "admin", sha256_hex(plaintext), admin.str(), now, 0, 0, 0, ""};
  BOOST_OUTCOME_TRY(stored, db_.put_admin_token(rec, /*replace=*/false));
  if (!stored) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(std::move(plaintext));
}

// ---- users ----

Result<UserInfo> Auth::create_user(const std::string& name, const std::string& password,
                                   Role role) {
  BOOST_OUTCOME_TRY(validate_user_name(name));
  BOOST_OUTCOME_TRY(check_password_rules(password));
  BOOST_OUTCOME_TRY(encoded, hash_password(password, options_.password));
  UserRecord rec{new_id("usr_"), name, std::move(encoded), std::string(role_name(role)), now_ms()};
  BOOST_OUTCOME_TRY(db_.insert_user(rec));
  return UserInfo{rec.id, rec.name, role, rec.created_ms};
}

Result<std::vector<UserInfo>> Auth::list_users() {
  BOOST_OUTCOME_TRY(rows, db_.users());
  std::vector<UserInfo> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    out.push_back(UserInfo{r.id, r.name, parse_role(r.role).value_or(Role::member), r.created_ms});
  }
  return out;
}

const std::string& Auth::dummy_hash() {
  std::call_once(dummy_once_, [this] {
    auto h = hash_password(random_base32(16), options_.password);
    dummy_hash_ = h ? h.value() : std::string();
  });
  return dummy_hash_;
}

Result<Principal> Auth::user_principal(const UserRecord& u) const {
  auto role = parse_role(u.role);
  if (!role) {
    return ck::fail(Errc::internal,
                    fmt::format("user {} has an unknown role '{}'", u.name, u.role));
  }
  return Principal{PrincipalKind::user, u.id, u.name, Scopes{max_scope(*role)}, u.id};
}

Result<Principal> Auth::verify_password(const std::string& name, const std::string& password) {
  std::optional<UserRecord> user;
  if (validate_user_name(name) && password.size() <= kMaxPasswordBytes) {
    BOOST_OUTCOME_TRY(found, db_.user_by_name(name));
    user = std::move(found);
  }
  if (!user) {
    // Spend the same argon2id work as for a real user: timing must not tell names apart.
    (void)auth::verify_password(password.substr(0, kMaxPasswordBytes), dummy_hash());
    return ck::fail(Errc::unauthenticated, std::string(kBadLogin));
  }
  if (!auth::verify_password(password, user->password_hash)) {
    return ck::fail(Errc::unauthenticated, std::string(kBadLogin));
  }
  return user_principal(*user);
}

// ---- sessions ----

Result<NewSession> Auth::create_session(const std::string& user_id) {
  BOOST_OUTCOME_TRY(user, db_.user_by_id(user_id));
  if (!user) {
    return ck::fail(Errc::not_found, fmt::format("there is no user {}", user_id));
  }
  BOOST_OUTCOME_TRY(principal, user_principal(*user));
  const std::int64_t now = now_ms();
  std::string id = random_base32(kSecretBytes);
  const std::int64_t expires =
      now + std::min(options_.session_ttl.count(), options_.session_max_age.count());
  BOOST_OUTCOME_TRY(
      db_.insert_login_session(LoginSessionRecord{sha256_hex(id), user->id, now, expires, now}));
  std::string csrf = csrf_token(id);
  return NewSession{std::move(id), std::move(csrf), expires, std::move(principal)};
}

Result<NewSession> Auth::login(const std::string& name, const std::string& password,
                               const std::string& ip) {
  // Refused before the limiter, the database, argon2id or the audit log see it: a name of
  // megabytes must not become a bucket key, a row or a hash input (issue 13, row 7).
  if (name.size() > kMaxLoginNameBytes) {
    return ck::fail(Errc::invalid_argument,
                    fmt::format("a user name is at most {} bytes", kMaxLoginNameBytes));
  }
  if (password.size() > kMaxPasswordBytes) {
    return ck::fail(Errc::invalid_argument,
                    fmt::format("a password is at most {} bytes", kMaxPasswordBytes));
  }
  if (auto wait = limiter_.acquire(name, ip)) {
    return ck::fail(Errc::rate_limited,
                    fmt::format("too many failed logins for this user or address: try again in "
                                "{} s",
                                wait->count()));
  }
  auto who = verify_password(name, password);
  if (who.has_error()) {
    if (who.error().code == Errc::unauthenticated) {  // the try acquire() took stays spent
      (void)audit("", "login.failed", name, "", ip);
    } else {
      limiter_.release(name, ip);  // our failure (the database), not a wrong guess
    }
    return outcome::failure(who.error());
  }
  limiter_.record_success(name, ip);
  BOOST_OUTCOME_TRY(session, create_session(who.value().id));
  (void)audit(session.principal.label(), "login", name, "", ip);
  return session;
}

Result<Principal> Auth::lookup_session(std::string_view session_id) {
  if (session_id.empty() || session_id.size() > kMaxCredentialBytes) {
    return ck::fail(Errc::unauthenticated, std::string(kBadSession));
  }
  const std::string hash = sha256_hex(session_id);
  BOOST_OUTCOME_TRY(found, db_.login_session(hash));
  if (!found || !constant_time_equal(found->hash, hash)) {
    return ck::fail(Errc::unauthenticated, std::string(kBadSession));
  }
  const std::int64_t now = now_ms();
  const std::int64_t hard_end = found->created_ms + options_.session_max_age.count();
  if (now >= found->expires_ms || now >= hard_end) {
    (void)db_.delete_login_session(hash);
    return ck::fail(Errc::unauthenticated, std::string(kBadSession));
  }
  BOOST_OUTCOME_TRY(user, db_.user_by_id(found->user_id));
  if (!user) {
    return ck::fail(Errc::unauthenticated, std::string(kBadSession));
  }
  if (now - found->last_seen_ms >= options_.touch_interval.count()) {
    const std::int64_t expires = std::min(now + options_.session_ttl.count(), hard_end);
    (void)db_.extend_login_session(hash, expires, now);  // best effort, like touch_token
  }
  return user_principal(*user);
}

Result<void> Auth::destroy_session(std::string_view session_id) {
  if (session_id.empty() || session_id.size() > kMaxCredentialBytes) {
    return outcome::success();
  }
  BOOST_OUTCOME_TRY(db_.delete_login_session(sha256_hex(session_id)));
  return outcome::success();
}

Result<int> Auth::prune_sessions() { return db_.delete_expired_login_sessions(now_ms()); }

std::string Auth::csrf_token(std::string_view session_id) {
  return base32(hmac_sha256(session_id, kCsrfLabel));
}

bool Auth::verify_csrf(std::string_view session_id, std::string_view csrf) {
  if (session_id.empty()) {
    return false;
  }
  return constant_time_equal(csrf_token(session_id), csrf);
}

// ---- audit ----

Result<std::int64_t> Auth::audit(const std::string& principal, const std::string& action,
                                 const std::string& target, const std::string& detail_json,
                                 const std::string& ip) {
  if (!detail_json.empty()) {
    auto j = nlohmann::json::parse(detail_json, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return ck::fail(Errc::invalid_argument,
                      fmt::format("audit detail for {} is not a JSON object", action));
    }
  }
  std::string detail = detail_json.empty() ? "{}" : detail_json;
  if (detail.size() > kMaxAuditDetail) {
    detail = fmt::format("{{\"truncated\": {}}}", detail.size());
  }
  return db_.append_audit(AuditRecord{0, now_ms(), clip(principal, kMaxAuditField),
                                      clip(action, kMaxAuditField), clip(target, kMaxAuditField),
                                      std::move(detail), clip(ip, kMaxAuditField)});
}

Result<std::vector<AuditEntry>> Auth::audit_log(int limit, std::int64_t before) {
  BOOST_OUTCOME_TRY(rows, db_.audit_log(limit, before));
  std::vector<AuditEntry> out;
  out.reserve(rows.size());
  for (auto& r : rows) {
    out.push_back(AuditEntry{r.id, r.at_ms, std::move(r.principal), std::move(r.action),
                             std::move(r.target), std::move(r.detail), std::move(r.ip)});
  }
  return out;
}

// ---- ownership ----

Result<WorkspaceOwner> Auth::workspace_owner(const std::string& workspace) {
  const std::int64_t now = now_ms();
  {
    std::lock_guard lock(owners_mu_);
    if (auto it = owners_.find(workspace); it != owners_.end() && it->second.until_ms > now) {
      return it->second.owner;
    }
  }
  BOOST_OUTCOME_TRY(found, db_.workspace_owner(workspace));
  WorkspaceOwner owner = found.value_or(WorkspaceOwner{});
  std::lock_guard lock(owners_mu_);
  if (owners_.size() >= kMaxOwners) owners_.clear();
  owners_[workspace] = CachedOwner{owner, now + options_.owner_cache_ttl.count()};
  return owner;
}

WorkspaceOwner Auth::owner_record(const std::string& workspace, bool is_public) {
  // A public workspace is seen and acted on alike by every signed-in caller (authorize()):
  // its owner does not change the answer, so no read for it.
  if (is_public) return WorkspaceOwner{"", true};
  auto found = workspace_owner(workspace);
  if (found.has_error()) return WorkspaceOwner{"", is_public};  // cannot tell: no owner
  return WorkspaceOwner{found.value().owner, is_public};
}

Auth::Reach Auth::reach_private(std::string_view session_id, const std::string& workspace) {
  auto p = lookup_session(session_id);
  if (p.has_error()) return Reach::login;
  switch (authorize(&p.value(), owner_record(workspace, false), Access::see)) {
    case Decision::allowed:
      return Reach::allowed;
    case Decision::login:
      return Reach::login;
    default:
      return Reach::forbidden;
  }
}

Result<void> Auth::set_workspace_owner(const std::string& workspace,
                                       const std::string& owner_user_id, bool is_public) {
  BOOST_OUTCOME_TRY(validate_workspace_name(workspace));
  if (!owner_user_id.empty()) {
    BOOST_OUTCOME_TRY(user, db_.user_by_id(owner_user_id));
    if (!user) {
      return ck::fail(Errc::not_found, fmt::format("there is no user {}", owner_user_id));
    }
  }
  WorkspaceOwner record{owner_user_id, is_public};
  BOOST_OUTCOME_TRY(db_.set_workspace_owner(workspace, record));
  std::lock_guard lock(owners_mu_);
  if (owners_.size() >= kMaxOwners) owners_.clear();
  owners_[workspace] = CachedOwner{record, now_ms() + options_.owner_cache_ttl.count()};
  return outcome::success();
}

}  // namespace ck::auth
