// Entry point: picks the screen from the URL. `/` is the home (`home.ts`: your reviews, starting
// one, the library), `/join#<invite>` joins one, `/r/<id>` is a review.

import './style.css'
import { api, errorMessage } from './api'
import { h, notice, replace } from './dom'
import { openReview } from './review'
import { actionsScreen } from './actions-page'
import { publicationView } from './publication'
import { factorsScreen } from './learning'
import { startScreen } from './home'
import { ROLE_HELP, PHASE_HELP } from './rules'
import { memory } from './store'
import { restoreReturnHash, signedIn, signInControl, signInHref } from './signin'

const app = document.getElementById('app') as HTMLElement

function header (): HTMLElement {
  return h('header', { class: 'top' }, h('a', { href: '/', class: 'brand' }, 'Debrief'), signInControl())
}

function libraryScreen (id: string): void {
  replace(app, header(), h('main', { class: 'narrow' }, notice('Loading…')))
  api.libraryEntry(id).then((entry) => {
    document.title = `${entry.title} · Debrief library`
    replace(app, header(), h('main', { class: 'narrow' }, publicationView(entry)))
  }, (err: unknown) => {
    replace(app, header(), h('main', { class: 'narrow' }, notice(errorMessage(err), 'error'), h('a', { href: '/' }, 'Go to the start page')))
  })
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
  const nameLabel = h('label', { for: 'name' }, 'Your name, as others will see it')
  const form = h('form', { class: 'card', 'aria-labelledby': 'join-h' },
    heading, about,
    nameLabel, name,
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
      if (found.sign_in_required === true) void needsSignIn()
    }, (err: unknown) => {
      replace(status, notice(errorMessage(err), 'error'))
    })
  }
  // A link that needs sign-in joins with the name the sign-in gives: the name field goes, and
  // someone not signed in is sent to sign in first.
  async function needsSignIn (): Promise<void> {
    nameLabel.hidden = true
    name.hidden = true
    name.required = false
    const { offer, me } = await signedIn().catch(() => ({ offer: null, me: null }))
    if (me) {
      name.value = me.name
      replace(status, h('p', { class: 'join-signed-in' }, 'You join as ', h('strong', {}, me.name), ', the name your sign-in gives.'))
    } else {
      submit.disabled = true
      replace(status, h('p', { class: 'join-needs-sign-in' }, 'This link needs you to sign in first. ',
        offer?.oidc === true
          ? h('a', { href: signInHref(), class: 'signin-link' }, 'Sign in')
          : 'Open this link through your company\'s sign-in.'))
    }
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
        replace(status, notice(errorMessage(err), 'error'))
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
    startScreen(app, header)
  } else {
    replace(app, header(), h('main', { class: 'narrow' }, notice('There is nothing at this address.', 'error'), h('a', { href: '/' }, 'Go to the start page')))
  }
}

window.addEventListener('popstate', route)
restoreReturnHash()
route()
