// Pure pieces of the backup module: sealing, key derivation, the JSON documents, keep_mask.
#include "backup/format.h"
#include "core/units.h"

#include <gtest/gtest.h>

#include "backup/backup.h"
#include "backup/crypto.h"

namespace ck::backup {
namespace {

Keys test_keys() {
  KdfParams k;
  k.n = 1024;
  k.salt = "0123456789abcdef";
  return derive_keys("secret", k).value();
}

TEST(BackupCrypto, SealRoundTripsAcrossSegments) {
  Keys keys = test_keys();
  for (std::size_t n :
       {std::size_t{0}, std::size_t{1}, kSegment - 1, kSegment, kSegment + 7, 2 * kSegment}) {
    std::string plain(n, 'x');
    for (std::size_t i = 0; i < n; ++i) plain[i] = static_cast<char>(i * 31);
    std::string sealed = seal(keys, plain);
    EXPECT_EQ(sealed.size(),
              n + kFrameOverhead * (n / kSegment + (n % kSegment || n == 0 ? 1 : 0)));
    auto back = unseal(keys, sealed, "x");
    ASSERT_TRUE(back) << n;
    EXPECT_EQ(back.value(), plain);
  }
}

TEST(BackupCrypto, TamperTruncateAndWrongKeyAreRefused) {
  Keys keys = test_keys();
  std::string plain(2 * kSegment + 10, 'a');
  std::string sealed = seal(keys, plain);
  std::string flipped = sealed;
  flipped[100] ^= 1;
  EXPECT_FALSE(unseal(keys, flipped, "x"));
  // Cut at a frame boundary: the new last frame was not sealed as last.
  EXPECT_FALSE(unseal(keys, std::string_view(sealed).substr(0, kSegment + kFrameOverhead), "x"));
  KdfParams other;
  other.n = 1024;
  other.salt = "0123456789abcdeX";
  Keys wrong = derive_keys("secret", other).value();
  auto r = unseal(wrong, sealed, "blob 1");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("blob 1"), std::string::npos);
}

TEST(BackupCrypto, BlobIdsAreSha256OrHmac) {
  EXPECT_EQ(blob_id(nullptr, "abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Keys keys = test_keys();
  EXPECT_NE(blob_id(&keys, "abc"), blob_id(nullptr, "abc"));
  EXPECT_EQ(blob_id(&keys, "abc").size(), 64u);
}

TEST(BackupCrypto, KdfRefusesHugeParameters) {
  KdfParams k;
  k.n = 1ull << 30;
  k.salt = "0123456789abcdef";
  EXPECT_FALSE(derive_keys("x", k));
  k.n = 1000;  // not a power of two
  EXPECT_FALSE(derive_keys("x", k));
}

TEST(BackupFormat, SnapshotRoundTrip) {
  Snapshot s;
  s.id = make_snapshot_id(1700000000);
  s.workspace = "site";
  s.time = 1700000000;
  s.host = "h";
  s.files.push_back(SnapshotFile{"a/b.txt", 3, 0644, 123, std::string(64, 'a')});
  s.bytes = 3;
  auto back = parse_snapshot(snapshot_json(s));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back.value().id, s.id);
  EXPECT_EQ(back.value().time, s.time);
  ASSERT_EQ(back.value().files.size(), 1u);
  EXPECT_EQ(back.value().files[0].path, "a/b.txt");
  EXPECT_EQ(back.value().files[0].mtime_ns, 123);
  EXPECT_TRUE(s.id.starts_with("20231114T221320Z-"));
}

TEST(BackupFormat, MalformedDocumentsFailCleanly) {
  for (std::string_view bad : {"", "[]", "{", "{\"id\":1}", "{\"packs\":{}}",
                               "{\"packs\":[{\"pack\":\"zz\",\"blobs\":[]}]}"}) {
    EXPECT_FALSE(parse_snapshot(bad)) << bad;
    EXPECT_FALSE(parse_repo_config(bad)) << bad;
  }
  EXPECT_FALSE(parse_index("{\"packs\":{}}"));
  EXPECT_FALSE(parse_index("{\"blobs\":[{\"id\":\"x\"}]}"));
  EXPECT_TRUE(parse_index("{}"));
}

TEST(BackupFormat, RepoConfigRoundTrip) {
  RepoConfig c;
  c.id = "0123456789abcdef";
  c.encrypted = true;
  c.kdf.salt = "saltsaltsaltsalt";
  c.check = "checkvalue";
  auto back = parse_repo_config(repo_config_json(c));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_TRUE(back.value().encrypted);
  EXPECT_EQ(back.value().kdf.salt, c.kdf.salt);
  EXPECT_EQ(back.value().check, c.check);
  EXPECT_EQ(back.value().kdf.n, 32768u);
}

TEST(BackupKeep, NewestOfEachBucket) {
  // Four snapshots in hour 10, two in hour 11 of the same day, one a day earlier.
  std::time_t day = 1700000000 - 1700000000 % 86400;
  std::vector<std::time_t> t = {day + 10 * 3600 + 1, day + 10 * 3600 + 2, day + 10 * 3600 + 3,
                                day + 10 * 3600 + 4, day + 11 * 3600 + 1, day + 11 * 3600 + 2,
                                day - 86400 + 5};
  Keep k{0, 2, 0, 0, 0};
  auto m = keep_mask(t, k);
  EXPECT_EQ(m, (std::vector<bool>{false, false, false, true, false, true, false}));
  k = Keep{0, 0, 2, 0, 0};
  m = keep_mask(t, k);
  EXPECT_EQ(m, (std::vector<bool>{false, false, false, false, false, true, true}));
  k = Keep{1, 0, 0, 0, 0};
  m = keep_mask(t, k);
  EXPECT_EQ(std::count(m.begin(), m.end(), true), 1);
  k = Keep{0, 0, 0, 0, 0};
  m = keep_mask(t, k);
  EXPECT_EQ(std::count(m.begin(), m.end(), true), 7);
}

TEST(BackupTime, PointInTimeIsLocal) {
  setenv("TZ", "UTC", 1);
  tzset();
  auto t = parse_point_in_time("2024-01-15 10:30:00");
  ASSERT_TRUE(t);
  EXPECT_EQ(format_utc(t.value()), "2024-01-15T10:30:00Z");
  setenv("TZ", "Europe/Paris", 1);
  tzset();
  t = parse_point_in_time("2024-01-15 10:30:00");
  ASSERT_TRUE(t);
  EXPECT_EQ(format_utc(t.value()), "2024-01-15T09:30:00Z");
  EXPECT_FALSE(parse_point_in_time("yesterday"));
  unsetenv("TZ");
  tzset();
}

}  // namespace
}  // namespace ck::backup
