// Browser test of the home page (issue 19): one browser joined two reviews with different roles
// and holds a session that was revoked since. The start page lists both reviews, last changed
// first, each with the role, the report unread, the action items owned by the person's team and
// how many are done; the search narrows the list; "Reviews you facilitate" shows only the one
// run here; the revoked session is forgotten. Reading the report takes it off the list of what
// waits. A first visit sees the form to start a post-mortem first; someone with reviews finds it
// behind a button. At 1280×720 and 390×844, nothing scrolls sideways.
//
//   cd tests/js && node --test browser-home.test.mjs

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { launch, person, restReview, scenario, useReference, WAIT } from './harness.mjs'

const opts = { timeout: 120_000, skip: useReference && 'Debrief only' }

async function assertNoSideScroll (page, what) {
  const width = page.viewportSize().width
  const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth)
  assert.ok(scrollWidth <= width, `${what}: the page is ${scrollWidth} px wide at ${width} px`)
}

/** The titles `list` shows, once it shows exactly `titles` (in that order). */
async function listed (page, list, titles) {
  await page.waitForFunction(([l, want]) => {
    const got = Array.from(document.querySelectorAll(`${l} .home-review .home-title`)).map((a) => a.textContent)
    return JSON.stringify(got) === JSON.stringify(want)
  }, [list, titles], { timeout: WAIT }).catch(async (e) => {
    throw new Error(`expected ${JSON.stringify(titles)} in ${list}; the page shows: ${await page.locator('main').textContent()}`, { cause: e })
  })
}

/** The lines of what waits for the person in `review`'s entry of "Your reviews". */
const waiting = (page, review) => page.locator(`#home-list .home-review[data-review="${review}"] .waiting li`).allTextContents()

const remember = (page, memberships) => page.evaluate((ms) => localStorage.setItem('debrief.sessions', JSON.stringify(Object.fromEntries(ms.map((m) => [m.review, m])))), memberships)

test('the home page: two reviews with different roles, what waits, search, the facilitator list, a revoked session forgotten', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  // Created first, so listed last: this browser runs it (as Fay).
  const queue = await restReview(base, 'Queue backlog')
  const gone = await restReview(base, 'Replaced link')
  const checkout = await restReview(base, 'Checkout errors', { team: 'Payments', severity: 'SEV2' })
  const ana = await checkout.join('author', 'Ana')
  const revoked = await gone.join('participant', 'Ana')
  await gone.call('POST', `/api/reviews/${gone.id}/invites/participant`, { revoke_sessions: true }, gone.fay.session)
  await checkout.phase('review')
  const add = (body) => checkout.call('POST', `/api/reviews/${checkout.id}/actions`, { why: 'It broke', kind: 'detect', ...body }, checkout.fay.session)
  await add({ what: 'Alert on checkout errors', owner: 'payments' })
  await add({ what: 'Load test checkout', owner: 'SRE' })

  const browser = await launch()
  try {
    // A first visit: the form to start a post-mortem comes first, nothing else to list.
    const first = await person(browser, { width: 1280, height: 720 })
    await first.page.goto(`${base}/`)
    assert.equal(await first.page.locator('#title').isVisible(), true)
    assert.equal(await first.page.locator('#home-mine').count(), 0)
    assert.equal(await first.page.locator('#start-new').count(), 0)

    const a = await person(browser, { width: 1280, height: 720 })
    await a.page.goto(`${base}/`)
    await remember(a.page, [ana.membership, queue.fay.membership, revoked.membership])
    await a.page.goto(`${base}/`)

    // Both reviews, last changed first; the revoked one is dropped and forgotten.
    await listed(a.page, '#home-list', ['Checkout errors', 'Queue backlog'])
    await a.page.locator('#home-status', { hasText: 'forgotten' }).waitFor({ timeout: WAIT })
    const kept = await a.page.evaluate(() => Object.keys(JSON.parse(localStorage.getItem('debrief.sessions'))).sort())
    assert.deepEqual(kept, [checkout.id, queue.id].sort())

    const entry = (r) => a.page.locator(`#home-list .home-review[data-review="${r.id}"]`)
    assert.equal(await entry(checkout).locator('.phase').textContent(), 'review')
    assert.match(await entry(checkout).locator('.home-meta').textContent(), /as author, Ana · SEV2 · 0 of 2 actions done · changed \d{4}-\d{2}-\d{2}/)
    assert.deepEqual(await waiting(a.page, checkout.id), ['The report waits for you to read it', '1 open action item for you or your team'])
    assert.equal(await entry(queue).locator('.phase').textContent(), 'draft')
    assert.match(await entry(queue).locator('.home-meta').textContent(), /as facilitator, Fay/)
    assert.deepEqual(await waiting(a.page, queue.id), ['Waiting on you: send the report for review'])
    assert.equal(await entry(checkout).locator('a.home-title').getAttribute('href'), `/r/${checkout.id}`)

    // The facilitator's list: only the review run from this browser.
    await listed(a.page, '#facilitating-list', ['Queue backlog'])
    assert.equal(await a.page.locator('#facilitating-list .next-step').textContent(), 'Next: send the report for review')

    // The search narrows both lists by title.
    await a.page.fill('#home-q', 'CHECKOUT')
    await listed(a.page, '#home-list', ['Checkout errors'])
    assert.equal(await a.page.locator('#home-facilitating').isHidden(), true)
    await a.page.fill('#home-q', 'no such review')
    await a.page.locator('#home-list li', { hasText: 'None of your reviews matches.' }).waitFor({ timeout: WAIT })
    await a.page.fill('#home-q', '')
    await listed(a.page, '#home-list', ['Checkout errors', 'Queue backlog'])
    await assertNoSideScroll(a.page, 'the home page at 1280×720')

    // Starting a post-mortem is one click away for someone who has reviews.
    assert.equal(await a.page.locator('#title').isVisible(), false)
    await a.page.locator('#start-new').click()
    assert.equal(await a.page.locator('#title').isVisible(), true)
    assert.equal(await a.page.evaluate(() => document.activeElement?.id), 'title')

    // Once Ana has read the report, it no longer waits for her.
    await checkout.call('POST', `/api/reviews/${checkout.id}/read`, {}, ana.session)
    await a.page.goto(`${base}/`)
    await listed(a.page, '#home-list', ['Checkout errors', 'Queue backlog'])
    assert.deepEqual(await waiting(a.page, checkout.id), ['1 open action item for you or your team'])
    assert.deepEqual(a.errors, [])

    // On a phone: the same page, no sideways scroll.
    const phone = await person(browser, { width: 390, height: 844 })
    await phone.page.goto(`${base}/`)
    await remember(phone.page, [ana.membership, queue.fay.membership])
    await phone.page.goto(`${base}/`)
    await listed(phone.page, '#home-list', ['Checkout errors', 'Queue backlog'])
    await assertNoSideScroll(phone.page, 'the home page at 390×844')
    assert.deepEqual(phone.errors, [])
  } finally {
    await browser.close()
  }
}))
