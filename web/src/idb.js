// IndexedDB in promises, for the page's two databases (account.js: `mm-web`, the account keys;
// privlog.js: `mm-web-private`, private conversations): a request as a promise, a database
// opened once per page (a failed open is tried again next time), and a transaction that
// resolves with `fn`'s result only once it committed.

/** An IDBRequest as a promise of its result. */
export function promisify(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/**
 * A database opener: `open()` → Promise<IDBDatabase> of `name` at `version`, made by
 * `upgrade(db)` when new or older; one open per page, again after a failure.
 * @param {string} name
 * @param {number} version
 * @param {(db: IDBDatabase) => void} upgrade
 */
export function database(name, version, upgrade) {
  let opened = null;
  return function open() {
    if (opened) return opened;
    opened = new Promise((resolve, reject) => {
      const req = indexedDB.open(name, version);
      req.onupgradeneeded = () => upgrade(req.result);
      req.onsuccess = () => {
        const db = req.result;
        // Another tab upgrades or deletes this database: let it (this page opens it again
        // at its next use, and a deletion's blocked write then fails visibly, never silently).
        db.onversionchange = () => {
          db.close();
          opened = null;
        };
        resolve(db);
      };
      req.onerror = () => reject(req.error);
      req.onblocked = () => reject(new Error('the browser storage is blocked by another tab of an older version'));
    });
    opened.catch(() => {
      opened = null;
    });
    return opened;
  };
}

/**
 * Runs `fn(transaction)` in a transaction over `stores` of the database `open()` gives, and
 * resolves with its result once the transaction committed (rejects if it failed or aborted).
 * `options` go to IDBDatabase.transaction: `{ durability: 'strict' }` makes "committed" mean
 * flushed to disk (Chromium's default, 'relaxed', may lose the last commits if the computer
 * crashes; the end-to-end state needs strict: a lost save could encrypt twice under one key).
 */
export async function transaction(open, stores, mode, fn, options = undefined) {
  const db = await open();
  const t = options ? db.transaction(stores, mode, options) : db.transaction(stores, mode);
  const done = new Promise((resolve, reject) => {
    t.oncomplete = () => resolve();
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error ?? new Error('storage transaction aborted'));
  });
  const result = await fn(t);
  await done;
  return result;
}
