// `cloudyknight deploy [DIR] [--name N] [--private] [--detach] [--watch]` (issue 18, part 3):
// sends a folder's source to the server the CLI is logged in to, without bucket keys.
//
// The workspace is created first when the server has none of that name (owned by the caller,
// private with --private). Then: the folder's source is listed with MD5s (the same ignore rules
// as `ws upload`; a local index keeps unchanged files from being read again), the server's list
// is fetched (GET .../source), and one tar goes up with the new list and only the files that
// differ (PUT .../source; storage/deploy.h). The server's answer follows the install and start
// log until the workspace runs or fails, and ends with its URL; --detach stops once the files
// are in place. A conflict (someone changed a file on the server between the two steps) is
// retried once with a fresh list.

#include "cli/deploy_cmd.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "cli/remote_internal.h"
#include "cli/watch.h"
#include "core/names.h"
#include "core/units.h"
#include "core/user_dirs.h"
#include "storage/deploy.h"
#include "storage/sync.h"

namespace ck::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr long kSendTimeoutMs = 30 * 60 * 1000;  // a large first deploy on a slow link

/// The workspace name a folder gets by default: its own name, lower-cased, with runs of other
/// characters made one '-'.
std::string name_for(const fs::path& dir) {
  std::string base = dir.filename().string();
  std::string out;
  for (unsigned char c : base) {
    if (std::isalnum(c)) {
      out += static_cast<char>(std::tolower(c));
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (out.size() > 63) out.resize(63);
  return out;
}

/// Where the CLI remembers the MD5s of a folder's files for one server and workspace.
fs::path index_for(const Endpoint& e, const std::string& name, const fs::path& dir) {
  return user_cache_dir() / "cloudyknight" / "deploy" /
         (sync::md5_hex(e.url + "\n" + name + "\n" + dir.string()) + ".json");
}

/// A progress line on a terminal (stderr), nothing otherwise.
class Progress {
 public:
  Progress() : tty_(::isatty(STDERR_FILENO) == 1) {}
  std::function<void(std::uint64_t, std::uint64_t)> fn() {
    if (!tty_) return {};
    return [this](std::uint64_t sent, std::uint64_t total) {
      if (total == 0 || Clock::now() - last_ < std::chrono::milliseconds(200)) return;
      last_ = Clock::now();
      std::cerr << fmt::format("\r  sending {} of {} ({}%)   ", format_bytes(sent), format_bytes(total),
                               sent * 100 / total)
                << std::flush;
      shown_ = true;
    };
  }
  void end() {
    if (shown_) std::cerr << "\r" << std::string(48, ' ') << "\r" << std::flush;
    shown_ = false;
  }

 private:
  bool tty_;
  bool shown_ = false;
  Clock::time_point last_{};
};

/// Creates the workspace when the server has none of that name. nullopt: it exists or was made;
/// otherwise the exit code.
std::optional<int> ensure_workspace(ApiClient& client, const Endpoint& e, const DeployOptions& o) {
  auto r = client.call(ApiRequest{"GET", "/workspaces/" + url_encode(o.name)});
  if (r.has_error()) return error(r.error().message);
  if (r.value().ok()) return std::nullopt;
  if (r.value().status != 404) return refused(r.value());
  json body = {{"name", o.name}};
  if (o.private_ws) body["public"] = false;
  ApiRequest create{"POST", "/workspaces", body.dump()};
  auto c = client.call(create);
  if (c.has_error()) return error(c.error().message);
  if (!c.value().ok()) return refused(c.value());
  std::cout << fmt::format("-----> Created {} on {}{}", o.name, e.url, o.private_ws ? " (private)" : "") << std::endl;
  // The server lists it once its monitor has seen the new folder (a scan, or the bucket's).
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    auto seen = client.call(ApiRequest{"GET", "/workspaces/" + url_encode(o.name)});
    if (seen.has_error()) return error(seen.error().message);
    if (seen.value().ok()) return std::nullopt;
    if (seen.value().status != 404) return refused(seen.value());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return error(fmt::format("{} was created but the server does not list it after a minute; see `cloudyknight ws "
                           "status {}` and deploy again",
                           o.name, o.name));
}

/// How one pass ended.
enum class Outcome { ok, failed, conflict };

struct Pass {
  Outcome outcome = Outcome::failed;
  int code = kExitFailure;
};

Pass send_once(ApiClient& client, const Endpoint& e, const DeployOptions& o, const fs::path& dir, bool quiet) {
  auto fail_with = [](int code) { return Pass{Outcome::failed, code}; };
  auto local = deploy::digest_folder(dir, {}, index_for(e, o.name, dir));
  if (local.has_error()) return fail_with(error(local.error().message));
  for (const auto& w : local.value().warnings) std::cerr << "cloudyknight: warning: " << w << "\n";
  auto listed = client.call(ApiRequest{"GET", "/workspaces/" + url_encode(o.name) + "/source"});
  if (listed.has_error()) return fail_with(error(listed.error().message));
  if (!listed.value().ok()) return fail_with(refused(listed.value()));
  deploy::Limits unlimited;
  unlimited.max_files = std::numeric_limits<std::size_t>::max();
  unlimited.max_bytes = std::numeric_limits<std::uint64_t>::max();
  auto remote = deploy::parse_list(listed.value().body, unlimited);
  if (remote.has_error()) {
    return fail_with(error(fmt::format("{} answered the file list with something else: {}", e.url, remote.error().message)));
  }
  auto manifest = local.value().files;
  const auto send = deploy::differing(manifest, remote.value());
  std::size_t deletes = 0;
  {
    std::set<std::string_view> here;
    for (const auto& f : manifest) here.insert(f.path);
    // The server keeps its workspace.json when the folder has none (source_api.cc).
    for (const auto& f : remote.value()) deletes += here.contains(f.path) || f.path == "workspace.json" ? 0 : 1;
  }
  if (send.empty() && deletes == 0 && (quiet || o.detach)) {
    if (!quiet) std::cout << fmt::format("{} is up to date ({} files)", o.name, manifest.size()) << std::endl;
    return Pass{Outcome::ok, kExitOk};
  }
  std::uint64_t bytes = 0;
  for (const auto& f : manifest) {
    if (std::binary_search(send.begin(), send.end(), f.path)) bytes += f.size;
  }
  std::cout << fmt::format("-----> Sending {} of {} files ({}){}", send.size(), manifest.size(), format_bytes(bytes),
                           deletes > 0 ? fmt::format("; {} to delete", deletes) : "")
            << std::endl;
  // A source larger than one request may be goes in parts; the last carries the manifest.
  const json listed_doc = parse_object(listed.value().body);
  const std::uint64_t limit =
      listed_doc.contains("max_bytes") && listed_doc["max_bytes"].is_number_unsigned()
          ? std::max<std::uint64_t>(listed_doc["max_bytes"].get<std::uint64_t>(), 64u << 10)
          : 64ull << 20;
  auto parts = deploy::split_parts(manifest, send, limit, deploy::list_json(manifest).size());
  if (parts.has_error()) return fail_with(error(parts.error().message));
  const std::string base = "/workspaces/" + url_encode(o.name) + "/source";
  for (std::size_t i = 0; i + 1 < parts.value().size(); ++i) {
    auto tar = deploy::build_package(dir, manifest, parts.value()[i], false);
    if (tar.has_error()) return fail_with(error(tar.error().message));
    ApiRequest part{"PUT", base + "?part=1", std::move(tar.value())};
    part.content_type = "application/x-tar";
    part.timeout_ms = kSendTimeoutMs;
    Progress progress;
    part.on_upload = progress.fn();
    auto r = client.call(part);
    progress.end();
    if (r.has_error()) return fail_with(error(r.error().message));
    if (!r.value().ok()) return fail_with(refused(r.value()));
    std::cout << fmt::format("-----> Sent part {} of {} ({} files)", i + 1, parts.value().size(),
                             parts.value()[i].size())
              << std::endl;
  }
  auto tar = deploy::build_package(dir, manifest, parts.value().back());
  if (tar.has_error()) return fail_with(error(tar.error().message));

  ApiRequest put{"PUT", base + (o.detach ? "?follow=0" : ""),
                 std::move(tar.value())};
  put.content_type = "application/x-tar";
  put.timeout_ms = o.detach ? kSendTimeoutMs : 0;
  Progress progress;
  put.on_upload = progress.fn();
  if (o.detach) {
    auto r = client.call(put);
    progress.end();
    if (r.has_error()) return fail_with(error(r.error().message));
    if (r.value().status == 409) return Pass{Outcome::conflict, refused(r.value())};
    if (!r.value().ok()) return fail_with(refused(r.value()));
    json doc = parse_object(r.value().body);
    std::cout << fmt::format("=====> Deployed {}: {} written, {} deleted, {} unchanged: {}", o.name,
                             doc.value("written", 0), doc.value("deleted", 0), doc.value("unchanged", 0),
                             str(doc, "url"))
              << std::endl;
    return Pass{Outcome::ok, kExitOk};
  }
  // The server's report, line by line as it comes: its last verdict decides the exit code.
  std::string pending;
  bool done = false, problem = false;
  auto r = client.stream(put, [&](std::string_view data) {
    progress.end();
    pending.append(data);
    for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (line.starts_with("=====> ")) done = true;
      if (line.starts_with("!!!    ")) problem = true;
      std::cout << line << "\n";
    }
    std::cout << std::flush;
    return true;
  });
  progress.end();
  if (!pending.empty()) std::cout << pending << std::endl;
  if (r.has_error()) return fail_with(error(r.error().message));
  if (r.value().status == 409) return Pass{Outcome::conflict, refused(r.value())};
  if (!r.value().ok()) return fail_with(refused(r.value()));
  if (problem) return fail_with(kExitFailure);
  if (!done) {
    return fail_with(error(fmt::format("the server ended the deploy without saying how it went; see `cloudyknight ws "
                                       "status {}`",
                                       o.name)));
  }
  return Pass{Outcome::ok, kExitOk};
}

/// One deploy, retried once when a file changed on the server between the listing and the send.
int deploy_once(ApiClient& client, const Endpoint& e, const DeployOptions& o, const fs::path& dir, bool quiet) {
  Pass p = send_once(client, e, o, dir, quiet);
  if (p.outcome == Outcome::conflict) {
    std::cerr << "cloudyknight: trying again with a fresh list of the server's files\n";
    p = send_once(client, e, o, dir, quiet);
  }
  return p.code;
}

}  // namespace

int deploy_command(const Endpoint& e, DeployOptions o) {
  std::error_code ec;
  fs::path dir = fs::absolute(o.dir.empty() ? fs::path(".") : fs::path(o.dir), ec).lexically_normal();
  if (dir.has_filename() == false) dir = dir.parent_path();
  if (ec || !fs::is_directory(dir, ec)) {
    return error(fmt::format("{} is not a folder: give the folder that holds the app's source", o.dir), kExitUsage);
  }
  if (o.name.empty()) {
    o.name = name_for(dir);
    if (auto v = validate_workspace_name(o.name); v.has_error()) {
      return error(fmt::format("the folder's name '{}' does not make a workspace name; give one with --name",
                               dir.filename().string()),
                   kExitUsage);
    }
  }
  if (auto v = validate_workspace_name(o.name); v.has_error()) return error(v.error().message, kExitUsage);
  ApiClient client(e);
  if (auto code = ensure_workspace(client, e, o)) return *code;
  if (!o.watch) return deploy_once(client, e, o, dir, false);
  o.detach = true;  // in watch mode each save is one line, not a followed log
  return watch_folder(dir, [&](bool quiet) { return deploy_once(client, e, o, dir, quiet) == kExitOk; });
}

}  // namespace ck::cli
