#include "http/asio.h"

#include <atomic>
#include <exception>

#include "core/log.h"

namespace ck {
namespace {
std::atomic<std::uint64_t> g_spawn_failures{0};
}

void report_task_failure(std::exception_ptr e, const std::string& what) {
  if (!e) return;
  ++g_spawn_failures;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& err) {
    log::get("core")->error("task '{}' failed: {}", what, err.what());
  } catch (...) {
    log::get("core")->error("task '{}' failed with an unknown exception", what);
  }
}

void spawn(net::io_context& io, net::awaitable<void> task, std::string what) {
  spawn(net::any_io_executor(io.get_executor()), std::move(task), std::move(what));
}

net::awaitable<void> sleep_for(std::chrono::steady_clock::duration d) {
  net::steady_timer t(co_await net::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(net::use_awaitable);
}

}  // namespace ck
