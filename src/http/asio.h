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
#include <functional>
#include <string>

namespace ck {
namespace net = boost::asio;

/// Starts a coroutine that nobody awaits. Its exception, if any, is logged under `what`
/// (never net::detached, which would swallow it).
void spawn(net::any_io_executor ex, net::awaitable<void> task, std::string what);
void spawn(net::io_context& io, net::awaitable<void> task, std::string what);

/// Waits `d` on the current executor.
net::awaitable<void> sleep_for(std::chrono::steady_clock::duration d);

}  // namespace ck
