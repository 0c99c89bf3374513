// Development stand-in for Debrief, built on the reference y-websocket server
// (@y/websocket-server). It honours the same command-line / stdout contract as
// the Debrief binary so the test-suite can be checked against it:
//
//   node reference-server.mjs --listen 127.0.0.1:0 --data-dir DIR
//
// - prints `debrief listening on 127.0.0.1:PORT` on stdout once bound
// - serves the y-websocket protocol on /ws/{docName}; the reference server
//   would use the whole URL path as the room name, so the name is cut out here
// - persists every document update to DIR (one append-only file per document)
// - exits 0 on SIGTERM
//
// Only used when DEBRIEF_TEST_REFERENCE=1; the default target is Debrief.

import http from 'node:http'
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { WebSocketServer } from 'ws'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { setupWSConnection, setPersistence } from '@y/websocket-server/utils'

const args = process.argv.slice(2)
const arg = (name) => {
  const i = args.indexOf(name)
  if (i < 0 || i + 1 >= args.length) throw new Error(`missing ${name}`)
  return args[i + 1]
}
const [host, portText] = arg('--listen').split(/:(?=\d+$)/)
const dataDir = arg('--data-dir')
mkdirSync(dataDir, { recursive: true })

const DOC_PATH = /^\/ws\/([A-Za-z0-9._:-]{1,200})$/
const docFile = (name) => join(dataDir, Buffer.from(name).toString('hex') + '.updates')

setPersistence({
  provider: null,
  bindState: (name, ydoc) => {
    const file = docFile(name)
    if (existsSync(file)) {
      const dec = decoding.createDecoder(readFileSync(file))
      const updates = []
      while (decoding.hasContent(dec)) updates.push(decoding.readVarUint8Array(dec))
      if (updates.length > 0) Y.applyUpdate(ydoc, Y.mergeUpdates(updates), 'persistence')
    }
    ydoc.on('update', (update, origin) => {
      if (origin === 'persistence') return
      const enc = encoding.createEncoder()
      encoding.writeVarUint8Array(enc, update)
      appendFileSync(file, encoding.toUint8Array(enc))
    })
  },
  writeState: async () => {}
})

const wss = new WebSocketServer({ noServer: true })
const server = http.createServer((_req, res) => {
  res.writeHead(404, { 'content-type': 'text/plain' })
  res.end('not found')
})
server.on('upgrade', (req, socket, head) => {
  const path = (req.url || '').split('?')[0]
  const match = DOC_PATH.exec(path)
  if (!match) {
    socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n')
    return
  }
  const docName = decodeURIComponent(match[1])
  wss.handleUpgrade(req, socket, head, (conn) => {
    console.error(`connection for doc ${docName}`)
    setupWSConnection(conn, req, { docName })
  })
})

server.listen(Number(portText), host, () => {
  const { address, port } = server.address()
  process.stdout.write(`debrief listening on ${address}:${port}\n`)
})

process.on('SIGTERM', () => {
  console.error('SIGTERM: shutting down')
  // Updates are written synchronously, so there is nothing left to flush.
  process.exit(0)
})
