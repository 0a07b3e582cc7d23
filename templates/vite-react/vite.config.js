import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// CloudyKnight gives every app its base path (CK_BASE_PATH, "/<name>/") and its external URL
// (BASE_URL), and keeps the /<name>/ prefix for Vite ("prefix": "keep", set by detection), so
// the page, /@vite/client and the HMR WebSocket all live under the base, by path
// (http://gateway/<name>/) and by host (http://<name>.<domain>/, where the gateway adds the
// prefix). Outside CloudyKnight the base is "/".
const base = process.env.CK_BASE_PATH || '/';

// Vite answers 403 to a Host it does not know (server.allowedHosts; IP addresses and
// localhost are always allowed). The gateway passes the browser's Host on: allow the
// workspace's own host name and, for <name>.<domain>, the domain and its other names.
function allowedHosts() {
  if (!process.env.BASE_URL) return [];
  let host;
  try {
    host = new URL(process.env.BASE_URL).hostname;
  } catch {
    return [];
  }
  const name = process.env.CLOUDYKNIGHT_WORKSPACE;
  if (name && host.startsWith(name + '.')) return [host, '.' + host.slice(name.length + 1)];
  return [host];
}

export default defineConfig({
  base,
  server: { allowedHosts: allowedHosts() },
  plugins: [react()],
});
