// The browser app's layout, state and roles (issue 17): what each person sees where, at the
// sizes people use (a 1280×720 laptop, a 1920×1080 screen, a 390×844 phone), what the save
// indicator says, which controls each role is shown, and the meeting's presenter view. Real
// headless Chromium against the real binary, as in browser.test.mjs.
//
//   cd tests/js && node --test browser-layout.test.mjs

import { test } from 'node:test'
import assert from 'node:assert/strict'

import {
  WAIT, WRITTEN_REPORT, caretInSection, createReview, joinAs, launch, movePhase, openAs, person, restReview, scenario, selectText,
  useReference, waitEditable, waitStatus, waitText
} from './harness.mjs'

const opts = { timeout: 180_000, skip: useReference && 'Debrief only' }
const LAPTOP = { width: 1280, height: 720 }
const PHONE = { width: 390, height: 844 }

/** Where `selector`'s first element is, and whether all of its top edge is on screen. */
async function placement (page, selector) {
  return page.evaluate((s) => {
    const el = document.querySelector(s)
    if (!el) return { found: false }
    const r = el.getBoundingClientRect()
    const visible = r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== 'hidden'
    return {
      found: true,
      visible,
      top: Math.round(r.top),
      inView: visible && r.top >= 0 && r.top < innerHeight - 16 && r.left >= 0 && r.right <= innerWidth + 1
    }
  }, selector)
}

async function assertInView (page, selector, what) {
  const at = await placement(page, selector)
  const size = page.viewportSize()
  assert.ok(at.inView, `${what} (${selector}) is in view at ${size.width}×${size.height}: ${JSON.stringify(at)}`)
}

/** Whether an element matching `selector` is shown (present and laid out). */
const shown = (page, selector) => page.locator(selector).first().isVisible()

/** The page is no wider than the screen: nothing scrolls sideways. */
async function assertNoSideScroll (page, what) {
  const width = page.viewportSize().width
  const wide = await page.evaluate((w) => ({
    scrollWidth: document.documentElement.scrollWidth,
    culprits: Array.from(document.querySelectorAll('body *'))
      .filter((e) => e.getBoundingClientRect().right > w + 1 && getComputedStyle(e).position !== 'fixed')
      .slice(0, 5)
      .map((e) => `${e.tagName.toLowerCase()}.${[...e.classList].join('.')}#${e.id} right=${Math.round(e.getBoundingClientRect().right)}`)
  }), width)
  assert.ok(wide.scrollWidth <= width, `${what}: the page is ${wide.scrollWidth} px wide at ${width} px: ${wide.culprits.join(', ')}`)
}

/** Every text the save indicator showed, recorded in the page from its first paint. */
const recordStatus = (context) => context.addInitScript(() => {
  window.__statusTexts = []
  new MutationObserver(() => {
    const el = document.querySelector('.status')
    if (!el || el.hidden) return
    const text = el.textContent
    if (window.__statusTexts.at(-1) !== text) window.__statusTexts.push(text)
  }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true })
})

test('"Saved" covers the report and the notes, tells offline from unreachable, and readers see no saving state', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const r = await restReview(base, 'Saving honestly')
  const pat = await r.join('participant', 'Pat')
  await r.phase('review')
  const browser = await launch()
  try {
    const p = await person(browser, LAPTOP)
    await recordStatus(p.context)
    // A reader, who may change nothing, reconnects: no saving state at any point.
    await openAs(p.page, base, pat.membership)
    await p.context.setOffline(true)
    await waitText(p.page, '.status', 'You are offline')
    await p.context.setOffline(false)
    await p.page.waitForFunction(() => document.querySelector('.status')?.hidden === true, null, { timeout: WAIT })
    const seen = await p.page.evaluate(() => window.__statusTexts)
    assert.deepEqual(seen.filter((t) => /sav/i.test(t)), [], `a reader saw a saving state: ${JSON.stringify(seen)}`)

    // In the meeting Pat writes the notes: "Saved" waits for the server's acknowledgement.
    await r.phase('meeting')
    await p.page.locator('#notes .prose[data-writable="true"]').waitFor()
    await p.page.locator('#notes .prose').click()
    await p.page.keyboard.type('Decided: cap retries.')
    await waitStatus(p.page, 'saved')
    const before = (await p.page.evaluate(() => window.__statusTexts)).length
    process.kill(server.child.pid, 'SIGSTOP')
    try {
      await p.page.keyboard.type(' Typed while the server is frozen.')
      // A change the server leaves unanswered means the server cannot be reached, not offline.
      await waitStatus(p.page, 'unreachable')
      assert.match(await p.page.locator('.status').textContent(), /^The server cannot be reached — changes are kept in this tab$/)
      // "Saving…" came first. It is read from what the page showed, not waited for: typing on a
      // loaded machine may take longer than the wait before "cannot be reached".
      const shown = (await p.page.evaluate(() => window.__statusTexts)).slice(before)
      assert.deepEqual(shown, ['Saving…', 'The server cannot be reached — changes are kept in this tab'], `what the page said while the server was frozen: ${JSON.stringify(shown)}`)
    } finally {
      process.kill(server.child.pid, 'SIGCONT')
    }
    await waitStatus(p.page, 'saved')
    // The browser says it is offline: that is what the page says.
    await p.context.setOffline(true)
    await waitStatus(p.page, 'offline')
    assert.equal(await p.page.locator('.status').textContent(), 'You are offline — changes are kept in this tab')
    await p.context.setOffline(false)
    await waitStatus(p.page, 'saved')
    assert.deepEqual(p.errors, [])
  } finally {
    await browser.close()
  }
}))

/** A review in review with Ana (author) and Pat (participant), and a comment beside its text. */
async function reviewWithComment (base, title) {
  const r = await restReview(base, title, { report_markdown: WRITTEN_REPORT })
  const ana = await r.join('author', 'Ana')
  const pat = await r.join('participant', 'Pat')
  await r.phase('review')
  return { r, ana, pat }
}

async function commentOnSelection (page, text, body) {
  await selectText(page, text)
  await page.locator('#comment-selection').click()
  await page.fill('#composer', body)
  await page.locator('form.composer').getByRole('button', { name: 'Comment' }).click()
}

test('the meeting fits a laptop, has a presenter view, and leaves no timer once closed', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const { r, ana, pat } = await reviewWithComment(base, 'Meeting on a laptop')
  const browser = await launch()
  try {
    const fay = await person(browser, LAPTOP)
    const p = await person(browser, { width: 1360, height: 900 })
    const a = await person(browser, LAPTOP)
    await openAs(fay.page, base, r.fay.membership)
    await openAs(p.page, base, pat.membership)
    await openAs(a.page, base, ana.membership)
    await commentOnSelection(p.page, 'Two or three sentences', 'Which customers?')
    await waitText(fay.page, '.anchored .thread', 'Which customers?')

    // The review turns into the meeting in the open pages: its parts are in view.
    await movePhase(fay.page, 'meeting')
    for (const page of [fay.page, p.page]) await page.locator('#notes .prose').waitFor()
    for (const [page, who] of [[fay.page, 'the facilitator'], [p.page, 'a participant']]) {
      await assertInView(page, '#notes .prose', `${who}'s notes`)
      await assertInView(page, '#agenda-h', `${who}'s agenda`)
      await assertInView(page, '.timer', `${who}'s timer`)
      await assertInView(page, '#actions-h', `${who}'s action items`)
    }
    await assertInView(fay.page, '#timer-start', 'the timer controls')
    await fay.page.locator('#timer-start').click()
    await waitText(p.page, '.timer', 'left')

    // The presenter view: a large timer and the current agenda item, nothing else in the way.
    await p.page.goto(`${base}/r/${r.id}?present`)
    await p.page.locator('.big-timer').waitFor()
    await waitText(p.page, '.big-timer', ':')
    await waitText(p.page, '.now', 'Now')
    const big = await p.page.evaluate(() => parseFloat(getComputedStyle(document.querySelector('.big-timer')).fontSize))
    assert.ok(big >= 96, `the presenter timer is large (${big} px)`)
    assert.equal(await shown(p.page, '#report'), false, 'the report is out of the way')
    await assertInView(p.page, '.big-timer', 'the presenter timer')
    await assertInView(p.page, '.now', 'the current agenda item')
    await fay.page.locator('#present-toggle').click()
    await fay.page.locator('.big-timer').waitFor()
    await fay.page.locator('#present-toggle').click()
    await fay.page.locator('.big-timer').waitFor({ state: 'hidden' })

    // Closed: no timer is left, and nothing red says "0:00 left".
    await movePhase(fay.page, 'closed')
    await waitEditable(a.page, 'false')
    for (const page of [fay.page, p.page, a.page]) {
      await page.waitForFunction(() => !document.querySelector('.timer') && !document.querySelector('.big-timer')?.textContent, null, { timeout: WAIT })
    }
    for (const x of [fay, p, a]) assert.deepEqual(x.errors, [])
  } finally {
    await browser.close()
  }
}))

test('resizing the window after the review turned into the meeting throws nothing', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const { r, pat } = await reviewWithComment(base, 'Resizing')
  const browser = await launch()
  try {
    const p = await person(browser, LAPTOP)
    await openAs(p.page, base, pat.membership)
    await commentOnSelection(p.page, 'Two or three sentences', 'Which customers?')
    await waitText(p.page, '.anchored .thread', 'Which customers?')
    await r.phase('meeting')
    await p.page.locator('#notes .prose').waitFor()
    await waitText(p.page, '.anchored .thread', 'Which customers?')
    for (const size of [{ width: 900, height: 700 }, { width: 1600, height: 900 }, LAPTOP]) {
      await p.page.setViewportSize(size)
      // Two frames: the margin redraws at the next one.
      await p.page.evaluate(() => new Promise((resolve) => { requestAnimationFrame(() => { requestAnimationFrame(resolve) }) }))
    }
    assert.deepEqual(p.errors, [], 'no page error on resize')
  } finally {
    await browser.close()
  }
}))

test('timer controls follow the timer, and a mistake is told beside the control in plain words', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const r = await restReview(base, 'Timer')
  await r.phase('review')
  await r.phase('meeting')
  const browser = await launch()
  try {
    const fay = await person(browser, LAPTOP)
    await openAs(fay.page, base, r.fay.membership)
    await fay.page.locator('#timer-start').waitFor()
    const disabled = (id) => fay.page.locator(`#${id}`).isDisabled()
    const waitEnabled = (id) => fay.page.waitForFunction((i) => document.getElementById(i)?.disabled === false, id, { timeout: WAIT })
    assert.equal(await disabled('timer-pause'), true, 'nothing to pause before the start')
    assert.equal(await disabled('timer-resume'), true, 'nothing to resume before the start')
    assert.equal(await disabled('timer-extend'), true, 'nothing to extend before the start')
    await fay.page.locator('#timer-start').click()
    await waitText(fay.page, '.timer', 'left')
    await waitEnabled('timer-pause')
    assert.equal(await disabled('timer-resume'), true, 'Resume is disabled while the timer runs')
    await fay.page.locator('#timer-pause').click()
    await waitEnabled('timer-resume')
    assert.equal(await disabled('timer-pause'), true, 'Pause is disabled while paused')
    assert.equal(await disabled('timer-extend'), false, 'a paused timebox can be extended')

    // A mistake is told beside the control, in plain words, not the server's text.
    await fay.page.locator('.timer-controls .minutes').fill('0')
    await fay.page.locator('#timer-start').click()
    const error = fay.page.locator('.timer-controls [role="alert"]')
    await error.waitFor()
    assert.equal(await error.textContent(), 'Choose a timebox from 1 to 240 minutes.')
    const [control, said] = [await fay.page.locator('#timer-start').boundingBox(), await error.boundingBox()]
    assert.ok(Math.abs(said.y - control.y) < 120 && Math.abs(said.x - control.x) < 600, `the error is beside the control: ${JSON.stringify({ control, said })}`)
    // Once the next command works, the error goes.
    await fay.page.locator('#timer-resume').click()
    await error.waitFor({ state: 'detached' })
    assert.deepEqual(fay.errors, [])
  } finally {
    await browser.close()
  }
}))

test("an anonymous comment's ⋯ panel pushes what is below it down instead of covering it", opts, scenario(async (h) => {
  const server = await h.startServer({ args: ['--anonymous-cadence-secs', '1'] })
  const base = `http://127.0.0.1:${server.port}`
  const r = await restReview(base, 'Panels', { small_group_anonymity: true, report_markdown: WRITTEN_REPORT })
  const pat = await r.join('participant', 'Pat')
  await r.phase('review')
  const browser = await launch()
  try {
    const p = await person(browser, LAPTOP)
    await openAs(p.page, base, pat.membership)
    await selectText(p.page, 'Two or three sentences')
    await p.page.locator('#comment-selection').click()
    await p.page.locator('form.composer .anonymous-toggle').check()
    await p.page.fill('#composer', 'Nobody reads the alert channel')
    await p.page.locator('form.composer').getByRole('button', { name: 'Comment anonymously' }).click()
    const card = p.page.locator('.anchored .thread', { hasText: 'Nobody reads the alert channel' })
    await card.waitFor()
    await card.getByRole('button', { name: 'More actions for this anonymous item' }).click()
    await card.getByRole('textbox', { name: 'Edit anonymous item' }).waitFor()
    // The link right below the cards can still be clicked.
    await p.page.locator('#general-comment').click({ timeout: 3000 })
    await p.page.locator('#composer').waitFor()
    assert.equal(await p.page.locator('#composer').getAttribute('aria-label'), 'General comment')
    assert.deepEqual(p.errors, [])
  } finally {
    await browser.close()
  }
}))

test('each role sees only the controls it can use, where it is and what to do now', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const browser = await launch()
  try {
    const fay = await person(browser, LAPTOP)
    const obi = await person(browser, LAPTOP)
    const pat = await person(browser, LAPTOP)
    const links = await createReview(fay.page, base, 'Roles and controls')

    // The join page names the review and the role before anyone gives a name.
    await obi.page.goto(links.observer)
    await waitText(obi.page, '#join-h', 'Roles and controls')
    assert.equal(await obi.page.locator('.join-role').textContent(), 'observer')
    await obi.page.fill('#name', 'Obi')
    await obi.page.getByRole('button', { name: 'Join as observer' }).click()
    await obi.page.locator('.review-head h1').waitFor()
    await joinAs(pat.page, links.participant, 'Pat')

    // Draft: the observer is not promised commenting; the phase bar says where the review is.
    await waitText(obi.page, '.notice', 'The report is still a draft')
    assert.doesNotMatch(await obi.page.locator('.notice').textContent(), /comment/)
    assert.equal(await obi.page.locator('.phase-bar [aria-current="step"] strong').textContent(), 'Draft')
    assert.equal(await obi.page.locator('.phase-bar [data-phase="review"] .phase-meaning').textContent(), 'You read the report.')
    assert.equal(await pat.page.locator('.phase-bar [data-phase="review"] .phase-meaning').textContent(), 'You read the report, comment and add action items.')
    assert.match(await obi.page.locator('.next-step').textContent(), /^What to do now: Nothing to do yet/)

    // Review: the observer reads; every commenting control is gone for them and works for Pat.
    await fay.page.getByRole('link', { name: 'Open the review' }).click()
    await movePhase(fay.page, 'review')
    await waitEditable(obi.page, 'false')
    await waitEditable(pat.page, 'false')
    assert.equal(await obi.page.locator('.next-step').textContent(), 'What to do now: Read the report, then mark it read.')
    assert.equal(await pat.page.locator('.next-step').textContent(), 'What to do now: Read the report, comment where something is unclear, then mark it read.')
    assert.equal(await fay.page.locator('.phase-bar [aria-current="step"] strong').textContent(), 'Review')
    for (const selector of ['#general-comment', '#raise-concern', '#comment-selection', '.concern .support', '.reply-open', '#action-what']) {
      assert.equal(await shown(obi.page, selector), false, `the observer is not shown ${selector}`)
    }
    await pat.page.locator('#general-comment').click()
    await pat.page.fill('#composer', 'The timeline needs times.')
    await pat.page.locator('form.composer').getByRole('button', { name: 'Comment' }).click()
    await waitText(obi.page, '.general .thread', 'The timeline needs times.')
    assert.equal(await shown(obi.page, '.general .thread .reply-open'), false, 'no reply for the observer')
    assert.equal(await shown(pat.page, '#raise-concern'), true)

    // "I have read the report": in view where the next step is, acknowledged, and shown as done.
    await assertInView(pat.page, '#mark-read', 'the "I have read the report" button')
    await pat.page.locator('#mark-read').click()
    await waitText(pat.page, '.read-done', 'You have read the report')
    await assertInView(pat.page, '.read-done', 'the acknowledgement')
    assert.equal(await pat.page.locator('#mark-read').count(), 0, 'the button is done')
    await pat.page.reload()
    await waitText(pat.page, '.read-done', 'You have read the report')

    // Closed: nobody is offered a concern or a comment.
    await movePhase(fay.page, 'meeting')
    await movePhase(fay.page, 'closed')
    await waitText(pat.page, '.banner', 'This review is closed')
    for (const selector of ['#general-comment', '#raise-concern', '.reply-open', '#mark-read']) {
      assert.equal(await shown(pat.page, selector), false, `closed: the participant is not shown ${selector}`)
    }
    for (const x of [fay, obi, pat]) assert.deepEqual(x.errors, [])
  } finally {
    await browser.close()
  }
}))

test('the comments margin is calm: the reply box and the anonymous switch open on demand', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const r = await restReview(base, 'Calm margin')
  const pat = await r.join('participant', 'Pat')
  await r.phase('review')
  await r.call('POST', `/api/reviews/${r.id}/threads`, { body: 'Was the rollback automatic?' }, r.fay.session)
  await r.call('POST', `/api/reviews/${r.id}/threads`, { body: 'Who owns the runbook?' }, r.fay.session)
  const browser = await launch()
  try {
    const p = await person(browser, LAPTOP)
    await openAs(p.page, base, pat.membership)
    const thread = p.page.locator('.thread', { hasText: 'Was the rollback automatic?' })
    await thread.waitFor()
    assert.equal(await p.page.locator('.thread textarea:visible').count(), 0, 'no reply box until asked for')
    assert.equal(await p.page.locator('.thread .anonymous-toggle:visible').count(), 0, 'no anonymous switch until asked for')
    await thread.getByRole('button', { name: 'Reply' }).click()
    const box = thread.getByRole('textbox', { name: 'Reply' })
    assert.equal(await box.evaluate((el) => el === document.activeElement), true, 'the reply box opens focused')
    assert.equal(await thread.locator('.anonymous-toggle').isVisible(), true)
    assert.equal(await p.page.locator('.thread textarea:visible').count(), 1, 'only the asked-for box opens')
    await box.fill('It was not.')
    await thread.getByRole('button', { name: 'Reply' }).click()
    await waitText(p.page, '.thread', 'It was not.')
    await p.page.waitForFunction(() => document.querySelectorAll('.thread textarea').length > 0 && Array.from(document.querySelectorAll('.thread textarea')).every((t) => t.offsetParent === null), null, { timeout: WAIT })
    assert.deepEqual(p.errors, [])
  } finally {
    await browser.close()
  }
}))

test('the status pill stays in view while scrolling a long report', opts, scenario(async (h) => {
  const server = await h.startServer()
  const base = `http://127.0.0.1:${server.port}`
  const paragraphs = Array.from({ length: 80 }, (_, i) => `Paragraph ${i + 1} of a long timeline.`)
  const r = await restReview(base, 'A long report', { report_markdown: `## Timeline\n\n${paragraphs.join('\n\n')}\n` })
  const ana = await r.join('author', 'Ana')
  const browser = await launch()
  try {
    const a = await person(browser, LAPTOP)
    await openAs(a.page, base, ana.membership)
    await waitEditable(a.page, 'true')
    await a.page.locator('.editor .prose p', { hasText: 'Paragraph 80 of' }).click()
    await a.page.keyboard.press('End')
    await a.page.keyboard.type(' The end.')
    await a.page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight))
    assert.ok(await a.page.evaluate(() => window.scrollY > 1000), 'the page scrolled')
    await waitStatus(a.page, 'saved')
    await assertInView(a.page, '.status', 'the status pill at the end of a long report')
    await assertInView(a.page, '.toolbar', 'the toolbar, below the header')
    const [pill, bar] = [await a.page.locator('.status').boundingBox(), await a.page.locator('.toolbar').boundingBox()]
    assert.ok(bar.y >= pill.y + pill.height, 'the toolbar does not cover the pill')
    assert.deepEqual(a.errors, [])
  } finally {
    await browser.close()
  }
}))

// A walk-through of a whole review at three sizes, as a new team would do it: the facilitator
// creates it, the author and a participant join from their links, the author writes, and the
// facilitator moves it through every phase. No console error, and no sideways scrolling.
/** At each step: the phase bar names the phase, and nothing scrolls sideways. */
async function looksRight (page, phase, what) {
  await page.waitForFunction((p) => document.querySelector('.phase-bar [aria-current="step"] strong')?.textContent === p, phase, { timeout: WAIT })
  await assertNoSideScroll(page, what)
}

for (const size of [LAPTOP, { width: 1920, height: 1080 }, PHONE]) {
  test(`a walk-through at ${size.width}×${size.height} has no console error and no sideways scroll`, opts, scenario(async (h) => {
    const server = await h.startServer()
    const base = `http://127.0.0.1:${server.port}`
    const browser = await launch()
    try {
      const fay = await person(browser, size)
      const ana = await person(browser, size)
      const pat = await person(browser, size)
      const people = [fay, ana, pat]
      const links = await createReview(fay.page, base, 'Walk-through of a checkout outage with a long title')
      await assertNoSideScroll(fay.page, 'the invite links')
      await fay.page.getByRole('link', { name: 'Open the review' }).click()
      await ana.page.goto(links.author)
      await assertNoSideScroll(ana.page, 'the join page')
      // Full names, as people give them: the list of who is here wraps on a phone.
      await joinAs(ana.page, links.author, 'Anastasia Vasquez-Lindqvist')
      await joinAs(pat.page, links.participant, 'Patrick O\'Sullivan-Hughes')
      await waitEditable(ana.page, 'true')
      await caretInSection(ana.page, 'Summary')
      // Post-mortems quote long addresses and log lines: they wrap instead of widening the page.
      await ana.page.keyboard.type('Checkout failed for twenty minutes: https://dashboards.example.com/d/checkout-errors/payments-latency-by-provider-and-region?orgId=1&from=now-6h')
      await waitStatus(ana.page, 'saved')
      for (const x of people) await looksRight(x.page, 'Draft', `draft, ${x === fay ? 'facilitator' : x === ana ? 'author' : 'participant'}`)

      await movePhase(fay.page, 'review')
      await waitEditable(pat.page, 'false')
      await waitText(fay.page, '.presence', 'Patrick')
      await pat.page.locator('#general-comment').click()
      await pat.page.fill('#composer', 'Which customers were affected?')
      await pat.page.locator('form.composer').getByRole('button', { name: 'Comment' }).click()
      await waitText(ana.page, '.thread', 'Which customers were affected?')
      for (const x of people) await looksRight(x.page, 'Review', 'review')

      await movePhase(fay.page, 'meeting')
      for (const x of [ana, pat]) await x.page.locator('#notes .prose[data-writable="true"]').waitFor()
      await fay.page.locator('#timer-start').click()
      await waitText(pat.page, '.timer', 'left')
      await pat.page.locator('#notes .prose').click()
      await pat.page.keyboard.type('Decided: alert on checkout errors.')
      await waitStatus(pat.page, 'saved')
      await pat.page.fill('#action-what', 'Alert on checkout error rate')
      await pat.page.fill('#action-why', 'Nobody noticed for twenty minutes')
      await pat.page.fill('#action-owner', 'Payments')
      await pat.page.getByRole('button', { name: 'Add action item' }).click()
      await waitText(fay.page, '.actions', 'Alert on checkout error rate')
      for (const x of people) await looksRight(x.page, 'Meeting', 'meeting')

      await movePhase(fay.page, 'closed')
      await waitEditable(ana.page, 'false')
      for (const x of people) await looksRight(x.page, 'Closed', 'closed')
      // Published through the preview, then read in the library.
      await fay.page.locator('#publish').click()
      await waitText(fay.page, '#publish-preview .publication-body', 'Checkout failed for twenty minutes')
      await assertNoSideScroll(fay.page, 'the publish preview')
      await fay.page.locator('#confirm-publish').click()
      await fay.page.getByRole('link', { name: 'open it in the library' }).click()
      await waitText(fay.page, '.publication .title-block', 'Walk-through of a checkout outage')
      await assertNoSideScroll(fay.page, 'the library page')
      for (const x of people) {
        assert.deepEqual(x.errors, [])
        assert.deepEqual(x.consoleErrors, [], 'no console error')
      }
    } finally {
      await browser.close()
    }
  }))
}
