'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { answer } = require('../src/server.js');

test('root names the version', () => {
  const [status, body] = answer('/');
  assert.strictEqual(status, 200);
  assert.match(body, /^aicode-api \d+\.\d+\.\d+/);
});
