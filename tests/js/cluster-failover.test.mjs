// Stock clients through failovers of a document's owner on a cluster of three Debrief nodes
// (issue 18, tests 3, 5 and 6; docs/cluster.md). The Rust versions (cluster.rs) use our own
// client; these use the stock y-websocket and Hocuspocus providers, of both dialects, spread
// over the nodes, with the reconnect delays users get:
//   3. the owner paused (SIGSTOP) past its lease: another node takes the document over and the
//      other nodes' providers are served again and go on editing; the paused node acknowledges
//      and relays nothing it could not commit, is fenced once resumed (its providers are closed
//      and come back through a live owner, their changes with them), and stops cleanly;
//   5. every node in turn stopped with SIGTERM (a new one started each time) while providers
//      write without pause through a load balancer: nothing is lost, every provider converges,
//      and none waits anything like a lease to be served again (a stopping node hands over);
//   6. the reconnect storm after `kill -9` of the owner of four documents: 40 providers on the
//      other nodes are all served again with what was acknowledged or received, and the time
//      from the kill to each being synced again is printed.
//
// Needs DEBRIEF_TEST_POSTGRES (scripts/test starts PostgreSQL and exports it); each test makes a
// database of its own with psql.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { EventEmitter } from 'node:events'

import { scenario, until, waitSynced } from './harness.mjs'
import { LEASE_MS, TEST_TIMEOUT, converged, createDatabase, skip, startBalancer, startCluster, text } from './cluster.mjs'

// Every y-websocket provider listens for the process's exit; the storm has 20 at once.
process.setMaxListeners(64)

/** One row of `sql` on database `url`, as text (empty if none). */
const query = (url, sql) => execFileSync('psql', [url, '-tAc', sql], { encoding: 'utf8' }).trim()

/** The id of the node recorded as owner of `doc`. */
const ownerOf = (url, doc) => query(url, `SELECT coalesce(owner, '') FROM documents WHERE name = '${doc}'`)

/** The index in `nodes` of the node registered as owner of `doc` (by its link's address, which
 * each node logs at start), or -1. */
const ownerIndex = (url, nodes, doc) => {
  const owner = ownerOf(url, doc)
  const address = owner && query(url, `SELECT address FROM nodes WHERE id = '${owner}'`)
  if (!address) return -1
  return nodes.findIndex((n) => n.lines.some((l) => l.includes('listening for links') && l.includes(`advertise=${address}`)))
}

/**
 * Watches a stock provider of either dialect: `acks` counts the acknowledgements a Hocuspocus
 * provider applied (its SyncStatus messages), `closes` its connection's ends, and `waits` how long
 * each time it took from the end of a connection to being synced again; `servedAt` is when it
 * was last synced again after losing a connection. `changed` fires on any of these.
 */
const watch = (client) => {
  const p = client.provider
  const w = { acks: 0, closes: 0, lostAt: null, waits: [], servedAt: null, changed: new EventEmitter() }
  const lost = () => {
    w.closes++
    if (w.lostAt === null) w.lostAt = Date.now()
    w.changed.emit('change')
  }
  const served = () => {
    if (w.lostAt === null) return
    w.servedAt = Date.now()
    w.waits.push(w.servedAt - w.lostAt)
    w.lostAt = null
    w.changed.emit('change')
  }
  if (p.decrementUnsyncedChanges) {
    // Hocuspocus: an applied SyncStatus message is the server's acknowledgement.
    const decrement = p.decrementUnsyncedChanges.bind(p)
    p.decrementUnsyncedChanges = () => {
      w.acks++
      decrement()
      w.changed.emit('change')
    }
    p.on('close', lost)
    p.on('synced', () => { if (p.isAuthenticated) served() })
  } else {
    p.on('connection-close', lost)
    p.on('sync', (synced) => { if (synced) served() })
  }
  client.watch = w
  return w
}

/** Synced, for either dialect (a Hocuspocus provider also authenticated). */
const isSynced = (c) => c.provider.decrementUnsyncedChanges ? c.provider.isAuthenticated && c.provider.synced : c.provider.synced

/** Synced and, for Hocuspocus, everything acknowledged. */
const settled = (c) => isSynced(c) && !(c.provider.hasUnsyncedChanges ?? false)

/** The events after which a check on `clients` may have changed. */
const events = (clients) => clients.flatMap((c) => [[c.doc, 'update'], ...(c.watch ? [[c.watch.changed, 'change']] : []),
  ...(c.provider.decrementUnsyncedChanges ? [[c.provider, 'synced'], [c.provider, 'unsyncedChanges']] : [[c.provider, 'sync']])])

/** The value at percentile `p` of the sorted `sorted`. */
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p / 100))]

test('a paused owner is fenced once another node took over; nothing it could not commit was acknowledged or seen', { timeout: TEST_TIMEOUT, skip }, scenario(async (h) => {
  const url = createDatabase()
  const nodes = await startCluster(h, 3, { url })
  // The node paused is not the one serving reviews (the first started): that one, resumed,
  // must stop with an error for having lost the review role (cluster_reviews.rs).
  const doc = 'owner-paused'
  // Providers of both dialects on the node that will be paused; the first opens the document,
  // so that node owns it.
  const writerSocket = h.hocusSocket(nodes[1])
  const writer = h.hocusClient(writerSocket, doc)
  watch(writer)
  await until('the paused node\'s Hocuspocus provider to sync', () => isSynced(writer), events([writer]))
  assert.equal(ownerIndex(url, nodes, doc), 1, 'the first provider\'s node owns the document')
  const wsWriter = h.client(nodes[1], doc)
  // Providers of both dialects on each other node.
  const others = [h.client(nodes[0], doc), h.hocusClient(h.hocusSocket(nodes[0]), doc),
    h.client(nodes[2], doc), h.hocusClient(h.hocusSocket(nodes[2]), doc)]
  for (const c of [wsWriter, ...others]) watch(c)
  await until('every provider to sync', () => [wsWriter, ...others].every(isSynced), events([wsWriter, ...others]))
  writer.doc.getText('t').insert(0, 'relayed before the pause; ')
  await until('the change to be acknowledged', () => settled(writer), events([writer]))
  await converged([writer, wsWriter, ...others], 'relayed before the pause; ', 'every provider to receive it')
  const ownerBefore = ownerOf(url, doc)

  nodes[1].child.kill('SIGSTOP')
  const pausedAt = Date.now()
  // Written while the owner is paused: each reaches the paused node's socket, not its database.
  const acksBefore = writer.watch.acks
  writer.doc.getText('t').insert(0, 'hocuspocus during the pause; ')
  wsWriter.doc.getText('t').insert(0, 'y-websocket during the pause; ')
  const duringPause = ['hocuspocus during the pause; ', 'y-websocket during the pause; ']
  const leaked = () => others.filter((c) => duringPause.some((s) => text(c).includes(s)))
  // The other nodes' links to the paused owner fall silent: their providers are closed, come back
  // to their node, and are served again once another node took the document over.
  await until('the other nodes\' providers to be served again', () => others.every((c) => c.watch.waits.length > 0),
    events(others), { ms: 30_000, describe: () => others.map((c, i) => `other ${i}: closes ${c.watch.closes}, waits ${c.watch.waits}`).join('\n') })
  const servedAfter = Math.max(...others.map((c) => c.watch.servedAt)) - pausedAt
  const taker = ownerOf(url, doc)
  assert.notEqual(taker, ownerBefore, 'another node took the document over')
  assert.ok([0, 2].includes(ownerIndex(url, nodes, doc)), 'a running node owns the document')
  // They go on editing, in both dialects, and converge; the Hocuspocus ones are acknowledged.
  others.forEach((c, i) => c.doc.getText('t').insert(0, `other ${i} after the takeover; `))
  await until('the others\' changes to reach each other', () => others.every((c) => others.every((_, i) => text(c).includes(`other ${i} after the takeover; `))),
    events(others), { ms: 20_000, describe: () => others.map(text).join('\n') })
  await until('the others\' changes to be acknowledged', () => others.every(settled), events(others), { ms: 20_000 })
  await converged(others, text(others[0]), 'the other providers to agree')
  // A fresh provider reads what the new owner serves: everything committed, nothing of the
  // pause. (A provider is synced on the server's SyncStep2, and the newest updates of a document
  // may follow it in frames of their own; so it is waited for, not read at once.)
  const fresh = h.client(nodes[2], doc)
  const committed = ['relayed before the pause; ', ...others.map((_, i) => `other ${i} after the takeover; `)]
  await until('a fresh provider to hold everything committed', () => isSynced(fresh) && committed.every((s) => text(fresh).includes(s)),
    events([fresh]), { describe: () => JSON.stringify(text(fresh)) })
  assert.deepEqual(leaked(), [], 'no provider of another node saw what was written to the paused node')
  assert.ok(!duringPause.some((s) => text(fresh).includes(s)), `nothing written to the paused node is served: ${text(fresh)}`)
  assert.equal(writer.watch.acks, acksBefore, 'the paused node acknowledged nothing')

  nodes[1].child.kill('SIGCONT')
  const resumedAt = Date.now()
  // Resumed, the node finds itself fenced and closes its providers, never having acknowledged
  // or relayed what it could not commit.
  await until('the resumed node to close its providers', () => writer.watch.closes > 0 && wsWriter.watch.closes > 0,
    events([writer, wsWriter]), { ms: 20_000 })
  const closedAfter = Date.now() - resumedAt
  assert.equal(writer.watch.acks, acksBefore, 'closed unacknowledged')
  assert.deepEqual(leaked(), [], 'nothing of the pause reached another provider before the fence')
  assert.equal(ownerOf(url, doc), taker, 'the document stays with the node that took it over')
  // Stock providers reconnect to their node, which is served through the new owner, and send
  // what they still hold: nothing a user typed is lost, and now it is acknowledged.
  const all = [writer, wsWriter, ...others, fresh]
  await until('the paused node\'s providers to be served again with their changes acknowledged',
    () => settled(writer) && isSynced(wsWriter) && all.every((c) => duringPause.every((s) => text(c).includes(s))),
    events(all), { ms: 30_000, describe: () => all.map((c, i) => `${i}: ${JSON.stringify(text(c))}`).join('\n') })
  assert.ok(writer.watch.acks > acksBefore, 'acknowledged once served by the new owner')
  await converged(all, text(fresh), 'every provider to agree')
  // Read by a fresh provider: every change any provider received is in the document.
  const reader = h.hocusClient(h.hocusSocket(nodes[0]), doc)
  await until('a fresh Hocuspocus provider to hold every change', () => isSynced(reader) && [...committed, ...duringPause].every((s) => text(reader).includes(s)),
    events([reader]), { describe: () => JSON.stringify(text(reader)) })
  assert.equal(text(reader), text(fresh), 'the fresh provider agrees with the others')
  console.log(`owner paused: the other nodes' providers were served again ${servedAfter} ms after the pause (lease ${LEASE_MS} ms); resumed, it closed its providers within ${closedAfter} ms`)
  // It served documents only, and a fence leaves it nothing the database lacks: it registered
  // again, and SIGTERM stops it as any node, with status 0 (asserted by stopServer).
  // (Its socket goes first too: a stock Hocuspocus socket whose connection ends sets a timer to
  // connect again, which its destroy() does not cancel.)
  for (const c of [writer, wsWriter, writerSocket]) c.destroy()
  await h.stopServer(nodes[1])
}))

test('a rolling SIGTERM of every node under stock writers loses nothing and never waits a lease', { timeout: TEST_TIMEOUT, skip }, scenario(async (h) => {
  // A long lease: a provider that had to wait for one to lapse would stand out.
  const lease = 10_000
  const url = createDatabase()
  const nodes = await startCluster(h, 3, { url, lease, renew: 1000 })
  const docs = ['rolling-a', 'rolling-b', 'rolling-c']
  // Each document is first opened, and so owned, by a different node.
  for (const [i, doc] of docs.entries()) {
    const opener = h.client(nodes[i], doc)
    await waitSynced(opener)
    assert.equal(ownerIndex(url, nodes, doc), i, `node ${i} owns ${doc}`)
    opener.destroy()
  }
  // The providers reach the nodes through a balancer, as users reach a cluster: a stopping node
  // is taken out of its list first, as an operator's rollout does.
  let live = [...nodes]
  const balancer = await startBalancer(() => live)
  const writers = []
  try {
    // Per document a y-websocket and a Hocuspocus writer, each writing its own text.
    for (const [d, doc] of docs.entries()) {
      const ws = h.client(balancer, doc)
      const socket = h.hocusSocket(balancer)
      const hocus = h.hocusClient(socket, doc)
      writers.push({ doc, name: `ws${d}`, client: ws, written: 0 }, { doc, name: `hocus${d}`, client: hocus, socket, written: 0 })
    }
    const clients = writers.map((w) => w.client)
    for (const c of clients) watch(c)
    await until('every writer to sync', () => clients.every(isSynced), events(clients), { ms: 20_000 })
    const progress = new EventEmitter()
    let total = 0
    // One character every few milliseconds each, whether connected or not (a stock provider
    // keeps what is typed and sends it once served again); a Hocuspocus writer keeps at most
    // 40 changes unacknowledged, as a user does not type faster than the server saves.
    const typing = setInterval(() => {
      for (const w of writers) {
        if ((w.client.provider.unsyncedChanges ?? 0) > 40) continue
        w.client.doc.getText(w.name).insert(w.written, 'x')
        w.written++
        total++
      }
      progress.emit('wrote')
    }, 5)
    const madeProgress = () => {
      const from = total
      return until('the writers to write 60 more characters', () => total >= from + 60, [[progress, 'wrote']], { ms: 20_000 })
    }
    try {
      for (let round = 0; round < 3; round++) {
        await madeProgress()
        const replacement = await nodes.startNode()
        live = [...live.filter((n) => n !== nodes[round]), replacement]
        nodes.push(replacement)
        const stopping = Date.now()
        await h.stopServer(nodes[round]) // SIGTERM; asserts status 0
        console.log(`rolling SIGTERM: node ${round} stopped in ${Date.now() - stopping} ms`)
      }
      await madeProgress()
    } finally {
      clearInterval(typing)
    }
    await until('every writer to be served, its changes acknowledged', () => clients.every(settled), events(clients), { ms: 20_000 })
    // Fresh providers of both dialects on a remaining node read every character of every writer.
    const survivor = live[0]
    for (const doc of docs) {
      const mine = writers.filter((w) => w.doc === doc)
      const readers = [h.client(survivor, doc), h.hocusClient(h.hocusSocket(survivor), doc)]
      const complete = (c) => mine.every((w) => c.doc.getText(w.name).length === w.written)
      await until(`every character written to ${doc} in fresh providers`, () => readers.every((r) => isSynced(r) && complete(r)),
        events(readers), { ms: 20_000, describe: () => readers.map((r) => mine.map((w) => `${w.name} ${r.doc.getText(w.name).length}/${w.written}`).join(', ')).join('\n') })
      // Every provider of the document agrees.
      const all = [...mine.map((w) => w.client), ...readers]
      await until(`every provider of ${doc} to agree`, () => all.every((c) => complete(c) && mine.every((w) => c.doc.getText(w.name).toString() === readers[0].doc.getText(w.name).toString())),
        events(all), { ms: 20_000 })
    }
    const waits = clients.flatMap((c) => c.watch.waits)
    const longest = Math.max(0, ...waits)
    console.log(`rolling SIGTERM of 3 nodes under ${writers.length} stock writers (${total} characters): ${waits.length} reconnections, the longest wait to be served again ${longest} ms (lease ${lease} ms)`)
    assert.ok(waits.length > 0, 'the writers were moved by the rollout')
    // Half a lease: a handover at SIGTERM makes the wait a stock provider's reconnect delay (a
    // Hocuspocus provider waits a second before it connects again) and a look-up, not a lease.
    assert.ok(longest < lease / 2, `a provider waited ${longest} ms to be served again: as long as a lease (${lease} ms)`)
  } finally {
    // The writers' sockets go before the balancer: when a stock Hocuspocus socket's connection
    // ends it sets a timer to connect again, which its destroy() does not cancel, and the test's
    // process would then never end.
    for (const w of writers) { w.client.destroy(); w.socket?.destroy() }
    await balancer.close()
  }
}))

test('the reconnect storm of stock providers after kill -9 of the owner is served', { timeout: TEST_TIMEOUT, skip }, scenario(async (h) => {
  const DOCS = 4
  const PER_DOC = 10
  const url = createDatabase()
  const nodes = await startCluster(h, 3, { url })
  const docs = Array.from({ length: DOCS }, (_, d) => `storm-${d}`)
  const openers = []
  for (const doc of docs) {
    const socket = h.hocusSocket(nodes[0])
    const opener = h.hocusClient(socket, doc)
    opener.socket = socket
    watch(opener)
    await until('the opener to sync', () => isSynced(opener), events([opener]))
    opener.doc.getText('t').insert(0, 'acknowledged before the kill; ')
    await until('the opener\'s change to be acknowledged', () => settled(opener), events([opener]),
      { describe: () => `authenticated ${opener.provider.isAuthenticated} synced ${opener.provider.synced} unsynced ${opener.provider.unsyncedChanges} acks ${opener.watch.acks}` })
    assert.equal(ownerIndex(url, nodes, doc), 0, `node 0 owns ${doc}`)
    openers.push(opener)
  }
  // Providers of both dialects on the two other nodes, each with a socket of its own.
  const storm = []
  for (const [d, doc] of docs.entries()) {
    for (let c = 0; c < PER_DOC; c++) {
      const node = nodes[1 + (d + c) % 2]
      const client = c % 2 === 0 ? h.client(node, doc) : h.hocusClient(h.hocusSocket(node), doc)
      client.name = doc
      watch(client)
      storm.push(client)
    }
  }
  // One y-websocket provider per document writes; every provider receives it.
  for (const doc of docs) storm.find((c) => c.name === doc && !c.provider.decrementUnsyncedChanges).doc.getText('t').insert(0, 'received before the kill; ')
  const everything = (c) => text(c).includes('acknowledged before the kill; ') && text(c).includes('received before the kill; ')
  await until('every provider to sync and receive both changes', () => storm.every((c) => isSynced(c) && everything(c)),
    events(storm), { ms: 30_000 })

  for (const o of openers) { o.destroy(); o.socket.destroy() }
  nodes[0].child.kill('SIGKILL')
  const killed = Date.now()
  await nodes[0].exited
  h.checkedExits.add(nodes[0]) // killed: its exit is not a clean one
  // Every provider is closed by its node once the owner went, reconnects to its node (alive),
  // and is synced again once a surviving node took the document over.
  await until('every provider to be synced again', () => storm.every((c) => c.watch.servedAt !== null && c.watch.servedAt >= killed && c.watch.lostAt === null),
    events(storm), { ms: 40_000, describe: () => `${storm.filter((c) => c.watch.servedAt === null).length} of ${storm.length} not served again` })
  const served = storm.map((c) => c.watch.servedAt - killed).sort((a, b) => a - b)
  for (const c of storm) assert.ok(everything(c), `a provider holds what was acknowledged or received: ${text(c)}`)
  // What the surviving owners serve, read by fresh providers: both changes. (The storm's
  // providers hold them too and would send them again; that the database alone keeps them
  // across a kill -9 is the second test of cluster.test.mjs, whose holders are gone.)
  for (const doc of docs) {
    const reader = h.client(nodes[1 + docs.indexOf(doc) % 2], doc)
    await until(`a fresh provider of ${doc} to hold both changes`, () => isSynced(reader) && everything(reader), events([reader]),
      { ms: 20_000, describe: () => JSON.stringify(text(reader)) })
    reader.destroy()
  }
  // The storm is served for real: a change by one provider per document reaches the others.
  for (const doc of docs) storm.find((c) => c.name === doc && c.provider.decrementUnsyncedChanges).doc.getText('t').insert(0, 'after the storm; ')
  await until('the changes after the storm to reach every provider', () => storm.every((c) => text(c).includes('after the storm; ')),
    events(storm), { ms: 20_000 })
  for (const doc of docs) {
    const mine = storm.filter((c) => c.name === doc)
    await converged(mine, text(mine[0]), `the providers of ${doc} to agree`)
  }
  console.log(`reconnect storm of ${storm.length} stock providers after kill -9 of the owner (lease ${LEASE_MS} ms): synced again p50 ${percentile(served, 50)} ms, p99 ${percentile(served, 99)} ms, last ${served[served.length - 1]} ms after the kill`)
}))
