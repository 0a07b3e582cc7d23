#include "runtime/docker/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <locale.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>

#include "core/unique_fd.h"

namespace ck {
namespace fs = std::filesystem;

namespace {

using WriteArchive = std::unique_ptr<archive, decltype(&archive_write_free)>;
using Entry = std::unique_ptr<archive_entry, decltype(&archive_entry_free)>;
constexpr size_t kChunk = 256 * 1024;

WriteArchive new_writer() {
  WriteArchive a(archive_write_new(), archive_write_free);
  archive_write_set_format_pax_restricted(a.get());
  return a;
}

std::string archive_error(archive* a) {
  const char* s = archive_error_string(a);
  return s ? s : "unknown libarchive error";
}

struct Header {
  std::string path;
  mode_t type = AE_IFREG;
  int perm = 0644;
  int64_t size = 0;
  timespec mtime{};
  std::string symlink;
  const struct stat* owner = nullptr;  // keep these uid/gid (root filesystems); null: root
};

// libarchive converts names from the locale's charset to UTF-8 for pax headers. In the "C"
// locale every non-ASCII name would get a "hdrcharset=BINARY" record (GNU tar warns about it),
// so while a tar is written this thread says names are UTF-8, as they are on Linux in practice.
// Names that are not UTF-8 still go in as raw bytes (libarchive returns ARCHIVE_WARN for them).
class Utf8Names {
 public:
  Utf8Names() {
    static const locale_t utf8 = ::newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t{});
    if (utf8) old_ = ::uselocale(utf8);
  }
  ~Utf8Names() {
    if (old_) ::uselocale(old_);
  }
  Utf8Names(const Utf8Names&) = delete;
  Utf8Names& operator=(const Utf8Names&) = delete;

 private:
  locale_t old_ = locale_t{};
};

// Owners are root unless the caller keeps them (a root filesystem): a build context must not
// depend on the host's uids.
Result<void> write_header(archive* a, const Header& h) {
  Entry e(archive_entry_new(), archive_entry_free);
  archive_entry_copy_pathname(e.get(), h.path.c_str());
  archive_entry_set_filetype(e.get(), h.type);
  archive_entry_set_perm(e.get(), static_cast<mode_t>(h.perm & 07777));
  archive_entry_set_size(e.get(), h.size);
  archive_entry_set_mtime(e.get(), h.mtime.tv_sec, h.mtime.tv_nsec);
  archive_entry_set_uid(e.get(), h.owner ? h.owner->st_uid : 0);
  archive_entry_set_gid(e.get(), h.owner ? h.owner->st_gid : 0);
  if (!h.owner || h.owner->st_uid == 0) archive_entry_copy_uname(e.get(), "root");
  if (!h.owner || h.owner->st_gid == 0) archive_entry_copy_gname(e.get(), "root");
  if (h.type == AE_IFLNK) archive_entry_copy_symlink(e.get(), h.symlink.c_str());
  if (archive_write_header(a, e.get()) < ARCHIVE_WARN) {
    return fail(Errc::io,
                fmt::format("{}: cannot be added to the tar: {}", h.path, archive_error(a)));
  }
  return outcome::success();
}

auto read_error(const fs::path& p, const std::string& why = std::strerror(errno)) {
  return fail(Errc::io, fmt::format("{}: cannot be read: {}", p.string(), why));
}

using Fd = UniqueFd;

struct Walk {
  archive* a;
  const TarFilter& filter;
  const fs::path& out;
  struct stat out_st;
  std::vector<char> buf;
  bool keep_owners = false;
};

Result<void> add_file(Walk& w, const fs::path& full, const std::string& rel,
                      const struct stat& st) {
  Fd f{::open(full.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
  if (f.get() < 0) return read_error(full);
  BOOST_OUTCOME_TRY(
      write_header(w.a, {rel, AE_IFREG, static_cast<int>(st.st_mode), st.st_size, st.st_mtim, {},
                         w.keep_owners ? &st : nullptr}));
  // Only st_size bytes: a file growing meanwhile is cut there, one shrinking is an error
  // (the header already promised its size).
  for (int64_t left = st.st_size; left > 0;) {
    ssize_t n = ::read(f.get(), w.buf.data(), static_cast<size_t>(std::min<int64_t>(left, kChunk)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return read_error(full);
    if (n == 0) return read_error(full, "it shrank while being archived");
    if (archive_write_data(w.a, w.buf.data(), static_cast<size_t>(n)) != n) {
      return fail(Errc::io,
                  fmt::format("{}: cannot be written: {}", w.out.string(), archive_error(w.a)));
    }
    left -= n;
  }
  return outcome::success();
}

Result<void> walk(Walk& w, const fs::path& dir, const std::string& prefix) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec) return read_error(dir, ec.message());
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    fs::path full = dir / name;
    std::string rel = prefix + name;
    struct stat st;
    if (::lstat(full.c_str(), &st) != 0) return read_error(full);
    bool is_dir = S_ISDIR(st.st_mode);
    if (!is_dir && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) continue;
    if (st.st_dev == w.out_st.st_dev && st.st_ino == w.out_st.st_ino) continue;
    TarPick pick = w.filter ? w.filter(rel, is_dir) : TarPick::include;
    if (pick == TarPick::skip || (pick == TarPick::descend_only && !is_dir)) continue;
    if (pick == TarPick::include) {
      if (S_ISREG(st.st_mode)) {
        BOOST_OUTCOME_TRY(add_file(w, full, rel, st));
      } else if (is_dir) {
        BOOST_OUTCOME_TRY(
            write_header(w.a, {rel, AE_IFDIR, static_cast<int>(st.st_mode), 0, st.st_mtim, {},
                               w.keep_owners ? &st : nullptr}));
      } else {
        auto target = fs::read_symlink(full, ec);
        if (ec) return read_error(full, ec.message());
        BOOST_OUTCOME_TRY(write_header(w.a, {rel, AE_IFLNK, 0777, 0, st.st_mtim, target.string(),
                                          w.keep_owners ? &st : nullptr}));
      }
    }
    if (is_dir) {
      BOOST_OUTCOME_TRY(walk(w, full, rel + "/"));
    }
  }
  return outcome::success();
}

la_ssize_t append_to_string(archive*, void* out, const void* data, size_t size) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(data), size);
  return static_cast<la_ssize_t>(size);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    size_t end = s.find(sep, start);
    parts.push_back(s.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

// No leading or trailing '/', no empty, "." or ".." parts.
bool valid_relative(std::string_view p) {
  auto parts = split(p, '/');
  return std::none_of(parts.begin(), parts.end(),
                      [](auto part) { return part.empty() || part == "." || part == ".."; });
}

// --- .dockerignore -------------------------------------------------------------------------

using Token = DockerIgnore::Token;

// Go's filepath.Clean for '/'-separated paths.
std::string clean(std::string_view p) {
  bool rooted = !p.empty() && p.front() == '/';
  std::vector<std::string_view> out;
  for (auto part : split(p, '/')) {
    if (part.empty() || part == ".") continue;
    if (part != "..") {
      out.push_back(part);
    } else if (!out.empty() && out.back() != "..") {
      out.pop_back();
    } else if (!rooted) {
      out.push_back(part);
    }
  }
  std::string s = rooted ? "/" : "";
  for (size_t i = 0; i < out.size(); ++i) s += (i ? "/" : "") + std::string(out[i]);
  return s.empty() ? "." : s;
}

std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\v\f\r";
  size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
}

// Code points, so '?' and classes see "é" as one character. A byte that is not UTF-8 becomes
// a lone surrogate of its own, equal only to the same byte in a pattern.
std::u32string decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    char32_t cp = len == 1 ? c : c & (0x7f >> len);
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc & 0xc0) == 0x80;
      cp = (cp << 6) | (cc & 0x3f);
    }
    out.push_back(ok ? cp : 0xdc00 + c);
    i += ok ? len : 1;
  }
  return out;
}

// One character of a class, maybe '\'-escaped; like Go's getEsc, something must follow it.
bool class_char(std::u32string_view p, size_t& i, char32_t& c) {
  if (i >= p.size() || p[i] == '-' || p[i] == ']') return false;
  if (p[i] == '\\' && ++i >= p.size()) return false;
  c = p[i++];
  return i < p.size();
}

// Docker's translation of a pattern (patternmatcher's compile), with Go filepath.Match's syntax
// checks. False if the pattern is invalid.
bool compile(std::u32string_view p, std::vector<Token>& out) {
  for (size_t i = 0; i < p.size(); ++i) {
    Token t;
    if (p[i] == '*' && i + 1 < p.size() && p[i + 1] == '*') {
      ++i;
      if (i + 1 < p.size() && p[i + 1] == '/') ++i;  // "**/" is "**"
      t.kind = i + 1 == p.size() ? Token::rest : Token::dirs;
    } else if (p[i] == '*') {
      t.kind = Token::star;
    } else if (p[i] == '?') {
      t.kind = Token::any_char;
    } else if (p[i] == '\\') {
      if (++i == p.size()) return false;
      t.ch = p[i];
    } else if (p[i] == '[') {
      t.kind = Token::char_class;
      if (++i < p.size() && p[i] == '^') {
        t.negated = true;
        ++i;
      }
      while (i >= p.size() || p[i] != ']' || t.ranges.empty()) {
        char32_t lo, hi;
        if (!class_char(p, i, lo)) return false;
        hi = lo;
        if (p[i] == '-' && !class_char(p, ++i, hi)) return false;
        t.ranges.emplace_back(lo, hi);
      }
    } else {
      t.ch = p[i];
    }
    out.push_back(std::move(t));
  }
  return true;
}

// For the tokens that take exactly one character.
bool accepts(const Token& t, char32_t c) {
  if (t.kind == Token::literal) return c == t.ch;
  if (t.kind == Token::any_char) return c != '/';
  bool in = std::any_of(t.ranges.begin(), t.ranges.end(),
                        [c](auto r) { return r.first <= c && c <= r.second; });
  return in != t.negated;
}

// Runs the tokens as an NFA over positions of `s` (no backtracking, so no blow-up).
bool glob_match(const std::vector<Token>& tokens, std::u32string_view s) {
  size_t n = s.size();
  std::vector<char> cur(n + 1, 0), next(n + 1, 0);
  cur[0] = 1;
  for (const auto& t : tokens) {
    std::fill(next.begin(), next.end(), 0);
    bool run = false, any = false;
    for (size_t p = 0; p <= n; ++p) {
      switch (t.kind) {
        case Token::literal:
        case Token::any_char:
        case Token::char_class:
          if (cur[p] && p < n && accepts(t, s[p])) next[p + 1] = 1;
          break;
        case Token::star:  // any run without '/'
          run = run || cur[p];
          next[p] = run;
          if (p < n && s[p] == '/') run = false;
          break;
        case Token::dirs:  // (.*/)?
          next[p] = cur[p] || (run && s[p - 1] == '/');
          run = run || cur[p];
          break;
        case Token::rest:  // .*
          run = run || cur[p];
          next[p] = run;
          break;
      }
      any = any || next[p];
    }
    if (!any) return false;
    cur.swap(next);
  }
  return cur[n];
}

}  // namespace

Result<void> write_tar(const fs::path& root, const fs::path& out, const TarFilter& filter,
                       bool keep_owners) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return fail(Errc::io, fmt::format("{}: is not a readable folder{}", root.string(),
                                      ec ? ": " + ec.message() : std::string()));
  }
  Utf8Names utf8_names;
  WriteArchive a = new_writer();
  if (archive_write_open_filename(a.get(), out.c_str()) != ARCHIVE_OK) {
    return fail(Errc::io,
                fmt::format("{}: cannot be created: {}", out.string(), archive_error(a.get())));
  }
  Walk w{a.get(), filter, out, {}, std::vector<char>(kChunk), keep_owners};
  ::stat(out.c_str(), &w.out_st);
  auto r = walk(w, root, "");
  if (r && archive_write_close(a.get()) != ARCHIVE_OK) {
    r = fail(Errc::io,
             fmt::format("{}: cannot be written: {}", out.string(), archive_error(a.get())));
  }
  if (!r) {
    a.reset();
    fs::remove(out, ec);
  }
  return r;
}

Result<std::string> tar_of(const std::vector<TarFile>& files) {
  std::string out;
  Utf8Names utf8_names;
  WriteArchive a = new_writer();
  archive_write_set_bytes_in_last_block(a.get(), 1);  // no padding to 10 KiB
  if (archive_write_open(a.get(), &out, nullptr, append_to_string, nullptr) != ARCHIVE_OK) {
    return fail(Errc::internal, "cannot start an in-memory tar: " + archive_error(a.get()));
  }
  std::set<std::string, std::less<>> dirs;
  for (const auto& f : files) {
    if (!valid_relative(f.path)) {
      return fail(Errc::invalid_argument,
                  fmt::format("{}: not a relative path for a tar entry", f.path));
    }
    for (size_t slash = f.path.find('/'); slash != std::string::npos;
         slash = f.path.find('/', slash + 1)) {
      std::string dir = f.path.substr(0, slash);
      if (dirs.insert(dir).second) {
        BOOST_OUTCOME_TRY(write_header(a.get(), {dir, AE_IFDIR, 0755, 0, {}, {}}));
      }
    }
    if (!f.symlink.empty()) {
      BOOST_OUTCOME_TRY(write_header(a.get(), {f.path, AE_IFLNK, 0777, 0, {}, f.symlink}));
      continue;
    }
    auto size = static_cast<int64_t>(f.content.size());
    BOOST_OUTCOME_TRY(write_header(a.get(), {f.path, AE_IFREG, f.mode, size, {}, {}}));
    if (archive_write_data(a.get(), f.content.data(), f.content.size()) != size) {
      return fail(Errc::internal, fmt::format("{}: cannot be added to the tar: {}", f.path,
                                              archive_error(a.get())));
    }
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) {
    return fail(Errc::internal, "cannot finish an in-memory tar: " + archive_error(a.get()));
  }
  return out;
}

bool symlink_stays_inside(std::string_view rel_path, std::string_view target) {
  if (target.empty() || target.front() == '/') return false;
  auto slash = rel_path.rfind('/');
  // How deep the link's folder is below the root.
  long depth = 0;
  if (slash != std::string_view::npos) {
    for (auto part : split(rel_path.substr(0, slash), '/')) {
      if (part.empty() || part == ".") continue;
      if (part == "..") return false;
      ++depth;
    }
  }
  for (auto part : split(target, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (--depth < 0) return false;
    } else {
      ++depth;
    }
  }
  return true;
}

HmrEntry hmr_entry(const fs::path& root, const std::string& rel_path) {
  HmrEntry out;
  auto refuse = [&](std::string why) {
    out.kind = HmrEntry::Kind::refused;
    out.why = std::move(why);
    return out;
  };
  auto gone = [&] {
    out.kind = HmrEntry::Kind::gone;
    return out;
  };
  if (!valid_relative(rel_path)) return refuse("not a relative path inside the folder");
  Fd dir{::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (dir.get() < 0) return gone();
  auto parts = split(rel_path, '/');
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    std::string part(parts[i]);
    int next = ::openat(dir.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      if (errno == ELOOP) {
        auto end = static_cast<size_t>(parts[i].data() - rel_path.data()) + parts[i].size();
        return refuse(fmt::format("the folder {} on its way is a symbolic link", rel_path.substr(0, end)));
      }
      if (errno == ENOTDIR) {
        struct stat st;
        if (::fstatat(dir.get(), part.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
          return refuse("a folder on its way is a symbolic link");
        }
      }
      return gone();
    }
    dir = Fd(next);  // closes the one before
  }
  std::string last(parts.back());
  struct stat st;
  if (::fstatat(dir.get(), last.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return gone();
  out.file.path = rel_path;
  if (S_ISLNK(st.st_mode)) {
    std::string target(4096, '\0');
    ssize_t n = ::readlinkat(dir.get(), last.c_str(), target.data(), target.size());
    if (n < 0) return gone();
    target.resize(static_cast<size_t>(n));
    if (!symlink_stays_inside(rel_path, target)) {
      return refuse(fmt::format("a symbolic link to {}, outside the folder", target));
    }
    out.kind = HmrEntry::Kind::copy;
    out.file.symlink = target;
    return out;
  }
  if (!S_ISREG(st.st_mode)) return out;  // ignored
  Fd f{::openat(dir.get(), last.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)};
  if (f.get() < 0) {
    if (errno == ELOOP) return refuse("it became a symbolic link while being read");
    return gone();
  }
  if (::fstat(f.get(), &st) != 0 || !S_ISREG(st.st_mode)) return out;
  std::string content;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(f.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return gone();
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  out.kind = HmrEntry::Kind::copy;
  out.file.content = std::move(content);
  out.file.mode = static_cast<int>(st.st_mode & 0755);
  return out;
}

Result<std::vector<std::string>> tar_list(std::string_view tar) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_format_tar(a.get());
  std::vector<std::string> names;
  int rc = archive_read_open_memory(a.get(), tar.data(), tar.size());
  archive_entry* e = nullptr;
  while (rc == ARCHIVE_OK || rc == ARCHIVE_WARN) {
    rc = archive_read_next_header(a.get(), &e);
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) break;
    const char* name = archive_entry_pathname_utf8(e);
    if (!name) name = archive_entry_pathname(e);  // raw bytes ("hdrcharset=BINARY")
    names.emplace_back(name ? name : "");
  }
  if (rc != ARCHIVE_EOF) {
    return fail(Errc::invalid_argument, "not a valid tar: " + archive_error(a.get()));
  }
  return names;
}

DockerIgnore DockerIgnore::parse(std::string_view text) {
  DockerIgnore ig;
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // UTF-8 byte order mark
  for (auto line : split(text, '\n')) {
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.starts_with('#')) continue;  // only in the first column, as in Docker
    line = trim(line);
    if (line.empty()) continue;
    Pattern p;
    if (line.front() == '!') {
      p.exception = true;
      line = trim(line.substr(1));
    }
    if (line.empty()) continue;  // a lone "!"
    p.text = clean(line);
    if (p.text.size() > 1 && p.text.front() == '/') p.text.erase(0, 1);
    if (compile(decode(p.text), p.tokens)) ig.patterns_.push_back(std::move(p));
  }
  return ig;
}

DockerIgnore DockerIgnore::load(const fs::path& dir) {
  std::ifstream in(dir / ".dockerignore", std::ios::binary);
  return parse(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
}

bool DockerIgnore::excluded(const std::string& rel_path) const {
  std::u32string s = decode(rel_path);
  std::u32string_view sv = s;
  bool matched = false;
  for (const auto& p : patterns_) {
    // Like patternmatcher: a pattern that could not change the outcome is not tried.
    if (p.exception != matched) continue;
    bool m = glob_match(p.tokens, sv);
    for (size_t k = 0; !m && k < sv.size(); ++k) {
      if (sv[k] == '/') m = glob_match(p.tokens, sv.substr(0, k));
    }
    if (m) matched = !p.exception;
  }
  return matched;
}

bool DockerIgnore::has_exceptions() const {
  return std::any_of(patterns_.begin(), patterns_.end(),
                     [](const Pattern& p) { return p.exception; });
}

// Without "**", '[' or '\', a pattern has a fixed number of parts, each matching one path part.
// An exception that matches only `dir` or its parents cannot re-include what a later pattern
// excluded, so it has to reach below `dir` with its leading parts matching dir's.
bool DockerIgnore::may_include_below(const std::string& dir) const {
  auto dir_parts = split(dir, '/');
  for (const auto& p : patterns_) {
    if (!p.exception) continue;
    if (p.text.find_first_of("[\\") != std::string::npos ||
        p.text.find("**") != std::string::npos) {
      return true;
    }
    auto parts = split(p.text, '/');
    bool below = parts.size() > dir_parts.size();
    for (size_t i = 0; below && i < dir_parts.size(); ++i) {
      std::vector<Token> tokens;
      below = compile(decode(parts[i]), tokens) && glob_match(tokens, decode(dir_parts[i]));
    }
    if (below) return true;
  }
  return false;
}

TarFilter docker_context_filter(DockerIgnore ignore) {
  return [ig = std::move(ignore)](const std::string& rel, bool is_dir) {
    if (rel == "Dockerfile" || rel == ".dockerignore" || !ig.excluded(rel)) return TarPick::include;
    return is_dir && ig.may_include_below(rel) ? TarPick::descend_only : TarPick::skip;
  };
}

}  // namespace ck
