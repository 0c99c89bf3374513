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
import assert from 'node:assert/strict'
import { chromium } from 'playwright-core'

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
  constructor (label, dataDir, extraArgs = [], env = null) {
    this.label = label
    this.dataDir = dataDir
    this.extraArgs = extraArgs
    this.env = env
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
    let env = { RUST_BACKTRACE: '1', NO_COLOR: '1', ...process.env }
    if (this.env) {
      // Started as a deployment starts it (compose.test.mjs): with exactly these arguments and
      // DEBRIEF_* variables, none of the harness's and none of the test runner's.
      args = [...this.extraArgs]
      env = { ...Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith('DEBRIEF_'))), ...this.env }
    } else {
      // A test that must know the port before the server starts (a redirect URL registered at a
      // provider) passes its own --listen.
      if (!this.extraArgs.includes('--listen')) args.push('--listen', '127.0.0.1:0')
      args.push('--data-dir', this.dataDir, ...this.extraArgs)
    }
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env })
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
/**
 * `ws` made to behave as a browser's WebSocket on one point: closing a socket that is still
 * connecting reports an error that nobody has to listen to. The stock Hocuspocus provider (4.7)
 * does that when a server closes its socket before the first message (as a cluster node does with
 * 1013 `reviews_unavailable` while no node serves reviews, or 1001 when it stops): it then runs
 * two reconnect loops, and one closes the other's socket while it connects. In a browser that is
 * harmless; with `ws` the unheard error is an uncaught exception that fails the test process.
 */
export class BrowserLikeWebSocket extends WebSocket {
  constructor (...args) {
    super(...args)
    this.on('error', () => {})
  }
}

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

  /**
   * Starts a server on a free port with `--data-dir dataDir` and `args` (and `--open-access`
   * unless they name a `--token`). With `env`, only `args` and `env` are given instead: the
   * server's configuration is then the caller's alone, `dataDir` only names it in the logs.
   */
  async startServer ({ dataDir = this.tempDir(), args = [], env = null } = {}) {
    const server = new ServerProcess(`server#${this.servers.length + 1}`, dataDir, args, env)
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
      WebSocketPolyfill: BrowserLikeWebSocket,
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

// ---------------------------------------------------------------------------
// the browser app in Chromium (playwright-core): people, their pages, and what they see
// ---------------------------------------------------------------------------

export const CHROMIUM = process.env.DEBRIEF_CHROMIUM || '/usr/bin/chromium'
/** How long a browser test waits for anything a user would see. */
export const WAIT = 15_000

export async function launch () {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']
  })
}

/**
 * A person: their own context and page. `errors` collects uncaught errors and what the
 * Content-Security-Policy blocked; `consoleErrors` every error the page logged to the console.
 */
export async function person (browser, viewport = { width: 1360, height: 900 }) {
  const context = await browser.newContext({ viewport })
  await context.grantPermissions(['clipboard-read', 'clipboard-write']).catch(() => {})
  const page = await context.newPage()
  page.setDefaultTimeout(WAIT)
  const errors = []
  page.on('pageerror', (e) => errors.push(String(e)))
  // The server sends a Content-Security-Policy (issue 16): anything the app does that it blocks
  // is logged by Chromium as a console error, and counts as an error of the page.
  const consoleErrors = []
  page.on('console', (m) => {
    if (m.type() !== 'error') return
    consoleErrors.push(m.text())
    if (m.text().includes('Content Security Policy')) errors.push(m.text())
  })
  return { context, page, errors, consoleErrors }
}

/** Waits until the text of `selector` includes `text`. */
export const waitText = (page, selector, text) =>
  page.waitForFunction(([s, t]) => Array.from(document.querySelectorAll(s)).some((e) => e.textContent.includes(t)), [selector, text], { timeout: WAIT })

export const status = (page) => page.locator('.status').getAttribute('data-state')
export const waitStatus = (page, state) =>
  page.waitForFunction((s) => document.querySelector('.status')?.dataset.state === s, state, { timeout: WAIT })

// A read-only editor stays focusable (keyboard selection for comments) and refuses local
// changes; `data-writable` says which it is.
export const editable = (page) => page.locator('.editor .prose').first().getAttribute('data-writable')
export const waitEditable = (page, value) =>
  page.waitForFunction((v) => document.querySelector('.editor .prose')?.getAttribute('data-writable') === v, value, { timeout: WAIT })

/** Selects `text` inside the report, as a mouse drag would, once the report shows it. */
export async function selectText (page, text) {
  await page.waitForFunction((t) => {
    const root = document.querySelector('.editor .prose')
    if (!root) return false
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT)
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const i = n.data.indexOf(t)
      if (i >= 0) {
        // Focus first: focusing an editable element moves the selection.
        root.focus()
        const range = document.createRange()
        range.setStart(n, i)
        range.setEnd(n, i + t.length)
        const sel = window.getSelection()
        sel.removeAllRanges()
        sel.addRange(range)
        document.dispatchEvent(new Event('selectionchange'))
        return true
      }
    }
    return false
  }, text, { timeout: WAIT }).catch((e) => {
    // Only a timeout means the text never appeared; anything else is its own failure.
    throw e.name === 'TimeoutError' ? new Error(`text not found in the report: ${text}`) : e
  })
}

/** Puts the caret at the end of the paragraph that contains `text`. */
export async function caretAfter (page, text) {
  await page.locator('.editor .prose p', { hasText: text }).first().click()
  await page.keyboard.press('End')
}

/**
 * Puts the caret in the paragraph right below the level-2 heading `heading`: a template section,
 * whose paragraph is empty (showing only its guidance) until someone writes there.
 */
export async function caretInSection (page, heading) {
  await page.locator('.editor .prose h2', { hasText: heading }).first().locator('xpath=following-sibling::p[1]').click()
  await page.keyboard.press('End')
}

/** A report that already has a written Summary, for `report_markdown` (the template has none). */
export const WRITTEN_REPORT = '## Summary\n\nTwo or three sentences a reader outside the team understands.\n\n## Impact\n\n'

/**
 * Shows the form that starts a post-mortem on the start page: a browser that joined reviews
 * sees it folded behind the "Start a post-mortem" button.
 */
export async function openCreateForm (page) {
  const start = page.locator('#start-new')
  if (await start.isVisible()) await start.click()
  await page.locator('#title').waitFor()
}

export async function createReview (page, base, title) {
  const response = await page.goto(`${base}/`)
  assert.match(response.headers()['content-security-policy'] ?? '', /script-src 'self'/)
  await openCreateForm(page)
  await page.fill('#title', title)
  await page.fill('#name', 'Fay')
  await page.getByRole('button', { name: 'Create review' }).click()
  await page.locator('#invite-author').waitFor()
  const links = {}
  for (const role of ['facilitator', 'author', 'participant', 'observer']) {
    links[role] = await page.locator(`#invite-${role}`).inputValue()
  }
  return links
}

export async function joinAs (page, link, name) {
  await page.goto(link)
  await page.fill('#name', name)
  await page.getByRole('button', { name: 'Join' }).click()
  await page.locator('.review-head h1').waitFor()
}

export async function movePhase (page, to) {
  await page.locator('#move-phase').click()
  await page.locator('#confirm-phase').click()
  await page.waitForFunction((p) => document.querySelector('.phase')?.textContent === p, to, { timeout: WAIT })
}

/** The REST API as a script uses it: JSON in, JSON out, any failure fails the test. */
export function rest (base) {
  return async (method, path, body, token) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    const json = res.status === 204 ? null : await res.json()
    assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(json)}`)
    return json
  }
}

/** A review created over REST with Fay as its facilitator; `join(role, name)` adds a person. */
export async function restReview (base, title, extra = {}) {
  const call = rest(base)
  const created = await call('POST', '/api/reviews', { title, ...extra })
  const id = created.review.id
  const join = async (role, name) => {
    const joined = await call('POST', '/api/join', { invite: created.invites[role].token, name })
    const you = joined.review.you
    return { session: joined.session, membership: { review: id, session: joined.session, role, participant: you.participant, name, title, phase: joined.review.phase } }
  }
  const fay = await join('facilitator', 'Fay')
  const phase = (to) => call('POST', `/api/reviews/${id}/phase`, { phase: to }, fay.session)
  return { id, documents: created.review.documents, call, join, fay, phase }
}

/** Opens the review in `page` as someone who joined it in this browser. */
export async function openAs (page, base, membership) {
  await page.goto(`${base}/`)
  await page.evaluate((m) => localStorage.setItem('debrief.sessions', JSON.stringify({ [m.review]: m })), membership)
  await page.goto(`${base}/r/${membership.review}`)
  // The report has arrived from the server; someone who may change it also sees it saved.
  await page.waitForFunction(() => {
    const status = document.querySelector('.status')
    return document.querySelector('.editor .prose')?.textContent !== '' && (status?.hidden || status?.dataset.state === 'saved')
  }, null, { timeout: WAIT })
}

/**
 * Keystroke to remote render between two pages of one report, `n` times: `writer` types a marker
 * (" k1", " k2", … numbered per page) at its caret, and the time is taken inside the two pages on
 * the shared system clock (performance.timeOrigin + now), from the writer's last input event of
 * the marker to the moment the marker is in the reader's report, so the test driver's own round
 * trips are not counted. Returns the latencies in ms, in the order typed.
 */
export async function typingLatencies (writer, reader, n) {
  const clock = () => performance.timeOrigin + performance.now()
  await writer.evaluate(`if (window.__marks === undefined) {
    window.__marks = 0
    document.addEventListener('beforeinput', () => { window.__lastInput = (${clock})() }, true)
  }`)
  await reader.evaluate(`if (window.__seen === undefined) {
    window.__seen = {}
    const report = document.querySelector('.editor .prose')
    // Only the nodes that changed are read: reading the whole report would cost more in a
    // report with more highlights, and the figure is what the app costs.
    new MutationObserver((records) => {
      const at = (${clock})()
      for (const r of records) {
        for (const m of r.target.textContent.match(/ k[0-9]+/g) ?? []) if (!(m in window.__seen)) window.__seen[m] = at
      }
    }).observe(report, { subtree: true, childList: true, characterData: true })
  }`)
  const out = []
  for (let i = 0; i < n; i++) {
    const mark = ` k${await writer.evaluate(() => ++window.__marks)}`
    await writer.keyboard.type(mark)
    const typedAt = await writer.evaluate(() => window.__lastInput)
    await reader.waitForFunction((m) => m in window.__seen, mark, { timeout: WAIT })
    out.push(await reader.evaluate((m) => window.__seen[m], mark) - typedAt)
  }
  return out
}
