// The files API (issue 16): GET|PUT|DELETE /workspaces/{name}/files/{path}, a workspace's files
// read, listed, written and deleted with the static server's path rules (core/beneath.h: no
// "..", no NUL or backslash, no absolute path, no symlink followed) beneath a descriptor of
// the workspace folder (storage/files.h). The caller was checked by handle_secured().
//
// Reads run on the gateway thread (one open, one read of at most gateway.max_file_body).
// Writes and deletes, which fsync, run on the API's worker thread (folder storage) or the S3
// mirror's thread (S3 storage: the bucket first, then the mirror), and answer through a stream.

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "api/api.h"
#include "api/poller.h"
#include "api/respond.h"
#include "core/beneath.h"
#include "http/stream.h"
#include "http/url.h"
#include "storage/files.h"

namespace ck {

using json = nlohmann::json;

namespace {

constexpr std::string_view kLimitKey = "gateway.max_file_body";

// The error body, with the current ETag on a 412 so the client can merge and retry.
http::Response file_error(const Error& e, const std::string& current_etag = "") {
  auto r = error_response(e.code, e.message);
  if (e.code == Errc::precondition_failed && !current_etag.empty()) {
    r.headers.emplace_back("ETag", current_etag);
  }
  return r;
}

// The workspace-relative path of `raw` (percent-encoded, after "files/"), or the 400.
Result<std::string> relative_path(std::string_view raw) {
  std::optional<std::string> decoded(std::in_place, raw);
  if (raw.find('%') != std::string_view::npos) {
    decoded = http::percent_decode(raw);
    if (!decoded)
      return fail(Errc::invalid_argument, "malformed percent-encoding in the file path");
  }
  if (decoded->starts_with('/')) {
    return fail(Errc::invalid_argument,
                "the file path must be relative to the workspace folder, not absolute");
  }
  std::string rel;
  switch (check_relative_path(*decoded, true, rel)) {
    case PathRefusal::none:
      break;
    case PathRefusal::bad_bytes:
      return fail(Errc::invalid_argument, "the file path contains a NUL byte or a backslash");
    case PathRefusal::dot_dot:
      return fail(Errc::invalid_argument, "the file path tries to leave the workspace (..)");
    case PathRefusal::hidden:
      break;  // allowed here
  }
  // A repository's internals are not workspace files: writing .git/config or a hook would
  // change what the daemon's git operations do.
  if (has_git_segment(rel)) {
    return fail(Errc::forbidden, "the files API does not reach into .git: the repository is "
                                 "CloudyKnight's to manage (commit and pull through the API)");
  }
  return rel;
}

// A descriptor of the workspace's folder (which may itself be a symlink, as the static server
// allows); -1 with the error.
Result<int> open_workspace(const std::filesystem::path& root, const std::string& name) {
  int fd = ::open((root / name).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return fail(errno == ENOENT ? Errc::not_found : Errc::io,
                fmt::format("the folder of workspace '{}' cannot be opened: {}", name,
                            std::strerror(errno)));
  }
  return fd;
}

json listing_json(const std::string& rel, const files::Found& f) {
  json entries = json::array();
  for (const auto& e : f.entries) {
    json j = {{"name", e.name}, {"type", e.type}, {"size", e.size}, {"mtime", e.mtime_ms}};
    if (!e.etag.empty()) j["etag"] = e.etag;
    entries.push_back(std::move(j));
  }
  json out = {{"path", rel}, {"entries", std::move(entries)}};
  if (f.truncated) out["truncated"] = true;
  return out;
}

http::Response written_response(const std::string& rel, std::size_t size, const files::Written& w) {
  auto r =
      api::json_response(w.created ? 201 : 200,
                         {{"path", rel}, {"size", size}, {"etag", w.etag}, {"created", w.created}});
  r.headers.emplace_back("ETag", w.etag);
  return r;
}

}  // namespace

http::Response ControlApi::files_request(
    const http::Request& req, const WorkspaceView& w, std::string_view raw_path, const std::string& author,
    const std::function<void(const std::string&, json)>& audit) const {
  auto rel = relative_path(raw_path);
  if (rel.has_error()) return file_error(rel.error());
  if (services_.workspaces_root.empty()) {
    return error_response(Errc::unavailable, "this control plane has no workspace folders");
  }
  const bool read = req.method == "GET" || req.method == "HEAD";
  const std::uint64_t limit = services_.max_file_bytes;

  if (read) {
    auto fd = open_workspace(services_.workspaces_root, w.name);
    if (fd.has_error()) return file_error(fd.error());
    auto found = files::read(fd.value(), rel.value(), limit, kLimitKey);
    ::close(fd.value());
    if (found.has_error()) return file_error(found.error());
    auto& f = found.value();
    if (f.dir) return api::json_response(200, listing_json(rel.value(), f));
    http::Response r;
    r.content_type = std::string(content_type_for_name(rel.value()));
    r.headers.emplace_back("ETag", f.etag);
    r.headers.emplace_back("Cache-Control", "no-cache");
    r.headers.emplace_back("Vary", "Authorization, Cookie");
    // The bytes are the workspace's, served on the dashboard's origin: never run as a page there.
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.headers.emplace_back("Content-Security-Policy", "default-src 'none'; sandbox");
    if (http::etag_matches(req.header("If-None-Match"), f.etag)) {
      r.status = 304;
      return r;
    }
    r.body = std::move(f.body);
    return r;
  }

  files::Conditions when;
  if (auto im = req.header("If-Match"); !im.empty()) when.if_match = im;
  if (auto inm = req.header("If-None-Match"); !inm.empty()) {
    if (inm != "*") {
      return error_response(Errc::invalid_argument,
                            "a write takes only 'If-None-Match: *' (create only); to refuse a lost "
                            "update send 'If-Match: <etag>'");
    }
    when.if_none_match_any = true;
  }
  auto st = std::make_shared<http::ResponseStream>();
  http::Response later;
  later.stream = st;
  const std::string name = w.name;

  if (req.method == "PUT") {
    if (req.body.size() > limit) {
      return error_response(
          Errc::too_large,
          fmt::format("the file is {} bytes, more than the {} bytes the files API accepts; raise "
                      "{} (CK_GATEWAY_MAX_FILE_BODY) to write it",
                      req.body.size(), limit, kLimitKey));
    }
    audit("workspace.file.write", {{"path", rel.value()}, {"bytes", req.body.size()}});
    const std::size_t size = req.body.size();
    auto answer = [st, path = rel.value(), size](Result<files::Written> r, std::string current) {
      st->respond(r.has_value() ? written_response(path, size, r.value())
                                : file_error(r.error(), current));
    };
    if (services_.write_file) {
      services_.write_file(name, rel.value(), req.body, when, answer);
      return later;
    }
    worker_->add([answer, root = services_.workspaces_root, name, path = rel.value(),
                  body = std::make_shared<std::string>(req.body), when, changed = services_.file_changed, author] {
      auto fd = open_workspace(root, name);
      if (fd.has_error()) {
        answer(fd.error(), "");
        return false;
      }
      std::string current;
      auto r = files::write(fd.value(), path, *body, when, {}, &current);
      ::close(fd.value());
      if (r.has_value() && changed) changed(name, path, "write", author);
      answer(std::move(r), std::move(current));
      return false;  // once
    });
    return later;
  }

  // DELETE
  audit("workspace.file.delete", {{"path", rel.value()}});
  auto answer = [st](Result<void> r, std::string current) {
    st->respond(r.has_value() ? api::no_content() : file_error(r.error(), current));
  };
  if (services_.delete_file) {
    services_.delete_file(name, rel.value(), when, answer);
    return later;
  }
  worker_->add([answer, root = services_.workspaces_root, name, path = rel.value(), when,
                changed = services_.file_changed, author] {
    auto fd = open_workspace(root, name);
    if (fd.has_error()) {
      answer(fd.error(), "");
      return false;
    }
    std::string current;
    auto r = files::remove(fd.value(), path, when, {}, &current);
    ::close(fd.value());
    if (r.has_value() && changed) changed(name, path, "delete", author);
    answer(std::move(r), std::move(current));
    return false;
  });
  return later;
}

}  // namespace ck
