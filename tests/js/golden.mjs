// Generates the golden wire vectors used by the Rust `proto` crate's tests.
//
//   node golden.mjs
//
// Writes (relative to the repository root):
//   proto/tests/golden/lib0.json      lib0 varUint / varString / varUint8Array encodings
//   proto/tests/golden/messages.json  y-websocket frames built with y-protocols' own encoders
//
// Everything here is deterministic: every Y.Doc gets a fixed clientID and fixed
// content, so running the script twice produces byte-identical files.
//
// A "frame" is the payload of one binary WebSocket message as y-websocket sends
// it (the WebSocket framing header itself is not included). Each frame is built
// with y-protocols' encoders; the expected `messages` list is built separately
// from the Yjs / Awareness APIs, and the script then decodes every frame with
// lib0's decoders and checks it against that list before writing anything.

import { writeFileSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import assert from 'node:assert/strict'

import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as authProtocol from 'y-protocols/auth'

const here = dirname(fileURLToPath(import.meta.url))
const outDir = join(here, '..', '..', 'proto', 'tests', 'golden')

// y-websocket's top-level message types.
const MSG_SYNC = 0
const MSG_AWARENESS = 1
const MSG_AUTH = 2
const MSG_QUERY_AWARENESS = 3

const toHex = (bytes) => Buffer.from(bytes).toString('hex')
const encodeWith = (fn) => {
  const enc = encoding.createEncoder()
  fn(enc)
  return encoding.toUint8Array(enc)
}

// ---------------------------------------------------------------------------
// lib0.json
// ---------------------------------------------------------------------------

const lib0Vectors = () => {
  const out = []
  const varUints = [
    0, 1, 127, 128, 300, 16383, 16384,
    2 ** 21 - 1, 2 ** 21, 2 ** 31 - 1, 2 ** 31,
    2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1
  ]
  for (const value of varUints) {
    out.push({ kind: 'varUint', value, hex: toHex(encodeWith((e) => encoding.writeVarUint(e, value))) })
  }

  let ascii200 = ''
  for (let i = 0; i < 200; i++) ascii200 += String.fromCharCode(97 + (i % 26))
  const varStrings = [
    '',
    'a',
    'héllo',
    'emoji 😀 mix',
    ascii200,
    'é'.repeat(200), // 200 UTF-16 units, 400 UTF-8 bytes: length prefix needs 2 bytes
    '日本語テキスト',
    '𝄞 music 🎵 and 👩‍💻 zwj',
    '{"user":{"name":"Ada"}}'
  ]
  for (const value of varStrings) {
    out.push({ kind: 'varString', value, hex: toHex(encodeWith((e) => encoding.writeVarString(e, value))) })
  }

  const bytes300 = new Uint8Array(300)
  for (let i = 0; i < 300; i++) bytes300[i] = (i * 7 + 3) & 0xff
  const varArrays = [new Uint8Array(0), Uint8Array.of(0x00, 0x7f, 0xff), bytes300]
  for (const value of varArrays) {
    out.push({ kind: 'varUint8Array', value: toHex(value), hex: toHex(encodeWith((e) => encoding.writeVarUint8Array(e, value))) })
  }

  // Self-check: decode every vector with lib0's decoders.
  for (const v of out) {
    const d = decoding.createDecoder(Buffer.from(v.hex, 'hex'))
    if (v.kind === 'varUint') assert.equal(decoding.readVarUint(d), v.value)
    if (v.kind === 'varString') assert.equal(decoding.readVarString(d), v.value)
    if (v.kind === 'varUint8Array') assert.equal(toHex(decoding.readVarUint8Array(d)), v.value)
    assert.equal(decoding.hasContent(d), false, `trailing bytes in ${JSON.stringify(v)}`)
  }
  return out
}

// ---------------------------------------------------------------------------
// messages.json
// ---------------------------------------------------------------------------

/** A Y.Doc with a fixed clientID (must be set before anything is inserted). */
const newDoc = (clientID) => {
  const doc = new Y.Doc()
  doc.clientID = clientID
  return doc
}

/** Runs `fn` on `doc` and returns the single update it produced. */
const captureUpdate = (doc, fn) => {
  const updates = []
  const onUpdate = (u) => updates.push(u)
  doc.on('update', onUpdate)
  doc.transact(() => fn(doc))
  doc.off('update', onUpdate)
  assert.equal(updates.length, 1)
  return updates[0]
}

/** An Awareness whose clock for its own client has been advanced to `clock`. */
const newAwareness = (clientID, state, clock = 0) => {
  const doc = newDoc(clientID)
  const aw = new awarenessProtocol.Awareness(doc) // sets {} at clock 0
  clearInterval(aw._checkInterval) // no timer: this script must exit on its own
  for (let c = 1; c <= clock; c++) aw.setLocalState({ tick: c })
  aw.setLocalState(state) // final clock: clock + 1
  return aw
}

// Frame writers: each appends one y-websocket message to an encoder, using
// y-protocols' encoders, with the same type prefixes y-websocket uses.
const w = {
  step1: (doc) => (e) => { encoding.writeVarUint(e, MSG_SYNC); syncProtocol.writeSyncStep1(e, doc) },
  step2: (doc, sv) => (e) => { encoding.writeVarUint(e, MSG_SYNC); syncProtocol.writeSyncStep2(e, doc, sv) },
  update: (u) => (e) => { encoding.writeVarUint(e, MSG_SYNC); syncProtocol.writeUpdate(e, u) },
  awareness: (aw, clients) => (e) => {
    encoding.writeVarUint(e, MSG_AWARENESS)
    encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(aw, clients))
  },
  awarenessRaw: (update) => (e) => { encoding.writeVarUint(e, MSG_AWARENESS); encoding.writeVarUint8Array(e, update) },
  authDenied: (reason) => (e) => { encoding.writeVarUint(e, MSG_AUTH); authProtocol.writePermissionDenied(e, reason) },
  queryAwareness: () => (e) => { encoding.writeVarUint(e, MSG_QUERY_AWARENESS) }
}

// Expected message objects, built from the Yjs / Awareness APIs directly.
const m = {
  step1: (doc) => ({ kind: 'sync_step1', payload: toHex(Y.encodeStateVector(doc)) }),
  step2: (doc, sv) => ({ kind: 'sync_step2', payload: toHex(Y.encodeStateAsUpdate(doc, sv)) }),
  update: (u) => ({ kind: 'sync_update', payload: toHex(u) }),
  awareness: (aw, clients) => ({
    kind: 'awareness',
    entries: clients.map((client) => ({
      client,
      clock: aw.meta.get(client).clock,
      state: JSON.stringify(aw.getStates().get(client) ?? null)
    }))
  }),
  authDenied: (reason) => ({ kind: 'auth_denied', reason }),
  queryAwareness: () => ({ kind: 'query_awareness' })
}

/** Decodes a frame with lib0 decoders into the same message-object shape. */
const decodeFrame = (bytes) => {
  const d = decoding.createDecoder(bytes)
  const msgs = []
  while (decoding.hasContent(d)) {
    const type = decoding.readVarUint(d)
    if (type === MSG_SYNC) {
      const sub = decoding.readVarUint(d)
      const payload = toHex(decoding.readVarUint8Array(d))
      const kind = ['sync_step1', 'sync_step2', 'sync_update'][sub]
      assert.ok(kind, `unknown sync sub-type ${sub}`)
      msgs.push({ kind, payload })
    } else if (type === MSG_AWARENESS) {
      const inner = decoding.createDecoder(decoding.readVarUint8Array(d))
      const n = decoding.readVarUint(inner)
      const entries = []
      for (let i = 0; i < n; i++) {
        const client = decoding.readVarUint(inner)
        const clock = decoding.readVarUint(inner)
        const state = decoding.readVarString(inner)
        entries.push({ client, clock, state })
      }
      assert.equal(decoding.hasContent(inner), false)
      msgs.push({ kind: 'awareness', entries })
    } else if (type === MSG_AUTH) {
      assert.equal(decoding.readVarUint(d), authProtocol.messagePermissionDenied)
      msgs.push({ kind: 'auth_denied', reason: decoding.readVarString(d) })
    } else if (type === MSG_QUERY_AWARENESS) {
      msgs.push({ kind: 'query_awareness' })
    } else {
      throw new Error(`unknown message type ${type}`)
    }
  }
  return msgs
}

const messageVectors = () => {
  const vectors = []
  /**
   * @param {string} name
   * @param {Array<[(e: any) => void, object]>} parts  [frame writer, expected message]
   */
  const add = (name, parts) => {
    const enc = encoding.createEncoder()
    for (const [write] of parts) write(enc)
    const bytes = encoding.toUint8Array(enc)
    const messages = parts.map(([, msg]) => msg)
    assert.deepEqual(decodeFrame(bytes), messages, `self-check failed for ${name}`)
    vectors.push({ name, frame: toHex(bytes), messages })
  }

  // --- documents ----------------------------------------------------------
  const empty = newDoc(1)

  const textDoc = newDoc(1001)
  const textInsert = captureUpdate(textDoc, (d) => d.getText('content').insert(0, 'Hello, Debrief!'))
  const textFormat = captureUpdate(textDoc, (d) => d.getText('content').format(0, 5, { bold: true }))
  const textDelete = captureUpdate(textDoc, (d) => d.getText('content').delete(5, 2))

  const emojiDoc = newDoc(2002)
  emojiDoc.getText('content').insert(0, 'Timeline 🔥 outage at 03:14 😀 — root cause: 𝄞 café')

  const mapDoc = newDoc(3003)
  const mapSet = captureUpdate(mapDoc, (d) => {
    const meta = d.getMap('meta')
    meta.set('title', 'DB failover post-mortem')
    meta.set('severity', 2)
    meta.set('resolved', true)
    meta.set('tags', ['db', 'failover'])
    meta.set('owner', { name: 'Ada', id: 7 })
  })
  const mapOverwrite = captureUpdate(mapDoc, (d) => d.getMap('meta').set('severity', 1))

  const arrayDoc = newDoc(4004)
  const arrayPush = captureUpdate(arrayDoc, (d) => d.getArray('actions').push(['page on-call', 42, null, { done: false }]))

  const xmlDoc = newDoc(5005)
  const xmlUpdate = captureUpdate(xmlDoc, (d) => {
    const frag = d.getXmlFragment('prosemirror')
    const heading = new Y.XmlElement('heading')
    heading.setAttribute('level', '1')
    heading.insert(0, [new Y.XmlText('Summary')])
    const para = new Y.XmlElement('paragraph')
    const t = new Y.XmlText()
    para.insert(0, [t])
    frag.insert(0, [heading, para])
    t.insert(0, 'Customer-facing impact: 42 minutes.')
    t.format(0, 15, { bold: true })
  })

  // Large client id (> 2^31): clientIDs are uint32 and need 5-byte varUints.
  const bigClientDoc = newDoc(4294967295)
  const bigClientUpdate = captureUpdate(bigClientDoc, (d) => d.getText('content').insert(0, 'big client id'))

  // A doc that has seen two clients (state vector with two entries).
  const mergedDoc = newDoc(6006)
  Y.applyUpdate(mergedDoc, Y.encodeStateAsUpdate(textDoc))
  Y.applyUpdate(mergedDoc, Y.encodeStateAsUpdate(emojiDoc))

  // --- awareness ----------------------------------------------------------
  const ada = newAwareness(11, { user: { name: 'Ada', color: '#ff8800' } })
  const grace = newAwareness(22, { user: { name: 'Grace' }, cursor: { anchor: 3, head: 7 } }, 2)
  // Both known to one awareness instance, as a server relaying them would hold them.
  const both = newAwareness(99, null)
  awarenessProtocol.applyAwarenessUpdate(both, awarenessProtocol.encodeAwarenessUpdate(ada, [11]), 'test')
  awarenessProtocol.applyAwarenessUpdate(both, awarenessProtocol.encodeAwarenessUpdate(grace, [22]), 'test')
  // Ada leaves: her state becomes null with a bumped clock.
  const adaGone = newAwareness(11, { user: { name: 'Ada', color: '#ff8800' } })
  adaGone.setLocalState(null)
  const unicodeAw = newAwareness(3000000000, { user: { name: 'Zoë 😀' } }, 5)

  // --- vectors ------------------------------------------------------------
  add('sync_step1_empty_doc', [[w.step1(empty), m.step1(empty)]])
  add('sync_step1_text_doc', [[w.step1(textDoc), m.step1(textDoc)]])
  add('sync_step1_two_clients', [[w.step1(mergedDoc), m.step1(mergedDoc)]])
  add('sync_step1_big_client_id', [[w.step1(bigClientDoc), m.step1(bigClientDoc)]])
  add('sync_step2_empty_doc', [[w.step2(empty), m.step2(empty)]])
  add('sync_step2_text_with_emoji', [[w.step2(emojiDoc), m.step2(emojiDoc)]])
  const svOfText = Y.encodeStateVector(textDoc)
  add('sync_step2_diff_against_state_vector', [[w.step2(mergedDoc, svOfText), m.step2(mergedDoc, svOfText)]])
  add('sync_update_text_insert', [[w.update(textInsert), m.update(textInsert)]])
  add('sync_update_text_format', [[w.update(textFormat), m.update(textFormat)]])
  add('sync_update_text_delete', [[w.update(textDelete), m.update(textDelete)]])
  add('sync_update_map_set', [[w.update(mapSet), m.update(mapSet)]])
  add('sync_update_map_overwrite', [[w.update(mapOverwrite), m.update(mapOverwrite)]])
  add('sync_update_array_push', [[w.update(arrayPush), m.update(arrayPush)]])
  add('sync_update_xml_fragment', [[w.update(xmlUpdate), m.update(xmlUpdate)]])
  add('sync_update_big_client_id', [[w.update(bigClientUpdate), m.update(bigClientUpdate)]])
  add('awareness_one_client', [[w.awareness(ada, [11]), m.awareness(ada, [11])]])
  add('awareness_two_clients', [[w.awareness(both, [11, 22]), m.awareness(both, [11, 22])]])
  add('awareness_null_state_client_removed', [[w.awareness(adaGone, [11]), m.awareness(adaGone, [11])]])
  add('awareness_unicode_big_client_id', [[w.awareness(unicodeAw, [3000000000]), m.awareness(unicodeAw, [3000000000])]])
  add('awareness_empty_update', [[w.awarenessRaw(Uint8Array.of(0)), { kind: 'awareness', entries: [] }]])
  add('auth_permission_denied', [[w.authDenied('document is read-only for you'), m.authDenied('document is read-only for you')]])
  add('auth_permission_denied_empty_reason', [[w.authDenied(''), m.authDenied('')]])
  add('query_awareness', [[w.queryAwareness(), m.queryAwareness()]])
  // Several messages back to back in one frame.
  add('multi_step1_then_awareness', [
    [w.step1(textDoc), m.step1(textDoc)],
    [w.awareness(ada, [11]), m.awareness(ada, [11])]
  ])
  add('multi_update_then_update', [
    [w.update(textInsert), m.update(textInsert)],
    [w.update(mapSet), m.update(mapSet)]
  ])
  add('multi_step1_step2_query_awareness', [
    [w.step1(empty), m.step1(empty)],
    [w.step2(emojiDoc), m.step2(emojiDoc)],
    [w.queryAwareness(), m.queryAwareness()]
  ])

  // Sanity: the recorded updates really reproduce the documents.
  const replay = newDoc(77)
  for (const u of [textInsert, textFormat, textDelete]) Y.applyUpdate(replay, u)
  assert.equal(replay.getText('content').toString(), textDoc.getText('content').toString())

  return vectors
}

const writeJson = (file, data) => {
  const path = join(outDir, file)
  writeFileSync(path, JSON.stringify(data, null, 2) + '\n')
  console.log(`wrote ${path} (${data.length} entries)`)
}

mkdirSync(outDir, { recursive: true })
writeJson('lib0.json', lib0Vectors())
writeJson('messages.json', messageVectors())
