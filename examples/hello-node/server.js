// hello-node: an Express app run by CloudyKnight.
//
// CloudyKnight gives every workspace its own port in $PORT and mounts it under
// /<folder-name>/ with the prefix stripped, so the app itself serves "/" and uses
// relative links. The original prefix arrives in the X-Forwarded-Prefix header.
'use strict';

const express = require('express');

const app = express();
const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';  // CloudyKnight sets HOST (0.0.0.0 in a container)
const startedAt = new Date();

// Trust the gateway in front of us for req.ip / req.protocol.
app.set('trust proxy', 'loopback');

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}

app.get('/', (req, res) => {
  const prefix = req.get('X-Forwarded-Prefix') || '';
  res.type('html').send(`<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>hello-node</title>
  <style>
    body { font: 16px/1.6 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
    code { background: #eef; padding: 0 .3em; border-radius: 4px; }
  </style>
</head>
<body>
  <h1>Hello from Express</h1>
  <p>Node ${escapeHtml(process.version)}, Express ${escapeHtml(require('express/package.json').version)}.</p>
  <p>Mounted at <code id="prefix">${escapeHtml(prefix || '/')}</code>, listening on port ${port}.</p>
  <p><a href="api/hello">api/hello</a> answers JSON.</p>
</body>
</html>
`);
});

app.get('/api/hello', (req, res) => {
  res.json({
    message: 'Hello from hello-node',
    prefix: req.get('X-Forwarded-Prefix') || '',
    name: typeof req.query.name === 'string' ? req.query.name : 'world',
    uptime_seconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
  });
});

app.use((req, res) => {
  res.status(404).json({ error: 'not found', path: req.path });
});

const server = app.listen(port, host, () => {
  console.log(`hello-node listening on http://${host}:${port}/`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    console.log(`hello-node: ${sig}, closing`);
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
