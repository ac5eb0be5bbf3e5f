'use strict';
// The PostgreSQL client's messages, byte for byte as the protocol documents
// them (https://www.postgresql.org/docs/current/protocol-message-formats.html).
// The example's end-to-end test runs it against a real PostgreSQL.
const test = require('node:test');
const assert = require('node:assert');
const pg = require('../src/pg.js');

test('startup message: length, protocol 3.0, pairs, terminator', () => {
  const m = pg.startupMessage({ user: 'aicode', database: 'aicode' });
  assert.strictEqual(m.readInt32BE(0), m.length);
  assert.strictEqual(m.readInt32BE(4), 196608);
  assert.strictEqual(m.subarray(8).toString('latin1'), 'user\0aicode\0database\0aicode\0\0');
});

test('query message: Q, length counting itself, NUL-terminated text', () => {
  const m = pg.queryMessage('SELECT 1');
  assert.strictEqual(m.toString('latin1', 0, 1), 'Q');
  assert.strictEqual(m.readInt32BE(1), 4 + 'SELECT 1'.length + 1);
  assert.strictEqual(m.toString('latin1', 5), 'SELECT 1\0');
  assert.throws(() => pg.queryMessage('SELECT 1\0; DROP TABLE notes'));
});

test('data row: text columns and NULL', () => {
  const body = Buffer.from([0, 3, 0, 0, 0, 2, 0x68, 0x69, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
  assert.deepStrictEqual(pg.parseDataRow(body), ['hi', null, '']);
});

test('error fields by their type byte', () => {
  const body = Buffer.from('SERROR\0C42P01\0Mrelation "x" does not exist\0\0', 'latin1');
  assert.deepStrictEqual(pg.parseFields(body), {
    S: 'ERROR',
    C: '42P01',
    M: 'relation "x" does not exist',
  });
});

test('literals double quotes and keep backslashes', () => {
  assert.strictEqual(pg.literal("it's"), "'it''s'");
  assert.strictEqual(pg.literal("'); DROP TABLE notes; --"), "'''); DROP TABLE notes; --'");
  assert.strictEqual(pg.literal('a\\b'), "'a\\b'");
  assert.throws(() => pg.literal('a\0b'));
});

// A server that answers the startup with `reply` (a real socket on loopback).
function fakeServer(reply) {
  const net = require('node:net');
  const server = net.createServer((c) => c.once('data', () => c.write(reply)));
  // Unreferenced: a failed assertion does not keep the test process alive.
  server.unref();
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

test('a server asking for a password is refused, saying so', async () => {
  // AuthenticationSASL (10) offering SCRAM-SHA-256, as PostgreSQL 14+ asks by default.
  const mechanisms = Buffer.from('SCRAM-SHA-256\0\0', 'latin1');
  const reply = Buffer.alloc(9);
  reply.write('R', 0, 'latin1');
  reply.writeInt32BE(8 + mechanisms.length, 1);
  reply.writeInt32BE(10, 5);
  const server = await fakeServer(Buffer.concat([reply, mechanisms]));
  const { port } = server.address();
  await assert.rejects(pg.query(`postgres://aicode@127.0.0.1:${port}/aicode`, 'SELECT 1'), /asks for SASL \(SCRAM\).*trust authentication only/);
  server.close();
});

test('an error before the query ends the session with its message and code', async () => {
  const fields = Buffer.from('SFATAL\0C3D000\0Mdatabase "x" does not exist\0\0', 'latin1');
  const head = Buffer.alloc(5);
  head.write('E', 0, 'latin1');
  head.writeInt32BE(4 + fields.length, 1);
  const server = await fakeServer(Buffer.concat([head, fields]));
  const { port } = server.address();
  await assert.rejects(pg.query(`postgres://aicode@127.0.0.1:${port}/x`, 'SELECT 1'), (e) => {
    assert.strictEqual(e.code, '3D000');
    assert.match(e.message, /database "x" does not exist/);
    return true;
  });
  server.close();
});
