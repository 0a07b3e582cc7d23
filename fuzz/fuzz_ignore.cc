// .gitignore / .ckignore text from a user's folder, matched against paths: the rules compile
// whatever the bytes are and matching never crashes nor hangs.
// Input: ignore-file text, a NUL byte, then paths one per line (a trailing '/' marks a folder).
#include <cstdint>
#include <string>
#include <string_view>

#include "storage/ignore.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto nul = in.find('\0');
  std::string_view rules = in.substr(0, nul);
  std::string_view paths = nul == std::string_view::npos ? std::string_view() : in.substr(nul + 1);
  ck::IgnoreRules ig;
  ig.add_file("", rules, ".gitignore");
  ig.add_file("sub", rules, "sub/.ckignore");
  while (!paths.empty()) {
    auto nl = paths.find('\n');
    std::string_view p = paths.substr(0, nl);
    paths = nl == std::string_view::npos ? std::string_view() : paths.substr(nl + 1);
    bool dir = !p.empty() && p.back() == '/';
    if (dir) p.remove_suffix(1);
    (void)ig.ignored(p, dir);
    (void)ig.ignored_entry(p, dir);
    (void)ig.why(p, dir);
  }
  return 0;
}
