// Counters of work the app does that should not grow with typing (issue 17), for the browser
// tests. They are kept only when a test asked for them by setting `window.__debriefCounts` to an
// object before the app loaded; otherwise counting costs one property read and nothing is kept.

type Counts = Record<string, number>

/** Adds `n` to the counter `what`, when a test asked for counters. */
export function count (what: string, n = 1): void {
  const counts: unknown = (window as { __debriefCounts?: unknown }).__debriefCounts
  if (typeof counts === 'object' && counts !== null) {
    const c = counts as Counts
    c[what] = (c[what] ?? 0) + n
  }
}
