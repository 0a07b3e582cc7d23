// The soak's node app (tests/soak/run.py), Node's standard library only.
//   GET /version  the content of version.txt as read when the app started (the soak saves a
//                 new one and expects the restarted app to answer it)
//   GET /         a small page
//   /ws           WebSocket echo (RFC 6455 text/binary, ping -> pong, close -> close)
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';
let version = '';
try {
  version = fs.readFileSync('version.txt', 'utf8');
} catch (e) {
  version = '(no version.txt)';
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/version') {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(version);
  } else if (path === '/') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>soak node</title><p>soak node app, pid ${process.pid}</p>\n`);
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  }
});

function frame(opcode, payload) {
  const n = payload.length;
  let head;
  if (n < 126) {
    head = Buffer.from([0x80 | opcode, n]);
  } else if (n < 65536) {
    head = Buffer.alloc(4);
    head[0] = 0x80 | opcode; head[1] = 126; head.writeUInt16BE(n, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode; head[1] = 127; head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

server.on('upgrade', (req, socket) => {
  const key = req.headers['sec-websocket-key'];
  if (req.url.split('?')[0] !== '/ws' || !key) {
    socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
               `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buf = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const opcode = buf[0] & 0x0f;
      const masked = (buf[1] & 0x80) !== 0;
      let n = buf[1] & 0x7f;
      let off = 2;
      if (n === 126) {
        if (buf.length < 4) return;
        n = buf.readUInt16BE(2); off = 4;
      } else if (n === 127) {
        if (buf.length < 10) return;
        n = Number(buf.readBigUInt64BE(2)); off = 10;
      }
      if (n > 1 << 20) { socket.destroy(); return; }
      const need = off + (masked ? 4 : 0) + n;
      if (buf.length < need) return;
      let payload = Buffer.from(buf.subarray(off + (masked ? 4 : 0), need));
      if (masked) {
        const mask = buf.subarray(off, off + 4);
        for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
      }
      buf = buf.subarray(need);
      if (opcode === 1 || opcode === 2) socket.write(frame(opcode, payload));
      else if (opcode === 9) socket.write(frame(10, payload));
      else if (opcode === 8) { socket.end(frame(8, payload.subarray(0, 2))); return; }
    }
  });
  socket.on('error', () => socket.destroy());
});

server.keepAliveTimeout = 30000;
server.listen(port, host, () => console.log(`soak node listening on ${host}:${port}, version ${JSON.stringify(version)}`));
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => { server.close(); setTimeout(() => process.exit(0), 500).unref(); process.exit(0); });
}
