// Creating and deleting workspaces through the API, and the template list:
//   POST   /monitor/api/v1/workspaces {"name", "template"?, "clone_of"?, "public"?}  (deploy)
//   DELETE /monitor/api/v1/workspaces/{name}                                      (deploy)
//   GET    /monitor/api/v1/templates
// A new workspace is built in a hidden folder beside its final place in the storage root (dir
// storage skips dot folders) and renamed into place in one step, so the monitor never sees a
// half-copied workspace. A template or a clone source is copied through list_source_files(),
// so dependencies (node_modules, .venv), .env files and build output stay behind. A deleted
// workspace is moved to DATA/trash, never removed. The monitor notices both through its watcher.
//
// With S3 storage the new folder is assembled beside the mirror and uploaded (source and
// manifest) by the mirror's thread, and a delete copies the mirror's folder to DATA/trash before
// the objects are deleted; both answer once the mirror has caught up (an http::ResponseStream).
//
// Runs on gateway threads; the local file copies block the thread serving the request.

#include <fcntl.h>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "api/api.h"
#include "api/respond.h"
#include "auth/auth.h"
#include "auth/authorize.h"
#include "core/log.h"
#include "core/names.h"
#include "git/repo.h"
#include "http/stream.h"
#include "http/url.h"
#include "storage/ignore.h"
#include "workspace/workspace.h"

namespace ck {

using api::json_response;
using api::method_not_allowed;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr std::string_view kApi = "/monitor/api/v1";

constexpr std::string_view kEmptyIndex = R"(<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Empty workspace</title>
</head>
<body>
  <h1>This workspace is empty</h1>
  <p>Add your files to its folder: an <code>index.html</code> is served as it is, a
  <code>package.json</code>, <code>app.py</code>, <code>go.mod</code>... makes it an app.</p>
</body>
</html>
)";



http::Response unsupported() {
  return error_response(Errc::conflict,
                        "this control plane cannot create or delete workspaces in its storage; "
                        "upload with `cloudyknight workspace upload` instead");
}


// A template's folder name: what a path segment may be (no '/', no leading '.').
bool plain_folder_name(const std::string& s) {
  return !s.empty() && s.size() <= 128 && s.front() != '.' &&
         s.find_first_of("/\\") == std::string::npos && s.find('\0') == std::string::npos;
}

// Copies the source files of `from` (list_source_files: no node_modules, .venv, .env...) into
// `to`, which exists.
Result<std::size_t> copy_source(const fs::path& from, const fs::path& to) {
  BOOST_OUTCOME_TRY(tree, list_source_files(from, IgnoreOptions{}));
  std::error_code ec;
  for (const auto& f : tree.files) {
    fs::path dest = to / fs::path(f.path);
    fs::create_directories(dest.parent_path(), ec);
    if (ec) return fail(Errc::io, fmt::format("cannot create {}: {}", dest.parent_path().string(), ec.message()));
    fs::copy_file(from / fs::path(f.path), dest, fs::copy_options::overwrite_existing, ec);
    if (ec) return fail(Errc::io, fmt::format("cannot copy {}: {}", f.path, ec.message()));
  }
  return tree.files.size();
}

Result<void> write_file(const fs::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) return fail(Errc::io, "cannot write " + path.string());
  return outcome::success();
}

// Sets "public": false in the folder's workspace.json, keeping what a template put there.
Result<void> mark_private(const fs::path& dir) {
  fs::path file = dir / "workspace.json";
  json doc = json::object();
  std::error_code ec;
  if (fs::exists(file, ec)) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    doc = json::parse(ss.str(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      return fail(Errc::invalid_argument,
                  "the source's workspace.json is not a JSON object, so \"public\": false cannot "
                  "be added to it; fix it first");
    }
  }
  doc["public"] = false;
  return write_file(file, doc.dump(2) + "\n");
}

// A new workspace as POST /workspaces answers it (201).
json new_workspace_json(const std::string& name, const WorkspaceSpec& spec, const std::string& url) {
  json out = {{"name", name},
              {"type", std::string(type_name(spec.type))},
              {"matched", spec.matched},
              {"status", "creating"},
              {"activity", "idle"},
              {"url", url},
              {"public", spec.is_public},
              {"prefix", spec.prefix == PrefixMode::keep && spec.type != WorkspaceType::static_site ? "keep" : "strip"},
              {"description", spec.description},
              {"icon", spec.icon},
              {"restarts", 0}};
  if (!spec.error.empty()) out["error"] = spec.error;
  return out;
}

// Its creator owns it (a user; tokens and the admin token own nothing): a private workspace
// then opens for them and for admins only. Then the audit record.
void record_creation(auth::Auth* auth, const std::string& name, const std::string& owner, bool is_public,
                     const std::string& principal, const std::string& ip, json what) {
  if (!auth) return;
  if (!owner.empty()) {
    if (auto o = auth->set_workspace_owner(name, owner, is_public); o.has_error()) {
      log::get("api")->warn("[ws={}] cannot record its owner: {}", name, o.error().message);
    } else {
      what["owner"] = owner;
    }
  }
  (void)auth->audit(principal, "workspace.create", name, what.dump(), ip);
}

std::string unique_suffix() {
  static std::atomic<unsigned> counter{0};
  auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return fmt::format("{}-{}-{}", ::getpid(), now, counter.fetch_add(1));
}

// "20261126T015500Z"
std::string utc_stamp() {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:%Y%m%dT%H%M%SZ}", tm);
}

// Moves `from` to `to`: a rename, or (another file system) a copy that is checked before the
// original goes.
Result<void> move_folder(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (!ec) return outcome::success();
  if (ec != std::errc::cross_device_link) {
    return fail(Errc::io, fmt::format("cannot move {} to {}: {}", from.string(), to.string(), ec.message()));
  }
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
  if (ec) {
    return fail(Errc::io, fmt::format("cannot copy {} to {} (another file system): {}; the "
                                      "workspace was left in place",
                                      from.string(), to.string(), ec.message()));
  }
  fs::remove_all(from, ec);
  if (ec) return fail(Errc::io, fmt::format("copied to {} but cannot remove {}: {}", to.string(), from.string(), ec.message()));
  return outcome::success();
}

}  // namespace

std::optional<http::Response> ControlApi::workspace_mutation(const http::Request& req,
                                                             const Snapshot& snap,
                                                             const auth::Principal& who) const {
  const std::string principal = who.label();
  const std::string owner = who.user_id;  // a user, or a token bound to one, owns what it makes
  const std::string list_path = std::string(kApi) + "/workspaces";
  const std::string prefix = list_path + "/";
  const bool create = req.path == list_path;
  const bool remove = req.path.starts_with(prefix) &&
                      req.path.find('/', prefix.size()) == std::string::npos;
  if (!create && !remove) return std::nullopt;
  if (create && req.method != "POST") return method_not_allowed(req, "GET, POST");
  if (remove && req.method != "DELETE") return method_not_allowed(req, "GET, DELETE");
  const fs::path& root = services_.workspaces_root;

  if (remove) {
    auto decoded = http::percent_decode(req.path.substr(prefix.size()));
    if (!decoded) {
      return error_response(Errc::invalid_argument, "malformed percent-encoding in the workspace name");
    }
    const std::string name = *decoded;
    if (auto v = validate_workspace_name(name); v.has_error()) {
      return error_response(Errc::invalid_argument, v.error().message);
    }
    if (!services_.dir_storage && !services_.unpublish) return unsupported();
    if (root.empty()) return error_response(Errc::unavailable, "this control plane cannot delete workspaces");
    std::error_code ec;
    fs::path folder = root / name;
    auto d = decide(&who, name, snap.find(name), auth::Access::act);
    if (d == auth::Decision::forbidden) {
      return error_response(Errc::forbidden, fmt::format("{} may see '{}' but not delete it",
                                                         principal, name));
    }
    if (d != auth::Decision::allowed || !fs::exists(fs::symlink_status(folder, ec))) {
      return error_response(Errc::not_found, "there is no workspace named '" + name + "'; GET " +
                                                 list_path + " lists them");
    }
    fs::create_directories(services_.trash_dir, ec);
    fs::path dest = services_.trash_dir / fmt::format("{}-{}", name, utc_stamp());
    for (int n = 2; fs::exists(fs::symlink_status(dest, ec)); ++n) {
      dest = services_.trash_dir / fmt::format("{}-{}-{}", name, utc_stamp(), n);
    }
    const WorkspaceView* w = snap.find(name);
    json detail = {{"trash", dest.string()}, {"status", w ? w->status : std::string("unknown")}};
    // What happens once the source is gone from storage. A later workspace of the same name
    // must not inherit this one's owner.
    auto deleted = [auth = services_.auth, name, dest, principal, ip = req.client_ip,
                    index_dir = services_.deploy_index_dir](json what) {
      if (!index_dir.empty()) {  // the deploy's file index of this workspace (a cache) goes too
        std::error_code gone;
        fs::remove(index_dir / (name + ".json"), gone);
      }
      if (auth) {
        (void)auth->set_workspace_owner(name, "", true);
        (void)auth->audit(principal, "workspace.delete", name, what.dump(), ip);
      }
      return json_response(200, {{"deleted", name}, {"trash", dest.string()}});
    };
    if (services_.dir_storage) {
      if (auto moved = move_folder(folder, dest); moved.has_error()) {
        return error_response(moved.error().code, moved.error().message);
      }
      return deleted(detail);
    }
    // S3: the mirror holds the whole source; the trash keeps a copy of it before the objects go.
    fs::copy(folder, dest, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
    if (ec) {
      return error_response(Errc::io, fmt::format("cannot keep a copy of '{}' in {} before deleting it: {}; "
                                                  "nothing was deleted",
                                                  name, dest.string(), ec.message()));
    }
    auto st = std::make_shared<http::ResponseStream>();
    services_.unpublish(name, [st, deleted, detail, name](Result<std::size_t> r) mutable {
      if (r.has_error()) return st->respond(error_response(r.error().code, r.error().message));
      detail["objects"] = r.value();
      st->respond(deleted(detail));
    });
    http::Response res;
    res.stream = st;
    return res;
  }

  // POST /workspaces
  auto doc = json::parse(req.body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return error_response(Errc::invalid_argument,
                          "the body must be a JSON object: {\"name\", \"template\"?, "
                          "\"clone_of\"?, \"public\"?}");
  }
  auto name_it = doc.find("name");
  if (name_it == doc.end() || !name_it->is_string()) {
    return error_response(Errc::invalid_argument, "\"name\" must be a string (the workspace name)");
  }
  const std::string name = name_it->get<std::string>();
  std::string tmpl, clone_of;
  for (auto [key, out] : {std::pair<const char*, std::string*>{"template", &tmpl},
                          std::pair<const char*, std::string*>{"clone_of", &clone_of}}) {
    auto it = doc.find(key);
    if (it == doc.end() || it->is_null()) continue;
    if (!it->is_string() || it->get<std::string>().empty()) {
      return error_response(Errc::invalid_argument, fmt::format("\"{}\" must be a non-empty string", key));
    }
    *out = it->get<std::string>();
  }
  bool is_public = true;
  if (auto it = doc.find("public"); it != doc.end() && !it->is_null()) {
    if (!it->is_boolean()) return error_response(Errc::invalid_argument, "\"public\" must be true or false");
    is_public = it->get<bool>();
  }
  if (auto v = validate_workspace_name(name); v.has_error()) {
    return error_response(Errc::invalid_argument, v.error().message);
  }
  if (!tmpl.empty() && !clone_of.empty()) {
    return error_response(Errc::invalid_argument,
                          "give either \"template\" or \"clone_of\", not both");
  }
  // "git": {"url", "branch"?, "token"?}: a clone of a remote the workspace then follows.
  std::string git_url, git_branch, git_token;
  if (auto it = doc.find("git"); it != doc.end() && !it->is_null()) {
    if (!it->is_object()) {
      return error_response(Errc::invalid_argument,
                            "\"git\" must be an object: {\"url\", \"branch\"?, \"token\"?}");
    }
    for (auto [key, out] : {std::pair<const char*, std::string*>{"url", &git_url},
                            std::pair<const char*, std::string*>{"branch", &git_branch},
                            std::pair<const char*, std::string*>{"token", &git_token}}) {
      auto f = it->find(key);
      if (f == it->end() || f->is_null()) continue;
      if (!f->is_string()) return error_response(Errc::invalid_argument, fmt::format("\"git.{}\" must be a string", key));
      *out = f->get<std::string>();
    }
    if (git_url.empty()) return error_response(Errc::invalid_argument, "\"git.url\" is required: the remote to clone");
    if (!tmpl.empty() || !clone_of.empty()) {
      return error_response(Errc::invalid_argument, "give one of \"template\", \"clone_of\" and \"git\"");
    }
    if (!services_.git_clone) {
      return error_response(Errc::conflict, "git workspaces need folder storage (storage.kind: dir); this "
                                            "control plane keeps its workspaces in a bucket");
    }
  }
  if (!services_.dir_storage && !services_.publish) return unsupported();
  if (root.empty()) return error_response(Errc::unavailable, "this control plane cannot create workspaces");
  std::error_code ec;
  fs::path folder = root / name;
  if (snap.find(name) || fs::exists(fs::symlink_status(folder, ec))) {
    return error_response(Errc::already_exists, "a workspace named '" + name + "' already exists");
  }
  fs::path source;
  if (!tmpl.empty()) {
    if (services_.templates_dir.empty()) {
      return error_response(Errc::not_found,
                            "this control plane has no templates folder (set the `templates` "
                            "config key)");
    }
    source = services_.templates_dir / tmpl;
    if (!plain_folder_name(tmpl) || !fs::is_directory(source, ec)) {
      return error_response(Errc::not_found, "there is no template named '" + tmpl + "'; GET " +
                                                 std::string(kApi) + "/templates lists them");
    }
  } else if (!clone_of.empty()) {
    source = root / clone_of;
    // The source must be one the caller may see (else it does not exist for them).
    if (!is_valid_workspace_name(clone_of) || !fs::is_directory(source, ec) ||
        decide(&who, clone_of, snap.find(clone_of), auth::Access::see) !=
            auth::Decision::allowed) {
      return error_response(Errc::not_found, "there is no workspace named '" + clone_of +
                                                 "' to clone; GET " + list_path + " lists them");
    }
  }

  // Build it beside its final place (same file system), then rename it in; for S3, beside
  // the mirror (which only the bucket fills), then upload it.
  fs::path tmp = (services_.dir_storage ? root : root.parent_path()) /
                 fmt::format(".ck-create-{}-{}", name, unique_suffix());
  fs::create_directory(tmp, ec);
  if (ec) return error_response(Errc::io, fmt::format("cannot create {}: {}", tmp.string(), ec.message()));
  auto cleanup = [&] {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);  // only the folder this request made
  };
  if (!git_url.empty()) {
    // The clone runs off the gateway; the answer comes when it is in place (or failed, and
    // nothing is left behind: no folder, no token).
    fs::remove(tmp, ec);  // the clone makes it
    auto st = std::make_shared<http::ResponseStream>();
    services_.git_clone(
        name, tmp, git_url, git_branch, git_token, owner.empty() ? principal : owner,
        [st, tmp, folder, name, is_public, url = workspace_url(name, info_), auth = services_.auth, owner,
         principal, ip = req.client_ip, redacted = git::redact_url(git_url)](Result<void> r) {
          std::error_code ignored;
          if (r.has_error()) {
            fs::remove_all(tmp, ignored);
            return st->respond(error_response(r.error().code, r.error().message));
          }
          if (!is_public) {
            if (auto m = mark_private(tmp); m.has_error()) {
              fs::remove_all(tmp, ignored);
              return st->respond(error_response(m.error().code, m.error().message));
            }
            git::keep_out_of_commits(tmp, {"workspace.json"});
          }
          WorkspaceSpec spec = detect_workspace(name, tmp);
          if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, folder.c_str(), RENAME_NOREPLACE) != 0) {
            int err = errno;
            fs::remove_all(tmp, ignored);
            return st->respond(err == EEXIST || err == ENOTEMPTY
                                   ? error_response(Errc::already_exists, "a workspace named '" + name + "' already exists")
                                   : error_response(Errc::io, fmt::format("cannot move the new workspace into {}: {}",
                                                                          folder.string(), std::strerror(err))));
          }
          json out = new_workspace_json(name, spec, url);
          out["git"] = {{"url", redacted}};
          json what = {{"git", redacted}, {"public", spec.is_public}};
          record_creation(auth, name, owner, spec.is_public, principal, ip, what);
          st->respond(json_response(201, out));
        });
    http::Response res;
    res.stream = st;
    return res;
  }
  std::size_t files = 1;
  if (!source.empty()) {
    auto copied = copy_source(source, tmp);
    if (copied.has_error()) {
      cleanup();
      return error_response(copied.error().code, copied.error().message);
    }
    files = copied.value();
  } else if (auto w = write_file(tmp / "index.html", kEmptyIndex); w.has_error()) {
    cleanup();
    return error_response(w.error().code, w.error().message);
  }
  if (!is_public) {
    if (auto m = mark_private(tmp); m.has_error()) {
      cleanup();
      return error_response(m.error().code, m.error().message);
    }
  }
  WorkspaceSpec spec = detect_workspace(name, tmp);
  json detail = {{"files", files}, {"public", spec.is_public}};
  if (!tmpl.empty()) detail["template"] = tmpl;
  if (!clone_of.empty()) detail["clone_of"] = clone_of;
  json out = new_workspace_json(name, spec, workspace_url(name, info_));
  if (!tmpl.empty()) out["template"] = tmpl;
  if (!clone_of.empty()) out["clone_of"] = clone_of;
  // What happens once it is in storage. Its creator owns it (a user; tokens and the admin
  // token own nothing): a private workspace then opens for them and for admins only.
  auto created = [auth = services_.auth, name, owner, is_public = spec.is_public, principal,
                  ip = req.client_ip, out](json what) {
    record_creation(auth, name, owner, is_public, principal, ip, what);
    return json_response(201, out);
  };
  if (services_.dir_storage) {
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, folder.c_str(), RENAME_NOREPLACE) != 0) {
      int err = errno;
      cleanup();
      if (err == EEXIST || err == ENOTEMPTY) {
        return error_response(Errc::already_exists, "a workspace named '" + name + "' already exists");
      }
      return error_response(Errc::io, fmt::format("cannot move the new workspace into {}: {}",
                                                  folder.string(), std::strerror(err)));
    }
    return created(detail);
  }
  auto st = std::make_shared<http::ResponseStream>();
  services_.publish(name, tmp, [st, created, detail, tmp](Result<void> r) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);  // uploaded, or refused: either way it has served
    if (r.has_error()) return st->respond(error_response(r.error().code, r.error().message));
    st->respond(created(detail));
  });
  http::Response res;
  res.stream = st;
  return res;
}

http::Response ControlApi::templates(const http::Request&) const {
  json list = json::array();
  const fs::path& dir = services_.templates_dir;
  std::error_code ec;
  if (!dir.empty() && fs::is_directory(dir, ec)) {
    std::vector<fs::path> folders;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      std::string n = e.path().filename().string();
      std::error_code e2;
      if (plain_folder_name(n) && e.is_directory(e2)) folders.push_back(e.path());
    }
    std::sort(folders.begin(), folders.end());
    for (const auto& f : folders) {
      std::string n = f.filename().string();
      WorkspaceSpec spec = detect_workspace(n, f);
      list.push_back({{"name", n},
                      {"type", std::string(type_name(spec.type))},
                      {"description", spec.description}});
    }
  }
  return json_response(200, {{"templates", list}});
}

}  // namespace ck
