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
