// Entry point of the web client: the account (first visit: the "Nick" form), the one tab that
// owns it (Web Locks), the connection, and the chat page.
import { $, setText } from './ui/dom.js';
import { ChatView } from './ui/chat.js';
import { loadAccount, createAccount, forgetCurrent } from './account.js';
import { claimAccount } from './tablock.js';
import { Connection } from './connection.js';
import { PrivateLog, indexedDbBackend } from './privlog.js';
import { nickError, nickKey, ErrorCode } from './protocol.js';
import { Secure, indexedDbHomes, browserRng } from './secure.js';
import * as e2e from './e2e/sessions.js';

const statusBar = $('status-bar');
const statusEl = $('status');
const useHere = $('use-here');
const reconnect = $('reconnect');
const otherNick = $('other-nick');

/** How long a passing status (a command's error) stays before the connection's state is back. */
const PASSING_MS = 8000;
let steady = { text: '', problem: false };
let passingTimer = null;

/**
 * Shows `text` in the status line (announced: role=status). A `passing` one (what the chat
 * view says about a command) gives way to the last steady one (the connection's state) after
 * PASSING_MS; a steady one replaces both.
 */
function status(text, problem = false, { passing = false } = {}) {
  clearTimeout(passingTimer);
  setText(statusEl, text);
  statusBar.classList.toggle('problem', problem);
  if (passing) {
    passingTimer = setTimeout(() => status(steady.text, steady.problem), PASSING_MS);
  } else {
    steady = { text, problem };
  }
}

let connection = null;
let claim = null;
let chat = null;
let account = null;
let everWelcomed = false;
let owned = false; // this tab holds the account's lock
let secure = null; // the end-to-end driver of the account (its sessions only while this tab owns it)

function buttons({ use = false, again = false, other = false } = {}) {
  useHere.hidden = !use;
  reconnect.hidden = !again;
  otherNick.hidden = !other;
}

function showWelcome(error = '') {
  $('welcome').hidden = false;
  $('chat').hidden = true;
  setText($('join-error'), error);
  status(error ? 'Choose a nick.' : 'Welcome. Choose a nick to join the chat.');
  buttons();
  $('nick').focus();
}

function onEvent(e) {
  switch (e.kind) {
    case 'status':
      status(e.text, e.state === 'reconnecting' || e.state === 'offline');
      // Presence unknown and secure conversations paused while not connected.
      chat?.linkState(e.state);
      if (e.state === 'reconnecting' || e.state === 'offline') secure?.disconnected();
      if (e.state === 'connected') buttons();
      break;
    case 'welcome':
      everWelcomed = true;
      $('welcome').hidden = true;
      account.rename(e.nick).catch(() => {});
      chat.handle(e);
      // Publishes this browser's end-to-end keys, asks again for the keys still wanted.
      secure?.login();
      break;
    case 'keys':
      secure?.keys(e.msg);
      break;
    case 'acknowledged':
      secure?.acknowledged(e.upTo);
      break;
    case 'loginFailed': {
      const nickProblem = [ErrorCode.NICK_REGISTERED, ErrorCode.NICK_LOOKS_LIKE, ErrorCode.INVALID_NICK,
        ErrorCode.NICK_IN_USE, ErrorCode.REGISTRATION_LIMIT, ErrorCode.ACCOUNTS_FULL].includes(e.code);
      if (nickProblem && !everWelcomed) {
        // A first visit whose nick the server refused: back to the form.
        forgetCurrent().catch(() => {});
        stopAll();
        showWelcome(e.words);
        return;
      }
      status(e.words, true);
      buttons({ again: e.retry === false, other: nickProblem });
      break;
    }
    case 'stopped':
      if (e.code === ErrorCode.REPLACED) {
        status('This account logged in somewhere else, which took over. Connect again to use it here.', true);
      } else if (!useHere.hidden) {
        break;
      } else {
        status(`Disconnected: ${e.why}`, true);
      }
      buttons({ again: true, other: !otherNick.hidden });
      break;
    default:
      // A personal line's handler returns the promise of keeping it (acknowledged after it).
      return chat?.handle(e);
  }
  return undefined;
}

function stopAll() {
  const old = connection;
  connection = null;
  old?.stop('closed');
  owned = false;
  secure?.drop('closed');
  claim?.release();
  claim = null;
}

/** Most a page load waits for the kept private conversations before connecting anyway. */
const RESTORE_TIMEOUT_MS = 3000;

let keptFor = null; // the account whose kept private conversations the page shows
/** The page shows the kept private conversations as read since this tab last lost the account
 *  (or never had it): another tab may have kept lines meanwhile, read again when owned. */
let keptFresh = false;

/** The account's private conversations kept in this browser, shown before connecting. */
async function restorePrivate(acc) {
  const key = acc.record.nickKey;
  if (keptFor === key) return;
  if (keptFor !== null) chat.dropPrivate();
  keptFor = key;
  const keep = new PrivateLog(acc.nick, indexedDbBackend, {
    onError: (e) => status(`Private lines could not be kept in this browser (${e?.name || 'error'}${e?.message ? `: ${e.message}` : ''}); the server keeps them until they can be, and sends them again at the next connection`, true),
  });
  chat.keep = keep;
  keptFresh = await showKept(keep);
}

/** Reads the kept private conversations (again) and shows them; true if that worked. */
async function showKept(keep) {
  let timer;
  try {
    const convs = await Promise.race([
      keep.load(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('the browser storage did not answer in time')), RESTORE_TIMEOUT_MS);
      }),
    ]);
    if (chat.keep !== keep) return false; // another account meanwhile
    chat.restore(convs);
    return true;
  } catch (err) {
    status(`The private conversations kept in this browser cannot be read: ${err?.message ?? err}`, true);
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** `created`: the account was made just now (the Nick form), not loaded. */
async function begin(acc, { created = false } = {}) {
  account = acc;
  $('welcome').hidden = true;
  chat ??= new ChatView({
    connection: () => connection,
    status,
    onQuit: () => {
      connection?.quit();
      status('You left. Connect again to come back.', true);
      buttons({ again: true });
    },
  });
  chat.show(acc.nick);
  if (!secure || nickKey(secure.nick) !== nickKey(acc.nick)) {
    secure?.drop('another account');
    secure = new Secure({
      nick: acc.nick, e2e, homes: indexedDbHomes, rng: browserRng, connection: () => connection, ui: chat,
      newAccount: created,
    });
  }
  chat.secure = secure;
  $('chat').hidden = true; // shown once this tab owns the account
  status(`Opening ${acc.nick}…`);
  await restorePrivate(acc);
  if (account !== acc || claim) return; // another account was chosen meanwhile
  claim = claimAccount(acc.nick, {
    owned() {
      owned = true;
      buttons();
      $('chat').hidden = false;
      // The end-to-end record, opened again: a new writer token, and the state as the other
      // tab (if any) last saved it. The connection starts once it is open (or failed, said).
      const opened = secure.open();
      // What another tab kept while it had the account: read again (shown before connecting;
      // lines shown already stay, the conversation open stays open).
      const reread = keptFresh || !chat.keep ? Promise.resolve(true) : showKept(chat.keep);
      keptFresh = false;
      // The same Connection again after a takeover back: the lines typed meanwhile go out.
      if (!connection) {
        const conn = new Connection({
          account: acc,
          // Events of a connection this tab dropped since (a new nick) are old news.
          onEvent: (e) => {
            return connection === conn ? onEvent(e) : undefined;
          },
        });
        connection = conn;
      }
      const live = connection;
      Promise.allSettled([opened, reread]).finally(() => {
        if (owned && connection === live) live.start();
      });
      $('message').focus();
    },
    elsewhere() {
      owned = false;
      keptFresh = false;
      secure.drop('another tab uses this account');
      // Only the banner and its button: no chat that looks usable but is not connected.
      $('chat').hidden = true;
      status('This account is open in another tab. Use here to move it to this tab.', true);
      buttons({ use: true });
    },
    stolen() {
      owned = false;
      keptFresh = false;
      // Its sessions are the other tab's now: this tab's copy is dropped, never saved again.
      secure.drop('another tab took over this account');
      connection?.stop('another tab took over this account');
      $('chat').hidden = true;
      status('This account was moved to another tab, which uses it now: this tab is not connected. Use here to move it back to this tab.', true);
      buttons({ use: true });
    },
  });
}

useHere.addEventListener('click', () => {
  buttons();
  status('Taking over from the other tab…');
  claim?.takeOver();
});

reconnect.addEventListener('click', () => {
  buttons();
  if (connection && owned) {
    connection.start();
  } else if (claim) {
    claim.takeOver();
  } else if (account) {
    begin(account);
  }
});

otherNick.addEventListener('click', async () => {
  stopAll();
  await forgetCurrent().catch(() => {});
  everWelcomed = false;
  showWelcome();
});

window.addEventListener('online', () => connection?.retryNow());
window.addEventListener('beforeunload', (e) => {
  // Lines typed but not sent yet live only in this page: the browser asks before leaving.
  if (owned && chat && chat.unsent() > 0) {
    e.preventDefault();
    e.returnValue = '';
  }
});
window.addEventListener('pagehide', () => {
  // Leaving the page: a clean close (the server sees the user go offline now).
  connection?.stop('page closed');
});

$('join-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const nick = $('nick').value.trim();
  const why = nickError(nick);
  if (why) {
    setText($('join-error'), why);
    $('nick').setAttribute('aria-invalid', 'true');
    $('nick').focus();
    return;
  }
  $('nick').removeAttribute('aria-invalid');
  $('join-button').disabled = true;
  try {
    const acc = await createAccount(nick);
    begin(acc, { created: true });
  } catch (err) {
    setText($('join-error'), `This browser could not make or keep the account key: ${err?.message ?? err}. Private browsing windows may not keep it.`);
  } finally {
    $('join-button').disabled = false;
  }
});

async function main() {
  if (!globalThis.crypto?.subtle || !globalThis.indexedDB || !globalThis.WebSocket) {
    status('This browser lacks what the web client needs (WebCrypto, IndexedDB, WebSocket over HTTPS).', true);
    return;
  }
  let acc = null;
  try {
    acc = await loadAccount();
  } catch (err) {
    status(`This browser's storage cannot be read: ${err?.message ?? err}`, true);
  }
  if (acc) begin(acc);
  else showWelcome();
}

main();
