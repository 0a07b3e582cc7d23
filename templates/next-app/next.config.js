// The gateway keeps the /<name>/ prefix for Next's dev server ("prefix": "keep", set by
// detection), and CloudyKnight passes it as CK_BASE_PATH ("/<name>/"): Next wants it without
// the trailing slash, and nothing at all for "/" (run outside CloudyKnight, or as www).
const base = (process.env.CK_BASE_PATH || '/').replace(/\/+$/, '');

/** @type {import('next').NextConfig} */
module.exports = {
  basePath: base,
  assetPrefix: base,
  // /<name>/ is the workspace's address: without this Next redirects it to /<name>, which the
  // gateway sends back to /<name>/.
  trailingSlash: true,
  reactStrictMode: true,
};
