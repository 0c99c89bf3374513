// The compose file of a three-node cluster (deploy/compose.yaml, issue 18) against the real binary.
// No container runs here, so the test does what the file asks of each node service itself: it
// reads the service's environment on top of the image's (the ENV of the Dockerfile's last stage),
// checks every DEBRIEF_* name against the ones `debrief --help` lists (the server ignores a
// variable it does not know, so a misspelt one would go unnoticed), and starts one `debrief`
// process per service with that environment and command. Only what cannot exist on this machine
// is replaced: the service host names by loopback ports, the PostgreSQL URL by the test's
// database, the secret file by a temporary one with the mode the file's instructions give it,
// the data directory by a temporary one. The three must then form one cluster: each answers its
// health check, one of them serves reviews, and a review created and edited through the other
// two (so through the links, at the addresses the nodes advertise) is seen on both.
//
// Needs DEBRIEF_TEST_POSTGRES (scripts/test starts PostgreSQL and exports it).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

import { parse } from 'yaml'
import * as Y from 'yjs'

import { debriefBin, restReview, scenario, until } from './harness.mjs'
import { createDatabase, metrics, skip } from './cluster.mjs'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const composePath = join(root, 'deploy/compose.yaml')

/** How many nodes the file describes (issue 18 asks for three). */
const NODES = 3
/** Variables a node service may set besides the server's own. */
const OTHER_VARIABLES = new Set(['RUST_LOG'])

// ---------------------------------------------------------------------------
// reading the files
// ---------------------------------------------------------------------------

/** The DEBRIEF_* variables the binary reads, as its --help names them. */
const knownVariables = () => {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('DEBRIEF_')))
  const help = execFileSync(debriefBin, ['--help'], { env, encoding: 'utf8' })
  const names = new Set([...help.matchAll(/\[env: (DEBRIEF_[A-Z0-9_]+)/g)].map((m) => m[1]))
  assert.ok(names.has('DEBRIEF_CLUSTER_LISTEN'), `--help names the cluster's variables:\n${help}`)
  return names
}

/** The last stage of the Dockerfile: its ENV, its USER and that user's uid. */
const image = () => {
  const text = readFileSync(join(root, 'Dockerfile'), 'utf8')
  const stages = text.replace(/\\\n/g, ' ').split(/^FROM\s/m)
  const last = stages[stages.length - 1]
  const env = {}
  let user = null
  for (const line of last.split('\n').map((l) => l.trim())) {
    const [instruction, ...words] = line.split(/\s+/)
    if (instruction === 'USER') user = words[0]
    if (instruction !== 'ENV') continue
    for (const word of words) {
      const at = word.indexOf('=')
      assert.ok(at > 0 && !/["']/.test(word), `Dockerfile ENV ${word}: only unquoted KEY=VALUE is read here`)
      env[word.slice(0, at)] = word.slice(at + 1)
    }
  }
  assert.ok(user, 'the image runs as a user of its own')
  const uid = new RegExp(`useradd .*--uid (\\d+) .*\\b${user}\\b`).exec(last)
  assert.ok(uid, `the Dockerfile gives ${user} a fixed uid`)
  return { env, user, uid: Number(uid[1]) }
}

/** A service's environment as a map (compose takes a map or a list of NAME=value). */
const environment = (service) => {
  const given = service.environment ?? {}
  const pairs = Array.isArray(given)
    ? given.map((item) => { const at = item.indexOf('='); return [item.slice(0, at), item.slice(at + 1)] })
    : Object.entries(given)
  return Object.fromEntries(pairs.map(([name, value]) => [name, String(value ?? '')]))
}

/** `${NAME}`, `${NAME:?why}`, `${NAME:-default}` as compose substitutes them, from `vars`. */
const interpolate = (text, vars) => text.replace(/\$\{([A-Za-z0-9_]+)(?::?[-?][^}]*)?\}/g, (_, name) => {
  assert.ok(name in vars, `\${${name}} has no value in this test`)
  return vars[name]
})

/** `HOST:PORT` split, the port a number. */
const hostPort = (address, what) => {
  const m = /^(.+):(\d+)$/.exec(address)
  assert.ok(m, `${what}: ${JSON.stringify(address)} is not HOST:PORT`)
  return { host: m[1], port: Number(m[2]) }
}

/** The container port of each published port, and the host port it is published on. */
const published = (service) => (service.ports ?? []).map((p) => {
  if (typeof p === 'object') return { host: Number(p.published), container: Number(p.target) }
  const parts = String(p).replace(/\/tcp$/, '').split(':')
  return { host: Number(parts[parts.length - 2]), container: Number(parts[parts.length - 1]) }
})

/** The secrets a service is given: the path it sees each at, and the host file it comes from. */
const secretsOf = (compose, service) => (service.secrets ?? []).map((s) => {
  const source = typeof s === 'string' ? s : s.source
  const target = (typeof s === 'string' ? null : s.target) ?? source
  const defined = compose.secrets?.[source]
  assert.ok(defined?.file, `secret ${source} is defined at the top level with a file`)
  return { path: target.startsWith('/') ? target : `/run/secrets/${target}`, file: defined.file }
})

/** The named volume mounted at `path`, if any. */
const volumeAt = (compose, service, path) => {
  for (const v of service.volumes ?? []) {
    const [source, target] = typeof v === 'string' ? v.split(':') : [v.source, v.target]
    if (target === path) {
      assert.ok(source in (compose.volumes ?? {}), `${path} is on a named volume, not ${source}`)
      return source
    }
  }
  return null
}

/**
 * Reads the compose file and checks what the test cannot run: the PostgreSQL service, and per
 * node service what would be wrong only inside a container (its published port, its health
 * check's address, its volume, its secret, how it names itself to the others). Returns the
 * node services with their full environment (the image's, then the service's), the mode the
 * secret file is given, and the names of all services.
 */
const readCompose = () => {
  const text = readFileSync(composePath, 'utf8')
  const compose = parse(text, { merge: true })
  const known = knownVariables()
  const built = image()

  // The file's instructions give the secret file to the image's user and close it to others.
  const chown = /chown (\d+) deploy\/cluster-secret/.exec(text)
  assert.ok(chown, 'the file says who must own the secret file')
  assert.equal(Number(chown[1]), built.uid, `the secret file goes to the uid the image runs as (${built.user})`)
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  assert.match(readme, new RegExp(`chown ${built.uid} deploy/cluster-secret`), 'the README gives the same owner')
  const chmod = /chmod ([0-7]{3}) deploy\/cluster-secret/.exec(text)
  assert.ok(chmod, 'the file says which mode the secret file has')
  assert.match(readme, new RegExp(`chmod ${chmod[1]} deploy/cluster-secret`), 'the README gives the same mode')
  const secretMode = parseInt(chmod[1], 8)

  // PostgreSQL: the official image, 15 or later, healthy before the nodes start, durable.
  const services = compose.services
  const [pgName, pg] = Object.entries(services).find(([, s]) => /^postgres:/.test(s.image ?? '')) ?? []
  assert.ok(pg, 'a service runs the postgres image')
  assert.ok(Number(/^postgres:(\d+)/.exec(pg.image)?.[1]) >= 15, `${pg.image} is PostgreSQL 15 or later`)
  assert.ok(pg.healthcheck?.test, 'PostgreSQL has a health check')
  assert.doesNotMatch(JSON.stringify(pg.command ?? ''), /fsync|synchronous_commit/, 'fsync and synchronous_commit are left on')
  const pgEnv = environment(pg)
  const vars = { DEBRIEF_DB_PASSWORD: randomBytes(8).toString('hex') }

  const nodes = Object.entries(services).filter(([, s]) => s.build)
  assert.deepEqual(nodes.map(([name]) => name).sort(), [...Array(NODES)].map((_, i) => `debrief-${i + 1}`))
  const names = new Set(Object.keys(services))
  const hostPorts = new Set()
  const volumes = new Set()
  const nodeServices = nodes.map(([name, service]) => {
    const what = `service ${name}`
    const context = typeof service.build === 'string' ? service.build : service.build.context
    assert.equal(resolve(dirname(composePath), context), root, `${what} is built from the repository's root`)
    assert.equal(service.build.dockerfile ?? 'Dockerfile', 'Dockerfile', `${what} uses the root Dockerfile`)
    assert.equal(service.entrypoint, undefined, `${what} keeps the image's entrypoint`)
    assert.equal(service.user, undefined, `${what} runs as the image's user, who owns the secret file`)
    assert.equal(service.depends_on?.[pgName]?.condition, 'service_healthy', `${what} waits for PostgreSQL to be healthy`)
    assert.ok(['always', 'unless-stopped', 'on-failure'].includes(service.restart),
      `${what} is started again when it exits (a node paused past its lease exits for that)`)

    const own = environment(service)
    const env = { ...built.env, ...own }
    for (const variable of Object.keys(env)) {
      assert.ok(known.has(variable) || OTHER_VARIABLES.has(variable), `${what}: debrief --help does not know ${variable}`)
    }
    assert.equal(env.DEBRIEF_CLUSTER_SECRET, undefined, `${what} reads the cluster secret from a file, not its environment`)
    for (const [variable, value] of Object.entries(own)) {
      if (variable !== 'DEBRIEF_POSTGRES_URL') assert.doesNotMatch(value, /\$\{/, `${what}: ${variable} is not interpolated`)
    }

    // Its PostgreSQL: the service above, with the user, database and password it is given.
    const url = new URL(interpolate(env.DEBRIEF_POSTGRES_URL, vars))
    assert.equal(url.hostname, pgName, `${what} reaches PostgreSQL by its service name`)
    assert.equal(url.username, interpolate(pgEnv.POSTGRES_USER, vars))
    assert.equal(url.password, interpolate(pgEnv.POSTGRES_PASSWORD, vars))
    assert.equal(url.pathname, `/${interpolate(pgEnv.POSTGRES_DB, vars)}`)

    // HTTP: published on a port of its own, and its health check asks this server.
    const listen = hostPort(env.DEBRIEF_LISTEN, `${what} DEBRIEF_LISTEN`)
    assert.equal(listen.host, '0.0.0.0', `${what} listens on every interface of its container`)
    const http = published(service).find((p) => p.container === listen.port)
    assert.ok(http, `${what} publishes port ${listen.port}`)
    assert.ok(!hostPorts.has(http.host), `${what} publishes on a host port of its own`)
    hostPorts.add(http.host)
    const check = [service.healthcheck?.test ?? []].flat().join(' ')
    const probe = /http:\/\/(?:127\.0\.0\.1|localhost):(\d+)(\/\S*)/.exec(check)
    assert.ok(probe, `${what} has a health check over HTTP: ${check}`)
    assert.equal(Number(probe[1]), listen.port, `${what}'s health check asks its own port`)
    assert.ok(['/readyz', '/healthz'].includes(probe[2]), `${what}'s health check asks /readyz or /healthz`)

    // Data directory: a named volume each.
    const volume = volumeAt(compose, service, env.DEBRIEF_DATA_DIR)
    assert.ok(volume, `${what} keeps ${env.DEBRIEF_DATA_DIR} on a volume`)
    assert.ok(!volumes.has(volume), `${what} has a data volume of its own`)
    volumes.add(volume)

    // The link: listened on inside the container, advertised under the service's own name, the
    // secret from the compose secret.
    const link = hostPort(env.DEBRIEF_CLUSTER_LISTEN, `${what} DEBRIEF_CLUSTER_LISTEN`)
    const advertised = hostPort(env.DEBRIEF_CLUSTER_ADVERTISE, `${what} DEBRIEF_CLUSTER_ADVERTISE`)
    assert.ok(advertised.host === name || advertised.host === service.hostname, `${what} advertises its own name`)
    assert.equal(advertised.port, link.port, `${what} advertises the port its link listens on`)
    assert.ok(!published(service).some((p) => p.container === link.port), `${what} does not publish its link`)
    const secrets = secretsOf(compose, service)
    assert.ok(secrets.some((s) => s.path === env.DEBRIEF_CLUSTER_SECRET_FILE),
      `${what}: DEBRIEF_CLUSTER_SECRET_FILE is where a compose secret is mounted`)

    const command = service.command ?? []
    return { name, env, link, probe: probe[2], args: Array.isArray(command) ? command.map(String) : command.split(/\s+/) }
  })
  return { nodes: nodeServices, secretMode, services: names }
}

// ---------------------------------------------------------------------------
// running it
// ---------------------------------------------------------------------------

/**
 * A port free on loopback now. Each node's link port must be known before any node starts, since
 * the nodes are told each other's addresses as compose tells them (by name and port); a port
 * taken by someone else in between makes the node exit with a clear error.
 */
const freePort = () => new Promise((resolve, reject) => {
  const server = createServer()
  server.on('error', reject)
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address()
    server.close(() => resolve(port))
  })
})

test('deploy/compose.yaml: its three node services, started as it starts them, form one cluster', { timeout: 60_000, skip }, scenario(async (h) => {
  const { nodes, secretMode, services } = readCompose()
  const database = createDatabase()
  const secret = join(h.tempDir(), 'cluster-secret')
  writeFileSync(secret, randomBytes(32).toString('hex') + '\n')
  chmodSync(secret, secretMode)
  const loopback = new Map()
  for (const node of nodes) loopback.set(`${node.name}:${node.link.port}`, `127.0.0.1:${await freePort()}`)

  /** The node's environment with what cannot exist here replaced, and nothing else. */
  const here = (node) => {
    const env = { ...node.env }
    const swap = (variable, value) => { assert.ok(variable in env, `${node.name} sets ${variable}`); env[variable] = value }
    swap('DEBRIEF_POSTGRES_URL', database)
    swap('DEBRIEF_DATA_DIR', h.tempDir())
    swap('DEBRIEF_CLUSTER_SECRET_FILE', secret)
    // Ports of the container's own interfaces: HTTP on any free one (the harness reads which),
    // the link on the one its name stands for.
    swap('DEBRIEF_LISTEN', '127.0.0.1:0')
    swap('DEBRIEF_CLUSTER_LISTEN', loopback.get(`${node.name}:${node.link.port}`))
    swap('DEBRIEF_CLUSTER_ADVERTISE', loopback.get(node.env.DEBRIEF_CLUSTER_ADVERTISE))
    for (const [variable, value] of Object.entries(env)) {
      for (const name of services) {
        assert.ok(!value.includes(`${name}:`), `${node.name}: ${variable}=${value} names a service this test does not replace`)
      }
    }
    return env
  }

  // One after another, as `depends_on` does not order them: whichever comes first serves reviews.
  const servers = []
  for (const node of nodes) servers.push(await h.startServer({ env: here(node), args: node.args, dataDir: node.name }))

  for (const [i, server] of servers.entries()) {
    const res = await fetch(`http://127.0.0.1:${server.port}${nodes[i].probe}`)
    assert.equal(res.status, 200, `${nodes[i].name} ${nodes[i].probe}: ${await res.text()}`)
  }
  const seen = await Promise.all(servers.map(metrics))
  assert.deepEqual(seen.map((m) => m.debrief_cluster_lease_live), servers.map(() => 1), 'every node holds a lease')
  assert.equal(seen.reduce((sum, m) => sum + m.debrief_serves_reviews, 0), 1, 'one node serves reviews')
  const [entry, other] = servers.filter((_, i) => seen[i].debrief_serves_reviews === 0)

  // A review created through a node that does not serve reviews, written on it and read on the
  // third: every request and document crosses a link to the node serving reviews.
  const review = await restReview(`http://127.0.0.1:${entry.port}`, 'Compose cluster check')
  const ada = await review.join('author', 'Ada')
  const open = (server, person) => h.hocusClient(h.hocusSocket(server), review.documents.report, { token: person.session })
  const ready = (client, what) => until(what, () => client.provider.isAuthenticated && client.provider.synced,
    [[client.provider, 'authenticated'], [client.provider, 'synced']])
  const writer = open(entry, ada)
  const reader = open(other, review.fay)
  await ready(writer, "the author's report through one node")
  await ready(reader, "the facilitator's report through another")
  const summary = (client) => {
    const rows = client.doc.getXmlFragment('default').toArray()
    return rows[rows.findIndex((el) => el.nodeName === 'heading' && el.toArray().join('') === 'Summary') + 1]
  }
  const words = 'Written through one node of the compose cluster, read through another.'
  summary(writer).insert(0, [new Y.XmlText(words)])
  await until("the author's summary to be saved", () => !writer.provider.hasUnsyncedChanges, [[writer.provider, 'unsyncedChanges']])
  await until('the facilitator to read it', () => summary(reader)?.toArray().join('') === words, [[reader.doc, 'update']],
    { describe: () => JSON.stringify(summary(reader)?.toArray().join('')) })
}))
