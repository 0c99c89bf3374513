// Browser test of the action items page (issue 20): one browser joined two reviews; the page
// lists the items of both (and not of a review it did not join), overdue ones first and marked,
// filters them, moves a status in place and shows who moved it and when; the start page and the
// review header say how many actions are done. At 1280×720 and 390×844, nothing scrolls sideways.
//
//   cd tests/js && node --test browser-actions.test.mjs

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { launch, person, restReview, scenario, useReference, WAIT, waitText } from './harness.mjs'

const opts = { timeout: 120_000, skip: useReference && 'Debrief only' }

/** The page is no wider than the screen: nothing scrolls sideways. */
async function assertNoSideScroll (page, what) {
  const width = page.viewportSize().width
  const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth)
  assert.ok(scrollWidth <= width, `${what}: the page is ${scrollWidth} px wide at ${width} px`)
}

/** The `what` of each row, in order, once the table shows `n` rows. */
async function rows (page, n) {
  await page.waitForFunction((count) => document.querySelectorAll('.action-table.across tbody tr').length === count, n, { timeout: WAIT }).catch(async (e) => {
    throw new Error(`expected ${n} rows; the page shows: ${await page.locator('main').textContent()}`, { cause: e })
  })
  return page.locator('.action-table.across tbody tr .what-text').allTextContents()
}

test('the action items page: two reviews, filters, a status moved with who and when, overdue marked', opts, scenario(async (h) => {
  const server = await h.startServer({ args: ['--tracker-pattern', 'PROJ-[0-9]+=https://tracker.example/browse/{}'] })
  const base = `http://127.0.0.1:${server.port}`
  const checkout = await restReview(base, 'Checkout errors')
  const queue = await restReview(base, 'Queue backlog')
  const other = await restReview(base, 'Not joined here')
  const ana = await checkout.join('author', 'Ana')
  const anaInQueue = await queue.join('participant', 'Ana')
  for (const r of [checkout, queue, other]) await r.phase('review')
  const add = (r, body) => r.call('POST', `/api/reviews/${r.id}/actions`, body, r.fay.session)
  const late = await add(checkout, { what: 'Roll back on error budget burn', why: 'The deploy ran for an hour', kind: 'mitigate', owner: 'Payments', due: '2020-01-31', link: 'https://github.com/acme/checkout/issues/4' })
  await add(checkout, { what: 'Load test checkout', why: 'Nobody knew the limit', kind: 'prevent', owner: 'SRE', due: '2999-01-01' })
  const paging = await add(queue, { what: 'Page on queue depth, see PROJ-7', why: 'The backlog grew unnoticed', kind: 'detect', owner: 'Messaging' })
  await add(other, { what: 'Someone else\'s item', why: 'Not this browser\'s', kind: 'process', owner: 'Payments' })

  const browser = await launch()
  try {
    const a = await person(browser, { width: 1280, height: 720 })
    await a.page.goto(`${base}/`)
    await a.page.evaluate((ms) => localStorage.setItem('debrief.sessions', JSON.stringify(Object.fromEntries(ms.map((m) => [m.review, m])))), [ana.membership, anaInQueue.membership])
    // The start page links the page and says how many of each review's actions are done.
    await a.page.goto(`${base}/`)
    await waitText(a.page, `.action-count[data-review="${checkout.id}"]`, '0 of 2 actions done')
    await a.page.locator('#actions-link').click()
    await a.page.waitForURL(`${base}/actions`)

    // Items of both joined reviews, overdue first, then by due day; not the other review's.
    assert.deepEqual(await rows(a.page, 3), ['Roll back on error budget burn', 'Load test checkout', 'Page on queue depth, see PROJ-7'])
    const lateRow = a.page.locator(`tr[data-action="${late.id}"]`)
    assert.equal(await lateRow.getAttribute('class'), 'overdue')
    assert.match(await lateRow.locator('.owner').textContent(), /Overdue: due 2020-01-31/)
    const background = (sel) => a.page.locator(sel).evaluate((el) => getComputedStyle(el).backgroundColor)
    assert.notEqual(await background(`tr[data-action="${late.id}"]`), await background(`tr[data-action="${paging.id}"]`), 'the overdue row stands out')
    // The tracker's name, and an issue key turned into a link by the server's pattern.
    assert.equal(await lateRow.locator('a.tracker').textContent(), 'GitHub')
    assert.equal(await a.page.locator(`tr[data-action="${paging.id}"] a.reference`).getAttribute('href'), 'https://tracker.example/browse/PROJ-7')
    assert.match(await a.page.locator(`tr[data-action="${paging.id}"] .from-review`).textContent(), /Queue backlog/)
    await waitText(a.page, '#actions-summary', '3 action items, 1 overdue')
    await waitText(a.page, '#actions-summary', 'Checkout errors: 0 of 2 actions done')
    await assertNoSideScroll(a.page, 'the action items page at 1280×720')

    // Filters: team, review, overdue, kind.
    await a.page.fill('#filter-team', 'payments')
    assert.deepEqual(await rows(a.page, 1), ['Roll back on error budget burn'])
    await a.page.fill('#filter-team', '')
    await rows(a.page, 3)
    await a.page.selectOption('#filter-review', queue.id)
    assert.deepEqual(await rows(a.page, 1), ['Page on queue depth, see PROJ-7'])
    await a.page.selectOption('#filter-review', '')
    await a.page.check('#filter-overdue')
    assert.deepEqual(await rows(a.page, 1), ['Roll back on error budget burn'])
    await a.page.uncheck('#filter-overdue')
    await a.page.selectOption('#filter-kind', 'prevent')
    assert.deepEqual(await rows(a.page, 1), ['Load test checkout'])
    await a.page.selectOption('#filter-kind', '')
    await rows(a.page, 3)

    // Moving a status in place: recorded with who and when, shown in the row.
    const before = Date.now()
    await a.page.selectOption(`select[data-action-status="${paging.id}"]`, 'in_progress')
    await waitText(a.page, `tr[data-action="${paging.id}"] ol.history`, 'In progress — Ana')
    const stamped = Date.parse(await a.page.locator(`tr[data-action="${paging.id}"] ol.history li:last-child time`).getAttribute('datetime'))
    assert.ok(stamped >= before - 5_000 && stamped <= Date.now() + 5_000, `moved at ${new Date(stamped).toISOString()}`)
    assert.equal(await a.page.locator(`tr[data-action="${paging.id}"] ol.history li:first-child`).textContent().then((t) => t.startsWith('Open — Fay')), true)
    // The server recorded it the same way.
    const listed = await queue.call('POST', '/api/actions/search', { sessions: [anaInQueue.session], review: queue.id })
    assert.deepEqual(listed.items[0].history.map((c) => [c.status, c.by]), [['open', 'Fay'], ['in_progress', 'Ana']])
    // Done: the overdue item no longer stands out.
    await a.page.selectOption(`select[data-action-status="${late.id}"]`, 'done')
    await waitText(a.page, `tr[data-action="${late.id}"] ol.history`, 'Done — Ana')
    assert.equal(await a.page.locator(`tr[data-action="${late.id}"]`).getAttribute('class'), '')

    // The review's header says how many are done, and links the page.
    await a.page.goto(`${base}/r/${checkout.id}`)
    await waitText(a.page, '#actions-count', '1 of 2 actions done')
    assert.equal(await a.page.locator('#actions-count').getAttribute('href'), '/actions')
    assert.deepEqual(a.errors, [])

    // On a phone: the same page, no sideways scroll, every row readable.
    const phone = await person(browser, { width: 390, height: 844 })
    await phone.page.goto(`${base}/`)
    await phone.page.evaluate((ms) => localStorage.setItem('debrief.sessions', JSON.stringify(Object.fromEntries(ms.map((m) => [m.review, m])))), [ana.membership, anaInQueue.membership])
    await phone.page.goto(`${base}/actions`)
    await rows(phone.page, 3)
    await assertNoSideScroll(phone.page, 'the action items page at 390×844')
    assert.deepEqual(phone.errors, [])
  } finally {
    await browser.close()
  }
}))
