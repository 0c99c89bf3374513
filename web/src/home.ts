// The start page `/` (issue 19): a home for someone who joined reviews in this browser — their
// reviews, last changed first, with what waits for them in each, the ones they facilitate, then
// starting a new post-mortem and the library. A first visit sees the form to start one first.
// The server answers for every session this browser remembers (`POST /api/home`); sessions it
// no longer knows are forgotten here.

import { api, errorMessage, ROLES, signInOffer, whoAmI, type Created, type HomeReview, type Role } from './api'
import { append, h, notice, replace } from './dom'
import { factorChips, kindsText } from './learning'
import { ROLE_HELP, PHASE_HELP } from './rules'
import { memory } from './store'

type Header = () => HTMLElement

export function startScreen (app: HTMLElement, header: Header): void {
  const joined = memory.memberships()
  const create = createForm(app, header)
  const main = h('main', { class: 'narrow' }, h('h1', {}, 'Blameless post-mortems, written together'))
  if (joined.length === 0) {
    append(main, create.form)
    // Signed in, the reviews the person joined from any browser are theirs here too.
    void whoAmI().then((me) => {
      if (me && me.reviews.length > 0) create.form.before(...homeSections([], create.open))
    })
  } else {
    append(main, ...homeSections(joined.map((m) => m.session), create.open), create.collapse())
  }
  main.appendChild(librarySection())
  replace(app, header(), main)
  if (joined.length === 0) create.focus()
}

/** One line per thing waiting for the person in a review, facilitator's next step included. */
function waitingFor (r: HomeReview): string[] {
  const lines: string[] = []
  if (r.waiting.unread_report) lines.push('The report waits for you to read it')
  const n = r.waiting.my_actions
  if (n > 0) lines.push(`${n} open action item${n === 1 ? '' : 's'} for you or your team`)
  const next = r.facilitator ? nextStep(r) : null
  if (next) lines.push(`Waiting on you: ${next}`)
  return lines
}

/** What the review waits on its facilitator for, in words. */
function nextStep (r: HomeReview): string | null {
  const f = r.facilitator
  switch (f?.next) {
    case 'send_for_review': return 'send the report for review'
    case 'start_meeting': return `start the meeting (${f.read_count} of ${f.people} have read the report)`
    case 'close': return 'close the review after the meeting'
    case 'publish': return 'publish it to the library'
    default: return null
  }
}

function day (ms: number): string {
  return new Date(ms).toISOString().slice(0, 10)
}

function entry (r: HomeReview): HTMLElement {
  const waiting = waitingFor(r)
  return h('li', { class: 'home-review', 'data-review': r.id },
    h('div', { class: 'home-line' },
      h('a', { href: `/r/${r.id}`, class: 'home-title' }, r.title), ' ',
      h('span', { class: `phase phase-${r.phase}` }, r.phase)),
    h('div', { class: 'muted home-meta' },
      h('span', { class: 'home-role' }, `as ${r.you.role}, ${r.you.name}`),
      r.severity ? ` · ${r.severity}` : '',
      r.incident_date ? ' · ' : '',
      r.incident_date ? h('span', { class: 'home-date' }, `incident ${r.incident_date}`) : '',
      h('span', { class: 'action-count', 'data-review': r.id }, r.actions.total > 0 ? ` · ${r.actions.done} of ${r.actions.total} actions done` : ''),
      ' · changed ', h('time', { datetime: new Date(r.changed_at).toISOString() }, day(r.changed_at))),
    waiting.length > 0
      ? h('ul', { class: 'waiting' }, ...waiting.map((w) => h('li', {}, w)))
      : h('p', { class: 'muted nothing-waiting' }, 'Nothing waits for you here.'))
}

function facilitated (r: HomeReview): HTMLElement {
  const next = nextStep(r)
  return h('li', { class: 'home-review', 'data-review': r.id },
    h('div', { class: 'home-line' },
      h('a', { href: `/r/${r.id}`, class: 'home-title' }, r.title), ' ',
      h('span', { class: `phase phase-${r.phase}` }, r.phase)),
    h('p', { class: 'muted next-step' }, next ? `Next: ${next}` : 'Nothing left to do: it is in the library.'))
}

/**
 * "Your reviews" with its search, and "Reviews you facilitate", filled from the server. When the
 * server knows none of the sessions any more, `openCreate` unfolds the form to start one.
 */
function homeSections (sessions: string[], openCreate: () => void): HTMLElement[] {
  const q = h('input', { id: 'home-q', type: 'search', 'aria-label': 'Search your reviews by title', placeholder: 'Search your reviews', maxlength: 200 })
  const status = h('div', { class: 'form-status', id: 'home-status' })
  const list = h('ul', { class: 'reviews', id: 'home-list' }, h('li', { class: 'muted' }, 'Loading…'))
  const runs = h('ul', { class: 'reviews', id: 'facilitating-list' })
  const running = h('section', { class: 'card', id: 'home-facilitating', 'aria-labelledby': 'fac-h', hidden: true },
    h('h2', { id: 'fac-h' }, 'Reviews you facilitate'), runs)
  const mine = h('section', { class: 'card', id: 'home-mine', 'aria-labelledby': 'mine-h' },
    h('h2', { id: 'mine-h' }, 'Your reviews'), q, status, list,
    h('p', {}, h('a', { href: '/actions', id: 'actions-link' }, 'Action items across your reviews')))
  let asked = 0
  const load = (): void => {
    const mark = ++asked
    const search = q.value.trim()
    // At most 100 sessions go in one request; the server bounds it the same way.
    api.home(sessions.slice(0, 100), search).then((home) => {
      if (mark !== asked) return
      if (home.unknown_sessions.length > 0) {
        memory.forgetSessions(home.unknown_sessions)
        const gone = new Set(home.unknown_sessions)
        sessions = sessions.filter((s) => !gone.has(s))
        const n = home.unknown_sessions.length
        replace(status, notice(`${n} review${n === 1 ? '' : 's'} this browser had joined ${n === 1 ? 'is' : 'are'} no longer open to it (the link was replaced or the review is gone), so ${n === 1 ? 'it was' : 'they were'} forgotten here.`))
      }
      for (const r of home.reviews) memory.update(r.id, { title: r.title, phase: r.phase })
      if (home.joined === 0) {
        replace(list, h('li', { class: 'muted' }, 'You are in no review in this browser any more.'))
        running.hidden = true
        openCreate()
        return
      }
      replace(list, ...(home.reviews.length === 0
        ? [h('li', { class: 'muted' }, 'None of your reviews matches.')]
        : home.reviews.map(entry)))
      const led = home.reviews.filter((r) => r.facilitator)
      replace(runs, ...led.map(facilitated))
      running.hidden = led.length === 0
    }, (err: unknown) => {
      if (mark !== asked) return
      // Without the server, the list as this browser remembers it.
      replace(status, notice(errorMessage(err), 'error'))
      replace(list, ...memory.memberships().map((m) => h('li', { class: 'home-review', 'data-review': m.review },
        h('a', { href: `/r/${m.review}`, class: 'home-title' }, m.title), ' ',
        h('span', { class: `phase phase-${m.phase}` }, m.phase), ' ',
        h('span', { class: 'muted' }, `as ${m.role}`))))
    })
  }
  q.addEventListener('input', load)
  load()
  return [mine, running]
}

interface CreateForm {
  /** The form, shown as it is (a first visit). */
  form: HTMLElement
  /** Folds the form behind a "Start a post-mortem" button (for someone who has reviews). */
  collapse: () => HTMLElement
  /** Unfolds the form. */
  open: () => void
  focus: () => void
}

function createForm (app: HTMLElement, header: Header): CreateForm {
  const title = h('input', { id: 'title', name: 'title', required: true, maxlength: 200, autocomplete: 'off', placeholder: 'e.g. Checkout errors after the 14:05 deploy' })
  const date = h('input', { id: 'date', name: 'date', type: 'date' })
  const severity = h('select', { id: 'severity', name: 'severity' },
    h('option', { value: '' }, 'Not set'),
    ...['SEV1', 'SEV2', 'SEV3', 'SEV4'].map((s) => h('option', { value: s }, s)))
  const name = h('input', { id: 'name', name: 'name', required: true, maxlength: 60, value: memory.name(), autocomplete: 'nickname' })
  const team = h('input', { id: 'team-new', name: 'team', maxlength: 60, autocomplete: 'off', placeholder: 'Optional, e.g. Payments' })
  const release = h('select', { id: 'release' },
    h('option', { value: 'batch' }, 'in batches while people read (recommended)'),
    h('option', { value: 'meeting' }, 'all at once when the meeting starts'))
  const smallGroups = h('input', { id: 'small-groups', type: 'checkbox' })
  // On a server with sign-in, the links can ask everyone who joins to sign in first.
  const signInLinks = h('input', { id: 'sign-in-links', type: 'checkbox' })
  const signInChoice = h('label', { class: 'check', for: 'sign-in-links', hidden: true }, signInLinks, ' Everyone who joins signs in first (their name is the one their sign-in gives)')
  void signInOffer().then((offer) => { signInChoice.hidden = !offer.required_to_create })
  const markdown = h('textarea', { id: 'markdown', rows: 4, placeholder: 'Optional: paste a report drafted elsewhere, in Markdown, instead of the template' })
  const status = h('div', { class: 'form-status' })
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create review')
  const form = h('form', { class: 'card', id: 'create-form', 'aria-labelledby': 'create-h' },
    h('h2', { id: 'create-h' }, 'Start a post-mortem'),
    h('label', { for: 'title' }, 'Incident title'), title,
    h('div', { class: 'row' },
      h('div', {}, h('label', { for: 'date' }, 'Incident date'), date),
      h('div', {}, h('label', { for: 'severity' }, 'Severity'), severity)),
    h('label', { for: 'team-new' }, 'Team'), team,
    h('label', { for: 'name' }, 'Your name'), name,
    h('label', { for: 'release' }, 'Anonymous comments appear'), release,
    h('label', { class: 'check', for: 'small-groups' }, smallGroups, ' Allow anonymous comments in a small group'),
    h('p', { class: 'hint' }, 'Without this, anonymous comments open once three people who can comment have joined, and one person\'s comments wait for someone else\'s before they appear, so nobody can tell who wrote them. With it, they work with any number of people, but in a group of two or three the others may guess.'),
    h('details', {}, h('summary', {}, 'Start from a Markdown report'), h('label', { for: 'markdown' }, 'Report in Markdown'), markdown),
    signInChoice,
    h('p', { class: 'hint' }, 'You become the facilitator. You get one invite link per role to share.'),
    submit, status)
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    submit.disabled = true
    replace(status, notice('Creating…'))
    void (async () => {
      try {
        const created = await api.create(title.value.trim(), date.value || null, severity.value || null, markdown.value.trim() || null, release.value === 'meeting' ? 'meeting' : 'batch', smallGroups.checked, team.value.trim() || null, signInLinks.checked ? [...ROLES] : [])
        memory.setName(name.value.trim())
        const joined = await api.join(created.invites.facilitator.token, name.value.trim())
        const you = joined.review.you
        if (!you) throw new Error('no session')
        memory.remember({ review: created.review.id, session: joined.session, role: you.role, participant: you.participant, name: you.name, title: created.review.title, phase: created.review.phase })
        invitesScreen(app, header, created)
      } catch (err) {
        replace(status, notice(errorMessage(err), 'error'))
        submit.disabled = false
      }
    })()
  })
  const start = h('button', { type: 'button', id: 'start-new', class: 'primary', 'aria-controls': 'create-form', 'aria-expanded': 'false' }, 'Start a post-mortem')
  const open = (): void => {
    form.hidden = false
    start.hidden = true
    start.setAttribute('aria-expanded', 'true')
  }
  start.addEventListener('click', () => {
    open()
    title.focus()
  })
  return {
    form,
    collapse: () => {
      form.hidden = true
      return h('div', { class: 'start-new' }, start, form)
    },
    open,
    focus: () => { title.focus() }
  }
}

/** The server's library of published reviews, searchable by title and text. */
function librarySection (): HTMLElement {
  const q = h('input', { id: 'library-q', type: 'search', 'aria-label': 'Search published reviews', placeholder: 'Search published reviews' })
  const list = h('ul', { class: 'reviews', id: 'library-list' })
  const search = () => {
    api.library(q.value).then((r) => {
      replace(list, ...(r.reviews.length === 0
        ? [h('li', { class: 'muted' }, 'Nothing published matches.')]
        : r.reviews.map((x) => h('li', { class: 'library-entry' }, h('a', { href: `/library/${x.id}` }, x.title), ' ', h('span', { class: 'muted' }, x.incident_date ?? ''),
          x.factors.length > 0 ? factorChips(x.factors) : null,
          h('span', { class: 'muted kinds' }, kindsText(x.action_kinds))))))
    }, (err: unknown) => { replace(list, notice(errorMessage(err), 'error')) })
  }
  q.addEventListener('input', search)
  search()
  return h('section', { class: 'card', 'aria-labelledby': 'lib-h' }, h('h2', { id: 'lib-h' }, 'Library'), q, list,
    h('p', {}, h('a', { href: '/library/factors', id: 'factors-link' }, 'Recurring contributing factors')))
}

/** After creation: the four links with copy buttons, then on to the review. */
function invitesScreen (app: HTMLElement, header: Header, created: Created): void {
  const rows = ROLES.map((role: Role) => {
    const link = new URL(created.invites[role].link, location.origin).href
    const input = h('input', { readonly: true, value: link, id: `invite-${role}`, 'aria-label': `${role} invite link` })
    const copy = h('button', { type: 'button', 'data-role': role }, 'Copy')
    copy.addEventListener('click', () => {
      input.select()
      void navigator.clipboard.writeText(link).then(() => { copy.textContent = 'Copied' }, () => { copy.textContent = 'Select and copy' })
    })
    return h('li', { class: 'invite' },
      h('strong', {}, role), h('span', { class: 'muted' }, ` — ${ROLE_HELP[role]}`),
      created.invites[role].sign_in_required === true ? h('span', { class: 'needs-sign-in' }, ' (needs sign-in)') : '',
      h('div', { class: 'row' }, input, copy))
  })
  replace(app, header(), h('main', { class: 'narrow' },
    h('h1', {}, created.review.title),
    h('section', { class: 'card', 'aria-labelledby': 'inv-h' },
      h('h2', { id: 'inv-h' }, 'Invite links'),
      h('p', {}, 'Anyone with a link joins with that role. Share each link only with the people who should have it; you can replace a link later.'),
      h('ul', { class: 'invites' }, ...rows),
      h('p', { class: 'hint' }, PHASE_HELP.draft),
      h('a', { class: 'button primary', href: `/r/${created.review.id}` }, 'Open the review'))))
}
