// The gateway's listener: one SO_REUSEPORT acceptor per worker, admission under
// gateway.max_connections(_per_ip), connections balanced over the workers, the watchdog that
// enforces each connection's deadline, and the Gateway's life (listen, start, stop). The
// session loop is in gateway.cc; the design is in impl.h.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/unique_fd.h"
#include "events/events.h"
#include "gateway/impl.h"

namespace ck {
using namespace gw;

std::shared_ptr<void> Gateway::Impl::admit(const std::string& ip) {
  if (open_connections.fetch_add(1, std::memory_order_relaxed) >= connection_cap) {
    open_connections.fetch_sub(1, std::memory_order_relaxed);
    return nullptr;
  }
  {
    std::lock_guard lock(per_ip_mu);
    int& n = per_ip[ip];
    if (n >= opts.max_connections_per_ip) {
      if (n == 0) per_ip.erase(ip);
      open_connections.fetch_sub(1, std::memory_order_relaxed);
      return nullptr;
    }
    ++n;
  }
  // Gives the place back when the connection's last owner (session, watchdog, tunnel) ends.
  return std::shared_ptr<void>(this, [this, ip](void*) {
    {
      std::lock_guard lock(per_ip_mu);
      auto it = per_ip.find(ip);
      if (it != per_ip.end() && --it->second <= 0) per_ip.erase(it);
    }
    open_connections.fetch_sub(1, std::memory_order_relaxed);
  });
}

namespace {

// Answered to a connection past a cap, in one non-blocking send (it may not all leave; the
// connection is closed right after either way).
constexpr std::string_view kBusy =
    "HTTP/1.1 503 Service Unavailable\r\nServer: cloudyknight\r\nRetry-After: 5\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 73\r\nConnection: close\r\n\r\n"
    "Too many open connections: retry in a few seconds with fewer connections\n";
static_assert(kBusy.size() - kBusy.find("\r\n\r\n") - 4 == 73);

}  // namespace

Task<void> Gateway::Impl::accept_loop(Worker& w, bool redirect) {
  Acceptor& acceptor = redirect ? *w.redirect_acceptor : *w.acceptor;
  // Out of file descriptors (EMFILE/ENFILE): a spare descriptor is given up to accept and
  // close the waiting connection (else it stays in the backlog and wakes us again at once),
  // then accepting pauses, longer each time, until a connection ends.
  int spare = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  error_code local_ec;
  const tcp protocol = acceptor.local_endpoint(local_ec).protocol();  // of the sockets handed over
  auto pause_ms = std::chrono::milliseconds(0);
  for (;;) {
    error_code ec;
    Socket sock(w.io);
    co_await acceptor.async_accept(sock, net::redirect_error(use_task, ec));
    if (ec == net::error::operation_aborted || !acceptor.is_open()) break;
    if (ec) {
      bool no_fds = ec == net::error::no_descriptors || ec.value() == ENFILE;
      if (no_fds && spare >= 0) {
        ::close(spare);
        int fd = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) ::close(fd);
        spare = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      }
      pause_ms = std::min<std::chrono::milliseconds>(
          std::chrono::milliseconds(1000), std::max<std::chrono::milliseconds>(
                                               std::chrono::milliseconds(50), pause_ms * 2));
      if (pause_ms < std::chrono::milliseconds(1000) || !no_fds) {
        logger()->warn("accept failed: {}; pausing {} ms{}", ec.message(), pause_ms.count(),
                       no_fds ? " (raise ulimit -n or lower gateway.max_connections)" : "");
      }
      Timer pause(w.io);
      pause.expires_after(pause_ms);
      co_await pause.async_wait(net::redirect_error(use_task, ec));
      continue;
    }
    pause_ms = std::chrono::milliseconds(0);
    std::string ip;
    auto ep = sock.remote_endpoint(ec);
    if (!ec) ip = ep.address().to_string();
    auto slot = admit(ip);
    if (!slot) {
      sock.non_blocking(true, ec);
      sock.write_some(net::buffer(kBusy.data(), kBusy.size()), ec);
      sock.shutdown(Socket::shutdown_send, ec);
      sock.close(ec);
      continue;
    }
    sock.set_option(tcp::no_delay(true), ec);
    Worker& to = redirect ? w : balance_to(w);
    to.load.add();  // now, so the next accept (on any worker) sees it
    if (&to == &w) {
      serve(w, std::move(sock), std::move(slot), redirect);
      continue;
    }
    // Handed over: the descriptor leaves this worker's epoll for the other's.
    int fd = sock.release(ec);
    if (fd < 0 || ec) {
      to.load.sub();
      sock.close(ec);
      continue;
    }
    net::post(to.io, [this, &to, protocol, fd = UniqueFd(fd), slot = std::move(slot)]() mutable {
      Socket s(to.io);
      error_code err;
      s.assign(protocol, fd.get(), err);
      if (err) {
        to.load.sub();
        return;  // fd closes with the handler
      }
      fd.release();
      serve(to, std::move(s), std::move(slot), false);
    });
  }
  if (spare >= 0) ::close(spare);
}

gw::Worker& Gateway::Impl::balance_to(Worker& w) {
  Worker* to = &w;
  int least = w.load.n.load(std::memory_order_relaxed) - kBalanceSlack + 1;
  for (auto& o : workers) {
    int n = o->load.n.load(std::memory_order_relaxed);
    if (n < least) {
      least = n;
      to = o.get();
    }
  }
  return *to;
}

void Gateway::Impl::serve(Worker& w, Socket sock, std::shared_ptr<void> slot, bool redirect) {
  error_code ec;
  sock.non_blocking(true, ec);
  auto conn = std::make_shared<Conn>(std::move(sock));
  conn->slot = std::move(slot);
  conn->load = &w.load;
  spawn(w.io.get_executor(), watchdog(conn, opts.header_timeout), "gateway watchdog");
  if (redirect) {
    spawn(w.io.get_executor(), redirect_session(std::move(conn)), "gateway redirect to https");
    return;
  }
  if (tls) conn->client.start_tls(tls->current());
  spawn(w.io.get_executor(), session(conn, w), "gateway session");
}

// Cancels what a connection waits on once its deadline has passed; ends with the session.
Task<void> Gateway::Impl::watchdog(std::shared_ptr<Conn> c, Duration header_timeout) {
  while (!c->done) {
    c->watchdog.expires_after(std::chrono::seconds(1));
    error_code ec;
    co_await c->watchdog.async_wait(net::redirect_error(use_task, ec));
    if (c->done) break;
    auto now = std::chrono::steady_clock::now();
    if (c->header_buf && c->header_buf->size() > 0) {
      // A keep-alive request has begun: its headers are due within header_timeout.
      c->header_buf = nullptr;
      c->deadline = std::min(c->deadline, now + header_timeout);
    }
    if (now < c->deadline) continue;
    c->timed_out = true;
    c->no_deadline();
    if (c->upstream) {
      c->upstream->cancel(ec);  // the session answers 504 and goes on
    } else {
      c->client.close(ec);
    }
  }
}

Gateway::Gateway(GatewayOptions opts, const SnapshotHolder& routes, ControlHandler control,
                 GatewayHooks hooks)
    : impl_(std::make_unique<Impl>(std::move(opts), routes, std::move(control), std::move(hooks))) {}

Gateway::~Gateway() { stop(); }

Result<std::uint16_t> Gateway::listen() {
  auto& o = impl_->opts;
  // Each proxied connection holds two descriptors (client and app); keep a reserve for the
  // daemon's own files, logs, pipes and pooled upstream connections.
  impl_->connection_cap = std::max(1, o.max_connections);
  if (struct rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    auto fit = static_cast<long long>(rl.rlim_cur) / 2 - 32;
    fit = std::max<long long>(fit, 8);
    if (fit < impl_->connection_cap) {
      impl_->connection_cap = static_cast<int>(fit);
      logger()->info("gateway.max_connections lowered to {} to fit the open-file limit ({}); raise "
                     "ulimit -n for more",
                     fit, static_cast<long long>(rl.rlim_cur));
    }
  }
  if (!o.tls.empty()) {
    impl_->tls = std::make_unique<gw::TlsStore>(o.tls);
    BOOST_OUTCOME_TRY(impl_->tls->load());
  }
  int n = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  error_code ec;
  auto addr = net::ip::make_address(o.host, ec);
  if (ec) return fail(Errc::invalid_argument, fmt::format("'{}' is not an IP address to listen on", o.host));
  std::uint16_t port = o.port;
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<Impl::Worker>(impl_->routes);
    w->load.gauge = &GatewayMetrics::get().worker_connections(static_cast<std::size_t>(i));
    auto acc = std::make_unique<Acceptor>(w->io);
    tcp::endpoint ep(addr, port);
    acc->open(ep.protocol(), ec);
    if (!ec) acc->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) {
      int one = 1;
      if (::setsockopt(acc->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        ec = error_code(errno, boost::system::system_category());
      }
    }
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return fail(Errc::unavailable,
                  fmt::format("cannot listen on {}:{}: {} (is another server using it? pick another "
                              "address with --listen)",
                              o.host, port, ec.message()));
    }
    if (port == 0) port = acc->local_endpoint().port();
    ::fcntl(acc->native_handle(), F_SETFD, FD_CLOEXEC);
    w->acceptor = std::move(acc);
    w->index = static_cast<unsigned>(impl_->workers.size());
    impl_->workers.push_back(std::move(w));
  }
  impl_->bound_port = port;
  if (!o.redirect_http.empty() && !o.tls.empty()) {
    BOOST_OUTCOME_TRY(where, parse_listen(o.redirect_http));
    auto raddr = net::ip::make_address(where.first, ec);
    if (ec) {
      return fail(Errc::invalid_argument,
                  fmt::format("gateway.redirect_http: '{}' is not an IP address to listen on", where.first));
    }
    auto& first = *impl_->workers.front();
    auto acc = std::make_unique<Acceptor>(first.io);
    tcp::endpoint ep(raddr, where.second);
    acc->open(ep.protocol(), ec);
    if (!ec) acc->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return fail(Errc::unavailable,
                  fmt::format("cannot listen on {} (gateway.redirect_http): {} (is another server "
                              "using it? pick another address)",
                              o.redirect_http, ec.message()));
    }
    ::fcntl(acc->native_handle(), F_SETFD, FD_CLOEXEC);
    first.redirect_acceptor = std::move(acc);
  }
  return port;
}

void Gateway::set_address(PublicAddress address) { impl_->opts.address = std::move(address); }

void Gateway::start() {
  for (auto& w : impl_->workers) {
    Impl::Worker* wp = w.get();
    spawn(wp->io.get_executor(), impl_->accept_loop(*wp), "gateway accept loop");
    spawn(wp->io.get_executor(), impl_->sweep_upstream_pool(*wp), "gateway upstream pool sweep");
    if (wp->redirect_acceptor) {
      spawn(wp->io.get_executor(), impl_->accept_loop(*wp, true), "gateway redirect_http accept loop");
    }
    if (impl_->tls && impl_->opts.tls_reload.count() > 0 && wp == impl_->workers.front().get()) {
      spawn(wp->io.get_executor(), impl_->reload_certificates(*wp), "gateway TLS reload");
    }
    wp->thread = std::thread([wp] {
      for (;;) {
        try {
          wp->io.run();
          break;
        } catch (const std::exception& e) {
          logger()->error("gateway worker caught: {}", e.what());
        }
      }
    });
  }
  impl_->running = true;
}

void Gateway::stop() {
  if (!impl_->running) return;
  impl_->running = false;
  // Event subscribers notify by posting to their worker: detach them before workers stop.
  if (impl_->hooks.events) impl_->hooks.events->close_all();
  for (auto& w : impl_->workers) {
    Impl::Worker* wp = w.get();
    net::post(wp->io, [wp] {
      error_code ec;
      wp->acceptor->close(ec);
      if (wp->redirect_acceptor) wp->redirect_acceptor->close(ec);
      wp->io.stop();
    });
  }
  for (auto& w : impl_->workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  impl_->workers.clear();
}

}  // namespace ck
