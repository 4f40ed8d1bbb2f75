// Tests of the SDK's logic, run by Node (`npm test`), with the host imports played by `host`
// below; building and running real components is left to `stanzahook filter run`.
import assert from 'node:assert/strict';
import { register } from 'node:module';
import { test } from 'node:test';

const host = { config: {}, logs: [] };
globalThis.stanzahookTestHost = host;
const HOST_MODULE = `
  const host = globalThis.stanzahookTestHost;
  export const log = (level, message) => host.logs.push([level, message]);
  export const config = (key) => host.config[key];
  export const configEntries = () => Object.entries(host.config).sort(([a], [b]) => (a < b ? -1 : 1));
`;
register(
  `data:text/javascript,${encodeURIComponent(`
    export async function resolve(specifier, context, next) {
      if (specifier === 'stanzahook:filter/host@0.1.1') {
        return { url: 'data:text/javascript,' + ${JSON.stringify(encodeURIComponent(HOST_MODULE))}, shortCircuit: true };
      }
      return next(specifier, context);
    }
  `)}`,
);
const sdk = await import('../stanzahook-filter.js');
const { Event, answer, config, configEntries, defineFilter, drop, log, pass, replace, reply, rewrite } = sdk;

const event = (fields = {}) => JSON.stringify({ to: 'bot@x', from: 'alice@y/phone', kind: 'message', stanza: '<message/>', ...fields });
const ok = (val) => ({ tag: 'ok', val });

test('accessors read the event', () => {
  let seen;
  defineFilter({ before: (e) => ((seen = e), pass) }).before(event({ body: 'hi' }));
  assert.deepEqual([seen.to, seen.from, seen.kind, seen.body, seen.stanza], ['bot@x', 'alice@y/phone', 'message', 'hi', '<message/>']);
  assert.deepEqual([seen.text(), seen.replyTo(), seen.reactions(), seen.oob(), seen.state()], ['hi', undefined, undefined, undefined, undefined]);
});

test('vocabulary accessors read the payloads', () => {
  const e = new Event({
    body: '> Anna wrote: hi\nyes',
    reply: { id: 'm-1', to: 'anna@x/y', body_without_fallback: 'yes' },
    reactions: { id: 'm-2', reactions: ['👍', 7, '🎉'] },
    oob: { url: 'https://x.example/cat.jpg' },
    state: 'active',
  });
  assert.equal(e.text(), 'yes', 'the quote is left out');
  assert.deepEqual(e.replyTo(), { id: 'm-1', to: 'anna@x/y' });
  assert.deepEqual(e.reactions(), { id: 'm-2', emoji: ['👍', '🎉'] });
  assert.deepEqual(e.oob(), { url: 'https://x.example/cat.jpg', desc: undefined });
  assert.equal(e.state(), 'active');
  assert.equal(new Event({ body: 5, reply: { id: 1 } }).body, undefined, 'only strings are read');
  assert.equal(new Event({ reply: { id: 1 } }).replyTo(), undefined);
});

test('verdicts cross the boundary as JSON text', () => {
  const echo = defineFilter({
    before(e) {
      if (e.body === 'drop') return drop;
      if (e.body === 'ping') return reply('pong');
      if (e.body === 'answer') return answer({ body: 'a', extra: [1] });
      if (e.body === 'object') return rewrite({ plain: true });
      return rewrite(e.set('seen', true));
    },
  });
  assert.deepEqual(echo.before(event({ body: 'drop' })), ok({ tag: 'drop' }));
  assert.deepEqual(echo.before(event({ body: 'ping' })), ok({ tag: 'answer', val: '{"body":"pong"}' }));
  assert.deepEqual(echo.before(event({ body: 'answer' })), ok({ tag: 'answer', val: '{"body":"a","extra":[1]}' }));
  assert.deepEqual(echo.before(event({ body: 'object' })), ok({ tag: 'rewrite', val: '{"plain":true}' }));
  const rewritten = echo.before(event({ body: 'x' }));
  assert.equal(rewritten.val.tag, 'rewrite');
  assert.deepEqual(JSON.parse(rewritten.val.val), JSON.parse(event({ body: 'x', seen: true })));
});

test('unimplemented hooks pass everything', () => {
  const defaults = defineFilter({});
  assert.deepEqual(defaults.before(event()), ok({ tag: 'pass' }));
  assert.deepEqual(defaults.after(event(), { status: 200, reply: '{"body":"r"}' }), ok({ tag: 'pass' }));
  assert.equal(defaults.instances.reuse(), false, 'no reuse unless asked');
});

test('text that is not JSON is an error', () => {
  const defaults = defineFilter({});
  assert.match(defaults.before('not json').val, /^event is not JSON: /);
  assert.equal(defaults.before('not json').tag, 'err');
  const bad = defaults.after(event(), { status: 200, reply: '{' });
  assert.equal(bad.tag, 'err');
  assert.match(bad.val, /^reply is not JSON: /);
});

test('the after hook sees status and parsed reply; its event is parsed when read', () => {
  const seen = [];
  const f = defineFilter({
    after(e, a) {
      seen.push(a);
      if (a.reply?.text) return replace({ body: a.reply.text });
      return e.body === 'drop' ? drop : pass;
    },
  });
  assert.deepEqual(f.after(event(), { status: 200, reply: '{"text":"hi"}' }), ok({ tag: 'replace', val: '{"body":"hi"}' }));
  assert.deepEqual(f.after(event({ body: 'drop' }), { status: 0, reply: undefined }), ok({ tag: 'drop' }));
  assert.deepEqual(seen, [{ status: 200, reply: { text: 'hi' } }, { status: 0, reply: undefined }]);
  let lazy;
  defineFilter({ after: (e) => ((lazy = e), pass) }).after('{', { status: 0 });
  assert.equal(lazy.json, null, 'an event that is not JSON reads as null');
  assert.equal(lazy.body, undefined);
});

test('a thrown value becomes the hook error', () => {
  const f = defineFilter({
    before(e) {
      if (e.body === 'plain') throw new Error('no such user');
      if (e.body === 'string') throw 'just text';
      return e.json.missing.field;
    },
  });
  assert.deepEqual(f.before(event({ body: 'plain' })), { tag: 'err', val: 'no such user' });
  assert.deepEqual(f.before(event({ body: 'string' })), { tag: 'err', val: 'just text' });
  const bug = f.before(event({ body: 'bug' }));
  assert.equal(bug.tag, 'err');
  assert.match(bug.val, /^TypeError: /);
});

test('what is not a verdict is an error that says what to return', () => {
  const f = defineFilter({
    before(e) {
      if (e.body === 'undefined') return undefined;
      if (e.body === 'async') return Promise.resolve(pass);
      if (e.body === 'replace') return replace({});
      if (e.body === 'not json') return answer(undefined);
      return { tag: 'pass' };
    },
    after: () => reply('x'),
  });
  for (const [body, message] of [
    ['undefined', /^before returned undefined, not a verdict: return pass, drop/],
    ['async', /^before returned a Promise: hooks are synchronous/],
    ['replace', /^before cannot return replace/],
    ['not json', /answer\(…\) was given undefined, which is not JSON/],
    ['raw', /^before returned an object/],
  ]) {
    const result = f.before(event({ body }));
    assert.equal(result.tag, 'err', body);
    assert.match(result.val, message, body);
  }
  assert.match(f.after(event(), { status: 200 }).val, /^after cannot return answer\(…\): return pass, drop or replace\(reply\)$/);
});

test('reuse: a boolean or a function; a failing one means no reuse', () => {
  assert.equal(defineFilter({ reuse: true }).instances.reuse(), true);
  host.config = { cache: 'on' };
  assert.equal(defineFilter({ reuse: () => config('cache') === 'on' }).instances.reuse(), true);
  host.logs = [];
  const failing = defineFilter({
    reuse() {
      throw new Error('boom');
    },
  });
  assert.equal(failing.instances.reuse(), false);
  assert.deepEqual(host.logs, [['error', 'reuse failed, so each call gets a fresh instance: boom']]);
});

test('defineFilter refuses what it does not know', () => {
  assert.throws(() => defineFilter({ befor() {} }), /unknown key `befor`/);
  assert.throws(() => defineFilter({ before: pass }), /`before` must be a function/);
  assert.throws(() => defineFilter({ reuse: 'yes' }), /`reuse` must be true, false/);
  assert.throws(() => defineFilter(), /defineFilter takes an object/);
});

test('config and log go to the host', () => {
  host.config = { b: '2', a: '1' };
  host.logs = [];
  assert.equal(config('a'), '1');
  assert.equal(config('missing'), undefined);
  assert.deepEqual(configEntries(), [['a', '1'], ['b', '2']]);
  log.debug('d');
  log.info('i');
  log.warn('w');
  log.error(42);
  assert.deepEqual(host.logs, [['debug', 'd'], ['info', 'i'], ['warn', 'w'], ['error', '42']]);
});

test('set changes objects only, and returns the event', () => {
  const e = new Event({ a: 1 });
  assert.equal(e.set('b', 2), e);
  assert.deepEqual(e.json, { a: 1, b: 2 });
  assert.deepEqual(JSON.parse(JSON.stringify(e)), { a: 1, b: 2 });
  const list = new Event([1]);
  list.set('b', 2);
  assert.deepEqual(list.json, [1]);
});
