#include "backup/format.h"

#include "core/units.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace ck::backup {
namespace {

using json = nlohmann::json;

Result<json> parse_object(std::string_view text, std::size_t limit, std::string_view what) {
  if (text.size() > limit) {
    return fail(Errc::too_large,
                fmt::format("{} is larger than {} bytes: refusing to read it", what, limit));
  }
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(
        Errc::invalid_argument,
        fmt::format("{} is not valid JSON (damaged? run `cloudyknight backup check`)", what));
  }
  return j;
}

bool get_string(const json& j, const char* k, std::string& out, std::size_t max = 4096) {
  auto it = j.find(k);
  if (it == j.end() || !it->is_string()) return false;
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > max) return false;
  out = s;
  return true;
}

bool get_u64(const json& j, const char* k, std::uint64_t& out) {
  auto it = j.find(k);
  if (it == j.end() || !it->is_number_unsigned()) return false;
  out = it->get<std::uint64_t>();
  return true;
}

auto bad(std::string_view what, std::string_view why) {
  return fail(
      Errc::invalid_argument,
      fmt::format("{} is malformed: {} (damaged? run `cloudyknight backup check`)", what, why));
}

Result<std::vector<IndexBlob>> parse_blobs(const json& arr, bool in_pack) {
  std::vector<IndexBlob> out;
  if (!arr.is_array()) return bad("an index", "'blobs' is not a list");
  out.reserve(arr.size());
  for (const auto& b : arr) {
    IndexBlob ib;
    if (!b.is_object() || !get_string(b, "id", ib.id) || !is_hex_id(ib.id) ||
        !get_u64(b, "size", ib.size) || !get_u64(b, "length", ib.length)) {
      return bad("an index", "a blob lacks id, size or length");
    }
    if (in_pack && !get_u64(b, "offset", ib.offset)) {
      return bad("an index", "a packed blob lacks its offset");
    }
    if (ib.offset > (1ull << 40) || ib.length > (1ull << 40) ||
        (in_pack && ib.offset + ib.length > kMaxPackBytes)) {
      return bad("an index", "a blob's offset or length is out of range");
    }
    out.push_back(std::move(ib));
  }
  return out;
}

}  // namespace

bool is_hex_id(std::string_view s, std::size_t len) {
  if (s.size() != len) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool valid_snapshot_id(std::string_view s) {
  // 20260115T103000Z-0123abcd
  if (s.size() != 25 || s[8] != 'T' || s[15] != 'Z' || s[16] != '-') return false;
  for (std::size_t i = 0; i < 15; ++i) {
    if (i != 8 && !(s[i] >= '0' && s[i] <= '9')) return false;
  }
  return is_hex_id(s.substr(17), 8);
}

std::string make_snapshot_id(std::time_t t, int ms) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return fmt::format("{}-{:03x}{}", buf, std::clamp(ms, 0, 999),
                     to_hex(random_bytes(3)).substr(0, 5));
}

std::optional<std::time_t> parse_rfc3339(std::string_view s) {
  std::tm tm{};
  if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':' || s[19] != 'Z') {
    return std::nullopt;
  }
  auto num = [&](std::size_t at, std::size_t n) {
    int v = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return -1;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  int y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2),
      se = num(17, 2);
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
      se < 0 || se > 60) {
    return std::nullopt;
  }
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = se;
  return timegm(&tm);
}

Result<RepoConfig> parse_repo_config(std::string_view text) {
  constexpr std::string_view what = "the destination's ck-backup.json";
  BOOST_OUTCOME_TRY(j, parse_object(text, kMaxRepoConfig, what));
  RepoConfig c;
  std::uint64_t version = 0;
  if (!get_u64(j, "version", version) || version != 1) {
    return bad(what, "version is not 1 (written by a newer CloudyKnight?)");
  }
  if (!get_string(j, "id", c.id) || !is_hex_id(c.id, 16)) {
    return bad(what, "no 16-hex-digit id");
  }
  auto e = j.find("encryption");
  if (e == j.end() || e->is_null()) return c;
  if (!e->is_object()) return bad(what, "'encryption' is not an object");
  std::string cipher, kdf, salt, check;
  if (!get_string(*e, "cipher", cipher) || cipher != "aes-256-gcm" || !get_string(*e, "kdf", kdf) ||
      kdf != "scrypt") {
    return bad(what, "unknown cipher or kdf (expected aes-256-gcm and scrypt)");
  }
  if (!get_u64(*e, "n", c.kdf.n) || !get_u64(*e, "r", c.kdf.r) || !get_u64(*e, "p", c.kdf.p) ||
      !get_string(*e, "salt", salt) || !get_string(*e, "check", check)) {
    return bad(what, "the encryption lacks n, r, p, salt or check");
  }
  auto s = base64_decode(salt);
  auto ch = base64_decode(check);
  if (!s || !ch) return bad(what, "salt or check is not base64");
  c.encrypted = true;
  c.kdf.salt = s.value();
  c.check = ch.value();
  return c;
}

std::string repo_config_json(const RepoConfig& c) {
  json j = {{"version", c.version}, {"id", c.id}, {"encryption", nullptr}};
  if (c.encrypted) {
    j["encryption"] = {{"cipher", "aes-256-gcm"},
                       {"kdf", "scrypt"},
                       {"n", c.kdf.n},
                       {"r", c.kdf.r},
                       {"p", c.kdf.p},
                       {"salt", base64_encode(c.kdf.salt)},
                       {"check", base64_encode(c.check)}};
  }
  return j.dump();
}

Result<Snapshot> parse_snapshot(std::string_view text) {
  constexpr std::string_view what = "a snapshot";
  BOOST_OUTCOME_TRY(j, parse_object(text, kMaxSnapshot, what));
  Snapshot s;
  std::string time;
  if (!get_string(j, "id", s.id) || !valid_snapshot_id(s.id) ||
      !get_string(j, "workspace", s.workspace, 64) || !get_string(j, "time", time)) {
    return bad(what, "no valid id, workspace or time");
  }
  auto t = parse_rfc3339(time);
  if (!t) return bad(what, "time is not YYYY-MM-DDTHH:MM:SSZ");
  s.time = *t;
  get_string(j, "host", s.host, 256);
  get_u64(j, "bytes", s.bytes);
  get_u64(j, "added_bytes", s.added_bytes);
  get_u64(j, "added_objects", s.added_objects);
  auto files = j.find("files");
  if (files == j.end() || !files->is_array()) return bad(what, "no 'files' list");
  if (files->size() > kMaxFilesPerSnapshot) return bad(what, "too many files");
  s.files.reserve(files->size());
  for (const auto& f : *files) {
    SnapshotFile sf;
    std::uint64_t mode = 0;
    if (!f.is_object() || !get_string(f, "path", sf.path) || sf.path.empty() ||
        !get_u64(f, "size", sf.size) || !get_u64(f, "mode", mode) || mode > 07777 ||
        !get_string(f, "blob", sf.blob) || !is_hex_id(sf.blob)) {
      return bad(what, "a file lacks path, size, mode or blob");
    }
    sf.mode = static_cast<std::uint32_t>(mode);
    auto m = f.find("mtime");
    if (m != f.end() && m->is_number_integer()) sf.mtime_ns = m->get<std::int64_t>();
    s.files.push_back(std::move(sf));
  }
  return s;
}

std::string snapshot_json(const Snapshot& s) {
  json files = json::array();
  for (const auto& f : s.files) {
    files.push_back({{"path", f.path},
                     {"size", f.size},
                     {"mode", f.mode},
                     {"mtime", f.mtime_ns},
                     {"blob", f.blob}});
  }
  json j = {{"id", s.id},       {"workspace", s.workspace},     {"time", format_utc(s.time)},
            {"host", s.host},   {"files", std::move(files)},    {"files_count", s.files.size()},
            {"bytes", s.bytes}, {"added_bytes", s.added_bytes}, {"added_objects", s.added_objects}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Index> parse_index(std::string_view text) {
  BOOST_OUTCOME_TRY(j, parse_object(text, kMaxIndex, "an index object"));
  Index idx;
  auto packs = j.find("packs");
  if (packs != j.end()) {
    if (!packs->is_array()) return bad("an index", "'packs' is not a list");
    for (const auto& p : *packs) {
      IndexPack ip;
      if (!p.is_object() || !get_string(p, "pack", ip.pack) || !is_hex_id(ip.pack) ||
          !p.contains("blobs")) {
        return bad("an index", "a pack lacks its id or blobs");
      }
      BOOST_OUTCOME_TRY(blobs, parse_blobs(p["blobs"], true));
      ip.blobs = std::move(blobs);
      idx.packs.push_back(std::move(ip));
    }
  }
  auto blobs = j.find("blobs");
  if (blobs != j.end()) {
    BOOST_OUTCOME_TRY(b, parse_blobs(*blobs, false));
    idx.blobs = std::move(b);
  }
  return idx;
}

std::string index_json(const Index& index) {
  auto blob_list = [](const std::vector<IndexBlob>& blobs, bool in_pack) {
    json a = json::array();
    for (const auto& b : blobs) {
      json o = {{"id", b.id}, {"length", b.length}, {"size", b.size}};
      if (in_pack) o["offset"] = b.offset;
      a.push_back(std::move(o));
    }
    return a;
  };
  json packs = json::array();
  for (const auto& p : index.packs) {
    packs.push_back({{"pack", p.pack}, {"blobs", blob_list(p.blobs, true)}});
  }
  json j = {{"packs", std::move(packs)}, {"blobs", blob_list(index.blobs, false)}};
  return j.dump();
}

}  // namespace ck::backup
