// Backup repository documents read from a destination (snapshots, index objects, ck-backup.json)
// and sealed objects: parsed with size limits, never crash. A parsed snapshot or index is
// serialised again and must parse to the same counts.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "backup/crypto.h"
#include "backup/format.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ck::backup;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto s = parse_snapshot(text)) {
    auto again = parse_snapshot(snapshot_json(s.value()));
    if (!again || again.value().files.size() != s.value().files.size()) std::abort();
  }
  if (auto i = parse_index(text)) {
    auto again = parse_index(index_json(i.value()));
    if (!again || again.value().packs.size() != i.value().packs.size()) std::abort();
  }
  (void)parse_repo_config(text);
  static const Keys keys = [] {
    KdfParams k;
    k.n = 16;
    k.salt = "fuzzsaltfuzzsalt";
    return derive_keys("fuzz", k).value();
  }();
  (void)unseal(keys, text, "fuzz input");
  return 0;
}
