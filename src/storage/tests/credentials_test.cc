#include "storage/s3/credentials.h"
#include "storage/s3/target.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <unistd.h>

namespace ck::s3 {
namespace {
namespace fs = std::filesystem;

class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    home_ = fs::temp_directory_path() / ("ck-creds-" + std::to_string(::getpid()));
    fs::create_directories(home_ / ".aws");
    env_["HOME"] = home_.string();
  }
  void TearDown() override { fs::remove_all(home_); }
  void write(const std::string& name, const std::string& text) { std::ofstream(home_ / ".aws" / name) << text; }
  EnvFn env() {
    return [this](const std::string& k) -> std::optional<std::string> {
      auto it = env_.find(k);
      if (it == env_.end()) return std::nullopt;
      return it->second;
    };
  }
  fs::path home_;
  std::map<std::string, std::string> env_;
};

TEST_F(CredentialsTest, ExplicitBeatsEnvironmentBeatsProfile) {
  write("credentials", "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = FILESECRET\n");
  env_["AWS_ACCESS_KEY_ID"] = "ENVKEY";
  env_["AWS_SECRET_ACCESS_KEY"] = "ENVSECRET";
  env_["AWS_SESSION_TOKEN"] = "TOKEN";
  auto r = resolve_credentials({"FLAGKEY", "FLAGSECRET", ""}, "", env());
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r.value().credentials.access_key, "FLAGKEY");
  r = resolve_credentials({}, "", env());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.value().credentials.access_key, "ENVKEY");
  EXPECT_EQ(r.value().credentials.session_token, "TOKEN");
  EXPECT_NE(r.value().source.find("environment"), std::string::npos);
  env_.erase("AWS_ACCESS_KEY_ID");
  r = resolve_credentials({}, "", env());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.value().credentials.access_key, "FILEKEY");
  EXPECT_EQ(r.value().credentials.secret_key, "FILESECRET");
  EXPECT_NE(r.value().source.find("profile default"), std::string::npos);
}

TEST_F(CredentialsTest, NamedProfileFromCredentialsOrConfigAndRegionFromConfig) {
  write("credentials", "# comment\n[default]\naws_access_key_id=D\naws_secret_access_key=DS\n\n"
                       "[work]\n  aws_access_key_id = W  \r\naws_secret_access_key = WS\n");
  write("config", "[default]\nregion = us-east-2\n[profile work]\nregion = eu-west-1\n"
                  "[profile cfgonly]\naws_access_key_id = C\naws_secret_access_key = CS\nregion = ap-south-1\n");
  env_["AWS_PROFILE"] = "work";
  auto r = resolve_credentials({}, "", env());
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r.value().credentials.access_key, "W");
  EXPECT_EQ(r.value().region, "eu-west-1");
  env_["AWS_PROFILE"] = "cfgonly";
  r = resolve_credentials({}, "", env());
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r.value().credentials.access_key, "C");
  EXPECT_EQ(r.value().region, "ap-south-1");
  env_.erase("AWS_PROFILE");
  env_["AWS_REGION"] = "sa-east-1";
  r = resolve_credentials({}, "", env());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.value().credentials.access_key, "D");
  EXPECT_EQ(r.value().region, "sa-east-1");  // the environment beats the config file
  EXPECT_EQ(resolve_credentials({}, "us-west-2", env()).value().region, "us-west-2");
}

TEST_F(CredentialsTest, FilesNamedByTheEnvironmentAreUsed) {
  auto other = home_ / "elsewhere";
  std::ofstream(other) << "[default]\naws_access_key_id = X\naws_secret_access_key = XS\n";
  env_["AWS_SHARED_CREDENTIALS_FILE"] = other.string();
  auto r = resolve_credentials({}, "", env());
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r.value().credentials.access_key, "X");
}

TEST_F(CredentialsTest, MissingCredentialsAndUnknownProfilesAreExplained) {
  auto r = resolve_credentials({}, "", env());
  ASSERT_TRUE(r.has_error());
  EXPECT_NE(r.error().message.find("AWS_ACCESS_KEY_ID"), std::string::npos);
  env_["AWS_PROFILE"] = "nope";
  r = resolve_credentials({}, "", env());
  ASSERT_TRUE(r.has_error());
  EXPECT_NE(r.error().message.find("'nope'"), std::string::npos);
  // Only a key without its secret is not enough.
  env_.erase("AWS_PROFILE");
  env_["AWS_ACCESS_KEY_ID"] = "K";
  EXPECT_TRUE(resolve_credentials({}, "", env()).has_error());
}

TEST(Ini, ReadsOnlyTheNamedSection) {
  std::string text = "[a]\nk = 1\n[b]\nk = 2\n; c\nj=3\n[a]\nm = 4";
  EXPECT_EQ(ini_value(text, "a", "k"), "1");
  EXPECT_EQ(ini_value(text, "b", "k"), "2");
  EXPECT_EQ(ini_value(text, "b", "j"), "3");
  EXPECT_EQ(ini_value(text, "a", "m"), "4");
  EXPECT_FALSE(ini_value(text, "c", "k").has_value());
  EXPECT_FALSE(ini_value(text, "a", "j").has_value());
}

// ---- the configuration's storage: turned into a client target --------------------------

TEST_F(CredentialsTest, TargetFromConfigKeysEnvironmentAndProfile) {
  write("credentials", "[default]\naws_access_key_id = DEF\naws_secret_access_key = DEFS\n"
                       "[work]\naws_access_key_id = WORK\naws_secret_access_key = WORKS\n");
  StorageConfig sc;
  sc.kind = "s3";
  sc.bucket = "my-bucket";
  sc.prefix = "/ws/";
  auto t = make_target(sc, env());
  ASSERT_TRUE(t.has_value()) << t.error().message;
  EXPECT_EQ(t.value().options.credentials.access_key, "DEF");
  EXPECT_EQ(t.value().prefix, "ws");
  EXPECT_EQ(t.value().url(), "s3://my-bucket/ws");
  EXPECT_EQ(t.value().options.region, "us-east-1");
  EXPECT_FALSE(t.value().options.path_style) << "AWS itself: virtual-host addressing";

  sc.profile = "work";  // storage.profile / --s3-profile beats AWS_PROFILE
  env_["AWS_PROFILE"] = "default";
  EXPECT_EQ(make_target(sc, env()).value().options.credentials.access_key, "WORK");

  sc.access_key = "CFGKEY";  // config keys beat the environment and profiles
  sc.secret_key = "CFGSECRET";
  env_["AWS_ACCESS_KEY_ID"] = "ENVKEY";
  env_["AWS_SECRET_ACCESS_KEY"] = "ENVSECRET";
  EXPECT_EQ(make_target(sc, env()).value().options.credentials.access_key, "CFGKEY");

  sc.secret_key.clear();
  auto half = make_target(sc, env());
  ASSERT_TRUE(half.has_error());
  EXPECT_NE(half.error().message.find("go together"), std::string::npos);
}

TEST_F(CredentialsTest, TargetAddressingEndpointAndBucketRules) {
  env_["AWS_ACCESS_KEY_ID"] = "K";
  env_["AWS_SECRET_ACCESS_KEY"] = "S";
  StorageConfig sc;
  sc.bucket = "bkt";
  sc.endpoint = "http://127.0.0.1:9000";
  EXPECT_TRUE(make_target(sc, env()).value().options.path_style) << "custom endpoints: path-style";
  sc.addressing = "virtual";
  EXPECT_FALSE(make_target(sc, env()).value().options.path_style);
  sc.addressing = "auto";
  sc.endpoint.clear();
  env_["AWS_ENDPOINT_URL_S3"] = "https://minio.example:9000";
  EXPECT_EQ(make_target(sc, env()).value().options.endpoint, "https://minio.example:9000");
  env_["AWS_CA_BUNDLE"] = "/etc/ssl/test-ca.pem";
  EXPECT_EQ(make_target(sc, env()).value().options.ca_bundle, "/etc/ssl/test-ca.pem");

  const std::string too_long(64, 'a');
  for (const std::string& bad : {std::string(), std::string("ab"), std::string("Bad_Bucket"), std::string("-bkt"),
                                 std::string("bkt-"), too_long}) {
    sc.bucket = bad;
    auto r = make_target(sc, env());
    ASSERT_TRUE(r.has_error()) << bad;
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
  }
  sc.bucket = "bkt";
  sc.prefix = "a//b";
  EXPECT_TRUE(make_target(sc, env()).has_error());

  EXPECT_EQ(parse_s3_url("s3://bkt/a/b/").value(), std::make_pair(std::string("bkt"), std::string("a/b")));
  EXPECT_EQ(parse_s3_url("s3://bkt").value(), std::make_pair(std::string("bkt"), std::string()));
  EXPECT_TRUE(parse_s3_url("https://bkt").has_error());
  EXPECT_TRUE(parse_s3_url("s3:///prefix").has_error());
}

}  // namespace
}  // namespace ck::s3
