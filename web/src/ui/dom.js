// Small DOM helpers. Chat text only ever goes in as text nodes (never innerHTML).

/** An element with attributes (strings; `class` for className) and children (nodes or text). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'hidden') el.hidden = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) append(el, c);
  return el;
}

export function append(el, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(el, c);
  } else if (child instanceof Node) {
    el.appendChild(child);
  } else {
    el.appendChild(document.createTextNode(String(child)));
  }
}

export const $ = (id) => document.getElementById(id);

/** Replaces an element's content with text. */
export function setText(el, text) {
  el.textContent = text;
}

/** A stable colour class for a nick. */
export function nickClass(nick) {
  let x = 2166136261;
  for (const c of nick.toLowerCase()) x = Math.imul(x ^ c.codePointAt(0), 16777619) >>> 0;
  return `nick-${x % 8}`;
}
