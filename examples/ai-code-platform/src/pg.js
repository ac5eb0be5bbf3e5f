// A minimal PostgreSQL client: the frontend/backend protocol 3.0 with Node's
// standard library only. The examples need nothing but node, python3 and git
// to run (no `npm install`, so they run offline and in CI as they are); a real
// service uses the `pg` package and a pool. What it speaks:
// - startup with trust authentication (db/postgres.sh's loopback cluster);
//   a server asking for a password is refused with a message saying so;
// - the simple query protocol, one connection per query (a local database:
//   a connection costs about a millisecond), rows as text;
// - ErrorResponse as an Error with PostgreSQL's SQLSTATE in `code`.
// Values go into SQL through `literal`, which quotes them as PostgreSQL reads
// strings with standard_conforming_strings on (checked at startup).
'use strict';
const net = require('node:net');

const PROTOCOL_3_0 = 196608;
const TIMEOUT_MS = 5000;

function cstring(s) {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
}

// StartupMessage: length, protocol version, then name/value pairs, then a 0.
function startupMessage(params) {
  const pairs = Object.entries(params).flatMap(([k, v]) => [cstring(k), cstring(v)]);
  const body = Buffer.concat([...pairs, Buffer.from([0])]);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(PROTOCOL_3_0, 4);
  return Buffer.concat([head, body]);
}

// A typed message: its type byte, a length counting itself, the body.
function message(type, body) {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

function queryMessage(sql) {
  if (sql.includes('\0')) throw new Error('a query cannot hold a NUL character');
  return message('Q', cstring(sql));
}

// DataRow: a count of columns, each a length (-1 for NULL) and its bytes.
function parseDataRow(body) {
  const n = body.readInt16BE(0);
  const row = [];
  let at = 2;
  for (let i = 0; i < n; i += 1) {
    const len = body.readInt32BE(at);
    at += 4;
    if (len < 0) {
      row.push(null);
    } else {
      row.push(body.toString('utf8', at, at + len));
      at += len;
    }
  }
  return row;
}

// ErrorResponse and NoticeResponse: (field type byte, C string)*, then a 0.
function parseFields(body) {
  const fields = {};
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const end = body.indexOf(0, at + 1);
    if (end < 0) break;
    fields[String.fromCharCode(body[at])] = body.toString('utf8', at + 1, end);
    at = end + 1;
  }
  return fields;
}

// A string as an SQL literal. Only valid while standard_conforming_strings is
// on (backslashes are then plain characters); `query` refuses a server where
// it is off.
function literal(value) {
  const s = String(value);
  if (s.includes('\0')) throw new Error('text cannot hold a NUL character');
  return `'${s.replace(/'/g, "''")}'`;
}

const AUTH_NAMES = { 2: 'Kerberos', 3: 'a cleartext password', 5: 'an MD5 password', 7: 'GSSAPI', 9: 'SSPI', 10: 'SASL (SCRAM)' };

// Runs `sql` (one or more statements) on the database at `url`
// (`postgres://USER@HOST:PORT/DATABASE`); resolves to the rows of the last
// statement that returned any, as arrays of strings (null for NULL), and its
// command tag (`INSERT 0 1`).
function query(url, sql) {
  const u = new URL(url);
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    return Promise.reject(new Error(`${url} is not a postgres:// URL`));
  }
  const params = {
    user: decodeURIComponent(u.username) || 'postgres',
    database: decodeURIComponent(u.pathname.slice(1)) || decodeURIComponent(u.username),
    application_name: 'aicode-api',
    client_encoding: 'UTF8',
  };
  return new Promise((resolve, reject) => {
    const conn = net.createConnection({ host: u.hostname, port: Number(u.port || 5432) });
    let buf = Buffer.alloc(0);
    let rows = [];
    let last = { rows: [], command: '' };
    let error = null;
    let sent = false;
    let settled = false;
    const finish = (err, value) => {
      if (settled) return;
      settled = true;
      if (err) {
        conn.destroy();
        reject(err);
      } else {
        conn.end(message('X', Buffer.alloc(0)));
        resolve(value);
      }
    };
    conn.setTimeout(TIMEOUT_MS, () => finish(new Error(`database at ${u.host} timed out`)));
    conn.on('connect', () => conn.write(startupMessage(params)));
    conn.on('error', (e) => finish(e));
    conn.on('close', () => finish(new Error(`database at ${u.host} closed the connection`)));
    conn.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 5) {
        const len = buf.readInt32BE(1);
        if (len < 4) return finish(new Error(`database sent a message of length ${len}`));
        if (buf.length < 1 + len) break;
        const type = String.fromCharCode(buf[0]);
        const body = buf.subarray(5, 1 + len);
        buf = buf.subarray(1 + len);
        switch (type) {
          case 'R': {
            const kind = body.readInt32BE(0);
            if (kind !== 0) {
              return finish(
                new Error(
                  `database asks for ${AUTH_NAMES[kind] || `authentication ${kind}`}; ` +
                    'this client speaks trust authentication only (see src/pg.js)',
                ),
              );
            }
            break;
          }
          case 'S': {
            const [name, value] = body.toString('utf8').split('\0');
            if (name === 'standard_conforming_strings' && value !== 'on') {
              return finish(new Error('the database has standard_conforming_strings off'));
            }
            break;
          }
          case 'T':
            rows = [];
            break;
          case 'D':
            rows.push(parseDataRow(body));
            break;
          case 'C':
            last = { rows, command: body.toString('utf8', 0, body.length - 1) };
            rows = [];
            break;
          case 'E': {
            const f = parseFields(body);
            error = Object.assign(new Error(`database: ${f.M || 'error'}`), { code: f.C });
            // Before the query, an error ends the session; after, 'Z' follows.
            if (!sent) return finish(error);
            break;
          }
          case 'Z':
            if (!sent) {
              sent = true;
              conn.write(queryMessage(sql));
            } else {
              return finish(error, last);
            }
            break;
          default:
            // K (BackendKeyData), N (notices), I (empty query): nothing to do.
            break;
        }
      }
      return undefined;
    });
  });
}

module.exports = { query, literal, startupMessage, queryMessage, parseDataRow, parseFields };
