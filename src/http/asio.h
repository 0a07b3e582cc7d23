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
#include <optional>
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

/// Runs `task` to completion on a private io_context and answers its value: for start-up
/// steps and CLI commands that have nothing else to do meanwhile. Rethrows its exception.
template <class T>
T run_blocking(net::awaitable<T> task) {
  net::io_context io;
  std::optional<T> out;
  std::exception_ptr error;
  net::co_spawn(
      io,
      [](net::awaitable<T> t, std::optional<T>* o) -> net::awaitable<void> {
        o->emplace(co_await std::move(t));
      }(std::move(task), &out),
      [&error](std::exception_ptr e) { error = e; });
  io.run();
  if (error) std::rethrow_exception(error);
  return std::move(*out);
}

/// Waits `d` on the current executor.
net::awaitable<void> sleep_for(std::chrono::steady_clock::duration d);

}  // namespace ck
