// The action items page (`/actions`, issue 20): every action item of the reviews this browser
// joined, and of the published ones, in one table; filters; overdue items stand out; the status
// moves in place, and each item says who set each status and when.
//
// The browser asks with every session it holds (`POST /api/actions/search`): the server answers
// for each review the session may read, and for published reviews, which are public.

import { api, ApiError, type ActionInput, type ActionStatus, type ActionList, type ActionSearch, type ListedAction } from './api'
import { h, notice, replace } from './dom'
import { memory } from './store'

const STATUSES: [ActionStatus, string][] = [['open', 'Open'], ['in_progress', 'In progress'], ['done', 'Done']]
const KINDS: [ActionInput['kind'], string][] = [['prevent', 'Prevent'], ['detect', 'Detect'], ['mitigate', 'Mitigate'], ['process', 'Process']]
const statusLabel = (status: string): string => STATUSES.find(([value]) => value === status)?.[1] ?? status

const when = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' })

/** Only web links become links (the server checks them too). */
const isWeb = (url: string): boolean => /^https?:\/\//i.test(url)

function said (err: unknown): string {
  if (err instanceof ApiError) {
    switch (err.code) {
      case 'server_unreachable': return 'The Debrief server cannot be reached. Check your connection and try again.'
      case 'not_allowed': return 'Not moved: observers read along, and only the team moves action items.'
      case 'invalid_token': return 'Not moved: your place in this review has ended. Ask its facilitator for a current invite link.'
      case 'unknown_action': return 'Not moved: this action item is gone from its review.'
      default: return `Not moved: ${err.message}`
    }
  }
  return 'Not moved. Try again.'
}

/** `what`, with the issue keys the server's tracker patterns know as links. */
function whatWithLinks (item: ListedAction): (Node | string)[] {
  const out: (Node | string)[] = []
  let at = 0
  for (const ref of item.references) {
    const found = item.what.indexOf(ref.key, at)
    if (found < 0 || !isWeb(ref.url)) continue
    out.push(item.what.slice(at, found))
    out.push(h('a', { href: ref.url, rel: 'noopener noreferrer', target: '_blank', class: 'reference', title: `${ref.key} in ${ref.name}` }, ref.key))
    at = found + ref.key.length
  }
  out.push(item.what.slice(at))
  return out
}

function historyList (item: ListedAction): HTMLElement | null {
  if (item.history.length === 0) return null
  return h('ol', { class: 'history', 'aria-label': `Status history of “${item.what}”` },
    ...item.history.map((c) => h('li', {},
      h('strong', {}, statusLabel(c.status)), ' — ', c.by, ', ',
      h('time', { datetime: new Date(c.at).toISOString() }, when.format(new Date(c.at))))))
}

export function actionsScreen (app: HTMLElement, header: () => HTMLElement): void {
  document.title = 'Action items · Debrief'
  const status = h('select', { id: 'filter-status', 'aria-label': 'Status' },
    h('option', { value: '' }, 'Any status'), ...STATUSES.map(([v, l]) => h('option', { value: v }, l)))
  const kind = h('select', { id: 'filter-kind', 'aria-label': 'Kind' },
    h('option', { value: '' }, 'Any kind'), ...KINDS.map(([v, l]) => h('option', { value: v }, l)))
  const review = h('select', { id: 'filter-review', 'aria-label': 'Review' }, h('option', { value: '' }, 'Every review'))
  const teams = h('datalist', { id: 'teams' })
  const team = h('input', { id: 'filter-team', type: 'search', list: 'teams', placeholder: 'Owning team', 'aria-label': 'Owning team', maxlength: 100, autocomplete: 'off' })
  const overdue = h('input', { id: 'filter-overdue', type: 'checkbox' })
  const filters = h('form', { class: 'action-filters', role: 'search', 'aria-label': 'Filter action items' },
    status, kind, review, team, teams,
    h('label', { class: 'check', for: 'filter-overdue' }, overdue, ' Only overdue'))
  filters.addEventListener('submit', (e) => { e.preventDefault() })
  const summary = h('p', { class: 'muted', id: 'actions-summary', role: 'status' })
  const body = h('div', { id: 'actions-body' }, notice('Loading…'))
  replace(app, header(), h('main', { class: 'wide actions-page' },
    h('h1', {}, 'Action items'),
    h('p', { class: 'hint' }, 'Every action item of the reviews you joined in this browser, and of published reviews. Overdue items come first.'),
    filters, summary, body))

  const knownTeams = new Set<string>()
  const knownReviews = new Map<string, string>()
  let asked = 0
  let today = ''

  const search = (): ActionSearch => {
    const s: ActionSearch = { sessions: memory.memberships().map((m) => m.session).slice(0, 100) }
    if (status.value) s.status = status.value as ActionStatus
    if (kind.value) s.kind = kind.value as ActionInput['kind']
    if (review.value) s.review = review.value
    if (team.value.trim()) s.team = team.value.trim()
    if (overdue.checked) s.overdue = true
    return s
  }

  const row = (item: ListedAction): HTMLElement => {
    const statusCell = h('td', { class: 'status-cell' })
    const error = h('div', { class: 'control-error' })
    const session = memory.membership(item.review.id)?.session
    if (item.may_change && session) {
      const select = h('select', { 'aria-label': `Status of “${item.what}”`, 'data-action-status': item.id },
        ...STATUSES.map(([v, l]) => h('option', { value: v }, l)))
      select.value = item.status
      select.addEventListener('change', () => {
        const next = select.value as ActionStatus
        select.disabled = true
        api.moveAction(item.review.id, session, item.id, next).then((moved) => {
          const updated: ListedAction = {
            ...item,
            status: moved.status,
            history: moved.history ?? item.history,
            updated_at: moved.updatedAt,
            overdue: moved.status !== 'done' && item.due !== null && item.due < today
          }
          const fresh = row(updated)
          tr.replaceWith(fresh)
          fresh.querySelector<HTMLSelectElement>('select[data-action-status]')?.focus()
        }, (err: unknown) => {
          select.value = item.status
          select.disabled = false
          replace(error, h('span', { class: 'notice error', role: 'alert' }, said(err)))
        })
      })
      statusCell.append(select)
    } else {
      statusCell.append(h('span', { class: `status status-${item.status}` }, statusLabel(item.status)))
    }
    statusCell.append(error)
    const history = historyList(item)
    if (history) statusCell.append(history)
    const tracker = item.tracker && isWeb(item.tracker.url)
      ? h('a', { href: item.tracker.url, rel: 'noopener noreferrer', target: '_blank', class: 'tracker' }, item.tracker.key ? `${item.tracker.name} ${item.tracker.key}` : item.tracker.name)
      : null
    const what = h('td', { class: 'what' },
      h('div', { class: 'what-text' }, ...whatWithLinks(item)),
      h('div', { class: 'muted' }, item.why),
      h('div', { class: 'item-meta' },
        h('span', { class: 'kind' }, item.kind), ' ', tracker, ' ',
        h('a', { href: `/r/${item.review.id}`, class: 'from-review' }, item.review.title),
        h('span', { class: 'muted' }, ` · ${item.review.phase}`)))
    const due = item.due
      ? h('div', { class: item.overdue ? 'due overdue-label' : 'due muted' }, item.overdue ? `Overdue: due ${item.due}` : `due ${item.due}`)
      : h('div', { class: 'muted' }, 'no due date')
    const age = h('div', { class: 'muted' }, item.age_days === 0 ? 'added today' : item.age_days === 1 ? 'added 1 day ago' : `added ${item.age_days} days ago`)
    const tr = h('tr', { 'data-action': item.id, class: item.overdue ? 'overdue' : '' },
      what, h('td', { class: 'owner' }, h('div', { class: 'owner-name' }, item.owner), due, age), statusCell)
    return tr
  }

  const render = (list: ActionList): void => {
    today = list.today
    for (const r of list.reviews) knownReviews.set(r.id, r.title)
    for (const i of list.items) knownTeams.add(i.owner)
    const chosen = review.value
    replace(review, h('option', { value: '' }, 'Every review'),
      ...[...knownReviews].map(([id, title]) => h('option', { value: id }, title)))
    review.value = chosen
    replace(teams, ...[...knownTeams].sort().map((t) => h('option', { value: t })))
    const overdueCount = list.items.filter((i) => i.overdue).length
    replace(summary,
      `${list.total} action item${list.total === 1 ? '' : 's'}`,
      list.total > list.items.length ? ` (the first ${list.items.length} shown)` : '',
      overdueCount > 0 ? `, ${overdueCount} overdue` : '',
      '. ',
      ...list.reviews.filter((r) => r.joined).map((r, i) => h('span', { class: 'review-count', 'data-review': r.id }, i > 0 ? '; ' : '', `${r.title}: ${r.actions.done} of ${r.actions.total} actions done`)))
    if (list.items.length === 0) {
      replace(body, h('p', { class: 'hint' }, memory.memberships().length === 0 && !search().review
        ? 'No action items to show. Join a review, or publish one, to see its action items here.'
        : 'No action items match.'))
      return
    }
    replace(body, h('table', { class: 'action-table across' },
      h('colgroup', {}, h('col', { class: 'col-what' }), h('col', { class: 'col-owner' }), h('col', { class: 'col-status' })),
      h('thead', {}, h('tr', {}, ...['What', 'Owner and due', 'Status'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, ...list.items.map(row))))
  }

  const load = (): void => {
    const mine = ++asked
    api.searchActions(search()).then((list) => {
      if (mine === asked) render(list)
    }, (err: unknown) => {
      if (mine === asked) replace(body, notice(err instanceof ApiError && err.code !== 'server_unreachable' ? err.message : 'The Debrief server cannot be reached. Check your connection and try again.', 'error'))
    })
  }
  for (const el of [status, kind, review, overdue]) el.addEventListener('change', load)
  team.addEventListener('input', load)
  load()
}
