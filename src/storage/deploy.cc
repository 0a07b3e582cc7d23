#include "storage/deploy.h"

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <unordered_map>

#include "core/beneath.h"
#include "core/files.h"
#include "storage/file_index.h"
#include "storage/sync.h"

namespace ck::deploy {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int kHashThreads = 4;
constexpr std::uint64_t kMaxManifestBytes = 32ull << 20;

bool is_md5(std::string_view s) {
  return s.size() == 32 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string archive_error(archive* a) {
  const char* s = archive_error_string(a);
  return s ? s : "unknown libarchive error";
}

using ReadArchive = std::unique_ptr<archive, decltype(&archive_read_free)>;
using WriteArchive = std::unique_ptr<archive, decltype(&archive_write_free)>;
using ArchiveEntry = std::unique_ptr<archive_entry, decltype(&archive_entry_free)>;

}  // namespace

Result<std::string> check_path(std::string_view raw, const Limits& limits) {
  std::string_view p = raw;
  while (p.starts_with("./")) p.remove_prefix(2);
  if (p.empty()) return fail(Errc::invalid_argument, "an empty file path");
  if (p.size() > limits.max_path) {
    return fail(Errc::too_large, fmt::format("the path '{}...' is longer than {} bytes", p.substr(0, 64),
                                             limits.max_path));
  }
  for (unsigned char c : p) {
    if (c < 0x20 || c == 0x7f) {
      return fail(Errc::invalid_argument,
                  fmt::format("the path '{}' has a control character; rename the file", json(std::string(p)).dump()));
    }
  }
  if (p.starts_with('/') || !sync::safe_relative_path(p)) {
    return fail(Errc::invalid_argument,
                fmt::format("the path '{}' is not a plain relative path inside the workspace (no '..', "
                            "'.', empty segment, leading '/', NUL or backslash)",
                            p));
  }
  if (has_git_segment(p)) {
    return fail(Errc::invalid_argument,
                fmt::format("the path '{}' is inside .git: a deploy sends source files, never a "
                            "repository's internals",
                            p));
  }
  if (p == kManifestName) {
    return fail(Errc::invalid_argument, fmt::format("'{}' is reserved for the deploy's manifest", p));
  }
  return std::string(p);
}

Result<Digest> digest_folder(const fs::path& dir, const IgnoreOptions& ignore, const fs::path& index_file) {
  BOOST_OUTCOME_TRY(tree, list_source_files(dir, ignore));
  Digest out;
  for (const auto& s : tree.skipped) out.warnings.push_back(fmt::format("skipped {}: the folder cannot be read", s));
  sync::FileIndex index(index_file);
  out.files.resize(tree.files.size());
  std::vector<std::size_t> unknown;  // files the index has no MD5 for
  for (std::size_t i = 0; i < tree.files.size(); ++i) {
    const SourceFile& f = tree.files[i];
    Entry& e = out.files[i];
    e.path = f.path;
    e.size = f.size;
    e.exec = (f.mode & 0100) != 0;
    auto known = index.find(f.path);
    if (known && known->size == f.size && known->mtime_ns == f.mtime_ns && is_md5(known->md5)) {
      e.md5 = known->md5;
    } else {
      unknown.push_back(i);
    }
  }
  // The files the index does not know, hashed a few at a time.
  std::atomic<std::size_t> next{0};
  std::mutex mu;
  std::optional<Error> first_error;
  auto work = [&] {
    for (std::size_t n; (n = next++) < unknown.size();) {
      const std::size_t i = unknown[n];
      auto md5 = sync::file_md5(dir / out.files[i].path);
      if (md5.has_error()) {
        std::lock_guard lock(mu);
        if (!first_error) first_error = md5.error();
        continue;
      }
      out.files[i].md5 = md5.value();
      index.put(out.files[i].path, {tree.files[i].size, tree.files[i].mtime_ns, md5.value(), ""});
    }
  };
  const int threads = static_cast<int>(std::min<std::size_t>(unknown.size() / 8 + 1, kHashThreads));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (first_error) return outcome::failure(*first_error);
  std::set<std::string> present;
  for (const auto& f : tree.files) present.insert(f.path);
  index.retain([&](const std::string& p) { return present.contains(p); });
  index.save();
  return out;
}

std::string list_json(const std::vector<Entry>& files) {
  json list = json::array();
  for (const auto& e : files) list.push_back({e.path, e.size, e.md5, e.exec});
  return json{{"version", 1}, {"files", std::move(list)}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::vector<Entry>> parse_list(std::string_view text, const Limits& limits) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return fail(Errc::invalid_argument, "the file list is not a JSON object {\"version\": 1, \"files\": [...]}");
  }
  auto v = doc.find("version");
  if (v == doc.end() || !v->is_number_integer() || v->get<std::int64_t>() != 1) {
    return fail(Errc::invalid_argument, "the file list's \"version\" must be 1 (a newer client? update the server)");
  }
  auto files = doc.find("files");
  if (files == doc.end() || !files->is_array()) {
    return fail(Errc::invalid_argument, "the file list needs \"files\": [[path, size, md5, exec], ...]");
  }
  if (files->size() > limits.max_files) {
    return fail(Errc::too_large, fmt::format("the file list has {} files, more than the {} a deploy takes",
                                             files->size(), limits.max_files));
  }
  std::vector<Entry> out;
  out.reserve(files->size());
  std::set<std::string> seen;
  for (const auto& item : *files) {
    if (!item.is_array() || item.size() != 4 || !item[0].is_string() || !item[1].is_number_unsigned() ||
        !item[2].is_string() || !item[3].is_boolean()) {
      return fail(Errc::invalid_argument,
                  "each entry of \"files\" must be [path (string), size (number), md5 (hex string), exec (bool)]");
    }
    BOOST_OUTCOME_TRY(path, check_path(item[0].get<std::string>(), limits));
    std::string md5 = item[2].get<std::string>();
    if (!is_md5(md5)) {
      return fail(Errc::invalid_argument, fmt::format("the MD5 of '{}' is not 32 lowercase hex digits", path));
    }
    if (!seen.insert(path).second) {
      return fail(Errc::invalid_argument, fmt::format("'{}' is listed twice", path));
    }
    out.push_back(Entry{std::move(path), item[1].get<std::uint64_t>(), std::move(md5), item[3].get<bool>()});
  }
  return out;
}

Result<Package> read_package(std::string_view body, const Limits& limits) {
  if (body.empty()) return Package{};  // an empty source
  ReadArchive a(archive_read_new(), archive_read_free);
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_gzip(a.get());
  if (archive_read_open_memory(a.get(), body.data(), body.size()) != ARCHIVE_OK) {
    return fail(Errc::invalid_argument,
                fmt::format("the body is not a tar (plain or gzip): {}", archive_error(a.get())));
  }
  Package out;
  std::set<std::string> seen;
  bool first = true;
  for (;;) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      return fail(Errc::invalid_argument,
                  fmt::format("the tar cannot be read after {} files: {}", out.files.size(), archive_error(a.get())));
    }
    const bool was_first = first;
    first = false;
    const char* name = archive_entry_pathname_utf8(e);
    if (!name) name = archive_entry_pathname(e);
    if (!name) return fail(Errc::invalid_argument, "a tar member has no name (or one that is not UTF-8)");
    std::string_view raw(name);
    const auto type = archive_entry_filetype(e);
    std::string_view trimmed = raw;
    while (trimmed.starts_with("./")) trimmed.remove_prefix(2);
    if (type == AE_IFDIR) {
      if (trimmed.empty() || trimmed == ".") continue;
      if (trimmed.ends_with('/')) trimmed.remove_suffix(1);
      BOOST_OUTCOME_TRY(check_path(trimmed, limits));  // refuse .git/ and ../ folders too
      continue;  // folders come with their files
    }
    if (type != AE_IFREG) {
      const char* what = type == AE_IFLNK ? "a symlink" : "not a regular file (a device, FIFO or socket)";
      if (archive_entry_hardlink(e)) what = "a hard link";
      return fail(Errc::invalid_argument,
                  fmt::format("'{}' in the tar is {}: a deploy takes regular files only", raw, what));
    }
    if (archive_entry_hardlink(e)) {
      return fail(Errc::invalid_argument,
                  fmt::format("'{}' in the tar is a hard link: a deploy takes regular files only", raw));
    }
    const bool manifest = trimmed == kManifestName;
    if (manifest && !was_first) {
      return fail(Errc::invalid_argument, fmt::format("{} must be the tar's first member", kManifestName));
    }
    std::string path;
    if (!manifest) {
      BOOST_OUTCOME_TRY(p, check_path(raw, limits));
      path = std::move(p);
      if (!seen.insert(path).second) {
        return fail(Errc::invalid_argument, fmt::format("'{}' is in the tar twice", path));
      }
      if (out.files.size() >= limits.max_files) {
        return fail(Errc::too_large,
                    fmt::format("the tar has more than {} files, the most a deploy takes", limits.max_files));
      }
    }
    const la_int64_t declared = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    const std::uint64_t cap = manifest ? kMaxManifestBytes : limits.max_bytes - std::min(limits.max_bytes, out.bytes);
    if (declared < 0 || static_cast<std::uint64_t>(declared) > cap) {
      return fail(Errc::too_large,
                  manifest ? fmt::format("the manifest is larger than {} bytes", kMaxManifestBytes)
                           : fmt::format("'{}' ({} bytes) takes the deploy over its limit of {} bytes unpacked; "
                                         "add big files to .ckignore or raise gateway.max_body on the server",
                                         path, declared, limits.max_bytes));
    }
    std::string data;
    data.reserve(static_cast<std::size_t>(declared));
    char buf[64 * 1024];
    for (;;) {
      la_ssize_t n = archive_read_data(a.get(), buf, sizeof buf);
      if (n == 0) break;
      if (n < 0) {
        return fail(Errc::invalid_argument,
                    fmt::format("'{}' in the tar cannot be read: {}", raw, archive_error(a.get())));
      }
      if (data.size() + static_cast<std::size_t>(n) > cap) {
        return fail(Errc::too_large, fmt::format("'{}' is larger than it says, over the deploy's limit", raw));
      }
      data.append(buf, static_cast<std::size_t>(n));
    }
    if (manifest) {
      BOOST_OUTCOME_TRY(list, parse_list(data, limits));
      out.has_manifest = true;
      out.manifest = std::move(list);
      continue;
    }
    out.bytes += data.size();
    std::string md5 = sync::md5_hex(data);
    out.files.push_back(IncomingFile{std::move(path), std::move(data), (archive_entry_perm(e) & 0100) != 0, std::move(md5)});
  }
  return out;
}

namespace {

// Refuses a list in which one path is both a file and a folder ("a" and "a/b").
Result<void> check_shapes(const std::vector<const std::string*>& paths) {
  std::set<std::string_view> all;
  for (const auto* p : paths) all.insert(*p);
  for (const auto* p : paths) {
    for (auto slash = p->find('/'); slash != std::string::npos; slash = p->find('/', slash + 1)) {
      std::string_view parent(p->data(), slash);
      if (all.contains(parent)) {
        return fail(Errc::invalid_argument,
                    fmt::format("'{}' is both a file and the folder of '{}'", parent, *p));
      }
    }
  }
  return outcome::success();
}

}  // namespace

Result<Plan> plan(const Package& package, const std::vector<Entry>& current) {
  std::unordered_map<std::string_view, const Entry*> now;
  for (const auto& e : current) now.emplace(e.path, &e);
  std::unordered_map<std::string_view, std::size_t> sent;
  for (std::size_t i = 0; i < package.files.size(); ++i) sent.emplace(package.files[i].path, i);

  Plan out;
  std::vector<const std::string*> shapes;
  std::set<std::string_view> wanted;
  auto consider = [&](std::size_t i) {
    const IncomingFile& f = package.files[i];
    auto it = now.find(f.path);
    if (it != now.end() && it->second->size == f.data.size() && it->second->exec == f.exec &&
        it->second->md5 == f.md5) {
      ++out.unchanged;  // the same bytes: leave the file (and the app) alone
      return;
    }
    out.write.push_back(i);
    out.write_bytes += f.data.size();
  };
  if (package.has_manifest) {
    std::vector<std::string> stale;
    for (const auto& m : package.manifest) {
      shapes.push_back(&m.path);
      wanted.insert(m.path);
      if (auto s = sent.find(m.path); s != sent.end()) {
        const IncomingFile& f = package.files[s->second];
        if (f.data.size() != m.size || f.md5 != m.md5) {
          return fail(Errc::invalid_argument,
                      fmt::format("'{}' in the tar does not match its manifest entry (size or MD5)", m.path));
        }
        consider(s->second);
        continue;
      }
      auto it = now.find(m.path);
      if (it == now.end() || it->second->size != m.size || it->second->md5 != m.md5 || it->second->exec != m.exec) {
        stale.push_back(m.path);
        continue;
      }
      ++out.unchanged;
    }
    for (const auto& f : package.files) {
      if (!wanted.contains(f.path)) {
        return fail(Errc::invalid_argument, fmt::format("'{}' is in the tar but not in its manifest", f.path));
      }
    }
    if (!stale.empty()) {
      return fail(Errc::conflict,
                  fmt::format("{} file{} changed on the server since the client listed them (first: '{}'); "
                              "nothing was changed: deploy again",
                              stale.size(), stale.size() == 1 ? "" : "s", stale.front()));
    }
  } else {
    for (std::size_t i = 0; i < package.files.size(); ++i) {
      shapes.push_back(&package.files[i].path);
      wanted.insert(package.files[i].path);
      consider(i);
    }
  }
  BOOST_OUTCOME_TRY(check_shapes(shapes));
  for (const auto& e : current) {
    if (!wanted.contains(e.path)) out.remove.push_back(e.path);
  }
  return out;
}

std::vector<std::string> differing(const std::vector<Entry>& local, const std::vector<Entry>& remote) {
  std::unordered_map<std::string_view, const Entry*> there;
  for (const auto& e : remote) there.emplace(e.path, &e);
  std::vector<std::string> out;
  for (const auto& e : local) {
    auto it = there.find(e.path);
    if (it == there.end() || !(*it->second == e)) out.push_back(e.path);
  }
  return out;
}

Result<std::vector<std::vector<std::string>>> split_parts(const std::vector<Entry>& manifest,
                                                          const std::vector<std::string>& send,
                                                          std::uint64_t limit, std::uint64_t manifest_bytes) {
  // What a member costs in the tar: a pax extended header and a ustar header (512 bytes each,
  // the pax records one more block or more for a long path), the data rounded up to 512.
  auto cost = [](const std::string& path, std::uint64_t size) {
    return 3 * 512 + (path.size() / 512) * 512 + (size + 511) / 512 * 512;
  };
  std::unordered_map<std::string_view, std::uint64_t> sizes;
  for (const auto& e : manifest) sizes.emplace(e.path, e.size);
  std::vector<std::vector<std::string>> parts(1);
  std::uint64_t used = 0;
  for (const auto& path : send) {
    auto it = sizes.find(path);
    const std::uint64_t size = it == sizes.end() ? 0 : it->second;
    const std::uint64_t c = cost(path, size);
    if (c + 1024 > limit) {
      return fail(Errc::too_large,
                  fmt::format("'{}' is {}, more than the {} bytes the server takes in one request; add it to "
                              ".ckignore or raise gateway.max_body on the server",
                              path, size, limit));
    }
    if (used + c + 1024 > limit && !parts.back().empty()) {
      parts.emplace_back();
      used = 0;
    }
    parts.back().push_back(path);
    used += c;
  }
  // The manifest goes with the last part: a part of its own when it does not fit beside it.
  if (used + cost(std::string(kManifestName), manifest_bytes) + 1024 > limit && !parts.back().empty()) {
    parts.emplace_back();
  }
  return parts;
}

Result<std::string> build_package(const fs::path& dir, std::vector<Entry>& manifest,
                                  const std::vector<std::string>& send, bool with_manifest) {
  std::unordered_map<std::string_view, Entry*> by_path;
  for (auto& e : manifest) by_path.emplace(e.path, &e);
  // The files first: a file changed since it was listed goes in the manifest as it is now.
  std::vector<std::pair<const Entry*, std::string>> bodies;
  bodies.reserve(send.size());
  for (const auto& path : send) {
    auto it = by_path.find(path);
    if (it == by_path.end()) return fail(Errc::invalid_argument, fmt::format("'{}' is not in the manifest", path));
    auto data = read_file(dir / path);
    if (!data) return fail(Errc::io, fmt::format("cannot read {}: it changed or vanished while it was sent; deploy again",
                                                 (dir / path).string()));
    Entry& e = *it->second;
    e.size = data->size();
    e.md5 = sync::md5_hex(*data);
    bodies.emplace_back(&e, std::move(*data));
  }
  std::string out;
  WriteArchive a(archive_write_new(), archive_write_free);
  archive_write_set_format_pax_restricted(a.get());
  archive_write_set_bytes_in_last_block(a.get(), 1);
  auto on_write = [](archive*, void* self, const void* buf, size_t n) -> la_ssize_t {
    static_cast<std::string*>(self)->append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  };
  if (archive_write_open(a.get(), &out, nullptr, on_write, nullptr) != ARCHIVE_OK) {
    return fail(Errc::io, "cannot start the tar: " + archive_error(a.get()));
  }
  auto add = [&](std::string_view name, std::string_view data, bool exec) -> Result<void> {
    ArchiveEntry e(archive_entry_new(), archive_entry_free);
    archive_entry_set_pathname_utf8(e.get(), std::string(name).c_str());
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), exec ? 0755 : 0644);
    archive_entry_set_size(e.get(), static_cast<la_int64_t>(data.size()));
    if (archive_write_header(a.get(), e.get()) < ARCHIVE_WARN ||
        (!data.empty() && archive_write_data(a.get(), data.data(), data.size()) < 0)) {
      return fail(Errc::io, fmt::format("cannot add '{}' to the tar: {}", name, archive_error(a.get())));
    }
    return outcome::success();
  };
  if (with_manifest) {
    BOOST_OUTCOME_TRY(add(kManifestName, list_json(manifest), false));
  }
  for (const auto& [e, data] : bodies) {
    BOOST_OUTCOME_TRY(add(e->path, data, e->exec));
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) return fail(Errc::io, "cannot end the tar: " + archive_error(a.get()));
  return out;
}

}  // namespace ck::deploy
