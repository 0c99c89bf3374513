// What the tests of a cluster of Debrief nodes share (issue 18, docs/cluster.md): a fresh database
// on the test PostgreSQL, nodes started on it with short test leases and one cluster secret, and
// waiting for stock clients to agree.
//
// Needs DEBRIEF_TEST_POSTGRES (scripts/test starts PostgreSQL and exports it): a superuser's
// libpq connection string; each cluster gets a database of its own, made with psql.

import { execFileSync } from 'node:child_process'
import { chmodSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'

import { until, useReference } from './harness.mjs'

export const TEST_TIMEOUT = 60_000
export const LEASE_MS = 2000
export const RENEW_MS = 200

export const admin = process.env.DEBRIEF_TEST_POSTGRES

/** Why the cluster tests are skipped, or false. */
export const skip = useReference || !admin ? 'needs Debrief and DEBRIEF_TEST_POSTGRES' : false

/** A fresh database on the PostgreSQL of `server` (a libpq connection string, by default the
 * test's); its connection string. */
export const createDatabase = (server = admin) => {
  const name = `js_${randomBytes(8).toString('hex')}`
  execFileSync('psql', [server, '-q', '-c', `CREATE DATABASE ${name}`], { stdio: ['ignore', 'ignore', 'inherit'] })
  return `${server} dbname=${name}`
}

/** A cluster secret file for harness `h`, readable by its owner only. */
export const secretFile = (h) => {
  const secret = join(h.tempDir(), 'cluster-secret')
  writeFileSync(secret, randomBytes(32).toString('hex'))
  chmodSync(secret, 0o600)
  return secret
}

/** The arguments of a node on database `url` with cluster secret file `secret`. */
export const nodeArgs = (url, secret, { lease = LEASE_MS, renew = RENEW_MS } = {}) => [
  '--postgres', url,
  '--cluster-lease-ms', String(lease),
  '--cluster-renew-ms', String(renew),
  '--cluster-listen', '127.0.0.1:0',
  '--cluster-secret-file', secret
]

/** `n` nodes on a fresh database (or `url`), sharing a cluster secret; `startNode()` on the
 * result starts one more on the same database. */
export const startCluster = async (h, n = 3, { url = createDatabase(), ...leases } = {}) => {
  const args = nodeArgs(url, secretFile(h), leases)
  const nodes = []
  nodes.startNode = () => h.startServer({ args })
  // One after another: the first node started serves reviews (docs/cluster.md), and each
  // node's start-up is short.
  for (let i = 0; i < n; i++) nodes.push(await nodes.startNode())
  return nodes
}

/** A node's /metrics as {name: value} for the unlabelled series. */
export const metrics = async (server) => {
  const body = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text()
  return Object.fromEntries([...body.matchAll(/^([a-z_]+) (\S+)$/gm)].map((m) => [m[1], Number(m[2])]))
}

/** The text a test's stock clients edit. */
export const text = (client) => client.doc.getText('t').toString()

/** Waits until every client's text is `expected`. */
export const converged = (clients, expected, what) =>
  until(what, () => clients.every((c) => text(c) === expected),
    clients.map((c) => [c.doc, 'update']),
    { ms: 20_000, describe: () => clients.map((c, i) => `client ${i}: ${JSON.stringify(text(c))}`).join('\n') })

/**
 * A TCP load balancer on loopback, as an operator puts in front of the nodes: each connection
 * goes to the next node of `nodes()` in turn that accepts it (a node that refuses, stopped or
 * killed, is skipped), so stock clients, which reconnect to the address they were given, find
 * a live node again after theirs went. It forwards bytes and knows nothing of documents. The
 * result has the `port`, `wsBase` and `collabUrl` of a server for the harness's clients, and
 * `close()`; `connections` counts what it forwarded.
 */
export const startBalancer = async (nodes) => {
  let next = 0
  const open = new Set()
  const balancer = { port: null, connections: 0 }
  const server = createServer({ pauseOnConnect: true }, (client) => {
    open.add(client)
    client.on('close', () => open.delete(client))
    client.on('error', () => client.destroy())
    const live = nodes().filter((n) => n.port !== null)
    const tryNode = (left) => {
      if (left === 0 || client.destroyed) return client.destroy()
      const node = live[next++ % live.length]
      const upstream = connect(node.port, '127.0.0.1')
      upstream.once('error', () => { upstream.destroy(); tryNode(left - 1) })
      upstream.once('connect', () => {
        upstream.removeAllListeners('error')
        upstream.on('error', () => client.destroy())
        client.on('close', () => upstream.destroy())
        upstream.on('close', () => client.destroy())
        open.add(upstream)
        upstream.on('close', () => open.delete(upstream))
        balancer.connections++
        client.pipe(upstream)
        upstream.pipe(client)
        client.resume()
      })
    }
    tryNode(live.length)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  balancer.port = server.address().port
  balancer.wsBase = `ws://127.0.0.1:${balancer.port}/ws`
  balancer.collabUrl = `ws://127.0.0.1:${balancer.port}/collab`
  balancer.close = () => new Promise((resolve) => {
    for (const socket of open) socket.destroy()
    server.close(() => resolve())
  })
  return balancer
}
