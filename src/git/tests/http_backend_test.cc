// git/http_backend.h and git/push_repos.h: the CGI environment (nothing of ours leaks into it),
// the CGI header parser, credentials and path classification, the ref lines of a hook, the
// process runner (streaming, stdin, the passed descriptor, timeouts, cancellation) and, as the
// oracle, Debian's own `git http-backend` answering through it from a repository
// ensure_push_repo() made.

#include "git/http_backend.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/testing/temp_dir.h"
#include "git/push_repos.h"
#include "git/repo.h"

namespace ck::git {
namespace {
namespace fs = std::filesystem;

bool has(const std::vector<std::string>& env, const std::string& entry) {
  return std::find(env.begin(), env.end(), entry) != env.end();
}

CgiRequest receive_pack() {
  CgiRequest r;
  r.method = "POST";
  r.path_info = "/blog.git/git-receive-pack";
  r.content_type = "application/x-git-receive-pack-request";
  r.content_length = 1234;
  r.remote_user = "user:ann";
  r.remote_addr = "127.0.0.1";
  return r;
}

TEST(CgiEnv, HoldsTheCgiVariablesAndNothingOfTheDaemons) {
  ::setenv("AWS_SECRET_ACCESS_KEY", "leak", 1);
  ::setenv("CK_AUTH_ADMIN_TOKEN", "leak", 1);
  auto env =
      cgi_env(receive_pack(), "/data/git/repos", "/data/git/home", {{"CK_GIT_HOOK_FD", "3"}});
  for (const auto& e : env) {
    EXPECT_EQ(e.find("leak"), std::string::npos) << e;
    EXPECT_FALSE(e.starts_with("AWS_")) << e;
  }
  for (const char* want :
       {"REQUEST_METHOD=POST", "PATH_INFO=/blog.git/git-receive-pack",
        "QUERY_STRING=", "CONTENT_TYPE=application/x-git-receive-pack-request",
        "CONTENT_LENGTH=1234", "REMOTE_USER=user:ann", "REMOTE_ADDR=127.0.0.1",
        "GIT_PROJECT_ROOT=/data/git/repos", "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1",
        "HOME=/data/git/home", "PATH=/usr/bin:/bin", "CK_GIT_HOOK_FD=3"}) {
    EXPECT_TRUE(has(env, want)) << want;
  }
  // Everything there is listed above or is a fixed CGI/locale variable.
  EXPECT_LE(env.size(), 20u);
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::unsetenv("CK_AUTH_ADMIN_TOKEN");
}

TEST(CgiEnv, GetHasNoLengthAndGzipIsPassedOn) {
  CgiRequest r;
  r.method = "GET";
  r.path_info = "/blog.git/info/refs";
  r.query = "service=git-upload-pack";
  auto env = cgi_env(r, "/r", "/h");
  EXPECT_TRUE(has(env, "QUERY_STRING=service=git-upload-pack"));
  EXPECT_TRUE(std::none_of(env.begin(), env.end(),
                           [](const std::string& e) { return e.starts_with("CONTENT_LENGTH="); }));
  r.method = "POST";
  r.content_encoding = "gzip";
  env = cgi_env(r, "/r", "/h");
  EXPECT_TRUE(has(env, "HTTP_CONTENT_ENCODING=gzip"));
  r.git_protocol = "version=2";
  EXPECT_TRUE(has(cgi_env(r, "/r", "/h"), "HTTP_GIT_PROTOCOL=version=2"));
  r.git_protocol = "version=2 $(reboot)";
  env = cgi_env(r, "/r", "/h");
  EXPECT_TRUE(std::none_of(env.begin(), env.end(), [](const std::string& e) {
    return e.starts_with("HTTP_GIT_PROTOCOL");
  }));
  EXPECT_TRUE(has(env, "CONTENT_LENGTH=0"));
}

TEST(CgiEnv, DropsValuesThatCouldSmuggleAVariable) {
  CgiRequest r = receive_pack();
  r.content_type = "text/plain\nLD_PRELOAD=/tmp/x.so";
  r.remote_user = std::string("a\0b", 3);
  auto env = cgi_env(r, "/r", "/h", {{"BAD=KEY", "x"}, {"", "y"}});
  for (const auto& e : env) {
    EXPECT_EQ(e.find("LD_PRELOAD"), std::string::npos) << e;
    EXPECT_FALSE(e.starts_with("CONTENT_TYPE=")) << e;
    EXPECT_FALSE(e.starts_with("REMOTE_USER=")) << e;
    EXPECT_FALSE(e.starts_with("BAD=")) << e;
    EXPECT_FALSE(e.starts_with("=")) << e;
  }
}

TEST(CgiHead, ParsesStatusTypeAndHeaders) {
  std::string out =
      "Status: 404 Not Found\r\nContent-Type: text/plain\r\nExpires: Fri, 01 Jan 1980 00:00:00 "
      "GMT\r\n"
      "Content-Length: 9\r\nConnection: close\r\n\r\nnot found";
  auto r = parse_cgi_head(out);
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r.value());
  const auto& p = *r.value();
  EXPECT_EQ(p.head.status, 404);
  EXPECT_EQ(p.head.content_type, "text/plain");
  ASSERT_EQ(p.head.headers.size(), 1u);  // framing headers are the gateway's
  EXPECT_EQ(p.head.headers[0].first, "Expires");
  EXPECT_EQ(out.substr(p.body_offset), "not found");
}

TEST(CgiHead, LfOnlyAndDefaults) {
  auto r = parse_cgi_head("Cache-Control: no-cache\n\nbody");
  ASSERT_TRUE(r.has_value() && r.value());
  EXPECT_EQ(r.value()->head.status, 200);
  EXPECT_EQ(r.value()->head.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(r.value()->body_offset, 25u);
}

TEST(CgiHead, IncompleteUntilTheBlankLine) {
  for (std::string_view partial :
       {"", "Status: 200", "Status: 200 OK\r\n", "Content-Type: a/b\r\nX: y\r\n"}) {
    auto r = parse_cgi_head(partial);
    ASSERT_TRUE(r.has_value()) << partial;
    EXPECT_FALSE(r.value()) << partial;
  }
}

TEST(CgiHead, RefusesMalformedBlocks) {
  for (const std::string& bad : std::vector<std::string>{
           "no colon here\r\n\r\n", ": empty name\r\n\r\n", "Bad Name: x\r\n\r\n",
           "Status: 99 Low\r\n\r\n", "Status: 600 High\r\n\r\n", "Status: 2000\r\n\r\n",
           "Status: abc\r\n\r\n",
           "X: a\x01"
           "b\r\n\r\n"}) {
    EXPECT_TRUE(parse_cgi_head(bad).has_error()) << bad;
  }
  std::string huge = "X: " + std::string(kMaxCgiHead, 'a');
  EXPECT_TRUE(parse_cgi_head(huge).has_error());
  EXPECT_TRUE(parse_cgi_head(huge + "\r\n\r\n").has_error());
}

TEST(Credentials, BasicPasswordOrBearer) {
  // "x:ck_token" and "git:ck_token"
  EXPECT_EQ(token_of_authorization("Basic eDpja190b2tlbg=="), "ck_token");
  EXPECT_EQ(token_of_authorization("basic Z2l0OmNrX3Rva2Vu"), "ck_token");
  EXPECT_EQ(token_of_authorization("Bearer ck_abc"), "ck_abc");
  EXPECT_EQ(token_of_authorization("Basic OmNrX3Rva2Vu"), "ck_token");  // ":ck_token"
  EXPECT_EQ(token_of_authorization("Basic eDphOmI="), "a:b");           // "x:a:b": the rest
  EXPECT_FALSE(token_of_authorization(""));
  EXPECT_FALSE(token_of_authorization("Basic"));
  EXPECT_FALSE(token_of_authorization("Basic eA=="));  // "x": no password
  EXPECT_FALSE(token_of_authorization("Basic eDo="));  // "x:": empty
  EXPECT_FALSE(token_of_authorization("Basic !!!!"));
  EXPECT_FALSE(token_of_authorization("Digest abc"));
  EXPECT_FALSE(token_of_authorization("Bearer " + std::string(5000, 'a')));
}

TEST(GitPaths, OnlyTheSmartProtocol) {
  auto a = classify_git_path("GET", "/blog.git/info/refs", "service=git-upload-pack");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->name, "blog");
  EXPECT_EQ(a->service, GitService::upload_pack);
  EXPECT_TRUE(a->advertisement);
  auto b = classify_git_path("POST", "/blog.git/git-receive-pack", "");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->service, GitService::receive_pack);
  EXPECT_FALSE(b->advertisement);
  EXPECT_TRUE(classify_git_path("HEAD", "/blog.git/info/refs", "service=git-receive-pack"));
  EXPECT_EQ(classify_git_path("GET", "/Bad_Name.git/info/refs", "service=git-upload-pack")->name,
            "Bad_Name");
  for (auto [m, p, q] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"GET", "/blog.git/info/refs", ""},
           {"GET", "/blog.git/info/refs", "service=git-upload-archive"},
           {"GET", "/blog.git/info/refs", "service=git-upload-pack&x=1"},
           {"POST", "/blog.git/info/refs", "service=git-upload-pack"},
           {"GET", "/blog.git/git-upload-pack", ""},
           {"POST", "/blog.git/git-upload-pack", "x=1"},
           {"GET", "/blog.git/HEAD", ""},
           {"GET", "/blog.git/objects/info/packs", ""},
           {"GET", "/blog.git/config", ""},
           {"GET", "/blog/info/refs", "service=git-upload-pack"},
           {"GET", "/.git/info/refs", "service=git-upload-pack"},
           {"GET", "blog.git/info/refs", "service=git-upload-pack"},
           {"GET", "/blog.git/../x.git/info/refs", "service=git-upload-pack"},
           {"POST", "/blog.git/git-receive-pack/x", ""}}) {
    EXPECT_FALSE(classify_git_path(m, p, q)) << m << " " << p << "?" << q;
  }
}

TEST(RefUpdates, ParsesTheHookLines) {
  std::string zeros(40, '0'), a(40, 'a'), b(40, 'b');
  auto u =
      parse_ref_updates(zeros + " " + a + " refs/heads/main\n" + a + " " + zeros +
                        " refs/heads/old\n" + b + " " + a + " refs/tags/v1\n" + "garbage line\n" +
                        "zz " + a + " refs/heads/x\n" + a + " " + b + " refs/heads/feature/one");
  ASSERT_EQ(u.size(), 4u);
  EXPECT_TRUE(u[0].created());
  EXPECT_FALSE(u[0].deleted());
  EXPECT_EQ(u[0].branch(), "main");
  EXPECT_TRUE(u[1].deleted());
  EXPECT_EQ(u[2].branch(), "");
  EXPECT_EQ(u[3].branch(), "feature/one");
}

TEST(PushRepo, MadeBareWithTheDaemonsHookOnly) {
  test_util::TempDir tmp("push-repo");
  fs::path repo = tmp / "blog.git";
  ASSERT_TRUE(ensure_push_repo(repo, "/opt/ck's/cloudyknight").has_value());
  EXPECT_TRUE(fs::exists(repo / "HEAD"));
  EXPECT_FALSE(fs::exists(repo / ".git"));
  EXPECT_EQ(head_branch(repo).value(), "main");
  EXPECT_FALSE(has_branch(repo, "main"));
  fs::path hook = repo / "hooks" / "post-receive";
  auto read = [&] {
    std::ifstream in(hook);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  EXPECT_EQ(read(), post_receive_script("/opt/ck's/cloudyknight"));
  EXPECT_NE(read().find("exec '/opt/ck'\\''s/cloudyknight' git-hook post-receive"),
            std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat(hook.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  // Tampered with: the next push rewrites it.
  { std::ofstream(hook) << "#!/bin/sh\ncurl evil\n"; }
  ASSERT_TRUE(ensure_push_repo(repo, "/usr/bin/cloudyknight").has_value());
  EXPECT_EQ(read(), post_receive_script("/usr/bin/cloudyknight"));
  EXPECT_EQ(remote_url(repo), "");  // a bare repository has no origin
  EXPECT_EQ(remote_url(tmp / "nothing-here"), "");
  if (::access("/usr/bin/git", X_OK) == 0) {
    std::string cmd = "git init -q " + (tmp / "wc").string() + " && git -C " +
                      (tmp / "wc").string() +
                      " remote add origin https://u:secret@example.test/team/site.git";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    EXPECT_EQ(remote_url(tmp / "wc"), "https://u:secret@example.test/team/site.git");
    EXPECT_EQ(remote_url(tmp / "wc" / "sub"), "");  // no search upwards
  }
  if (::access("/usr/bin/git", X_OK) == 0) {
    // Two commits in a row and one beside them.
    std::string wc = (tmp / "hist").string();
    std::string cmd =
        "git init -q -b main " + wc + " && cd " + wc +
        " && git -c user.name=a -c user.email=a@b commit -q --allow-empty -m one"
        " && git -c user.name=a -c user.email=a@b commit -q --allow-empty -m two"
        " && git checkout -q --orphan other && git -c user.name=a -c user.email=a@b commit -q "
        "--allow-empty -m three && git push -q " +
        repo.string() + " main other";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    auto rev = [&](const std::string& what) {
      std::string out;
      FILE* p = ::popen(("git -C " + wc + " rev-parse " + what).c_str(), "r");
      char buf[128];
      while (p && std::fgets(buf, sizeof buf, p)) out += buf;
      if (p) ::pclose(p);
      while (!out.empty() && out.back() == '\n') out.pop_back();
      return out;
    };
    std::string one = rev("main~1"), two = rev("main"), three = rev("other");
    EXPECT_TRUE(fast_forwards(repo, one, two));
    EXPECT_TRUE(fast_forwards(repo, two, two));
    EXPECT_FALSE(fast_forwards(repo, two, one));
    EXPECT_FALSE(fast_forwards(repo, two, three));
    EXPECT_FALSE(fast_forwards(repo, std::string(40, 'f'), two));
    EXPECT_FALSE(fast_forwards(repo, "", two));
  }
  ASSERT_TRUE(set_head_branch(repo, "trunk").has_value());
  EXPECT_EQ(head_branch(repo).value(), "trunk");
}

// ---- the runner ----

struct Captured {
  CgiHead head;
  int heads = 0;
  std::string body;
};

CgiSink sink_for(Captured& c) {
  CgiSink s;
  s.head = [&c](CgiHead h) {
    c.head = std::move(h);
    ++c.heads;
  };
  s.body = [&c](std::string_view b) {
    c.body.append(b);
    return true;
  };
  return s;
}

CgiRun shell(const std::string& script) {
  CgiRun r;
  r.argv = {"/bin/sh", "-c", script};
  r.env = {"PATH=/usr/bin:/bin", "ONLY=this"};
  r.timeout = std::chrono::seconds(10);
  return r;
}

TEST(RunCgi, StreamsHeadAndBodyAndFeedsStdin) {
  Captured c;
  CgiRun r = shell(
      "printf 'Status: 201 Created\\r\\nContent-Type: text/x-test\\r\\n\\r\\n'; cat; env | sort");
  r.body = std::string(300000, 'z');  // more than a pipe holds: written while output is read
  auto out = run_cgi(r, sink_for(c));
  EXPECT_TRUE(out.error.empty()) << out.error;
  EXPECT_EQ(out.exit_code, 0);
  EXPECT_EQ(c.heads, 1);
  EXPECT_EQ(c.head.status, 201);
  EXPECT_EQ(c.head.content_type, "text/x-test");
  EXPECT_EQ(c.body.substr(0, 300000), std::string(300000, 'z'));
  // The environment is exactly what was given (plus what sh itself sets).
  std::string env = c.body.substr(300000);
  EXPECT_NE(env.find("ONLY=this\n"), std::string::npos) << env;
  EXPECT_EQ(env.find("HOME="), std::string::npos) << env;
}

TEST(RunCgi, PassesTheDescriptorAsThree) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Captured c;
  CgiRun r = shell(
      "printf 'Content-Type: text/plain\\n\\n'; echo hello >&3; ls /proc/self/fd | sort -n | tr "
      "'\\n' ' '");
  r.pass_fd = sv[1];
  auto out = run_cgi(r, sink_for(c));
  EXPECT_EQ(out.exit_code, 0) << out.error << out.stderr_tail;
  char buf[16] = {};
  EXPECT_EQ(::recv(sv[0], buf, sizeof buf, MSG_DONTWAIT), 6);
  EXPECT_EQ(std::string(buf), "hello\n");
  // 0, 1, 2, 3 and the one ls opens: nothing else of this process leaks in.
  EXPECT_EQ(c.body, "0 1 2 3 4 ");
  ::close(sv[0]);
}

TEST(RunCgi, ReportsABrokenHeaderBlock) {
  Captured c;
  auto out = run_cgi(shell("echo 'not a header'; echo; echo body"), sink_for(c));
  EXPECT_FALSE(out.error.empty());
  EXPECT_EQ(c.heads, 0);
  out = run_cgi(shell("exit 3"), sink_for(c));
  EXPECT_EQ(out.error, "the CGI program wrote no answer");
  EXPECT_EQ(out.exit_code, 3);
  CgiRun missing = shell("");
  missing.argv = {"/nonexistent/program"};
  out = run_cgi(missing, sink_for(c));
  EXPECT_EQ(out.exit_code, 127);
}

TEST(RunCgi, KillsTheGroupOnTimeoutAndOnCancel) {
  Captured c;
  CgiRun r = shell("printf 'Content-Type: text/plain\\n\\nstarted\\n'; sleep 30 & sleep 30");
  r.timeout = std::chrono::milliseconds(500);
  auto t0 = std::chrono::steady_clock::now();
  auto out = run_cgi(r, sink_for(c));
  EXPECT_TRUE(out.timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ(c.body, "started\n");

  Captured d;
  CgiSink s = sink_for(d);
  s.body = [&d](std::string_view b) {
    d.body.append(b);
    return false;  // the client went away
  };
  r.timeout = std::chrono::seconds(30);
  t0 = std::chrono::steady_clock::now();
  out = run_cgi(r, s);
  EXPECT_TRUE(out.cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

// The oracle: Debian's git http-backend, run the way the API runs it, answers a ref
// advertisement for a repository ensure_push_repo() made, and honours the service rules.
TEST(RunCgi, GitHttpBackendAnswersThroughIt) {
  if (::access("/usr/bin/git", X_OK) != 0) GTEST_SKIP() << "git is not installed";
  test_util::TempDir tmp("http-backend");
  ASSERT_TRUE(ensure_push_repo(tmp / "repos" / "blog.git", "/bin/true").has_value());
  fs::create_directories(tmp / "home");
  CgiRequest req;
  req.method = "GET";
  req.path_info = "/blog.git/info/refs";
  req.query = "service=git-receive-pack";
  req.remote_user = "user:ann";
  req.remote_addr = "127.0.0.1";
  CgiRun r;
  r.argv = {"/usr/bin/git", "http-backend"};
  r.env = cgi_env(req, tmp / "repos", tmp / "home");
  r.cwd = tmp / "home";
  Captured c;
  auto out = run_cgi(r, sink_for(c));
  EXPECT_EQ(out.exit_code, 0) << out.error << out.stderr_tail;
  EXPECT_EQ(c.head.status, 200);
  EXPECT_EQ(c.head.content_type, "application/x-git-receive-pack-advertisement");
  EXPECT_TRUE(c.body.starts_with("001f# service=git-receive-pack\n0000")) << c.body;
  // A repository that does not exist: 404 from git itself.
  req.path_info = "/nope.git/info/refs";
  r.env = cgi_env(req, tmp / "repos", tmp / "home");
  Captured d;
  out = run_cgi(r, sink_for(d));
  EXPECT_EQ(d.head.status, 404);
}

}  // namespace
}  // namespace ck::git
