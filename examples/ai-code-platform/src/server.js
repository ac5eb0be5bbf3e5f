// The AI Code Platform API, reduced to what a deployment needs (no packages).
// GET / answers the version; GET /health answers 200 while HEALTHY is true
// and the database answers a query; GET /visits counts in the cache (Redis at
// REDIS_URL, `tcp://HOST:PORT`); GET /notes lists the notes in PostgreSQL
// (DATABASE_URL, `postgres://aicode@HOST:PORT/aicode`), POST /notes adds one.
// hangar.yml fills both URLs from the services' addresses.
// A release that flips HEALTHY answers 500 everywhere: the "bad version"
// the example's deployment rolls back from.
'use strict';
const http = require('node:http');
const net = require('node:net');
const { version } = require('../package.json');
const pg = require('./pg.js');

// A note is a line of text; a bigger body is refused before it is read.
const MAX_NOTE = 1024;

const HEALTHY = true;

function answer(path) {
  if (!HEALTHY) return [500, 'broken\n'];
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

// GET /health: the process and its database (a query, not just a connect).
async function health() {
  await pg.query(process.env.DATABASE_URL, 'SELECT 1');
  return 'ok\n';
}

async function listNotes() {
  const { rows } = await pg.query(process.env.DATABASE_URL, 'SELECT body FROM notes ORDER BY id');
  return rows.map(([body]) => `${body}\n`).join('');
}

async function addNote(body) {
  const { rows } = await pg.query(
    process.env.DATABASE_URL,
    `INSERT INTO notes (body) VALUES (${pg.literal(body)}) RETURNING id`,
  );
  return `note ${rows[0][0]}\n`;
}

// The request's body, at most `limit` bytes: null beyond, without reading
// the rest (the answer closes the connection).
function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        resolve(null);
      } else {
        parts.push(chunk);
      }
    });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

function reply(res, status, body) {
  const headers = { 'content-type': 'text/plain' };
  if (status === 413) headers.connection = 'close';
  res.writeHead(status, headers);
  res.end(body);
}

// A route served through a backing service, as `[what, status, work]`:
// `work()` resolves to the body answered with `status`, and an error without
// a status of its own is a 503 naming `what`. null for the other routes.
function backed(req) {
  if (req.url === '/visits' && req.method === 'GET') return ['cache', 200, visits];
  if (req.url === '/health' && req.method === 'GET') return ['database', 200, health];
  if (req.url === '/notes' && req.method === 'GET') return ['database', 200, listNotes];
  if (req.url === '/notes' && req.method === 'POST') {
    return [
      'database',
      201,
      async () => {
        const body = await readBody(req, MAX_NOTE);
        if (body === null) throw Object.assign(new Error(`a note holds at most ${MAX_NOTE} bytes`), { status: 413 });
        const note = body.trim();
        if (!note || note.includes('\0')) throw Object.assign(new Error('a note is one line of text'), { status: 400 });
        return addNote(note);
      },
    ];
  }
  return null;
}

if (require.main === module) {
  const port = Number(process.env.PORT || 3000);
  http
    .createServer((req, res) => {
      const work = HEALTHY && backed(req);
      if (work) {
        const [what, status, run] = work;
        run().then(
          (body) => reply(res, status, body),
          (err) => reply(res, err.status || 503, err.status ? `${err.message}\n` : `${what}: ${err.message}\n`),
        );
        return;
      }
      const [status, body] = answer(req.url);
      reply(res, status, body);
    })
    .listen(port, '127.0.0.1');
}

module.exports = { answer };
