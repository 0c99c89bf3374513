// Browser tests of what a review says and publishes (issue 17): template guidance as
// placeholders, blameless hints, publishing with names replaced by roles and the library page,
// and action items (typing cost: browser-typing.test.mjs). Same harness as browser.test.mjs: the real binary on port 0, headless Chromium.
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

test('action items are edited and their status moved from a table that fits the column', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const r = await restReview(base, 'Action items in the table')
  const pat = await r.join('participant', 'Pat')
  await r.join('author', 'Ana')
  await r.phase('review')
  await r.phase('meeting')
  const browser = await launch()
  try {
    const p = await person(browser, { width: 1280, height: 720 })
    const f = await person(browser, { width: 1280, height: 720 })
    await openAs(p.page, base, pat.membership)
    await openAs(f.page, base, r.fay.membership)

    // Pat adds an item with a long unbroken link; the table stays inside its column.
    await p.page.fill('#action-what', 'Alert when the payment queue is older than five minutes')
    await p.page.fill('#action-why', 'The backlog was noticed by customers first')
    await p.page.fill('#action-owner', 'Payments platform')
    await p.page.fill('#action-link', `https://tracker.example/browse/PAY-${'1'.repeat(80)}`)
    await p.page.getByRole('button', { name: 'Add action item' }).click()
    for (const page of [p.page, f.page]) {
      // Each page shows the item once the server's answer reached it (Pat's own page too).
      await waitText(page, '.action-table', 'Alert when the payment queue is older than five minutes')
      const fit = await page.evaluate(() => {
        const table = document.querySelector('.action-table')
        const column = table.closest('section') ?? table.parentElement
        const t = table.getBoundingClientRect()
        const c = column.getBoundingClientRect()
        return { table: [t.left, t.right], column: [c.left, c.right], scroll: table.parentElement.scrollWidth - table.parentElement.clientWidth }
      })
      assert.ok(fit.table[0] >= fit.column[0] - 1 && fit.table[1] <= fit.column[1] + 1, `the table is inside its column: ${JSON.stringify(fit)}`)
      assert.equal(fit.scroll, 0, 'nothing of the table is scrolled out of view')
    }

    // Status: open → in progress → done, moved by Pat and seen by Fay.
    const status = (page) => page.locator('.action-table select[data-action-status]').first()
    assert.equal(await status(p.page).inputValue(), 'open')
    for (const [value, label] of [['in_progress', 'In progress'], ['done', 'Done']]) {
      await status(p.page).selectOption(value)
      await f.page.waitForFunction((v) => document.querySelector('.action-table select[data-action-status]')?.value === v, value)
      assert.equal(await status(f.page).locator('option:checked').textContent(), label)
    }

    // Editing: Fay corrects the owner; the status stays where Pat moved it.
    await f.page.locator('.action-table [data-action-edit]').first().click()
    assert.equal(await f.page.locator('#action-owner').inputValue(), 'Payments platform')
    await f.page.fill('#action-owner', 'Payments on-call')
    await f.page.getByRole('button', { name: 'Save changes' }).click()
    await waitText(p.page, '.action-table', 'Payments on-call')
    assert.equal(await status(p.page).inputValue(), 'done')
    assert.equal(await p.page.locator('.action-table tbody tr').count(), 1, 'edited, not added')

    // A link the server refuses is told beside the form in plain words; nothing changes.
    await f.page.locator('.action-table [data-action-edit]').first().click()
    await f.page.fill('#action-link', 'ftp://files.example/runbook')
    await f.page.getByRole('button', { name: 'Save changes' }).click()
    await waitText(f.page, '.action-form .notice.error', 'Not saved: the tracking link must be a web address starting with http:// or https://.')
    const stored = await r.call('GET', `/api/reviews/${r.id}/export.json`, undefined, r.fay.session)
    assert.match(stored.actions[0].link, /^https:\/\/tracker\.example\//)
    assert.equal(stored.actions[0].owner, 'Payments on-call')
    assert.equal(stored.actions[0].status, 'done')
    assert.deepEqual([...p.errors, ...f.errors], [])
  } finally {
    await browser.close()
  }
}))

test('a blameless hint says its reason at the caret, and the facilitator reviews flagged sentences before closing and publishing', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const r = await restReview(base, 'Hints with teeth')
  const ana = await r.join('author', 'Ana')
  await r.join('participant', 'Pat')
  const browser = await launch()
  try {
    const a = await person(browser, { width: 1280, height: 720 })
    await openAs(a.page, base, ana.membership)
    await caretInSection(a.page, 'Summary')
    await a.page.keyboard.type('Dana should have checked the dashboard. It was human error on the night.')
    await waitStatus(a.page, 'saved')

    // By keyboard alone: the caret moves into "should have" and the reason is shown, in view.
    const panel = a.page.locator('.editor + .hint-panel, #report ~ .hint-panel').first()
    await a.page.keyboard.press('Home')
    for (let i = 0; i < 7; i++) await a.page.keyboard.press('ArrowRight')
    await waitText(a.page, '.hint-panel', 'Blameless hint: “should have”')
    assert.match(await panel.textContent(), /Describes a world that did not happen \(counterfactual\)\. Instead: what the person saw, knew and did/)
    const box = await panel.boundingBox()
    assert.ok(box && box.y >= 0 && box.y + box.height <= 720, `the reason is in view: ${JSON.stringify(box)}`)
    // Away from flagged words, it goes.
    await a.page.keyboard.press('End')
    await a.page.waitForFunction(() => document.querySelector('.hint-panel')?.hidden === true)

    // Before closing: the facilitator is shown both sentences, and dismisses one.
    await r.phase('review')
    await r.phase('meeting')
    const f = await person(browser, { width: 1280, height: 720 })
    await openAs(f.page, base, r.fay.membership)
    await waitText(f.page, '.editor .prose', 'human error')
    await f.page.locator('#move-phase').click()
    const flags = f.page.locator('dialog .flag-review li.flag')
    await waitText(f.page, 'dialog .flag-review', '2 sentences of the report may blame a person.')
    assert.deepEqual(await flags.locator('q').allTextContents(), ['Dana should have checked the dashboard.', 'It was human error on the night.'])
    await flags.first().getByRole('button', { name: 'Dismiss' }).click()
    await waitText(f.page, 'dialog .flag-review', 'One sentence of the report may blame a person.')
    await f.page.locator('dialog').getByRole('button', { name: 'Cancel' }).click()

    // The dismissal survives a reload; the facilitator closes the review.
    await f.page.reload()
    await waitText(f.page, '.editor .prose', 'human error')
    await f.page.locator('#move-phase').click()
    await waitText(f.page, 'dialog .flag-review', 'One sentence of the report may blame a person.')
    assert.deepEqual(await flags.locator('q').allTextContents(), ['It was human error on the night.'])
    await f.page.locator('#confirm-phase').click()
    await f.page.waitForFunction(() => document.querySelector('.phase')?.textContent === 'closed')

    // Before publishing: the sentence left is shown again, and publishing goes on only when asked.
    await f.page.locator('#publish').click()
    await waitText(f.page, 'dialog', 'Sentences that may blame a person')
    assert.deepEqual(await flags.locator('q').allTextContents(), ['It was human error on the night.'])
    await waitText(f.page, '#publish-preview', 'human error')
    await f.page.locator('#confirm-publish').click()
    await waitText(f.page, '.notice', 'Published')
    assert.match((await r.call('GET', `/api/library/${r.id}`)).markdown, /human error/)
    assert.deepEqual([...a.errors, ...f.errors], [])
  } finally {
    await browser.close()
  }
}))

test('publishing says what it publishes: names replaced by roles, a preview, and a formatted library page', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const title = 'Checkout outage'
  const r = await restReview(base, title, {
    severity: 'SEV-2',
    incident_date: '2026-11-02',
    report_markdown: `# ${title}\n\n## Summary\n\nPat Moreno restarted the primary; **Ana** paged the database team.\n\n## Timeline\n\n- 02:10 alert\n- 02:14 Pat joined\n`
  })
  const ana = await r.join('author', 'Ana Lopez')
  const pat = await r.join('participant', 'Pat Moreno')
  await r.phase('review')
  await r.call('POST', `/api/reviews/${r.id}/threads`, { body: 'Ana Lopez found the config drift first.' }, pat.session)
  await r.call('POST', `/api/reviews/${r.id}/threads`, { body: 'Thanks Pat.' }, ana.session)
  await r.phase('meeting')
  await r.call('POST', `/api/reviews/${r.id}/actions`, { what: 'Pair Pat with the database team', why: 'One person knew the failover', kind: 'process', owner: 'Ana' }, r.fay.session)
  await r.phase('closed')
  const names = /Pat|Moreno|Ana\b|Lopez|Fay/
  const browser = await launch()
  try {
    const f = await person(browser, { width: 1280, height: 720 })
    await openAs(f.page, base, r.fay.membership)
    await f.page.locator('#publish').click()
    const preview = f.page.locator('#publish-preview')
    // By default names are replaced, and the preview is the library's own view of it.
    assert.equal(await f.page.locator('#publish-roles').isChecked(), true)
    await waitText(f.page, '#publish-preview .publication-body', 'Participant restarted the primary')
    const shown = await preview.textContent()
    assert.doesNotMatch(shown, names, `no name in the preview:\n${shown}`)
    for (const part of ['Participant restarted the primary; Author paged the database team.', 'Participant: Author found the config drift first.', 'Author: Thanks Participant.', 'Pair Participant with the database team']) {
      assert.ok(shown.replace(/\s+/g, ' ').includes(part), `the preview says "${part}":\n${shown}`)
    }
    assert.equal(await preview.locator('.title-block h1').textContent(), title)
    assert.equal(await preview.locator('.publication-body h2', { hasText: 'Summary' }).count(), 1, 'sections are formatted headings')
    assert.equal(await preview.locator('.publication-body table td', { hasText: 'Pair Participant with the database team' }).count(), 1, 'action items are a table')
    // Keeping names shows them, in the same place; the preview follows the choice.
    await f.page.locator('#publish-roles').uncheck()
    await waitText(f.page, '#publish-preview .publication-body', 'Pat Moreno restarted the primary')
    await f.page.locator('#publish-roles').check()
    await waitText(f.page, '#publish-preview .publication-body', 'Participant restarted the primary')
    await f.page.locator('#confirm-publish').click()
    await waitText(f.page, '.notice', 'Published with names replaced by roles.')

    // The library page: a title block and the formatted review, without a name in it.
    await f.page.getByRole('link', { name: 'open it in the library' }).click()
    await f.page.waitForURL(`${base}/library/${r.id}`)
    await waitText(f.page, '.publication .title-block', title)
    const block = (await f.page.locator('.title-block dl').textContent()).replace(/\s+/g, ' ')
    for (const fact of ['Severity', 'SEV-2', 'Incident', '2026', 'Names', 'Replaced by roles']) assert.ok(block.includes(fact), `the title block says ${fact}: ${block}`)
    assert.equal(await f.page.locator('pre.markdown, textarea').count(), 0, 'no Markdown source on the page')
    assert.equal(await f.page.locator('.publication-body h2', { hasText: 'Timeline' }).count(), 1)
    assert.equal(await f.page.locator('.publication-body li', { hasText: '02:14 Participant joined' }).count(), 1)
    assert.equal(await f.page.locator('.publication-body h1').count(), 0, 'the title is said once, in the title block')
    const page = await f.page.locator('main').textContent()
    assert.doesNotMatch(page, names, `no name on the library page:\n${page}`)
    const box = await f.page.locator('.title-block').boundingBox()
    assert.ok(box && box.y >= 0 && box.y + box.height <= 720, `the title block is in view: ${JSON.stringify(box)}`)
    // What the API serves is the same text.
    const entry = await r.call('GET', `/api/library/${r.id}`)
    assert.equal(entry.names, 'roles')
    assert.doesNotMatch(entry.markdown, names, entry.markdown)
    assert.doesNotMatch(entry.html, names, entry.html)
    assert.deepEqual(f.errors, [])
  } finally {
    await browser.close()
  }
}))
