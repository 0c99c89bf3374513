// Browser test of learning across reviews (issue 20): an author and a facilitator tag the
// contributing factors of two reviews in the review page (from the server's list and a free tag),
// both are closed and published, the library lists each with its factors and action kinds, and
// the recurring-factors page counts each factor per month. Then the culture pulse of a closed
// review: one person answers in the page, four more over REST, and the page shows the aggregate
// once five answered, never before.
//
//   cd tests/js && node --test browser-learning.test.mjs

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { launch, openAs, person, restReview, scenario, useReference, WAIT, waitText } from './harness.mjs'

const opts = { timeout: 120_000, skip: useReference && 'Debrief only' }

/** Ticks `factors` in the review page's factor form (and types `free`), and saves. */
async function tag (page, factors, free = '') {
  await page.locator('#factors summary', { hasText: 'Tag factors' }).click()
  for (const f of factors) await page.locator('.factor-choice', { hasText: f }).locator('input').check()
  if (free) await page.locator('#factor-free').fill(free)
  await page.locator('#factors-save').click()
}

test('factors tagged in two reviews, published, counted per month; the pulse shown from five answers', opts, scenario(async (h) => {
  const server = await h.startServer({ args: ['--anonymous-cadence-secs', '1'] })
  const base = `http://127.0.0.1:${server.port}`
  const october = await restReview(base, 'Checkout errors', { incident_date: '2026-10-03', team: 'Payments' })
  const november = await restReview(base, 'Queue backlog', { incident_date: '2026-11-20' })
  const ana = await october.join('author', 'Ana')
  const people = []
  for (const name of ['Pia', 'Raj', 'Sol']) people.push(await october.join('participant', name))

  const browser = await launch()
  try {
    const a = await person(browser, { width: 1280, height: 720 })
    // The author tags October's review from the list and with a free tag.
    await openAs(a.page, base, ana.membership)
    await tag(a.page, ['alerting gap', 'capacity'], 'Night  Paging')
    await waitText(a.page, '#factors .factors-now', 'alerting gapcapacitynight paging')
    // A participant sees them and has no form.
    const p = await person(browser, { width: 1280, height: 720 })
    await openAs(p.page, base, people[0].membership)
    await waitText(p.page, '#factors .factors-now', 'alerting gapcapacitynight paging')
    assert.equal(await p.page.locator('#factors-save').count(), 0)
    // The facilitator tags November's.
    await openAs(a.page, base, november.fay.membership)
    await tag(a.page, ['alerting gap'])
    await waitText(a.page, '#factors .factors-now', 'alerting gap')
    // …and names its team; a name with a control character is refused in plain words.
    await a.page.locator('#factors summary', { hasText: 'Team' }).click()
    await a.page.locator('#team').fill('Pay\u0007ments')
    await a.page.locator('#team-save').click()
    await waitText(a.page, '.team-form .notice', 'A team name is 1 to 60 characters.')
    await a.page.locator('#team').fill('  Payments ')
    await a.page.locator('#team-save').click()
    await waitText(a.page, '#factors .team', 'Team: Payments')

    // Action items of each kind, then both closed and published.
    for (const r of [october, november]) await r.phase('review')
    const add = (r, what, kind) => r.call('POST', `/api/reviews/${r.id}/actions`, { what, why: 'it came back', kind, owner: 'SRE' }, r.fay.session)
    await add(october, 'Alert on error rate', 'detect')
    await add(october, 'Roll back automatically', 'mitigate')
    await add(november, 'Cap the queue', 'prevent')
    for (const r of [october, november]) {
      await r.phase('meeting')
      await r.phase('closed')
      await r.call('POST', `/api/reviews/${r.id}/publish`, { published: true }, r.fay.session)
    }

    // The library lists each with its factors and action kinds.
    await a.page.goto(`${base}/`)
    const entry = a.page.locator('#library-list li', { hasText: 'Checkout errors' })
    await entry.locator('.factor').first().waitFor({ timeout: WAIT })
    assert.deepEqual(await entry.locator('.factor').allTextContents(), ['alerting gap', 'capacity', 'night paging'])
    assert.equal(await entry.locator('.kinds').textContent(), '1 detect · 1 mitigate')
    // Its page says the same in the title block.
    await entry.locator('a').click()
    await waitText(a.page, '.title-block .kinds', '1 detect · 1 mitigate')
    assert.deepEqual(await a.page.locator('.title-block .factor').allTextContents(), ['alerting gap', 'capacity', 'night paging'])

    // The recurring factors, per month: alerting gap came back.
    await a.page.goto(`${base}/`)
    await a.page.locator('#factors-link').click()
    await a.page.waitForURL(`${base}/library/factors`)
    await a.page.locator('#factor-trend').waitFor({ timeout: WAIT })
    assert.deepEqual(await a.page.locator('#factor-trend thead th').allTextContents(), ['Factor', 'Reviews', '2026-10', '2026-11'])
    const row = (f) => a.page.locator(`#factor-trend tr[data-factor="${f}"] td`).allTextContents()
    assert.deepEqual(await a.page.locator('#factor-trend tbody th').allTextContents(), ['alerting gap', 'capacity', 'night paging'])
    assert.deepEqual(await row('alerting gap'), ['2', '1', '1'])
    assert.deepEqual(await row('capacity'), ['1', '1', ''])

    // The pulse of the closed October review: Ana answers in the page…
    await openAs(a.page, base, ana.membership)
    await a.page.locator('#pulse-send').waitFor({ timeout: WAIT })
    await waitText(a.page, '#pulse-waiting', 'Fewer than 5 answers so far: nothing is shown yet.')
    for (let i = 0; i < 5; i++) await a.page.locator(`input[name="pulse-${i}"][value="${i + 3}"]`).check()
    await a.page.locator('#pulse-send').click()
    await waitText(a.page, '#pulse .notice', 'Thank you. Your answers count with the next release')
    // …three more over REST: four answers show nothing.
    const answer = (who, answers) => october.call('POST', `/api/reviews/${october.id}/pulse`, { answers }, who.session)
    for (const who of people) await answer(who, [7, 7, 7, 7, 7])
    const released = async (n) => {
      const deadline = Date.now() + WAIT
      for (;;) {
        const pulse = await october.call('GET', `/api/reviews/${october.id}/pulse`, undefined, october.fay.session)
        if ((pulse.results?.answers ?? 0) === n) return
        if (Date.now() > deadline) throw new Error(`the pulse never showed ${n} answers: ${JSON.stringify(pulse)}`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    await p.page.reload()
    await waitText(p.page, '#pulse-answered', 'You answered this pulse.')
    await waitText(p.page, '#pulse-waiting', 'Fewer than 5 answers so far')
    // The fifth, the facilitator's: the page shows the aggregate.
    await answer(october.fay, [1, 1, 1, 1, 1])
    await released(5)
    await p.page.reload()
    await waitText(p.page, '#pulse .pulse-results caption', '5 people answered')
    const means = await p.page.locator('#pulse .pulse-results').first().locator('td.mean').allTextContents()
    assert.deepEqual(means, ['5.00', '5.20', '5.40', '5.60', '5.80'])
    // October's team has a trend of one month.
    await waitText(p.page, '#pulse h3', 'Trend of Payments')
  } finally {
    await browser.close()
  }
}))
