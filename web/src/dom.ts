// A tiny DOM builder: the UI is plain elements, no framework.

type Child = Node | string | null | undefined | false
type Attrs = Record<string, string | boolean | number | EventListener | null | undefined>

/** Creates an element; `on*` attributes become event listeners, `false`/null attributes are left out. */
export function h<K extends keyof HTMLElementTagNameMap> (
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue
    if (typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value)
    } else if (value === true) {
      el.setAttribute(key, '')
    } else {
      el.setAttribute(key, String(value))
    }
  }
  append(el, ...children)
  return el
}

/** Appends children, skipping empty ones. */
export function append (parent: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    parent.appendChild(typeof c === 'string' ? document.createTextNode(c) : c)
  }
}

/** Replaces every child of `parent`. */
export function replace (parent: Node, ...children: Child[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild)
  append(parent, ...children)
}

/**
 * Makes `parent`'s children exactly `nodes`, in order, moving only what is out of place: a child
 * already where it belongs is never detached, so a reply being typed in it keeps its focus when
 * other cards arrive (a batch of anonymous items lands while someone types).
 */
export function reconcile (parent: Node, nodes: Node[]): void {
  nodes.forEach((node, i) => {
    const at = parent.childNodes[i] ?? null
    if (at !== node) parent.insertBefore(node, at)
  })
  while (parent.childNodes.length > nodes.length) {
    const last = parent.lastChild
    if (!last) break
    parent.removeChild(last)
  }
}

/** A short-lived message for screen readers and eyes. */
export function notice (text: string, kind: 'info' | 'error' = 'info'): HTMLElement {
  return h('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text)
}

/** A function that runs `fn` once at the next animation frame, however often it is called
 * before then: many document changes in one frame cost one redraw. */
export function onNextFrame (fn: () => void): () => void {
  let scheduled = false
  return () => {
    if (scheduled) return
    scheduled = true
    requestAnimationFrame(() => {
      scheduled = false
      fn()
    })
  }
}
