#include "http/framing.h"

#include <gtest/gtest.h>

namespace ck::http {
namespace {

bool ok(std::vector<std::string_view> te, std::vector<std::string_view> cl) {
  return !check_framing(te, cl).has_value();
}

TEST(Framing, AcceptsPlainForms) {
  EXPECT_TRUE(ok({}, {}));
  EXPECT_TRUE(ok({}, {"0"}));
  EXPECT_TRUE(ok({}, {"42"}));
  EXPECT_TRUE(ok({}, {"42, 42"}));       // a list of one repeated value is one value
  EXPECT_TRUE(ok({}, {"42", "42"}));     // so are repeated fields
  EXPECT_TRUE(ok({"chunked"}, {}));
  EXPECT_TRUE(ok({"Chunked"}, {}));
  EXPECT_TRUE(ok({" chunked "}, {}));
  EXPECT_TRUE(ok({"chunked,"}, {}));     // empty list elements are ignored
}

TEST(Framing, RefusesTransferEncodingNotEndingInChunked) {
  EXPECT_FALSE(ok({"gzip"}, {}));
  EXPECT_FALSE(ok({"chunked, gzip"}, {}));
  EXPECT_FALSE(ok({"chunked", "gzip"}, {}));
  EXPECT_FALSE(ok({"identity"}, {}));
  EXPECT_FALSE(ok({""}, {}));
  EXPECT_FALSE(ok({"chunked;x=1"}, {}));
  EXPECT_FALSE(ok({"xchunked"}, {}));
}

TEST(Framing, RefusesCodingsTheGatewayDoesNotDecode) {
  // Row 10 of issue 13: forwarded as Content-Length plus "Transfer-Encoding: gzip".
  EXPECT_FALSE(ok({"gzip, chunked"}, {}));
  EXPECT_FALSE(ok({"gzip", "chunked"}, {}));
  EXPECT_FALSE(ok({"chunked, chunked"}, {}));
}

TEST(Framing, RefusesBothFields) {
  EXPECT_FALSE(ok({"chunked"}, {"5"}));
  EXPECT_FALSE(ok({"gzip"}, {"5"}));
  auto e = check_framing({"chunked"}, {"5"});
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->message.find("both"), std::string::npos);
}

TEST(Framing, RefusesDifferingOrMalformedLengths) {
  EXPECT_FALSE(ok({}, {"5, 6"}));
  EXPECT_FALSE(ok({}, {"5", "6"}));
  EXPECT_FALSE(ok({}, {"-1"}));
  EXPECT_FALSE(ok({}, {"+5"}));
  EXPECT_FALSE(ok({}, {"5x"}));
  EXPECT_FALSE(ok({}, {""}));
  EXPECT_FALSE(ok({}, {"0x10"}));
  EXPECT_FALSE(ok({}, {"99999999999999999999"}));
}

}  // namespace
}  // namespace ck::http
