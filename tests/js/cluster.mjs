// What the tests of a cluster of Debrief nodes share (issue 18, docs/cluster.md): a fresh database
// on the test PostgreSQL, nodes started on it with short test leases and one cluster secret, and
// waiting for stock clients to agree.
//
// Needs DEBRIEF_TEST_POSTGRES (scripts/test starts PostgreSQL and exports it): a superuser's
// libpq connection string; each cluster gets a database of its own, made with psql.

import { execFileSync } from 'node:child_process'
import { chmodSync, writeFileSync } from 'node:fs'
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

/** The text a test's stock clients edit. */
export const text = (client) => client.doc.getText('t').toString()

/** Waits until every client's text is `expected`. */
export const converged = (clients, expected, what) =>
  until(what, () => clients.every((c) => text(c) === expected),
    clients.map((c) => [c.doc, 'update']),
    { ms: 20_000, describe: () => clients.map((c, i) => `client ${i}: ${JSON.stringify(text(c))}`).join('\n') })
