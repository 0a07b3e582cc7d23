// Static workspaces: files served by the gateway itself (conditional requests, Range, gzip
// with a per-worker cache, live-reload injection). The pure parts are in static_files.h.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <ctime>
#include <filesystem>
#include <optional>
#include <utility>

#include "gateway/impl.h"
#include "gateway/pages.h"
#include "gateway/static_files.h"
#include "http/url.h"

namespace ck {
using namespace gw;

namespace {
constexpr std::uint64_t kInMemoryFileLimit = 1 << 20;
constexpr std::uint64_t kGzipLimit = 8 << 20;
constexpr std::uint64_t kMaxRangeBytes = 16 << 20;
// On plain TCP a cached body up to this size goes out with its head in one writev; a larger
// one goes with sendfile, which hands the kernel the page cache's pages instead of copying
// the bytes in (a 64 KiB file sent from memory: 0.87-0.95x nginx's req/s; with sendfile, as
// nginx does: 1.11x). Over TLS the bytes are copied into records anyway, so the cache serves
// every size.
constexpr std::uint64_t kFromMemoryLimit = 16 << 10;

std::optional<std::string> read_file(int fd, std::uint64_t size) {
  std::string out(size, '\0');
  std::uint64_t off = 0;
  while (off < size) {
    ssize_t n = ::pread(fd, out.data() + off, size - off, static_cast<off_t>(off));
    if (n <= 0) break;
    off += static_cast<std::uint64_t>(n);
  }
  out.resize(off);
  return out;
}

// Closes the file the request is served from, whichever way the answer goes.
struct FdGuard {
  int fd = -1;
  ~FdGuard() { reset(); }
  void reset(int next = -1) {
    if (fd >= 0) ::close(fd);
    fd = next;
  }
};

std::int64_t nanoseconds(const timespec& t) {
  return static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

// Sends `head` and `body` in one write (write_all leaves an empty one out, and over TLS
// next_record() gathers a small answer into one record).
Task<void> send_both(ClientStream& client, std::string& head, std::string_view body,
                     error_code& ec) {
  std::array<net::const_buffer, 2> bufs{net::buffer(head), net::buffer(body)};
  co_await write_all(client, bufs, ec);
}

// Sends `head`, then `len` bytes of the file `fd` from `offset`. On plain TCP the body goes
// with sendfile(2) (the head is sent with MSG_MORE, so both leave in full segments); over TLS
// it is read in chunks into `chunk` (allocated on first use) and written through the TLS
// layer. A file that ends early (truncated while being sent) is an error: the Content-Length
// already sent cannot be kept, so the connection must close.
Task<void> send_file(ClientStream& client, std::string& head, int fd, std::uint64_t offset,
                     std::uint64_t len, std::unique_ptr<char[]>& chunk, error_code& ec) {
  if (!client.tls()) {
    Socket& s = client.next_layer();
    std::size_t n = s.send(net::buffer(head), len > 0 ? MSG_MORE : 0, ec);
    if (ec == net::error::would_block || ec == net::error::try_again) {
      ec = {};
      n = 0;
    }
    if (ec) co_return;
    if (n < head.size()) {
      co_await net::async_write(s, net::buffer(std::string_view(head).substr(n)),
                                net::redirect_error(use_task, ec));
      if (ec) co_return;
    }
    auto off = static_cast<off_t>(offset);
    while (len > 0) {
      ssize_t sent = ::sendfile(s.native_handle(), fd, &off, std::min<std::uint64_t>(len, 1 << 30));
      if (sent > 0) {
        len -= static_cast<std::uint64_t>(sent);
        continue;
      }
      if (sent == 0) {
        ec = net::error::eof;  // the file is shorter than announced
        co_return;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        ec = error_code(errno, boost::system::system_category());
        co_return;
      }
      co_await s.async_wait(Socket::wait_write, net::redirect_error(use_task, ec));
      if (ec) co_return;
    }
    co_return;
  }
  if (!chunk) chunk.reset(new char[kRelayChunk]);
  do {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(len, kRelayChunk));
    std::size_t got = 0;
    while (got < want) {
      ssize_t n = ::pread(fd, chunk.get() + got, want - got, static_cast<off_t>(offset + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ec = n == 0 ? error_code(net::error::eof)
                    : error_code(errno, boost::system::system_category());
        co_return;
      }
      got += static_cast<std::size_t>(n);
    }
    co_await send_both(client, head, std::string_view(chunk.get(), got), ec);
    if (ec) co_return;
    head.clear();
    offset += got;
    len -= got;
  } while (len > 0);
}

}  // namespace

// The request path, cheap in the common case: the URL path's lexical checks, one stat of the
// workspace folder (its descriptor is kept per worker) and one openat2 beneath it that refuses
// every symlink (the kernel's confinement), fstat, then the head written straight into the
// connection's scratch buffer and the body from the worker's cache of small files (one writev) or
// with sendfile. Whatever that path cannot answer plainly (a symlink on the way, a missing
// workspace folder, a special file, no openat2) goes through resolve_static()'s full checks, as
// before, so every refusal and its status stay the same.
Task<bool> Gateway::Impl::serve_static(Conn& conn, Request& req, const WorkspaceView& ws,
                                       const RouteDecision& d, Worker& w) {
  bool head = req.method() == bhttp::verb::head;
  if (req.method() != bhttp::verb::get && !head) {
    auto res = error_page(req, 405, "Method Not Allowed",
                          fmt::format("'{}' is a static workspace; it answers GET and HEAD only.", ws.name), "");
    res.set(bhttp::field::allow, "GET, HEAD");
    co_return co_await write(conn, res) && res.keep_alive();
  }
  auto [path, query] = http::split_target(d.upstream_target);
  std::string rel;  // the file, relative to the workspace folder (for its type and the caches)
  StaticLookup lk;
  FdGuard file;
  struct stat st {};
  bool full_checks = false;
  if (auto refused = check_static_path(path, rel)) {
    lk = std::move(*refused);
  } else {
    int root = w.static_roots.get(ws.static_root.native());
    if (root >= 0) file.reset(open_beneath(root, rel));
    if (root < 0 || file.fd < 0) {
      if (root >= 0 && (errno == ENOENT || errno == ENOTDIR)) {
        lk.kind = StaticLookup::not_found;
      } else {
        full_checks = true;
      }
    } else if (::fstat(file.fd, &st) != 0) {
      full_checks = true;
    } else if (S_ISDIR(st.st_mode)) {
      if (!path.ends_with('/')) {
        lk.kind = StaticLookup::redirect_dir;
      } else {
        int index = open_beneath(file.fd, "index.html");
        int e = errno;
        file.reset(index);
        errno = e;
        if (index < 0 && errno == ENOENT) {
          lk.kind = StaticLookup::not_found;
        } else if (index < 0 || ::fstat(index, &st) != 0 || !S_ISREG(st.st_mode)) {
          full_checks = true;
        } else {
          lk.kind = StaticLookup::file;
          rel += rel.empty() ? "index.html" : "/index.html";
        }
      }
    } else if (S_ISREG(st.st_mode)) {
      lk.kind = StaticLookup::file;
    } else {
      full_checks = true;
    }
  }
  if (full_checks) {
    file.reset();
    lk = resolve_static(ws.static_root, path);
  }
  switch (lk.kind) {
    case StaticLookup::bad_request: {
      auto res = error_page(req, 400, "Bad Request", "This path is not allowed: " + lk.reason + ".", "");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case StaticLookup::forbidden: {
      auto res = error_page(req, 403, "Forbidden", "This file cannot be served: " + lk.reason + ".", "");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case StaticLookup::not_found: {
      auto res = error_page(req, 404, "Not Found",
                            fmt::format("'{}' has no file at {}.", ws.name, std::string(path)), "");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case StaticLookup::redirect_dir: {
      auto res = make_response(req, bhttp::status::moved_permanently, "", "text/plain");
      res.set(bhttp::field::location,
              d.prefix + std::string(path) + "/" + (query.empty() ? "" : "?" + std::string(query)));
      co_return co_await write(conn, res) && res.keep_alive();
    }
    case StaticLookup::file:
      break;
  }
  if (full_checks) {
    // Everything below reads the file through this descriptor, opened beneath the workspace
    // folder without following any symlink: a file swapped for a symlink after the check
    // above is refused here, never read.
    file.reset(open_static_file(lk));
    if (file.fd < 0 || ::fstat(file.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      bool link = file.fd < 0 && (errno == ELOOP || errno == EXDEV || errno == EACCES);
      auto res = link ? error_page(req, 403, "Forbidden",
                                   "This file cannot be served: it is a symlink.", "")
                      : error_page(req, 404, "Not Found", "The file disappeared.", "");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    rel = lk.path.filename().string();
  }

  std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  std::int64_t mtime_ns = nanoseconds(st.st_mtim);
  std::int64_t ctime_ns = nanoseconds(st.st_ctim);
  // This version of the file (the fstat above, on the descriptor it is read from) from the
  // worker's cache, or read into it when it is small and was not changed just now.
  auto entry = w.static_cache.find(st.st_dev, st.st_ino, size, mtime_ns, ctime_ns);
  if (!entry && StaticFileCache::cacheable(size, ctime_ns, std::time(nullptr))) {
    StaticFileEntry e;
    if (auto raw = read_file(file.fd, size); raw && raw->size() == size) {
      e.size = size;
      e.mtime_ns = mtime_ns;
      e.ctime_ns = ctime_ns;
      e.body = std::move(*raw);
      e.etag = make_etag(size, mtime_ns);
      e.last_modified = http::http_date(st.st_mtim.tv_sec);
      entry = w.static_cache.put(st.st_dev, st.st_ino, std::move(e));
    }
  }
  std::string own_etag, own_last_modified;  // when not from the cache
  if (!entry) {
    own_etag = make_etag(size, mtime_ns);
    own_last_modified = http::http_date(st.st_mtim.tv_sec);
  }
  std::string_view etag = entry ? std::string_view(entry->etag) : std::string_view(own_etag);
  std::string_view last_modified =
      entry ? std::string_view(entry->last_modified) : std::string_view(own_last_modified);
  std::string_view type = content_type_for_name(rel);
  // Live reload: HTML pages carry the reload script (a different representation, so a
  // different ETag), whole and uncompressed.
  bool inject = opts.live_reload && type.starts_with("text/html") && size <= kInMemoryFileLimit;
  if (inject) {
    own_etag = std::string(etag.substr(0, etag.size() - 1)) + "-lr\"";
    etag = own_etag;
  }
  bool compressible = is_compressible(type);
  std::string_view accept_enc(req[bhttp::field::accept_encoding]);
  bool want_gzip = !inject && compressible && size > 256 && size <= kGzipLimit &&
                   accepts_gzip(accept_enc);
  std::string_view inm(req[bhttp::field::if_none_match]);
  std::string gz_etag;
  if (want_gzip || !inm.empty()) gz_etag = std::string(etag.substr(0, etag.size() - 1)) + "-gz\"";

  StaticResponseHead h;
  h.version = static_cast<int>(req.version());
  h.date = http::http_date_now();
  h.last_modified = last_modified;
  h.vary = compressible;
  h.keep_alive = req.keep_alive();
  if (!hsts.empty() && conn.client.tls()) h.hsts = hsts;
  gw::error_code ec;
  // Writes the head (with `h.etag` as the representation sent has it) into the connection's
  // scratch buffer and counts the answer; the caller sends it.
  auto prepare = [&](unsigned status) {
    h.status = status;
    h.etag = want_gzip ? std::string_view(gz_etag) : etag;
    conn.status = static_cast<int>(status);
    conn.expire_in(opts.request_timeout);
    conn.flat.clear();
    append_static_response_head(h, conn.flat);
  };

  bool not_modified = false;
  if (!inm.empty()) {
    not_modified = http::etag_matches(inm, etag) || http::etag_matches(inm, gz_etag);
  } else if (auto ims = http::parse_http_date(std::string_view(req[bhttp::field::if_modified_since]))) {
    not_modified = st.st_mtim.tv_sec <= *ims;
  }
  if (not_modified) {
    prepare(304);
    co_await write_all(conn.client, net::buffer(conn.flat), ec);
    co_return !ec && h.keep_alive;
  }

  ByteRange range;
  RangeResult rr = RangeResult::none;
  if (req.count(bhttp::field::range) && !head && !inject) {
    std::string_view if_range(req[bhttp::field::if_range]);
    if (if_range.empty() || if_range == etag || if_range == last_modified) {
      rr = parse_range(std::string_view(req[bhttp::field::range]), size, range);
    }
  }
  if (rr == RangeResult::unsatisfiable) {
    want_gzip = false;
    h.content_type = "text/plain";
    h.content_length = 0;
    h.range = StaticResponseHead::Range::unsatisfiable;
    h.total = size;
    prepare(416);
    co_await write_all(conn.client, net::buffer(conn.flat), ec);
    co_return !ec && h.keep_alive;
  }
  h.content_type = type;
  if (rr == RangeResult::ok) {
    want_gzip = false;
    std::uint64_t len = std::min<std::uint64_t>(range.last - range.first + 1, kMaxRangeBytes);
    range.last = range.first + len - 1;
    h.content_length = len;
    h.range = StaticResponseHead::Range::partial;
    h.bytes = range;
    h.total = size;
    prepare(206);
    if (entry) {
      co_await send_both(conn.client, conn.flat,
                         std::string_view(entry->body).substr(range.first, len), ec);
    } else {
      co_await send_file(conn.client, conn.flat, file.fd, range.first, len, conn.relay, ec);
    }
    co_return !ec && h.keep_alive;
  }

  if (want_gzip) {
    std::string key = fmt::format("{}:{}:{}:{}", st.st_dev, st.st_ino, ctime_ns, etag);
    auto packed = w.gzip_cache.get(key);
    if (!packed) {
      std::optional<std::string> raw;
      if (!entry) raw = read_file(file.fd, size);
      if (!entry && (!raw || raw->size() != size)) {
        auto res = error_page(req, 500, "Internal Server Error", "The file could not be read.", "");
        co_return co_await write(conn, res) && res.keep_alive();
      }
      auto z = gzip(entry ? std::string_view(entry->body) : std::string_view(*raw));
      if (z.empty()) {
        want_gzip = false;
      } else {
        packed = std::make_shared<const std::string>(std::move(z));
        w.gzip_cache.put(key, packed);
      }
    }
    if (packed) {
      h.gzip = true;
      h.content_length = packed->size();
      prepare(200);
      co_await send_both(conn.client, conn.flat,
                         head ? std::string_view() : std::string_view(*packed), ec);
      co_return !ec && h.keep_alive;
    }
  }
  if (inject) {
    std::string page;
    if (entry) {
      page = entry->body;
    } else if (auto raw = read_file(file.fd, size); raw && raw->size() == size) {
      page = std::move(*raw);
    } else {
      auto res = error_page(req, 500, "Internal Server Error", "The file could not be read.", "");
      co_return co_await write(conn, res) && res.keep_alive();
    }
    page = inject_reload_script(std::move(page), ws.name);
    h.content_length = page.size();
    prepare(200);
    co_await send_both(conn.client, conn.flat, head ? std::string_view() : std::string_view(page),
                       ec);
    co_return !ec && h.keep_alive;
  }
  h.content_length = size;
  prepare(200);
  if (head) {
    co_await write_all(conn.client, net::buffer(conn.flat), ec);
  } else if (entry && (conn.client.tls() || size <= kFromMemoryLimit)) {
    co_await send_both(conn.client, conn.flat, entry->body, ec);
  } else {
    co_await send_file(conn.client, conn.flat, file.fd, 0, size, conn.relay, ec);
  }
  co_return !ec && h.keep_alive;
}

}  // namespace ck
