// Stock clients on a cluster of three Debrief nodes across the loss of the PostgreSQL primary
// (issue 18, test 4; docs/cluster.md, "Relay and acknowledge after COMMIT"). The test runs a
// primary and a synchronous standby of its own (`scripts/postgres start` and `standby`, on Unix
// sockets), so every COMMIT returns only once the standby has it on disk, and asserts the
// settings the guarantee rests on: kill -9 cannot prove an fsync. Three nodes run on the primary
// with a connection string naming both hosts with target_session_attrs=read-write. While stock
// writers of both dialects on every node write without pause, the primary's processes are all
// stopped at once and killed, and the writers go with it (a crashed browser): what is served
// again can only come from the database. The standby is promoted; the nodes find it; a fresh
// provider then reads every update a Hocuspocus writer had been acknowledged and every update a
// y-websocket observer had received before the kill. Providers of both dialects that stay
// connected (through a balancer, as their node may go) come back and edit again.
//
// Needs DEBRIEF_TEST_POSTGRES (only to find out that PostgreSQL is there: this test's primary
// and standby are its own, the suite's PostgreSQL is never killed).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import { scenario, until, waitSynced, withTimeout } from './harness.mjs'
import { LEASE_MS, converged, createDatabase, skip, startBalancer, startCluster, text } from './cluster.mjs'

const run = promisify(execFile)
const script = resolve(dirname(fileURLToPath(import.meta.url)), '../../scripts/postgres')

/** This test's time limit: two PostgreSQL clusters to make, three nodes, a failover. */
const TIMEOUT = 120_000
/** How many updates a writer may be ahead of what it was acknowledged (Hocuspocus) or of what
 * the observers received (y-websocket): the primary always has commits in flight, and the
 * stream keeps pace with them. */
const AHEAD = 200
/** Updates each writer must have had confirmed before the primary is killed. */
const BEFORE_KILL = 60

/** Runs `scripts/postgres args`; what it printed. */
const postgres = async (...args) => (await run(script, args, { maxBuffer: 1 << 20 })).stdout.trim()

/** Runs `sql` on the PostgreSQL whose socket is in `dir`; the rows, each as text. */
const psql = async (dir, sql, db = 'postgres') =>
  (await run('psql', [`host=${dir} user=postgres dbname=${db}`, '-qAt', '-c', sql])).stdout.trim()

/** Stops the postmaster in `dir` and every process of it at once (SIGSTOP, so none finishes a
 * commit while the others die), then kills them (SIGKILL), as a power cut would. */
const killPostgres = (dir) => {
  const postmaster = Number(readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0])
  const pids = [postmaster]
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat
    try { stat = readFileSync(`/proc/${entry}/stat`, 'utf8') } catch { continue }
    // The parent is the second field after the command name, which is in parentheses.
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 1).trim().split(/\s+/)[1])
    if (parent === postmaster) pids.push(Number(entry))
  }
  for (const signal of ['SIGSTOP', 'SIGKILL']) {
    for (const pid of pids) {
      try {
        process.kill(pid, signal)
      } catch (err) {
        // A child may have exited since the list was made; the postmaster must get each signal.
        if (pid === postmaster || existsSync(`/proc/${pid}`)) throw err
      }
    }
  }
  return pids.length
}

/** The `n`th character a writer writes: a repeating alphabet, so a prefix names its updates. */
const letter = (n) => String.fromCharCode(97 + (n % 26))

/** The first event of `event` on `emitter`, or `stopped`. */
const nextEvent = (emitter, event, stopped) => new Promise((resolve) => {
  const done = () => { emitter.off(event, done); resolve() }
  emitter.on(event, done)
  stopped.then(done)
})

/** Whether `server`'s log has a line with `what`. */
const said = (server, what) => server.lines.some((line) => line.includes(what))

/** Resolves once every node of `nodes()` said it is fenced (its lease lapsed by its own timer). */
const allFenced = (nodes) => until('every node to be fenced while no primary answers',
  () => nodes().every((n) => said(n, 'cluster: this node is fenced')), nodes().map((n) => [n.child.stderr, 'data']),
  { ms: 20_000, describe: () => nodes().map((n) => `${n.label}: ${said(n, 'this node is fenced') ? 'fenced' : 'not fenced'}`).join(', ') })

/**
 * The primary is killed under three nodes and stock writers, the standby promoted (at once, or
 * with `lapsed` only once every node's lease lapsed), and a fresh provider reads what was
 * acknowledged or received before the kill.
 */
const primaryLoss = ({ lapsed }) => scenario(async (h) => {
  const primary = await postgres('start')
  let standby = null
  let nodes = []
  let balancer = null
  let passed = false
  let promoted = null
  let finished = false
  // Nodes that exited, each with the start of its successor.
  const restarts = new Map()
  try {
    standby = await postgres('standby', primary)
    // The guarantee rests on these; kill -9 cannot prove an fsync, so they are asserted.
    for (const [dir, which] of [[primary, 'primary'], [standby, 'standby']]) {
      assert.equal(await psql(dir, 'SHOW fsync'), 'on', `fsync on the ${which}`)
      assert.equal(await psql(dir, 'SHOW synchronous_commit'), 'on', `synchronous_commit on the ${which}`)
    }
    assert.equal(await psql(primary, 'SHOW synchronous_standby_names'), 'debrief_standby', 'the primary waits for its standby by name')
    assert.equal(await psql(primary, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'debrief_standby'"), 'sync',
      'the primary counts its standby as synchronous')

    // Three nodes on the primary, with a connection string that also names the standby: libpq
    // tries the hosts in turn and takes the one that accepts writes.
    const db = /dbname=(\S+)/.exec(createDatabase(`host=${primary} user=postgres`))[1]
    const url = `host=${primary},${standby} user=postgres dbname=${db} target_session_attrs=read-write`
    nodes = await startCluster(h, 3, { url })
    const live = () => nodes.filter((n) => n.exit === null)
    balancer = await startBalancer(live)
    // A supervisor, as a deployment has: a node that exits is started again (on the same
    // database) once there is a primary to start on.
    let promotion
    const promotedNow = new Promise((resolve) => { promotion = resolve })
    const supervise = (n) => n.exited.then(async () => {
      if (finished) return
      h.checkedExits.add(n)
      const restart = promotedNow.then(async () => {
        if (finished) return null
        const again = await nodes.startNode()
        nodes.push(again)
        supervise(again)
        return again
      })
      // A start that fails is reported where it is awaited (the test's end, or the wait for it).
      restart.catch(() => {})
      restarts.set(n, restart)
    })
    nodes.forEach(supervise)

    // Writers of both dialects on every node, each appending to a text of its own (a
    // y-websocket writer's `y<i>`, a Hocuspocus writer's `h<i>`), and a y-websocket observer on
    // every node: what an observer received of a text is a prefix of what its writer wrote.
    const doc = 'primary-loss'
    const opener = h.client(nodes[0], doc)
    await waitSynced(opener)
    const observers = nodes.map((n) => h.client(n, doc))
    const yWriters = nodes.map((n, i) => ({ key: `y${i}`, client: h.client(n, doc), written: '' }))
    const hSockets = nodes.map((n) => h.hocusSocket(n))
    const hWriters = nodes.map((n, i) => ({ key: `h${i}`, client: h.hocusClient(hSockets[i], doc), written: '' }))
    for (const c of [...observers, ...yWriters.map((w) => w.client)]) await waitSynced(c)
    for (const { client } of hWriters) {
      await until('a Hocuspocus writer to sync', () => client.provider.isAuthenticated && client.provider.synced, [[client.provider, 'synced']])
    }
    // Providers of both dialects that stay through the failover, on a document of their own:
    // they hold what they received and send it back when they resync, which on the writers'
    // document would hide a loss. Through the balancer, whose round-robin spreads them over the
    // nodes, so they come back whichever node goes.
    const stayDoc = 'primary-loss-stay'
    const wsStayers = nodes.map(() => h.client(balancer, stayDoc))
    const hocusStayers = nodes.map(() => h.hocusClient(h.hocusSocket(balancer), stayDoc))
    const stayers = [...wsStayers, ...hocusStayers]
    for (const [i, c] of stayers.entries()) c.doc.getText('t').insert(0, `${i}`)
    await until('the staying providers to converge', () => stayers.every((c) => text(c).length === stayers.length),
      stayers.map((c) => [c.doc, 'update']), { ms: 20_000, describe: () => stayers.map(text).join(' | ') })

    // A first character each, acknowledged: any acknowledgement of the sync itself has arrived
    // by then, so from here on a Hocuspocus writer's acknowledgements are its updates', in order.
    const write = (w) => {
      w.client.doc.getText(w.key).insert(w.written.length, letter(w.written.length))
      w.written += letter(w.written.length)
    }
    for (const w of [...yWriters, ...hWriters]) write(w)
    await until('the first updates to be acknowledged', () => hWriters.every((w) => !w.client.provider.hasUnsyncedChanges),
      hWriters.map((w) => [w.client.provider, 'unsyncedChanges']))
    const acked = (w) => w.written.length - w.client.provider.unsyncedChanges
    const seen = (key) => Math.min(...observers.map((o) => o.doc.getText(key).length))

    // The writers write without pause from here until the kill, each one update at a time.
    let stop
    const stopped = new Promise((resolve) => { stop = resolve })
    let stopping = false
    const writing = [
      ...yWriters.map(async (w) => {
        while (!stopping) {
          if (w.written.length < seen(w.key) + AHEAD) {
            write(w)
            await new Promise((resolve) => setImmediate(resolve))
          } else {
            await nextEvent(observers[0].doc, 'update', stopped)
          }
        }
      }),
      ...hWriters.map(async (w) => {
        while (!stopping) {
          if (w.client.provider.unsyncedChanges < AHEAD) {
            write(w)
            await new Promise((resolve) => setImmediate(resolve))
          } else {
            await nextEvent(w.client.provider, 'unsyncedChanges', stopped)
          }
        }
      })
    ]
    // The primary dies mid-stream: once each writer had that many confirmed, at a moment when
    // some update was sent and not acknowledged yet (every write is an event that asks again).
    // The kill and the record of what was acknowledged and received are made in the check
    // itself, with nothing run in between; the writers and observers then go at once with what
    // they hold, so what is read afterwards can only come from the database.
    let processes, killed, evidence
    const killNow = () => {
      processes = killPostgres(primary)
      killed = Date.now()
      evidence = [
        ...hWriters.map((w) => ({ key: w.key, written: w.written, confirmed: acked(w), how: 'acknowledged' })),
        ...[...yWriters, ...hWriters].map((w) => ({ key: w.key, written: w.written, confirmed: seen(w.key), how: 'received' }))
      ]
      return true
    }
    await until(`${BEFORE_KILL} updates of each writer to be acknowledged or received, and one in flight`,
      () => hWriters.every((w) => acked(w) >= BEFORE_KILL) && yWriters.every((w) => seen(w.key) >= BEFORE_KILL) &&
        hWriters.some((w) => w.client.provider.unsyncedChanges > 0) && killNow(),
      [...hWriters.map((w) => [w.client.provider, 'unsyncedChanges']), ...observers.map((o) => [o.doc, 'update'])],
      { ms: 30_000, describe: () => [...hWriters.map((w) => `${w.key}: acknowledged ${acked(w)} of ${w.written.length}`), ...yWriters.map((w) => `${w.key}: received ${seen(w.key)} of ${w.written.length}`)].join('\n') })
    stopping = true
    stop()
    for (const c of [opener, ...observers, ...yWriters.map((w) => w.client), ...hWriters.map((w) => w.client), ...hSockets]) c.destroy()
    await Promise.all(writing)
    const inFlight = evidence.reduce((sum, e) => sum + e.written.length - e.confirmed, 0)
    assert.ok(inFlight > 0, `the primary was killed after the last update was committed: ${JSON.stringify(evidence.map((e) => [e.key, e.how, e.confirmed, e.written.length]))}`)

    let fencedAfter = null
    if (lapsed) {
      await allFenced(() => nodes.slice(0, 3))
      fencedAfter = Date.now() - killed
    }
    const promoting = Date.now()
    assert.equal(await psql(standby, 'SELECT pg_promote(true, 60)'), 't', 'the standby was promoted')
    promoted = Date.now() - promoting
    promotion()

    if (lapsed) {
      // docs/cluster.md: a node that lost its lease registers again as a new node, but the one
      // serving reviews must not commit what its memory holds under a new registration: it
      // exits with an error for its supervisor, which starts it again.
      const { code } = await withTimeout(nodes[0].exited, 20_000, 'the node that served reviews to exit')
      assert.notEqual(code, 0, 'the node that served reviews exits with an error once its lease lapsed')
      assert.ok(said(nodes[0], 'lost its lease while serving reviews'), 'it says why it exits')
      await withTimeout(nodes[0].exited.then(() => restarts.get(nodes[0])), 20_000, 'the supervisor to start it again')
    }

    // A fresh provider, through the balancer, reads everything that was confirmed.
    const missing = (reader) => evidence.filter((e) => reader.doc.getText(e.key).length < e.confirmed)
    const reader = h.client(balancer, doc)
    await until('a fresh provider to read every update acknowledged or received before the kill', () => missing(reader).length === 0,
      [[reader.doc, 'update']], { ms: 30_000, describe: () => missing(reader).map((e) => `${e.key}: ${e.how} ${e.confirmed}, read ${reader.doc.getText(e.key).length}`).join('\n') })
    const served = Date.now() - killed
    for (const e of evidence) {
      const read = reader.doc.getText(e.key).toString()
      assert.ok(e.written.startsWith(read), `${e.key}: what was read is what its writer wrote (read ${read.length} of ${e.written.length})`)
    }

    // The providers that stayed come back and edit again, in both dialects. After leases
    // lapsed, a node may be unable to open a document for a moment (it is fenced, or registering
    // again): it then closes a Hocuspocus socket whole, so that the stock provider connects
    // again at once. (With a per-document Close on a socket left open, the provider waited for
    // its own check, no message for 30 s, to close the socket: back 14–15 s after the kill.)
    for (const [i, c] of stayers.entries()) c.doc.getText('t').insert(0, `after ${i}; `)
    await until('the staying providers to have every edit made after the failover',
      () => stayers.every((c) => stayers.every((_, i) => text(c).includes(`after ${i}; `))),
      stayers.map((c) => [c.doc, 'update']), { ms: 8_000, describe: () => stayers.map(text).join('\n') })
    await converged(stayers, text(stayers[0]), 'the staying providers to agree')
    await until('the staying Hocuspocus providers to be acknowledged', () => hocusStayers.every((c) => !c.provider.hasUnsyncedChanges),
      hocusStayers.map((c) => [c.provider, 'unsyncedChanges']), { ms: 30_000 })
    const back = Date.now() - killed

    const summary = evidence.map((e) => `${e.key} ${e.how} ${e.confirmed}/${e.written.length}`).join(', ')
    console.log(`primary lost mid-stream (${processes} processes killed; ${inFlight} updates in flight): ${summary}; all of them read again`)
    console.log(`promotion took ${promoted} ms; served again ${served} ms after the kill, the staying providers back and acknowledged ${back} ms after it (lease ${LEASE_MS} ms${lapsed ? `; every node fenced ${fencedAfter} ms after the kill, then promoted` : ''}); nodes that exited and were started again: ${[...restarts.keys()].map((n) => n.label).join(', ') || 'none'}`)
    passed = true
  } finally {
    // PostgreSQL is stopped whatever happened; the nodes first, while it still answers.
    finished = true
    const failures = []
    const step = async (what) => { try { await what() } catch (err) { failures.push(err) } }
    // The providers go before the balancer: a Hocuspocus socket destroyed in the second after
    // its connection closed starts reconnecting again, for ever.
    for (const c of h.clients) c.destroy()
    for (const s of h.sockets) s.destroy()
    if (balancer) await step(() => balancer.close())
    for (const restart of restarts.values()) await step(() => restart)
    for (const n of nodes) {
      if (!passed) {
        h.checkedExits.add(n)
        if (n.exit === null) n.child.kill('SIGKILL')
        await n.exited
      } else if (!restarts.has(n)) {
        await step(() => h.stopServer(n))
      }
    }
    if (standby) await step(() => postgres('stop', standby))
    await step(() => postgres('stop', primary))
    if (passed && failures.length > 0) throw failures[0]
  }
})

test('what stock clients were acknowledged or received survives losing the PostgreSQL primary under three nodes', { timeout: TIMEOUT, skip }, primaryLoss({ lapsed: false }))

test('the same when the standby is promoted only after every node\'s lease lapsed', { timeout: TIMEOUT, skip }, primaryLoss({ lapsed: true }))
