// Write stanzahook filters in JavaScript.
//
// A filter is a WebAssembly component that sees each stanza's event JSON before stanzahook POSTs
// it to the webhook, and the webhook's reply JSON after. Define its hooks with `defineFilter`
// (both default to passing everything through), export the result as the module's default, and
// build with `node guest-sdk/js/build.mjs <filter-dir> <out.wasm>`:
//
//     import { defineFilter, pass, reply } from 'stanzahook-filter';
//
//     export default defineFilter({
//       before(event) {
//         return event.body === '/ping' ? reply('pong') : pass;
//       },
//     });
//
// Every call runs in a fresh instance, so module-level variables do not survive from one stanza
// to the next, unless the filter says with `reuse: true` that its instance may be kept. Read
// settings with `config`, write to stanzahook's log with the `log` functions. A hook that throws
// returns an error: stanzahook logs it and applies the filter's `on_error` setting.
//
// This is the JavaScript twin of the Rust SDK (guest-sdk/src/lib.rs); the types are in
// stanzahook-filter.d.ts.

import { config as hostConfig, configEntries as hostConfigEntries, log as hostLog } from 'stanzahook:filter/host@0.1.1';

// Keys of the SDK's internals on its own classes; not exported, so not part of the API.
const LAZY = Symbol('lazy');
const TEXT = Symbol('text');

/**
 * The event stanzahook is about to POST (README: "The request"): `to`, `from`, `kind`, `stanza`,
 * `body` (for messages with one), `type`, `id`, and whatever earlier filters added.
 *
 * The `after` hook's event is parsed only when the hook first reads it: most `after` hooks look at
 * the reply alone.
 */
export class Event {
  #json;
  #parsed = true;
  /** The JSON text from the host, read only while the event is unparsed. */
  #text = '';

  /** Wraps a JSON value (an object) as an event. */
  constructor(json = {}) {
    this.#json = json;
  }

  /** An event parsed on first use; text that is not JSON reads as `null` (every accessor undefined). */
  static [LAZY](text) {
    const event = new Event(null);
    event.#parsed = false;
    event.#text = text;
    return event;
  }

  #str(key) {
    const value = this.json?.[key];
    return typeof value === 'string' ? value : undefined;
  }

  /** The stanza's recipient: an address at stanzahook's domain. */
  get to() {
    return this.#str('to');
  }

  /** The stanza's sender. */
  get from() {
    return this.#str('from');
  }

  /** `"message"`, `"presence"` or `"iq"`. */
  get kind() {
    return this.#str('kind');
  }

  /** The text of a message's `<body/>`. */
  get body() {
    return this.#str('body');
  }

  /** The whole stanza as received, as XML. */
  get stanza() {
    return this.#str('stanza');
  }

  /**
   * What the sender wrote: the body without the quote of the message it replies to (the fallback
   * a client that knows no replies shows), else the body.
   */
  text() {
    const text = this.json?.reply?.body_without_fallback;
    return typeof text === 'string' ? text : this.body;
  }

  /** The message this one replies to (XEP-0461), from the event's `reply`: `{ id, to }`. */
  replyTo() {
    const reply = this.json?.reply;
    if (typeof reply?.id !== 'string') return undefined;
    return { id: reply.id, to: typeof reply.to === 'string' ? reply.to : undefined };
  }

  /** The sender's reactions to a message (XEP-0444), from the event's `reactions`: `{ id, emoji }`. */
  reactions() {
    const reactions = this.json?.reactions;
    if (typeof reactions?.id !== 'string' || !Array.isArray(reactions.reactions)) return undefined;
    return { id: reactions.id, emoji: reactions.reactions.filter((r) => typeof r === 'string') };
  }

  /** The attachment the message carries (XEP-0066), from the event's `oob`: `{ url, desc }`. */
  oob() {
    const oob = this.json?.oob;
    if (typeof oob?.url !== 'string') return undefined;
    return { url: oob.url, desc: typeof oob.desc === 'string' ? oob.desc : undefined };
  }

  /** The chat state (XEP-0085): `"active"`, `"composing"`, `"paused"`, `"inactive"`, `"gone"`. */
  state() {
    return this.#str('state');
  }

  /** The event as JSON, for keys without an accessor; change it in place to rewrite the event. */
  get json() {
    if (!this.#parsed) {
      try {
        this.#json = JSON.parse(this.#text);
      } catch {
        this.#json = null;
      }
      this.#parsed = true;
      this.#text = '';
    }
    return this.#json;
  }

  /** Sets (or adds) a key; does nothing if the event is not an object. Returns the event. */
  set(key, value) {
    const json = this.json;
    if (json !== null && typeof json === 'object' && !Array.isArray(json)) json[key] = value;
    return this;
  }

  /** The event as JSON, for `JSON.stringify(event)`. */
  toJSON() {
    return this.json;
  }

  /** The event as JSON text: the host's own text when nothing parsed it. */
  [TEXT]() {
    return this.#parsed ? jsonText(this.#json, 'rewrite') : this.#text;
  }
}

/** A hook's decision; build one with `pass`, `drop`, `rewrite`, `answer`, `reply` or `replace`. */
class Verdict {
  constructor(kind, value) {
    this.kind = kind;
    if (value !== undefined) this.value = value;
    Object.freeze(this);
  }
}

/** Go on with the event (before) or the reply (after) as it is. */
export const pass = new Verdict('pass');

/** Before: drop the stanza, nothing is posted or sent. After: send nothing back. */
export const drop = new Verdict('drop');

/** Before: go on with this event (an `Event` or a plain object) instead. */
export function rewrite(event) {
  return new Verdict('rewrite', event instanceof Event ? event : new Event(event));
}

/** Before: answer with this reply JSON (README: "The answer") without calling the webhook. */
export function answer(reply) {
  return new Verdict('answer', reply);
}

/** Before: answer with a message whose body is `text`. */
export function reply(text) {
  return answer({ body: String(text) });
}

/** After: use this reply JSON instead, whatever the webhook answered. */
export function replace(reply) {
  return new Verdict('replace', reply);
}

/** This filter's setting `key` (the `[filter.config]` table of stanzahook's config), if set. */
export function config(key) {
  return hostConfig(String(key));
}

/** All of this filter's settings, as `[key, value]` pairs sorted by key. */
export function configEntries() {
  return hostConfigEntries();
}

/** Writing to stanzahook's log; each line names the filter and the stanza. */
export const log = Object.freeze({
  debug: (message) => hostLog('debug', String(message)),
  info: (message) => hostLog('info', String(message)),
  warn: (message) => hostLog('warn', String(message)),
  error: (message) => hostLog('error', String(message)),
});

const HOOKS = new Set(['before', 'after', 'reuse']);

/**
 * Defines a filter from its hooks, each optional: `before(event)`, `after(event, answer)`, and
 * `reuse`, whether stanzahook may keep this filter's instance after a call that succeeded and use
 * it for later stanzas, of any sender, instead of a fresh instance per call (`true`, `false`, or a
 * function asked whenever stanzahook loads the filter; `config` already answers there). The
 * default, `false`, keeps every stanza apart.
 *
 * Reuse saves most of a call's cost, but module-level variables, caches and the engine's memory
 * then outlive the stanza: answer `true` only for a filter that keeps nothing of one stanza that
 * could reach another's answer. The operator can still refuse (`reuse_instances = false`).
 *
 * Returns the component's exports (`before`, `after`, `instances`): export it as the module's
 * default, and build.mjs exports its parts.
 */
export function defineFilter(filter) {
  if (filter === null || typeof filter !== 'object') {
    throw new TypeError('defineFilter takes an object: defineFilter({ before(event) { ... } })');
  }
  for (const key of Object.keys(filter)) {
    if (!HOOKS.has(key)) throw new TypeError(`defineFilter: unknown key \`${key}\`; the keys are before, after, reuse`);
  }
  for (const key of ['before', 'after']) {
    if (filter[key] !== undefined && typeof filter[key] !== 'function') {
      throw new TypeError(`defineFilter: \`${key}\` must be a function`);
    }
  }
  const { before = () => pass, after = () => pass, reuse = false } = filter;
  if (typeof reuse !== 'boolean' && typeof reuse !== 'function') {
    throw new TypeError('defineFilter: `reuse` must be true, false, or a function returning one');
  }
  return Object.freeze({
    before: (text) => runBefore(before, text),
    after: (text, webhookAnswer) => runAfter(after, text, webhookAnswer),
    instances: Object.freeze({ reuse: () => allowsReuse(reuse) }),
  });
}

// The hooks across the boundary: each returns the WIT `result` as componentize-js takes it,
// `{ tag: 'ok', val: verdict }` or `{ tag: 'err', val: message }`. A thrown `Error` must not reach
// componentize-js: its bindings rethrow one, and the instance traps.

function runBefore(hook, text) {
  let event;
  try {
    event = new Event(JSON.parse(text));
  } catch (e) {
    return err(`event is not JSON: ${e?.message ?? e}`);
  }
  try {
    const verdict = hook(event);
    switch (verdict instanceof Verdict ? verdict.kind : undefined) {
      case 'pass':
        return ok({ tag: 'pass' });
      case 'drop':
        return ok({ tag: 'drop' });
      case 'rewrite':
        return ok({ tag: 'rewrite', val: verdict.value[TEXT]() });
      case 'answer':
        return ok({ tag: 'answer', val: jsonText(verdict.value, 'answer') });
      default:
        return err(notAVerdict('before', verdict, 'pass, drop, rewrite(event), answer(reply) or reply(text)'));
    }
  } catch (e) {
    return err(errorText(e));
  }
}

function runAfter(hook, text, webhookAnswer) {
  const event = Event[LAZY](text);
  let reply;
  if (webhookAnswer.reply !== undefined) {
    try {
      reply = JSON.parse(webhookAnswer.reply);
    } catch (e) {
      return err(`reply is not JSON: ${e?.message ?? e}`);
    }
  }
  try {
    const verdict = hook(event, { status: webhookAnswer.status, reply });
    switch (verdict instanceof Verdict ? verdict.kind : undefined) {
      case 'pass':
        return ok({ tag: 'pass' });
      case 'drop':
        return ok({ tag: 'drop' });
      case 'replace':
        return ok({ tag: 'replace', val: jsonText(verdict.value, 'replace') });
      default:
        return err(notAVerdict('after', verdict, 'pass, drop or replace(reply)'));
    }
  } catch (e) {
    return err(errorText(e));
  }
}

function allowsReuse(reuse) {
  try {
    return (typeof reuse === 'function' ? reuse() : reuse) === true;
  } catch (e) {
    // `reuse` has no error to return: a fresh instance per call is the safe answer.
    log.error(`reuse failed, so each call gets a fresh instance: ${errorText(e)}`);
    return false;
  }
}

const ok = (val) => ({ tag: 'ok', val });
const err = (val) => ({ tag: 'err', val });

function jsonText(value, verdict) {
  const text = JSON.stringify(value);
  if (typeof text !== 'string') throw new TypeError(`${verdict}(…) was given ${describe(value)}, which is not JSON`);
  return text;
}

function notAVerdict(hook, value, verdicts) {
  if (typeof value?.then === 'function') return `${hook} returned a Promise: hooks are synchronous, return ${verdicts}`;
  if (value instanceof Verdict) return `${hook} cannot return ${value.kind}(…): return ${verdicts}`;
  return `${hook} returned ${describe(value)}, not a verdict: return ${verdicts}`;
}

function describe(value) {
  if (value === undefined || value === null) return String(value);
  if (typeof value === 'function') return `the function ${value.name || '(anonymous)'}`;
  return typeof value === 'object' ? `an object (${Object.prototype.toString.call(value)})` : `the ${typeof value} ${String(value)}`;
}

/**
 * A thrown value as the hook's error: an `Error`'s message, as Rust's `Err(message)`; for the
 * errors of a bug (`TypeError`, `ReferenceError`, ...) also its name and where in the filter it
 * was thrown.
 */
function errorText(e) {
  if (!(e instanceof Error)) return String(e);
  if (e.constructor === Error) return e.message;
  const at = where(e.stack);
  return `${e.name}: ${e.message}${at ? ` (${at})` : ''}`;
}

/**
 * The first frame of a SpiderMonkey stack (`fn@file:line:column`) in the filter's own files: their
 * paths are relative to the filter's directory; this SDK's and componentize-js's are not theirs.
 */
function where(stack) {
  for (const line of String(stack ?? '').split('\n')) {
    const frame = /@([^@]+:\d+:\d+)$/.exec(line)?.[1];
    if (frame && !frame.startsWith('/') && !frame.includes('stanzahook-filter.js')) return frame;
  }
  return undefined;
}
