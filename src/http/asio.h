#pragma once
// The one way into Boost.Asio: Boost 1.74's awaitable header needs <utility> first.
#include <utility>
// clang-format off
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/this_coro.hpp>
// clang-format on
#include <exception>
#include <functional>
#include <string>

namespace ck {
namespace net = boost::asio;

/// Logs (and counts) the exception that ended a spawned coroutine; nothing if `e` is null.
void report_task_failure(std::exception_ptr e, const std::string& what);

/// Starts a coroutine that nobody awaits. Its exception, if any, is logged under `what`
/// (never net::detached, which would swallow it).
template <class Executor>
void spawn(Executor ex, net::awaitable<void, Executor> task, std::string what) {
  net::co_spawn(ex, std::move(task),
                [what = std::move(what)](std::exception_ptr e) { report_task_failure(e, what); });
}
void spawn(net::io_context& io, net::awaitable<void> task, std::string what);

/// Waits `d` on the current executor.
net::awaitable<void> sleep_for(std::chrono::steady_clock::duration d);

}  // namespace ck
