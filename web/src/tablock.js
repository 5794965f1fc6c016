// One tab owns an account's connection (the server would take the account from one
// connection to the other forever: `replaced`). The Web Locks API: the owner holds the lock
// `mm-account-<nick>`; another tab waits for it, or takes it over (`steal`), after which the
// first tab is told it lost the account to the other tab and does not take it back by itself.

/**
 * @param {string} nick
 * @param {object} on
 * @param {() => void} on.owned     this tab owns the account now
 * @param {() => void} on.elsewhere another tab owns it: offer "Use here"
 * @param {() => void} on.stolen    another tab took it over from this one
 * @returns {{ takeOver(): void, release(): void }}
 */
export function claimAccount(nick, on) {
  const name = `mm-account-${nick.toLowerCase()}`;
  const locks = globalThis.navigator?.locks;
  let release = null;
  let waiting = null;

  if (!locks) {
    // No Web Locks (an old browser): this tab owns it; the server's `replaced` still guards.
    queueMicrotask(() => on.owned());
    return { takeOver() {}, release() {} };
  }

  // One lock request; `ifMissing` runs when an `ifAvailable` request finds the lock taken.
  const attempt = (options, ifMissing) => {
    let mine = false;
    locks
      .request(name, options, (lock) => {
        if (!lock) {
          ifMissing?.();
          return undefined;
        }
        mine = true;
        on.owned();
        return new Promise((resolve) => {
          release = resolve;
        });
      })
      .catch((e) => {
        // A held lock's request rejects (AbortError) when another tab steals it.
        if (mine && e?.name === 'AbortError') {
          release = null;
          on.stolen();
        }
      });
  };

  attempt({ ifAvailable: true }, () => {
    on.elsewhere();
    // Wait for the other tab to close; aborted if the user takes over instead.
    waiting = new AbortController();
    attempt({ signal: waiting.signal });
  });

  return {
    takeOver() {
      waiting?.abort();
      waiting = null;
      attempt({ steal: true });
    },
    release() {
      waiting?.abort();
      release?.();
      release = null;
    },
  };
}
