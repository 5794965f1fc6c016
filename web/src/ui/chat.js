// The chat page: conversations in the sidebar, the current conversation's header, log and
// members, the composer, and what each event from the connection changes. Chat text is only
// ever inserted as text (textContent / text nodes); links are made with createElement and
// never fetched or previewed.

import { $, h, setText, nickClass } from './dom.js';
import { parse, plan, complete, CommandError, HELP } from '../commands.js';
import {
  notice, mentions, linkParts, timeWords, ROLE_PREFIX, ROLE_WORDS, modeLetters, securityWords,
  secureEventWords, unsentReason, safetyNumberLines, sentTextLine, keptLine, verifiedWords, acceptedWords,
} from '../render.js';
import { LOBBY, nickKey, roomKey, isLobby, sanitize, ErrorCode } from '../protocol.js';
import { unreadKey, unreadText, parseUnread } from '../unread.js';

/** Lines a conversation keeps in the page (older ones are dropped from the view, said so). */
export const MAX_LOG = 1000;
/** Once over MAX_LOG, lines are dropped down to this many (dropping at the top moves every line
 *  below: done in bursts, not each frame). */
const TRIM_TO = 900;
/** Least time between two appends of pending lines to the page, milliseconds: under a flood a
 *  few layouts a second, not one per frame. */
const MIN_FLUSH_GAP_MS = 100;
const MAX_MEMBERS_SHOWN = 500;
/** After a re-entry without members (a login), how long before the room on screen asks for them. */
const MEMBERS_AFTER_MS = 500;
/** Most private lines of the user's waiting for the end-to-end sessions (keys, a save) at once. */
const MAX_E2E_LINES = 1024;
/** Used before the sessions module is there (nothing is end-to-end then: every state is blocked). */
const NO_WORDS = { failureWords: () => 'end-to-end encryption is not available', isBlocking: () => true };

/** The name of a kept line (privlog.js): its server id, or our `local`; '?' if it has neither. */
const keptName = (l) => (l.id !== undefined ? `i${l.id}` : l.local !== undefined ? `l${l.local}` : '?');

const convKey = (kind, name) => (kind === 'private' ? `@${nickKey(name)}` : roomKey(name));

class Conversation {
  constructor(kind, name) {
    this.kind = kind; // 'room' (#lobby included) or 'private'
    this.name = name;
    this.key = convKey(kind, name);
    this.topic = '';
    this.members = new Map(); // nickKey → {nick, role, online, away}
    this.memberCount = 0;
    this.role = null;
    this.modes = null;
    this.seen = 0n;
    this.unread = 0;
    this.mentions = 0;
    this.namesFresh = false;
    this.log = h('ol', { class: 'log', role: 'log', 'aria-label': 'Messages' });
    this.count = 0; // lines in `log`, the "earlier lines not shown" note not counted
    this.pending = []; // lines made but not yet in `log` (appended once per frame), ≤ 2 × MAX_LOG
    this.trimmed = false; // earlier lines were dropped from the view
    this.note = null; // the li saying so, first in `log`
    this.ok = false; // private: something besides refused lines of ours (a line from them, one delivered, or kept)
    this.from = null; // private: the conversation the user was in when opening this one
    this.queued = new Set(); // private: lines of ours the server queued for the peer's next login, ≤ MAX_LOG
  }

  get lobby() {
    return this.kind === 'room' && isLobby(this.name);
  }
}

export class ChatView {
  /**
   * @param {object} o
   * @param {() => import('../connection.js').Connection | null} o.connection
   * @param {(text: string, problem?: boolean, o?: {passing?: boolean}) => void} o.status
   *   the status line; what the chat view says there (a refused line, a command's error) is
   *   passing: the connection's state comes back after a while
   * @param {() => void} o.onQuit
   * @param {import('../privlog.js').PrivateLog | null} [o.keep] where private lines are kept
   * @param {import('../secure.js').Secure | null} [o.secure] the end-to-end driver (private
   *   lines are sent only through it: never plain unless the conversation is plain)
   */
  constructor({ connection, status, onQuit, keep = null, secure = null }) {
    this.connection = connection;
    this.keep = keep;
    this.secure = secure;
    this.e2eLines = new Map(); // the chat's tag of a private line given to the sessions → its li
    this.nextTag = 1;
    this.status = (text, problem) => status(text, problem, { passing: true });
    this.onQuit = onQuit;
    this.me = '';
    this.online = 0;
    // The connection: 'connected' (logged in), 'reconnecting' (it was, and is being made again)
    // or 'offline' (not yet, or stopped). Until connected, presence is unknown and a secure
    // conversation says it is paused.
    this.link = 'offline';
    this.everConnected = false;
    this.accepted = new Set(); // nick keys whose new key the user accepted here, until their next Ready
    this.convs = new Map();
    this.current = null;
    this.maxTextLen = 4096;
    this.ctx = { me: '', topicAsked: new Set(), namesAsked: new Set() };
    this.joinAsked = new Set();
    this.listNext = '';
    this.lines = new Map(); // line handle → li
    this.sending = null;
    this.history = []; // inputs sent, for Up
    this.tabState = null;
    this.notifyOn = false;
    this.stick = true; // the current log follows new lines (false once the user scrolls up)
    this.flushFrame = null;
    this.flushTimer = null;
    this.flushScheduled = false;
    this.lastFlush = -Infinity;
    this.listDirty = false;
    this.el = {
      chat: $('chat'), list: $('conversations'), name: $('conv-name'), info: $('conv-info'),
      topic: $('conv-topic'), security: $('security'), holder: $('log-holder'), members: $('members'),
      memberList: $('member-list'), membersTitle: $('members-title'), form: $('composer'),
      input: $('message'), menu: $('menu'), sidebar: $('sidebar'), meNick: $('me-nick'), notify: $('notify'),
    };
    this.#wire();
    this.open('room', LOBBY);
    this.say('Enter sends, Shift+Enter starts a new line; /help lists the commands.');
  }

  show(nick) {
    // Another account: its kept counts are read at its restore, not written over before.
    if (nickKey(nick) !== nickKey(this.me)) this.unreadRestored = false;
    this.me = nick;
    this.ctx.me = nick;
    setText(this.el.meNick, nick);
    this.el.chat.hidden = false;
  }

  // ---- conversations ----

  conv(kind, name, create = true) {
    const key = convKey(kind, name);
    let c = this.convs.get(key);
    if (!c && create) {
      c = new Conversation(kind, name);
      this.convs.set(key, c);
      this.#renderList();
      if (kind === 'private') this.#monitor([name]);
    }
    return c ?? null;
  }

  open(kind, name) {
    const c = this.conv(kind, name);
    this.switchTo(c);
    return c;
  }

  /** Closes a private conversation: out of the list, and its kept lines forgotten. */
  close(c) {
    if (!c || c.kind !== 'private') return;
    this.convs.delete(c.key);
    this.keep?.close(c.name);
    if (this.current === c) this.switchTo(c.from && this.convs.get(c.from.key) === c.from ? c.from : this.conv('room', LOBBY));
    else this.#renderList();
  }

  /**
   * Shows the private conversations kept in this browser ([{peer, lines}] from
   * PrivateLog.load), lines not shown yet marked as earlier. Call before the connection starts:
   * at the page's load, and again each time this tab owns the account again (what another tab
   * kept meanwhile appears; a line already shown is not shown twice, and keeps its place).
   */
  restore(convs) {
    // Unread when the page was closed: still unread (at most the lines kept). Only at the
    // page's load: a takeover back keeps the counts this page has.
    let counts = new Map();
    if (!this.unreadRestored) {
      try {
        counts = parseUnread(localStorage.getItem(unreadKey(nickKey(this.me))));
      } catch {
        // storage not readable: no counts
      }
    }
    for (const { peer, lines } of convs) {
      const c = this.conv('private', peer);
      c.ok = true;
      this.#rebuild(c, lines);
      const kept = counts.get(c.key);
      if (kept && c !== this.current) {
        c.unread += Math.min(kept.unread, lines.length);
        c.mentions += Math.min(kept.mentions, lines.length);
      }
    }
    this.unreadRestored = true;
    this.#renderList();
  }

  /**
   * The log of `c` as the kept `lines` say, in their order: a line already shown (by its kept
   * name) is the same element, others are made; what is shown but not kept (the page's
   * notices) stays after the kept line it followed.
   */
  #rebuild(c, lines) {
    const old = [...c.log.children].filter((li) => li !== c.note).concat(c.pending);
    const at = new Map(old.map((li, i) => [li, i]));
    const shown = new Map();
    for (const li of old) if (li.keptName && li.keptName !== '?') shown.set(li.keptName, li);
    c.pending = [];
    const out = [];
    let next = 0;
    const others = (upTo) => {
      for (; next < upTo; next++) if (!old[next].keptName) out.push(old[next]);
    };
    for (const l of lines) {
      const name = keptName(l);
      const li = shown.get(name);
      if (li) {
        shown.delete(name);
        const i = at.get(li);
        if (i >= next) {
          others(i);
          next = i + 1;
        }
        out.push(li);
      } else {
        out.push(this.#keptLine(c, l, name));
      }
    }
    others(old.length);
    c.log.replaceChildren();
    c.note = null;
    c.count = 0;
    c.trimmed = false;
    c.pending = out;
    this.#flushConv(c);
  }

  /** A kept line not on the page, shown marked earlier. */
  #keptLine(c, l, name) {
    const own = nickKey(l.from) === nickKey(this.me);
    // A line of ours the page closed on before it went or before the server took it, or one
    // not sent: marked so, never with the lock.
    const shown = keptLine(l, own);
    const li = this.add(c, {
      ts: BigInt(l.ts), nick: l.kind === 'notice' ? null : l.from, text: l.text,
      kind: l.kind === 'notice' ? 'notice' : 'line', tag: 'earlier', own, secure: shown.secure,
    });
    li.keptName = name;
    if (shown.state) this.#mark(li, shown.state, shown.words);
    return li;
  }

  /**
   * The connection is gone (reconnecting or stopped): who is online is not known any more, so
   * the lobby's list and count are emptied until the next login's `Users` fills them again.
   */
  disconnected() {
    this.conv('room', LOBBY).members.clear();
    this.online = 0;
    // Nor is whether a private peer is online: asked again (Monitor) at the next login.
    for (const c of this.convs.values()) if (c.kind === 'private') c.online = undefined;
    this.#refresh();
  }

  /**
   * The connection's state (its `status` events: connecting | connected | reconnecting |
   * offline): what the header and the security line say while not connected.
   */
  linkState(state) {
    let link;
    if (state === 'connected') link = 'connected';
    else if (state === 'reconnecting' || (state === 'connecting' && this.everConnected)) link = 'reconnecting';
    else link = 'offline';
    if (link === 'connected') this.everConnected = true;
    if (link === this.link) return;
    this.link = link;
    if (link !== 'connected') this.disconnected();
    else this.#refresh();
  }

  /** Forgets the private conversations shown (another account opens in this page). */
  dropPrivate() {
    this.unreadRestored = false;
    this.unreadKept = null;
    for (const c of [...this.convs.values()]) if (c.kind === 'private') this.convs.delete(c.key);
    this.#refresh();
  }

  switchTo(c) {
    if (!c) return;
    this.current = c;
    c.unread = 0;
    c.mentions = 0;
    this.#flushConv(c);
    this.stick = true;
    this.el.holder.replaceChildren(c.log);
    this.#renderHeader();
    this.#renderMembers();
    this.#renderList();
    this.#scrollDown(true);
    this.#wantMembers(c);
    this.el.chat.classList.remove('nav-open');
    this.el.menu.setAttribute('aria-expanded', 'false');
  }

  /**
   * Asks the server for the members of room `c` if they are not known since it was (re-)entered
   * and it is on screen: once per entry, shown only in the member list.
   */
  #wantMembers(c) {
    if (this.current !== c || c.kind !== 'room' || c.lobby || c.membersKnown !== false || c.membersAsked) return;
    const conn = this.connection();
    if (conn && conn.send({ type: 'Names', room: c.name })) c.membersAsked = true;
  }

  #ordered() {
    const all = [...this.convs.values()];
    const rank = (c) => (c.lobby ? 0 : c.kind === 'room' ? 1 : 2);
    return all.sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
  }

  #renderList() {
    this.listDirty = false;
    const items = this.#ordered().map((c) => {
      const personal = c.kind === 'private';
      const badge = c.mentions > 0
        ? h('span', { class: 'badge mention' }, h('span', { class: 'visually-hidden' }, ', '), String(c.mentions), h('span', { class: 'visually-hidden' }, c.mentions === 1 ? ' mention' : ' mentions'))
        : c.unread > 0
          ? h('span', { class: personal ? 'badge mention' : 'badge' }, h('span', { class: 'visually-hidden' }, ', '), String(c.unread), h('span', { class: 'visually-hidden' }, ' unread'))
          : null;
      const button = h('button', {
        type: 'button', class: c.unread > 0 ? 'unread' : '', 'aria-current': c === this.current ? 'true' : null,
        'data-key': c.key,
      }, h('span', { class: 'conv-label' }, c.name), badge);
      button.addEventListener('click', () => {
        this.switchTo(c);
        this.el.input.focus();
      });
      if (!personal) return h('li', {}, button);
      const close = h('button', { type: 'button', class: 'close', 'aria-label': `Close the conversation with ${c.name}`, title: `Close (its lines kept in this browser go too)` }, '×');
      close.addEventListener('click', () => {
        this.close(c);
        this.el.input.focus();
      });
      return h('li', { class: 'private' }, button, close);
    });
    this.el.list.replaceChildren(...items);
    const total = [...this.convs.values()].reduce((n, c) => n + c.unread, 0);
    document.title = total > 0 ? `(${total}) Multi-Messenger` : 'Multi-Messenger';
    this.#keepUnread();
  }

  /** Keeps the private conversations' unread counts for the next page load (unread.js). */
  #keepUnread() {
    if (!this.me || !this.unreadRestored) return;
    const text = unreadText(this.convs.values());
    if (text === this.unreadKept) return;
    this.unreadKept = text;
    try {
      localStorage.setItem(unreadKey(nickKey(this.me)), text);
    } catch {
      // not kept: the counts start from nothing at the next load, as before
    }
  }

  #renderHeader() {
    const c = this.current;
    setText(this.el.name, c.name);
    // Short, to stay one line at phone width; the keys and commands are behind /help.
    this.el.input.placeholder = `Message ${c.name}`;
    this.#renderSecurity();
    const linked = this.link === 'connected';
    if (c.kind === 'private') {
      let info = 'private conversation';
      if (!linked) info += ' · online: unknown (not connected)';
      else if (c.online !== undefined) info += ` · ${c.name} is ${c.online ? 'online' : 'offline'}`;
      setText(this.el.info, info);
      setText(this.el.topic, '');
    } else if (c.lobby) {
      setText(this.el.info, linked ? `${this.online} online` : 'online: unknown (not connected)');
      setText(this.el.topic, 'Everyone online is here. Rooms are read by the server.');
    } else {
      const parts = [`${c.memberCount} ${c.memberCount === 1 ? 'member' : 'members'}`];
      if (c.modes && modeLetters(c.modes)) parts.push(modeLetters(c.modes));
      if (c.role) parts.push(`you are ${ROLE_WORDS[c.role]}`);
      setText(this.el.info, parts.join(' · '));
      setText(this.el.topic, c.topic ? sanitize(c.topic) : 'no topic');
    }
  }

  /** The `#security` element: the current private conversation's end-to-end state. */
  #renderSecurity() {
    const c = this.current;
    const el = this.el.security;
    if (!el) return;
    el.hidden = c?.kind !== 'private';
    if (el.hidden) return;
    const { state, text } = securityWords(this.secure?.status(c.name) ?? null, c.name, this.secure?.words ?? NO_WORDS, this.secure?.unavailable ?? 'not available', this.link);
    if (el.dataset.state !== state) el.dataset.state = state;
    if (el.textContent !== text) setText(el, text);
  }

  /** The end-to-end state of some conversation may have changed. */
  securityChanged() {
    if (this.current?.kind === 'private') this.#renderSecurity();
  }

  #renderMembers() {
    const c = this.current;
    const show = c.kind === 'room';
    this.el.members.hidden = !show;
    this.el.chat.classList.toggle('no-members', !show);
    if (!show) return;
    const members = [...c.members.values()].sort((a, b) => roleRank(b.role) - roleRank(a.role) || a.nick.localeCompare(b.nick));
    setText(this.el.membersTitle, c.lobby ? `Online (${this.link === 'connected' ? this.online : 'unknown'})` : `Members (${c.memberCount})`);
    this.el.memberList.replaceChildren(...members.slice(0, MAX_MEMBERS_SHOWN).map((m) => h('li', {
      class: [m.online === false ? 'offline' : '', m.away ? 'away' : ''].join(' ').trim(),
    }, `${ROLE_PREFIX[m.role ?? 'Member']}${m.nick}`)));
  }

  // ---- the log ----

  #scrollDown(force = false) {
    const el = this.el.holder;
    if (force || el.scrollHeight - el.scrollTop - el.clientHeight < 80) el.scrollTop = el.scrollHeight;
  }

  /** Appends every conversation's pending lines: once per animation frame, never per line. */
  #flushSoon() {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    const wait = Math.max(0, this.lastFlush + MIN_FLUSH_GAP_MS - performance.now());
    this.flushTimer = setTimeout(() => {
      this.flushTimer = null;
      // A hidden tab gets no animation frames: then the timer alone.
      if (document.hidden || typeof requestAnimationFrame !== 'function') this.flush();
      else this.flushFrame = requestAnimationFrame(() => this.flush());
    }, wait);
  }

  /** Puts pending lines into the page now (one layout for the current log at most). */
  flush() {
    if (this.flushFrame !== null) cancelAnimationFrame(this.flushFrame);
    clearTimeout(this.flushTimer);
    this.flushFrame = null;
    this.flushTimer = null;
    this.flushScheduled = false;
    this.lastFlush = performance.now();
    for (const c of this.convs.values()) if (c !== this.current) this.#flushConv(c);
    if (this.current) this.#flushConv(this.current);
    if (this.listDirty) this.#renderList();
  }

  #flushConv(c) {
    if (c.pending.length === 0) return;
    let lines = c.pending;
    c.pending = [];
    if (lines.length > MAX_LOG) {
      lines = lines.slice(lines.length - MAX_LOG);
      c.trimmed = true;
    }
    const shown = this.current === c && c.log.isConnected;
    const frag = document.createDocumentFragment();
    for (const li of lines) frag.appendChild(li);
    c.log.appendChild(frag);
    c.count += lines.length;
    const excess = c.count > MAX_LOG ? c.count - TRIM_TO : 0;
    if (excess > 0) {
      // Keeping the user's place when scrolled up: the height the dropped lines took.
      const before = shown && !this.stick ? this.el.holder.scrollHeight : 0;
      const first = c.note ? c.note.nextElementSibling : c.log.firstElementChild;
      let last = first;
      for (let i = 1; i < excess && last; i++) last = last.nextElementSibling;
      if (first && last) {
        const range = document.createRange();
        range.setStartBefore(first);
        range.setEndAfter(last);
        range.deleteContents();
      }
      c.count -= excess;
      c.trimmed = true;
      if (before) this.el.holder.scrollTop -= before - this.el.holder.scrollHeight;
    }
    if (c.trimmed && !c.note) {
      c.note = h('li', { class: 'notice trimmed' }, h('span', { class: 'text' }, `earlier lines not shown (this view keeps up to ${MAX_LOG} lines)`));
      c.log.prepend(c.note);
    }
    if (shown && this.stick) this.el.holder.scrollTop = this.el.holder.scrollHeight;
  }

  /**
   * Adds an entry to a conversation: {ts, nick, text, kind, tag, mention, action}.
   * Returns the li.
   */
  add(c, { ts = BigInt(Date.now()), nick = null, text, kind = 'line', tag = null, mention = false, action = false, own = false, multiline = false, secure = null }) {
    const t = timeWords(ts);
    const classes = [kind];
    // A private line: end-to-end encrypted (class `secure`, a lock shown) or not (`plain`).
    if (secure === true) classes.push('secure');
    if (secure === false) classes.push('plain');
    if (mention) classes.push('mention');
    if (action) classes.push('action');
    if (tag) classes.push('earlier');
    if (own) classes.push('own');
    // Spaces and a hidden colon so that the line reads "12:04 bob: hi" to a screen reader
    // (whitespace between grid items does not change the layout).
    const nickEl = nick === null
      ? h('span', { class: 'nick' }, '*')
      : h('span', { class: `nick ${nickClass(nick)}` }, action ? `* ${nick}` : nick, action ? null : h('span', { class: 'visually-hidden' }, ':'));
    // Chat text is one line (a line break from the server is shown as U+FFFD); the page's own
    // notices (/help, the room list) may hold several.
    const body = multiline
      ? text.split('\n').flatMap((l, i) => (i ? [document.createTextNode('\n'), ...textNodes(l)] : textNodes(l)))
      : textNodes(text);
    const textEl = h('span', { class: 'text' }, secure === true ? lockMark() : null, secure === false ? plainMark() : null, tag ? h('span', { class: 'tag' }, tag) : null, ...body);
    const li = h('li', { class: classes.join(' ') }, h('time', { datetime: t.iso, title: t.full }, t.hhmm), ' ', nickEl, ' ', textEl);
    // No layout here (a flood brings thousands a second): the line waits for the next frame.
    c.pending.push(li);
    if (c.pending.length > 2 * MAX_LOG) {
      c.pending.splice(0, c.pending.length - MAX_LOG);
      c.trimmed = true;
    }
    this.#flushSoon();
    return li;
  }

  #count(c, { mention = false, personal = false, from = '', text = '' }) {
    const visible = this.current === c && !document.hidden;
    if (this.current !== c) {
      c.unread += 1;
      if (mention) c.mentions += 1;
      this.listDirty = true; // redrawn with the next frame's lines
      this.#flushSoon();
    }
    if ((mention || personal) && !visible) this.#notify(c, from, text);
  }

  /** Words for the user in the current conversation (or a named one). */
  say(text, kind = 'notice', c = this.current) {
    this.add(c, { text, kind, multiline: true });
  }

  /**
   * A notice about the security of a conversation (a key changed, held, accepted, verified; a
   * session ready): shown, and in a private conversation kept with its lines, so that after a
   * reload it is still said where it happened, not only the lines around it.
   */
  #securityNotice(c, text, kind = 'notice') {
    const li = this.add(c, { text, kind, multiline: true });
    if (c.kind !== 'private') return;
    const local = `n${Date.now().toString(36)}-${this.nextTag++}`;
    li.keptName = keptName({ local });
    this.keep?.add(c.name, { ts: Date.now(), from: '', text, kind: 'notice', local });
  }

  // ---- events from the connection ----

  handle(e) {
    switch (e.kind) {
      case 'welcome':
        this.show(e.nick);
        this.maxTextLen = e.maxTextLen;
        this.online = e.online;
        {
          const lobby = this.conv('room', LOBBY);
          lobby.members.clear();
          for (const n of e.users) lobby.members.set(nickKey(n), { nick: n, role: 'Member', online: true, away: false });
        }
        this.#refresh();
        this.#monitor([...this.convs.values()].filter((c) => c.kind === 'private').map((c) => c.name));
        break;
      case 'line':
        return this.#line(e);
      case 'repeat': {
        // Given before on this page: acknowledged once kept (at once if it is).
        const again = this.keep?.repeat(e.msg.from, e.msg.id);
        if (again) return again;
        // A Relay given before whose message is not kept (its state could not be saved, so it
        // was not shown): the sessions show it now.
        if (e.msg.type === 'Relay' && !this.secure?.wasHandled(e.msg.id)) return this.#relay(e.msg);
        return undefined;
      }
      case 'relay': {
        // Shown already (the page reloaded, or reconnected, before acknowledging it): a repeat,
        // not shown again; acknowledged once it is kept.
        const again = this.keep?.repeat(e.msg.from, e.msg.id);
        if (again) return again;
        return this.#relay(e.msg);
      }
      case 'lineState':
        this.#lineState(e);
        break;
      case 'who':
        this.say(`online (${e.nicks.length}): ${e.nicks.join(' ')}`);
        break;
      case 'server':
        this.#server(e.msg);
        break;
      default:
        break;
    }
  }

  /** A Relay to decrypt: the promise (true/false) of its state saved and its message kept. */
  #relay(msg) {
    if (!this.secure) {
      this.cannotRead(msg, 'not available');
      return Promise.resolve(false);
    }
    return this.secure.relay(msg);
  }

  // ---- what the end-to-end driver (secure.js) asks of the page ----

  /** Sends a Relay or Private for the line tagged `tag` (null: no line of the user's). */
  sendWire(msg, tag) {
    const li = tag === null ? null : this.e2eLines.get(tag) ?? null;
    if (tag !== null) this.e2eLines.delete(tag);
    const now = msg.type === 'Private' && tag !== null && nickKey(msg.to) !== nickKey(this.me) ? this.secure?.status(msg.to)?.kind : undefined;
    if (now !== undefined && now !== 'Plain') {
      // Belt and braces: a Private for a conversation that is not plain is never sent. (The
      // session manager no longer asks for one: /secure turns the lines waiting for plain into
      // encrypted ones.)
      if (li) this.#mark(li, 'refused', 'not sent: you said /secure before it went (send it again to encrypt it)');
      return;
    }
    // Kept, and shown, as it goes: plain (typed after /insecure, it waited behind lines
    // waiting for keys) or end-to-end encrypted (the user said /secure again while it waited).
    const plain = msg.type === 'Private';
    if (li?.kept) this.keep?.sent(li.kept.peer, li.kept.local, plain);
    if (li && plain) markPlain(li, true);
    if (li && !plain) markSecure(li);
    const conn = this.connection();
    if (!conn) {
      if (li) this.#mark(li, 'refused', 'not sent: not connected');
      return;
    }
    this.sending = li;
    conn.sendLine(msg);
    this.sending = null;
  }

  /** A decrypted message: shown, and the promise of keeping it (true once kept). */
  secureMessage(event, ctx = {}) {
    const peer = event.peer;
    if (this.keep?.closed(peer, event.id)) return Promise.resolve(true); // as #line's
    const again = this.keep?.repeat(peer, event.id);
    if (again) return again;
    const c = this.conv('private', peer);
    c.ok = true;
    const ts = ctx.ts ?? BigInt(Date.now());
    const mention = mentions(event.text, this.me);
    const li = this.add(c, { ts, nick: peer, text: event.text, mention, secure: true });
    li.keptName = keptName({ id: String(event.id) });
    this.#count(c, { personal: true, from: peer, text: event.text });
    return this.keep?.add(peer, { ts, from: peer, text: event.text, id: event.id, plain: false });
  }

  /** Any other end-to-end event: its words (render.rs secure()), its lines not sent marked. */
  secureEvent(event) {
    const fw = this.secure?.words ?? NO_WORDS;
    const reason = unsentReason(event, fw);
    for (const tag of event.unsent ?? []) {
      const li = this.e2eLines.get(tag);
      this.e2eLines.delete(tag);
      if (li && reason) this.#mark(li, 'refused', reason);
    }
    let shown = event;
    if (event.kind === 'Ready' && this.accepted.delete(nickKey(event.peer)) && event.trust !== 'Verified') {
      // The key the user accepted with /accept-key: not "pinned at first contact".
      shown = { ...event, trust: 'Accepted' };
    }
    const words = secureEventWords(shown, fw);
    if (event.kind === 'Failed' && event.failure?.kind === 'NoSuchUser') {
      const c = this.conv('private', event.peer, false);
      if (c && !c.ok) {
        // /msg to a nick nobody has: no conversation is left behind; the error is said where the user was.
        const text = `${event.peer}: no such user — nothing was sent (${words.text})`;
        this.close(c);
        this.say(text, 'error');
        this.status(text, true);
        this.securityChanged();
        return;
      }
    }
    if (words) {
      const c = words.peer ? this.conv('private', words.peer) : this.current;
      const kind = { ready: 'notice', notice: 'notice', error: 'error', alarm: 'error alarm' }[words.kind] ?? 'notice';
      this.#securityNotice(c, words.text, kind);
      if (words.kind === 'alarm') {
        this.status(words.text, true);
        this.#count(c, { mention: true, from: 'Multi-Messenger', text: words.text });
      }
    }
    this.securityChanged();
  }

  /** How many lines of the user's are not sent yet (waiting for the connection or for keys). */
  unsent() {
    let n = this.e2eLines.size;
    for (const li of this.lines.values()) if (li.classList.contains('waiting')) n += 1;
    return n;
  }

  /** A line of the user's that the driver could not send. */
  notSent(tag, words) {
    const li = this.e2eLines.get(tag);
    this.e2eLines.delete(tag);
    if (li) this.#mark(li, 'refused', words);
  }

  /** The sessions were dropped: the lines waiting in them are not sent. */
  linesDropped(words) {
    for (const li of this.e2eLines.values()) this.#mark(li, 'refused', words);
    this.e2eLines.clear();
  }

  /** Says something about end-to-end that is not a fault (new keys made), in the log. */
  announce(text) {
    this.say(text, 'notice');
  }

  /** Says plainly what went wrong with end-to-end in this tab (the status line and the log). */
  problem(text) {
    this.say(text, 'error');
    this.status(text, true);
  }

  /** A Relay that cannot be read now: said, not acknowledged (the server keeps it). */
  cannotRead(msg, why) {
    const c = this.conv('private', msg.from);
    this.add(c, {
      ts: msg.ts, kind: 'error',
      text: `an end-to-end encrypted message from ${msg.from} cannot be read in this tab now (${why}); the server keeps it and sends it again at the next connection`,
    });
  }

  /** `/verify`: the safety number lines (the same digits mm shows). */
  #safetyNumber(peer, number, newKey) {
    const c = this.conv('private', peer);
    for (const l of safetyNumberLines(peer, number, newKey)) this.add(c, { text: l.text, kind: l.kind === 'safety' ? 'notice safety' : 'notice' });
    if (this.current !== c) this.switchTo(c);
  }

  /** A kept line of ours (li.kept: {peer, local}) is settled: taken (`note` null) or not sent. */
  #settleKept(li, note) {
    if (!li.kept) return;
    const { peer, local } = li.kept;
    li.kept = null;
    this.keep?.settle(peer, local, note || null);
  }

  #mark(li, state, words) {
    if (state !== 'waiting') this.#settleKept(li, words);
    if (state === 'refused') markPlain(li, false);
    li.classList.remove('waiting', 'sent', 'queued', 'refused', 'unknown');
    li.classList.add(state);
    let el = li.querySelector('.state');
    if (!el) {
      el = h('span', { class: 'state' });
      li.append(' ', el);
    }
    setText(el, words);
  }

  /**
   * Shows a line; for a personal one, returns the promise of keeping it in this browser (the
   * connection acknowledges it to the server once that settles).
   */
  #line({ msg, personal, earlier }) {
    if (personal) {
      // In a conversation the user closed since (given again: the page went before the
      // acknowledgement): stays closed, acknowledged.
      if (this.keep?.closed(msg.from, msg.id)) return Promise.resolve(true);
      // Shown already (the page reloaded, or reconnected, before acknowledging it): a repeat,
      // not shown again; acknowledged once it is kept.
      const again = this.keep?.repeat(msg.from, msg.id);
      if (again) return again;
      const c = this.conv('private', msg.from);
      c.ok = true;
      const mention = mentions(msg.text, this.me);
      const li = this.add(c, { ts: msg.ts, nick: msg.from, text: msg.text, tag: msg.type === 'Offline' ? 'while you were away' : null, mention, secure: false });
      li.keptName = keptName({ id: String(msg.id) });
      this.#count(c, { personal: true, from: msg.from, text: msg.text });
      const status = this.secure?.status(msg.from);
      if (status && status.kind !== 'Plain' && status.kind !== 'Ready') {
        // client/src/core/dispatch.rs plain_from_secure
        this.add(c, { kind: 'error', text: `the private message from ${msg.from} above was NOT end-to-end encrypted, although your conversation with ${msg.from} is secure: the server could read it (or forged it)` });
      }
      return this.keep?.add(msg.from, { ts: msg.ts, from: msg.from, text: msg.text, id: msg.id });
    }
    const c = this.conv('room', msg.room);
    const mention = nickKey(msg.from) !== nickKey(this.me) && mentions(msg.text, this.me);
    this.add(c, { ts: msg.ts, nick: msg.from, text: msg.text, action: msg.action, tag: earlier ? 'earlier' : null, mention });
    if (!earlier || msg.id > c.seen) this.#count(c, { mention, from: `${msg.from} in ${c.name}`, text: msg.text });
  }

  #lineState(e) {
    let li = this.lines.get(e.line);
    if (!li && this.sending) {
      li = this.sending;
      this.sending = null;
      this.lines.set(e.line, li);
    }
    if (!li) return;
    if (e.state === 'refused') markPlain(li, false);
    li.classList.remove('waiting', 'sent', 'queued', 'refused', 'unknown');
    li.classList.add(e.state);
    let state = li.querySelector('.state');
    if (!state) {
      state = h('span', { class: 'state' });
      li.append(' ', state);
    }
    const words = {
      waiting: e.detail ? `not sent yet: ${e.detail}` : 'sending…',
      sent: '',
      queued: 'queued: delivered when they log in',
      refused: `refused: ${e.detail}`,
      unknown: e.detail,
    }[e.state];
    setText(state, words ?? '');
    if (e.state === 'sent' && e.ts !== undefined) {
      const t = timeWords(e.ts);
      const time = li.querySelector('time');
      time.dateTime = t.iso;
      time.title = t.full;
      setText(time, t.hhmm);
    }
    if (e.state !== 'waiting') {
      this.lines.delete(e.line);
      this.#settleKept(li, e.state === 'sent' || e.state === 'queued' ? null : words);
    }
    const c = li.conv;
    if ((e.state === 'sent' || e.state === 'queued') && c) c.ok = true;
    if (e.state === 'queued' && c?.kind === 'private') {
      // Delivered at the peer's next login (PROTOCOL.md, Delivery): said so when it comes.
      c.queued.add(li);
      if (c.queued.size > MAX_LOG) c.queued.delete(c.queued.values().next().value);
    }
    if (e.state === 'refused' && c?.kind === 'private' && !c.ok && e.code === ErrorCode.NO_SUCH_NICK && this.convs.get(c.key) === c) {
      // /msg to a nick nobody has: no conversation is left behind; the error is said where the user was.
      const words = `${c.name}: no such user — nothing was sent (${e.detail})`;
      this.close(c);
      this.say(words, 'error');
      this.status(words, true);
      return;
    }
    if (e.state === 'refused') this.status(`A line was refused: ${e.detail}`, true);
  }

  #server(msg) {
    // State first, then what it says.
    switch (msg.type) {
      case 'Entered': {
        if (isLobby(msg.room)) {
          if (this.joinAsked.delete(roomKey(msg.room))) this.switchTo(this.conv('room', LOBBY));
          break;
        }
        const c = this.conv('room', msg.room);
        if (c.name !== msg.room) c.name = msg.room;
        c.topic = msg.topic;
        c.memberCount = msg.members;
        c.role = msg.role;
        c.modes = msg.modes;
        c.seen = msg.seen;
        c.members.clear();
        c.namesFresh = true;
        // A join brings the first page of members right behind; a login's re-entry brings none
        // (logins stay cheap with many rooms): the room on screen asks for them, quietly.
        c.membersKnown = false;
        c.membersAsked = false;
        if (this.joinAsked.delete(roomKey(msg.room))) this.switchTo(c);
        else if (this.current === c) setTimeout(() => this.#wantMembers(c), MEMBERS_AFTER_MS);
        break;
      }
      case 'Names': {
        const c = this.conv('room', msg.room, false);
        if (!c) break;
        if (c.namesFresh || this.ctx.namesAsked.has(roomKey(msg.room))) {
          if (!c.namesFresh) c.members.clear();
          c.namesFresh = !msg.last;
        }
        for (const m of msg.members) c.members.set(nickKey(m.nick), { ...m });
        if (msg.last) c.membersKnown = true;
        break;
      }
      case 'Joined': {
        const c = this.conv('room', msg.room, false);
        if (!c) break;
        if (c.lobby) this.online += 1;
        else if (!c.members.has(nickKey(msg.nick))) c.memberCount += 1;
        const old = c.members.get(nickKey(msg.nick));
        c.members.set(nickKey(msg.nick), { nick: msg.nick, role: old?.role ?? 'Member', online: true, away: false });
        break;
      }
      case 'Left': {
        const lobby = this.conv('room', LOBBY);
        lobby.members.delete(nickKey(msg.nick));
        this.online = Math.max(0, this.online - 1);
        for (const c of this.convs.values()) {
          const m = c.kind === 'room' && !c.lobby ? c.members.get(nickKey(msg.nick)) : null;
          if (m) m.online = false;
        }
        break;
      }
      case 'Parted':
      case 'Kicked': {
        const c = this.conv('room', msg.room, false);
        if (!c) break;
        if (nickKey(msg.nick) === nickKey(this.me)) {
          const words = notice(msg, this.ctx);
          this.convs.delete(c.key);
          if (this.current === c) this.switchTo(this.conv('room', LOBBY));
          else this.#renderList();
          if (words) this.say(words.text, words.kind);
          return;
        }
        if (c.members.delete(nickKey(msg.nick))) c.memberCount = Math.max(0, c.memberCount - 1);
        break;
      }
      case 'Topic': {
        const c = this.conv('room', msg.room, false);
        if (c) c.topic = msg.topic;
        break;
      }
      case 'ModeChanged': {
        const c = this.conv('room', msg.room, false);
        if (c?.modes) {
          const field = { InviteOnly: 'invite_only', TopicOps: 'topic_ops', Moderated: 'moderated' }[msg.mode];
          c.modes = { ...c.modes, [field]: msg.on };
        }
        break;
      }
      case 'MemberChanged': {
        const c = this.conv('room', msg.room, false);
        if (!c) break;
        const role = { Op: 'Op', Deop: 'Member', Voice: 'Voiced', Devoice: 'Member', Owner: 'Owner' }[msg.change];
        const m = c.members.get(nickKey(msg.nick));
        if (role && m) m.role = role;
        if (role && nickKey(msg.nick) === nickKey(this.me)) c.role = role;
        break;
      }
      case 'Rooms':
        this.listNext = msg.next;
        break;
      case 'Presence': {
        const c = this.conv('private', msg.nick, false);
        if (!c) return;
        const first = c.online === undefined;
        const changed = c.online !== msg.online;
        c.online = msg.online;
        // A login seen (not the answer to Monitor, which also comes after each reconnection).
        if (msg.online && !first && changed) this.#cameOnline(c);
        this.#refresh();
        if (first || !changed) return; // the answer to Monitor: the header says it
        break;
      }
      default:
        break;
    }
    const words = notice(msg, this.ctx);
    if (words) {
      let c = null;
      if (words.conv) {
        c = words.conv.startsWith('#') ? this.conv('room', words.conv, false) : this.conv('private', words.conv, false);
      }
      const target = c ?? this.current;
      this.add(target, { text: words.text, kind: words.kind === 'mention' ? 'notice' : words.kind, mention: words.kind === 'mention', multiline: true });
      if (words.kind === 'error' && target !== this.current) this.say(words.text, 'error');
      if (words.kind === 'error') this.status(words.text, true);
      if (words.kind === 'mention') this.#count(target, { mention: true, from: 'Multi-Messenger', text: words.text });
    }
    this.#refresh();
  }

  /**
   * The peer of `c` logged in since the server queued our lines for them. Their "queued" label
   * says so — only that: no receipt comes from the peer (PROTOCOL.md), and an operator who
   * releases an account deletes its mailbox, so "delivered" would be a guess.
   */
  #cameOnline(c) {
    if (c.queued.size === 0) return;
    const t = timeWords(BigInt(Date.now()));
    for (const li of c.queued) {
      const el = li.querySelector('.state');
      if (el) setText(el, `queued · ${c.name} logged in at ${t.hhmm} (the server hands queued lines over at login)`);
    }
    c.queued.clear();
  }

  /** Watches private peers' presence (Monitor: at most 64 nicks a frame). */
  #monitor(nicks) {
    const conn = this.connection();
    if (!conn?.connected) return;
    for (let i = 0; i < nicks.length; i += 64) conn.send({ type: 'Monitor', nicks: nicks.slice(i, i + 64) });
  }

  #refresh() {
    if (!this.current || !this.convs.has(this.current.key)) this.current = this.conv('room', LOBBY);
    this.#renderHeader();
    this.#renderMembers();
    this.#renderList();
  }

  // ---- input ----

  submit() {
    const value = this.el.input.value;
    if (value.trim() === '') return;
    let actions;
    try {
      actions = plan(parse(value), { kind: this.current.kind, name: this.current.name }, { maxTextLen: this.maxTextLen, listNext: this.listNext });
    } catch (e) {
      if (e instanceof CommandError) {
        this.say(e.message, 'error');
        this.status(e.message, true);
        return; // the input stays, to be fixed
      }
      throw e;
    }
    this.history.push(value);
    if (this.history.length > 100) this.history.shift();
    this.el.input.value = '';
    this.#grow();
    for (const a of actions) this.#act(a);
  }

  #act(a) {
    const conn = this.connection();
    if (a.show) {
      // /help: a table, in the page's normal (not the notices' italic) type, its columns kept.
      this.say(a.show, a.show === HELP ? 'notice help' : 'notice');
    } else if (a.open) {
      const known = this.conv('private', a.open, false);
      const c = known ?? this.conv('private', a.open);
      if (!known) c.from = this.current;
      this.switchTo(c);
    } else if (a.close) {
      this.close(this.conv('private', a.close, false));
    } else if (a.e2e) {
      this.#e2eCommand(a.e2e, a.nick);
    } else if (a.line && a.line.type === 'Private') {
      this.#sendPrivate(a.line.to, a.line.text);
    } else if (a.line) {
      const msg = a.line;
      const c = msg.type === 'Private' ? this.conv('private', msg.to) : this.conv('room', msg.room, false);
      if (!c) {
        this.say(`you are not in ${msg.room}: /join ${msg.room} first`, 'error');
        return;
      }
      const li = this.add(c, { nick: this.me, text: msg.text, action: msg.action, own: true, kind: 'line waiting' });
      li.conv = c;
      if (!conn) {
        li.append(h('span', { class: 'state' }, 'not sent: not connected'));
        return;
      }
      this.sending = li;
      conn.sendLine(msg);
      this.sending = null;
    } else if (a.send) {
      const msg = a.send;
      if (msg.type === 'Join') this.joinAsked.add(roomKey(msg.room));
      if (msg.type === 'Names') this.ctx.namesAsked.add(roomKey(msg.room));
      if (msg.type === 'Topic' && msg.topic === null) this.ctx.topicAsked.add(roomKey(msg.room));
      if (!conn || !conn.send(msg)) {
        this.say('not connected: try again once connected', 'error');
      }
    } else if (a.quit) {
      this.onQuit();
    }
  }

  /**
   * A private line: through the end-to-end sessions (secure, waiting for keys, or plain if the
   * user said /insecure); never a plain Private for a conversation that is not plain.
   */
  #sendPrivate(to, text) {
    const c = this.conv('private', to);
    const li = this.add(c, { nick: this.me, text, own: true, kind: 'line waiting', secure: true });
    li.conv = c;
    if (!this.secure) {
      markPlain(li, false);
      this.#mark(li, 'refused', 'not sent: end-to-end encryption is not available in this tab');
      return;
    }
    const tag = this.nextTag++;
    this.e2eLines.set(tag, li);
    while (this.e2eLines.size > MAX_E2E_LINES) {
      const [oldest, old] = this.e2eLines.entries().next().value;
      this.e2eLines.delete(oldest);
      this.#mark(old, 'unknown', 'not sent: too many lines were waiting');
    }
    const r = this.secure.sendText(to, text, tag);
    const shown = sentTextLine(r, to);
    if (shown.secure !== true) markPlain(li, shown.secure === false);
    if (shown.keep) {
      // Kept as pending until the server takes it (or it is refused): a reload in between shows
      // it as not confirmed, never as if it had gone.
      // Waiting until given to the connection (sendWire): one kept still waiting was never sent.
      const local = `${Date.now().toString(36)}-${tag}`;
      li.kept = { peer: to, local };
      li.keptName = keptName({ local });
      this.keep?.add(to, { ts: Date.now(), from: this.me, text, plain: !shown.secure, local, pending: true, waiting: true });
    }
    if (shown.state) this.#mark(li, shown.state, shown.words);
    if (r.kind === 'Plain') this.sendWire({ type: 'Private', to, text }, tag);
    if (shown.state === 'refused') {
      this.e2eLines.delete(tag);
      this.status(r.message, true);
    }
    this.securityChanged();
  }

  #e2eCommand(which, nick) {
    if (!this.secure) {
      this.problem(`/${which}: end-to-end encryption is not available in this tab`);
      return;
    }
    const r = this.secure.command(which, nick);
    if (r?.refused) {
      this.say(`/${which} ${nick}: ${r.refused}`, 'error', this.conv('private', nick, false) ?? this.current);
      this.status(r.refused, true);
    } else if (r && r.number !== undefined) {
      this.#safetyNumber(nick, r.number, r.newKey);
    } else if (which === 'verified' || which === 'accept-key') {
      // Done: said as mm says it (client/src/execute.rs), in the conversation with `nick`.
      const c = this.conv('private', nick);
      if (which === 'accept-key') this.accepted.add(nickKey(nick));
      else this.accepted.delete(nickKey(nick));
      this.#securityNotice(c, which === 'verified' ? verifiedWords(nick) : acceptedWords(nick));
      if (this.current !== c) this.switchTo(c);
    } else if (which === 'secure' || which === 'insecure') {
      const c = this.conv('private', nick);
      if (this.current !== c) this.switchTo(c);
    }
    this.securityChanged();
  }

  #grow() {
    const lines = this.el.input.value.split('\n').length;
    this.el.input.rows = Math.min(8, Math.max(1, lines));
  }

  #switchBy(step) {
    const list = this.#ordered();
    const i = list.indexOf(this.current);
    const next = list[(i + step + list.length) % list.length];
    this.switchTo(next);
  }

  #nicks() {
    const c = this.current;
    const names = new Set();
    for (const m of c.members.values()) names.add(m.nick);
    if (c.kind === 'private') names.add(c.name);
    for (const m of this.conv('room', LOBBY).members.values()) names.add(m.nick);
    for (const x of this.convs.values()) if (x.kind === 'private') names.add(x.name);
    names.delete(this.me);
    return [...names];
  }

  #wire() {
    const input = this.el.input;
    this.el.holder.addEventListener('scroll', () => {
      const el = this.el.holder;
      this.stick = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    }, { passive: true });
    this.el.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
      input.focus();
    });
    input.addEventListener('input', () => {
      this.tabState = null;
      this.#grow();
    });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
        e.preventDefault();
        this.submit();
        return;
      }
      if (e.key === 'ArrowUp' && !e.altKey && input.value === '' && this.history.length > 0) {
        e.preventDefault();
        input.value = this.history[this.history.length - 1];
        this.#grow();
        input.setSelectionRange(input.value.length, input.value.length);
        return;
      }
      if (e.key === 'Tab' && !e.shiftKey && !e.altKey && !e.ctrlKey) {
        const base = this.tabState ?? { value: input.value, cursor: input.selectionStart, cycle: 0 };
        const done = complete(base.value, base.cursor, this.#nicks(), base.cycle);
        // With text typed, Tab is completion, found or not (focus stays in the box); in an
        // empty box it moves focus as everywhere else, so keyboard users can leave it.
        if (input.value !== '') e.preventDefault();
        if (done) {
          input.value = done.value;
          input.setSelectionRange(done.cursor, done.cursor);
          this.tabState = done.matches > 1 ? { ...base, cycle: base.cycle + 1 } : null;
        }
        return;
      }
      if (e.key !== 'Tab') this.tabState = null;
    });
    document.addEventListener('keydown', (e) => {
      if (e.altKey && (e.key === 'ArrowUp' || e.key === 'ArrowDown') && !this.el.chat.hidden) {
        e.preventDefault();
        this.#switchBy(e.key === 'ArrowUp' ? -1 : 1);
        input.focus();
      } else if (e.key === 'Escape' && this.el.chat.classList.contains('nav-open')) {
        this.el.chat.classList.remove('nav-open');
        this.el.menu.setAttribute('aria-expanded', 'false');
        this.el.menu.focus();
      }
    });
    this.el.menu.addEventListener('click', () => {
      const open = this.el.chat.classList.toggle('nav-open');
      this.el.menu.setAttribute('aria-expanded', String(open));
      if (open) this.el.list.querySelector('button')?.focus();
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && this.flushScheduled) this.flush();
      if (!document.hidden && this.current) {
        this.current.unread = 0;
        this.current.mentions = 0;
        this.#renderList();
      }
    });
    this.#wireNotify();
  }

  #wireNotify() {
    const button = this.el.notify;
    if (typeof Notification === 'undefined') {
      button.hidden = true;
      return;
    }
    const label = () => {
      button.setAttribute('aria-pressed', String(this.notifyOn));
      setText(button, this.notifyOn ? 'Notify me: on' : 'Notify me');
    };
    try {
      this.notifyOn = localStorage.getItem('mm-notify') === '1' && Notification.permission === 'granted';
    } catch {
      this.notifyOn = false;
    }
    label();
    button.addEventListener('click', async () => {
      if (this.notifyOn) {
        this.notifyOn = false;
      } else {
        const p = Notification.permission === 'granted' ? 'granted' : await Notification.requestPermission();
        this.notifyOn = p === 'granted';
        if (p === 'denied') this.status('Notifications are blocked for this site in the browser settings.', true);
      }
      try {
        localStorage.setItem('mm-notify', this.notifyOn ? '1' : '0');
      } catch {
        // not kept
      }
      label();
    });
  }

  #notify(c, from, text) {
    if (!this.notifyOn || !document.hidden || typeof Notification === 'undefined' || Notification.permission !== 'granted') return;
    try {
      const n = new Notification(c.kind === 'private' ? `${from} (private)` : from, { body: text.slice(0, 200), tag: c.key, icon: 'icon.svg' });
      n.onclick = () => {
        window.focus();
        this.switchTo(c);
        n.close();
      };
    } catch {
      // some browsers allow notifications only from a service worker
    }
  }
}

/** A line of ours not sent: it loses the end-to-end mark at once (its state words say why). */
function roleRank(role) {
  return { Owner: 3, Op: 2, Voiced: 1, Member: 0 }[role ?? 'Member'] ?? 0;
}

/** The visible mark of an end-to-end encrypted line, with words for screen readers. */
function lockMark() {
  // Drawn, not a glyph: every browser shows it, whatever its fonts.
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 12 14');
  svg.setAttribute('width', '0.8em');
  svg.setAttribute('height', '0.9em');
  svg.setAttribute('aria-hidden', 'true');
  const shackle = document.createElementNS(NS, 'path');
  shackle.setAttribute('d', 'M3 6V4a3 3 0 0 1 6 0v2');
  shackle.setAttribute('fill', 'none');
  shackle.setAttribute('stroke', 'currentColor');
  shackle.setAttribute('stroke-width', '1.6');
  const body = document.createElementNS(NS, 'rect');
  body.setAttribute('x', '1');
  body.setAttribute('y', '6');
  body.setAttribute('width', '10');
  body.setAttribute('height', '8');
  body.setAttribute('rx', '1.5');
  body.setAttribute('fill', 'currentColor');
  svg.append(shackle, body);
  return h('span', { class: 'lock', role: 'img', 'aria-label': 'end-to-end encrypted', title: 'end-to-end encrypted' }, svg);
}

/**
 * The visible mark of a private line that is NOT end-to-end encrypted (live, and restored
 * after a reload from the kept `plain`): the server could read it.
 */
function plainMark() {
  return h('span', { class: 'tag plain-tag', title: 'not end-to-end encrypted: the server can read it' }, 'NOT end-to-end encrypted');
}

/** A line shown as going plain goes end-to-end encrypted after all: its lock comes back. */
function markSecure(li) {
  if (!li.classList.contains('plain')) return;
  li.classList.remove('plain');
  li.querySelector('.plain-tag')?.remove();
  li.classList.add('secure');
  const text = li.querySelector('.text');
  if (text && !text.querySelector('.lock')) text.insertBefore(lockMark(), text.firstChild);
}

/** A line shown as secure is not: its lock goes; `plain` (it goes, or went, plain) marks it so. */
function markPlain(li, plain) {
  li.classList.remove('secure');
  li.querySelector('.lock')?.remove();
  if (!plain || li.classList.contains('plain')) return;
  li.classList.add('plain');
  const text = li.querySelector('.text');
  text?.insertBefore(plainMark(), text.firstChild);
}

/** Text with http(s) links as <a> (text only; never fetched or previewed). */
function textNodes(text) {
  const safe = sanitize(text);
  return linkParts(safe).map((p) => (p.link
    ? h('a', { href: p.link, rel: 'noopener noreferrer', target: '_blank', referrerpolicy: 'no-referrer' }, p.link)
    : document.createTextNode(p.text)));
}
