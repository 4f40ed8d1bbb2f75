// Makes a chat webhook of another shape work behind stanzahook: the event becomes the
// Slack/Mattermost-style `{"text", "user", "channel"}` such a webhook expects (with
// `thread_ts` for a reply, `files` for an attachment, and a `reaction_added` event for a
// reaction), and its answer `{"text": ...}` becomes stanzahook's `{"body": ...}`.

import { defineFilter, pass, replace, rewrite } from 'stanzahook-filter';

export default defineFilter({
  before(event) {
    if (event.kind !== 'message') return pass;
    // The bare address names the user; the resource is one of their devices.
    const user = (event.from ?? '').split('/')[0];
    const channel = event.to ?? '';
    const reactions = event.reactions();
    if (reactions) {
      return rewrite({
        type: 'reaction_added',
        user,
        reaction: reactions.emoji[0] ?? '',
        item: { channel, ts: reactions.id },
      });
    }
    const replyTo = event.replyTo();
    const file = event.oob();
    return rewrite({
      // The text without the quote a reply carries for clients that know no replies.
      text: event.text() ?? '',
      user,
      channel,
      ...(replyTo && { thread_ts: replyTo.id }),
      ...(file && { files: [{ url_private: file.url, title: file.desc ?? '' }] }),
    });
  },

  after(event, answer) {
    const text = answer.reply?.text;
    return typeof text === 'string' ? replace({ body: text }) : pass;
  },
});
