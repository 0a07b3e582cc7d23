#include "storage/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "core/beneath.h"
#include "core/unique_fd.h"
#include "storage/s3/sigv4.h"

namespace ck::files {
namespace {

// Every write and delete of the files API in this process, so a precondition checked is still
// true at the rename (writers outside CloudyKnight are not held by it).
std::mutex& write_lock() {
  static std::mutex mu;
  return mu;
}

// Closes a descriptor at scope exit.
using Fd = UniqueFd;

std::int64_t mtime_ms_of(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

// The error for a failed open/stat of `rel` (errno `e`).
Error open_error(const std::string& rel, int e) {
  if (e == ENOENT || e == ENOTDIR) {
    return make_error(Errc::not_found, fmt::format("there is no file or folder '{}'", rel));
  }
  if (e == ELOOP || e == EXDEV) {
    return make_error(Errc::forbidden,
                      fmt::format("'{}' is or goes through a symlink (or a mount point); the "
                                  "files API does not follow them",
                                  rel));
  }
  if (e == ENAMETOOLONG) {
    return make_error(Errc::invalid_argument, fmt::format("a name in '{}' is too long", rel));
  }
  return make_error(Errc::io, fmt::format("cannot open '{}': {}", rel, std::strerror(e)));
}

// Reads a whole open file of `size` bytes.
Result<std::string> read_all(int fd, std::uint64_t size, const std::string& rel) {
  std::string out;
  out.resize(size);
  std::size_t got = 0;
  for (;;) {
    if (got == out.size()) out.resize(out.size() + 64 * 1024);  // grew since fstat
    ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return fail(Errc::io, fmt::format("cannot read '{}': {}", rel, std::strerror(errno)));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
  return out;
}

// Writes all of `data`.
bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// `rel` split into its parent segments and its last name.
std::pair<std::vector<std::string>, std::string> split(const std::string& rel) {
  std::vector<std::string> parts;
  std::string_view rest(rel);
  while (true) {
    auto slash = rest.find('/');
    parts.emplace_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  std::string leaf = std::move(parts.back());
  parts.pop_back();
  return {std::move(parts), std::move(leaf)};
}

// Opens the folder of `parents` beneath `root_fd`, one segment at a time (each refused if it is
// a symlink), creating missing ones when `create`. nullopt fd (not an error) when a segment is
// missing and `create` is false.
Result<std::optional<Fd>> open_parent(int root_fd, const std::vector<std::string>& parents,
                                      bool create, const std::string& rel) {
  Fd dir(open_beneath(root_fd, ""));
  if (dir.get() < 0) return outcome::failure(open_error(".", errno));
  std::string walked;
  for (const auto& seg : parents) {
    walked += (walked.empty() ? "" : "/") + seg;
    int next = open_beneath(dir.get(), seg);
    if (next < 0 && errno == ENOENT) {
      if (!create) return std::optional<Fd>();
      if (::mkdirat(dir.get(), seg.c_str(), 0755) != 0 && errno != EEXIST) {
        return fail(Errc::io,
                    fmt::format("cannot create the folder '{}': {}", walked, std::strerror(errno)));
      }
      next = open_beneath(dir.get(), seg);
    }
    if (next < 0) return outcome::failure(open_error(walked, errno));
    Fd opened(next);
    struct stat st {};
    if (::fstat(opened.get(), &st) != 0) return outcome::failure(open_error(walked, errno));
    if (!S_ISDIR(st.st_mode)) {
      return fail(Errc::conflict,
                  fmt::format("'{}' is a file, so '{}' cannot be below it", walked, rel));
    }
    dir = std::move(opened);
  }
  return std::optional<Fd>(std::move(dir));
}

// What is at `leaf` in the folder `dir_fd` (without following a symlink).
struct Current {
  bool exists = false;
  bool dir = false;
  mode_t mode = 0644;
  std::optional<uid_t> uid;  // a regular file's owner, kept by a replace
  gid_t gid = 0;
  std::optional<std::string> etag;  // a regular file's
};

// A regular file's ETag is read only when `want_etag` (a condition to check): a plain write
// or delete does not read the old bytes.
Result<Current> current_at(int dir_fd, const std::string& leaf, const std::string& rel, bool want_etag) {
  Current cur;
  struct stat st {};
  if (::fstatat(dir_fd, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return cur;
    return outcome::failure(open_error(rel, errno));
  }
  cur.exists = true;
  if (S_ISLNK(st.st_mode)) {
    return fail(Errc::forbidden,
                fmt::format("'{}' is a symlink; the files API neither follows nor replaces "
                            "symlinks (change it in the workspace itself)",
                            rel));
  }
  if (S_ISDIR(st.st_mode)) {
    cur.dir = true;
    return cur;
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(Errc::forbidden, fmt::format("'{}' is not a regular file", rel));
  }
  cur.mode = st.st_mode & 0777;
  cur.uid = st.st_uid;
  cur.gid = st.st_gid;
  if (!want_etag) return cur;
  Fd fd(::openat(dir_fd, leaf.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) return outcome::failure(open_error(rel, errno));
  BOOST_OUTCOME_TRY(body, read_all(fd.get(), static_cast<std::uint64_t>(st.st_size), rel));
  cur.etag = content_etag(body);
  return cur;
}

// The conditions against what is there now; precondition_failed with `current_etag` set.
Result<void> check_conditions(const Conditions& when, const Current& cur, const std::string& rel,
                              std::string* current_etag) {
  auto failed = [&](std::string message) {
    if (current_etag) *current_etag = cur.etag.value_or("");
    return fail(Errc::precondition_failed, std::move(message));
  };
  if (when.if_none_match_any && cur.exists) {
    return failed(fmt::format("'{}' exists already (If-None-Match: * creates only)", rel));
  }
  if (when.if_match) {
    if (!cur.exists) {
      return failed(fmt::format("'{}' does not exist, so If-Match cannot match", rel));
    }
    if (!if_match_allows(*when.if_match, cur.dir ? std::optional<std::string>("") : cur.etag)) {
      return failed(fmt::format(
          "'{}' changed since you read it: its ETag is now {} (If-Match was {}); read it again, "
          "merge, and send the new ETag",
          rel, cur.etag.value_or("(a folder)"), *when.if_match));
    }
  }
  return outcome::success();
}

std::string temp_name() {
  unsigned char bytes[8];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    static std::atomic<unsigned> counter{0};
    unsigned v = counter.fetch_add(1) ^ static_cast<unsigned>(::getpid());
    std::memcpy(bytes, &v, sizeof v);
  }
  std::string out = ".ck-write-";
  for (unsigned char b : bytes) out += fmt::format("{:02x}", b);
  return out + ".tmp";
}

}  // namespace

std::string content_etag(std::string_view bytes) { return "\"" + s3::sha256_hex(bytes) + "\""; }

bool if_match_allows(std::string_view header, const std::optional<std::string>& etag) {
  if (!etag) return false;
  auto trim = [](std::string_view t) {
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    return t;
  };
  while (true) {
    auto comma = header.find(',');
    auto tag = trim(header.substr(0, comma));
    if (tag == "*") return true;
    if (!tag.empty() && !tag.starts_with("W/") && !etag->empty() && tag == *etag) return true;
    if (comma == std::string_view::npos) return false;
    header.remove_prefix(comma + 1);
  }
}

Result<Found> read(int root_fd, const std::string& rel, std::uint64_t max_bytes,
                   std::string_view limit_key) {
  const std::string shown = rel.empty() ? "/" : rel;
  Fd fd(open_beneath(root_fd, rel));
  if (fd.get() < 0) return outcome::failure(open_error(shown, errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return outcome::failure(open_error(shown, errno));
  Found out;
  out.mtime_ms = mtime_ms_of(st);
  if (S_ISREG(st.st_mode)) {
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes) {
      return fail(Errc::too_large,
                  fmt::format("'{}' is {} bytes, more than the {} bytes the files API reads or "
                              "writes ({}); raise {} or read it another way",
                              shown, st.st_size, max_bytes, limit_key, limit_key));
    }
    BOOST_OUTCOME_TRY(body, read_all(fd.get(), static_cast<std::uint64_t>(st.st_size), shown));
    out.etag = content_etag(body);
    out.body = std::move(body);
    return out;
  }
  if (!S_ISDIR(st.st_mode)) {
    return fail(Errc::forbidden, fmt::format("'{}' is not a regular file or a folder", shown));
  }
  out.dir = true;
  int listing_fd = ::dup(fd.get());
  DIR* d = listing_fd >= 0 ? ::fdopendir(listing_fd) : nullptr;
  if (!d) {
    if (listing_fd >= 0) ::close(listing_fd);
    return fail(Errc::io, fmt::format("cannot list '{}': {}", shown, std::strerror(errno)));
  }
  std::uint64_t hashed = 0;
  while (struct dirent* de = ::readdir(d)) {
    std::string_view name = de->d_name;
    if (name == "." || name == "..") continue;
    if (out.entries.size() == kMaxListEntries) {
      out.truncated = true;
      break;
    }
    Entry e;
    e.name = std::string(name);
    struct stat es {};
    if (::fstatat(fd.get(), de->d_name, &es, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
    e.type = S_ISREG(es.st_mode)   ? "file"
             : S_ISDIR(es.st_mode) ? "dir"
             : S_ISLNK(es.st_mode) ? "symlink"
                                   : "other";
    e.size = S_ISDIR(es.st_mode) ? 0 : static_cast<std::uint64_t>(es.st_size);
    e.mtime_ms = mtime_ms_of(es);
    out.entries.push_back(std::move(e));
  }
  ::closedir(d);
  std::sort(out.entries.begin(), out.entries.end(),
            [](const Entry& a, const Entry& b) { return a.name < b.name; });
  for (auto& e : out.entries) {
    if (e.type != "file" || e.size > kListEtagMax || hashed + e.size > kListEtagBudget) continue;
    Fd f(::openat(fd.get(), e.name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (f.get() < 0) continue;
    auto body = read_all(f.get(), e.size, e.name);
    if (body.has_error()) continue;
    hashed += body.value().size();
    e.etag = content_etag(body.value());
  }
  return out;
}

Result<Written> write(int root_fd, const std::string& rel, std::string_view body,
                      const Conditions& when, const Commit& commit, std::string* current_etag,
                      const WriteOptions& options) {
  if (rel.empty()) {
    return fail(Errc::invalid_argument,
                "a file path is needed: PUT .../files/<path>, such as .../files/src/index.js");
  }
  auto [parents, leaf] = split(rel);
  std::lock_guard lock(write_lock());
  BOOST_OUTCOME_TRY(existing, open_parent(root_fd, parents, false, rel));
  Current cur;
  if (existing) {
    BOOST_OUTCOME_TRY(c, current_at(existing->get(), leaf, rel, when.if_match || when.if_none_match_any));
    cur = std::move(c);
  }
  if (cur.dir) {
    return fail(Errc::conflict, fmt::format("'{}' is a folder; a PUT writes files", rel));
  }
  BOOST_OUTCOME_TRY(check_conditions(when, cur, rel, current_etag));
  if (options.mode) cur.mode = static_cast<mode_t>(*options.mode & 0777);  // never setuid, setgid or sticky
  Fd dir;
  if (existing) {
    dir = std::move(*existing);
  } else {
    BOOST_OUTCOME_TRY(made, open_parent(root_fd, parents, true, rel));
    dir = std::move(*made);
  }
  const std::string tmp = temp_name();
  Fd out(::openat(dir.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  cur.mode));
  if (out.get() < 0) {
    return fail(Errc::io, fmt::format("cannot create a temporary file beside '{}': {}", rel,
                                      std::strerror(errno)));
  }
  auto discard = [&](Error e) {
    out.reset();
    ::unlinkat(dir.get(), tmp.c_str(), 0);
    return outcome::failure(std::move(e));
  };
  // The umask may have narrowed the mode given to openat.
  if (::fchmod(out.get(), cur.mode) != 0 || !write_all(out.get(), body) || (options.sync && ::fsync(out.get()) != 0)) {
    return discard(
        make_error(Errc::io, fmt::format("cannot write '{}': {}", rel, std::strerror(errno))));
  }
  // The owner of the file replaced, or of the folder for a new one (a daemon running as root
  // must not hand the user's files to root); best effort: only root may give files away.
  if (cur.uid) {
    (void)::fchown(out.get(), *cur.uid, cur.gid);
  } else if (struct stat ds{}; ::fstat(dir.get(), &ds) == 0) {
    (void)::fchown(out.get(), ds.st_uid, ds.st_gid);
  }
  out.reset();
  if (commit) {
    if (auto c = commit(); c.has_error()) return discard(c.error());
  }
  int rc = cur.exists ? ::renameat(dir.get(), tmp.c_str(), dir.get(), leaf.c_str())
                      : ::renameat2(dir.get(), tmp.c_str(), dir.get(), leaf.c_str(), RENAME_NOREPLACE);
  if (rc != 0) {
    int e = errno;
    if (e == EEXIST) {
      if (current_etag) current_etag->clear();
      return discard(make_error(Errc::precondition_failed,
                                fmt::format("'{}' was created by someone else meanwhile", rel)));
    }
    return discard(
        make_error(Errc::io, fmt::format("cannot put '{}' in place: {}", rel, std::strerror(e))));
  }
  if (options.sync) ::fsync(dir.get());
  return Written{!cur.exists, content_etag(body)};
}

Result<void> remove(int root_fd, const std::string& rel, const Conditions& when,
                    const std::function<Result<void>(bool dir)>& commit,
                    std::string* current_etag) {
  if (rel.empty()) {
    return fail(Errc::invalid_argument,
                "the workspace folder itself cannot be deleted here; DELETE "
                "/monitor/api/v1/workspaces/{name} deletes a workspace");
  }
  auto [parents, leaf] = split(rel);
  std::lock_guard lock(write_lock());
  BOOST_OUTCOME_TRY(dir, open_parent(root_fd, parents, false, rel));
  if (!dir) return fail(Errc::not_found, fmt::format("there is no file or folder '{}'", rel));
  BOOST_OUTCOME_TRY(cur, current_at(dir->get(), leaf, rel, when.if_match || when.if_none_match_any));
  if (!cur.exists)
    return fail(Errc::not_found, fmt::format("there is no file or folder '{}'", rel));
  BOOST_OUTCOME_TRY(check_conditions(when, cur, rel, current_etag));
  if (cur.dir) {
    // Refuse a folder with entries before telling storage anything.
    Fd probe(open_beneath(dir->get(), leaf));
    if (probe.get() < 0) return outcome::failure(open_error(rel, errno));
    DIR* d = ::fdopendir(probe.get());
    if (!d) return fail(Errc::io, fmt::format("cannot list '{}': {}", rel, std::strerror(errno)));
    probe.release();  // owned by d
    bool empty = true;
    while (struct dirent* de = ::readdir(d)) {
      std::string_view n = de->d_name;
      if (n != "." && n != "..") {
        empty = false;
        break;
      }
    }
    ::closedir(d);
    if (!empty) {
      return fail(Errc::conflict,
                  fmt::format("the folder '{}' is not empty; delete its files first", rel));
    }
  }
  if (commit) {
    BOOST_OUTCOME_TRY(commit(cur.dir));
  }
  if (::unlinkat(dir->get(), leaf.c_str(), cur.dir ? AT_REMOVEDIR : 0) != 0) {
    if (errno == ENOENT)
      return fail(Errc::not_found, fmt::format("there is no file or folder '{}'", rel));
    if (errno == ENOTEMPTY || errno == EEXIST) {
      return fail(Errc::conflict,
                  fmt::format("the folder '{}' is not empty; delete its files first", rel));
    }
    return fail(Errc::io, fmt::format("cannot delete '{}': {}", rel, std::strerror(errno)));
  }
  ::fsync(dir->get());
  return outcome::success();
}

}  // namespace ck::files
