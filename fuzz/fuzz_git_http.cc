// What reaches git push to deploy from outside (git/http_backend.h, git/push_repos.h): the
// Authorization header (Basic or Bearer), the request path and query under /monitor/git, the
// CGI's header block (git http-backend's output, parsed before it is relayed) and the ref lines
// a push's hook sends. Parsed or refused, never a crash; a parsed head's body offset lies inside
// the input.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "git/http_backend.h"
#include "git/push_repos.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)ck::git::token_of_authorization(in);
  auto q = in.find('?');
  std::string_view path = in.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : in.substr(q + 1);
  for (const char* method : {"GET", "POST", "HEAD"}) {
    if (auto p = ck::git::classify_git_path(method, path, query)) {
      if (p->name.find('/') != std::string::npos) std::abort();  // one path segment only
    }
  }
  auto head = ck::git::parse_cgi_head(in);
  if (head.has_value() && head.value() && head.value()->body_offset > in.size()) std::abort();
  for (const auto& u : ck::git::parse_ref_updates(in)) {
    (void)u.branch();
    (void)u.deleted();
    (void)u.created();
  }
  return 0;
}
