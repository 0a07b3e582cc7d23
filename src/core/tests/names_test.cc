#include <gtest/gtest.h>

#include "core/names.h"

namespace ck {
namespace {

TEST(WorkspaceNames, AcceptsTheDocumentedForm) {
  for (const std::string& n : std::vector<std::string>{"a", "www", "my-app", "0day", "a1-b2-c3", std::string(63, 'x')}) {
    EXPECT_TRUE(is_valid_workspace_name(n)) << n;
  }
}

TEST(WorkspaceNames, RejectsEverythingElseWithAReason) {
  struct Case {
    std::string name;
    std::string reason;
  };
  for (const auto& c : std::vector<Case>{{"", "empty"},
                                         {std::string(64, 'x'), "longer than 63"},
                                         {"-app", "must start"},
                                         {"My-App", "uppercase"},
                                         {"my_app", "'_'"},
                                         {"my.app", "'.'"},
                                         {"a/b", "'/'"},
                                         {"..", "must start"},
                                         {"monitor", "reserved"}}) {
    auto r = validate_workspace_name(c.name);
    ASSERT_TRUE(r.has_error()) << c.name;
    EXPECT_NE(r.error().message.find(c.reason), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("rename the folder"), std::string::npos);
  }
}

TEST(WorkspaceNames, ParseGivesAStrongType) {
  auto n = WorkspaceName::parse("site");
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n.value().str(), "site");
  EXPECT_TRUE(WorkspaceName::parse("Site").has_error());
}

}  // namespace
}  // namespace ck
