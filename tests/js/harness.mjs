// Test harness for the stock-client integration tests.
//
// Everything that knows how to start a server lives here, so the tests only
// rely on the Debrief contract:
//
//   $DEBRIEF_BIN --listen 127.0.0.1:0 --data-dir DIR
//     stdout: one line `debrief listening on 127.0.0.1:PORT` once bound
//     stderr: logs
//     SIGTERM: graceful shutdown, exit code 0
//     ws://127.0.0.1:PORT/ws/{docName}: the y-websocket protocol
//     ws://127.0.0.1:PORT/collab: the Hocuspocus protocol (Debrief only)
//
// DEBRIEF_BIN defaults to ../../target/debug/debrief (relative to tests/js).
// DEBRIEF_TEST_REFERENCE=1 runs the same tests against reference-server.mjs
// (the @y/websocket-server reference implementation behind the same contract).

import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'

import * as Y from 'yjs'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'

const here = dirname(fileURLToPath(import.meta.url))

export const useReference = process.env.DEBRIEF_TEST_REFERENCE === '1'
export const debriefBin = resolve(here, process.env.DEBRIEF_BIN || '../../target/debug/debrief')

const STARTUP_TIMEOUT_MS = 15_000
const SHUTDOWN_TIMEOUT_MS = 10_000
const LOG_TAIL_LINES = 200

// ---------------------------------------------------------------------------
// waiting on events
// ---------------------------------------------------------------------------

/**
 * Resolves once `check()` returns a truthy value. `check` is evaluated right
 * away and again every time one of `sources` ([emitter, eventName] pairs;
 * anything with on/off) fires. Rejects after `ms` with a message naming `what`
 * and, if given, the output of `describe()` (the state at the time of failure).
 */
export const until = (what, check, sources, { ms = 10_000, describe } = {}) =>
  new Promise((resolve, reject) => {
    let done = false
    const attached = []
    const finish = (err, value) => {
      if (done) return
      done = true
      clearTimeout(timer)
      for (const [emitter, event, fn] of attached) emitter.off(event, fn)
      if (err) reject(err)
      else resolve(value)
    }
    const evaluate = () => {
      if (done) return
      try {
        const value = check()
        if (value) finish(null, value)
      } catch (err) {
        finish(err)
      }
    }
    const timer = setTimeout(() => {
      let detail = ''
      if (describe) {
        try { detail = '\n' + describe() } catch (err) { detail = `\n(describe failed: ${err})` }
      }
      finish(new Error(`timed out after ${ms} ms waiting for ${what}${detail}`))
    }, ms)
    for (const [emitter, event] of sources) {
      const fn = () => evaluate()
      emitter.on(event, fn)
      attached.push([emitter, event, fn])
    }
    evaluate()
  })

/** Rejects with a clear message if `promise` does not settle within `ms`. */
export const withTimeout = (promise, ms, what) => {
  let timer
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Yields to the event loop once (lets queued socket I/O run); not a timer. */
export const tick = () => new Promise((resolve) => setImmediate(resolve))

// ---------------------------------------------------------------------------
// server process
// ---------------------------------------------------------------------------

class ServerProcess {
  constructor (label, dataDir, extraArgs = []) {
    this.label = label
    this.dataDir = dataDir
    this.extraArgs = extraArgs
    this.lines = []
    this.exit = null
    this.child = null
    this.port = null
  }

  log (stream, line) {
    this.lines.push(`[${this.label} ${stream}] ${line}`)
    if (this.lines.length > LOG_TAIL_LINES * 4) this.lines.splice(0, this.lines.length - LOG_TAIL_LINES)
  }

  logTail () {
    return this.lines.slice(-LOG_TAIL_LINES).join('\n')
  }

  /** URL of the Hocuspocus dialect. */
  get collabUrl () {
    return `ws://127.0.0.1:${this.port}/collab`
  }

  /** Base URL for WebsocketProvider: the doc name is appended as `/{docName}`. */
  get wsBase () {
    return `ws://127.0.0.1:${this.port}/ws`
  }

  async start () {
    let command, args
    if (useReference) {
      command = process.execPath
      args = [join(here, 'reference-server.mjs')]
    } else {
      if (!existsSync(debriefBin)) {
        throw new Error(`Debrief binary not found at ${debriefBin}: build it with \`cargo build -p debrief-server\` or set DEBRIEF_BIN`)
      }
      command = debriefBin
      // Stock clients here name arbitrary documents; review documents are tested with sessions.
      args = this.extraArgs.includes('--token') ? [] : ['--open-access']
    }
    args.push('--listen', '127.0.0.1:0', '--data-dir', this.dataDir, ...this.extraArgs)
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { RUST_BACKTRACE: '1', NO_COLOR: '1', ...process.env }
    })
    this.child = child
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal }
        this.log('exit', `code=${code} signal=${signal}`)
        resolve(this.exit)
      })
      child.on('error', (err) => {
        // spawn failure: no 'exit' event will follow
        this.log('spawn', String(err))
        if (!this.exit) {
          this.exit = { code: null, signal: null, error: err }
          resolve(this.exit)
        }
      })
    })
    createInterface({ input: child.stderr }).on('line', (line) => this.log('stderr', line))
    const stdoutLines = createInterface({ input: child.stdout })
    const listening = new Promise((resolve, reject) => {
      child.on('error', reject)
      stdoutLines.on('line', (line) => {
        this.log('stdout', line)
        const prefix = 'debrief listening on '
        if (this.port === null && line.startsWith(prefix)) {
          const m = /^127\.0\.0\.1:(\d+)\b/.exec(line.slice(prefix.length).trim())
          if (!m) {
            reject(new Error(`unexpected listening line: ${JSON.stringify(line)}`))
            return
          }
          this.port = Number(m[1])
          resolve()
        }
      })
      this.exited.then(({ code, signal }) =>
        reject(new Error(`server exited before listening (code=${code} signal=${signal})`)))
    })
    await withTimeout(listening, STARTUP_TIMEOUT_MS, `"debrief listening on" from ${command}`)
    return this
  }

  /** SIGTERM and wait for exit; returns { code, signal }. */
  async stop () {
    if (!this.child) return { code: 0, signal: null } // never started
    if (this.exit) return this.exit
    this.child.kill('SIGTERM')
    try {
      return await withTimeout(this.exited, SHUTDOWN_TIMEOUT_MS, `${this.label} to exit after SIGTERM`)
    } catch (err) {
      this.child.kill('SIGKILL')
      await this.exited
      throw err
    }
  }
}

// ---------------------------------------------------------------------------
// per-test context
// ---------------------------------------------------------------------------

/**
 * One test's resources: temp dirs, servers, Y.Docs and providers, all cleaned
 * up afterwards. Server logs are attached to the error if the test fails.
 */
export class Harness {
  constructor (name) {
    this.name = name
    this.dirs = []
    this.servers = []
    this.clients = []
    this.sockets = []
    this.checkedExits = new Set()
  }

  tempDir () {
    const dir = mkdtempSync(join(tmpdir(), 'debrief-test-'))
    this.dirs.push(dir)
    return dir
  }

  async startServer ({ dataDir = this.tempDir(), args = [] } = {}) {
    const server = new ServerProcess(`server#${this.servers.length + 1}`, dataDir, args)
    this.servers.push(server)
    return server.start()
  }

  /** Stops a server and asserts the contract's clean exit (code 0). */
  async stopServer (server) {
    const { code, signal } = await server.stop()
    this.checkedExits.add(server)
    if (code !== 0) throw new Error(`${server.label} exited with code=${code} signal=${signal} after SIGTERM (expected 0)`)
  }

  /**
   * A stock y-websocket client: fresh Y.Doc (optionally with a fixed
   * clientID) + WebsocketProvider on ws://127.0.0.1:PORT/ws/{docName}.
   * BroadcastChannel is disabled: Node has a global BroadcastChannel and
   * providers in one process would otherwise sync with each other directly,
   * bypassing the server.
   */
  client (server, docName, { clientID, connect = true } = {}) {
    const doc = new Y.Doc()
    if (clientID !== undefined) doc.clientID = clientID
    const provider = new WebsocketProvider(server.wsBase, docName, doc, {
      WebSocketPolyfill: WebSocket,
      disableBc: true,
      connect
    })
    const client = { doc, provider, awareness: provider.awareness, destroyed: false }
    client.destroy = () => {
      if (client.destroyed) return
      client.destroyed = true
      provider.destroy()
      doc.destroy() // also destroys the awareness (clears its timer)
    }
    this.clients.push(client)
    return client
  }

  /**
   * One stock HocuspocusProviderWebsocket (one socket) to ws://127.0.0.1:PORT/collab.
   * `frames` records every frame it receives (Uint8Array), for assertions on
   * messages the provider does not surface as events.
   */
  hocusSocket (server) {
    const frames = []
    const socket = new HocuspocusProviderWebsocket({
      url: server.collabUrl,
      WebSocketPolyfill: WebSocket,
      onMessage: (event) => { frames.push(new Uint8Array(event.data)) }
    })
    socket.frames = frames
    // Idempotent, so a test may close a socket early and cleanup close it again.
    const destroy = socket.destroy.bind(socket)
    let destroyed = false
    socket.destroy = () => {
      if (destroyed) return
      destroyed = true
      destroy()
    }
    this.sockets.push(socket)
    return socket
  }

  /**
   * A stock HocuspocusProvider for `name` on a shared `socket`, attached
   * (v4 needs attach() with a shared socket). Events it emits are counted in
   * `client.seen` so tests can wait on them.
   */
  hocusClient (socket, name, { token = 'any', doc = new Y.Doc() } = {}) {
    const provider = new HocuspocusProvider({ websocketProvider: socket, name, document: doc, token })
    const client = { doc, provider, awareness: provider.awareness, destroyed: false, failures: [], scopes: [] }
    provider.on('authenticationFailed', ({ reason }) => client.failures.push(reason))
    provider.on('authenticated', ({ scope }) => client.scopes.push(scope))
    provider.attach()
    client.destroy = () => {
      if (client.destroyed) return
      client.destroyed = true
      provider.destroy()
      doc.destroy()
    }
    this.clients.push(client)
    return client
  }

  async cleanup () {
    const errors = []
    for (const c of this.clients) {
      try { c.destroy() } catch (err) { errors.push(err) }
    }
    for (const s of this.sockets) {
      try { s.destroy() } catch (err) { errors.push(err) }
    }
    for (const s of this.servers) {
      try {
        const { code, signal } = await s.stop()
        if (!this.checkedExits.has(s) && code !== 0) {
          errors.push(new Error(`${s.label} exited with code=${code} signal=${signal} after SIGTERM (expected 0)`))
        }
      } catch (err) { errors.push(err) }
    }
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true })
    return errors
  }

  logs () {
    return this.servers.map((s) => `--- ${s.label} (data dir ${s.dataDir}) ---\n${s.logTail()}`).join('\n')
  }
}

/**
 * Wraps a test body: `test('x', scenario(async (h) => { ... }))`.
 * On failure, the server logs are appended to the error message.
 */
export const scenario = (body) => async (t) => {
  const h = new Harness(t.name)
  let failure = null
  try {
    await body(h, t)
  } catch (err) {
    failure = err
  }
  const cleanupErrors = await h.cleanup()
  if (!failure && cleanupErrors.length > 0) failure = cleanupErrors[0]
  if (failure) {
    const target = useReference ? 'reference server' : `Debrief (${debriefBin})`
    const extra = `\n[target: ${target}]\n${h.logs()}`
    if (failure instanceof Error) {
      failure.message += extra
      throw failure
    }
    throw new Error(String(failure) + extra)
  }
}

// ---------------------------------------------------------------------------
// provider helpers
// ---------------------------------------------------------------------------

export const waitSynced = (client, what = 'provider to sync', ms = 10_000) =>
  until(what, () => client.provider.synced, [[client.provider, 'sync']], {
    ms,
    describe: () => `provider url=${client.provider.url} wsconnected=${client.provider.wsconnected} status: synced=${client.provider.synced}`
  })

// ---------------------------------------------------------------------------
// deterministic randomness
// ---------------------------------------------------------------------------

/** mulberry32: small seeded PRNG returning floats in [0, 1). */
export const prng = (seed) => {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  next.int = (n) => Math.floor(next() * n)
  next.pick = (arr) => arr[next.int(arr.length)]
  return next
}
