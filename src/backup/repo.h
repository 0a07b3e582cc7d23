#pragma once
// One open incremental repository (README.md "Format"): the S3 client of a destination, its
// keys when encrypted, the object names, sealed reads and writes, and the blob index (which
// blob ids exist and where), loaded from P/index/ through the local cache. Internal to the
// backup module; one Repo per call, used from the calling thread (the client is thread-safe,
// so workers may share client() and the const accessors).

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "backup/backup.h"
#include "backup/crypto.h"
#include "backup/format.h"
#include "storage/s3/client.h"

namespace ck::backup {

/// Where one blob is: a range of a pack, or its own object (pack empty).
struct BlobLocation {
  std::string pack;
  std::uint64_t offset = 0, length = 0, size = 0;
};

class Repo {
 public:
  /// Opens the repository at the destination. `create`: writes ck-backup.json if absent (with
  /// encryption when dest.encrypt). Without `create` a missing repository is `not_found`.
  /// Wrong or missing key: a clear error naming the destination.
  static Result<std::unique_ptr<Repo>> open(const Destination& dest, const RepoOptions& opts,
                                            bool create);

  const Destination& dest() const { return dest_; }
  s3::Client& client() const { return *client_; }
  const Keys* keys() const { return keys_ ? &*keys_ : nullptr; }
  const RepoConfig& config() const { return config_; }
  /// The per-destination cache folder (created).
  const std::filesystem::path& cache() const { return cache_; }

  /// "P/rel" (or "rel" with an empty prefix).
  std::string key(std::string_view rel) const;
  std::string pack_key(std::string_view id) const { return key("packs/" + std::string(id)); }
  std::string blob_key(std::string_view id) const { return key("blobs/" + std::string(id)); }
  std::string snapshots_prefix(std::string_view workspace) const;

  std::string seal_if(std::string_view plain) const;
  Result<std::string> unseal_if(std::string_view stored, std::string_view what) const;
  /// GET + unseal; PUT of the sealed form.
  Result<std::string> get_doc(const std::string& key) const;
  Result<void> put_doc(const std::string& key, std::string_view plain) const;

  /// Lists P/index/ and loads every index object (new ones by GET, known ones from the cache;
  /// cache entries whose object is gone are dropped).
  Result<void> load_index();
  const std::unordered_map<std::string, BlobLocation>& blobs() const { return blobs_; }
  const std::vector<std::string>& index_keys() const { return index_keys_; }
  const std::vector<Index>& indexes() const { return indexes_; }
  /// Writes a new index object P/index/<hex16>.json and remembers it in the cache.
  Result<std::string> write_index(const Index& index);

  /// The snapshot object keys of one workspace ("" = all), sorted (= by time per workspace).
  Result<std::vector<std::string>> snapshot_keys(const std::string& workspace) const;
  Result<Snapshot> load_snapshot(const std::string& key) const;

 private:
  Repo() = default;
  Destination dest_;
  std::unique_ptr<s3::Client> client_;
  std::optional<Keys> keys_;
  RepoConfig config_;
  std::filesystem::path cache_;
  std::unordered_map<std::string, BlobLocation> blobs_;
  std::vector<std::string> index_keys_;
  std::vector<Index> indexes_;
};

/// Writes `data` to `file` through a temporary file and a rename.
Result<void> write_file_atomic(const std::filesystem::path& file, std::string_view data);

/// Emits progress when the options have a callback.
void report_progress(const RepoOptions& opts, Progress p);

}  // namespace ck::backup
