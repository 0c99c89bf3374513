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

const RETURN_HASH = 'debrief.return-hash'

/** Where "Sign in" goes: the provider, then back to this page. The part after `#` (an invite
 * link's secret, which browsers never send to a server) stays out of the return address, where
 * it would travel in a request line that proxies log: this tab keeps it, and
 * [`restoreReturnHash`] puts it back on the way back. */
export function signInHref (): string {
  const back = location.pathname + location.search
  if (location.hash !== '') {
    try {
      sessionStorage.setItem(RETURN_HASH, JSON.stringify({ back, hash: location.hash }))
    } catch { /* storage refused: the page comes back without it */ }
  }
  return `/auth/login?return=${encodeURIComponent(back)}`
}

/** After coming back from sign-in: the `#` part the page had when "Sign in" was shown. */
export function restoreReturnHash (): void {
  let kept: { back?: unknown, hash?: unknown } | null = null
  try {
    kept = JSON.parse(sessionStorage.getItem(RETURN_HASH) ?? 'null') as { back?: unknown, hash?: unknown } | null
    sessionStorage.removeItem(RETURN_HASH)
  } catch { return }
  if (kept === null || location.hash !== '' || typeof kept.hash !== 'string') return
  if (kept.back === location.pathname + location.search) {
    history.replaceState(null, '', kept.back + kept.hash)
  }
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
