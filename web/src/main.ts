// Entry point: picks the screen from the URL. `/` starts or lists reviews, `/join#<invite>` joins
// one, `/r/<id>` is a review.

import './style.css'
import { api, ApiError, ROLES, type Created, type Role } from './api'
import { h, notice, replace } from './dom'
import { openReview } from './review'
import { actionsScreen } from './actions-page'
import { publicationView } from './publication'
import { factorChips, factorsScreen, kindsText } from './learning'
import { ROLE_HELP, PHASE_HELP } from './rules'
import { memory } from './store'

const app = document.getElementById('app') as HTMLElement

function header (): HTMLElement {
  return h('header', { class: 'top' }, h('a', { href: '/', class: 'brand' }, 'Debrief'))
}

function message (err: unknown): string {
  if (err instanceof ApiError) {
    switch (err.code) {
      case 'invalid_invite': return 'This invite link is not valid: it may have been replaced by a new one. Ask the facilitator for the current link.'
      case 'server_unreachable': return 'The Debrief server cannot be reached. Check your connection and try again; what you typed is kept.'
      default: return err.message
    }
  }
  return 'Something went wrong. Try again.'
}

function startScreen (): void {
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
  const markdown = h('textarea', { id: 'markdown', rows: 4, placeholder: 'Optional: paste a report drafted elsewhere, in Markdown, instead of the template' })
  const status = h('div', { class: 'form-status' })
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create review')
  const form = h('form', { class: 'card', 'aria-labelledby': 'create-h' },
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
    h('p', { class: 'hint' }, 'You become the facilitator. You get one invite link per role to share.'),
    submit, status)
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    submit.disabled = true
    replace(status, notice('Creating…'))
    void (async () => {
      try {
        const created = await api.create(title.value.trim(), date.value || null, severity.value || null, markdown.value.trim() || null, release.value === 'meeting' ? 'meeting' : 'batch', smallGroups.checked, team.value.trim() || null)
        memory.setName(name.value.trim())
        const joined = await api.join(created.invites.facilitator.token, name.value.trim())
        const you = joined.review.you
        if (!you) throw new Error('no session')
        memory.remember({ review: created.review.id, session: joined.session, role: you.role, participant: you.participant, name: you.name, title: created.review.title, phase: created.review.phase })
        invitesScreen(created)
      } catch (err) {
        replace(status, notice(message(err), 'error'))
        submit.disabled = false
      }
    })()
  })
  const joined = memory.memberships()
  replace(app, header(), h('main', { class: 'narrow' },
    h('h1', {}, 'Blameless post-mortems, written together'),
    form,
    joined.length > 0 && h('section', { class: 'card', 'aria-labelledby': 'mine-h' },
      h('h2', { id: 'mine-h' }, 'Reviews you joined in this browser'),
      h('ul', { class: 'reviews' }, ...joined.map((m) => h('li', {},
        h('a', { href: `/r/${m.review}` }, m.title), ' ',
        h('span', { class: `phase phase-${m.phase}` }, m.phase), ' ',
        h('span', { class: 'muted' }, `as ${m.role}`), ' ',
        h('span', { class: 'muted action-count', 'data-review': m.review })))),
      h('p', {}, h('a', { href: '/actions', id: 'actions-link' }, 'Action items across your reviews')))))
  app.querySelector('main')?.appendChild(librarySection())
  if (joined.length > 0) {
    // How many of each review's actions are done, from the server's count.
    api.searchActions({ sessions: joined.map((m) => m.session).slice(0, 100), limit: 1 }).then((list) => {
      for (const r of list.reviews) {
        const slot = app.querySelector(`.action-count[data-review="${r.id}"]`)
        if (slot && r.actions.total > 0) slot.textContent = `· ${r.actions.done} of ${r.actions.total} actions done`
      }
    }, () => undefined)
  }
  title.focus()
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
    }, (err: unknown) => { replace(list, notice(message(err), 'error')) })
  }
  q.addEventListener('input', search)
  search()
  return h('section', { class: 'card', 'aria-labelledby': 'lib-h' }, h('h2', { id: 'lib-h' }, 'Library'), q, list,
    h('p', {}, h('a', { href: '/library/factors', id: 'factors-link' }, 'Recurring contributing factors')))
}

function libraryScreen (id: string): void {
  replace(app, header(), h('main', { class: 'narrow' }, notice('Loading…')))
  api.libraryEntry(id).then((entry) => {
    document.title = `${entry.title} · Debrief library`
    replace(app, header(), h('main', { class: 'narrow' }, publicationView(entry)))
  }, (err: unknown) => {
    replace(app, header(), h('main', { class: 'narrow' }, notice(message(err), 'error'), h('a', { href: '/' }, 'Go to the start page')))
  })
}

/** After creation: the four links with copy buttons, then on to the review. */
function invitesScreen (created: Created): void {
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

function joinScreen (): void {
  let invite = ''
  try {
    invite = decodeURIComponent(location.hash.slice(1))
  } catch {
    invite = ''
  }
  const name = h('input', { id: 'name', required: true, maxlength: 60, value: memory.name(), autocomplete: 'nickname' })
  const status = h('div', { class: 'form-status' })
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Join')
  const heading = h('h2', { id: 'join-h' }, 'Join a post-mortem')
  const about = h('p', { class: 'join-about' })
  const form = h('form', { class: 'card', 'aria-labelledby': 'join-h' },
    heading, about,
    h('label', { for: 'name' }, 'Your name, as others will see it'), name,
    submit, status)
  if (!invite) {
    replace(status, notice('This link has no invite in it. Open the full link you were sent.', 'error'))
    submit.disabled = true
  } else {
    // Name the review and the role before anyone gives a name.
    api.invite(invite).then((found) => {
      replace(heading, 'Join ', h('q', { class: 'join-title' }, found.title))
      replace(about, 'You join as ', h('strong', { class: 'join-role' }, found.role), `: the ${found.role} ${ROLE_HELP[found.role]}. `,
        h('span', { class: 'muted' }, `Now in ${found.phase}: ${PHASE_HELP[found.phase]}`))
      submit.textContent = `Join as ${found.role}`
    }, (err: unknown) => {
      replace(status, notice(message(err), 'error'))
    })
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    submit.disabled = true
    void (async () => {
      try {
        const joined = await api.join(invite, name.value.trim())
        const you = joined.review.you
        if (!you) throw new Error('no session')
        memory.setName(you.name)
        memory.remember({ review: joined.review.id, session: joined.session, role: you.role, participant: you.participant, name: you.name, title: joined.review.title, phase: joined.review.phase })
        history.replaceState(null, '', `/r/${joined.review.id}`)
        route()
      } catch (err) {
        replace(status, notice(message(err), 'error'))
        submit.disabled = false
      }
    })()
  })
  replace(app, header(), h('main', { class: 'narrow' }, form))
  name.focus()
}

function route (): void {
  const path = location.pathname
  const review = /^\/r\/([0-9a-f]{1,64})\/?$/.exec(path)
  const published = /^\/library\/([0-9a-f]{1,64})\/?$/.exec(path)
  if (path === '/join') {
    joinScreen()
  } else if (path === '/library/factors' || path === '/library/factors/') {
    factorsScreen(app, header)
  } else if (published?.[1]) {
    libraryScreen(published[1])
  } else if (path === '/actions' || path === '/actions/') {
    actionsScreen(app, header)
  } else if (review?.[1]) {
    openReview(app, review[1], header)
  } else if (path === '/' || path === '/index.html') {
    startScreen()
  } else {
    replace(app, header(), h('main', { class: 'narrow' }, notice('There is nothing at this address.', 'error'), h('a', { href: '/' }, 'Go to the start page')))
  }
}

window.addEventListener('popstate', route)
route()
