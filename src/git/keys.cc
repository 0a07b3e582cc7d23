#include "git/keys.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

namespace ck::git {
namespace fs = std::filesystem;

namespace {

constexpr const char* kPrivate = "id_ecdsa";
constexpr const char* kPublic = "id_ecdsa.pub";
constexpr std::string_view kKeyType = "ecdsa-sha2-nistp256";

std::string base64(const unsigned char* data, std::size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(static_cast<std::size_t>(len));
  return out;
}

// SSH wire format: a uint32 length, then the bytes.
void put_string(std::string& out, std::string_view s) {
  auto n = static_cast<std::uint32_t>(s.size());
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
  out += s;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<void> write_new(const fs::path& p, const std::string& bytes, mode_t mode) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return fail(Errc::io, "cannot create " + p.string() + ": " + std::strerror(errno));
  bool ok = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return fail(Errc::io, "cannot write " + p.string());
  return outcome::success();
}

}  // namespace

bool is_ssh_url(std::string_view url) {
  for (std::string_view scheme : {"ssh://", "ssh+git://", "git+ssh://"}) {
    if (url.substr(0, scheme.size()) == scheme) return true;
  }
  if (url.find("://") != std::string_view::npos || url.empty() || url.front() == '/') return false;
  auto colon = url.find(':');
  auto slash = url.find('/');
  return colon != std::string_view::npos && colon > 0 && (slash == std::string_view::npos || colon < slash);
}

std::string deploy_key(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_regular_file(dir / kPublic, ec)) return "";
  std::string line = read_all(dir / kPublic);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}

Result<std::string> ensure_deploy_key(const fs::path& dir, const std::string& comment) {
  std::error_code ec;
  if (fs::is_regular_file(dir / kPrivate, ec) && fs::is_regular_file(dir / kPublic, ec)) {
    return deploy_key(dir);
  }
  fs::create_directories(dir, ec);
  if (ec) return fail(Errc::io, "cannot create " + dir.string() + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);
  // A half-made pair (a crash between the two writes) is made again.
  fs::remove(dir / kPrivate, ec);
  fs::remove(dir / kPublic, ec);

  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!key) return fail(Errc::internal, "OpenSSL could not make a P-256 key");
  unsigned char point[133];
  std::size_t point_len = 0;
  if (EVP_PKEY_get_octet_string_param(key.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point, sizeof point,
                                      &point_len) != 1) {
    return fail(Errc::internal, "OpenSSL could not encode the public key");
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  // The traditional "EC PRIVATE KEY" PEM, which libssh2 reads.
  if (!bio || PEM_write_bio_PrivateKey_traditional(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return fail(Errc::internal, "OpenSSL could not write the private key");
  }
  char* pem = nullptr;
  long pem_len = BIO_get_mem_data(bio.get(), &pem);
  std::string private_pem(pem, static_cast<std::size_t>(pem_len));

  std::string blob;
  put_string(blob, kKeyType);
  put_string(blob, "nistp256");
  put_string(blob, std::string_view(reinterpret_cast<const char*>(point), point_len));
  std::string line = std::string(kKeyType) + " " +
                     base64(reinterpret_cast<const unsigned char*>(blob.data()), blob.size()) + " " + comment;
  BOOST_OUTCOME_TRY(write_new(dir / kPrivate, private_pem, 0600));
  BOOST_OUTCOME_TRY(write_new(dir / kPublic, line + "\n", 0644));
  return line;
}

Result<void> check_host_key(const fs::path& file, const std::string& host, const std::string& fingerprint) {
  std::error_code ec;
  std::vector<std::string> lines;
  if (fs::exists(file, ec)) {
    std::istringstream in(read_all(file));
    for (std::string l; std::getline(in, l);) {
      auto space = l.find(' ');
      if (space == std::string::npos) continue;
      if (l.substr(0, space) == host) {
        if (l.substr(space + 1) == fingerprint) return outcome::success();
        return fail(Errc::forbidden,
                    "the ssh host key of " + host + " changed (now " + fingerprint + ", pinned " +
                        l.substr(space + 1) + " on first contact): someone may be in the middle; if the "
                        "server's key really changed, delete " + file.string() + " and pull again");
      }
      lines.push_back(l);
    }
  }
  fs::create_directories(file.parent_path(), ec);
  std::ofstream out(file, std::ios::app);
  out << host << " " << fingerprint << "\n";
  if (!out) return fail(Errc::io, "cannot pin the host key in " + file.string());
  return outcome::success();
}

}  // namespace ck::git
