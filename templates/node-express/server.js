// An Express app. CloudyKnight gives it a port in $PORT (and the address in $HOST) and mounts
// it under /<workspace>/ with that prefix stripped, so links here are relative.
const express = require('express');

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';
const app = express();

app.get('/', (req, res) => {
  res.type('html').send(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>node-express</title></head>
<body>
  <h1>Hello from Express</h1>
  <p>Edit <code>server.js</code>; the workspace restarts on save. Try <a href="api/hello">api/hello</a>.</p>
</body>
</html>`);
});

app.get('/api/hello', (req, res) => {
  res.json({ hello: 'world', node: process.version });
});

const server = app.listen(port, host, () => {
  console.log(`node-express listening on http://${host}:${port}/`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
