#include "git/repo.h"

#include "git/internal.h"
#include "git/keys.h"
#include "git/pcre2_sweep.h"

#include <git2.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <system_error>

#include <fmt/format.h>
#include <openssl/evp.h>

namespace ck::git {
namespace fs = std::filesystem;

// libgit2 is initialised once per process and never shut down (its global state is cheap).
// Owner validation (safe.directory) is off: the daemon owns the folders it works in, whoever
// owns the files, and it never runs anything from a repository.
void init_library() {
  static std::once_flag once;
  std::call_once(once, [] {
    git_libgit2_init();
    git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
    // Objects read back are not re-hashed (libgit2 hashes every object it reads by default;
    // git never does). What a fetch brings is hashed once by the indexer as it arrives, and a
    // damaged object on disk still fails zlib's own checksum when inflated. Re-hashing with
    // the collision-detecting SHA-1 was half of the user time of a checkout: 0.25 s of CPU
    // against git's 0.13 s for a 5,000-file clone (bench/git).
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
  });
}

std::string oid_hex(const git_oid& id) {
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof buf, &id);
  return buf;
}

// Replaces every occurrence of `what` in `s` by `with`.
static void replace_all(std::string& s, std::string_view what, std::string_view with) {
  if (what.empty()) return;
  for (auto pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + with.size())) {
    s.replace(pos, what.size(), with);
  }
}

Error git_failure(int rc, const Context& ctx) {
  if (!ctx.host_key_error.empty()) return make_error(Errc::forbidden, ctx.doing + ": " + ctx.host_key_error);
  const git_error* e = git_error_last();
  std::string detail = e && e->message ? e->message : fmt::format("libgit2 error {}", rc);
  if (!ctx.url.empty()) replace_all(detail, ctx.url, redact_url(ctx.url));
  if (ctx.creds && !ctx.creds->token.empty()) replace_all(detail, ctx.creds->token, "***");
  Errc code = Errc::io;
  std::string hint;
  if (ctx.auth_refused || rc == GIT_EAUTH) {
    code = Errc::unauthenticated;
    hint = "; check the token or deploy key the workspace uses for this remote";
  } else if (rc == GIT_ECERTIFICATE) {
    code = Errc::unavailable;
    hint = "; the server's TLS certificate is not trusted here";
  } else if (rc == GIT_ENOTFOUND) {
    code = Errc::not_found;
  } else if (rc == GIT_ECONFLICT || rc == GIT_EMERGECONFLICT || rc == GIT_ENONFASTFORWARD) {
    code = Errc::conflict;
  } else if (e && (e->klass == GIT_ERROR_NET || e->klass == GIT_ERROR_HTTP || e->klass == GIT_ERROR_SSH ||
                   e->klass == GIT_ERROR_SSL)) {
    code = Errc::unavailable;
    if (detail.find("401") != std::string::npos || detail.find("authentication") != std::string::npos) {
      code = Errc::unauthenticated;
      hint = "; check the token or deploy key the workspace uses for this remote";
    } else if (detail.find("404") != std::string::npos) {
      code = Errc::not_found;
      hint = "; check the repository URL";
    }
  }
  return make_error(code, ctx.doing + ": " + detail + hint);
}

static int credential_cb(git_credential** out, const char* /*url*/, const char* user_from_url,
                  unsigned int allowed, void* payload) {
  auto* ctx = static_cast<Context*>(payload);
  // libgit2 asks again after a refusal: one try per kind of credential, then give up.
  if (ctx->auth_refused) return GIT_EUSER;
  ctx->auth_refused = true;
  const Credentials* c = ctx->creds;
  if (!c) return GIT_PASSTHROUGH;
  std::string user = !c->username.empty() ? c->username : user_from_url ? user_from_url : "git";
  if ((allowed & GIT_CREDENTIAL_SSH_KEY) && !c->ssh_key.empty()) {
    std::string pub = c->ssh_key.string() + ".pub";
    return git_credential_ssh_key_new(out, user.c_str(), pub.c_str(), c->ssh_key.c_str(), "");
  }
  if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && !c->token.empty()) {
    return git_credential_userpass_plaintext_new(out, user.c_str(), c->token.c_str());
  }
  if (allowed & GIT_CREDENTIAL_USERNAME) return git_credential_username_new(out, user.c_str());
  return GIT_PASSTHROUGH;
}

// ssh: the host key must be the one pinned for that host (pinned on first contact); TLS
// certificates are left to libgit2's own verification.
static int certificate_cb(git_cert* cert, int /*valid*/, const char* host, void* payload) {
  auto* ctx = static_cast<Context*>(payload);
  if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2 || !ctx->creds || ctx->creds->known_hosts.empty()) {
    return GIT_PASSTHROUGH;
  }
  auto* key = reinterpret_cast<git_cert_hostkey*>(cert);
  if (!(key->type & GIT_CERT_SSH_SHA256)) {
    ctx->host_key_error = "the ssh server gave no SHA-256 host key fingerprint to check";
    return GIT_ECERTIFICATE;
  }
  unsigned char b64[64];
  int n = EVP_EncodeBlock(b64, key->hash_sha256, 32);
  std::string fp = "SHA256:" + std::string(reinterpret_cast<char*>(b64), static_cast<std::size_t>(n));
  while (!fp.empty() && fp.back() == '=') fp.pop_back();
  auto ok = check_host_key(ctx->creds->known_hosts, host ? host : "", fp);
  if (ok.has_error()) {
    ctx->host_key_error = ok.error().message;
    return GIT_ECERTIFICATE;
  }
  return 0;
}

git_remote_callbacks callbacks_for(Context& ctx) {
  git_remote_callbacks cb = GIT_REMOTE_CALLBACKS_INIT;
  cb.credentials = credential_cb;
  cb.certificate_check = certificate_cb;
  cb.payload = &ctx;
  return cb;
}

Result<RepoPtr> open_repo(const fs::path& dir) {
  init_library();
  git_repository* raw = nullptr;
  Context ctx{"opening the git repository in " + dir.string(), "", nullptr};
  CK_GIT(git_repository_open_ext(&raw, dir.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr), ctx);
  return RepoPtr(raw);
}

// What fetches bring: every branch, as refs/remotes/origin/<branch>.
constexpr const char* kFetchSpec = "+refs/heads/*:refs/remotes/origin/*";

// The remote "origin" as an anonymous remote of its URL (read from the config), with the
// refspecs passed to each call. Not git_remote_lookup(): Debian's libgit2 1.5 leaks a PCRE2
// match block (about 20 KiB) on every lookup, which a daemon that looks remotes up for every
// status, start and poll cannot afford.
// remote.origin.url from the configuration.
static Result<std::string> origin_url_of(git_repository* repo) {
  Context ctx{"looking up the remote 'origin'", "", nullptr};
  git_config* cfg_raw = nullptr;
  CK_GIT(git_repository_config_snapshot(&cfg_raw, repo), ctx);
  ConfigPtr cfg(cfg_raw);
  git_buf buf = GIT_BUF_INIT;
  int rc = git_config_get_string_buf(&buf, cfg.get(), "remote.origin.url");
  std::string value = rc == 0 && buf.ptr ? std::string(buf.ptr, buf.size) : "";
  git_buf_dispose(&buf);
  if (rc == GIT_ENOTFOUND || (rc == 0 && value.empty())) {
    return fail(Errc::not_found, "the repository has no remote 'origin'");
  }
  CK_GIT(rc, ctx);
  return value;
}

Result<RemotePtr> origin(git_repository* repo, std::string* url) {
  Context ctx{"looking up the remote 'origin'", "", nullptr};
  BOOST_OUTCOME_TRY(value, origin_url_of(repo));
  git_remote* raw = nullptr;
  CK_GIT(git_remote_create_anonymous(&raw, repo, value.c_str()), ctx);
  if (url) *url = value;
  return RemotePtr(raw);
}

// Connects to origin, downloads what its branches have and updates refs/remotes/origin/*.
// `default_branch` (optional) gets the remote's HEAD branch name.
Result<void> fetch_origin(git_repository* repo, const Credentials& creds, std::string* default_branch) {
  std::string url;
  BOOST_OUTCOME_TRY(remote, origin(repo, &url));
  Context ctx{"fetching from " + redact_url(url), url, &creds};
  git_remote_callbacks cb = callbacks_for(ctx);
  git_proxy_options proxy = GIT_PROXY_OPTIONS_INIT;
  CK_GIT(git_remote_connect(remote.get(), GIT_DIRECTION_FETCH, &cb, &proxy, nullptr), ctx);
  if (default_branch) {
    git_buf buf = GIT_BUF_INIT;
    if (git_remote_default_branch(&buf, remote.get()) == 0) {
      std::string ref(buf.ptr, buf.size);
      if (ref.rfind("refs/heads/", 0) == 0) *default_branch = ref.substr(11);
    }
    git_buf_dispose(&buf);
  }
  git_fetch_options opts = GIT_FETCH_OPTIONS_INIT;
  opts.callbacks = cb;
  opts.prune = GIT_FETCH_PRUNE;
  opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
  char* fetch_specs[] = {const_cast<char*>(kFetchSpec)};
  git_strarray refspecs{fetch_specs, 1};
  CK_GIT(git_remote_download(remote.get(), &refspecs, &opts), ctx);
  CK_GIT(git_remote_update_tips(remote.get(), &cb, 1, GIT_REMOTE_DOWNLOAD_TAGS_NONE, "fetch"), ctx);
  // update_tips does not prune: drop the tracking refs of branches the remote no longer has.
  CK_GIT(git_remote_prune(remote.get(), &cb), ctx);
  git_remote_disconnect(remote.get());
  return outcome::success();
}

// The commit a reference (by full name) points at.
Result<CommitPtr> commit_of(git_repository* repo, const std::string& refname, const std::string& doing) {
  git_oid id;
  Context ctx{doing, "", nullptr};
  CK_GIT(git_reference_name_to_id(&id, repo, refname.c_str()), ctx);
  git_commit* raw = nullptr;
  CK_GIT(git_commit_lookup(&raw, repo, &id), ctx);
  return CommitPtr(raw);
}

Result<TreePtr> tree_of(git_commit* c) {
  git_tree* raw = nullptr;
  Context ctx{"reading a commit's tree", "", nullptr};
  CK_GIT(git_commit_tree(&raw, c), ctx);
  return TreePtr(raw);
}

// Paths that differ between two trees (either may be null: the empty tree).
Result<std::vector<std::string>> changed_paths(git_repository* repo, git_tree* from, git_tree* to) {
  git_diff* raw = nullptr;
  Context ctx{"comparing two commits", "", nullptr};
  CK_GIT(git_diff_tree_to_tree(&raw, repo, from, to, nullptr), ctx);
  DiffPtr diff(raw);
  std::vector<std::string> out;
  for (std::size_t i = 0, n = git_diff_num_deltas(diff.get()); i < n; ++i) {
    const git_diff_delta* d = git_diff_get_delta(diff.get(), i);
    if (d->old_file.path && d->status != GIT_DELTA_ADDED) out.emplace_back(d->old_file.path);
    if (d->new_file.path && (out.empty() || out.back() != d->new_file.path)) out.emplace_back(d->new_file.path);
  }
  return out;
}

struct CheckoutConflicts {
  std::vector<std::string> paths;
};

static int notify_conflict(git_checkout_notify_t, const char* path, const git_diff_file*, const git_diff_file*,
                    const git_diff_file*, void* payload) {
  auto* c = static_cast<CheckoutConflicts*>(payload);
  if (path && c->paths.size() < 20) c->paths.emplace_back(path);
  return 0;
}

// Checks `target`'s tree out over the working tree, from HEAD's (SAFE: a local change the
// update would overwrite stops it, naming the files). `fresh`: the repository was just
// initialised in the folder (a first clone), so filters_are_inert() may let the checkout skip
// the filter lookups.
Result<void> checkout_safe(git_repository* repo, git_commit* target, const std::string& doing,
                           bool fresh) {
  BOOST_OUTCOME_TRY(tree, tree_of(target));
  git_checkout_options opts = GIT_CHECKOUT_OPTIONS_INIT;
  opts.checkout_strategy = GIT_CHECKOUT_SAFE | GIT_CHECKOUT_RECREATE_MISSING;
  if (fresh && filters_are_inert(repo, tree.get())) opts.disable_filters = 1;
  CheckoutConflicts conflicts;
  opts.notify_flags = GIT_CHECKOUT_NOTIFY_CONFLICT;
  opts.notify_cb = notify_conflict;
  opts.notify_payload = &conflicts;
  int rc = git_checkout_tree(repo, reinterpret_cast<git_object*>(tree.get()), &opts);
  if (rc == GIT_ECONFLICT || (rc < 0 && !conflicts.paths.empty())) {
    std::string names;
    for (const auto& p : conflicts.paths) names += (names.empty() ? "" : ", ") + p;
    return fail(Errc::conflict, doing + ": local changes to " + (names.empty() ? "some files" : names) +
                                    " would be overwritten; commit or remove them (or sync again once "
                                    "they are pushed)");
  }
  Context ctx{doing, "", nullptr};
  CK_GIT(rc, ctx);
  return outcome::success();
}

std::string branch_ref(const std::string& b) { return "refs/heads/" + b; }
std::string tracking_ref(const std::string& b) { return "refs/remotes/origin/" + b; }

// The checked-out branch's short name ("" when HEAD is detached or unborn without a branch).
std::string head_branch(git_repository* repo) {
  git_reference* raw = nullptr;
  if (git_repository_head(&raw, repo) == 0) {
    RefPtr head(raw);
    if (git_reference_is_branch(head.get())) return git_reference_shorthand(head.get());
    return "";
  }
  // Unborn: HEAD is a symbolic reference to a branch that does not exist yet.
  if (git_reference_lookup(&raw, repo, "HEAD") == 0) {
    RefPtr head(raw);
    const char* target = git_reference_symbolic_target(head.get());
    if (target && std::string_view(target).rfind("refs/heads/", 0) == 0) return target + 11;
  }
  return "";
}

// Points refs/heads/<branch> at `id` (creating it), makes it track origin/<branch> and checks
// it out as HEAD (the working tree must already match `id`).
Result<void> set_branch(git_repository* repo, const std::string& branch, const git_oid& id,
                        const std::string& doing) {
  Context ctx{doing, "", nullptr};
  git_reference* raw = nullptr;
  CK_GIT(git_reference_create(&raw, repo, branch_ref(branch).c_str(), &id, 1, "cloudyknight: pull"), ctx);
  RefPtr ref(raw);
  (void)git_branch_set_upstream(ref.get(), ("origin/" + branch).c_str());
  CK_GIT(git_repository_set_head(repo, branch_ref(branch).c_str()), ctx);
  return outcome::success();
}

// Moves `branch` (checked out in `repo`'s working tree) to origin/<branch> when that is a
// fast-forward. Shared by pull() and update_worktree(). `fresh`: see checkout_safe().
static Result<PullResult> fast_forward(git_repository* repo, const std::string& branch, const std::string& doing,
                                bool fresh) {
  PullResult out;
  BOOST_OUTCOME_TRY(upstream, commit_of(repo, tracking_ref(branch),
                                        doing + ": the remote has no branch '" + branch + "'"));
  const git_oid* up = git_commit_id(upstream.get());
  out.new_head = oid_hex(*up);
  git_oid local;
  if (git_reference_name_to_id(&local, repo, branch_ref(branch).c_str()) != 0) {
    // The local branch does not exist yet: check the remote's out.
    BOOST_OUTCOME_TRY(checkout_safe(repo, upstream.get(), doing, fresh));
    BOOST_OUTCOME_TRY(set_branch(repo, branch, *up, doing));
    BOOST_OUTCOME_TRY(to, tree_of(upstream.get()));
    BOOST_OUTCOME_TRY(changed, changed_paths(repo, nullptr, to.get()));
    out.changed = std::move(changed);
    out.updated = true;
    return out;
  }
  out.old_head = oid_hex(local);
  if (git_oid_equal(&local, up)) {
    out.new_head = out.old_head;
    // Still make sure it is the branch checked out (workspace.json may have changed it).
    if (head_branch(repo) != branch) {
      BOOST_OUTCOME_TRY(c, commit_of(repo, branch_ref(branch), doing));
      BOOST_OUTCOME_TRY(checkout_safe(repo, c.get(), doing));
      BOOST_OUTCOME_TRY(set_branch(repo, branch, local, doing));
      out.updated = true;
    }
    return out;
  }
  if (git_graph_descendant_of(repo, &local, up) == 1) {  // only local commits: nothing to pull
    out.new_head = out.old_head;
    return out;
  }
  if (git_graph_descendant_of(repo, up, &local) != 1) {
    std::size_t ahead = 0, behind = 0;
    git_graph_ahead_behind(&ahead, &behind, repo, &local, up);
    return fail(Errc::conflict, fmt::format("{}: the branch '{}' has {} local commit(s) the remote lacks and "
                                            "the remote has {} it lacks; push (which rebases or keeps the "
                                            "local ones on a ck/conflict-* branch) before pulling",
                                            doing, branch, ahead, behind));
  }
  BOOST_OUTCOME_TRY(old_commit, commit_of(repo, branch_ref(branch), doing));
  BOOST_OUTCOME_TRY(checkout_safe(repo, upstream.get(), doing));
  BOOST_OUTCOME_TRY(set_branch(repo, branch, *up, doing));
  BOOST_OUTCOME_TRY(from, tree_of(old_commit.get()));
  BOOST_OUTCOME_TRY(to, tree_of(upstream.get()));
  BOOST_OUTCOME_TRY(changed, changed_paths(repo, from.get(), to.get()));
  out.changed = std::move(changed);
  out.updated = true;
  return out;
}

static bool valid_scheme_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

std::string redact_url(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  auto host_start = scheme + 3;
  auto slash = url.find('/', host_start);
  auto authority = url.substr(host_start, slash == std::string_view::npos ? url.npos : slash - host_start);
  auto at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  std::string out(url.substr(0, host_start));
  // ssh logs in as the URL's user, which is no secret (git@host); a password never stays.
  // Elsewhere the user part is often the token itself (https://<token>@host): it goes.
  std::string_view scheme_name = url.substr(0, scheme);
  if (scheme_name == "ssh" || scheme_name == "ssh+git" || scheme_name == "git+ssh") {
    auto user = authority.substr(0, at);
    out += user.substr(0, user.find(':'));
    out += '@';
  }
  out += url.substr(host_start + at + 1);
  return out;
}

std::string remote_url(const fs::path& dir) {
  RegexSweep sweep;  // pcre2_sweep.h
  auto repo = open_repo(dir);
  if (repo.has_error()) return "";
  auto url = origin_url_of(repo.value().get());
  return url.has_value() ? url.value() : "";
}

Result<void> check_url(std::string_view url, bool allow_local) {
  if (url.empty()) return fail(Errc::invalid_argument, "the git URL is empty");
  if (url.size() > 2048) return fail(Errc::invalid_argument, "the git URL is longer than 2048 bytes");
  for (unsigned char c : url) {
    if (c < 0x20 || c == 0x7f || c == ' ') {
      return fail(Errc::invalid_argument, "the git URL has a space or a control character");
    }
  }
  if (url.front() == '-') return fail(Errc::invalid_argument, "a git URL cannot start with '-'");
  auto scheme_end = url.find("://");
  if (scheme_end != std::string_view::npos) {
    std::string scheme(url.substr(0, scheme_end));
    for (char& ch : scheme) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    for (char ch : scheme) {
      if (!valid_scheme_char(ch)) return fail(Errc::invalid_argument, "the git URL's scheme is malformed");
    }
    if (scheme == "https" || scheme == "http" || scheme == "ssh" || scheme == "git") {
      if (scheme_end + 3 >= url.size() || url[scheme_end + 3] == '/') {
        return fail(Errc::invalid_argument, "the git URL names no host");
      }
      return outcome::success();
    }
    if (scheme == "file") {
      if (allow_local) return outcome::success();
      return fail(Errc::forbidden, "file:// remotes are for the operator only; use an https or ssh URL");
    }
    return fail(Errc::invalid_argument, "the git URL's scheme '" + scheme +
                                            "' is not supported; use https://, ssh://, git:// or user@host:path");
  }
  if (url.front() == '/') {
    if (allow_local) return outcome::success();
    return fail(Errc::forbidden, "a local path as a remote is for the operator only; use an https or ssh URL");
  }
  // scp-like: user@host:path (no slash before the colon).
  auto colon = url.find(':');
  auto slash = url.find('/');
  if (colon != std::string_view::npos && colon > 0 && (slash == std::string_view::npos || colon < slash) &&
      colon + 1 < url.size()) {
    return outcome::success();
  }
  return fail(Errc::invalid_argument, "'" + std::string(url) +
                                          "' is not a git URL; use https://host/owner/repo.git, "
                                          "ssh://git@host/owner/repo.git or git@host:owner/repo.git");
}

Result<void> check_branch(std::string_view branch) {
  if (branch.empty()) return fail(Errc::invalid_argument, "the branch name is empty");
  if (branch.size() > 200) return fail(Errc::invalid_argument, "the branch name is longer than 200 bytes");
  init_library();
  int valid = 0;
  std::string ref = "refs/heads/" + std::string(branch);
  if (branch.front() == '-' || git_reference_name_is_valid(&valid, ref.c_str()) < 0 || !valid ||
      branch.find("..") != std::string_view::npos || branch == "HEAD") {
    return fail(Errc::invalid_argument, "'" + std::string(branch) + "' is not a valid git branch name");
  }
  return outcome::success();
}

void keep_out_of_commits(const fs::path& dir, const std::vector<std::string>& names) {
  std::error_code ec;
  if (names.empty() || !fs::is_directory(dir / ".git", ec)) return;
  fs::create_directories(dir / ".git" / "info", ec);
  std::ofstream out(dir / ".git" / "info" / "exclude", std::ios::app);
  out << "# files CloudyKnight keeps out of commits\n";
  for (const auto& name : names) out << "/" << name << "\n";
}

bool is_repository(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(dir / ".git", ec);
}

Result<PullResult> pull(const fs::path& dir, const Remote& remote, const Credentials& creds) {
  RegexSweep sweep;  // pcre2_sweep.h
  init_library();
  BOOST_OUTCOME_TRY(check_url(remote.url, true));
  if (!remote.branch.empty()) {
    BOOST_OUTCOME_TRY(check_branch(remote.branch));
  }
  std::string doing = "pulling " + redact_url(remote.url);
  if (std::string_view local = remote.url; local.front() == '/' || local.rfind("file://", 0) == 0) {
    if (local.front() != '/') local.remove_prefix(7);
    std::error_code ec;
    if (!fs::exists(fs::path(std::string(local)), ec)) {
      return fail(Errc::not_found, doing + ": there is no repository at " + std::string(local));
    }
  }
  if (!is_repository(dir)) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    git_repository* raw = nullptr;
    Context ctx{"creating a git repository in " + dir.string(), remote.url, &creds};
    CK_GIT(git_repository_init(&raw, dir.c_str(), 0), ctx);
    RepoPtr repo(raw);
    git_remote* r = nullptr;
    CK_GIT(git_remote_create(&r, repo.get(), "origin", remote.url.c_str()), ctx);
    git_remote_free(r);
    seed_objects_from_local(remote.url, dir / ".git" / "objects");
    std::string default_branch;
    auto fetched = fetch_origin(repo.get(), creds, &default_branch);
    if (fetched.has_error()) {
      // Leave the folder as it was: no half-made repository that later looks bound.
      fs::remove_all(dir / ".git", ec);
      return fetched.error();
    }
    std::string branch = !remote.branch.empty() ? remote.branch : default_branch;
    if (branch.empty()) {
      fs::remove_all(dir / ".git", ec);
      return fail(Errc::not_found, doing + ": the remote has no branches yet; push one first, or name "
                                           "the branch to follow");
    }
    // Files the folder already holds that the branch does not track stay local: keep them out
    // of commits (workspace.json with the binding, typically).
    std::vector<std::string> local_only;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      std::string name = entry.path().filename().string();
      if (name != ".git") local_only.push_back(name);
    }
    auto result = fast_forward(repo.get(), branch, doing, /*fresh=*/true);
    if (result.has_error()) {
      fs::remove_all(dir / ".git", ec);
      return result.error();
    }
    if (!local_only.empty()) {
      std::set<std::string> tracked(result.value().changed.begin(), result.value().changed.end());
      std::vector<std::string> untracked;
      for (const auto& name : local_only) {
        bool is_tracked = false;
        for (const auto& t : tracked) {
          if (t == name || t.rfind(name + "/", 0) == 0) is_tracked = true;
        }
        if (!is_tracked) untracked.push_back(name);
      }
      keep_out_of_commits(dir, untracked);
    }
    PullResult out = std::move(result).value();
    out.cloned = true;
    out.old_head.clear();
    return out;
  }
  BOOST_OUTCOME_TRY(repo, open_repo(dir));
  {
    std::string current;
    BOOST_OUTCOME_TRY(r, origin(repo.get(), &current));
    (void)r;
    if (current != remote.url) {
      Context ctx{"pointing origin at " + redact_url(remote.url), remote.url, &creds};
      CK_GIT(git_remote_set_url(repo.get(), "origin", remote.url.c_str()), ctx);
    }
  }
  std::string default_branch;
  BOOST_OUTCOME_TRY(fetch_origin(repo.get(), creds, remote.branch.empty() ? &default_branch : nullptr));
  std::string branch = remote.branch;
  if (branch.empty()) branch = head_branch(repo.get());
  if (branch.empty()) branch = default_branch;
  if (branch.empty()) return fail(Errc::conflict, doing + ": HEAD is detached; name the branch to follow");
  return fast_forward(repo.get(), branch, doing, false);
}

Result<void> fetch(const fs::path& dir, const Credentials& creds) {
  RegexSweep sweep;  // pcre2_sweep.h
  BOOST_OUTCOME_TRY(repo, open_repo(dir));
  return fetch_origin(repo.get(), creds, nullptr);
}

Result<Status> status(const fs::path& dir) {
  RegexSweep sweep;  // pcre2_sweep.h
  BOOST_OUTCOME_TRY(repo, open_repo(dir));
  Status out;
  if (auto r = origin_url_of(repo.get()); r.has_value()) out.url = redact_url(r.value());
  out.branch = head_branch(repo.get());
  git_oid head;
  if (git_reference_name_to_id(&head, repo.get(), "HEAD") == 0) {
    out.head = oid_hex(head);
    git_oid up;
    if (!out.branch.empty() &&
        git_reference_name_to_id(&up, repo.get(), tracking_ref(out.branch).c_str()) == 0) {
      std::size_t ahead = 0, behind = 0;
      if (git_graph_ahead_behind(&ahead, &behind, repo.get(), &head, &up) == 0) {
        out.ahead = static_cast<int>(ahead);
        out.behind = static_cast<int>(behind);
      }
    }
  }
  git_status_options opts = GIT_STATUS_OPTIONS_INIT;
  opts.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
  opts.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
  git_status_list* raw = nullptr;
  Context ctx{"reading the working tree's status in " + dir.string(), "", nullptr};
  CK_GIT(git_status_list_new(&raw, repo.get(), &opts), ctx);
  StatusPtr list(raw);
  out.dirty = git_status_list_entrycount(list.get()) > 0;
  return out;
}

Result<std::optional<std::string>> commit_all(const fs::path& dir, const Author& author,
                                              const std::string& message) {
  RegexSweep sweep;  // pcre2_sweep.h
  BOOST_OUTCOME_TRY(repo, open_repo(dir));
  Context ctx{"committing in " + dir.string(), "", nullptr};
  git_index* raw_index = nullptr;
  CK_GIT(git_repository_index(&raw_index, repo.get()), ctx);
  IndexPtr index(raw_index);
  git_strarray all{nullptr, 0};
  CK_GIT(git_index_add_all(index.get(), &all, GIT_INDEX_ADD_DEFAULT, nullptr, nullptr), ctx);
  CK_GIT(git_index_update_all(index.get(), &all, nullptr, nullptr), ctx);
  CK_GIT(git_index_write(index.get()), ctx);
  git_oid tree_id;
  CK_GIT(git_index_write_tree(&tree_id, index.get()), ctx);
  git_commit* parent_raw = nullptr;
  CommitPtr parent;
  git_oid head;
  if (git_reference_name_to_id(&head, repo.get(), "HEAD") == 0) {
    CK_GIT(git_commit_lookup(&parent_raw, repo.get(), &head), ctx);
    parent.reset(parent_raw);
    if (git_oid_equal(git_commit_tree_id(parent.get()), &tree_id)) return std::optional<std::string>{};
  } else if (git_index_entrycount(index.get()) == 0) {
    return std::optional<std::string>{};
  }
  git_tree* tree_raw = nullptr;
  CK_GIT(git_tree_lookup(&tree_raw, repo.get(), &tree_id), ctx);
  TreePtr tree(tree_raw);
  git_signature* sig_raw = nullptr;
  CK_GIT(git_signature_now(&sig_raw, author.name.empty() ? "cloudyknight" : author.name.c_str(),
                           author.email.empty() ? "cloudyknight@localhost" : author.email.c_str()),
         ctx);
  SigPtr sig(sig_raw);
  const git_commit* parents[1] = {parent.get()};
  git_oid id;
  CK_GIT(git_commit_create(&id, repo.get(), "HEAD", sig.get(), sig.get(), nullptr, message.c_str(), tree.get(),
                           parent ? 1 : 0, parents),
         ctx);
  return std::optional<std::string>(oid_hex(id));
}

}  // namespace ck::git
