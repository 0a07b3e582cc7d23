// What reaches the git layer from outside: a push webhook's body (POST /monitor/api/v1/git/hook,
// parsed after its signature is checked, but the signature check itself reads the body too),
// and remote URLs and branch names from workspace.json or the API. Parsed, checked or refused,
// never a crash; a URL that passes check_url() normalises and redacts without throwing.
#include <cstdint>
#include <string>
#include <string_view>

#include "git/repo.h"
#include "git/workspaces.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto push = ck::parse_git_hook(in);
  if (push.has_value()) {
    for (const auto& u : push.value().urls) (void)ck::normalize_git_url(u);
  }
  (void)ck::verify_git_hook("secret", in, in.substr(0, 80), "", "");
  std::string url(in.substr(0, 4096));
  (void)ck::git::check_url(url, false);
  (void)ck::git::check_url(url, true);
  (void)ck::git::redact_url(url);
  (void)ck::normalize_git_url(url);
  (void)ck::git::check_branch(in.substr(0, 300));
  return 0;
}
