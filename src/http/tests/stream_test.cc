#include "http/stream.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace ck::http {
namespace {

TEST(ResponseStream, NothingIsReadyBeforeTheHead) {
  ResponseStream st;
  auto c = st.take();
  EXPECT_FALSE(c.head_ready);
  EXPECT_TRUE(c.data.empty());
  EXPECT_FALSE(c.finished);
}

TEST(ResponseStream, HeadOnceThenBytesThenEnd) {
  ResponseStream st;
  int wakes = 0;
  st.on_ready([&] { ++wakes; });
  st.begin(201, "text/plain", {{"X-A", "1"}});
  st.begin(500, "ignored");  // only the first counts
  EXPECT_TRUE(st.write("ab"));
  EXPECT_TRUE(st.write("cd"));
  auto c = st.take();
  ASSERT_TRUE(c.head_ready);
  EXPECT_EQ(c.head.status, 201);
  EXPECT_EQ(c.head.content_type, "text/plain");
  ASSERT_EQ(c.head.headers.size(), 1u);
  EXPECT_EQ(c.data, "abcd");
  EXPECT_FALSE(c.finished);
  st.finish();
  EXPECT_TRUE(st.write("late"));  // ignored after the end
  auto d = st.take();
  EXPECT_FALSE(d.head_ready);  // handed out once
  EXPECT_EQ(d.data, "");
  EXPECT_TRUE(d.finished);
  EXPECT_EQ(wakes, 4);  // begin, two writes, finish
}

TEST(ResponseStream, RespondIsACompleteAnswer) {
  ResponseStream st;
  st.respond(404, "application/json", R"({"error":{}})");
  auto c = st.take();
  EXPECT_TRUE(c.head_ready);
  EXPECT_EQ(c.head.status, 404);
  EXPECT_EQ(c.data, R"({"error":{}})");
  EXPECT_TRUE(c.finished);
}

TEST(ResponseStream, CancelStopsTheProducer) {
  ResponseStream st;
  st.begin(200, "text/plain");
  EXPECT_TRUE(st.write("x"));
  EXPECT_FALSE(st.cancelled());
  st.cancel();
  EXPECT_TRUE(st.cancelled());
  EXPECT_FALSE(st.write("y"));
  EXPECT_EQ(st.take().data, "");  // what was pending is dropped
}

TEST(ResponseStream, NoWakeAfterCancel) {
  ResponseStream st;
  int wakes = 0;
  st.on_ready([&] { ++wakes; });
  st.begin(200, "text/plain");
  EXPECT_EQ(wakes, 1);
  st.cancel();
  st.write("x");
  st.finish();
  st.respond(500, "text/plain", "late");
  EXPECT_EQ(wakes, 1);
}

TEST(ResponseStream, ASlowClientBoundsWhatIsBuffered) {
  ResponseStream st;
  st.begin(200, "text/plain");
  std::string mib(1u << 20, 'x');
  std::size_t accepted = 0;
  while (st.write(mib)) {
    accepted += mib.size();
    ASSERT_LE(accepted, ResponseStream::kMaxPending);
  }
  EXPECT_EQ(accepted, ResponseStream::kMaxPending);
  EXPECT_EQ(st.take().data.size(), accepted);
  EXPECT_TRUE(st.write(mib));  // room again once taken
}

TEST(ResponseStream, BytesFromAnotherThreadArriveInOrderAndWhole) {
  ResponseStream st;
  std::atomic<int> wakes{0};
  st.on_ready([&] { ++wakes; });
  constexpr int kWrites = 20000;
  std::thread producer([&] {
    st.begin(200, "text/plain");
    for (int i = 0; i < kWrites; ++i) st.write(std::to_string(i) + ",");
    st.finish();
  });
  std::string got;
  bool finished = false;
  while (!finished) {
    auto c = st.take();
    got += c.data;
    finished = c.finished;
  }
  producer.join();
  std::string want;
  for (int i = 0; i < kWrites; ++i) want += std::to_string(i) + ",";
  EXPECT_EQ(got, want);
  EXPECT_EQ(wakes.load(), kWrites + 2);
}

}  // namespace
}  // namespace ck::http
