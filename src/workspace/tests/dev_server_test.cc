#include "workspace/dev_server.h"

#include <gtest/gtest.h>

namespace ck {
namespace {

TEST(DevServer, Recognised) {
  EXPECT_EQ(recognise_dev_server("vite", false).name, "vite");
  EXPECT_EQ(recognise_dev_server("vite serve", false).name, "vite");
  EXPECT_EQ(recognise_dev_server("npx vite --port $PORT", false).name, "vite");
  EXPECT_EQ(recognise_dev_server("vite dev", true).name, "sveltekit");
  EXPECT_EQ(recognise_dev_server("astro dev", false).name, "astro");
  EXPECT_EQ(recognise_dev_server("next dev", false).name, "next");
  EXPECT_EQ(recognise_dev_server("exec webpack-dev-server --hot", false).name,
            "webpack-dev-server");
  EXPECT_TRUE(recognise_dev_server("vite --base '/x/'", false).has_base);
  EXPECT_TRUE(recognise_dev_server("vite", false).takes_base_flag);
  EXPECT_FALSE(recognise_dev_server("next dev", false).takes_base_flag);
}

TEST(DevServer, NotRecognised) {
  for (const char* s :
       {"", "node vite.js", "vite build", "vite preview", "vite optimize", "astro", "next build",
        "vite > log", "$(vite)", "vite # dev", "echo vite", "next start"}) {
    EXPECT_EQ(recognise_dev_server(s, false).name, "") << s;
  }
  EXPECT_EQ(recognise_dev_server(std::string(5000, 'v'), false).name, "");
}

TEST(DevServer, BaseFlag) {
  EXPECT_EQ(with_base_flag("vite "), "vite --base \"$CK_BASE_PATH\"");
  EXPECT_EQ(with_base_flag("npm start"), "npm start -- --base \"$CK_BASE_PATH\"");
  EXPECT_EQ(with_base_flag("npm run dev"), "npm run dev -- --base \"$CK_BASE_PATH\"");
}

}  // namespace
}  // namespace ck
