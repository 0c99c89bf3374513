// Browser tests of what typing costs and where the comment highlights land while people type
// (issue 17). Same harness as browser.test.mjs: the real binary on port 0, headless Chromium.
//
//   cd tests/js && node --test browser-typing.test.mjs
//
// Figures, keystroke to remote render over 80 keystrokes each (debug server, headless Chromium,
// a 2-core machine that other agents kept at a load average of 7–10 the whole evening, so the
// absolute numbers are inflated; the two reviews are measured in turns, so noise falls on both):
//   run at load ~8:  empty review median 59.4 ms, p90 91.5 ms; 300 threads and 50 people
//                    present median 64.4 ms, p90 103.4 ms (+8% median)
//   run at load ~6:  empty review median 49.1 ms, p90 78.6 ms; 300 threads and 50 people
//                    present median 60.0 ms, p90 100.9 ms (+22% median; main-thread script per
//                    keystroke 24.4 / 22.3 ms for the writer / reader against 19.3 / 15.0 ms)
//   run at load ~8:  empty review median 43.1 ms, p90 78.5 ms; 300 threads and 50 people
//                    present median 61.3 ms, p90 106.4 ms (+42% median; script 26.7 / 23.2 ms
//                    against 20.9 / 16.3 ms). Under that load the 10% aim is not shown.
//   On a quieter machine (load 2–4, nothing else running), two runs one after the other:
//                    empty median 47.3 ms, p90 67.0 ms; busy median 46.6 ms, p90 73.6 ms (−1%);
//                    empty median 45.6 ms, p90 70.9 ms; busy median 48.1 ms, p90 81.6 ms (+5%).
//                    The median is within 10%; the p90 is 10–15% higher in the busy review.
// What still grows with the threads: resolving every anchor once per change (about 1 ms for 300
// here), ProseMirror drawing more highlighted pieces, and placing the cards after each pause
// (not the main part: with the cards placed 3 times instead of 20 the gap stayed).
// Before the change (same test with the counters added to the old code, load ~8): empty review
// median 77.6 ms, p90 153.4 ms; busy review median 206.0 ms, p90 504.9 ms.
// Before the change every keystroke read all 300 threads out of the discussion document (1,137
// times for 316 characters on the writer's page), resolved every anchor several times, redrew the
// list of people and laid out every card beside the text, on both pages. Timing is reported, not
// asserted; what is asserted is the work that must not happen on a keystroke (web/src/debug.ts).

import { test } from 'node:test'
import assert from 'node:assert/strict'

import * as Y from 'yjs'

import {
  WAIT, launch, openAs, person, restReview, scenario, selectText, typingLatencies, until, useReference, waitStatus, waitText
} from './harness.mjs'

const opts = { timeout: 120_000, skip: useReference && 'Debrief only' }

/** The value at quantile `q` (0–1) of numbers, nearest rank. */
const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

/** A person whose page keeps the app's work counters (web/src/debug.ts). */
async function counted (browser) {
  const p = await person(browser)
  await p.page.addInitScript(() => { window.__debriefCounts = {} })
  return p
}

/** The app's work counters (web/src/debug.ts), and Chromium's figures of the page's main thread (in seconds). */
async function counts (page) {
  page.__cdp ??= await page.context().newCDPSession(page).then(async (s) => { await s.send('Performance.enable'); return s })
  const { metrics } = await page.__cdp.send('Performance.getMetrics')
  const chromium = Object.fromEntries(metrics.filter((m) => ['TaskDuration', 'ScriptDuration', 'LayoutDuration', 'RecalcStyleDuration', 'LayoutCount'].includes(m.name)).map((m) => [m.name, m.value]))
  return { ...chromium, ...await page.evaluate(() => window.__debriefCounts) }
}

/** How much each counter grew from `before` to `after`. */
const grown = (before, after) => Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - (before[k] ?? 0)]))

test('typing costs no more in a review with 300 threads and 50 people present than in an empty one', { ...opts, timeout: 900_000 }, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  // The same report in both reviews: a Summary to type in, and a Timeline of 30 paragraphs of
  // ten words, on which the busy review has its threads (one a word).
  const words = Array.from({ length: 300 }, (_, i) => `w${String(i).padStart(3, '0')}`)
  const lines = Array.from({ length: 30 }, (_, l) => words.slice(l * 10, l * 10 + 10).join(' '))
  const report = `## Summary\n\nThe checkout failed.\n\n## Timeline\n\n${lines.join('\n\n')}\n\n## Impact\n\n`
  const review = async (title) => {
    const r = await restReview(base, title, { report_markdown: report })
    const ana = await r.join('author', 'Ana')
    await r.phase('review')
    return { r, ana }
  }
  const empty = await review('Empty')
  const busy = await review('Busy')

  // 300 threads on the busy review, through the API, anchored as the app anchors a selection:
  // Yjs relative positions in a copy of the report.
  const copy = h.hocusClient(h.hocusSocket(server), busy.r.documents.report, { token: busy.ana.session })
  await until('the busy report to sync', () => copy.provider.isSynced, [[copy.provider, 'synced']])
  const timeline = copy.doc.getXmlFragment('default').toArray()
    .filter((el) => el.nodeName === 'paragraph').slice(1).map((p) => p.get(0))
  const b64 = (bytes) => Buffer.from(bytes).toString('base64')
  for (let i = 0; i < 300; i++) {
    const text = timeline[Math.floor(i / 10)]
    const at = (i % 10) * 5
    assert.equal(text.toString().slice(at, at + 4), words[i])
    const anchor = {
      start: b64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(text, at))),
      end: b64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(text, at + 4))),
      quote: words[i]
    }
    await busy.r.call('POST', `/api/reviews/${busy.r.id}/threads`, { body: `Thread ${i} on ${words[i]}`, anchor }, busy.ana.session)
  }
  // 50 people present in the busy report: stock clients, each on its own socket with its own name
  // (half of them observers: one invite link takes at most 30 joins a minute).
  for (let i = 0; i < 50; i++) {
    const someone = await busy.r.join(i % 2 === 0 ? 'participant' : 'observer', `Person ${i}`)
    const c = h.hocusClient(h.hocusSocket(server), busy.r.documents.report, { token: someone.session })
    c.awareness.setLocalStateField('user', { name: `Person ${i}`, color: '#30bced' })
    await until(`Person ${i} to be present`, () => c.provider.isSynced, [[c.provider, 'synced']])
  }

  const browser = await launch()
  try {
    const pages = {}
    for (const [name, { r, ana }] of Object.entries({ empty, busy })) {
      const writer = await counted(browser)
      const reader = await counted(browser)
      await openAs(writer.page, base, ana.membership)
      await openAs(reader.page, base, r.fay.membership)
      // The caret at the start of the Summary's text, so every highlight and card is below it.
      await writer.page.locator('.editor .prose h2', { hasText: 'Summary' }).click()
      await writer.page.keyboard.press('End')
      await writer.page.keyboard.press('ArrowRight')
      pages[name] = { writer, reader }
    }
    for (const { page } of [pages.busy.writer, pages.busy.reader]) {
      await page.waitForFunction(() => document.querySelectorAll('.anchored .thread').length === 300 &&
        document.querySelectorAll('.editor .anchor').length === 300 &&
        document.querySelectorAll('.presence li').length >= 51, null, { timeout: 60_000 })
    }

    // Rounds in turn, so that whatever else the machine does falls on both reviews alike.
    const figures = { empty: [], busy: [] }
    const work = {}
    for (const name of ['empty', 'busy']) await typingLatencies(pages[name].writer.page, pages[name].reader.page, 5)
    const ROUNDS = 8
    const PER_ROUND = 10
    for (let round = 0; round < ROUNDS; round++) {
      for (const name of ['empty', 'busy']) {
        const { writer, reader } = pages[name]
        const marks = await writer.page.evaluate(() => window.__marks)
        const before = await Promise.all([counts(writer.page), counts(reader.page)])
        figures[name].push(...await typingLatencies(writer.page, reader.page, PER_ROUND))
        const after = await Promise.all([counts(writer.page), counts(reader.page)])
        work[name] ??= { writer: [], reader: [] }
        work[name].writer.push(grown(before[0], after[0]))
        work[name].reader.push(grown(before[1], after[1]))
        // The characters typed: " k" and the mark's number, for each mark of the round.
        const now = await writer.page.evaluate(() => window.__marks)
        for (let m = marks + 1; m <= now; m++) pages[name].typed = (pages[name].typed ?? 0) + 2 + String(m).length
      }
    }
    const said = (name) => {
      const v = figures[name]
      return `median ${quantile(v, 0.5).toFixed(1)} ms, p90 ${quantile(v, 0.9).toFixed(1)} ms`
    }
    console.log(`# typing: keystroke to remote render over ${figures.empty.length} keystrokes each: empty review ${said('empty')}; 300 threads and 50 people present ${said('busy')}`)
    const totals = {}
    for (const name of ['empty', 'busy']) {
      for (const who of ['writer', 'reader']) {
        const sum = {}
        for (const w of work[name][who]) for (const [k, v] of Object.entries(w)) sum[k] = (sum[k] ?? 0) + v
        totals[`${name} ${who}`] = sum
        const per = (k) => ((sum[k] ?? 0) * 1000 / figures[name].length).toFixed(1)
        console.log(`# ${name} review, ${who}'s main thread per keystroke: script ${per('ScriptDuration')} ms, layout ${per('LayoutDuration')} ms, style ${per('RecalcStyleDuration')} ms`)
      }
    }
    // What the change guarantees, whatever the machine's speed: while someone types, neither page
    // reads the threads out of the discussion or redraws the list of people, and each anchor is
    // resolved at most once per change of the report (a typed character is one).
    const typed = pages.busy.typed
    for (const who of ['writer', 'reader']) {
      const sum = totals[`busy ${who}`]
      const changes = sum['report-changes'] ?? typed
      console.log(`# busy review, ${who}: ${typed} characters typed, ${changes} changes of the report; threads read ${sum['threads-read'] ?? 0} times, people redrawn ${sum['presence-drawn'] ?? 0} times, anchors resolved ${sum['anchors-resolved'] ?? 0} times, highlights made anew ${sum['highlights-made'] ?? 0} times, cards placed ${sum['cards-placed'] ?? 0} times`)
      assert.equal(sum['threads-read'] ?? 0, 0, `the ${who} read the threads while someone typed`)
      assert.equal(sum['presence-drawn'] ?? 0, 0, `the ${who} redrew the people present while someone typed`)
      assert.ok((sum['anchors-resolved'] ?? 0) <= 300 * changes, `the ${who} resolved anchors ${sum['anchors-resolved']} times for ${changes} changes of the report (300 threads)`)
    }
    for (const { writer, reader } of Object.values(pages)) assert.deepEqual([...writer.errors, ...reader.errors], [])
  } finally {
    await browser.close()
  }
}))

/**
 * What the anchor of thread `id` covers in the report, as Yjs resolves it in a stock client's
 * copy: the text between its two ends, across paragraphs joined without a separator (as the
 * pieces of a highlight read one after the other), or null when the anchor closed up.
 */
function anchoredText (report, discussion, id) {
  const { anchor } = discussion.getMap('threads').get(id).toJSON()
  const decode = (b64) => Y.createAbsolutePositionFromRelativePosition(Y.decodeRelativePosition(Buffer.from(b64, 'base64')), report)
  const start = decode(anchor.start)
  const end = decode(anchor.end)
  let text = ''
  const base = new Map()
  for (const block of report.getXmlFragment('default').toArray()) {
    for (const t of block.toArray()) {
      if (!(t instanceof Y.XmlText)) continue
      base.set(t, text.length)
      text += t.toString()
    }
  }
  const from = base.get(start.type) + start.index
  const to = base.get(end.type) + end.index
  return to > from ? text.slice(from, to) : null
}

/** What a page highlights for thread `id`: its pieces' text, in order (null: none). */
const highlighted = (page, id) => page.evaluate((t) => {
  const pieces = Array.from(document.querySelectorAll('.editor .prose .anchor')).filter((e) => e.getAttribute('data-thread') === t)
  const text = (e) => {
    const copy = e.cloneNode(true)
    for (const caret of copy.querySelectorAll('.collaboration-carets__caret')) caret.remove()
    return copy.textContent
  }
  return pieces.length === 0 ? null : pieces.map(text).join('')
}, id)

/** Waits until the report in `page` reads `text` somewhere, leaving out others' carets and their names. */
const showsText = (page, text) => page.waitForFunction((t) => {
  const copy = document.querySelector('.editor .prose')?.cloneNode(true)
  for (const caret of copy?.querySelectorAll('.collaboration-carets__caret') ?? []) caret.remove()
  return copy?.textContent.includes(t)
}, text, { timeout: WAIT })

/** Puts the caret of `page` right before (`at: 'start'`) or after (`at: 'end'`) `text` in the report. */
const caretAt = (page, text, at) => page.evaluate(([t, where]) => {
  const root = document.querySelector('.editor .prose')
  root.focus()
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT)
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const i = n.data.indexOf(t)
    if (i < 0) continue
    const range = document.createRange()
    range.setStart(n, where === 'start' ? i : i + t.length)
    range.collapse(true)
    const sel = window.getSelection()
    sel.removeAllRanges()
    sel.addRange(range)
    document.dispatchEvent(new Event('selectionchange'))
    return true
  }
  throw new Error(`text not found in the report: ${t}`)
}, [text, at])

test('text typed at either end of a highlight, or a paragraph split in it: the highlight covers what the anchor covers, before and after a reload', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const r = await restReview(base, 'Highlights keep to their anchors', { report_markdown: '## Summary\n\nAlpha beta gamma delta.\n\n## Impact\n\n' })
  const ana = await r.join('author', 'Ana')
  const pat = await r.join('participant', 'Pat')
  await r.phase('review')
  // Stock clients' copies of the report and the discussion: where Yjs says the anchor is.
  const socket = h.hocusSocket(server)
  const report = h.hocusClient(socket, r.documents.report, { token: pat.session })
  const discussion = h.hocusClient(socket, r.documents.discussion, { token: pat.session })
  for (const c of [report, discussion]) await until('a copy to sync', () => c.provider.isSynced, [[c.provider, 'synced']])

  const browser = await launch()
  try {
    const writer = await person(browser)
    const reader = await person(browser)
    await openAs(writer.page, base, ana.membership)
    await openAs(reader.page, base, pat.membership)

    // Pat comments on "beta gamma".
    await selectText(reader.page, 'beta gamma')
    await reader.page.waitForFunction(() => !document.querySelector('#comment-selection').disabled, null, { timeout: WAIT })
    await reader.page.locator('#comment-selection').click()
    await reader.page.fill('#composer', 'Which gamma?')
    await reader.page.locator('form.composer').getByRole('button', { name: 'Comment' }).click()
    await waitText(writer.page, '.editor .anchor', 'beta gamma')
    const id = await writer.page.locator('.editor .anchor').first().getAttribute('data-thread')
    await until('the thread in the copy', () => discussion.doc.getMap('threads').get(id)?.get('anchor'), [[discussion.doc, 'update']])

    /** Both pages highlight exactly what the anchor covers once the report holds `written`. */
    const agree = async (written, expected) => {
      await until(`the copy to hold "${written}"`, () => report.doc.getXmlFragment('default').toString().includes(written), [[report.doc, 'update']])
      const truth = anchoredText(report.doc, discussion.doc, id)
      assert.equal(truth, expected)
      for (const p of [writer, reader]) {
        await showsText(p.page, written)
        assert.equal(await highlighted(p.page, id), truth)
      }
    }

    // Text typed right after the highlight stays out of it (the end keeps to the character on
    // its left); text typed right before it joins it (so does the start).
    await caretAt(writer.page, 'beta gamma', 'end')
    await writer.page.keyboard.type('X')
    await agree('Alpha beta gammaX delta.', 'beta gamma')
    await caretAt(writer.page, 'beta gamma', 'start')
    await writer.page.keyboard.type('Y')
    await agree('Alpha Ybeta gammaX delta.', 'Ybeta gamma')
    // The reader's own edits move nothing: Pat may not write the report.
    await waitStatus(writer.page, 'saved')

    // A reload on both sides draws the same highlight, resolved afresh from the anchor.
    for (const p of [writer, reader]) {
      await p.page.reload()
      await waitText(p.page, '.editor .anchor', 'Ybeta gamma')
      assert.equal(await highlighted(p.page, id), 'Ybeta gamma')
    }

    // A paragraph split inside the highlight: ProseMirror would carry the highlight into the new
    // paragraph, Yjs decides where the anchor is (the split rewrites the paragraph's text).
    await caretAt(writer.page, 'Ybeta', 'end')
    await writer.page.keyboard.press('Enter')
    await until('the copy to hold the split', () => report.doc.getXmlFragment('default').toString().includes('<paragraph>Alpha Ybeta</paragraph><paragraph> gammaX delta.</paragraph>'), [[report.doc, 'update']])
    const split = anchoredText(report.doc, discussion.doc, id)
    // The split rewrote the rest of the paragraph as new text, so the anchor's end, which kept to
    // the "a" of "gamma", now keeps to where that text was taken out: the end of "Alpha Ybeta".
    assert.equal(split, 'Ybeta')
    /** Waits until `page` shows the split: "Alpha Ybeta" and " gammaX delta." as paragraphs one after the other. */
    const showsSplit = (page) => page.waitForFunction(() => {
      const texts = Array.from(document.querySelectorAll('.editor .prose p')).map((p) => {
        const copy = p.cloneNode(true)
        for (const caret of copy.querySelectorAll('.collaboration-carets__caret')) caret.remove()
        return copy.textContent
      })
      const i = texts.indexOf('Alpha Ybeta')
      return i >= 0 && texts[i + 1] === ' gammaX delta.'
    }, null, { timeout: WAIT })
    for (const p of [writer, reader]) {
      await showsSplit(p.page)
      assert.equal(await highlighted(p.page, id), split)
    }
    await waitStatus(writer.page, 'saved')
    for (const p of [writer, reader]) {
      await p.page.reload()
      await showsSplit(p.page)
      await waitText(p.page, '.thread', 'Which gamma?')
      assert.equal(await highlighted(p.page, id), split)
    }
    for (const p of [writer, reader]) assert.deepEqual(p.errors, [])
  } finally {
    await browser.close()
  }
}))
