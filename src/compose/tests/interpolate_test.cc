#include <gtest/gtest.h>

#include "compose/model.h"
#include "compose/tests/test_util.h"

namespace ck::compose {
namespace {

using testing::caught;

const Vars kVars = {{"SET", "value"}, {"EMPTY", ""}, {"PORT", "3000"}};
const Location kWhere{"docker-compose.yml", 7, "services.web.image"};

std::string run(std::string_view text) { return interpolate(text, kVars, kWhere); }

TEST(ComposeInterpolate, PlainAndBraced) {
  EXPECT_EQ(run("no variables"), "no variables");
  EXPECT_EQ(run("$SET"), "value");
  EXPECT_EQ(run("${SET}"), "value");
  EXPECT_EQ(run("a${SET}b$SET-c"), "avaluebvalue-c");
  EXPECT_EQ(run("$UNSET"), "");
  EXPECT_EQ(run("${UNSET}"), "");
  EXPECT_EQ(run("${PORT}:${PORT}"), "3000:3000");
}

TEST(ComposeInterpolate, DollarDollarIsALiteralDollar) {
  EXPECT_EQ(run("$$"), "$");
  EXPECT_EQ(run("$$SET"), "$SET");
  EXPECT_EQ(run("cost $$5 and $${SET}"), "cost $5 and ${SET}");
}

TEST(ComposeInterpolate, DefaultWhenUnsetOrEmpty) {
  EXPECT_EQ(run("${UNSET:-d}"), "d");
  EXPECT_EQ(run("${EMPTY:-d}"), "d");
  EXPECT_EQ(run("${SET:-d}"), "value");
  EXPECT_EQ(run("${UNSET:-}"), "");
  EXPECT_EQ(run("${UNSET:-a b:c}"), "a b:c");
}

TEST(ComposeInterpolate, DefaultWhenUnsetOnly) {
  EXPECT_EQ(run("${UNSET-d}"), "d");
  EXPECT_EQ(run("${EMPTY-d}"), "");
  EXPECT_EQ(run("${SET-d}"), "value");
}

TEST(ComposeInterpolate, RequiredWhenUnsetOrEmpty) {
  EXPECT_EQ(run("${SET:?need it}"), "value");
  Error e = caught([] { run("${EMPTY:?set EMPTY please}"); });
  EXPECT_EQ(e.where().line, 7);
  EXPECT_EQ(e.where().key, "services.web.image");
  EXPECT_NE(e.message().find("required variable EMPTY is empty: set EMPTY please"),
            std::string::npos);
  Error u = caught([] { run("${UNSET:?}"); });
  EXPECT_NE(u.message().find("UNSET is not set"), std::string::npos);
}

TEST(ComposeInterpolate, RequiredWhenUnsetOnly) {
  EXPECT_EQ(run("${EMPTY?x}"), "");
  Error e = caught([] { run("${UNSET?missing}"); });
  EXPECT_NE(e.message().find("UNSET is not set: missing"), std::string::npos);
}

TEST(ComposeInterpolate, Alternatives) {
  EXPECT_EQ(run("${SET:+alt}"), "alt");
  EXPECT_EQ(run("${EMPTY:+alt}"), "");
  EXPECT_EQ(run("${UNSET:+alt}"), "");
  EXPECT_EQ(run("${SET+alt}"), "alt");
  EXPECT_EQ(run("${EMPTY+alt}"), "alt");
  EXPECT_EQ(run("${UNSET+alt}"), "");
}

TEST(ComposeInterpolate, NestedDefaults) {
  EXPECT_EQ(run("${UNSET:-${SET}}"), "value");
  EXPECT_EQ(run("${UNSET:-${ALSO_UNSET:-deep}}"), "deep");
  EXPECT_EQ(run("${SET:+[${PORT}]}"), "[3000]");
  EXPECT_EQ(run("${UNSET:-$$}"), "$");
}

TEST(ComposeInterpolate, MalformedReferencesAreErrors) {
  for (const char* bad :
       {"${", "${SET", "${}", "${1X}", "${SET!x}", "$", "a $ b", "$1", "${SET:x}"}) {
    Error e = caught([&] { run(bad); });
    EXPECT_EQ(e.where().key, "services.web.image") << bad;
  }
}

TEST(ComposeInterpolate, BoundedNestingAndSize) {
  std::string deep;
  for (int i = 0; i < 40; ++i) {
    deep += "${U:-";
  }
  deep += "x" + std::string(40, '}');
  EXPECT_NE(testing::error_of([&] { run(deep); }).find("nest deeper"), std::string::npos);
  Vars big = {{"B", std::string(1 << 19, 'b')}};
  EXPECT_NE(testing::error_of([&] { interpolate("${B}${B}${B}", big, kWhere); }).find("1 MiB"),
            std::string::npos);
}

}  // namespace
}  // namespace ck::compose
