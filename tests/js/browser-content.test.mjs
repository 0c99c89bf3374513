// Browser tests of what a review says and publishes (issue 17): template guidance as
// placeholders, blameless hints, publishing, action items, and the cost of typing in a busy
// review. Same harness as browser.test.mjs: the real binary on port 0, headless Chromium.
//
//   cd tests/js && node --test browser-content.test.mjs

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { caretInSection, launch, openAs, person, restReview, scenario, useReference, waitStatus, waitText } from './harness.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const opts = { timeout: 120_000, skip: useReference && 'Debrief only' }
/** The report template's sections and their guidance, as the web app has them. */
const TEMPLATE = JSON.parse(readFileSync(join(here, '..', '..', 'web', 'src', 'template.json'), 'utf8'))

/** A GET of `path` as text, with a session. */
async function text (base, path, session) {
  const res = await fetch(`${base}${path}`, { headers: { Authorization: `Bearer ${session}` } })
  assert.equal(res.status, 200, `GET ${path}`)
  return res.text()
}

/** What the page shows as the guidance of the paragraph below the section heading `title`. */
const guidanceShown = (page, title) => page.evaluate((t) => {
  const heading = Array.from(document.querySelectorAll('.editor .prose h2')).find((h) => h.textContent === t)
  const p = heading?.nextElementSibling
  if (!p) return null
  const content = getComputedStyle(p, '::before').content
  return content === 'none' || content === 'normal' ? '' : JSON.parse(content)
}, title)

const count = (haystack, needle) => haystack.split(needle).length - 1

test('template guidance is a placeholder: shown in empty sections, never exported, versioned or published', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const r = await restReview(base, 'Guidance stays out')
  const ana = await r.join('author', 'Ana')
  const browser = await launch()
  try {
    const a = await person(browser)
    await openAs(a.page, base, ana.membership)
    // Every empty section shows its guidance, and none of it is text of the report.
    for (const { title, help } of TEMPLATE) {
      assert.equal(await guidanceShown(a.page, title), help, `${title} shows its guidance`)
    }
    const written = await a.page.locator('.editor .prose').textContent()
    for (const { help } of TEMPLATE) assert.ok(!written.includes(help), `"${help}" is not in the report's text`)

    // Writing in a section replaces its guidance; the other sections keep theirs.
    await caretInSection(a.page, 'Summary')
    await a.page.keyboard.type('Checkout failed for twelve minutes.')
    await waitStatus(a.page, 'saved')
    await waitText(a.page, '.editor .prose', 'Checkout failed for twelve minutes.')
    assert.equal(await guidanceShown(a.page, 'Summary'), '', 'a written section shows no guidance')
    assert.equal(await guidanceShown(a.page, 'Impact'), TEMPLATE[1].help)

    // Through every phase to closed, with one action item; then export, versions and library.
    await r.phase('review')
    await r.phase('meeting')
    await r.call('POST', `/api/reviews/${r.id}/actions`, { what: 'Alert on queue age', why: 'Seen late', kind: 'detect', owner: 'Payments' }, r.fay.session)
    await r.phase('closed')
    const exported = await text(base, `/api/reviews/${r.id}/export.md`, r.fay.session)
    const drafted = JSON.parse(await text(base, `/api/reviews/${r.id}/versions/review`, r.fay.session)).report
    await r.call('POST', `/api/reviews/${r.id}/publish`, { published: true }, r.fay.session)
    const published = (await r.call('GET', `/api/library/${r.id}`)).markdown
    for (const [what, md] of [['the export', exported], ['the version sent for review', drafted], ['the library', published]]) {
      assert.ok(md.includes('Checkout failed for twelve minutes.'), `${what} has what Ana wrote:\n${md}`)
      for (const { help } of TEMPLATE) assert.ok(!md.includes(help), `${what} has no guidance "${help}":\n${md}`)
    }
    // "Action items" is one section of the export, holding the tracked items.
    assert.equal(count(exported, '## Action items'), 1, exported)
    assert.match(exported, /## Action items\n\n\|What\|Why\|Kind\|Owner\|Link\|Due\|Status\|\n[^\n]*\n\|Alert on queue age\|Seen late\|detect\|Payments\|\|\|open\|/)
    assert.deepEqual(a.errors, [])
  } finally {
    await browser.close()
  }
}))
