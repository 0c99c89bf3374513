// Browser test of a review's webhooks (issue 20): the facilitator adds one in the review's Record,
// reads its signing secret once, sees the deliveries a real receiver got, and removes it. Other
// roles have no such section. (Retries and refusals are tested over the API, in
// tests/tests/integration/webhooks.rs.)
//
//   cd tests/js && node --test browser-webhooks.test.mjs

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import http from 'node:http'

import { launch, openAs, person, restReview, scenario, useReference, WAIT, waitText } from './harness.mjs'

const opts = { timeout: 120_000, skip: useReference && 'Debrief only' }

/** A receiver on loopback that answers 200 and keeps what it got. */
async function receiver () {
  const got = []
  const waiting = []
  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      got.push({ headers: req.headers, body })
      res.writeHead(200).end()
      waiting.splice(0).forEach((w) => w())
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const until = async (n) => {
    const deadline = Date.now() + WAIT
    while (got.length < n) {
      assert.ok(Date.now() < deadline, `the receiver got ${got.length} of ${n} deliveries`)
      await new Promise((resolve) => { waiting.push(resolve); setTimeout(resolve, 200) })
    }
    return got
  }
  return { url: `http://127.0.0.1:${server.address().port}/hook`, until, close: () => server.close() }
}

test('a facilitator adds a webhook, reads its secret once, sees its deliveries and removes it', opts, scenario(async (h) => {
  const server = await h.startServer({ args: ['--webhooks-allow-private'] })
  const base = `http://127.0.0.1:${server.port}`
  const review = await restReview(base, 'Webhook review')
  const ana = await review.join('author', 'Ana')
  const hook = await receiver()
  const browser = await launch()
  try {
    const fay = await person(browser, { width: 1280, height: 720 })
    await openAs(fay.page, base, review.fay.membership)
    await waitText(fay.page, '.webhooks', 'No webhook yet')
    // A bad address is explained in plain words.
    await fay.page.fill('#webhook-url', 'ftp://example.com/hook')
    await fay.page.locator('#webhook-url').evaluate((el) => { el.type = 'text' })
    await fay.page.click('#webhook-add')
    await waitText(fay.page, '.webhook-status', 'Give a web address starting with https://')

    await fay.page.fill('#webhook-url', hook.url)
    await fay.page.selectOption('#webhook-format', 'json')
    await fay.page.click('#webhook-add')
    const secret = await fay.page.locator('#webhook-secret').textContent({ timeout: WAIT })
    assert.match(secret, /^whsec_[0-9a-f]{64}$/)
    await waitText(fay.page, '.webhook-url', hook.url)

    // The phase moves: the receiver gets two events, signed with that secret.
    await review.phase('review')
    const got = await hook.until(2)
    for (const { headers, body } of got) {
      const [t, v1] = headers['x-debrief-signature'].split(',').map((p) => p.split('=')[1])
      assert.equal(createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex'), v1)
    }
    assert.deepEqual(got.map((g) => g.headers['x-debrief-event']), ['review.phase_changed', 'review.report_ready'])

    // The attempts, newest first, once the list is refreshed.
    await fay.page.waitForFunction(async () => {
      document.querySelector('#webhook-refresh')?.click()
      await new Promise((resolve) => setTimeout(resolve, 200))
      return document.querySelectorAll('.webhook-attempts tbody tr').length === 2
    }, null, { timeout: WAIT })
    const results = await fay.page.locator('.webhook-attempts tbody tr td:nth-child(3)').allTextContents()
    assert.deepEqual(results, ['Delivered (200)', 'Delivered (200)'])
    assert.match(await fay.page.locator('.webhook-attempts tbody tr').nth(1).textContent(), /review\.phase_changed/)
    // The secret is not in the list.
    assert.ok(!(await fay.page.locator('.webhook-list').textContent()).includes(secret))

    // Someone who is not the facilitator has no webhooks section.
    const author = await person(browser, { width: 1280, height: 720 })
    await openAs(author.page, base, ana.membership)
    await author.page.locator('#record-h').waitFor()
    assert.equal(await author.page.locator('.webhooks').count(), 0)

    await fay.page.click('.webhook-remove')
    await waitText(fay.page, '.webhooks', 'No webhook yet')
  } finally {
    hook.close()
    await browser.close()
  }
}))
