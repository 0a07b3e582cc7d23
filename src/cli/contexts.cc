#include "cli/contexts.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace ck::cli {

namespace fs = std::filesystem;

const Context* Contexts::find(const std::string& name) const {
  for (const auto& c : all) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

Context* Contexts::find(const std::string& name) {
  for (auto& c : all) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

void Contexts::put(Context c) {
  if (Context* old = find(c.name)) {
    *old = std::move(c);
    return;
  }
  all.push_back(std::move(c));
}

bool Contexts::remove(const std::string& name) {
  for (auto it = all.begin(); it != all.end(); ++it) {
    if (it->name == name) {
      all.erase(it);
      if (current == name) current.clear();
      return true;
    }
  }
  return false;
}

bool is_valid_context_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::string> normalize_url(const std::string& url) {
  std::string u = url;
  std::string rest;
  if (u.starts_with("https://")) {
    rest = u.substr(8);
  } else if (u.starts_with("http://")) {
    rest = u.substr(7);
  } else {
    return fail(
        Errc::invalid_argument,
        fmt::format(
            "'{}' is not a control plane URL: give http://HOST[:PORT] or https://HOST[:PORT]",
            url));
  }
  if (rest.empty() || rest[0] == '/' || u.find_first_of("?# \t\r\n") != std::string::npos ||
      u.size() > 2048) {
    return fail(
        Errc::invalid_argument,
        fmt::format(
            "'{}' is not a control plane URL: give http://HOST[:PORT] or https://HOST[:PORT] "
            "(no query, no spaces)",
            url));
  }
  while (u.ends_with("/")) u.pop_back();
  // The API lives under /monitor: a URL given as the dashboard's is the same control plane.
  if (u.ends_with("/monitor")) u.resize(u.size() - 8);
  return u;
}

std::string context_name_for_url(const std::string& url) {
  std::string rest = url.substr(url.find("://") == std::string::npos ? 0 : url.find("://") + 3);
  rest = rest.substr(0, rest.find('/'));
  auto at = rest.rfind('@');
  if (at != std::string::npos) rest = rest.substr(at + 1);
  std::string out;
  for (char c : rest) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (ok) out += c;
  }
  if (out.size() > 64) out.resize(64);
  return out.empty() ? "default" : out;
}

namespace {

Error bad(const std::string& origin, const YAML::Mark& mark, const std::string& what) {
  return make_error(Errc::invalid_argument,
                    fmt::format("{}: line {}: {} (fix or remove the file, then log in again with "
                                "`cloudyknight login URL`)",
                                origin, mark.line + 1, what));
}

Result<std::string> scalar(const YAML::Node& node, const char* key, const std::string& origin) {
  YAML::Node v = node[key];
  if (!v || v.IsNull()) return std::string();
  if (!v.IsScalar())
    return outcome::failure(bad(origin, v.Mark(), fmt::format("'{}' must be a string", key)));
  return v.as<std::string>();
}

}  // namespace

Result<Contexts> parse_contexts(const std::string& text, const std::string& origin) {
  if (text.size() > kMaxContextsFile) {
    return fail(
        Errc::invalid_argument,
        fmt::format("{}: over {} bytes, which no contexts file needs: remove it and log in again",
                    origin, kMaxContextsFile));
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return outcome::failure(bad(origin, e.mark, "invalid YAML: " + e.msg));
  }
  Contexts out;
  if (root.IsNull()) return out;
  try {
    if (!root.IsMap())
      return outcome::failure(
          bad(origin, root.Mark(), "expected a mapping with 'current' and 'contexts'"));
    BOOST_OUTCOME_TRY(current, scalar(root, "current", origin));
    out.current = current;
    YAML::Node list = root["contexts"];
    if (list && !list.IsNull()) {
      if (!list.IsSequence())
        return outcome::failure(bad(origin, list.Mark(), "'contexts' must be a list"));
      for (const auto& item : list) {
        if (!item.IsMap())
          return outcome::failure(bad(origin, item.Mark(), "each context must be a mapping"));
        Context c;
        BOOST_OUTCOME_TRY(name, scalar(item, "name", origin));
        BOOST_OUTCOME_TRY(url, scalar(item, "url", origin));
        BOOST_OUTCOME_TRY(token, scalar(item, "token", origin));
        BOOST_OUTCOME_TRY(token_id, scalar(item, "token_id", origin));
        BOOST_OUTCOME_TRY(user, scalar(item, "user", origin));
        BOOST_OUTCOME_TRY(cacert, scalar(item, "cacert", origin));
        if (!is_valid_context_name(name)) {
          return outcome::failure(
              bad(origin, item.Mark(), fmt::format("'{}' is not a valid context name", name)));
        }
        if (out.find(name)) {
          return outcome::failure(
              bad(origin, item.Mark(), fmt::format("context '{}' appears twice", name)));
        }
        if (url.empty())
          return outcome::failure(
              bad(origin, item.Mark(), fmt::format("context '{}' has no url", name)));
        c.name = std::move(name);
        c.url = std::move(url);
        c.token = std::move(token);
        c.token_id = std::move(token_id);
        c.user = std::move(user);
        c.cacert = std::move(cacert);
        out.all.push_back(std::move(c));
      }
    }
  } catch (const YAML::Exception& e) {
    return outcome::failure(bad(origin, e.mark, e.msg));
  }
  if (!out.current.empty() && !out.find(out.current)) {
    return fail(
        Errc::invalid_argument,
        fmt::format("{}: 'current' names '{}', which is not among the contexts (pick one with "
                    "`cloudyknight context use NAME`, after fixing the file)",
                    origin, out.current));
  }
  return out;
}

std::string format_contexts(const Contexts& c) {
  YAML::Emitter e;
  e << YAML::Comment(
      "CloudyKnight CLI contexts (cloudyknight login / context use). Holds API tokens: keep it "
      "0600.");
  e << YAML::BeginMap;
  e << YAML::Key << "current" << YAML::Value << c.current;
  e << YAML::Key << "contexts" << YAML::Value << YAML::BeginSeq;
  for (const auto& x : c.all) {
    e << YAML::BeginMap;
    e << YAML::Key << "name" << YAML::Value << x.name;
    e << YAML::Key << "url" << YAML::Value << x.url;
    e << YAML::Key << "token" << YAML::Value << x.token;
    if (!x.token_id.empty()) e << YAML::Key << "token_id" << YAML::Value << x.token_id;
    if (!x.user.empty()) e << YAML::Key << "user" << YAML::Value << x.user;
    if (!x.cacert.empty()) e << YAML::Key << "cacert" << YAML::Value << x.cacert;
    e << YAML::EndMap;
  }
  e << YAML::EndSeq << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

Result<fs::path> contexts_path(const EnvFn& env) {
  if (auto x = env("XDG_CONFIG_HOME"); x && !x->empty()) {
    return fs::path(*x) / "cloudyknight" / "contexts.yaml";
  }
  if (auto h = env("HOME"); h && !h->empty()) {
    return fs::path(*h) / ".config" / "cloudyknight" / "contexts.yaml";
  }
  return fail(Errc::invalid_argument,
              "neither XDG_CONFIG_HOME nor HOME is set, so there is no place for the contexts "
              "file: set one, "
              "or use CK_URL and CK_TOKEN");
}

Result<Contexts> load_contexts(const fs::path& path) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return Contexts{};
    return fail(Errc::io, fmt::format("cannot read {}: {}", path.string(), ec.message()));
  }
  if (size > kMaxContextsFile) {
    return fail(
        Errc::invalid_argument,
        fmt::format("{}: over {} bytes, which no contexts file needs: remove it and log in again",
                    path.string(), kMaxContextsFile));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail(Errc::io, fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  return parse_contexts(text.str(), path.string());
}

Result<void> save_contexts(const fs::path& path, const Contexts& c) {
  std::error_code ec;
  fs::path dir = path.parent_path();
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) return fail(Errc::io, fmt::format("cannot create {}: {}", dir.string(), ec.message()));
    ::chmod(dir.c_str(), 0700);
  }
  std::string text = format_contexts(c);
  fs::path tmp = dir / fmt::format(".contexts.yaml.{}.tmp", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return fail(Errc::io, fmt::format("cannot write {}: {}", tmp.string(), std::strerror(errno)));
  ::fchmod(fd, 0600);  // whatever the umask
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return fail(Errc::io, fmt::format("cannot write {}: {}", tmp.string(), std::strerror(err)));
    }
    done += static_cast<std::size_t>(n);
  }
  int synced = ::fsync(fd);
  int sync_errno = errno;
  if (::close(fd) != 0 || synced != 0) {
    int err = synced != 0 ? sync_errno : errno;
    ::unlink(tmp.c_str());
    return fail(Errc::io, fmt::format("cannot write {}: {}", tmp.string(), std::strerror(err)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return fail(Errc::io, fmt::format("cannot replace {}: {}", path.string(), std::strerror(err)));
  }
  return outcome::success();
}

}  // namespace ck::cli
