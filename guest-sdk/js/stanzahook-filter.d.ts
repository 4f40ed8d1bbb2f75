// Types of stanzahook-filter.js: write stanzahook filters in JavaScript (or TypeScript checking
// JavaScript). The JavaScript twin of the Rust SDK, guest-sdk/src/lib.rs.

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * The event stanzahook is about to POST (README: "The request"): `to`, `from`, `kind`, `stanza`,
 * `body` (for messages with one), `type`, `id`, and whatever earlier filters added. The accessors
 * read strings only: a key that is missing or holds something else reads as `undefined`.
 */
export class Event {
  /** Wraps a JSON value (an object) as an event; `{}` when none is given. */
  constructor(json?: Json);

  /** The stanza's recipient: an address at stanzahook's domain. */
  readonly to: string | undefined;
  /** The stanza's sender. */
  readonly from: string | undefined;
  /** `"message"`, `"presence"` or `"iq"`. */
  readonly kind: string | undefined;
  /** The text of a message's `<body/>`. */
  readonly body: string | undefined;
  /** The whole stanza as received, as XML. */
  readonly stanza: string | undefined;

  /**
   * The event as JSON, for keys without an accessor; change it in place to rewrite the event.
   * `null` for an `after` hook's event that is not JSON (the host passes `after` the text `before`
   * parsed, so it is).
   */
  readonly json: any;

  /**
   * What the sender wrote: the body without the quote of the message it replies to (the fallback
   * a client that knows no replies shows), else the body.
   */
  text(): string | undefined;
  /** The message this one replies to (XEP-0461), from the event's `reply`. */
  replyTo(): ReplyTo | undefined;
  /** The sender's reactions to a message (XEP-0444), from the event's `reactions`. */
  reactions(): Reactions | undefined;
  /** The attachment the message carries (XEP-0066), from the event's `oob`. */
  oob(): Attachment | undefined;
  /** The chat state (XEP-0085): `"active"`, `"composing"`, `"paused"`, `"inactive"`, `"gone"`. */
  state(): string | undefined;

  /** Sets (or adds) a key; does nothing if the event is not an object. Returns the event. */
  set(key: string, value: Json): this;
  /** The event as JSON, for `JSON.stringify(event)`. */
  toJSON(): any;
}

/** The message an event's message replies to. */
export interface ReplyTo {
  /** Its id (in a room, the id the room gave it). */
  id: string;
  /** Who sent it, when the reply says. */
  to: string | undefined;
}

/** A sender's whole set of reactions to one message; an empty set takes them all back. */
export interface Reactions {
  /** The message reacted to. */
  id: string;
  /** The reactions, each an emoji. */
  emoji: string[];
}

/** A file or page a message points to. */
export interface Attachment {
  /** Where it is. */
  url: string;
  /** What it is, when the sender says. */
  desc: string | undefined;
}

/** What the webhook answered, as the `after` hook sees it. */
export interface Answer {
  /**
   * The HTTP status; 0 when there was no HTTP answer (a later filter answered, or the connection
   * failed).
   */
  status: number;
  /** The reply JSON (README: "The answer"), parsed; `undefined` when there is none. */
  reply: any;
}

/** Go on with the event (before) or the reply (after) as it is. */
export interface Pass {
  readonly kind: 'pass';
}
/** Before: drop the stanza, nothing is posted or sent. After: send nothing back. */
export interface Drop {
  readonly kind: 'drop';
}
/** Before: go on with this event instead. */
export interface Rewrite {
  readonly kind: 'rewrite';
  readonly value: Event;
}
/** Before: answer with this reply JSON without calling the webhook. */
export interface AnswerWith {
  readonly kind: 'answer';
  readonly value: Json;
}
/** After: use this reply JSON instead. */
export interface Replace {
  readonly kind: 'replace';
  readonly value: Json;
}

/** What a `before` hook decides. */
export type Before = Pass | Drop | Rewrite | AnswerWith;
/** What an `after` hook decides. */
export type After = Pass | Drop | Replace;

/** Go on with the event (before) or the reply (after) as it is. */
export const pass: Pass;
/** Before: drop the stanza, nothing is posted or sent. After: send nothing back. */
export const drop: Drop;
/** Before: go on with this event (an `Event`, or a plain object to wrap as one) instead. */
export function rewrite(event: Event | { [key: string]: Json }): Rewrite;
/** Before: answer with this reply JSON (README: "The answer") without calling the webhook. */
export function answer(reply: Json): AnswerWith;
/** Before: answer with a message whose body is `text`: `answer({ body: text })`. */
export function reply(text: string): AnswerWith;
/** After: use this reply JSON (README: "The answer") instead, whatever the webhook answered. */
export function replace(reply: Json): Replace;

/** A filter's hooks, each optional. */
export interface Filter {
  /**
   * Called with the event before the webhook call. A thrown exception is the hook's error:
   * stanzahook logs it and applies the filter's `on_error` setting. Hooks are synchronous.
   */
  before?(event: Event): Before;
  /**
   * Called after the webhook call (or another filter's answer), with the event as this filter saw
   * it and what came back.
   */
  after?(event: Event, answer: Answer): After;
  /**
   * Whether stanzahook may keep this filter's instance after a call that succeeded and use it for
   * later stanzas, of any sender, instead of a fresh instance per call. A function is asked
   * whenever stanzahook loads the filter (at start and on each reload); `config` already answers.
   * The default, `false`, keeps every stanza apart.
   *
   * Reuse saves most of a call's cost, but module-level variables, caches and the engine's memory
   * then outlive the stanza: answer `true` only for a filter that keeps nothing of one stanza that
   * could reach another's answer. The operator can still refuse (`reuse_instances = false`).
   */
  reuse?: boolean | (() => boolean);
}

/** The component's exports, as the WIT world `reusable-filter` wants them (see build.mjs). */
export interface FilterExports {
  readonly before: (event: string) => { tag: 'ok'; val: WitBefore } | { tag: 'err'; val: string };
  readonly after: (
    event: string,
    answer: { status: number; reply?: string },
  ) => { tag: 'ok'; val: WitAfter } | { tag: 'err'; val: string };
  readonly instances: { readonly reuse: () => boolean };
}
/** `before-verdict` as componentize-js takes it. */
export type WitBefore = { tag: 'pass' } | { tag: 'rewrite'; val: string } | { tag: 'answer'; val: string } | { tag: 'drop' };
/** `after-verdict` as componentize-js takes it. */
export type WitAfter = { tag: 'pass' } | { tag: 'replace'; val: string } | { tag: 'drop' };

/**
 * Defines a filter from its hooks (missing ones pass everything through); export the result as
 * the module's default: `export default defineFilter({ before(event) { ... } })`.
 */
export function defineFilter(filter: Filter): FilterExports;

/** This filter's setting `key` (the `[filter.config]` table of stanzahook's config), if set. */
export function config(key: string): string | undefined;
/** All of this filter's settings, as `[key, value]` pairs sorted by key. */
export function configEntries(): [string, string][];

/** Writing to stanzahook's log; each line names the filter and the stanza. */
export const log: {
  readonly debug: (message: string) => void;
  readonly info: (message: string) => void;
  readonly warn: (message: string) => void;
  readonly error: (message: string) => void;
};
