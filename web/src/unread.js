// The unread counts of private conversations, kept across a reload (localStorage, one small
// JSON object per account): a private line that arrived while the user looked elsewhere stays
// counted after the page loads again. Room counts come back from the server's history and the
// room's `seen` mark; these do not, so they are kept here. Bounded: at most MAX_KEPT entries,
// counts clamped. Pure but for the storage handed in.

/** Most conversations whose counts are kept. */
export const MAX_KEPT = 500;
/** Highest count kept (a badge says as much as it needs to). */
const MAX_COUNT = 9999;

/** The localStorage key of an account's counts. */
export const unreadKey = (nickKey) => `mm-unread:${nickKey}`;

const count = (n) => (Number.isSafeInteger(n) && n > 0 ? Math.min(n, MAX_COUNT) : 0);

/**
 * The counts to keep for `convs` (iterable of {kind, key, unread, mentions}): a JSON text of
 * {key: [unread, mentions]} for the private conversations with something unread.
 */
export function unreadText(convs) {
  const out = {};
  let n = 0;
  for (const c of convs) {
    if (c.kind !== 'private' || count(c.unread) === 0) continue;
    if (n++ >= MAX_KEPT) break;
    out[c.key] = [count(c.unread), Math.min(count(c.mentions), count(c.unread))];
  }
  return JSON.stringify(out);
}

/**
 * The kept counts (`text` from unreadText, or anything else: damaged or foreign text gives
 * nothing) as a Map key → {unread, mentions}.
 */
export function parseUnread(text) {
  const out = new Map();
  if (typeof text !== 'string' || text.length > 100_000) return out;
  let v;
  try {
    v = JSON.parse(text);
  } catch {
    return out;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return out;
  for (const [key, pair] of Object.entries(v)) {
    if (out.size >= MAX_KEPT) break;
    if (!key.startsWith('@') || !Array.isArray(pair)) continue;
    const unread = count(pair[0]);
    if (unread === 0) continue;
    out.set(key, { unread, mentions: Math.min(count(pair[1]), unread) });
  }
  return out;
}
