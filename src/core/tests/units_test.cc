#include <gtest/gtest.h>

#include "core/units.h"

namespace ck {
namespace {
using namespace std::chrono_literals;

TEST(Units, Durations) {
  EXPECT_EQ(parse_duration("300ms").value(), 300ms);
  EXPECT_EQ(parse_duration("30s").value(), 30s);
  EXPECT_EQ(parse_duration("10m").value(), 10min);
  EXPECT_EQ(parse_duration("2h").value(), 2h);
  EXPECT_EQ(parse_duration("5").value(), 5s);
  EXPECT_EQ(parse_duration("1.5s").value(), 1500ms);
  for (const char* bad : {"", "s", "-1s", "5x", "ten"}) {
    auto r = parse_duration(bad);
    ASSERT_TRUE(r.has_error()) << bad;
    EXPECT_NE(r.error().message.find("30s"), std::string::npos);
  }
  EXPECT_EQ(format_duration(90s), "90s");
  EXPECT_EQ(format_duration(2min), "2m");
  EXPECT_EQ(format_duration(250ms), "250ms");
}

TEST(Units, Sizes) {
  EXPECT_EQ(parse_size("512").value(), 512u);
  EXPECT_EQ(parse_size("16k").value(), 16u << 10);
  EXPECT_EQ(parse_size("64m").value(), 64u << 20);
  EXPECT_EQ(parse_size("1g").value(), 1ull << 30);
  EXPECT_EQ(parse_size("1GiB").value(), 1ull << 30);
  EXPECT_EQ(parse_size("2MB").value(), 2ull << 20);
  EXPECT_TRUE(parse_size("12q").has_error());
  EXPECT_TRUE(parse_size("").has_error());
  EXPECT_EQ(format_size(64ull << 20), "64m");
}

}  // namespace
}  // namespace ck

// core/user_dirs.h: the XDG rules for the per-user cache folder.
#include <cstdlib>

#include "core/user_dirs.h"

TEST(UserDirs, CacheFollowsXdgThenHome) {
  const char* old_xdg = std::getenv("XDG_CACHE_HOME");
  const char* old_home = std::getenv("HOME");
  std::string xdg = old_xdg ? old_xdg : "", home = old_home ? old_home : "";
  ::setenv("XDG_CACHE_HOME", "/var/cache/me", 1);
  ::setenv("HOME", "/home/me", 1);
  EXPECT_EQ(ck::user_cache_dir(), std::filesystem::path("/var/cache/me"));
  ::setenv("XDG_CACHE_HOME", "relative/cache", 1);  // not absolute: ignored, as the spec says
  EXPECT_EQ(ck::user_cache_dir(), std::filesystem::path("/home/me/.cache"));
  ::unsetenv("XDG_CACHE_HOME");
  ::unsetenv("HOME");
  EXPECT_EQ(ck::user_cache_dir(), std::filesystem::temp_directory_path());
  old_xdg ? ::setenv("XDG_CACHE_HOME", xdg.c_str(), 1) : ::unsetenv("XDG_CACHE_HOME");
  old_home ? ::setenv("HOME", home.c_str(), 1) : ::unsetenv("HOME");
}

// parse_utc reads what the Docker engine (CreatedAt) and S3 (Initiated) write.
TEST(Units, ParseUtc) {
  EXPECT_EQ(ck::parse_utc("2026-12-06T19:40:15Z"), std::optional<std::time_t>(1796586015));
  EXPECT_EQ(ck::parse_utc(ck::format_utc(1796586015)), std::optional<std::time_t>(1796586015));
  EXPECT_EQ(ck::parse_utc("2026-12-06T19:40:15.123456789Z"), std::optional<std::time_t>(1796586015));
  EXPECT_EQ(ck::parse_utc("2026-12-06T20:40:15+01:00"), std::optional<std::time_t>(1796586015));
  EXPECT_EQ(ck::parse_utc("2026-12-06T18:40:15.5-01:00"), std::optional<std::time_t>(1796586015));
  for (const char* bad : {"", "2026-12-06", "2026-12-06T19:40", "2026-13-06T19:40:15Z", "2026-12-06T19:40:15X",
                          "2026-12-06T19:40:15+0100", "x026-12-06T19:40:15Z", "2026-12-06T19:40:15Zjunk"}) {
    EXPECT_EQ(ck::parse_utc(bad), std::nullopt) << bad;
  }
}
