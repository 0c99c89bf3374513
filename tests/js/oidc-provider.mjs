// A real OpenID Connect provider on loopback for the sign-in tests: the certified `oidc-provider`
// package, configured with one confidential test client (Debrief) and two test users, behind its
// own small login form (user name and password) that the browser test fills in. Consent for the
// test client is given on the users' behalf, as a company's provider does for its own apps.
//
// Used by browser-signin.test.mjs (`startProvider`); also runs alone for trying sign-in by hand:
//   node oidc-provider.mjs 9400 http://127.0.0.1:4000/auth/callback

import { createServer } from 'node:http'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import Provider from 'oidc-provider'

/** The test users: user name → password and claims. */
export const USERS = {
  ana: { password: 'ana-pass', claims: { name: 'Ana Lima', email: 'ana@example.com', email_verified: true, groups: ['sre'] } },
  bo: { password: 'bo-pass', claims: { name: 'Bo Berg', email: 'bo@example.com', email_verified: true, groups: [] } }
}

export const CLIENT_ID = 'debrief-test'
export const CLIENT_SECRET = 'debrief-test-secret-0123456789abcdef'

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

function loginPage (uid, error) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Test provider: sign in</title></head>
<body><h1>Test identity provider</h1>${error ? `<p id="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>User <input id="login" name="login" autocomplete="off"></label>
<label>Password <input id="password" name="password" type="password"></label>
<button id="sign-in" type="submit">Sign in</button></form></body></html>`
}

async function formBody (req) {
  let body = ''
  for await (const chunk of req) {
    body += chunk
    if (body.length > 10_000) break
  }
  return new URLSearchParams(body)
}

/**
 * Starts the provider on 127.0.0.1:`port` (0: any free port) with `redirectUri` registered for
 * the test client. Returns { issuer, close }.
 */
export async function startProvider ({ port = 0, redirectUri }) {
  const server = createServer()
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${server.address().port}`
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic'
    }],
    async findAccount (ctx, id) {
      const user = USERS[id]
      if (!user) return undefined
      return { accountId: id, claims: async () => ({ sub: id, ...user.claims }) }
    },
    claims: { openid: ['sub'], profile: ['name', 'groups'], email: ['email', 'email_verified'] },
    // The claims go into the ID token, where Debrief reads them.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    // A signing key of its own for each start: a provider started again has rotated its key.
    jwks: { keys: [{ ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' }] },
    // The test client is the company's own app: consent is given for it.
    async loadExistingGrant (ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId)
      if (grantId) return ctx.oidc.provider.Grant.find(grantId)
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId })
      grant.addOIDCScope('openid profile email')
      await grant.save()
      return grant
    }
  })
  const handle = provider.callback()
  server.on('request', (req, res) => {
    const login = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/.exec(req.url.split('?')[0])
    if (!login) return handle(req, res)
    ;(async () => {
      const uid = login[1]
      const details = await provider.interactionDetails(req, res)
      if (details.uid !== uid) throw new Error('another interaction')
      if (!login[2]) {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
        res.end(loginPage(uid))
        return
      }
      const form = await formBody(req)
      const name = form.get('login') ?? ''
      const user = Object.hasOwn(USERS, name) ? USERS[name] : undefined
      if (!user || user.password !== form.get('password')) {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
        res.end(loginPage(uid, 'Wrong user name or password.'))
        return
      }
      await provider.interactionFinished(req, res, { login: { accountId: name } }, { mergeWithLastSubmission: false })
    })().catch((err) => {
      if (!res.headersSent) res.writeHead(400, { 'Content-Type': 'text/plain' })
      res.end(`interaction failed: ${err.message}`)
    })
  })
  return {
    issuer,
    close: () => new Promise((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.argv[2] || 9400)
  const redirectUri = process.argv[3] || 'http://127.0.0.1:4000/auth/callback'
  const { issuer } = await startProvider({ port, redirectUri })
  console.log(`test OpenID provider at ${issuer} (client ${CLIENT_ID} / ${CLIENT_SECRET}, users: ${Object.keys(USERS).join(', ')})`)
}
