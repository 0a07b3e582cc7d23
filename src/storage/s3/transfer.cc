// Whole files to and from S3: put_file (one PUT, or a multipart upload from several threads)
// and get_to_file (streamed to disk).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <utility>

#include "core/unique_fd.h"
#include "storage/s3/answers.h"
#include "storage/s3/client.h"
#include "storage/s3/transport.h"

namespace ck::s3 {

namespace {

constexpr int kEarlyEof = -1;

/// Reads exactly `len` bytes at `offset`. Returns 0, kEarlyEof when the file ends first, or
/// the errno of a failed read.
int pread_all(int fd, char* buf, std::size_t len, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno;
    }
    if (n == 0) {
      return kEarlyEof;
    }
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::uint64_t kMinPartSize = 5 * kMiB;  // every part but the last
constexpr std::uint64_t kMaxPartSize = 5 * 1024 * kMiB;
constexpr std::uint64_t kMaxParts = 10000;

/// The part size for a file of `size` bytes: at least 5 MiB and at least what keeps the part
/// count within 10,000 (rounded up to whole MiB); 0 when even 5 GiB parts are not enough.
std::uint64_t choose_part_size(std::uint64_t size, std::uint64_t wanted) {
  std::uint64_t part = std::max(wanted, kMinPartSize);
  if ((size + part - 1) / part > kMaxParts) {
    part = (size + kMaxParts - 1) / kMaxParts;
    part = (part + kMiB - 1) / kMiB * kMiB;
  }
  return part > kMaxPartSize ? 0 : part;
}

}  // namespace

Result<std::string> Client::put_file(const std::string& bucket, const std::string& key,
                                     const std::filesystem::path& file,
                                     const PutFileOptions& opts) {
  const std::string dest = "s3://" + bucket + "/" + key;
  if (key.empty()) {
    return fail(Errc::invalid_argument,
                "S3 put_file '" + file.string() + "': the object key is empty");
  }
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    int e = errno;
    return fail(
        e == ENOENT ? Errc::not_found : Errc::io,
        "S3 put_file to " + dest + ": cannot open '" + file.string() + "': " + errno_text(e));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    int e = errno;
    return fail(Errc::io, "S3 put_file to " + dest + ": cannot stat '" + file.string() +
                              "': " + errno_text(e));
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(Errc::invalid_argument,
                "S3 put_file to " + dest + ": '" + file.string() + "' is not a regular file");
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  auto changed = [&](std::uint64_t now) {
    return make_error(Errc::io, "S3 put_file to " + dest + ": '" + file.string() +
                                    "' changed size while it was being uploaded (" +
                                    std::to_string(size) + " bytes, then " + std::to_string(now) +
                                    "); upload it again once it is stable");
  };
  auto size_now = [&]() -> Result<std::uint64_t> {
    struct stat after {};
    if (::fstat(fd.get(), &after) != 0) {
      int e = errno;
      return fail(Errc::io, "S3 put_file to " + dest + ": cannot stat '" + file.string() +
                                "': " + errno_text(e));
    }
    return static_cast<std::uint64_t>(after.st_size);
  };

  if (size == 0 || size < opts.multipart_threshold) {
    std::string body;
    try {
      body.resize(size);
    } catch (const std::bad_alloc&) {
      return fail(Errc::internal, "S3 put_file to " + dest + ": out of memory reading '" +
                                      file.string() + "' (" + std::to_string(size) + " bytes)");
    }
    if (int err = pread_all(fd.get(), body.data(), body.size(), 0); err == kEarlyEof) {
      BOOST_OUTCOME_TRY(now, size_now());
      return changed(now);
    } else if (err != 0) {
      return fail(Errc::io, "S3 put_file to " + dest + ": cannot read '" + file.string() +
                                "': " + errno_text(err));
    }
    BOOST_OUTCOME_TRY(now, size_now());
    if (now != size) {
      return changed(now);
    }
    return put_object(bucket, key, body, opts.content_type);
  }

  const std::uint64_t part_size = choose_part_size(size, opts.part_size);
  if (part_size == 0) {
    return fail(Errc::invalid_argument, "S3 put_file to " + dest + ": '" + file.string() +
                                            "' is larger than S3 allows (10,000 parts of 5 GiB)");
  }
  const auto parts = static_cast<int>((size + part_size - 1) / part_size);
  BOOST_OUTCOME_TRY(upload_id, create_multipart_upload(bucket, key, opts.content_type));
  if (opts.on_multipart_created) opts.on_multipart_created(key, upload_id);
  // Once it is completed or aborted, the caller hears of it (an upload whose abort failed stays
  // recorded, to be aborted later).
  auto ended = [&] {
    if (opts.on_multipart_ended) opts.on_multipart_ended(key, upload_id);
  };

  // From here on, every failure aborts the upload so that no parts are left behind (they are
  // billed until aborted).
  auto abort_with = [&](Error e) -> Error {
    auto aborted = abort_multipart_upload(bucket, key, upload_id);
    if (aborted) {
      ended();
      e.message += "; the multipart upload was aborted";
    } else {
      e.message += "; aborting the multipart upload " + upload_id +
                   " also failed: " + aborted.error().message +
                   " (its parts stay stored until it is aborted; a bucket lifecycle rule for "
                   "incomplete multipart uploads removes them)";
    }
    return e;
  };

  // Workers take the next part number from `next`; each owns one part-sized buffer, so at most
  // `workers` buffers exist. The first failure stops new parts from starting.
  std::vector<std::string> etags(static_cast<std::size_t>(parts));
  std::atomic<int> next{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::optional<Error> failure;  // the first part to fail, guarded by mu
  auto part_failed = [&](int index, const std::string& why, Errc ec) {
    std::uint64_t first = static_cast<std::uint64_t>(index) * part_size;
    std::uint64_t last = std::min(size, first + part_size) - 1;
    std::lock_guard lock(mu);
    if (!failure) {
      failure = make_error(ec, "S3 put_file '" + file.string() + "' to " + dest + ": part " +
                                   std::to_string(index + 1) + " of " + std::to_string(parts) +
                                   " (bytes " + std::to_string(first) + "-" + std::to_string(last) +
                                   ") failed: " + why);
    }
    stop = true;
  };
  auto worker = [&] {
    std::unique_ptr<char[]> buf;
    try {
      buf = std::make_unique_for_overwrite<char[]>(part_size);
    } catch (const std::bad_alloc&) {
      std::lock_guard lock(mu);
      if (!failure) {
        failure = make_error(Errc::internal, "S3 put_file '" + file.string() + "' to " + dest +
                                                 ": out of memory for a " +
                                                 std::to_string(part_size) + "-byte part buffer");
      }
      stop = true;
      return;
    }
    for (int i = next++; i < parts && !stop; i = next++) {
      std::uint64_t offset = static_cast<std::uint64_t>(i) * part_size;
      std::size_t len = static_cast<std::size_t>(std::min(part_size, size - offset));
      if (int err = pread_all(fd.get(), buf.get(), len, offset); err != 0) {
        part_failed(i,
                    err == kEarlyEof
                        ? "'" + file.string() + "' ended early: it shrank while being uploaded"
                        : "reading '" + file.string() + "': " + errno_text(err),
                    Errc::io);
        return;
      }
      auto etag = upload_part(bucket, key, upload_id, i + 1, std::string_view(buf.get(), len));
      if (!etag) {
        part_failed(i, etag.error().message, etag.error().code);
        return;
      }
      etags[static_cast<std::size_t>(i)] = std::move(etag.value());
    }
  };
  const int workers = std::clamp(opts.part_concurrency, 1, std::min(parts, 64));
  std::vector<std::thread> threads;
  for (int t = 1; t < workers; ++t) {
    try {
      threads.emplace_back(worker);
    } catch (const std::system_error&) {
      break;  // fewer threads than asked for; this thread works too
    }
  }
  worker();
  for (auto& t : threads) {
    t.join();
  }
  if (failure) {
    return abort_with(std::move(*failure));
  }
  auto now = size_now();
  if (!now) {
    return abort_with(std::move(now.error()));
  }
  if (now.value() != size) {
    return abort_with(changed(now.value()));
  }
  auto etag = complete_multipart_upload(bucket, key, upload_id, etags);
  if (!etag) {
    Error e = std::move(etag.error());
    e.message = "S3 put_file '" + file.string() + "' to " + dest + ": completing the upload of " +
                std::to_string(parts) + " parts failed: " + e.message;
    return abort_with(std::move(e));
  }
  ended();
  return etag;
}

// ---------------------------------------------------------------------------------------------

Result<ObjectInfo> Client::get_to_file(const std::string& bucket, const std::string& key,
                                       const std::filesystem::path& file) {
  if (key.empty()) {
    return fail(Errc::invalid_argument, "S3 get_to_file: the object key is empty");
  }
  const std::string what =
      "S3 get_to_file s3://" + bucket + "/" + key + " to '" + file.string() + "'";
  UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    int e = errno;
    return fail(Errc::io, what + ": cannot open the file: " + errno_text(e));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    // A retried download restarts by truncating, which only a regular file can do.
    return fail(Errc::invalid_argument, what + ": not a regular file");
  }
  // Every failure leaves the file empty rather than holding part of an object.
  auto fail_empty = [&](Error e) -> Error {
    if (::ftruncate(fd.get(), 0) != 0) {
      int err = errno;
      e.message += " (and emptying the file failed: " + errno_text(err) + ")";
    }
    return e;
  };
  Request r("GET", bucket, key);
  r.sink_fd = fd.get();
  auto sent = impl_->send(r);
  if (!sent) {
    Error e = std::move(sent.error());
    if (e.code == Errc::io) {
      e.message = what + ": " + e.message;
    }
    return fail_empty(std::move(e));
  }
  const Response& resp = sent.value();
  if (resp.status / 100 != 2) {
    return fail_empty(impl_->to_error(r, resp));
  }
  ObjectInfo info;
  info.key = key;
  info.size = resp.sink_bytes;
  info.etag = strip_quotes(resp.header("etag"));
  info.mtime_ms = http_date_ms(resp.header("last-modified"));
  std::string length = resp.header("content-length");
  if (!length.empty()) {
    std::uint64_t expected = std::strtoull(length.c_str(), nullptr, 10);
    if (expected != resp.sink_bytes) {
      return fail_empty(make_error(Errc::unavailable,
                                   what + ": received " + std::to_string(resp.sink_bytes) +
                                       " bytes but Content-Length is " + length + " (try again)"));
    }
  }
  if (::fstat(fd.get(), &st) != 0 || static_cast<std::uint64_t>(st.st_size) != resp.sink_bytes) {
    return fail_empty(make_error(Errc::io, what + ": the file does not hold the " +
                                               std::to_string(resp.sink_bytes) +
                                               " bytes written (was it changed meanwhile?)"));
  }
  if (int err = fd.reset(); err != 0) {
    return fail(Errc::io, what + ": closing the file failed: " + errno_text(err));
  }
  return info;
}

}  // namespace ck::s3
