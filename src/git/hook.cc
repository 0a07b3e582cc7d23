// Push webhooks (POST /monitor/api/v1/git/hook): a GitHub-, Gitea- or GitLab-style payload,
// its signature, and the URL forms that name one repository. GitWorkspaces::webhook() uses them.
#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "auth/crypto.h"
#include "git/workspaces.h"

namespace ck {
using json = nlohmann::json;

namespace {

constexpr std::size_t kMaxHookBody = 1u << 20;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string hex_lower(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

}  // namespace

std::string normalize_git_url(std::string_view in) {
  std::string url(in);
  while (!url.empty() && (url.back() == '/' || url.back() == ' ')) url.pop_back();
  if (url.size() > 4 && url.compare(url.size() - 4, 4, ".git") == 0) url.resize(url.size() - 4);
  auto scheme = url.find("://");
  std::string rest;
  if (scheme != std::string::npos) {
    std::string s = lower(url.substr(0, scheme));
    rest = url.substr(scheme + 3);
    if (s == "file") return rest;
  } else if (!url.empty() && url.front() == '/') {
    return url;
  } else {
    // scp-like user@host:path
    auto colon = url.find(':');
    if (colon == std::string::npos) return url;
    rest = url.substr(0, colon) + "/" + url.substr(colon + 1);
  }
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);
  if (auto at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
  if (auto colon = authority.rfind(':'); colon != std::string::npos && authority.find(']') == std::string::npos) {
    authority = authority.substr(0, colon);
  }
  while (path.size() > 1 && path[1] == '/') path.erase(0, 1);
  return lower(authority) + path;
}

Result<GitHookPush> parse_git_hook(std::string_view body) {
  if (body.size() > kMaxHookBody) return fail(Errc::too_large, "the webhook payload is over 1 MiB");
  json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return fail(Errc::invalid_argument, "the webhook payload is not a JSON object");
  GitHookPush out;
  if (!j.contains("ref") || !j["ref"].is_string()) {
    return fail(Errc::invalid_argument, "the webhook payload has no \"ref\": only push events are handled");
  }
  out.ref = j["ref"].get<std::string>();
  if (j.contains("deleted") && j["deleted"].is_boolean()) out.deleted = j["deleted"].get<bool>();
  if (j.contains("after") && j["after"].is_string() &&
      j["after"].get<std::string>() == "0000000000000000000000000000000000000000") {
    out.deleted = true;
  }
  for (const char* holder : {"repository", "project"}) {
    if (!j.contains(holder) || !j[holder].is_object()) continue;
    for (const char* key : {"clone_url", "ssh_url", "git_url", "html_url", "git_http_url", "git_ssh_url",
                            "web_url", "url"}) {
      const json& r = j[holder];
      if (r.contains(key) && r[key].is_string() && !r[key].get<std::string>().empty()) {
        out.urls.push_back(r[key].get<std::string>());
      }
    }
  }
  if (out.urls.empty()) {
    return fail(Errc::invalid_argument, "the webhook payload names no repository URL (repository.clone_url "
                                        "or project.git_http_url)");
  }
  return out;
}

Result<void> verify_git_hook(std::string_view secret, std::string_view body, std::string_view hub_sig256,
                             std::string_view gitea_sig, std::string_view gitlab_token) {
  const std::string expected = hex_lower(auth::hmac_sha256(secret, body));
  if (!hub_sig256.empty()) {
    if (hub_sig256.rfind("sha256=", 0) == 0 && auth::constant_time_equal(hub_sig256.substr(7), expected)) {
      return outcome::success();
    }
  } else if (!gitea_sig.empty()) {
    if (auth::constant_time_equal(gitea_sig, expected)) return outcome::success();
  } else if (!gitlab_token.empty()) {
    if (auth::constant_time_equal(gitlab_token, secret)) return outcome::success();
  } else {
    return fail(Errc::unauthenticated, "the webhook is not signed: send X-Hub-Signature-256 (GitHub, Gitea) "
                                       "or X-Gitlab-Token with the secret set as git.webhook_secret");
  }
  return fail(Errc::unauthenticated, "the webhook's signature does not match git.webhook_secret");
}

}  // namespace ck
