// Sign-in in the header: "Sign in" when the server offers OpenID Connect sign-in and nobody is
// signed in, "Signed in as … · Sign out" when someone is. Who is signed in is asked once per page
// load (GET /api/me, `whoAmI`), which also gives the CSRF token every changing request carries.

import { api, signInOffer, whoAmI } from './api'
import type { components } from './generated/api'
import { h, replace } from './dom'

type Me = components['schemas']['Me']
type Offer = components['schemas']['SignInOffer']

export interface SignedIn {
  offer: Offer
  me: Me | null
}

let asked: Promise<SignedIn> | undefined

/** Who is signed in, asked once per page load. */
export function signedIn (): Promise<SignedIn> {
  asked ??= (async () => {
    const offer = await signInOffer()
    if (!offer.oidc && !offer.proxy) return { offer, me: null }
    return { offer, me: await whoAmI() }
  })()
  return asked
}

/** Where "Sign in" goes: the provider, then back to this page. */
export function signInHref (): string {
  return `/auth/login?return=${encodeURIComponent(location.pathname + location.search + location.hash)}`
}

/** The header's sign-in control (empty while asking, and on a server without sign-in). */
export function signInControl (): HTMLElement {
  const slot = h('div', { class: 'signin' })
  signedIn().then(({ offer, me }) => {
    if (me) {
      const out = h('button', { type: 'button', class: 'link signout' }, 'Sign out')
      out.addEventListener('click', () => {
        out.disabled = true
        api.signOut().then(() => {
          location.assign('/')
        }, () => { out.disabled = false })
      })
      replace(slot, h('span', { class: 'signed-in' }, 'Signed in as ', h('strong', {}, me.name)),
        ...(me.source === 'oidc' ? [' · ', out] : []))
    } else if (offer.oidc) {
      replace(slot, h('a', { href: signInHref(), class: 'signin-link' }, 'Sign in'))
    }
  }, () => {})
  return slot
}
