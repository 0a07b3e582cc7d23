#include "cli/contexts.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace ck::cli {
namespace {

namespace fs = std::filesystem;

TEST(Contexts, ParsesWhatItFormats) {
  Contexts c;
  c.put({"prod", "https://ck.example.com", "ck_secret", "tok_1", "ann", "/etc/ca.pem"});
  c.put({"local", "http://127.0.0.1:8080", "admin-token", "", "", ""});
  c.current = "local";
  auto back = parse_contexts(format_contexts(c), "contexts.yaml");
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ(back.value().current, "local");
  ASSERT_EQ(back.value().all.size(), 2u);
  const Context* p = back.value().find("prod");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->url, "https://ck.example.com");
  EXPECT_EQ(p->token, "ck_secret");
  EXPECT_EQ(p->token_id, "tok_1");
  EXPECT_EQ(p->user, "ann");
  EXPECT_EQ(p->cacert, "/etc/ca.pem");
  EXPECT_EQ(back.value().find("local")->token_id, "");
}

TEST(Contexts, PutReplacesAndRemoveClearsCurrent) {
  Contexts c;
  c.put({"a", "http://a", "t1", "", "", ""});
  c.put({"a", "http://a2", "t2", "", "", ""});
  ASSERT_EQ(c.all.size(), 1u);
  EXPECT_EQ(c.all[0].url, "http://a2");
  c.current = "a";
  EXPECT_FALSE(c.remove("b"));
  EXPECT_TRUE(c.remove("a"));
  EXPECT_EQ(c.current, "");
}

TEST(Contexts, EmptyTextIsNoContexts) {
  auto c = parse_contexts("", "f");
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c.value().all.empty());
  EXPECT_EQ(c.value().current, "");
}

TEST(Contexts, BadYamlIsOneClearError) {
  auto c = parse_contexts("current: [unclosed\ncontexts: {",
                          "/home/u/.config/cloudyknight/contexts.yaml");
  ASSERT_TRUE(c.has_error());
  EXPECT_EQ(c.error().code, Errc::invalid_argument);
  EXPECT_NE(c.error().message.find("/home/u/.config/cloudyknight/contexts.yaml: line "),
            std::string::npos)
      << c.error().message;
  EXPECT_NE(c.error().message.find("invalid YAML"), std::string::npos) << c.error().message;
  EXPECT_EQ(c.error().message.find('\n'), std::string::npos);
}

TEST(Contexts, WrongShapesAreRefused) {
  struct Case {
    const char* text;
    const char* says;
  };
  for (const Case& t :
       {Case{"- a\n- b\n", "expected a mapping"},
        Case{"contexts: 3\n", "'contexts' must be a list"},
        Case{"contexts:\n  - name: a\n", "has no url"},
        Case{"contexts:\n  - name: 'bad name'\n    url: http://x\n", "not a valid context name"},
        Case{"contexts:\n  - {name: a, url: http://x}\n  - {name: a, url: http://y}\n", "twice"},
        Case{"contexts:\n  - {name: a, url: http://x, token: [1]}\n", "'token' must be a string"},
        Case{"current: b\ncontexts:\n  - {name: a, url: http://x}\n", "not among the contexts"}}) {
    auto c = parse_contexts(t.text, "f");
    ASSERT_TRUE(c.has_error()) << t.text;
    EXPECT_NE(c.error().message.find(t.says), std::string::npos)
        << t.text << " -> " << c.error().message;
  }
}

TEST(Contexts, OversizedTextIsRefused) {
  std::string big(kMaxContextsFile + 1, '#');
  auto c = parse_contexts(big, "f");
  ASSERT_TRUE(c.has_error());
  EXPECT_NE(c.error().message.find("over"), std::string::npos);
}

TEST(Contexts, UrlsAndNames) {
  EXPECT_EQ(normalize_url("https://ck.example.com/").value(), "https://ck.example.com");
  EXPECT_EQ(normalize_url("http://127.0.0.1:8080/monitor/").value(), "http://127.0.0.1:8080");
  EXPECT_TRUE(normalize_url("ck.example.com").has_error());
  EXPECT_TRUE(normalize_url("ftp://x").has_error());
  EXPECT_TRUE(normalize_url("http://x/?a=b").has_error());
  EXPECT_TRUE(normalize_url("http:///path").has_error());
  EXPECT_EQ(context_name_for_url("http://127.0.0.1:8080"), "127.0.0.1:8080");
  EXPECT_EQ(context_name_for_url("https://ck.example.com/x"), "ck.example.com");
  EXPECT_TRUE(is_valid_context_name("work@ck.example.com:443"));
  EXPECT_FALSE(is_valid_context_name(""));
  EXPECT_FALSE(is_valid_context_name("a b"));
  EXPECT_FALSE(is_valid_context_name(std::string(65, 'a')));
}

TEST(Contexts, PathFollowsXdgThenHome) {
  auto env = [](std::map<std::string, std::string> vars) {
    return [vars](const std::string& k) -> std::optional<std::string> {
      auto it = vars.find(k);
      return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
  };
  EXPECT_EQ(contexts_path(env({{"XDG_CONFIG_HOME", "/x"}, {"HOME", "/h"}})).value(),
            fs::path("/x/cloudyknight/contexts.yaml"));
  EXPECT_EQ(contexts_path(env({{"HOME", "/h"}})).value(),
            fs::path("/h/.config/cloudyknight/contexts.yaml"));
  EXPECT_TRUE(contexts_path(env({})).has_error());
}

TEST(Contexts, SavedFileIsPrivateAndReplacedAtomically) {
  fs::path dir = fs::temp_directory_path() / ("ck-contexts-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::path file = dir / "cloudyknight" / "contexts.yaml";
  EXPECT_TRUE(load_contexts(file).value().all.empty());  // no file yet: no contexts
  ::umask(022);
  Contexts c;
  c.put({"a", "http://a", "ck_1", "", "", ""});
  c.current = "a";
  ASSERT_TRUE(save_contexts(file, c).has_value());
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(file.parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // A second save replaces the file (a new inode) and leaves no temporary file behind.
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  ino_t before = st.st_ino;
  c.put({"b", "http://b", "ck_2", "", "", ""});
  ASSERT_TRUE(save_contexts(file, c).has_value());
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_NE(st.st_ino, before);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(file.parent_path())) ++entries;
  EXPECT_EQ(entries, 1);
  auto back = load_contexts(file);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back.value().all.size(), 2u);
  // A broken file is an error naming it, not an empty set.
  std::ofstream(file) << "contexts: [";
  auto broken = load_contexts(file);
  ASSERT_TRUE(broken.has_error());
  EXPECT_NE(broken.error().message.find(file.string()), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ck::cli
