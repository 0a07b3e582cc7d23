#pragma once
// Deploying a folder to a server (`cloudyknight deploy`, issue 18 part 3): what both ends of
// PUT /monitor/api/v1/workspaces/{name}/source share. Pure logic and plain file reads; no HTTP.
//
// The protocol: the client lists the folder's source (the same ignore rules as `ws upload`) as
// (path, size, MD5, executable) entries, asks the server for its own list (GET .../source),
// and sends a tar whose first member, kManifestName, is the whole new list, followed by the
// files that differ. The server checks that every file the tar leaves out is still what the
// manifest says, writes the files that came, and deletes the source files the manifest lacks.
// A tar without a manifest is the whole source (`curl -T app.tar`). Files the ignore rules
// skip (node_modules, .env, .git) are neither sent nor deleted.
//
// Everything from the network has a limit: bytes unpacked, files, path length. Paths follow
// the S3 key rules (sync::safe_relative_path) plus: no ".git" segment, no control characters;
// a leading "./" is dropped. Only regular files and folders may be in the tar.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "storage/ignore.h"

namespace ck::deploy {

/// The manifest's name in the tar (reserved: no workspace file may have it).
inline constexpr std::string_view kManifestName = ".cloudyknight-deploy.json";

/// One source file.
struct Entry {
  std::string path;  // relative, '/'-separated
  std::uint64_t size = 0;
  std::string md5;  // lowercase hex
  bool exec = false;  // the owner may execute it (written 0755, else 0644)
  bool operator==(const Entry&) const = default;
};

struct Limits {
  std::uint64_t max_bytes = 64ull << 20;  // file bytes unpacked from one tar
  std::size_t max_files = 100000;         // entries in a tar or a list
  std::size_t max_path = 4096;            // bytes of one path
};

/// A folder's source, sorted by path.
struct Digest {
  std::vector<Entry> files;
  std::vector<std::string> warnings;  // folders that could not be read
};

/// Lists `dir`'s source files and their MD5s. `index_file` ("" = none) remembers the MD5 of
/// each (path, size, mtime), so an unchanged file is not read again.
Result<Digest> digest_folder(const std::filesystem::path& dir, const IgnoreOptions& ignore,
                             const std::filesystem::path& index_file);

/// {"version": 1, "files": [[path, size, md5, exec], ...]}: the list's wire form.
std::string list_json(const std::vector<Entry>& files);
/// Parses list_json()'s form; every path is checked. Errors: invalid_argument, too_large.
Result<std::vector<Entry>> parse_list(std::string_view text, const Limits& limits);

/// The path as a workspace file may be named ("./a/b" gives "a/b"), or why not.
Result<std::string> check_path(std::string_view raw, const Limits& limits);

struct IncomingFile {
  std::string path;
  std::string data;
  bool exec = false;
  std::string md5;  // of data, hex
};

/// A tar as received.
struct Package {
  bool has_manifest = false;
  std::vector<Entry> manifest;      // with has_manifest
  std::vector<IncomingFile> files;  // in tar order
  std::uint64_t bytes = 0;          // file bytes unpacked
};

/// Reads a tar (plain or gzip) from memory. Errors: invalid_argument (not a tar, a bad path, a
/// symlink or device, a file twice, a manifest not first or malformed) and too_large (over
/// `limits`), each naming the member.
Result<Package> read_package(std::string_view body, const Limits& limits);

/// What a package does to a folder whose source is `current`.
struct Plan {
  std::vector<std::size_t> write;   // indexes into Package::files that differ from current
  std::vector<std::string> remove;  // source files the new source lacks
  std::size_t unchanged = 0;        // files kept as they are
  std::uint64_t write_bytes = 0;
};

/// Errors: invalid_argument when a sent file does not match its manifest entry or one path is
/// both a file and a folder; conflict when a file the tar leaves out is not on the server as
/// the manifest says (it changed since the client listed it: deploy again).
Result<Plan> plan(const Package& package, const std::vector<Entry>& current);

/// The tar a client sends: the manifest (`manifest`, which gets the size and MD5 of each file
/// as it is read now; left out with !with_manifest, for a part) and then the files of `dir`
/// named in `send`. Errors: io.
Result<std::string> build_package(const std::filesystem::path& dir, std::vector<Entry>& manifest,
                                  const std::vector<std::string>& send, bool with_manifest = true);

/// `send` cut into tars of at most `limit` bytes each (tar headers counted), in order; the last
/// part also carries the manifest (`manifest_bytes`). Errors: too_large for a file that alone
/// is over the limit.
Result<std::vector<std::vector<std::string>>> split_parts(const std::vector<Entry>& manifest,
                                                          const std::vector<std::string>& send,
                                                          std::uint64_t limit, std::uint64_t manifest_bytes);

/// The paths of `local` that `remote` lacks or has with another size, MD5 or exec bit.
std::vector<std::string> differing(const std::vector<Entry>& local, const std::vector<Entry>& remote);

}  // namespace ck::deploy
