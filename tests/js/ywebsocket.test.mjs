// Stock-client integration tests: the real `y-websocket` WebsocketProvider
// (Node's `ws` as WebSocket implementation) against a Debrief server process.
//
//   cd tests/js && npm test
//   DEBRIEF_BIN=/path/to/debrief npm test      # another binary
//   DEBRIEF_TEST_REFERENCE=1 npm test          # the reference y-websocket server
//
// Each test gets its own server process and data directory. Nothing here
// sleeps to synchronise: every wait is on an event (provider 'sync', Y.Doc
// 'update', awareness 'change') with a timeout that fails with a message.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isDeepStrictEqual } from 'node:util'
import * as Y from 'yjs'

import { scenario, until, waitSynced, tick, prng } from './harness.mjs'

const SEED = Number(process.env.DEBRIEF_TEST_SEED || 0x0deb21ef)
const TEST_TIMEOUT = 30_000

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

const snapshot = (doc) => ({
  text: doc.getText('t').toString(),
  map: doc.getMap('m').toJSON(),
  array: doc.getArray('a').toJSON()
})

/** UTF-16 offsets of every code point boundary of `s` (including 0 and s.length). */
const boundaries = (s) => {
  const out = [0]
  let i = 0
  for (const ch of s) {
    i += ch.length
    out.push(i)
  }
  return out
}

const firstDifference = (a, b) => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i
  return a.length === b.length ? -1 : n
}

const describeTexts = (named) =>
  Object.entries(named).map(([name, s]) => `${name}: length=${s.length} head=${JSON.stringify(Array.from(s).slice(0, 30).join(""))}`).join('\n')

/** Collects the updates a doc produces locally (not the ones its provider applied). */
const recordLocalUpdates = (client) => {
  const updates = []
  client.doc.on('update', (update, origin) => {
    if (origin !== client.provider) updates.push(update)
  })
  return updates
}

// Characters for random text edits: ASCII, BMP non-ASCII and non-BMP (surrogate pairs).
const POOL = ['a', 'b', 'c', 'x', 'y', 'z', ' ', '.', 'é', 'ß', '中', '文', '😀', '🚀', '𝄞', '🦀', '👍🏽', '\u{1F9D1}']

const randomString = (rng, maxCodePoints) => {
  let s = ''
  const n = 1 + rng.int(maxCodePoints)
  for (let i = 0; i < n; i++) s += rng.pick(POOL)
  return s
}

const randomValue = (rng, who) => rng.pick([
  () => rng.int(1000),
  () => `${who}-${rng.int(100)}-😀`,
  () => ({ by: who, n: rng.int(10), tags: ['a', 'ü'] }),
  () => [1, 2.5, 'x', null],
  () => true,
  () => null
])()

/**
 * One random text edit at a code-point boundary (so surrogate pairs are never
 * split by an edit); returns { inserted, deleted } in UTF-16 units.
 */
const randomTextEdit = (rng, doc, who) => {
  const text = doc.getText('t')
  const b = boundaries(text.toString())
  const n = b.length - 1
  if (n === 0 || rng() < 0.6) {
    const s = randomString(rng, 4)
    text.insert(b[rng.int(n + 1)], s)
    return { inserted: s.length, deleted: 0 }
  }
  const start = rng.int(n)
  const end = Math.min(n, start + 1 + rng.int(3))
  text.delete(b[start], b[end] - b[start])
  return { inserted: 0, deleted: b[end] - b[start] }
}

const randomStructEdit = (rng, doc, who) => {
  if (rng() < 0.5) {
    doc.getMap('m').set(`k${rng.int(8)}`, randomValue(rng, who))
  } else {
    const arr = doc.getArray('a')
    if (arr.length > 0 && rng() < 0.3) arr.delete(rng.int(arr.length), 1)
    else arr.insert(rng.int(arr.length + 1), [randomValue(rng, who)])
  }
}

/** Resolves once every client's doc has the same text/map/array as `expected()`. */
const converged = (what, clients, expected, ms = 20_000) =>
  until(what, () => clients.every((c) => isDeepStrictEqual(snapshot(c.doc), expected())), clients.map((c) => [c.doc, 'update']), {
    ms,
    describe: () => {
      const exp = expected()
      const lines = [describeTexts({ expected: exp.text, ...Object.fromEntries(clients.map((c, i) => [`client${i}`, snapshot(c.doc).text])) })]
      clients.forEach((c, i) => {
        const s = snapshot(c.doc)
        lines.push(`client${i} (id ${c.doc.clientID}): synced=${c.provider.synced} wsconnected=${c.provider.wsconnected} ` +
          `textDiffAt=${firstDifference(s.text, exp.text)} mapEqual=${isDeepStrictEqual(s.map, exp.map)} arrayEqual=${isDeepStrictEqual(s.array, exp.array)}`)
      })
      return lines.join('\n')
    }
  })

const sameAs = (client) => () => snapshot(client.doc)

// ---------------------------------------------------------------------------
// 1. concurrent random edits converge
// ---------------------------------------------------------------------------

test('two providers converge after interleaved random concurrent edits (Y.Text with non-BMP chars, Y.Map, Y.Array)', { timeout: TEST_TIMEOUT }, scenario(async (h) => {
  const server = await h.startServer()
  const docName = 'converge-1'
  const a = h.client(server, docName, { clientID: 101 })
  const b = h.client(server, docName, { clientID: 202 })
  await Promise.all([waitSynced(a, 'A to sync'), waitSynced(b, 'B to sync')])

  const localA = recordLocalUpdates(a)
  const localB = recordLocalUpdates(b)
  const rngA = prng(SEED)
  const rngB = prng(SEED ^ 0x5bd1e995)
  let inserted = 0
  for (let i = 0; i < 200; i++) {
    for (const [c, rng, who] of [[a, rngA, 'A'], [b, rngB, 'B']]) {
      inserted += randomTextEdit(rng, c.doc, who).inserted
      if (i % 4 === 0) randomStructEdit(rng, c.doc, who)
    }
    // Let socket I/O run now and then, so some edits are made on top of
    // remote ones and others concurrently with them.
    if (i % 5 === 0) await tick()
  }
  assert.ok(inserted > 0)

  // The expected result: every local update of both sides merged directly,
  // without the server.
  const oracle = new Y.Doc()
  for (const u of [...localA, ...localB]) Y.applyUpdate(oracle, u)
  const expected = snapshot(oracle)
  await converged('A and B to converge to the merge of all 400 text edits (+ map/array edits)', [a, b], () => expected)

  const textA = a.doc.getText('t').toString()
  assert.equal(textA.length, oracle.getText('t').length, 'text length invariant (merge of all edits)')
  assert.equal(a.doc.getText('t').length, b.doc.getText('t').length)
  assert.ok(textA.isWellFormed(), 'converged text contains a lone surrogate (a non-BMP character was split)')
  assert.ok(!textA.includes('\uFFFD'), 'converged text contains U+FFFD (a non-BMP character was split)')

  // What a user would notice: emoji typed on one side show up intact on the other.
  a.doc.getText('t').insert(0, '🦀 done 😀 ')
  await until('B to receive the final emoji edit', () => b.doc.getText('t').toString().startsWith('🦀 done 😀 '), [[b.doc, 'update']])
  assert.equal(b.doc.getText('t').toString(), a.doc.getText('t').toString())
  oracle.destroy()
}))

// ---------------------------------------------------------------------------
// 2. late joiner
// ---------------------------------------------------------------------------

test('a late joiner receives the full content on sync', { timeout: TEST_TIMEOUT }, scenario(async (h) => {
  const server = await h.startServer()
  const docName = 'late.joiner'
  const a = h.client(server, docName, { clientID: 11 })
  const b = h.client(server, docName, { clientID: 22 })
  await Promise.all([waitSynced(a), waitSynced(b)])

  a.doc.getText('t').insert(0, 'Incident 🔥 summary. ')
  b.doc.getText('t').insert(0, 'Timeline 𝄞: ')
  a.doc.getMap('m').set('severity', 2)
  b.doc.getMap('m').set('owner', { name: 'Grace' })
  a.doc.getArray('a').push(['page on-call', 'roll back'])
  // A large edit: frame well over 64 KiB (extended WebSocket payload length).
  const big = 'lorem ipsum 😀 '.repeat(8000)
  b.doc.getText('t').insert(b.doc.getText('t').length, big)
  const frag = a.doc.getXmlFragment('prosemirror')
  const para = new Y.XmlElement('paragraph')
  para.insert(0, [new Y.XmlText('rich text')])
  frag.insert(0, [para])

  await converged('A and B to converge before the late joiner connects', [a, b], sameAs(a))
  await until('B to receive the xml fragment', () => b.doc.getXmlFragment('prosemirror').toString() === frag.toString(), [[b.doc, 'update']])

  const c = h.client(server, docName, { clientID: 33 })
  await waitSynced(c, 'late joiner C to sync')
  // y-websocket reports "synced" after applying the server's SyncStep2, so by
  // now C must show everything.
  assert.deepEqual(snapshot(c.doc), snapshot(a.doc), 'late joiner content right after sync')
  assert.equal(c.doc.getXmlFragment('prosemirror').toString(), frag.toString())
  assert.ok(c.doc.getText('t').toString().endsWith(big))

  // ... and can take part in editing.
  c.doc.getMap('m').set('resolved', true)
  await converged('A and B to see the late joiner\'s edit', [a, b, c], sameAs(c))
  assert.equal(a.doc.getMap('m').get('resolved'), true)
}))

// ---------------------------------------------------------------------------
// 3. offline edits merge after reconnect
// ---------------------------------------------------------------------------

test('offline edits merge after reconnect', { timeout: TEST_TIMEOUT }, scenario(async (h) => {
  const server = await h.startServer()
  const docName = 'offline:merge'
  const a = h.client(server, docName, { clientID: 1 })
  const b = h.client(server, docName, { clientID: 2 })
  await Promise.all([waitSynced(a), waitSynced(b)])

  a.doc.getText('t').insert(0, 'shared base. ')
  a.doc.getArray('a').push(['base'])
  await converged('B to receive the base content', [b], sameAs(a))

  a.provider.disconnect()
  assert.equal(a.provider.wsconnected, false, 'A should be disconnected after provider.disconnect()')

  // Both sides edit while A is offline.
  a.doc.getText('t').insert(0, 'A offline 😀. ')
  a.doc.getMap('m').set('fromA', 'offline edit')
  a.doc.getArray('a').push(['A item'])
  b.doc.getText('t').insert(b.doc.getText('t').length, 'B online 🚀.')
  b.doc.getMap('m').set('fromB', 'online edit')
  b.doc.getArray('a').unshift(['B item'])
  assert.ok(!b.doc.getText('t').toString().includes('A offline'), 'B must not see A\'s edits while A is offline')

  a.provider.connect()
  await waitSynced(a, 'A to sync again after provider.connect()')
  await converged('A and B to converge after A reconnected', [a, b], sameAs(a))

  for (const c of [a, b]) {
    const s = snapshot(c.doc)
    assert.ok(s.text.includes('A offline 😀. '), `client ${c.doc.clientID} lacks A's offline text: ${JSON.stringify(s.text)}`)
    assert.ok(s.text.includes('B online 🚀.'), `client ${c.doc.clientID} lacks B's text: ${JSON.stringify(s.text)}`)
    assert.ok(s.text.includes('shared base. '))
    assert.equal(s.map.fromA, 'offline edit')
    assert.equal(s.map.fromB, 'online edit')
    assert.deepEqual([...s.array].sort(), ['A item', 'B item', 'base'])
  }
}))

// ---------------------------------------------------------------------------
// 4. presence
// ---------------------------------------------------------------------------

/** Records awareness 'change' events of `client` so removals are not missed. */
const watchRemovals = (client) => {
  const removed = new Set()
  client.awareness.on('change', ({ removed: r }) => r.forEach((id) => removed.add(id)))
  return removed
}

test('presence: awareness states appear, update and disappear when a client leaves', { timeout: TEST_TIMEOUT }, scenario(async (h) => {
  const server = await h.startServer()
  const docName = 'presence'
  const a = h.client(server, docName, { clientID: 1001 })
  a.awareness.setLocalState({ user: { name: 'Ada' } })
  await waitSynced(a)

  // B joins after A set its state: the server must tell B about A.
  const b = h.client(server, docName, { clientID: 2002 })
  const removedAtB = watchRemovals(b)
  const stateOf = (client, id) => client.awareness.getStates().get(id)
  const describeB = () => `B's awareness states: ${JSON.stringify([...b.awareness.getStates()])}`
  await until('B to see Ada\'s presence', () => isDeepStrictEqual(stateOf(b, 1001), { user: { name: 'Ada' } }),
    [[b.awareness, 'change']], { ms: 5000, describe: describeB })

  // A sees B (B has the default empty state {} from the Awareness constructor).
  b.awareness.setLocalStateField('user', { name: 'Bob' })
  await until('A to see Bob\'s presence', () => isDeepStrictEqual(stateOf(a, 2002), { user: { name: 'Bob' } }),
    [[a.awareness, 'change']], { ms: 5000 })

  // Live updates are relayed.
  a.awareness.setLocalStateField('cursor', { anchor: 3, head: 9 })
  await until('B to see Ada\'s cursor', () => isDeepStrictEqual(stateOf(b, 1001), { user: { name: 'Ada' }, cursor: { anchor: 3, head: 9 } }),
    [[b.awareness, 'change']], { ms: 5000, describe: describeB })

  // A leaves (provider destroyed, socket closed): B sees A removed promptly.
  const t0 = Date.now()
  a.destroy()
  await until('B to see Ada removed after A was destroyed', () => removedAtB.has(1001) && !b.awareness.getStates().has(1001),
    [[b.awareness, 'change']], { ms: 5000, describe: describeB })
  const elapsed = Date.now() - t0
  assert.ok(elapsed < 5000, `removal took ${elapsed} ms`)
  assert.ok(b.awareness.getStates().has(2002), 'B keeps its own state')
}))

test('presence: a client whose connection drops without goodbye is removed for others', { timeout: TEST_TIMEOUT }, scenario(async (h) => {
  const server = await h.startServer()
  const docName = 'presence-drop'
  const a = h.client(server, docName, { clientID: 3003 })
  a.awareness.setLocalState({ user: { name: 'Grace' } })
  const b = h.client(server, docName, { clientID: 4004 })
  const removedAtB = watchRemovals(b)
  await Promise.all([waitSynced(a), waitSynced(b)])
  const describeB = () => `B's awareness states: ${JSON.stringify([...b.awareness.getStates()])}`
  await until('B to see Grace\'s presence', () => isDeepStrictEqual(b.awareness.getStates().get(3003), { user: { name: 'Grace' } }),
    [[b.awareness, 'change']], { ms: 5000, describe: describeB })

  // Kill A's socket abruptly (no awareness "null" message, no close frame),
  // like a crashed tab or a dropped network; the server must notice the
  // closed connection and tell B.
  a.provider.shouldConnect = false
  const t0 = Date.now()
  a.provider.ws.terminate()
  await until('B to see Grace removed after her connection dropped', () => removedAtB.has(3003) && !b.awareness.getStates().has(3003),
    [[b.awareness, 'change']], { ms: 5000, describe: describeB })
  assert.ok(Date.now() - t0 < 5000)
}))

// ---------------------------------------------------------------------------
// 5. durability across restart
// ---------------------------------------------------------------------------

test('content survives a server restart on the same data dir', { timeout: TEST_TIMEOUT }, scenario(async (h) => {
  const dataDir = h.tempDir()
  const docName = 'Durable:doc.v1_x-y'
  const otherName = 'second'

  let server = await h.startServer({ dataDir })
  const a = h.client(server, docName, { clientID: 5 })
  const b = h.client(server, docName, { clientID: 6 })
  const o1 = h.client(server, otherName, { clientID: 7 })
  const o2 = h.client(server, otherName, { clientID: 8 })
  await Promise.all([a, b, o1, o2].map((c) => waitSynced(c)))

  const rng = prng(SEED + 5)
  for (let i = 0; i < 60; i++) {
    randomTextEdit(rng, a.doc, 'A')
    if (i % 6 === 0) randomStructEdit(rng, a.doc, 'A')
  }
  a.doc.getText('t').insert(0, 'Postmortem 😀: ')
  o1.doc.getText('t').insert(0, 'other doc 𝄞')
  // Once the second provider has the edits, the server has them too.
  await converged('B to receive A\'s edits before the restart', [b], sameAs(a))
  await converged('second doc to sync before the restart', [o2], sameAs(o1))
  const before = snapshot(a.doc)
  const otherBefore = snapshot(o1.doc)

  // SIGTERM with clients still connected; must exit 0.
  await h.stopServer(server)
  for (const c of [a, b, o1, o2]) c.destroy()

  server = await h.startServer({ dataDir })
  const c = h.client(server, docName, { clientID: 9 })
  const o3 = h.client(server, otherName, { clientID: 10 })
  await Promise.all([waitSynced(c, 'fresh provider to sync after restart'), waitSynced(o3)])
  assert.deepEqual(snapshot(c.doc), before, 'content after restart')
  assert.deepEqual(snapshot(o3.doc), otherBefore, 'second doc after restart')

  // Edits made after a restart are durable too.
  const d = h.client(server, docName, { clientID: 12 })
  await waitSynced(d)
  c.doc.getMap('m').set('after-restart', 'yes 🚀')
  await converged('D to receive the post-restart edit', [d], sameAs(c))
  const after = snapshot(c.doc)
  await h.stopServer(server)
  for (const x of [c, o3, d]) x.destroy()

  server = await h.startServer({ dataDir })
  const e = h.client(server, docName, { clientID: 13 })
  await waitSynced(e, 'fresh provider to sync after the second restart')
  assert.deepEqual(snapshot(e.doc), after, 'content after the second restart')
}))

// ---------------------------------------------------------------------------
// 6. isolation
// ---------------------------------------------------------------------------

test('two documents are isolated', { timeout: TEST_TIMEOUT }, scenario(async (h) => {
  const server = await h.startServer()
  const x1 = h.client(server, 'x', { clientID: 21 })
  const x2 = h.client(server, 'x', { clientID: 22 })
  const y1 = h.client(server, 'y', { clientID: 31 })
  const y2 = h.client(server, 'y', { clientID: 32 })
  x1.awareness.setLocalState({ user: { name: 'in-x' } })
  y1.awareness.setLocalState({ user: { name: 'in-y' } })
  await Promise.all([x1, x2, y1, y2].map((c) => waitSynced(c)))

  // Watch everything that ever reaches the y docs.
  const leaks = []
  for (const c of [y1, y2]) {
    c.doc.on('update', () => {
      const s = JSON.stringify(snapshot(c.doc))
      if (s.includes('only-in-x')) leaks.push(`doc y (client ${c.doc.clientID}) got: ${s}`)
    })
  }

  x1.doc.getText('t').insert(0, 'only-in-x')
  x1.doc.getMap('m').set('only-in-x', 1)
  y1.doc.getText('t').insert(0, 'only-in-y')
  await converged('x2 to receive the edit in x', [x2], sameAs(x1))
  await converged('y2 to receive the edit in y', [y2], sameAs(y1))
  await until('y2 to see y1\'s presence', () => y2.awareness.getStates().has(31), [[y2.awareness, 'change']], { ms: 5000 })
  await until('x2 to see x1\'s presence', () => x2.awareness.getStates().has(21), [[x2.awareness, 'change']], { ms: 5000 })

  // A late joiner of y gets exactly y's content.
  const y3 = h.client(server, 'y', { clientID: 33 })
  await waitSynced(y3)
  await until('y3 to see y1\'s presence', () => y3.awareness.getStates().has(31), [[y3.awareness, 'change']], { ms: 5000 })
  // One more round trip on y after x's edits were delivered in x.
  y2.doc.getText('t').insert(9, '!')
  await converged('y docs to converge', [y1, y3], sameAs(y2))

  assert.deepEqual(leaks, [])
  for (const c of [y1, y2, y3]) {
    assert.deepEqual(snapshot(c.doc), { text: 'only-in-y!', map: {}, array: [] }, `doc y as seen by client ${c.doc.clientID}`)
    for (const id of c.awareness.getStates().keys()) {
      assert.ok([31, 32, 33].includes(id), `client ${id} from doc x appears in doc y's presence`)
    }
  }
  for (const c of [x1, x2]) {
    assert.deepEqual(snapshot(c.doc), { text: 'only-in-x', map: { 'only-in-x': 1 }, array: [] })
    for (const id of c.awareness.getStates().keys()) {
      assert.ok([21, 22].includes(id), `client ${id} from doc y appears in doc x's presence`)
    }
  }
}))
