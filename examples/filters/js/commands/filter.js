// Answers chat commands itself, without calling the webhook: `/ping` and `/help`. Everything
// else goes on to the webhook unchanged.
//
// Config: `prefix` (default `/`).

import { config, defineFilter, pass, reply } from 'stanzahook-filter';

export default defineFilter({
  before(event) {
    const prefix = config('prefix') ?? '/';
    const body = event.body?.trim();
    if (!body?.startsWith(prefix)) return pass;
    switch (body.slice(prefix.length)) {
      case 'ping':
        return reply('pong');
      case 'help':
        return reply(`Commands: ${prefix}ping, ${prefix}help. Anything else goes to the bot.`);
      default:
        return pass;
    }
  },

  // Nothing of one stanza stays behind (no module-level variables, no caches), so stanzahook may
  // keep the instance for the next call instead of starting a fresh one: several times as fast.
  reuse: true,
});
