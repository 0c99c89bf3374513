// Browser test of OpenID Connect sign-in (issue 19) against a real provider on loopback
// (oidc-provider.mjs, the certified `oidc-provider` package with its own login form): creating a
// review needs sign-in; Ana signs in and creates one, replaces the participant link with one that
// needs sign-in; Bo, in his own browser, is sent to sign in first and joins with the provider's
// name; each of them, in a fresh browser, finds the review on the home list; a request signed in
// by the cookie without its CSRF token is refused; signing in again gives a new session id;
// signing out ends the session on the server (the API then says 401). No cookie value, claim or
// code appears in the server's log. Then the same server mode behind an authenticating proxy:
// people signed in by the proxy's headers, and a browser the proxy did not sign in.
//
//   cd tests/js && node --test browser-signin.test.mjs

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'

import { launch, person, scenario, useReference, waitText } from './harness.mjs'
import { CLIENT_ID, CLIENT_SECRET, startProvider, USERS } from './oidc-provider.mjs'

const opts = { timeout: 180_000, skip: useReference && 'Debrief only' }

/** A free loopback port (the redirect URL registered at the provider names it). */
async function freePort () {
  const server = createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Signs in at the provider's form, from a page that was sent there. */
async function providerLogin (page, user) {
  await page.locator('#login').waitFor()
  await page.fill('#login', user)
  await page.fill('#password', USERS[user].password)
  await page.locator('#sign-in').click()
}

/** The browser's session cookie. */
async function sessionCookie (context) {
  return (await context.cookies()).find((c) => c.name === 'debrief_session')
}

/** An API request from the page itself (its cookies, its origin), with or without the CSRF token. */
function fromPage (page, method, path, body, { csrf = true } = {}) {
  return page.evaluate(async ([method, path, body, csrf]) => {
    const headers = { 'Content-Type': 'application/json' }
    if (csrf) {
      const me = await fetch('/api/me').then((r) => r.json())
      headers['X-Debrief-CSRF'] = me.csrf_token
    }
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
    return { status: res.status, body: await res.json().catch(() => null) }
  }, [method, path, body, csrf])
}

test('sign in with a real OpenID provider: create, invite a colleague who must sign in, home lists it for both, sign out', opts, scenario(async (h) => {
    const port = await freePort()
    const base = `http://127.0.0.1:${port}`
    let provider = await startProvider({ redirectUri: `${base}/auth/callback` })
    try {
      const server = await h.startServer({
        args: [
          '--listen', `127.0.0.1:${port}`,
          '--oidc-issuer', provider.issuer,
          '--oidc-client-id', CLIENT_ID,
          '--oidc-client-secret', CLIENT_SECRET,
          '--public-url', base,
          '--oidc-allow-insecure-http'
        ]
      })
      const browser = await launch()
      try {
        // Not signed in: the header offers sign-in, and creating a review is refused.
        const ana = await person(browser)
        await ana.page.goto(`${base}/`)
        await waitText(ana.page, '.signin', 'Sign in')
        await ana.page.fill('#title', 'Queue outage')
        await ana.page.fill('#name', 'Ana')
        await ana.page.getByRole('button', { name: 'Create review' }).click()
        await waitText(ana.page, '.form-status', 'Creating a review on this server needs you to sign in: use “Sign in” at the top of the page.')

        // Ana signs in at the provider and comes back to the start page, signed in.
        await ana.page.locator('.signin-link').click()
        await providerLogin(ana.page, 'ana')
        await ana.page.waitForURL(`${base}/`)
        await waitText(ana.page, '.signin', 'Signed in as Ana Lima')
        const cookie = await sessionCookie(ana.context)
        assert.ok(cookie, 'a session cookie')
        assert.equal(cookie.httpOnly, true)
        assert.equal(cookie.sameSite, 'Lax')
        assert.equal(cookie.secure, false, 'Secure only when the public URL is https')
        assert.match(cookie.value, /^[0-9a-f]{64}$/)

        // She creates the review with links that need sign-in: she joins through hers with the
        // provider's name, whatever she typed. Then she replaces the participant link (again
        // with one that needs sign-in).
        await ana.page.fill('#title', 'Queue outage')
        await ana.page.fill('#name', 'Ana')
        await ana.page.check('#sign-in-links')
        await ana.page.getByRole('button', { name: 'Create review' }).click()
        await ana.page.locator('#invite-author').waitFor()
        assert.equal(await ana.page.locator('.invite .needs-sign-in').count(), 4)
        await ana.page.getByRole('link', { name: 'Open the review' }).click()
        await ana.page.locator('.review-head h1').waitFor()
        const reviewId = new URL(ana.page.url()).pathname.split('/')[2]
        await ana.page.locator('details.links summary').click()
        await ana.page.locator('[data-rotate-sign-in="participant"]').click()
        const newLink = ana.page.locator('input[aria-label="new participant invite link"]')
        await newLink.waitFor()
        const invite = await newLink.inputValue()
        await waitText(ana.page, 'details.links', '(needs sign-in)')

        // Bo, in his own browser, must sign in before joining, and joins with the provider's name.
        const bo = await person(browser)
        const requested = []
        bo.page.on('request', (r) => requested.push(r.url()))
        await bo.page.goto(invite)
        await waitText(bo.page, '.join-needs-sign-in', 'This link needs you to sign in first.')
        assert.equal(await bo.page.locator('#name').isHidden(), true, 'no name to type')
        await bo.page.locator('.join-needs-sign-in .signin-link').click()
        await providerLogin(bo.page, 'bo')
        await bo.page.waitForURL(invite)
        await waitText(bo.page, '.join-signed-in', 'You join as Bo Berg, the name your sign-in gives.')
        await bo.page.getByRole('button', { name: 'Join as participant' }).click()
        await bo.page.locator('.review-head h1').waitFor()
        const joined = await bo.page.evaluate((id) => JSON.parse(localStorage.getItem('debrief.sessions'))[id], reviewId)
        assert.equal(joined.name, 'Bo Berg')
        assert.equal(joined.role, 'participant')
        // The invite's secret (after `#`) went to the provider and back without ever being in a
        // request's address, where proxies would log it.
        const secret = new URL(invite).hash.slice(1)
        assert.ok(secret.length > 20)
        const leaked = requested.filter((u) => u.includes(secret) || u.includes(encodeURIComponent(secret)))
        assert.deepEqual(leaked, [])
        assert.ok(requested.some((u) => u.startsWith(`${base}/auth/callback`)), 'Bo went through the provider')

        // A request signed in by the cookie without the page's CSRF token is refused.
        const refused = await fromPage(bo.page, 'POST', '/api/reviews', { title: 'Forged' }, { csrf: false })
        assert.equal(refused.status, 403)
        assert.deepEqual(refused.body, {
          code: 'csrf_token_invalid',
          message: 'this request is signed in by the sign-in cookie, so it must carry the page\'s CSRF token in the X-Debrief-CSRF header (GET /api/me gives it)'
        })

        // Each of them, in a fresh browser that holds no session, finds the review once signed in.
        for (const [user, role, name] of [['ana', 'facilitator', 'Ana Lima'], ['bo', 'participant', 'Bo Berg']]) {
          const fresh = await person(browser)
          await fresh.page.goto(`${base}/auth/login?return=/`)
          await providerLogin(fresh.page, user)
          await fresh.page.waitForURL(`${base}/`)
          await waitText(fresh.page, '.signin', `Signed in as ${USERS[user].claims.name}`)
          // The home page lists it, though this browser never joined it.
          const line = fresh.page.locator(`#home-list .home-review[data-review="${reviewId}"]`)
          await line.waitFor()
          assert.equal(await line.locator('.home-title').textContent(), 'Queue outage')
          assert.equal(await line.locator('.home-role').textContent(), `as ${role}, ${name}`)
          assert.equal(await fresh.page.locator('#home-list .home-review').count(), 1)
          const home = await fromPage(fresh.page, 'POST', '/api/home', { sessions: [] })
          assert.equal(home.status, 200, JSON.stringify(home.body))
          assert.deepEqual(home.body.reviews.map((r) => [r.id, r.title, r.you.role, r.you.name]), [[reviewId, 'Queue outage', role, name]])
          assert.deepEqual(fresh.errors, [])
          await fresh.context.close()
        }

        // The provider rotates its signing key (started again on its port with a new one): the
        // next sign-in works, the server reading the new key when the token's does not match.
        await provider.close()
        provider = await startProvider({ port: new URL(provider.issuer).port, redirectUri: `${base}/auth/callback` })

        // Signing in again gives a new session id; the old one no longer opens anything.
        const before = (await sessionCookie(ana.context)).value
        await ana.page.goto(`${base}/auth/login?return=/`)
        // The new provider holds no session of hers: she signs in at its form again.
        await providerLogin(ana.page, 'ana')
        await ana.page.waitForURL(`${base}/`)
        await waitText(ana.page, '.signin', 'Signed in as Ana Lima')
        const after = (await sessionCookie(ana.context)).value
        assert.notEqual(after, before, 'a new session id at sign-in')
        const stale = await fetch(`${base}/api/me`, { headers: { Cookie: `debrief_session=${before}` } })
        assert.equal(stale.status, 401)

        // Signing out ends the session on the server: the cookie's value says 401 afterwards.
        await ana.page.getByRole('button', { name: 'Sign out' }).click()
        await ana.page.waitForURL(`${base}/`)
        await waitText(ana.page, '.signin', 'Sign in')
        assert.equal(await sessionCookie(ana.context), undefined, 'the cookie is removed')
        const me = await fetch(`${base}/api/me`, { headers: { Cookie: `debrief_session=${after}` } })
        assert.equal(me.status, 401)
        assert.equal((await me.json()).code, 'not_signed_in')
        assert.deepEqual([...ana.errors, ...bo.errors], [])

        // Beginning sign-ins is limited per address (each holds a login in progress).
        let limited
        for (let i = 0; i < 40 && limited === undefined; i++) {
          const res = await fetch(`${base}/auth/login?return=/`, { redirect: 'manual' })
          if (res.status === 429) limited = await res.json()
          else assert.equal(res.status, 303)
        }
        assert.deepEqual(limited, { code: 'rate_limited', message: 'this address began 30 sign-ins in the last minute; try again shortly' })

        // Nothing of the people or their cookies in the server's log.
        const log = server.lines.join('\n')
        for (const secret of [before, after, 'Ana Lima', 'Bo Berg', 'ana@example.com', 'bo@example.com']) {
          assert.ok(!log.includes(secret), `the log holds ${secret}`)
        }
      } finally {
        await browser.close()
      }
    } finally {
      await provider.close()
    }
}))

// Behind an authenticating proxy (oauth2-proxy's headers): the browser's requests carry what the
// proxy would add, and the server trusts it from loopback. Ana is signed in without a sign-in
// page, creates a review whose links need sign-in; Bo joins with the proxy's name; a browser the
// proxy did not sign in is told to go through the company's sign-in and cannot create; Bo finds
// the review from another browser.
test('behind an authenticating proxy: signed in by its headers, create, join with the proxy\'s name, home from another browser', opts, scenario(async (h) => {
  const server = await h.startServer({
    args: [
      '--trusted-identity-header', 'X-Forwarded-User',
      '--trusted-name-header', 'X-Forwarded-Preferred-Username',
      '--trusted-email-header', 'X-Forwarded-Email',
      '--trusted-proxy', '127.0.0.1'
    ]
  })
  const base = `http://127.0.0.1:${server.port}`
  const through = (user, name) => ({ 'X-Forwarded-User': user, 'X-Forwarded-Preferred-Username': name, 'X-Forwarded-Email': `${user}@example.com` })
  const browser = await launch()
  try {
    const ana = await person(browser)
    await ana.context.setExtraHTTPHeaders(through('ana', 'Ana Lima'))
    await ana.page.goto(`${base}/`)
    await waitText(ana.page, '.signin', 'Signed in as Ana Lima')
    assert.equal(await ana.page.locator('.signin .signout').count(), 0, 'the proxy signs out, not Debrief')
    await ana.page.fill('#title', 'Disk full on the build farm')
    await ana.page.fill('#name', 'Whatever she types')
    await ana.page.check('#sign-in-links')
    await ana.page.getByRole('button', { name: 'Create review' }).click()
    const link = ana.page.locator('#invite-participant')
    await link.waitFor()
    const invite = await link.inputValue()
    await ana.page.getByRole('link', { name: 'Open the review' }).click()
    await ana.page.locator('.review-head h1').waitFor()
    const reviewId = new URL(ana.page.url()).pathname.split('/')[2]
    const fay = await ana.page.evaluate((id) => JSON.parse(localStorage.getItem('debrief.sessions'))[id], reviewId)
    assert.equal(fay.name, 'Ana Lima', 'the proxy\'s name, not the typed one')

    // A browser without the proxy's headers is not signed in: it is told how to sign in, and
    // cannot create a review.
    const outside = await person(browser)
    await outside.page.goto(invite)
    await waitText(outside.page, '.join-needs-sign-in', 'This link needs you to sign in first. Open this link through your company\'s sign-in.')
    assert.equal(await outside.page.locator('.join-needs-sign-in .signin-link').count(), 0)
    await outside.page.goto(`${base}/`)
    await outside.page.fill('#title', 'Forged')
    await outside.page.fill('#name', 'Eve')
    await outside.page.getByRole('button', { name: 'Create review' }).click()
    await waitText(outside.page, '.form-status', 'Creating a review on this server needs you to sign in: open Debrief through your company\'s sign-in.')

    // Bo joins through the link with the proxy's name.
    const bo = await person(browser)
    await bo.context.setExtraHTTPHeaders(through('bo', 'Bo Berg'))
    await bo.page.goto(invite)
    await waitText(bo.page, '.join-signed-in', 'You join as Bo Berg, the name your sign-in gives.')
    await bo.page.getByRole('button', { name: 'Join as participant' }).click()
    await bo.page.locator('.review-head h1').waitFor()

    // From another browser (no session of its own), Bo's home page lists the review.
    const again = await person(browser)
    await again.context.setExtraHTTPHeaders(through('bo', 'Bo Berg'))
    await again.page.goto(`${base}/`)
    const line = again.page.locator(`#home-list .home-review[data-review="${reviewId}"]`)
    await line.waitFor()
    assert.equal(await line.locator('.home-title').textContent(), 'Disk full on the build farm')
    assert.equal(await line.locator('.home-role').textContent(), 'as participant, Bo Berg')
    assert.deepEqual([...ana.errors, ...outside.errors, ...bo.errors, ...again.errors], [])
  } finally {
    await browser.close()
  }
}))
