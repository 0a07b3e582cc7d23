#include "backup/repo.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "core/files.h"
#include "core/hash.h"
#include "core/user_dirs.h"

namespace ck::backup {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kCheckPlain = "cloudyknight backup key check v1";

auto key_missing(const Destination& d) {
  return fail(Errc::unauthenticated,
              fmt::format("backup destination {} is encrypted: set backup.key (or CK_BACKUP_KEY) "
                          "to its passphrase",
                          d.name));
}

}  // namespace

std::filesystem::path default_cache_dir() { return user_cache_dir() / "cloudyknight" / "backup"; }

void report_progress(const RepoOptions& opts, Progress p) {
  if (opts.progress) opts.progress(p);
}

Error cancelled_error(const std::string& destination, const std::string& workspace) {
  return Error{Errc::unavailable, fmt::format("the work on workspace {} with destination {} was cancelled (the "
                                              "daemon is stopping); it runs again at its next start",
                                              workspace, destination)};
}

Result<void> write_file_atomic(const fs::path& file, std::string_view data) {
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  fs::path tmp = file;
  tmp += fmt::format(".tmp-{}", ::getpid());
  {
    std::ofstream os(tmp, std::ios::binary | std::ios::trunc);
    os.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!os.flush()) {
      return fail(Errc::io, fmt::format("cannot write {}: {} (is the folder writable?)",
                                        tmp.string(), std::strerror(errno)));
    }
  }
  fs::rename(tmp, file, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return fail(Errc::io, fmt::format("cannot write {}: {}", file.string(), ec.message()));
  }
  return outcome::success();
}

Result<std::unique_ptr<Repo>> Repo::open(const Destination& dest, const RepoOptions& opts,
                                         bool create) {
  std::unique_ptr<Repo> r(new Repo());
  r->dest_ = dest;
  r->client_ = std::make_unique<s3::Client>(dest.client);
  std::string cfg_key = r->key("ck-backup.json");
  auto head = r->client_->head_object(dest.bucket, cfg_key);
  if (!head) {
    return fail(head.error().code, fmt::format("backup destination {} ({}) cannot be read: {}",
                                               dest.name, dest.url(), head.error().message));
  }
  if (!head.value()) {
    if (!create) {
      return fail(Errc::not_found,
                  fmt::format("backup destination {} ({}) holds no backups yet (run `cloudyknight "
                              "backup` first)",
                              dest.name, dest.url()));
    }
    RepoConfig c;
    c.id = to_hex(random_bytes(8));
    if (dest.encrypt) {
      if (opts.key.empty()) return key_missing(dest);
      c.encrypted = true;
      c.kdf.salt = random_bytes(16);
      BOOST_OUTCOME_TRY(keys, derive_keys(opts.key, c.kdf));
      c.check = seal(keys, kCheckPlain);
      r->keys_ = keys;
    }
    auto put =
        r->client_->put_object(dest.bucket, cfg_key, repo_config_json(c), "application/json");
    if (!put) {
      return fail(put.error().code,
                  fmt::format("backup destination {} ({}): cannot create the repository: {}",
                              dest.name, dest.url(), put.error().message));
    }
    r->config_ = c;
  } else {
    auto body = r->client_->get_object(dest.bucket, cfg_key);
    if (!body) {
      return fail(body.error().code, fmt::format("backup destination {} ({}) cannot be read: {}",
                                                 dest.name, dest.url(), body.error().message));
    }
    BOOST_OUTCOME_TRY(c, parse_repo_config(body.value()));
    r->config_ = c;
    if (c.encrypted) {
      if (opts.key.empty()) return key_missing(dest);
      BOOST_OUTCOME_TRY(keys, derive_keys(opts.key, c.kdf));
      auto plain = unseal(keys, c.check, "the key check");
      if (!plain || plain.value() != kCheckPlain) {
        return fail(Errc::unauthenticated,
                    fmt::format("the key does not open backup destination {} ({}): set "
                                "backup.key (or CK_BACKUP_KEY) to the passphrase it was created "
                                "with",
                                dest.name, dest.url()));
      }
      r->keys_ = keys;
    } else if (dest.encrypt) {
      return fail(Errc::conflict,
                  fmt::format("backup destination {} ({}) was created without encryption but is "
                              "configured with encrypt: true; use a new prefix for an encrypted "
                              "repository (or set encrypt: false)",
                              dest.name, dest.url()));
    }
  }
  fs::path base = opts.cache_dir.empty() ? default_cache_dir() : opts.cache_dir;
  r->cache_ = base / stable_hash(fmt::format("{}\n{}\n{}\n{}", dest.client.endpoint, dest.bucket,
                                             dest.prefix, r->config_.id));
  std::error_code ec;
  fs::create_directories(r->cache_ / "index", ec);
  fs::create_directories(r->cache_ / "files", ec);
  return r;
}

std::string Repo::key(std::string_view rel) const {
  return dest_.prefix.empty() ? std::string(rel) : dest_.prefix + "/" + std::string(rel);
}

std::string Repo::snapshots_prefix(std::string_view workspace) const {
  return key("snapshots/" + (workspace.empty() ? std::string() : std::string(workspace) + "/"));
}

std::string Repo::seal_if(std::string_view plain) const {
  return keys_ ? seal(*keys_, plain) : std::string(plain);
}

Result<std::string> Repo::unseal_if(std::string_view stored, std::string_view what) const {
  if (!keys_) return std::string(stored);
  return unseal(*keys_, stored, what);
}

Result<std::string> Repo::get_doc(const std::string& key) const {
  BOOST_OUTCOME_TRY(body, client_->get_object(dest_.bucket, key));
  return unseal_if(body, fmt::format("{} on destination {}", key, dest_.name));
}

Result<void> Repo::put_doc(const std::string& key, std::string_view plain) const {
  BOOST_OUTCOME_TRY(client_->put_object(dest_.bucket, key, seal_if(plain), "application/json"));
  return outcome::success();
}

Result<void> Repo::load_index() {
  blobs_.clear();
  index_keys_.clear();
  indexes_.clear();
  std::string prefix = key("index/");
  BOOST_OUTCOME_TRY(objects, client_->list_objects(dest_.bucket, prefix));
  std::set<std::string> listed;
  for (const auto& o : objects) {
    std::string name = o.key.substr(prefix.size());
    if (name.size() != 21 || !name.ends_with(".json") || !is_hex_id(name.substr(0, 16), 16)) {
      continue;
    }
    listed.insert(name);
    fs::path cached = cache_ / "index" / name;
    // The cached copy when it parses (a damaged cache file is fetched again), else the object.
    std::optional<Index> from_cache;
    if (auto c = read_file(cached)) {
      if (auto parsed = parse_index(*c)) from_cache = std::move(parsed.value());
    }
    Result<Index> idx = from_cache ? Result<Index>(std::move(*from_cache))
                                   : Result<Index>(fail(Errc::internal, ""));
    if (!from_cache) {
      BOOST_OUTCOME_TRY(text, get_doc(o.key));
      idx = parse_index(text);
      if (!idx) {
        return fail(idx.error().code, fmt::format("index object {} on destination {}: {}", o.key,
                                                  dest_.name, idx.error().message));
      }
      (void)write_file_atomic(cached, text);
    }
    for (const auto& p : idx.value().packs) {
      for (const auto& b : p.blobs) blobs_[b.id] = BlobLocation{p.pack, b.offset, b.length, b.size};
    }
    for (const auto& b : idx.value().blobs) {
      blobs_.try_emplace(b.id, BlobLocation{"", 0, b.length, b.size});
    }
    index_keys_.push_back(o.key);
    indexes_.push_back(std::move(idx.value()));
  }
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(cache_ / "index", ec)) {
    if (!listed.contains(e.path().filename().string())) fs::remove(e.path(), ec);
  }
  return outcome::success();
}

Result<std::string> Repo::write_index(const Index& index) {
  std::string name = to_hex(random_bytes(8)) + ".json";
  std::string text = index_json(index);
  std::string k = key("index/" + name);
  BOOST_OUTCOME_TRY(put_doc(k, text));
  (void)write_file_atomic(cache_ / "index" / name, text);
  for (const auto& p : index.packs) {
    for (const auto& b : p.blobs) blobs_[b.id] = BlobLocation{p.pack, b.offset, b.length, b.size};
  }
  for (const auto& b : index.blobs) blobs_.try_emplace(b.id, BlobLocation{"", 0, b.length, b.size});
  index_keys_.push_back(k);
  indexes_.push_back(index);
  return k;
}

Result<std::vector<std::string>> Repo::snapshot_keys(const std::string& workspace) const {
  std::string prefix = snapshots_prefix(workspace);
  BOOST_OUTCOME_TRY(objects, client_->list_objects(dest_.bucket, prefix));
  std::vector<std::string> keys;
  for (const auto& o : objects) {
    std::string_view rest = std::string_view(o.key).substr(prefix.size());
    if (!rest.ends_with(".json")) continue;
    keys.push_back(o.key);
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

Result<Snapshot> Repo::load_snapshot(const std::string& key) const {
  BOOST_OUTCOME_TRY(text, get_doc(key));
  auto s = parse_snapshot(text);
  if (!s) {
    return fail(s.error().code, fmt::format("snapshot {} on destination {}: {}", key, dest_.name,
                                            s.error().message));
  }
  // The object's name must be the id it claims (a renamed or copied snapshot is refused).
  std::string want = s.value().id + ".json";
  if (!key.ends_with("/" + want)) {
    return fail(Errc::invalid_argument,
                fmt::format("snapshot {} on destination {} claims id {}: it was renamed or "
                            "tampered with",
                            key, dest_.name, s.value().id));
  }
  return s;
}

}  // namespace ck::backup
