// A published review as the library shows it (issue 17): a title block (title, incident day,
// severity, when it was published, and whether names were replaced by roles) over the review
// formatted from the server's HTML. The facilitator's preview before publishing is this same
// view, so what they read is what the library will show.

import type { ActionKinds, Names } from './api'
import { h } from './dom'
import { factorChips, kindsText } from './learning'

export interface Publication {
  title: string
  incident_date: string | null
  severity: string | null
  /** Null in a preview: not published yet. */
  published_at: number | null
  /** From the server, which renders the Markdown with nothing active in it (raw HTML as text,
   * web and mail links only, images as links): `reviews/markdown/html.rs`. */
  html: string
  names: Names
  /** Contributing factors and action kinds; a preview has none to show yet. */
  factors?: string[]
  action_kinds?: ActionKinds
}

/** A `YYYY-MM-DD` day as people read it, in no time zone. */
function day (iso: string): string {
  const [y, m, d] = iso.split('-').map(Number)
  return new Date(Date.UTC(y ?? 0, (m ?? 1) - 1, d ?? 1)).toLocaleDateString(undefined, { timeZone: 'UTC', dateStyle: 'long' })
}

export function publicationView (p: Publication): HTMLElement {
  const body = h('div', { class: 'prose publication-body' })
  body.innerHTML = p.html
  // The report opens with its title as a heading; the title block says it already.
  const first = body.firstElementChild
  if (first?.tagName === 'H1' && first.textContent.trim() === p.title.trim()) first.remove()
  const fact = (term: string, value: string, cls = ''): HTMLElement[] =>
    [h('div', { class: 'fact' }, h('dt', {}, term), h('dd', { class: cls }, value))]
  return h('article', { class: 'card publication' },
    h('header', { class: 'title-block' },
      h('h1', {}, p.title),
      h('dl', {},
        ...(p.incident_date ? fact('Incident', day(p.incident_date)) : []),
        ...(p.severity ? fact('Severity', p.severity, 'severity') : []),
        ...fact('Published', p.published_at === null ? 'Not yet' : new Date(p.published_at).toLocaleDateString(undefined, { dateStyle: 'long' })),
        ...fact('Names', p.names === 'roles' ? 'Replaced by roles' : 'As written'),
        ...(p.action_kinds ? fact('Action items', kindsText(p.action_kinds), 'kinds') : [])),
      p.factors && p.factors.length > 0 ? factorChips(p.factors) : null),
    body)
}
