// Stock-client integration tests of reviews: the REST API under /api driven with `fetch`, and the
// review documents (`review.<id>.report` / `.discussion`) observed and edited by the real
// `@hocuspocus/provider` + `yjs` against a Debrief server process at /collab, each provider
// authenticated with the session token of the person it belongs to.
//
//   cd tests/js && node --test --test-concurrency=1 reviews.test.mjs
//
// Every wait is on an event (provider 'authenticated'/'synced'/'unsyncedChanges', Y.Doc
// 'update', awareness 'change', frames seen by a socket) with a timeout that fails with a
// message naming what was awaited and the state at the time.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import * as Y from 'yjs'

import { scenario, until, useReference } from './harness.mjs'

const TEST_TIMEOUT = 60_000

// The reference y-websocket server has no reviews and no /collab.
const opts = { timeout: TEST_TIMEOUT, skip: useReference && 'Debrief only' }

const TITLE = 'Checkout outage on 3 March'
// The report template of proto/src/schema.rs, in order.
const SECTIONS = [
  'Summary',
  'Impact',
  'Lead-up',
  'Timeline',
  'Detection',
  'Response and recovery',
  'Contributing factors',
  'What was surprising or hard',
  'What went well, what went badly, where we were lucky',
  'Open questions',
  'Action items'
]
/** What the author writes in the Summary section, which the template leaves empty. */
const SUMMARY_HELP = 'Two or three sentences a reader outside the team understands.'

// ---------------------------------------------------------------------------
// REST
// ---------------------------------------------------------------------------

/** `fetch` against the server; the body is parsed as JSON when there is one. */
const call = async (server, method, path, { session, body } = {}) => {
  const headers = {}
  if (session) headers.authorization = `Bearer ${session}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(`http://127.0.0.1:${server.port}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const text = await res.text()
  let json = null
  if (text) {
    try { json = JSON.parse(text) } catch { json = text }
  }
  return { status: res.status, body: json }
}

/** Asserts the status, showing the body when it differs. */
const expectStatus = (res, status, what) =>
  assert.equal(res.status, status, `${what}: ${res.status} ${JSON.stringify(res.body)}`)

/**
 * Starts a server, creates a review and joins one person per entry of `people`
 * ({key: [role, name]}). Returns the server, the review, its document names, and per person
 * {session, participant, name, role}.
 */
const setUp = async (h, people) => {
  const server = await h.startServer()
  const created = await call(server, 'POST', '/api/reviews', { body: { title: TITLE } })
  expectStatus(created, 201, 'POST /api/reviews')
  const { review, invites } = created.body
  assert.equal(review.phase, 'draft')
  assert.equal(review.title, TITLE)
  assert.deepEqual(review.documents, {
    report: `review.${review.id}.report`,
    discussion: `review.${review.id}.discussion`,
    notes: `review.${review.id}.notes`
  })
  assert.deepEqual(Object.keys(invites).sort(), ['author', 'facilitator', 'observer', 'participant'])
  const who = {}
  for (const [key, [role, name]] of Object.entries(people)) {
    const joined = await call(server, 'POST', '/api/join', { body: { invite: invites[role].token, name } })
    expectStatus(joined, 201, `POST /api/join as ${role}`)
    assert.equal(joined.body.review.id, review.id)
    assert.equal(joined.body.review.you.role, role)
    assert.equal(joined.body.review.you.name, name)
    assert.equal(typeof joined.body.session, 'string')
    assert.equal(typeof joined.body.review.you.participant, 'string')
    who[key] = { role, name, session: joined.body.session, participant: joined.body.review.you.participant }
  }
  const ids = new Set(Object.values(who).map((p) => p.participant))
  assert.equal(ids.size, Object.keys(who).length, 'every join is a distinct participant')
  return { server, review, docs: review.documents, who }
}

const movePhase = async (server, review, facilitator, phase) => {
  const res = await call(server, 'POST', `/api/reviews/${review.id}/phase`, { session: facilitator.session, body: { phase } })
  expectStatus(res, 200, `move to ${phase}`)
  assert.equal(res.body.phase, phase)
  return res
}

// ---------------------------------------------------------------------------
// providers
// ---------------------------------------------------------------------------

const waitReady = (client, what = 'provider to authenticate and sync') =>
  until(what, () => client.provider.isAuthenticated && client.provider.synced, [
    [client.provider, 'authenticated'],
    [client.provider, 'synced']
  ], {
    describe: () => `authenticated=${client.provider.isAuthenticated} synced=${client.provider.synced} failures=${JSON.stringify(client.failures)}`
  })

const waitSaved = (client, what = 'every change to be acknowledged') =>
  until(what, () => !client.provider.hasUnsyncedChanges, [[client.provider, 'unsyncedChanges']], {
    describe: () => `unsyncedChanges=${client.provider.unsyncedChanges}`
  })

const waitDenied = (client, what = 'authenticationFailed') =>
  until(what, () => client.failures.length > 0, [[client.provider, 'authenticationFailed']], {
    describe: () => `authenticated=${client.provider.isAuthenticated} scopes=${JSON.stringify(client.scopes)}`
  })

/** A provider on its own socket, for `person` on document `name`. */
const open = (h, server, name, person, { doc } = {}) => {
  const socket = h.hocusSocket(server)
  const client = h.hocusClient(socket, name, { token: person.session, doc })
  client.socket = socket
  return client
}

/** The SyncStatus values the socket received for `name` ([varString name, 8, varInt]). */
const syncStatuses = (socket, name) => {
  const prefix = [name.length, ...Buffer.from(name)]
  return socket.frames
    .filter((f) => f.length === prefix.length + 2 && prefix.every((b, i) => f[i] === b) && f[prefix.length] === 8)
    .map((f) => f[prefix.length + 1])
}

const waitRefused = (client, name, what) =>
  until(what ?? `SyncStatus 0 for ${name}`, () => syncStatuses(client.socket, name).includes(0), [[client.socket, 'message']], {
    describe: () => `statuses=${JSON.stringify(syncStatuses(client.socket, name))}`
  })

// ---------------------------------------------------------------------------
// documents
// ---------------------------------------------------------------------------

const fragment = (client) => client.doc.getXmlFragment('default')

/** The report as [nodeName, attributes, text] rows. */
const outline = (client) => fragment(client).toArray().map((el) => [
  el.nodeName,
  el.getAttributes(),
  el.toArray().map((t) => t.toString()).join('')
])

/** The Summary paragraph (the paragraph right after the Summary heading). */
const summaryParagraph = (client) => {
  const els = fragment(client).toArray()
  const at = els.findIndex((el) => el.nodeName === 'heading' && el.toArray().map(String).join('') === 'Summary')
  assert.ok(at >= 0, 'the report has a Summary heading')
  const p = els[at + 1]
  assert.equal(p.nodeName, 'paragraph')
  return p
}

/** The Y.XmlText of the Summary paragraph, once someone wrote it (see `writeSummary`). */
const summaryHelp = (client) => {
  const text = summaryParagraph(client).get(0)
  assert.ok(text instanceof Y.XmlText, 'the Summary paragraph holds a Y.XmlText')
  return text
}

/** The author writes SUMMARY_HELP into the Summary paragraph the template left empty. */
const writeSummary = async (client) => {
  const p = summaryParagraph(client)
  assert.equal(p.length, 0, 'the template leaves the Summary paragraph empty')
  p.insert(0, [new Y.XmlText(SUMMARY_HELP)])
  await waitSaved(client, "the author's summary to be stored")
}

const threadsOf = (client) => client.doc.getMap('threads')
const threadJSON = (client, id) => threadsOf(client).get(id)?.toJSON()

/** Waits until thread `id` on `client`'s discussion satisfies `check(threadJSON)`; returns it. */
const waitThread = (client, id, what, check) =>
  until(what, () => {
    const t = threadJSON(client, id)
    return t && check(t) ? t : null
  }, [[client.doc, 'update']], {
    describe: () => `thread ${id} = ${JSON.stringify(threadJSON(client, id))}`
  })

const b64 = (bytes) => Buffer.from(bytes).toString('base64')
const unb64 = (s) => new Uint8Array(Buffer.from(s, 'base64'))

/** Resolves an anchor ({start, end} base64) against `doc`: the type and the two indexes. */
const resolveAnchor = (doc, anchor) => {
  const start = Y.createAbsolutePositionFromRelativePosition(Y.decodeRelativePosition(unb64(anchor.start)), doc)
  const end = Y.createAbsolutePositionFromRelativePosition(Y.decodeRelativePosition(unb64(anchor.end)), doc)
  assert.ok(start && end, 'both ends of the anchor resolve')
  assert.equal(start.type, end.type, 'both ends are in one text')
  return { type: start.type, start: start.index, end: end.index, text: start.type.toString().slice(start.index, end.index) }
}

// ---------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------

test('the server seeds the report with the template, and the phase table decides who opens it in draft', opts, scenario(async (h) => {
  const { server, docs, who } = await setUp(h, {
    fran: ['facilitator', 'Fran'],
    ada: ['author', 'Ada'],
    pat: ['participant', 'Pat'],
    olga: ['observer', 'Olga']
  })
  const author = open(h, server, docs.report, who.ada)
  await waitReady(author)
  assert.deepEqual(author.scopes, ['read-write'])

  const rows = outline(author)
  assert.equal(rows.length, 1 + 2 * SECTIONS.length)
  assert.deepEqual(rows[0], ['heading', { level: 1 }, TITLE])
  assert.deepEqual(rows[1], ['heading', { level: 2 }, 'Summary'])
  // Each section is a heading and an empty paragraph: its guidance is the editor's placeholder,
  // never text of the document (issue 17).
  SECTIONS.forEach((title, i) => {
    const [heading, body] = [rows[1 + 2 * i], rows[2 + 2 * i]]
    assert.deepEqual(heading, ['heading', { level: 2 }, title], `section ${i} heading`)
    assert.deepEqual(body, ['paragraph', {}, ''], `section ${title}: an empty paragraph`)
  })
  // Plain number levels, as ProseMirror's heading node expects (not bigints, not strings).
  for (const el of fragment(author).toArray().filter((e) => e.nodeName === 'heading')) {
    assert.equal(typeof el.getAttribute('level'), 'number')
  }

  // Draft: the facilitator reads the report, participants and observers cannot open it.
  const facilitator = open(h, server, docs.report, who.fran)
  await waitReady(facilitator)
  assert.deepEqual(facilitator.scopes, ['readonly'])
  assert.deepEqual(outline(facilitator), rows)
  for (const person of [who.pat, who.olga]) {
    for (const name of [docs.report, docs.discussion]) {
      const denied = open(h, server, name, person)
      await waitDenied(denied, `${person.role} to be refused ${name} in draft`)
      assert.match(denied.failures[0], /^not_allowed: /)
      assert.equal(denied.provider.isAuthenticated, false)
      assert.equal(denied.doc.getXmlFragment('default').length, 0, 'nothing of the report reached a refused client')
    }
  }
  // The discussion is readable by the author and facilitator in draft, and holds the review's state.
  const discussion = open(h, server, docs.discussion, who.ada)
  await waitReady(discussion)
  assert.deepEqual(discussion.scopes, ['readonly'])
  assert.deepEqual(discussion.doc.getMap('review').toJSON(), { title: TITLE, phase: 'draft' })
  assert.equal(threadsOf(discussion).size, 0)
}))

test('a comment thread: anchored to the report, followed by a stock client on the discussion, and the anchor survives edits', opts, scenario(async (h) => {
  const { server, review, docs, who } = await setUp(h, {
    fran: ['facilitator', 'Fran'],
    ada: ['author', 'Ada'],
    pat: ['participant', 'Pat'],
    quinn: ['participant', 'Quinn']
  })
  const base = `/api/reviews/${review.id}/threads`

  // The author writes the Summary; their editor computes the anchor around "reader" in it.
  const author = open(h, server, docs.report, who.ada)
  await waitReady(author)
  await writeSummary(author)
  const help = summaryHelp(author)
  assert.equal(help.toString(), SUMMARY_HELP)
  const word = 'reader'
  const at = SUMMARY_HELP.indexOf(word)
  const anchor = {
    start: b64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(help, at))),
    end: b64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(help, at + word.length))),
    quote: word
  }

  await movePhase(server, review, who.fran, 'review')

  // Pat follows the discussion and the report, read-only, over one socket.
  const patSocket = h.hocusSocket(server)
  const discussion = h.hocusClient(patSocket, docs.discussion, { token: who.pat.session })
  const report = h.hocusClient(patSocket, docs.report, { token: who.pat.session })
  await waitReady(discussion)
  await waitReady(report)
  assert.deepEqual(discussion.scopes, ['readonly'])
  assert.deepEqual(report.scopes, ['readonly'])
  assert.equal(discussion.doc.getMap('review').get('phase'), 'review')

  // Pat starts an anchored thread.
  const added = await call(server, 'POST', base, { session: who.pat.session, body: { body: 'Which reader?', anchor } })
  expectStatus(added, 201, 'POST threads')
  const thread = added.body
  assert.equal(typeof thread.id, 'string')
  assert.deepEqual(thread.anchor, anchor)
  assert.equal(thread.resolved, false)
  assert.equal(typeof thread.createdAt, 'number')
  assert.equal(thread.comments.length, 1)
  const first = thread.comments[0]
  assert.equal(typeof first.id, 'string')
  assert.equal(first.body, 'Which reader?')
  assert.deepEqual(first.author, { participant: who.pat.participant, name: 'Pat' })
  assert.equal(first.deleted, false)
  assert.equal(typeof first.createdAt, 'number')
  assert.equal('editedAt' in first, false)

  const seen = await waitThread(discussion, thread.id, 'the new thread on the stock discussion client', (t) => t)
  assert.deepEqual(seen, thread, 'the discussion document holds exactly what the API answered')
  assert.equal(seen.anchor.quote, word)
  assert.equal(seen.comments[0].author.name, 'Pat')
  assert.ok(threadsOf(discussion).get(thread.id) instanceof Y.Map, 'a thread is a Y.Map')
  assert.ok(threadsOf(discussion).get(thread.id).get('comments') instanceof Y.Array, 'comments are a Y.Array')

  // The author writes before the anchor: in the same text, and a whole new paragraph above it.
  const prefix = 'In short: '
  help.insert(0, prefix)
  const paragraph = new Y.XmlElement('paragraph')
  paragraph.insert(0, [new Y.XmlText('Context first.')])
  const helpIndex = fragment(author).toArray().indexOf(help.parent)
  fragment(author).insert(helpIndex, [paragraph])
  await waitSaved(author, "the author's edits to be stored")

  await until("Pat's report to get the author's edits", () => {
    const rows = outline(report)
    return rows.some(([, , t]) => t === 'Context first.') && rows.some(([, , t]) => t === prefix + SUMMARY_HELP)
  }, [[report.doc, 'update']], { describe: () => JSON.stringify(outline(report).slice(0, 5)) })
  const rows = outline(report)
  assert.deepEqual(rows.slice(1, 4), [
    ['heading', { level: 2 }, 'Summary'],
    ['paragraph', {}, 'Context first.'],
    ['paragraph', {}, prefix + SUMMARY_HELP]
  ])
  const resolved = resolveAnchor(report.doc, threadJSON(discussion, thread.id).anchor)
  assert.equal(resolved.text, word, 'the anchor still spans the quoted word')
  assert.equal(resolved.start, prefix.length + at)
  assert.ok(resolved.type === fragment(report).get(3).get(0), "the anchor is in the (former) Summary help text of Pat's report")

  // Quinn replies.
  const replied = await call(server, 'POST', `${base}/${thread.id}/comments`, { session: who.quinn.session, body: { body: 'The on-call reader.' } })
  expectStatus(replied, 201, 'POST reply')
  const reply = replied.body
  assert.equal(reply.body, 'The on-call reader.')
  assert.deepEqual(reply.author, { participant: who.quinn.participant, name: 'Quinn' })
  assert.equal(reply.deleted, false)
  let t = await waitThread(discussion, thread.id, 'the reply', (t) => t.comments.length === 2)
  assert.deepEqual(t.comments[1], reply)

  // Only the author edits a comment.
  const notYours = await call(server, 'PATCH', `${base}/${thread.id}/comments/${first.id}`, { session: who.quinn.session, body: { body: 'hijacked' } })
  expectStatus(notYours, 403, "PATCH someone else's comment")
  assert.equal(notYours.body.code, 'not_author')
  const edited = await call(server, 'PATCH', `${base}/${thread.id}/comments/${first.id}`, { session: who.pat.session, body: { body: 'Which reader, exactly?' } })
  expectStatus(edited, 200, 'PATCH own comment')
  assert.equal(edited.body.body, 'Which reader, exactly?')
  assert.equal(typeof edited.body.editedAt, 'number')
  t = await waitThread(discussion, thread.id, 'the edit with editedAt', (t) => t.comments[0].editedAt !== undefined)
  assert.deepEqual(t.comments[0], edited.body)
  assert.equal(t.comments[0].body, 'Which reader, exactly?')

  // Resolve by the thread's author; a participant who did not start it cannot reopen; the
  // facilitator can.
  const resolvedRes = await call(server, 'POST', `${base}/${thread.id}/resolve`, { session: who.pat.session })
  expectStatus(resolvedRes, 200, 'resolve by the thread author')
  assert.equal(resolvedRes.body.resolved, true)
  t = await waitThread(discussion, thread.id, 'resolved=true', (t) => t.resolved === true)
  assert.deepEqual(t, resolvedRes.body)
  const quinnReopen = await call(server, 'POST', `${base}/${thread.id}/reopen`, { session: who.quinn.session })
  expectStatus(quinnReopen, 403, 'reopen by a participant who did not start the thread')
  assert.equal(quinnReopen.body.code, 'not_allowed')
  const reopened = await call(server, 'POST', `${base}/${thread.id}/reopen`, { session: who.fran.session })
  expectStatus(reopened, 200, 'reopen by the facilitator')
  assert.equal(reopened.body.resolved, false)
  t = await waitThread(discussion, thread.id, 'resolved=false', (t) => t.resolved === false)
  assert.deepEqual(t, reopened.body)

  // Quinn deletes the reply: it keeps its place, marked deleted with an empty body.
  const deleted = await call(server, 'DELETE', `${base}/${thread.id}/comments/${reply.id}`, { session: who.quinn.session })
  expectStatus(deleted, 204, 'DELETE own reply')
  assert.equal(deleted.body, null)
  t = await waitThread(discussion, thread.id, 'the reply marked deleted', (t) => t.comments[1]?.deleted === true)
  assert.equal(t.comments.length, 2)
  assert.equal(t.comments[1].id, reply.id)
  assert.equal(t.comments[1].body, '')
  assert.deepEqual(t.comments[1].author, reply.author)
  assert.equal(t.comments[0].body, 'Which reader, exactly?', 'the first comment is untouched')
  const again = await call(server, 'DELETE', `${base}/${thread.id}/comments/${reply.id}`, { session: who.quinn.session })
  expectStatus(again, 404, 'DELETE a deleted comment')
  assert.equal(again.body.code, 'unknown_comment')
  assert.equal(typeof again.body.message, 'string')
}))

test('no client writes the discussion: forged updates are refused and never reach anyone', opts, scenario(async (h) => {
  const { server, review, docs, who } = await setUp(h, {
    fran: ['facilitator', 'Fran'],
    ada: ['author', 'Ada'],
    pat: ['participant', 'Pat'],
    quinn: ['participant', 'Quinn']
  })
  await movePhase(server, review, who.fran, 'review')

  // The observer is connected before the forgeries: had one been applied, its broadcast would
  // reach this connection before the later REST change.
  const observer = open(h, server, docs.discussion, who.quinn)
  await waitReady(observer)
  const forgers = [who.pat, who.ada, who.fran].map((p) => open(h, server, docs.discussion, p))
  for (const forger of forgers) {
    await waitReady(forger)
    assert.deepEqual(forger.scopes, ['readonly'])
    await waitSaved(forger, "the forger's handshake to be acknowledged")
    assert.deepEqual(syncStatuses(forger.socket, docs.discussion), [1], 'the handshake holds nothing new: acknowledged')
  }
  forgers.forEach((forger, i) => {
    forger.doc.transact(() => {
      forger.doc.getMap('threads').set(`forged-${i}`, 'x')
      forger.doc.getMap('review').set('phase', 'closed')
    })
  })
  for (const forger of forgers) {
    await waitRefused(forger, docs.discussion)
    assert.deepEqual(syncStatuses(forger.socket, docs.discussion), [1, 0])
    assert.equal(forger.provider.hasUnsyncedChanges, true, 'a refused update stays unsaved')
  }

  const added = await call(server, 'POST', `/api/reviews/${review.id}/threads`, { session: who.pat.session, body: { body: 'A general remark.' } })
  expectStatus(added, 201, 'POST a general thread')
  assert.equal(added.body.anchor, null)
  await waitThread(observer, added.body.id, 'the observer to see the REST change', (t) => t.comments.length === 1)
  assert.deepEqual([...threadsOf(observer).keys()], [added.body.id], 'no forged key reached the observer')
  assert.equal(observer.doc.getMap('review').get('phase'), 'review')
  // The forgers get the server's change too, on top of their local forgery.
  for (const forger of forgers) {
    await waitThread(forger, added.body.id, "a forger to get the server's change", (t) => t)
  }

  // A fresh connection loads the stored document: no forgery there either.
  const fresh = open(h, server, docs.discussion, who.quinn)
  await waitReady(fresh)
  assert.deepEqual([...threadsOf(fresh).keys()], [added.body.id])
  assert.deepEqual(fresh.doc.getMap('review').toJSON(), { title: TITLE, phase: 'review' })

  // A forger that reconnects (same Y.Doc, new socket) offers its forgery again in its
  // SyncStep2: refused again, and still absent for everyone else.
  const pat = forgers[0]
  pat.provider.destroy()
  pat.destroyed = true // its doc lives on in the reconnected provider
  pat.socket.destroy()
  const again = open(h, server, docs.discussion, who.pat, { doc: pat.doc })
  await waitReady(again)
  await waitRefused(again, docs.discussion, "SyncStatus 0 for the reconnected forger's SyncStep2")
  assert.equal(again.doc.getMap('threads').get('forged-0'), 'x', 'the forger still has it locally')
  const fresher = open(h, server, docs.discussion, who.ada)
  await waitReady(fresher)
  assert.deepEqual([...threadsOf(fresher).keys()], [added.body.id])
}))

test('a phase change reaches open sockets: new scopes, and a withdrawn write is refused', opts, scenario(async (h) => {
  const { server, review, docs, who } = await setUp(h, {
    fran: ['facilitator', 'Fran'],
    ada: ['author', 'Ada'],
    pat: ['participant', 'Pat']
  })
  const author = open(h, server, docs.report, who.ada)
  const facilitator = open(h, server, docs.report, who.fran)
  await waitReady(author)
  await waitReady(facilitator)
  assert.deepEqual(author.scopes, ['read-write'])
  assert.equal(author.provider.authorizedScope, 'read-write')
  assert.deepEqual(facilitator.scopes, ['readonly'])
  await writeSummary(author)

  await movePhase(server, review, who.fran, 'review')
  const reader = open(h, server, docs.report, who.pat)
  await waitReady(reader)
  assert.deepEqual(reader.scopes, ['readonly'])
  const summary = (c) => summaryHelp(c).toString()

  // Meeting: the facilitator gains write access on the open socket; the author keeps it.
  await movePhase(server, review, who.fran, 'meeting')
  await until('the facilitator to be re-authenticated read-write', () => facilitator.provider.authorizedScope === 'read-write', [[facilitator.provider, 'authenticated']], {
    describe: () => `scopes=${JSON.stringify(facilitator.scopes)}`
  })
  assert.deepEqual(facilitator.scopes, ['readonly', 'read-write'])
  summaryHelp(facilitator).insert(0, '[F] ')
  await waitSaved(facilitator, "the facilitator's meeting edit to be stored")
  summaryHelp(author).insert(0, '[A] ')
  await waitSaved(author, "the author's meeting edit to be stored")
  await until('the reader to get both meeting edits', () => summary(reader).includes('[F] ') && summary(reader).includes('[A] '), [[reader.doc, 'update']], {
    describe: () => summary(reader)
  })
  const stored = summary(reader)
  assert.equal(stored.length, SUMMARY_HELP.length + 8)

  // Closed: everyone reads. The author's open provider is told so.
  await movePhase(server, review, who.fran, 'closed')
  await until('the author to be re-authenticated readonly', () => author.provider.authorizedScope === 'readonly', [[author.provider, 'authenticated']], {
    describe: () => `scopes=${JSON.stringify(author.scopes)}`
  })
  assert.deepEqual(author.scopes, ['read-write', 'readonly'], 'the author was told once, when the access changed')
  assert.equal(author.provider.isAuthenticated, true)
  await until('the facilitator to be re-authenticated readonly', () => facilitator.provider.authorizedScope === 'readonly', [[facilitator.provider, 'authenticated']])
  assert.deepEqual(facilitator.scopes, ['readonly', 'read-write', 'readonly'])

  const statusesBefore = syncStatuses(author.socket, docs.report)
  assert.ok(!statusesBefore.includes(0), `nothing refused before the phase change: ${statusesBefore}`)
  summaryHelp(author).insert(0, 'AFTER CLOSE ')
  await waitRefused(author, docs.report, "SyncStatus 0 for the author's edit after closing")
  assert.equal(author.provider.hasUnsyncedChanges, true, 'the refused edit stays unsaved')

  // No REST command writes the report, so the later change other clients wait on is a fresh
  // client: its sync is answered after the refusal, and its awareness, relayed to the reader
  // after that, comes behind anything the author's edit could have caused on the reader's socket.
  const fresh = open(h, server, docs.report, who.pat)
  await waitReady(fresh)
  assert.equal(summary(fresh), stored, 'the stored report never took the edit')
  fresh.awareness.setLocalStateField('user', { name: 'Pat (fresh)' })
  const freshId = fresh.doc.clientID
  await until("the fresh client's presence at the reader", () => reader.awareness.getStates().get(freshId)?.user?.name === 'Pat (fresh)', [[reader.awareness, 'change']])
  assert.equal(summary(reader), stored, 'the edit never reached the reader')
  assert.equal(summary(author), 'AFTER CLOSE ' + stored, 'the author still has it locally')

  // Comments are read-only once closed.
  const late = await call(server, 'POST', `/api/reviews/${review.id}/threads`, { session: who.pat.session, body: { body: 'too late' } })
  expectStatus(late, 403, 'comment after closing')
  assert.equal(late.body.code, 'not_allowed')
}))
