// Keeps secrets out of the webhook: a message whose body contains a configured pattern is
// dropped (`action = "drop"`) or has each occurrence masked (`action = "mask"`, the default).
//
// Config: `patterns`, comma-separated words (e.g. `password,api_key`); `action`; `mask` (default
// `[redacted]`).

import { config, defineFilter, drop, log, pass, rewrite } from 'stanzahook-filter';

// It sees what must stay secret, so it keeps the SDK's default: a fresh instance per stanza,
// nothing left in memory for the next one (see `reuse` in defineFilter).
export default defineFilter({
  before(event) {
    const patterns = (config('patterns') ?? '').split(',').map((p) => p.trim()).filter((p) => p !== '');
    const body = event.body;
    if (body === undefined) return pass;
    const lower = body.toLowerCase();
    if (!patterns.some((p) => lower.includes(p.toLowerCase()))) return pass;
    if (config('action') === 'drop') {
      log.info('dropped a message with a redacted pattern');
      return drop;
    }
    const mask = config('mask') ?? '[redacted]';
    let masked = body;
    for (const pattern of patterns) masked = replaceIgnoringCase(masked, pattern, mask);
    event.set('body', masked);
    // The raw stanza still holds the original text: the webhook must not see it either.
    event.set('stanza', '');
    return rewrite(event);
  },
});

function replaceIgnoringCase(text, pattern, mask) {
  const lower = text.toLowerCase();
  const needle = pattern.toLowerCase();
  // Lowercasing changed the text's length (it does for 'İ' or the Kelvin sign): positions in
  // `lower` are not positions in `text`, so only exact matches are replaced. Lengths in UTF-8,
  // as the Rust example counts them, and in UTF-16, as JavaScript does.
  if (needle === '' || lower.length !== text.length || utf8Length(lower) !== utf8Length(text)) {
    return text.split(pattern).join(mask);
  }
  let out = '';
  let rest = 0;
  for (let i = lower.indexOf(needle); i !== -1; i = lower.indexOf(needle, rest)) {
    out += text.slice(rest, i) + mask;
    rest = i + needle.length;
  }
  return out + text.slice(rest);
}

const utf8Length = (text) => new TextEncoder().encode(text).length;
