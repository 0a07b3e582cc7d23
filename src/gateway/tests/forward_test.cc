#include "gateway/forward.h"

#include <gtest/gtest.h>

#include <vector>

namespace ck {
namespace {

std::string request_head(std::vector<HeaderField> fields, UpstreamRequestHead r = {}) {
  if (r.method.empty()) r.method = "GET";
  if (r.target.empty()) r.target = "/x";
  if (r.client_ip.empty()) r.client_ip = "10.0.0.7";
  r.fields = fields;
  std::string out = "junk";  // appended to, never cleared
  append_upstream_request_head(r, out);
  EXPECT_EQ(out.substr(0, 4), "junk");
  return out.substr(4);
}

TEST(ForwardRequest, PlainRequest) {
  UpstreamRequestHead r;
  r.prefix = "/app";
  EXPECT_EQ(request_head({{"Host", "example.test"}, {"Accept", "*/*"}}, r),
            "GET /x HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n"
            "X-Forwarded-For: 10.0.0.7\r\nX-Real-IP: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
            "X-Forwarded-Host: example.test\r\nX-Forwarded-Prefix: /app\r\n"
            "Forwarded: for=10.0.0.7;proto=http;host=\"example.test\"\r\n\r\n");
}

TEST(ForwardRequest, NoHostNoPrefixIpv6AndProto) {
  UpstreamRequestHead r;
  r.client_ip = "::1";
  r.proto = "https";
  EXPECT_EQ(request_head({}, r),
            "GET /x HTTP/1.1\r\nX-Forwarded-For: ::1\r\nX-Real-IP: ::1\r\n"
            "X-Forwarded-Proto: https\r\nForwarded: for=\"[::1]\";proto=https\r\n\r\n");
}

TEST(ForwardRequest, HopByHopAndListedFieldsAreDropped) {
  auto out = request_head({{"Connection", "keep-alive, X-Gone, x-forwarded-for"},
                           {"connection", "X-Other"},
                           {"X-Gone", "1"},
                           {"x-other", "2"},
                           {"X-Kept", "3"},
                           {"Keep-Alive", "300"},
                           {"Proxy-Connection", "keep-alive"},
                           {"TE", "trailers"},
                           {"Trailer", "X"},
                           {"Upgrade", "h2c"},
                           {"Expect", "100-continue"},
                           {"Content-Length", "5"},
                           {"Transfer-Encoding", "chunked"}});
  EXPECT_EQ(out.find("X-Gone"), std::string::npos) << out;
  EXPECT_EQ(out.find("x-other"), std::string::npos) << out;
  EXPECT_EQ(out.find("onnection"), std::string::npos) << out;
  for (auto gone : {"Keep-Alive", "TE:", "Trailer", "Upgrade", "Expect", "Content-Length",
                    "Transfer-Encoding"}) {
    EXPECT_EQ(out.find(gone), std::string::npos) << gone << " in " << out;
  }
  EXPECT_NE(out.find("X-Kept: 3\r\n"), std::string::npos);
  // Listing a forwarding field does not remove the gateway's own.
  EXPECT_NE(out.find("X-Forwarded-For: 10.0.0.7\r\n"), std::string::npos);
}

TEST(ForwardRequest, ManyListedNames) {
  std::string list;
  std::vector<std::string> names;
  for (int i = 0; i < 500; ++i) {
    names.push_back("X-N" + std::to_string(i));
    list += names.back() + ", ";
  }
  std::vector<HeaderField> fields{{"Connection", list}};
  for (const auto& n : names) fields.push_back({n, "v"});
  fields.push_back({"X-N500", "kept"});
  auto out = request_head(fields);
  EXPECT_EQ(out.find("X-N1:"), std::string::npos);
  EXPECT_EQ(out.find("X-N499:"), std::string::npos);
  EXPECT_NE(out.find("X-N500: kept\r\n"), std::string::npos);
}

TEST(ForwardRequest, ClientForwardingFieldsAreReplaced) {
  auto out = request_head({{"Host", "h"},
                           {"X-Forwarded-For", "203.0.113.9"},
                           {"x_forwarded_host", "evil"},
                           {"X-Forwarded-Port", "443"},
                           {"X_Real_IP", "203.0.113.9"},
                           {"Forwarded", "for=203.0.113.9"}});
  EXPECT_EQ(out.find("203.0.113.9"), std::string::npos) << out;
  EXPECT_EQ(out.find("evil"), std::string::npos) << out;
  EXPECT_EQ(out.find("Port"), std::string::npos) << out;
}

TEST(ForwardRequest, FirstHostIsForwardedHost) {
  auto out = request_head({{"Host", "a.test"}, {"Host", "b.test"}});
  EXPECT_NE(out.find("X-Forwarded-Host: a.test\r\n"), std::string::npos) << out;
}

TEST(ForwardRequest, BodyLengthAndUpgrade) {
  UpstreamRequestHead r;
  r.method = "POST";
  r.content_length = 12;
  auto out = request_head({{"Transfer-Encoding", "chunked"}}, r);
  EXPECT_NE(out.find("\r\nContent-Length: 12\r\n\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("chunked"), std::string::npos);
  r = {};
  r.upgrade = true;
  out = request_head({{"Connection", "keep-alive, Upgrade"}, {"Upgrade", "websocket"}}, r);
  EXPECT_NE(out.find("Upgrade: websocket\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Connection: Upgrade\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("keep-alive"), std::string::npos) << out;
}

TEST(ForwardRequest, SessionCookiesRemovedFromEveryCookieField) {
  UpstreamRequestHead r;
  r.session_cookie = "ck_session";
  r.host_session_cookie = "__Host-ck_session";
  // One clean Cookie field stays where it is.
  auto out = request_head({{"Cookie", "a=1; b=2"}, {"Accept", "x"}}, r);
  EXPECT_NE(out.find("\r\nCookie: a=1; b=2\r\nAccept: x\r\n"), std::string::npos) << out;
  // Session cookies go, in every field; the rest are joined into one.
  out = request_head({{"Cookie", "a=1; ck_session=S1"}, {"cookie", "__Host-ck_session=S2;b=2"}}, r);
  EXPECT_EQ(out.find("S1"), std::string::npos) << out;
  EXPECT_EQ(out.find("S2"), std::string::npos) << out;
  EXPECT_NE(out.find("Cookie: a=1; b=2\r\n"), std::string::npos) << out;
  // Only session cookies: no Cookie field at all.
  out = request_head({{"Cookie", "ck_session=S1"}}, r);
  EXPECT_EQ(out.find("ookie"), std::string::npos) << out;
  // Lookalikes are kept.
  out = request_head({{"Cookie", "ck_session2=x; xck_session=y"}}, r);
  EXPECT_NE(out.find("Cookie: ck_session2=x; xck_session=y\r\n"), std::string::npos) << out;
}

std::string response_head(std::vector<HeaderField> fields, ClientResponseHead r = {}) {
  r.fields = fields;
  if (r.reason.empty()) r.reason = "OK";
  std::string out;
  append_client_response_head(r, out);
  return out;
}

TEST(ForwardResponse, HopByHopServerAndFramingAreTheGateways) {
  auto out = response_head({{"Content-Type", "text/plain"},
                            {"Connection", "X-Hop, close"},
                            {"X-Hop", "secret"},
                            {"Keep-Alive", "timeout=5"},
                            {"Server", "app"},
                            {"Transfer-Encoding", "chunked"},
                            {"Trailer", "X-T"},
                            {"Content-Length", "5"}});
  EXPECT_EQ(out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
            "Server: cloudyknight\r\n\r\n");
}

TEST(ForwardResponse, ConnectionAndChunkedByVersion) {
  ClientResponseHead r;
  r.keep_alive = false;
  r.chunked = true;
  r.drop_content_length = true;
  r.status = 404;
  r.reason = "Not Found";
  EXPECT_EQ(response_head({{"Content-Length", "3"}}, r),
            "HTTP/1.1 404 Not Found\r\nServer: cloudyknight\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n");
  r = {};
  r.version = 10;
  EXPECT_EQ(response_head({}, r), "HTTP/1.0 200 OK\r\nServer: cloudyknight\r\nConnection: keep-alive\r\n\r\n");
  r.keep_alive = false;
  EXPECT_EQ(response_head({}, r), "HTTP/1.0 200 OK\r\nServer: cloudyknight\r\n\r\n");
}

TEST(ForwardResponse, SessionSetCookieDropped) {
  ClientResponseHead r;
  r.session_cookie = "ck_session";
  r.host_session_cookie = "__Host-ck_session";
  auto out = response_head({{"Set-Cookie", "ck_session=evil; Path=/"},
                            {"set-cookie", "__Host-ck_session=evil; Secure"},
                            {"Set-Cookie", " ck_session = evil"},
                            {"Set-Cookie", "app=1"}},
                           r);
  EXPECT_EQ(out.find("evil"), std::string::npos) << out;
  EXPECT_NE(out.find("Set-Cookie: app=1\r\n"), std::string::npos) << out;
}

TEST(ForwardResponse, HstsReplacesTheAppsOwn) {
  std::vector<HeaderField> app = {{"Strict-Transport-Security", "max-age=1"}, {"X-A", "1"}};
  std::string out = response_head(app);
  EXPECT_NE(out.find("Strict-Transport-Security: max-age=1\r\n"), std::string::npos) << out;
  ClientResponseHead r;
  r.hsts = "max-age=31536000";
  out = response_head(app, r);
  EXPECT_EQ(out.find("max-age=1\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Strict-Transport-Security: max-age=31536000\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("X-A: 1\r\n"), std::string::npos) << out;
}

TEST(ForwardResponse, ChunkSize) {
  std::string out;
  append_chunk_size(0, out);
  append_chunk_size(255, out);
  append_chunk_size(65536, out);
  EXPECT_EQ(out, "0\r\nff\r\n10000\r\n");
}

}  // namespace
}  // namespace ck
