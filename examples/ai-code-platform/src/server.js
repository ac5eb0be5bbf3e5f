// The AI Code Platform API, reduced to what a deployment needs (no packages).
// GET /health answers 200 while HEALTHY is true; GET / answers the version.
// A release that flips HEALTHY answers 500 everywhere: the "bad version"
// the example's deployment rolls back from.
'use strict';
const http = require('node:http');
const { version } = require('../package.json');

const HEALTHY = true;

function answer(path) {
  if (!HEALTHY) return [500, 'broken\n'];
  if (path === '/health') return [200, 'ok\n'];
  return [200, `aicode-api ${version}\n`];
}

if (require.main === module) {
  const port = Number(process.env.PORT || 3000);
  http
    .createServer((req, res) => {
      const [status, body] = answer(req.url);
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(body);
    })
    .listen(port, '127.0.0.1');
}

module.exports = { answer };
