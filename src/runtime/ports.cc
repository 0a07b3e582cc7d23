#include "runtime/ports.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace ck {

bool PortAllocator::is_free_on_host(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::optional<int> PortAllocator::acquire() {
  int span = hi_ - lo_ + 1;
  for (int i = 0; i < span; ++i) {
    int port = lo_ + (next_ - lo_ + i) % span;
    if (taken_.count(port) || !is_free_on_host(port)) continue;
    taken_.insert(port);
    next_ = port + 1 > hi_ ? lo_ : port + 1;  // round-robin, so a released port cools down
    return port;
  }
  return std::nullopt;
}

bool PortAllocator::acquire_exact(int port) {
  if (taken_.count(port) || !is_free_on_host(port)) return false;
  taken_.insert(port);
  return true;
}

}  // namespace ck
