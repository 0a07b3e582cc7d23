#pragma once
// The JSON documents of a backup repository (README.md "Format"): the repository config
// (ck-backup.json), index objects and snapshots. Pure: parse (untrusted bytes, never throws,
// size-limited) and serialise. Fuzzed by fuzz/fuzz_backup_snapshot.cc.

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backup/crypto.h"
#include "core/error.h"

namespace ck::backup {

inline constexpr std::size_t kMaxRepoConfig = 64 << 10;
inline constexpr std::size_t kMaxIndex = 256ull << 20;
inline constexpr std::size_t kMaxSnapshot = 256ull << 20;
inline constexpr std::size_t kMaxFilesPerSnapshot = 2'000'000;
/// No packed blob reaches past this offset (packs are written at ~16 MiB plus one blob < 1 MiB),
/// so what a restore or check reads from one pack is bounded whatever the object's size.
inline constexpr std::uint64_t kMaxPackBytes = 64ull << 20;

struct RepoConfig {
  int version = 1;
  std::string id;  // 16 hex digits
  bool encrypted = false;
  KdfParams kdf;      // encrypted only
  std::string check;  // encrypted only: seal() of 32 zero bytes... (raw sealed bytes)
};

Result<RepoConfig> parse_repo_config(std::string_view json);
std::string repo_config_json(const RepoConfig& c);

struct SnapshotFile {
  std::string path;  // relative, '/'-separated (checked by restore, not here)
  std::uint64_t size = 0;
  std::uint32_t mode = 0644;
  std::int64_t mtime_ns = 0;
  std::string blob;  // blob id (64 hex)
};

struct Snapshot {
  std::string id;  // snapshot_id()
  std::string workspace;
  std::time_t time = 0;  // UTC
  std::string host;
  std::vector<SnapshotFile> files;  // sorted by path
  std::uint64_t bytes = 0, added_bytes = 0, added_objects = 0;
};

Result<Snapshot> parse_snapshot(std::string_view json);
std::string snapshot_json(const Snapshot& s);

struct IndexBlob {
  std::string id;
  std::uint64_t offset = 0;  // in the pack
  std::uint64_t length = 0;  // stored bytes (sealed when encrypted)
  std::uint64_t size = 0;    // plaintext bytes
};
struct IndexPack {
  std::string pack;  // sha256 of the pack object's bytes
  std::vector<IndexBlob> blobs;
};
struct Index {
  std::vector<IndexPack> packs;
  std::vector<IndexBlob> blobs;  // standalone blobs (P/blobs/<id>): offset 0, the whole object
};

Result<Index> parse_index(std::string_view json);
std::string index_json(const Index& index);

/// 64 lowercase hex digits.
bool is_hex_id(std::string_view s, std::size_t len = 64);
/// "<UTC YYYYmmddTHHMMSSZ>-<hex8>".
bool valid_snapshot_id(std::string_view s);
/// The id of a snapshot taken at `t` (UTC seconds) and `ms` milliseconds: the hex8 part starts
/// with the milliseconds as 3 hex digits (then 5 random ones), so ids sort by time even within
/// one second.
std::string make_snapshot_id(std::time_t t, int ms = 0);
/// "2026-01-15T10:30:00Z" and back.
std::optional<std::time_t> parse_rfc3339(std::string_view s);

}  // namespace ck::backup
