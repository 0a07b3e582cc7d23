#include "gateway/tls_names.h"

#include <gtest/gtest.h>

namespace ck {
namespace {

TEST(TlsNames, ExactAndWildcard) {
  EXPECT_TRUE(certificate_name_matches("example.test", "example.test"));
  EXPECT_TRUE(certificate_name_matches("Example.TEST", "example.test."));
  EXPECT_FALSE(certificate_name_matches("example.test", "a.example.test"));
  EXPECT_TRUE(certificate_name_matches("*.example.test", "a.example.test"));
  EXPECT_TRUE(certificate_name_matches("*.example.test", "A-b.Example.Test"));
  // One label only, and never the bare domain.
  EXPECT_FALSE(certificate_name_matches("*.example.test", "example.test"));
  EXPECT_FALSE(certificate_name_matches("*.example.test", "a.b.example.test"));
  EXPECT_FALSE(certificate_name_matches("*.example.test", ".example.test"));
  EXPECT_FALSE(certificate_name_matches("*.example.test", "aexample.test"));
  // Wildcards elsewhere, or over a whole suffix, match nothing.
  EXPECT_FALSE(certificate_name_matches("*.test", "test"));
  EXPECT_FALSE(certificate_name_matches("a.*.test", "a.b.test"));
  EXPECT_FALSE(certificate_name_matches("*.*.test", "a.b.test"));
  EXPECT_FALSE(certificate_name_matches("*", "localhost"));
  EXPECT_FALSE(certificate_name_matches("", ""));
}

TEST(TlsNames, ExactBeforeWildcardElseDefault) {
  std::vector<std::vector<std::string>> names = {
      {"example.test", "*.example.test"},  // 0: the default
      {"other.test"},                      // 1
      {"api.example.test"},                // 2: exact beats 0's wildcard
      {"*.other.test"},                    // 3
  };
  EXPECT_EQ(pick_certificate(names, "example.test"), 0u);
  EXPECT_EQ(pick_certificate(names, "site.example.test"), 0u);
  EXPECT_EQ(pick_certificate(names, "API.example.test"), 2u);
  EXPECT_EQ(pick_certificate(names, "other.test"), 1u);
  EXPECT_EQ(pick_certificate(names, "x.other.test"), 3u);
  EXPECT_EQ(pick_certificate(names, "unknown.test"), 0u);
  EXPECT_EQ(pick_certificate(names, ""), 0u);
  EXPECT_EQ(pick_certificate({}, "a.test"), 0u);
}

}  // namespace
}  // namespace ck
