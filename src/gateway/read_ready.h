#pragma once
// Reads without Asio's wasted speculative recv(): of an app's answer, and of a client's next request.
//
// Asio 1.74's epoll reactor keeps, per socket, a "may be readable" flag (try_speculative_):
// every epoll event sets it, and only a read that returns 0 bytes (EOF) clears it. While it is
// set, async_read_some first tries recv() and waits only if that finds nothing. So reading the
// app's answer just after its request was sent costs a recv() that fails with EAGAIN (the app
// cannot have answered yet) before the wait: one wasted syscall per proxied request.
//
// expect_answer() clears the flag right after the whole request left in one synchronous send,
// with nothing run in between. That is safe because the socket is registered edge-triggered for
// EPOLLIN once, for life, and everything the app can do after that send makes a new event, which
// the reactor processes later on the worker's one thread and which sets the flag again: its
// answer (bytes), or, on a pooled connection it had already closed, the RST its kernel sends
// back for the request (so such a connection is still found closed, and the request retried on a
// fresh one as before). Bytes or a FIN that came before the send are not read before the answer.
// So a pooled connection whose peer sent its FIN while it was idle must never be used: a peer
// that only half-closed sends no RST for the request, and the answer would be waited for until
// the request timeout. Docker's userland proxy, in front of every docker app, does exactly that
// when the app closes an idle keep-alive connection (the docker soak saw a GET hang for a
// minute). Upstream connections are therefore watched for the FIN (watch_fin(), EPOLLRDHUP)
// and the pool drops those where epoll saw one (fin_reported()), without a syscall.
//
// A short read alone does NOT show that a socket is empty: the peer's FIN may be pending, with
// its event already consumed. So read_now() clears the flag after a recv() that found nothing
// (EAGAIN: no data and no FIN), where Asio's next wait would not try a recv() either, and
// note_read() clears it after a short read only when epoll says no FIN came (below).
//
// The client's side (note_read(), as nginx does with EPOLLRDHUP): after the answer went out the
// next request is read, and the recv() Asio tries first almost always finds nothing. The first
// short read of a connection adds EPOLLRDHUP to the socket's registration (one epoll_ctl), so
// each epoll report says whether the peer's FIN had come; the mask of the last one stays in the
// descriptor state (Asio's task_result_). A short read took everything that was there; what
// comes later (bytes, a FIN) makes a new event. So the flag is cleared unless the last report
// saw a FIN (EPOLLRDHUP, EPOLLHUP, EPOLLERR): then the next read's recv() finds it at once.
// The EPOLL_CTL_MOD that adds EPOLLRDHUP polls the socket again and reports what is already
// there (a FIN that came before it included), so clearing right after it is safe too.
// note_read() must run right after its recv() with no epoll report in between: after read_now()
// (synchronous), or in the continuation of an async_read_some() that waited with the flag clear
// (Asio runs the recv() as the event is handled and completes the read inline, on this thread).
//
// The flag is private to Asio: it is reached through an explicit template instantiation (where
// access checks do not apply) and only for the Boost version and reactor checked below; with
// any other, expect_answer() does nothing (Asio's behaviour). It also relies on the worker's
// io_context being created with BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO (impl.h): one thread, no
// descriptor locks.
#include <boost/version.hpp>

#include "http/asio.h"
// clang-format off
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/redirect_error.hpp>
// clang-format on
#include <sys/epoll.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#if BOOST_VERSION == 107400 && defined(BOOST_ASIO_HAS_EPOLL) && \
    !defined(BOOST_ASIO_HAS_IO_URING) && !defined(BOOST_ASIO_WINDOWS)
#include <boost/asio/detail/epoll_reactor.hpp>
#define CK_GW_READ_READY 1
#else
#define CK_GW_READ_READY 0
#endif

namespace ck::gw {

namespace read_ready_detail {
#if CK_GW_READ_READY
using Reactor = net::detail::epoll_reactor;
using DescriptorState = std::remove_pointer_t<Reactor::per_descriptor_data>;
using Flags = bool[Reactor::max_ops];
template <class Tag, typename Tag::type M>
struct Expose {
  friend typename Tag::type member(Tag) { return M; }
};
struct FlagsTag {
  using type = Flags DescriptorState::*;
  friend type member(FlagsTag);
};
template struct Expose<FlagsTag, &DescriptorState::try_speculative_>;
struct EventsTag {  // what the descriptor is registered for
  using type = std::uint32_t DescriptorState::*;
  friend type member(EventsTag);
};
template struct Expose<EventsTag, &DescriptorState::registered_events_>;
struct ReactorTag {
  using type = Reactor* DescriptorState::*;
  friend type member(ReactorTag);
};
template struct Expose<ReactorTag, &DescriptorState::reactor_>;
struct EpollTag {
  using type = int Reactor::*;
  friend type member(EpollTag);
};
template struct Expose<EpollTag, &Reactor::epoll_fd_>;
// The descriptor state is a scheduler operation; its task_result_ is the mask of the last
// epoll report for the descriptor (set_ready_events/add_ready_events), kept until the next.
using Operation = net::detail::scheduler_operation;
struct ReportTag {
  using type = unsigned int Operation::*;
  friend type member(ReportTag);
};
template struct Expose<ReportTag, &Operation::task_result_>;

// What an epoll report shows when the peer sends nothing more: its FIN, or an error.
constexpr std::uint32_t kPeerDone = EPOLLRDHUP | EPOLLHUP | EPOLLERR;

inline std::uint32_t last_report(DescriptorState* state) {
  // A C-style cast may name an inaccessible base class.
  return static_cast<std::uint32_t>(((Operation*)state)->*member(ReportTag{}));  // NOLINT
}

// The socket's implementation (basic_socket::impl_ is protected: named through a derived class).
template <class Socket>
struct ImplOf : Socket {
  static auto& of(Socket& s) { return (s.*(&ImplOf::impl_)).get_implementation(); }
};

template <class Socket>
bool* read_flag(Socket& s) {
  auto* state = ImplOf<Socket>::of(s).reactor_data_;
  return state ? &((state->*member(FlagsTag{}))[Reactor::read_op]) : nullptr;
}
#endif
}  // namespace read_ready_detail

/// False once expect_answer() or a recv() that found nothing cleared `s`'s flag and no event
/// came since: a read would only wait.
template <class Socket>
bool may_have_data(Socket& s) {
#if CK_GW_READ_READY
  bool* f = read_ready_detail::read_flag(s);
  return !f || *f;
#else
  (void)s;
  return true;
#endif
}

/// To be called right after a request to an app left whole in one synchronous send (nothing run
/// in between): the app's next bytes (or the RST of a connection it closed) come as a new event,
/// so its answer is waited for without a recv() first. See the header comment.
template <class Socket>
void expect_answer(Socket& s) {
#if CK_GW_READ_READY
  if (bool* f = read_ready_detail::read_flag(s)) *f = false;
#else
  (void)s;
#endif
}

/// The first half of a read of a plain, non-blocking socket into `b`: one recv() now unless the
/// socket's flag is clear. True when that settled it (`n` bytes, at least one, or `ec`, eof as
/// net::error::eof); false when the caller is to wait with s.async_read_some(b, ...), which then
/// queues without a recv() first. No coroutine frame of its own.
template <class Socket, class MutableBuffer>
bool read_now(Socket& s, const MutableBuffer& b, std::size_t& n, boost::system::error_code& ec) {
  ec = {};
  n = 0;
  if (net::buffer_size(b) == 0) return true;
  if (!may_have_data(s)) return false;
  n = s.read_some(b, ec);
  if (ec != net::error::would_block && ec != net::error::try_again) return true;
  ec = {};
#if CK_GW_READ_READY
  // Nothing there, not even a FIN: the next event announces what comes.
  if (bool* f = read_ready_detail::read_flag(s)) *f = false;
#endif
  return false;
}

/// Adds EPOLLRDHUP to `s`'s registration (one epoll_ctl, the first time only), so that each
/// epoll report for it says whether the peer's FIN had come (fin_reported()). The
/// EPOLL_CTL_MOD polls the socket again and reports what is already there. False when the
/// socket is not in epoll or the call failed (then fin_reported() stays false).
template <class Socket>
bool watch_fin(Socket& s) {
#if CK_GW_READ_READY
  using namespace read_ready_detail;
  auto* state = ImplOf<Socket>::of(s).reactor_data_;
  if (!state) return false;
  std::uint32_t& registered = state->*member(EventsTag{});
  if (registered == 0) return false;  // not in epoll (not a socket)
  if ((registered & EPOLLRDHUP) != 0) return true;
  epoll_event ev{};
  ev.events = registered | EPOLLRDHUP;
  ev.data.ptr = state;
  Reactor* reactor = state->*member(ReactorTag{});
  if (::epoll_ctl(reactor->*member(EpollTag{}), EPOLL_CTL_MOD, s.native_handle(), &ev) != 0) return false;
  registered = ev.events;  // Asio's own EPOLL_CTL_MODs (EPOLLOUT) start from it: kept
  return true;
#else
  (void)s;
  return false;
#endif
}

/// Whether the last epoll report for `s` (after watch_fin()) saw the peer's FIN or an error
/// (EPOLLRDHUP, EPOLLHUP, EPOLLERR): the peer sends nothing more. Reads no socket.
template <class Socket>
bool fin_reported(Socket& s) {
#if CK_GW_READ_READY
  using namespace read_ready_detail;
  auto* state = ImplOf<Socket>::of(s).reactor_data_;
  return state && (state->*member(EventsTag{}) & EPOLLRDHUP) != 0 && (last_report(state) & kPeerDone) != 0;
#else
  (void)s;
  return false;
#endif
}

/// The client's side, after a read that returned `n` bytes (at least one) into `room` bytes
/// at once: a short read took everything that was there, so unless epoll saw the peer's FIN the
/// flag is cleared and the next read waits for the event instead of a recv() that would find
/// nothing (see the header comment). The first time, adds EPOLLRDHUP to the registration
/// (watch_fin(), which reports a FIN already there: clearing right after it is safe).
template <class Socket>
void note_read(Socket& s, std::size_t n, std::size_t room) {
#if CK_GW_READ_READY
  using namespace read_ready_detail;
  if (n == 0 || n >= room) return;
  auto* state = ImplOf<Socket>::of(s).reactor_data_;
  if (!state) return;
  std::uint32_t registered = state->*member(EventsTag{});
  if ((registered & EPOLLRDHUP) == 0) {
    if (!watch_fin(s)) return;
  } else if (last_report(state) & kPeerDone) {
    return;  // the FIN (or an error) is there to be read (fin_reported())
  }
  (state->*member(FlagsTag{}))[Reactor::read_op] = false;
#else
  (void)s;
  (void)n;
  (void)room;
#endif
}

/// read_now(), then the wait if needed, as one awaitable.
template <class Socket, class MutableBuffer>
net::awaitable<std::size_t, typename Socket::executor_type> read_some(
    Socket& s, const MutableBuffer& b, boost::system::error_code& ec) {
  std::size_t n = 0;
  if (read_now(s, b, n, ec)) co_return n;
  n = co_await s.async_read_some(
      b, net::redirect_error(net::use_awaitable_t<typename Socket::executor_type>{}, ec));
  co_return n;
}

}  // namespace ck::gw
