// Stock-client integration tests of the Hocuspocus dialect: the real
// `@hocuspocus/provider` (v4, one shared HocuspocusProviderWebsocket per
// "browser tab") against a Debrief server process at /collab.
//
//   cd tests/js && npm test
//
// Every wait is on an event (provider 'synced'/'authenticated'/
// 'unsyncedChanges'/'stateless', Y.Doc 'update', awareness 'change', frames
// seen by the socket) with a timeout that fails with a message.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { scenario, until, prng, useReference } from './harness.mjs'

const SEED = Number(process.env.DEBRIEF_TEST_SEED || 0x0deb21ef)
const TEST_TIMEOUT = 30_000
const TOKENS = ['--token', 'writer-secret', '--read-only-token', 'reader-secret']

// The reference y-websocket server has no /collab.
const opts = { timeout: TEST_TIMEOUT, skip: useReference && 'Debrief only' }

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

const text = (client) => client.doc.getText('t').toString()

const waitText = (client, expected, what) =>
  until(what ?? `text ${JSON.stringify(expected)}`, () => text(client) === expected, [[client.doc, 'update']], {
    describe: () => `text=${JSON.stringify(text(client))}`
  })

/** The SyncStatus values the socket received for `name` ([varString name, 8, varInt]). */
const syncStatuses = (socket, name) => {
  const prefix = [name.length, ...Buffer.from(name)]
  return socket.frames
    .filter((f) => f.length === prefix.length + 2 && prefix.every((b, i) => f[i] === b) && f[prefix.length] === 8)
    .map((f) => f[prefix.length + 1])
}

test('three documents over one shared socket per side converge with no cross-talk', opts, scenario(async (h) => {
  const server = await h.startServer()
  const names = ['alpha', 'beta', 'gamma']
  const left = h.hocusSocket(server)
  const right = h.hocusSocket(server)
  let opened = 0
  for (const socket of [left, right]) socket.on('open', () => { opened += 1 })
  const pairs = names.map((name) => [h.hocusClient(left, name), h.hocusClient(right, name)])
  for (const [a, b] of pairs) {
    await waitReady(a)
    await waitReady(b)
  }

  const rand = prng(SEED)
  for (let i = 0; i < 90; i++) {
    const d = rand.int(names.length)
    const client = pairs[d][rand.int(2)]
    const t = client.doc.getText('t')
    if (t.length > 0 && rand() < 0.25) {
      const at = rand.int(t.length)
      t.delete(at, Math.min(3, t.length - at))
    } else {
      t.insert(rand.int(t.length + 1), `<${names[d]}:${i}>😀`)
    }
  }
  for (const [a, b] of pairs) {
    await until('both sides of a document to converge', () => text(a) === text(b), [[a.doc, 'update'], [b.doc, 'update']], {
      describe: () => `a=${JSON.stringify(text(a))}\nb=${JSON.stringify(text(b))}`
    })
    await waitSaved(a)
    await waitSaved(b)
  }
  // The names share no letters that could be pieced together by deletions: any other name in a
  // document's text came from another document.
  for (const [d, [a]] of pairs.entries()) {
    assert.ok(text(a).includes(names[d]), `document ${names[d]} got its edits: ${text(a)}`)
    for (const other of names.filter((n) => n !== names[d])) {
      assert.ok(!text(a).includes(other), `document ${names[d]} holds text of ${other}: ${text(a)}`)
    }
  }
  assert.equal(opened, 2, 'each side used exactly one socket for its three documents')
}))

test('a y-websocket client and a Hocuspocus client edit one document and converge', opts, scenario(async (h) => {
  const server = await h.startServer()
  const y = h.client(server, 'mixed')
  const hocus = h.hocusClient(h.hocusSocket(server), 'mixed')
  await until('y-websocket client to sync', () => y.provider.synced, [[y.provider, 'sync']])
  await waitReady(hocus)

  y.doc.getText('t').insert(0, 'from y-websocket. ')
  await waitText(hocus, 'from y-websocket. ')
  hocus.doc.getText('t').insert(0, 'from hocuspocus. ')
  await waitText(y, 'from hocuspocus. from y-websocket. ')
  await waitSaved(hocus)
}))

test('a late joiner receives a document of several hundred KiB, sent in WebSocket fragments', opts, scenario(async (h) => {
  const server = await h.startServer()
  const writer = h.hocusClient(h.hocusSocket(server), 'big')
  await waitReady(writer)
  // Over 64 KiB, the server sends a message in fragments; the provider must see it whole.
  const big = 'the pager went off at 03:12 🔔 '.repeat(20000)
  writer.doc.getText('t').insert(0, big)
  await waitSaved(writer)
  const late = [1, 2].map(() => h.hocusClient(h.hocusSocket(server), 'big'))
  for (const client of late) {
    await waitReady(client, 'a late joiner to sync')
    assert.equal(text(client), big)
  }
}))

test('awareness travels between providers and disappears when one leaves', opts, scenario(async (h) => {
  const server = await h.startServer()
  const a = h.hocusClient(h.hocusSocket(server), 'presence')
  const b = h.hocusClient(h.hocusSocket(server), 'presence')
  await waitReady(a)
  await waitReady(b)
  a.awareness.setLocalStateField('user', { name: 'Ada', color: '#c33' })
  const idA = a.doc.clientID
  await until("Ada's presence at b", () => b.awareness.getStates().get(idA)?.user?.name === 'Ada', [[b.awareness, 'change']])
  a.destroy()
  await until("Ada's presence to disappear at b", () => !b.awareness.getStates().has(idA), [[b.awareness, 'change']], {
    describe: () => `b sees ${JSON.stringify([...b.awareness.getStates().keys()])}`
  })
}))

test('a read-only token: Authenticated(readonly), edits refused with SyncStatus 0, document unchanged', opts, scenario(async (h) => {
  const server = await h.startServer({ args: TOKENS })
  const writer = h.hocusClient(h.hocusSocket(server), 'report', { token: 'writer-secret' })
  await waitReady(writer)
  assert.deepEqual(writer.scopes, ['read-write'])
  writer.doc.getText('t').insert(0, 'hello')
  await waitSaved(writer)

  const readerSocket = h.hocusSocket(server)
  const reader = h.hocusClient(readerSocket, 'report', { token: 'reader-secret' })
  await waitReady(reader)
  assert.deepEqual(reader.scopes, ['readonly'])
  await waitText(reader, 'hello')
  // The reader's own handshake (its SyncStep2 holds nothing new) is acknowledged.
  await waitSaved(reader, "the reader's handshake to be acknowledged")
  assert.deepEqual(syncStatuses(readerSocket, 'report'), [1])

  reader.doc.getText('t').insert(5, ' from a reader')
  await until('SyncStatus 0 for the refused edit', () => syncStatuses(readerSocket, 'report').includes(0), [[readerSocket, 'message']], {
    describe: () => `statuses=${JSON.stringify(syncStatuses(readerSocket, 'report'))}`
  })
  assert.equal(reader.provider.hasUnsyncedChanges, true, 'a refused edit stays unsaved')

  // The refusal came first; a later edit by the writer reaches the reader, and nothing of the
  // reader's edit ever reached the writer or the server.
  writer.doc.getText('t').insert(5, ' world')
  await waitSaved(writer)
  await until('the reader to get the writer’s edit', () => text(reader).includes(' world'), [[reader.doc, 'update']])
  assert.equal(text(writer), 'hello world')
  const fresh = h.hocusClient(h.hocusSocket(server), 'report', { token: 'writer-secret' })
  await waitReady(fresh)
  assert.equal(text(fresh), 'hello world', 'the stored document never took the reader’s edit')
}))

test('a wrong token gets PermissionDenied, then a good token works on the same socket', opts, scenario(async (h) => {
  const server = await h.startServer({ args: TOKENS })
  const socket = h.hocusSocket(server)
  let opened = 0
  socket.on('open', () => { opened += 1 })
  const denied = h.hocusClient(socket, 'report', { token: 'wrong' })
  await until('authenticationFailed', () => denied.failures.length > 0, [[denied.provider, 'authenticationFailed']])
  assert.match(denied.failures[0], /^invalid_token: /)
  assert.equal(denied.provider.isAuthenticated, false)

  const retry = h.hocusClient(socket, 'report', { token: 'writer-secret' })
  await waitReady(retry, 'the retry to authenticate on the same socket')
  assert.deepEqual(retry.scopes, ['read-write'])
  retry.doc.getText('t').insert(0, 'after the retry')
  await waitSaved(retry)
  assert.equal(opened, 1, 'the retry used the socket that was refused')

  const other = h.hocusClient(h.hocusSocket(server), 'report', { token: 'writer-secret' })
  await waitReady(other)
  assert.equal(text(other), 'after the retry')
}))

test('hasUnsyncedChanges returns to false after a burst of edits, and they are all stored', opts, scenario(async (h) => {
  const server = await h.startServer()
  const socket = h.hocusSocket(server)
  const writer = h.hocusClient(socket, 'burst')
  await waitReady(writer)
  await waitSaved(writer)
  const t = writer.doc.getText('t')
  let expected = ''
  for (let i = 0; i < 300; i++) {
    const piece = `${i % 10}`
    t.insert(t.length, piece)
    expected += piece
  }
  assert.equal(writer.provider.hasUnsyncedChanges, true, 'the burst is not acknowledged synchronously')
  await waitSaved(writer, 'all 300 edits to be acknowledged')

  // Restart: acknowledged means stored. (The socket goes first, or it keeps reconnecting.)
  writer.destroy()
  socket.destroy()
  await h.stopServer(server)
  const again = await h.startServer({ dataDir: server.dataDir })
  const reader = h.hocusClient(h.hocusSocket(again), 'burst')
  await waitReady(reader)
  assert.equal(text(reader), expected)
}))

test('stateless messages reach the server and unknown ones get a JSON error', opts, scenario(async (h) => {
  const server = await h.startServer()
  const client = h.hocusClient(h.hocusSocket(server), 'commands')
  await waitReady(client)
  const replies = []
  client.provider.on('stateless', ({ payload }) => replies.push(JSON.parse(payload)))
  client.provider.sendStateless(JSON.stringify({ type: 'no-such-command' }))
  await until('a reply to the unknown command', () => replies.length >= 1, [[client.provider, 'stateless']])
  assert.equal(replies[0].type, 'error')
  assert.equal(replies[0].code, 'unknown_command')
  client.provider.sendStateless('not json')
  await until('a reply to the invalid payload', () => replies.length >= 2, [[client.provider, 'stateless']])
  assert.equal(replies[1].code, 'invalid_payload')
}))
