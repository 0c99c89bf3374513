// End-to-end tests of the browser app in a real headless Chromium (Debian's `chromium`, driven by
// playwright-core) against the real binary on port 0 with a fresh data directory. Each person is a
// separate browser context (own storage, own socket). Every wait is on something a user would see,
// with a timeout; screenshots of the main screens land in tests/artifacts/.
//
//   cd tests/js && node --test browser.test.mjs
//
// It prints the figures the browser app is judged by (time to an editable report, keystroke to
// remote render), measured in this run.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'
import { dirname, join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { fileURLToPath } from 'node:url'
import * as Y from 'yjs'

import {
  WAIT, WRITTEN_REPORT, caretAfter, caretInSection, createReview, editable, joinAs, launch, movePhase, openAs, openCreateForm, person, restReview, scenario, selectText,
  status, until, useReference, waitEditable, waitStatus, waitText
} from './harness.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const ARTIFACTS = join(here, '..', 'artifacts')
const opts = { timeout: 120_000, skip: useReference && 'Debrief only' }

mkdirSync(ARTIFACTS, { recursive: true })

const shot = (page, name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false })

test('write, read and comment on the report together', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const browser = await launch()
  try {
    const fay = await person(browser)
    const ana = await person(browser)
    const pat = await person(browser)

    // The facilitator creates the review and gets the four links.
    const links = await createReview(fay.page, base, 'Checkout errors after the 14:05 deploy')
    assert.match(links.author, /\/join#dbi_[0-9a-f]{64}$/)
    await shot(fay.page, 'invites')
    await fay.page.getByRole('link', { name: 'Open the review' }).click()
    // The facilitator only reads the draft: no saving state, the report itself.
    await waitText(fay.page, '.editor .prose h2', 'Summary')

    // The author joins and can write; the time to an editable report is measured from navigation.
    const started = Date.now()
    await joinAs(ana.page, links.author, 'Ana')
    await waitEditable(ana.page, 'true')
    const toEditable = Date.now() - started
    await waitText(ana.page, '.editor .prose h2', 'Summary')

    // The participant joins in draft: no report, a clear explanation.
    await joinAs(pat.page, links.participant, 'Pat')
    await waitText(pat.page, '.notice', 'The report is still a draft')
    assert.equal(await pat.page.locator('.editor .prose').count(), 0, 'the participant cannot see the draft')

    // The author types; the facilitator (read-only in draft) sees it live.
    await caretInSection(ana.page, 'Summary')
    await ana.page.keyboard.type('Checkout failed for twenty minutes.')
    await waitText(fay.page, '.editor .prose', 'Checkout failed for twenty minutes.')
    // Live carets: the facilitator sees the author's caret with her name.
    await waitText(fay.page, '.collaboration-carets__label', 'Ana')
    await waitStatus(ana.page, 'saved')
    assert.equal(await editable(fay.page), 'false', 'the facilitator reads the draft')
    await shot(ana.page, 'draft-author')

    // "Saved" means acknowledged: while the server cannot answer, the page says "saving".
    process.kill(server.child.pid, 'SIGSTOP')
    try {
      await ana.page.keyboard.type(' Held.')
      await waitStatus(ana.page, 'saving')
    } finally {
      process.kill(server.child.pid, 'SIGCONT')
    }
    await waitStatus(ana.page, 'saved')

    // Keystroke to remote render, as the facilitator sees it: measured inside the two pages on
    // the shared system clock (performance.timeOrigin + now), from the author's last input
    // event of a marker to the moment the marker is in the facilitator's DOM, so the figure
    // does not include the test driver's own round trips.
    const clock = () => performance.timeOrigin + performance.now()
    await ana.page.evaluate(`document.addEventListener('beforeinput', () => { window.__lastInput = (${clock})() }, true)`)
    await fay.page.evaluate(`window.__seen = {}; new MutationObserver(() => {
      const text = document.querySelector('.editor .prose')?.textContent ?? ''
      for (const m of text.match(/ k[0-9]+/g) ?? []) if (!(m in window.__seen)) window.__seen[m] = (${clock})()
    }).observe(document.querySelector('.editor .prose'), { subtree: true, childList: true, characterData: true })`)
    const latencies = []
    for (let i = 0; i < 20; i++) {
      const mark = ` k${i}`
      await ana.page.keyboard.type(mark)
      const typedAt = await ana.page.evaluate(() => window.__lastInput)
      await fay.page.waitForFunction((m) => m in window.__seen, mark, { timeout: WAIT })
      const seenAt = await fay.page.evaluate((m) => window.__seen[m], mark)
      latencies.push(Math.round(seenAt - typedAt))
    }
    latencies.sort((a, b) => a - b)
    const p95 = latencies[Math.ceil(latencies.length * 0.95) - 1]

    // Into review: the participant's page opens the report, read-only and explained.
    await movePhase(fay.page, 'review')
    await waitText(pat.page, '.editor .prose', 'Checkout failed for twenty minutes.')
    await waitEditable(pat.page, 'false')
    await waitText(pat.page, '.banner', 'Only authors edit the report')

    // Keyboard only: a reader can move into the report and select text to comment on, and
    // typing changes nothing.
    const untouched = await pat.page.locator('.editor .prose').textContent()
    await pat.page.locator('.editor .prose').focus()
    await pat.page.keyboard.press('Control+Home')
    await pat.page.keyboard.type('typed by a reader')
    for (let i = 0; i < 5; i++) await pat.page.keyboard.press('Shift+ArrowRight')
    await pat.page.waitForFunction(() => !document.querySelector('#comment-selection').disabled, null, { timeout: WAIT })
    assert.equal(await pat.page.locator('.editor .prose').textContent(), untouched, 'a reader cannot change the report')
    assert.equal(await pat.page.locator('.editor .prose').getAttribute('aria-readonly'), 'true')

    // The participant comments on a selection.
    await selectText(pat.page, 'Checkout failed')
    await pat.page.waitForFunction(() => !document.querySelector('#comment-selection').disabled, null, { timeout: WAIT })
    await pat.page.locator('#comment-selection').click()
    await pat.page.fill('#composer', 'Which service failed first?')
    await pat.page.locator('form.composer').getByRole('button', { name: 'Comment' }).click()
    await waitText(pat.page, '.thread', 'Which service failed first?')

    // The author sees the highlight and the thread, and replies.
    await waitText(ana.page, '.editor .anchor', 'Checkout failed')
    const thread = ana.page.locator('.thread', { hasText: 'Which service failed first?' })
    await thread.waitFor()
    await thread.getByRole('button', { name: 'Reply' }).click()
    await thread.getByRole('textbox', { name: 'Reply' }).fill('The payment gateway, at 14:07.')
    await thread.getByRole('button', { name: 'Reply' }).click()
    await waitText(pat.page, '.thread', 'The payment gateway, at 14:07.')
    await shot(pat.page, 'review-comments')

    // Clicking the highlighted text makes its thread the active one.
    await ana.page.locator('.editor .anchor').first().click()
    await ana.page.waitForFunction(() => document.querySelector('.thread.active')?.textContent.includes('Which service failed first?'), null, { timeout: WAIT })

    // A general comment, edited and then deleted by its author.
    await pat.page.locator('#general-comment').click()
    await pat.page.fill('#composer', 'The timeline needs times.')
    await pat.page.locator('form.composer').getByRole('button', { name: 'Comment' }).click()
    await waitText(ana.page, '.general .thread', 'The timeline needs times.')
    const general = pat.page.locator('.general .thread').first()
    await general.getByRole('button', { name: 'Edit' }).click()
    await general.getByRole('textbox', { name: 'Edit comment' }).fill('The timeline needs UTC times.')
    await general.getByRole('button', { name: 'Save' }).click()
    await waitText(ana.page, '.general .thread', 'The timeline needs UTC times.')
    await waitText(ana.page, '.general .thread', '(edited)')
    pat.page.once('dialog', (d) => { void d.accept() })
    await general.getByRole('button', { name: 'Delete' }).click()
    await waitText(ana.page, '.general .thread', 'Comment deleted')

    // The thread follows its text when the author edits above it (measured on the page, not in
    // the window: the browser may scroll to keep what Pat sees in place).
    const cardY = () => pat.page.evaluate(() => document.querySelector('.anchored > .thread').getBoundingClientRect().y + window.scrollY)
    const before = await cardY()
    await ana.page.locator('.editor .prose h2', { hasText: 'Summary' }).click()
    await ana.page.keyboard.press('End')
    await ana.page.keyboard.press('Enter')
    await ana.page.keyboard.type('A new first paragraph, written above the commented text.')
    await waitText(pat.page, '.editor .prose', 'A new first paragraph')
    await pat.page.waitForFunction((y) => {
      const card = document.querySelector('.anchored > .thread')
      return card && card.getBoundingClientRect().y + window.scrollY > y
    }, before, { timeout: WAIT })
    assert.equal(await pat.page.locator('.editor .anchor').first().textContent(), 'Checkout failed')

    // A reload keeps everything.
    await pat.page.reload()
    await waitText(pat.page, '.editor .prose', 'A new first paragraph')
    await waitText(pat.page, '.thread', 'The payment gateway, at 14:07.')
    assert.equal(await pat.page.locator('.editor .anchor').first().textContent(), 'Checkout failed')

    // A thread whose text is deleted stays, shown with its quote; resolving folds a thread away.
    await selectText(pat.page, 'twenty minutes')
    await pat.page.locator('#comment-selection').click()
    await pat.page.fill('#composer', 'How was the duration measured?')
    await pat.page.locator('form.composer').getByRole('button', { name: 'Comment' }).click()
    await waitText(ana.page, '.anchored .thread', 'How was the duration measured?')
    await selectText(ana.page, 'twenty minutes')
    await ana.page.keyboard.press('Backspace')
    await waitText(pat.page, '.orphaned .thread', 'How was the duration measured?')
    await waitText(pat.page, '.orphaned', 'On text that was deleted')
    await pat.page.locator('.orphaned .thread').getByRole('button', { name: 'Resolve' }).click()
    await waitText(ana.page, '.resolved summary', 'Resolved (1)')
    assert.equal(await ana.page.locator('.orphaned .thread').count(), 0)

    // Offline edits are kept and merge when the connection returns, ending in "saved".
    await ana.context.setOffline(true)
    await waitStatus(ana.page, 'offline')
    await caretAfter(ana.page, 'A new first paragraph')
    await ana.page.keyboard.type(' Typed while offline.')
    assert.equal(await status(ana.page), 'offline')
    await shot(ana.page, 'offline')
    await ana.context.setOffline(false)
    await waitText(pat.page, '.editor .prose', 'Typed while offline.')
    await waitStatus(ana.page, 'saved')

    // Closing makes everything read-only in open tabs.
    await movePhase(fay.page, 'meeting')
    await movePhase(fay.page, 'closed')
    await waitEditable(ana.page, 'false')
    await waitText(ana.page, '.banner', 'This review is closed')
    await pat.page.waitForFunction(() => document.querySelectorAll('form.reply:not([hidden])').length === 0, null, { timeout: WAIT })
    await shot(ana.page, 'closed')

    for (const p of [fay, ana, pat]) assert.deepEqual(p.errors, [], 'no uncaught errors in the page')
    console.log(`# browser figures: editable after ${toEditable} ms from navigation; keystroke to remote render p95 ${p95} ms (n=${latencies.length}, max ${latencies.at(-1)} ms)`)
  } finally {
    await browser.close()
  }
}))

test('bad links, unknown reviews and a server that is down get clear messages', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const browser = await launch()
  try {
    const fay = await person(browser)
    const links = await createReview(fay.page, base, 'Messages')
    const eve = await person(browser)

    // An invite that never existed, and one that was replaced.
    await eve.page.goto(`${base}/join#dbi_${'0'.repeat(64)}`)
    await eve.page.fill('#name', 'Eve')
    await eve.page.getByRole('button', { name: 'Join' }).click()
    await waitText(eve.page, '.notice.error', 'This invite link is not valid')
    assert.equal(await eve.page.inputValue('#name'), 'Eve', 'the name typed is kept')

    await fay.page.getByRole('link', { name: 'Open the review' }).click()
    await fay.page.locator('.links summary').click()
    await fay.page.locator('[data-rotate="participant"]').click()
    await fay.page.getByRole('textbox', { name: 'new participant invite link' }).waitFor()
    await eve.page.goto(links.participant)
    await eve.page.fill('#name', 'Eve')
    await eve.page.getByRole('button', { name: 'Join' }).click()
    await waitText(eve.page, '.notice.error', 'This invite link is not valid')

    // A review this browser never joined, and one that does not exist.
    await eve.page.goto(`${base}/r/00000000000000000000000000000000`)
    await waitText(eve.page, '.notice.error', 'You have not joined this review in this browser')
    await eve.page.evaluate(() => localStorage.setItem('debrief.sessions', JSON.stringify({
      '11111111111111111111111111111111': { review: '11111111111111111111111111111111', session: 'dbs_x', role: 'participant', participant: 'p', name: 'Eve', title: 'Gone', phase: 'review' }
    })))
    await eve.page.goto(`${base}/r/11111111111111111111111111111111`)
    await waitText(eve.page, '.notice.error', 'Your place in this review has ended')
    // A real session, but a review id that does not exist.
    const fayMembership = await fay.page.evaluate(() => Object.values(JSON.parse(localStorage.getItem('debrief.sessions')))[0])
    await eve.page.evaluate((m) => localStorage.setItem('debrief.sessions', JSON.stringify({
      '22222222222222222222222222222222': { ...m, review: '22222222222222222222222222222222' }
    })), fayMembership)
    await eve.page.goto(`${base}/r/22222222222222222222222222222222`)
    await waitText(eve.page, '.notice.error', 'This review does not exist')

    // The server goes away: creating a review says so and keeps what was typed.
    await eve.page.goto(`${base}/`)
    await openCreateForm(eve.page)
    await eve.page.fill('#title', 'Typed before the outage')
    await h.stopServer(server)
    await eve.page.fill('#name', 'Eve')
    await eve.page.getByRole('button', { name: 'Create review' }).click()
    await waitText(eve.page, '.notice.error', 'cannot be reached')
    assert.equal(await eve.page.inputValue('#title'), 'Typed before the outage')
    await shot(eve.page, 'server-down')
    assert.deepEqual(eve.errors, [])
  } finally {
    await browser.close()
  }
}))

test('a report the size of the automerge-paper trace opens editable', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const post = async (path, body, token) => {
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body)
    })
    assert.ok(res.ok, `${path}: ${res.status}`)
    return res.json()
  }
  const created = await post('/api/reviews', { title: 'A long report' })
  const joined = await post('/api/join', { invite: created.invites.author.token, name: 'Ana' })

  // The final text of the automerge-paper trace (about 105k characters), one paragraph per line,
  // written by a stock provider with the author's session.
  const trace = JSON.parse(gunzipSync(readFileSync(join(here, '..', '..', '..', 'shared', 'data', 'automerge-paper.json.gz'))))
  const lines = trace.endContent.split('\n').filter((l) => l.trim() !== '')
  const writer = h.hocusClient(h.hocusSocket(server), created.review.documents.report, { token: joined.session })
  await until('the writer to sync', () => writer.provider.synced, [[writer.provider, 'synced']])
  const fragment = writer.doc.getXmlFragment('default')
  writer.doc.transact(() => {
    fragment.insert(fragment.length, lines.map((line) => {
      const p = new Y.XmlElement('paragraph')
      p.insert(0, [new Y.XmlText(line)])
      return p
    }))
  })
  await until('the long report to be saved', () => !writer.provider.hasUnsyncedChanges, [[writer.provider, 'unsyncedChanges']], { ms: 30_000 })
  const last = lines.at(-1)

  const browser = await launch()
  try {
    const ana = await person(browser)
    await ana.page.goto(`${base}/`)
    await ana.page.evaluate((m) => localStorage.setItem('debrief.sessions', JSON.stringify({ [m.review]: m })), {
      review: created.review.id, session: joined.session, role: 'author', participant: joined.review.you.participant, name: 'Ana', title: 'A long report', phase: 'draft'
    })
    const started = Date.now()
    await ana.page.goto(`${base}/r/${created.review.id}`)
    await waitEditable(ana.page, 'true')
    await waitText(ana.page, '.editor .prose p:last-child', last)
    const toEditable = Date.now() - started
    const chars = await ana.page.evaluate(() => document.querySelector('.editor .prose').textContent.length)
    assert.ok(chars > 100_000, `the whole report is there (${chars} characters)`)
    // Typing into it still reaches the server.
    await ana.page.locator('.editor .prose p').last().click()
    await ana.page.keyboard.press('End')
    await ana.page.keyboard.type(' The end.')
    await waitStatus(ana.page, 'saved')
    await until('the edit to reach the writer', () => fragment.toString().includes('The end.'), [[writer.doc, 'update']])
    console.log(`# browser figures: a ${chars}-character report was editable ${toEditable} ms after navigation`)
    assert.deepEqual(ana.errors, [])
  } finally {
    await browser.close()
  }
}))

test('anonymous comments and concerns appear only with a batch, without an author or a caret', opts, scenario(async (h) => {
  const server = await h.startServer({ args: ['--anonymous-cadence-secs', '2'] })
  const base = `http://127.0.0.1:${server.port}`
  const browser = await launch()
  try {
    const fay = await person(browser)
    const ana = await person(browser)
    const pat = await person(browser)
    const quinn = await person(browser)
    const links = await createReview(fay.page, base, 'Anonymous voices')
    await fay.page.getByRole('link', { name: 'Open the review' }).click()
    await joinAs(ana.page, links.author, 'Ana')
    await waitEditable(ana.page, 'true')
    await caretInSection(ana.page, 'Summary')
    await ana.page.keyboard.type('Two or three sentences about the outage.')
    await waitStatus(ana.page, 'saved')

    // In draft only the author may comment: one possible poster, so the app says anonymous
    // posting is not open yet, and the server refuses it with words a person understands.
    await ana.page.locator('#general-comment').click()
    await ana.page.locator('form.composer .anonymous-toggle').check()
    await waitText(ana.page, 'form.composer .weak', 'Anonymous posting opens once at least 3 people who can comment have joined')
    await ana.page.fill('#composer', 'Too early to be anonymous')
    await ana.page.locator('form.composer').getByRole('button', { name: 'Comment anonymously' }).click()
    await waitText(ana.page, 'form.composer .notice.error', 'Not sent: anonymous posting opens once at least 3 people')
    await ana.page.locator('form.composer').getByRole('button', { name: 'Cancel' }).click()

    await joinAs(pat.page, links.participant, 'Pat')
    await joinAs(quinn.page, links.participant, 'Quinn')
    await movePhase(fay.page, 'review')
    await waitEditable(pat.page, 'false')
    await waitText(ana.page, '.presence', 'Pat')

    // Pat writes an anonymous comment on a selection. While the composer is open nobody sees
    // Pat's caret or selection, and the draft goes nowhere.
    await selectText(pat.page, 'Two or three sentences')
    await pat.page.locator('#comment-selection').click()
    await pat.page.locator('form.composer .anonymous-toggle').check()
    const draft = 'The deploy checklist is theatre and everyone knows it'
    await pat.page.fill('#composer', draft)
    await ana.page.waitForFunction(() => !Array.from(document.querySelectorAll('.collaboration-carets__label')).some((e) => e.textContent.includes('Pat')), null, { timeout: WAIT })
    const answered = pat.page.waitForResponse((r) => r.url().endsWith('/anonymous/threads'))
    await pat.page.locator('form.composer').getByRole('button', { name: 'Comment anonymously' }).click()
    const held = await (await answered).json()
    assert.equal(held.release, 'batch')
    assert.equal(held.release_after % 2000, 0)
    // A batch never holds one person's items alone: Quinn's general comment joins Pat's.
    await quinn.page.locator('#general-comment').click()
    await quinn.page.locator('form.composer .anonymous-toggle').check()
    await quinn.page.fill('#composer', 'Rollbacks are rehearsed by nobody')
    await quinn.page.locator('form.composer').getByRole('button', { name: 'Comment anonymously' }).click()
    // Held until its batch: whenever another tab shows it, its release time has come.
    const early = await ana.page.evaluate((d) => ({
      shown: Array.from(document.querySelectorAll('.thread')).some((t) => t.textContent.includes(d)),
      now: Date.now()
    }), draft)
    assert.ok(!early.shown || early.now >= held.release_after - 50, 'held until the batch')

    const card = ana.page.locator('.thread', { hasText: draft })
    await card.waitFor()
    const seenAt = Date.now()
    assert.ok(seenAt >= held.release_after - 50, `appeared ${held.release_after - seenAt} ms before its batch`)
    assert.match(await card.textContent(), /Anonymous/)
    assert.doesNotMatch(await card.textContent(), /Pat/)
    // The item looks the same on the author's screen as on anyone else's.
    const patCard = pat.page.locator('.thread', { hasText: draft })
    await patCard.waitFor()
    assert.doesNotMatch(await patCard.textContent(), /Pat|you/i)

    // A concern, supported by someone else; the board shows a count, never a name.
    await pat.page.locator('#raise-concern').click()
    await pat.page.fill('#concern-composer', 'We only hear about incidents from customers')
    await pat.page.getByRole('button', { name: 'Raise anonymously' }).click()
    await ana.page.locator('#raise-concern').click()
    await ana.page.fill('#concern-composer', 'Dashboards lag by ten minutes')
    await ana.page.getByRole('button', { name: 'Raise anonymously' }).click()
    const concern = quinn.page.locator('.concern', { hasText: 'We only hear about incidents from customers' })
    await concern.waitFor()
    assert.match(await concern.textContent(), /0 supporting/)
    await concern.getByRole('button', { name: 'Support' }).click()
    await fay.page.locator('.concern', { hasText: 'We only hear about incidents from customers' }).getByRole('button', { name: 'Support' }).click()
    await quinn.page.waitForFunction(() => Array.from(document.querySelectorAll('.concern')).some((c) => c.textContent.includes('from customers') && c.querySelector('.count')?.textContent === '2 supporting'), null, { timeout: WAIT })
    await concern.getByRole('button', { name: 'Support' }).click()
    await waitText(quinn.page, '.concern .notice.error', 'already support')

    // Pat's browser (and only it) can edit the item; the facilitator can hide it.
    await patCard.getByRole('button', { name: 'More actions for this anonymous item' }).click()
    await patCard.getByRole('textbox', { name: 'Edit anonymous item' }).fill('The deploy checklist is not followed')
    await patCard.getByRole('button', { name: 'Save anonymously' }).click()
    // Someone else's vote goes out in the same batch as Pat's edit.
    await quinn.page.locator('.concern', { hasText: 'Dashboards lag by ten minutes' }).getByRole('button', { name: 'Support' }).click()
    await waitText(ana.page, '.thread', 'The deploy checklist is not followed')
    const quinnCard = quinn.page.locator('.thread', { hasText: 'The deploy checklist is not followed' })
    await quinnCard.getByRole('button', { name: 'More actions for this anonymous item' }).click()
    await waitText(quinn.page, '.more-panel', 'Only the browser that wrote an anonymous item can change it')
    fay.page.once('dialog', (d) => { void d.accept() })
    const fayCard = fay.page.locator('.thread', { hasText: 'The deploy checklist is not followed' })
    await fayCard.getByRole('button', { name: 'More actions for this anonymous item' }).click()
    await fayCard.getByRole('button', { name: 'Hide for everyone' }).click()
    await waitText(quinn.page, '.thread', 'Hidden by the facilitator')
    await shot(quinn.page, 'anonymous')
    for (const p of [fay, ana, pat, quinn]) assert.deepEqual(p.errors, [])
  } finally {
    await browser.close()
  }
}))

test('a full review from creation to close, with four people', opts, scenario(async (h) => {
  const server = await h.startServer({ args: ['--anonymous-cadence-secs', '2'] })
  const base = `http://127.0.0.1:${server.port}`
  const browser = await launch()
  try {
    const fay = await person(browser)
    const ana = await person(browser)
    const pat = await person(browser)
    const quinn = await person(browser)
    const links = await createReview(fay.page, base, 'Payment provider timeouts')
    await fay.page.getByRole('link', { name: 'Open the review' }).click()
    await joinAs(ana.page, links.author, 'Ana')
    await joinAs(pat.page, links.participant, 'Pat')
    await joinAs(quinn.page, links.participant, 'Quinn')

    // Draft: the author writes.
    await waitEditable(ana.page, 'true')
    await caretInSection(ana.page, 'Summary')
    await ana.page.keyboard.type('Payments timed out for 40 minutes.')
    await waitStatus(ana.page, 'saved')

    // Review: named and anonymous comments, a concern with support, the read count.
    await movePhase(fay.page, 'review')
    await waitText(pat.page, '.editor .prose', 'Payments timed out for 40 minutes.')
    await selectText(pat.page, 'timed out')
    await pat.page.locator('#comment-selection').click()
    await pat.page.fill('#composer', 'Which timeout fired first?')
    await pat.page.locator('form.composer').getByRole('button', { name: 'Comment' }).click()
    await quinn.page.locator('#general-comment').click()
    await quinn.page.locator('form.composer .anonymous-toggle').check()
    await quinn.page.fill('#composer', 'The retry storm was predictable.')
    await quinn.page.locator('form.composer').getByRole('button', { name: 'Comment anonymously' }).click()
    await pat.page.locator('#raise-concern').click()
    await pat.page.fill('#concern-composer', 'Nobody owns the payment client')
    await pat.page.getByRole('button', { name: 'Raise anonymously' }).click()
    const concern = quinn.page.locator('.concern', { hasText: 'Nobody owns the payment client' })
    await concern.waitFor()
    await concern.getByRole('button', { name: 'Support' }).click()
    await waitText(ana.page, '.thread', 'The retry storm was predictable.')
    await pat.page.locator('#mark-read').click()
    await waitText(ana.page, '.read-count', '1 of 4 have read it')

    // Meeting: notes beside the report, the timebox, the agenda, action items, hints.
    await movePhase(fay.page, 'meeting')
    for (const p of [ana.page, pat.page]) await p.locator('#notes .prose[data-writable="true"]').waitFor()
    await ana.page.locator('#notes .prose').click()
    await ana.page.keyboard.type('Decided: cap retries at three. It was human error.')
    await waitText(pat.page, '#notes .prose', 'Decided: cap retries at three.')
    await waitText(ana.page, '#notes .hint-blame', 'human error')
    await fay.page.locator('.timer-controls .minutes').fill('30')
    await fay.page.locator('#timer-start').click()
    await waitText(quinn.page, '.timer', 'left')
    await fay.page.locator('#timer-pause').click()
    await waitText(pat.page, '.timer', '(paused)')
    await fay.page.locator('[data-agenda^="Concern: Nobody owns"]').click()
    await pat.page.waitForFunction(() => document.querySelector('.agenda li.here')?.textContent.includes('Nobody owns the payment client'), null, { timeout: WAIT })
    await pat.page.fill('#action-what', 'Be more careful with retries')
    await waitText(pat.page, '.nudge:not([hidden])', 'try harder')
    await pat.page.fill('#action-what', 'Cap client retries with jittered backoff')
    await pat.page.fill('#action-why', 'Retries multiplied the load on the provider')
    await pat.page.selectOption('#action-kind', 'prevent')
    await pat.page.fill('#action-owner', 'Payments')
    await pat.page.fill('#action-link', 'https://tracker.example/PAY-200')
    await pat.page.getByRole('button', { name: 'Add action item' }).click()
    await waitText(fay.page, '.action-table', 'Cap client retries with jittered backoff').catch(async (e) => {
      throw new Error(`${e}\npat's panel: ${await pat.page.locator('.meeting-panel').innerText()}\nfay's panel: ${await fay.page.locator('.meeting-panel').innerText()}`)
    })
    await shot(fay.page, 'meeting')

    // Close: everything read-only, the export downloaded and checked, a version diff, the library.
    await movePhase(fay.page, 'closed')
    await waitEditable(ana.page, 'false')
    await ana.page.waitForFunction(() => document.querySelector('#notes .prose')?.getAttribute('data-writable') === 'false', null, { timeout: WAIT })
    const [download] = await Promise.all([fay.page.waitForEvent('download'), fay.page.locator('#export-md').click()])
    const exported = readFileSync(await download.path(), 'utf8')
    for (const part of [
      'Payments timed out for 40 minutes.',
      '> timed out',
      '- **Pat**: Which timeout fired first?',
      '- **Anonymous**: The retry storm was predictable.',
      '- Nobody owns the payment client (1 supporting, discussed)'.replace(', discussed', ''),
      '|Cap client retries with jittered backoff|Retries multiplied the load on the provider|prevent|Payments|https://tracker.example/PAY-200||open|',
      '## Meeting notes',
      'Decided: cap retries at three.'
    ]) {
      assert.ok(exported.includes(part), `the export has ${JSON.stringify(part)}:\n${exported}`)
    }
    assert.doesNotMatch(exported, /Quinn/, 'the anonymous author is not in the export')
    await fay.page.locator('#show-versions').click()
    await fay.page.locator('[data-version="closed"]').click()
    await waitText(fay.page, 'pre.diff', 'Payments timed out for 40 minutes.')
    await fay.page.getByRole('button', { name: 'Close', exact: true }).click()
    await fay.page.locator('#publish').click()
    await waitText(fay.page, '#publish-preview', 'Payment provider timeouts')
    await fay.page.locator('#confirm-publish').click()
    await waitText(fay.page, '.notice', 'Published')
    await quinn.page.goto(`${base}/`)
    await quinn.page.fill('#library-q', 'retries')
    await waitText(quinn.page, '#library-list', 'Payment provider timeouts')
    for (const p of [fay, ana, pat, quinn]) assert.deepEqual(p.errors, [])
  } finally {
    await browser.close()
  }
}))

// ---------------------------------------------------------------------------
// Presence while writing anonymously (issue 15): what other clients receive. People who cannot
// edit a document publish their name but never a caret (`cursor`); writers' carets are live, and
// opening any comment composer withdraws them alike; no composer, named or anonymous, sends
// anything else.
// ---------------------------------------------------------------------------

/**
 * y-protocols renews an unchanged awareness state once it is 15 s old (checked every 3 s). A frame
 * that arrives sooner after its client's previous one was set by the page, not renewed; the 3 s
 * under 15 s are slack for delivery.
 */
const RENEWAL_GAP_MS = 12_000

/**
 * A bystander: a stock Hocuspocus provider with its own session on each of `docs`, recording
 * every awareness frame it receives — when it arrived, the document, the client id and the state
 * (null when the client left).
 */
async function presenceRecorder (h, server, docs, session) {
  const socket = h.hocusSocket(server)
  const frames = []
  const clients = docs.map((doc) => {
    const c = h.hocusClient(socket, doc, { token: session })
    c.awareness.on('update', ({ added, updated, removed }, origin) => {
      // Only what came over the socket: not its own renewals, nor states it timed out itself.
      if (origin !== c.provider) return
      const at = Date.now()
      for (const client of [...added, ...updated]) frames.push({ at, doc, client, state: structuredClone(c.awareness.getStates().get(client) ?? null) })
      for (const client of removed) frames.push({ at, doc, client, state: null })
    })
    return c
  })
  for (const c of clients) await until(`the bystander to sync ${c.provider.configuration.name}`, () => c.provider.synced, [[c.provider, 'synced']])
  const describe = () => 'every awareness frame received:\n' + frames.map(show).join('\n')
  /** Resolves with `check()` once it is truthy, re-checked on every frame. */
  const when = (what, check, ms = WAIT) => until(what, check, clients.map((c) => [c.awareness, 'update']), { ms, describe })
  return {
    frames,
    describe,
    when,
    /** The first frame from index `from` on that `fn` accepts, once it has arrived. */
    next: (what, fn, from = 0, ms = WAIT) => when(what, () => frames.slice(from).find(fn), ms),
    /** The clients that ever showed `name` in their state. */
    clientsOf: (name) => new Set(frames.filter((f) => f.state?.user?.name === name).map((f) => f.client))
  }
}

/** One frame, in a line: arrival time, document, client, state. */
const show = (f) => `${new Date(f.at).toISOString().slice(11, 23)} ${f.doc.split('.').at(-1)} ${f.client} ${JSON.stringify(f.state)}${'after' in f ? ` (${f.after} ms after the previous)` : ''}`

/**
 * The frames in `frames[from, to)` from the clients `mine` accepts that a page set rather than
 * renewed: a renewal repeats its client's previous state at least RENEWAL_GAP_MS after it.
 * Departures (null) are left out.
 */
function setFrames (frames, from, to, mine) {
  const last = new Map()
  const out = []
  frames.forEach((f, i) => {
    const key = `${f.doc} ${f.client}`
    const previous = last.get(key)
    last.set(key, f)
    if (i < from || i >= to || !mine(f) || f.state === null) return
    if (!previous || !isDeepStrictEqual(previous.state, f.state) || f.at - previous.at < RENEWAL_GAP_MS) {
      out.push({ ...f, after: previous ? f.at - previous.at : null, was: previous?.state })
    }
  })
  return out
}

const hasCursor = (f) => f.state !== null && typeof f.state === 'object' && 'cursor' in f.state

// Pat, a participant, reads the report in the review phase. A bystander records every awareness
// frame while Pat does nothing (the control: renewals of an unchanged state only), then while Pat
// selects, opens, ticks, types in and sends every anonymous composer, and a named comment on a
// selection: Pat's page may send nothing else, and never a cursor.
test('a reader publishes no caret, and writing anonymously sends others no presence at all (issue 15)', { ...opts, timeout: 180_000 }, scenario(async (h) => {
  const server = await h.startServer({ args: ['--anonymous-cadence-secs', '2'] })
  const base = `http://127.0.0.1:${server.port}`
  // Pat posts alone: the review allows anonymity in a small group, so nothing waits for others.
  const r = await restReview(base, 'Quiet presence', { small_group_anonymity: true, report_markdown: WRITTEN_REPORT })
  const pat = await r.join('participant', 'Pat')
  const bystander = await r.join('observer', 'Obi')
  await r.phase('review')
  // Something for Pat to reply to and to support, written by Fay.
  await r.call('POST', `/api/reviews/${r.id}/threads`, { body: 'Was the rollback automatic?' }, r.fay.session)
  await r.call('POST', `/api/reviews/${r.id}/concerns`, { body: 'Alerts go to a channel nobody reads' }, r.fay.session)
  const { report, discussion } = r.documents
  const recorder = await presenceRecorder(h, server, [report, discussion], bystander.session)
  const { frames } = recorder

  const browser = await launch()
  try {
    const p = await person(browser)
    const page = p.page
    // Pat is the only browser, so every client that appears from here on is one of Pat's.
    const opened = frames.length
    await openAs(page, base, pat.membership)
    await waitEditable(page, 'false')
    await recorder.next("Pat's name in the report's presence", (f) => f.doc === report && f.state?.user?.name === 'Pat', opened)
    // A client's first state has clock 0, which y-protocols peers ignore: Pat's discussion
    // client (which never sets a field) is first heard at its first renewal, 15-18 s in.
    await recorder.next("Pat's presence in the discussion", (f) => f.doc === discussion && f.state !== null, opened, 25_000)
    await waitText(page, '.presence', 'Pat')
    await waitText(page, '.concern', 'Alerts go to a channel nobody reads')
    const mine = (f) => frames.findIndex((g) => g.client === f.client) >= opened
    const patReport = [...recorder.clientsOf('Pat')]
    assert.equal(patReport.length, 1, 'one report client shows Pat')

    // Control: doing nothing, Pat's page only renews its unchanged presence.
    const idle = frames.length
    const renewal = await recorder.next("a renewal of Pat's presence in the report", (f) => f.client === patReport[0], idle, 25_000)
    assert.deepEqual(setFrames(frames, idle, frames.indexOf(renewal) + 1, mine).map(show), [], 'doing nothing sends only renewals')

    const work = frames.length
    const held = (path) => page.waitForResponse((res) => res.request().method() === 'POST' && new URL(res.url()).pathname.endsWith(path))
    const submitted = async (answer) => {
      const res = await answer
      assert.equal(res.status(), 202, `${res.url()}: ${res.status()}`)
      return res.json()
    }

    // An anonymous comment on a selection: select, open, tick, type, send.
    await selectText(page, 'Two or three sentences')
    await page.waitForFunction(() => !document.querySelector('#comment-selection').disabled, null, { timeout: WAIT })
    await page.locator('#comment-selection').click()
    await page.locator('form.composer .anonymous-toggle').check()
    // A reader's selection was never shown to anyone, so there is nothing to warn about.
    assert.equal(await page.locator('form.composer .selection-warning').count(), 0)
    await page.locator('#composer').pressSequentially('Nobody checked the canary dashboards')
    let answer = held('/anonymous/threads')
    await page.locator('form.composer').getByRole('button', { name: 'Comment anonymously' }).click()
    await submitted(answer)

    // A general anonymous comment, which is edited and then retracted below.
    await page.locator('#general-comment').click()
    await page.locator('form.composer .anonymous-toggle').check()
    await page.locator('#composer').pressSequentially('The on-call handbook is out of date')
    answer = held('/anonymous/threads')
    await page.locator('form.composer').getByRole('button', { name: 'Comment anonymously' }).click()
    await submitted(answer)

    // An anonymous reply to Fay's thread.
    const thread = page.locator('.thread', { hasText: 'Was the rollback automatic?' })
    await thread.getByRole('button', { name: 'Reply' }).click()
    await thread.locator('.anonymous-toggle').check()
    const replyBox = thread.getByRole('textbox', { name: 'Reply' })
    await replyBox.pressSequentially('It was not, ')
    // Another thread lands while Pat types (as a batch of anonymous items does): the reply being
    // typed keeps its focus and its text.
    await r.call('POST', `/api/reviews/${r.id}/threads`, { body: 'Who owns the runbook?' }, r.fay.session)
    await waitText(page, '.thread', 'Who owns the runbook?')
    assert.equal(await replyBox.evaluate((el) => el === document.activeElement), true, 'the reply being typed keeps its focus')
    await page.keyboard.type('and nobody knew that')
    assert.equal(await replyBox.inputValue(), 'It was not, and nobody knew that')
    answer = held('/comments')
    await thread.getByRole('button', { name: 'Reply anonymously' }).click()
    await submitted(answer)

    // A concern, and support for Fay's.
    await page.locator('#raise-concern').click()
    await page.locator('#concern-composer').pressSequentially('Deploys on Friday evenings')
    answer = held('/concerns')
    await page.getByRole('button', { name: 'Raise anonymously' }).click()
    await submitted(answer)
    answer = held('/support')
    await page.locator('.concern', { hasText: 'Alerts go to a channel nobody reads' }).getByRole('button', { name: 'Support' }).click()
    await submitted(answer)

    // Edit the general comment once its batch has brought it, then retract it once the edit is in.
    const own = page.locator('.general .thread', { hasText: 'The on-call handbook is out of date' })
    await own.getByRole('button', { name: 'More actions for this anonymous item' }).click()
    await own.getByRole('textbox', { name: 'Edit anonymous item' }).fill('The on-call handbook is two years out of date')
    answer = held('/edit')
    await own.getByRole('button', { name: 'Save anonymously' }).click()
    await submitted(answer)
    const edited = page.locator('.general .thread', { hasText: 'two years out of date' })
    await edited.getByRole('button', { name: 'More actions for this anonymous item' }).click()
    page.once('dialog', (d) => { void d.accept() })
    answer = held('/retract')
    await edited.getByRole('button', { name: 'Retract' }).click()
    await submitted(answer)

    // The named equivalent, for a reader: a comment on a selection.
    await selectText(page, 'Two or three sentences')
    await page.waitForFunction(() => !document.querySelector('#comment-selection').disabled, null, { timeout: WAIT })
    await page.locator('#comment-selection').click()
    await page.locator('#composer').pressSequentially('Which dashboard shows this?')
    await page.locator('form.composer').getByRole('button', { name: 'Comment' }).click()
    await waitText(page, '.thread', 'Which dashboard shows this?')
    assert.deepEqual(p.errors, [])

    // Everything Pat's page sent before closing has reached the bystander once the server
    // announces that Pat's clients left (it does so after their last frame).
    await p.context.close()
    for (const doc of [report, discussion]) {
      await recorder.next(`Pat's departure from ${doc}`, (f) => f.doc === doc && f.state === null && mine(f), work)
    }
    const left = frames.findLastIndex((f) => f.state === null && mine(f))
    const sent = setFrames(frames, work, left, mine).map(show)
    assert.deepEqual(sent, [], `Pat's page changed or re-sent its presence while writing:\n${recorder.describe()}`)
    assert.deepEqual(frames.filter((f) => mine(f) && hasCursor(f)).map(show), [], 'a reader never publishes a cursor')
  } finally {
    await browser.close()
  }
}))

// Ana, an author, writes the report: her selection is live for a bystander. Opening a named and
// an anonymous composer from a selection must withdraw it the same way and send nothing more; the
// anonymous one says, before posting, that the selection may have been seen, and offers a
// general comment instead. Phase changes move the caret rule with them.
test("a writer's selection is live, every composer withdraws it alike, and the anonymous one warns about it (issue 15)", { ...opts, timeout: 180_000 }, scenario(async (h) => {
  const server = await h.startServer({ args: ['--anonymous-cadence-secs', '2'] })
  const base = `http://127.0.0.1:${server.port}`
  const r = await restReview(base, 'Live selections', { report_markdown: WRITTEN_REPORT })
  const ana = await r.join('author', 'Ana')
  const bystander = await r.join('observer', 'Obi')
  await r.join('participant', 'Pat')
  await r.phase('review')
  const { report } = r.documents
  const recorder = await presenceRecorder(h, server, [report], bystander.session)
  const { frames } = recorder

  const browser = await launch()
  try {
    const a = await person(browser)
    const f = await person(browser)
    await openAs(a.page, base, ana.membership)
    await openAs(f.page, base, r.fay.membership)
    await waitEditable(a.page, 'true')
    await waitEditable(f.page, 'false')
    await recorder.next("Fay's name in the report's presence", (x) => x.state?.user?.name === 'Fay')
    const isAna = (x) => recorder.clientsOf('Ana').has(x.client)
    const cursorOf = (x) => x.state?.cursor

    // The facilitator reads in the review phase: selecting text publishes nothing.
    await selectText(f.page, 'Two or three sentences')

    /** Selects text as Ana, waits until the bystander sees it, opens the composer and waits until
     * the selection is withdrawn; returns the frame index where the composer was opened. */
    const openFromSelection = async (text) => {
      const from = frames.length
      await selectText(a.page, text)
      await a.page.waitForFunction(() => !document.querySelector('#comment-selection').disabled, null, { timeout: WAIT })
      // Focusing first publishes a caret; the selection (a range) comes after it.
      const range = (c) => c && !isDeepStrictEqual(c.anchor, c.head)
      await recorder.next(`Ana's selection of "${text}"`, (x) => isAna(x) && range(cursorOf(x)), from)
      const opened = frames.length
      await a.page.locator('#comment-selection').click()
      await a.page.locator('#composer').waitFor()
      await recorder.next("Ana's selection withdrawn", (x) => isAna(x) && x.state !== null && !cursorOf(x), opened)
      return opened
    }
    /** What Ana's page set from `opened` until her next selection (which follows everything before it). */
    const setSince = async (opened) => {
      const before = frames.length
      await selectText(a.page, 'Summary')
      const next = await recorder.next("Ana's next selection", (x) => isAna(x) && cursorOf(x), before)
      return setFrames(frames, opened, frames.indexOf(next), isAna).map((x) => x.state)
    }

    // Named: opening the composer withdraws the selection; typing and sending add nothing.
    let opened = await openFromSelection('Two or three sentences')
    assert.equal(await a.page.locator('form.composer .selection-warning').count(), 0)
    await a.page.locator('#composer').pressSequentially('Say which customers were affected.')
    await a.page.locator('form.composer').getByRole('button', { name: 'Comment' }).click()
    await waitText(a.page, '.thread', 'Say which customers were affected.')
    const named = await setSince(opened)

    // Anonymous: the same withdrawal and nothing more, and a plain warning before posting.
    opened = await openFromSelection('Two or three sentences')
    await a.page.locator('form.composer .anonymous-toggle').check()
    await waitText(a.page, 'form.composer .selection-warning', 'may have seen your selection')
    await a.page.locator('#composer').pressSequentially('The summary leaves out the retry storm.')
    // Its answer is held back until Ana has opened the next composer: a late answer must not
    // take that composer away (the held item is written to disk before it is answered).
    let answerNow
    const answerHeld = new Promise((resolve) => { answerNow = resolve })
    await a.page.route('**/anonymous/threads', async (route) => {
      const response = await route.fetch()
      await answerHeld
      await route.fulfill({ response })
    })
    let request = a.page.waitForRequest((q) => q.method() === 'POST' && q.url().endsWith('/anonymous/threads'))
    await a.page.locator('form.composer').getByRole('button', { name: 'Comment anonymously' }).click()
    assert.ok((await request).postDataJSON().anchor, 'posted on the selected text')
    const anonymous = await setSince(opened)
    assert.equal(named.length, 1, `one change when the composer opens:\n${recorder.describe()}`)
    assert.equal(named[0].cursor, null)
    assert.deepEqual(anonymous, named, 'the anonymous composer sends what the named one does')

    // Offered instead: the same text as a general anonymous comment, quoting nothing.
    await openFromSelection('Two or three sentences')
    const late = a.page.waitForResponse((res) => new URL(res.url()).pathname.endsWith('/anonymous/threads'))
    answerNow()
    assert.equal((await late).status(), 202)
    await a.page.unroute('**/anonymous/threads')
    await a.page.evaluate(() => new Promise((resolve) => { requestAnimationFrame(() => { resolve() }) }))
    assert.equal(await a.page.locator('#composer').count(), 1, 'the late answer left the new composer alone')
    await a.page.locator('form.composer .anonymous-toggle').check()
    await a.page.locator('form.composer').getByRole('button', { name: 'Post as a general comment instead' }).click()
    assert.equal(await a.page.locator('form.composer .quote').count(), 0)
    assert.equal(await a.page.locator('form.composer .selection-warning').count(), 0)
    await a.page.locator('#composer').fill('Retries were never load-tested.')
    request = a.page.waitForRequest((q) => q.method() === 'POST' && q.url().endsWith('/anonymous/threads'))
    await a.page.locator('form.composer').getByRole('button', { name: 'Comment anonymously' }).click()
    assert.equal((await request).postDataJSON().anchor, undefined, 'posted without an anchor')

    // Meeting: the facilitator now edits the report, and her selection is live.
    assert.deepEqual(frames.filter((x) => recorder.clientsOf('Fay').has(x.client) && hasCursor(x)).map(show), [], 'a reader never publishes a cursor')
    await r.phase('meeting')
    for (const page of [a.page, f.page]) await page.locator('#notes .prose').waitFor()
    await waitEditable(f.page, 'true')
    let from = frames.length
    await selectText(f.page, 'Two or three sentences')
    await recorder.next("Fay's selection in the meeting", (x) => recorder.clientsOf('Fay').has(x.client) && cursorOf(x), from)
    from = frames.length
    await waitEditable(a.page, 'true')
    await selectText(a.page, 'Summary')
    await recorder.next("Ana's selection in the meeting", (x) => isAna(x) && cursorOf(x), from)

    // Closed: nobody edits, and every caret leaves presence, not just empties.
    await r.phase('closed')
    const present = () => {
      const latest = new Map()
      for (const x of frames) latest.set(x.client, x.state)
      return [...latest.values()].filter((s) => s !== null && (s.user?.name === 'Ana' || s.user?.name === 'Fay'))
    }
    await recorder.when('every caret to leave presence once the review is closed', () => {
      const states = present()
      return states.length === 2 && states.every((s) => !('cursor' in s))
    })
    for (const x of [a, f]) assert.deepEqual(x.errors, [])
  } finally {
    await browser.close()
  }
}))
