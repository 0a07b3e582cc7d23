#pragma once
// A local index of files' digests: (size, mtime, MD5, ETag) per relative path, kept in a JSON
// file so that a file whose size and mtime did not change is never read again. The sync engine
// keeps one per (bucket, prefix, folder); deploy keeps one per folder it sends or receives.
// Thread-safe. A missing or corrupt file starts an empty index; save() writes a temporary file
// and renames it, so a crash never leaves half an index.

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace ck::sync {

struct IndexEntry {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::string md5;   // hex; empty if unknown
  std::string etag;  // the object's ETag when this file last matched it ("" for deploy)
};

class FileIndex {
 public:
  /// Reads `file` ("" = an index kept in memory only).
  explicit FileIndex(std::filesystem::path file);

  std::optional<IndexEntry> find(const std::string& path) const;
  void put(const std::string& path, IndexEntry e);
  void erase(const std::string& path);

  /// Keeps only the paths `keep` says yes to.
  template <class Pred>
  void retain(Pred keep) {
    std::lock_guard lock(mu_);
    if (std::erase_if(entries_, [&](const auto& kv) { return !keep(kv.first); }) > 0) dirty_ = true;
  }

  /// Multipart uploads the sync engine started from this folder that have not ended (completed
  /// or aborted): a push killed mid-upload leaves its id here, and the next run aborts it.
  struct UploadEntry {
    std::string key;
    std::int64_t started_ms = 0;
  };
  /// Records an upload and saves the index at once (the process may be killed before it ends).
  void add_upload(const std::string& key, const std::string& id);
  void remove_upload(const std::string& id);
  std::map<std::string, UploadEntry> uploads() const;  // by upload id

  /// Written only when something changed since it was read. A failed write is ignored: the
  /// index is an optimisation, and costs a rehash later. Safe from several threads at once.
  void save() const;

 private:
  std::filesystem::path file_;
  mutable std::mutex mu_;
  mutable std::mutex save_mu_;  // one writer of the file at a time
  std::map<std::string, IndexEntry> entries_;
  std::map<std::string, UploadEntry> uploads_;
  bool dirty_ = false;
};

}  // namespace ck::sync
