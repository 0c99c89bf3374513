// Makes the README's screenshots of the browser app in headless Chromium against the real binary
// (not part of the test suite): the phase bar with what to do now, the meeting view at 1280×720,
// and a published review's page in the library. Run after building the binary:
//
//   cd tests/js && node screenshots.mjs
//
// The pictures land in docs/screenshots/.

import { mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { Harness, caretInSection, launch, openAs, person, restReview, selectText, waitStatus, waitText } from './harness.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const OUT = join(here, '..', '..', 'docs', 'screenshots')
const LAPTOP = { width: 1280, height: 720 }

async function main () {
  mkdirSync(OUT, { recursive: true })
  const h = new Harness('screenshots')
  const browser = await launch()
  try {
    const server = await h.startServer()
    const base = `http://127.0.0.1:${server.port}`
    const r = await restReview(base, 'Checkout errors after the 14:05 deploy', { severity: 'SEV2', incident_date: '2026-11-30' })
    const ana = await r.join('author', 'Ana')
    const pat = await r.join('participant', 'Pat')
    const a = await person(browser, LAPTOP)
    await openAs(a.page, base, ana.membership)
    await caretInSection(a.page, 'Summary')
    await a.page.keyboard.type('From 14:05 to 14:27 one checkout in five failed with a payment timeout.')
    await waitStatus(a.page, 'saved')
    await r.phase('review')

    const p = await person(browser, LAPTOP)
    await openAs(p.page, base, pat.membership)
    await selectText(p.page, 'one checkout in five failed')
    await p.page.locator('#comment-selection').click()
    await p.page.fill('#composer', 'Which payment provider timed out first?')
    await p.page.locator('form.composer').getByRole('button', { name: 'Comment' }).click()
    await waitText(p.page, '.thread', 'Which payment provider timed out first?')
    await p.page.locator('.review-info').screenshot({ path: join(OUT, 'phase-bar.png') })

    await r.phase('meeting')
    const f = await person(browser, LAPTOP)
    await openAs(f.page, base, r.fay.membership)
    await f.page.locator('#timer-start').click()
    await f.page.locator('[data-agenda^="Section:"]').first().click()
    await p.page.locator('#notes .prose[data-writable="true"]').waitFor()
    await p.page.locator('#notes .prose').click()
    await p.page.keyboard.type('Retries tripled the load on the provider within a minute. Decided: cap client retries.')
    await p.page.fill('#action-what', 'Cap client retries with jittered backoff')
    await p.page.fill('#action-why', 'Retries multiplied the load on the provider')
    await p.page.fill('#action-owner', 'Payments')
    await p.page.getByRole('button', { name: 'Add action item' }).click()
    await waitText(f.page, '.actions', 'Cap client retries with jittered backoff')
    await waitText(f.page, '#notes .prose', 'Decided: cap client retries.')
    await f.page.screenshot({ path: join(OUT, 'meeting.png') })

    // Closed and published with names replaced by roles: the library page.
    await r.phase('closed')
    await f.page.locator('#publish').click()
    await waitText(f.page, '#publish-preview .publication-body', 'one checkout in five')
    await f.page.locator('#confirm-publish').click()
    await waitText(f.page, '.notice', 'Published')
    await f.page.goto(`${base}/library/${r.id}`)
    await waitText(f.page, '.publication .title-block', 'Checkout errors')
    await f.page.screenshot({ path: join(OUT, 'library.png') })
    console.log(`screenshots written to ${OUT}`)
  } finally {
    await browser.close()
    for (const err of await h.cleanup()) console.error(err)
  }
}

await main()
