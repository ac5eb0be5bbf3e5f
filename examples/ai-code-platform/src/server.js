// The AI Code Platform API, reduced to what a deployment needs (no packages).
// GET /health answers 200 while HEALTHY is true; GET / answers the version;
// GET /visits counts in the cache (Redis at REDIS_URL, `tcp://HOST:PORT`,
// which hangar.yml fills from the cache service's address).
// A release that flips HEALTHY answers 500 everywhere: the "bad version"
// the example's deployment rolls back from.
'use strict';
const http = require('node:http');
const net = require('node:net');
const { version } = require('../package.json');

const HEALTHY = true;

function answer(path) {
  if (!HEALTHY) return [500, 'broken\n'];
  if (path === '/health') return [200, 'ok\n'];
  return [200, `aicode-api ${version}\n`];
}

// One Redis command on a connection of its own; the reply's first line.
function redis(url, command) {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(url);
    const conn = net.createConnection({ host: hostname, port: Number(port) });
    let reply = '';
    conn.setTimeout(5000, () => conn.destroy(new Error('cache timed out')));
    conn.on('connect', () => conn.write(`${command}\r\n`));
    conn.on('data', (chunk) => {
      reply += chunk;
      if (reply.includes('\r\n')) {
        conn.end();
        resolve(reply.split('\r\n')[0]);
      }
    });
    conn.on('error', reject);
    conn.on('close', () => reject(new Error('cache closed the connection')));
  });
}

async function visits() {
  const reply = await redis(process.env.REDIS_URL, 'INCR visits');
  if (!reply.startsWith(':')) throw new Error(`cache answered ${reply}`);
  return `visits ${reply.slice(1)} (aicode-api ${version})\n`;
}

if (require.main === module) {
  const port = Number(process.env.PORT || 3000);
  http
    .createServer((req, res) => {
      if (HEALTHY && req.url === '/visits') {
        visits().then(
          (body) => {
            res.writeHead(200, { 'content-type': 'text/plain' });
            res.end(body);
          },
          (err) => {
            res.writeHead(503, { 'content-type': 'text/plain' });
            res.end(`cache: ${err.message}\n`);
          },
        );
        return;
      }
      const [status, body] = answer(req.url);
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(body);
    })
    .listen(port, '127.0.0.1');
}

module.exports = { answer };
