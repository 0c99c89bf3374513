// The REST API of the server (see /api/openapi.json): fetch helpers only. Every request and
// response shape comes from the server's OpenAPI document, through the types generated from it
// (src/generated/api.d.ts, written by scripts/api-types.mjs). Every failure becomes an ApiError
// with a stable code, including "server_unreachable" when no answer came at all.

import type { components } from './generated/api'

type Schemas = components['schemas']

export type Role = Schemas['Role']
export type Phase = Schemas['Phase']
export type ReleaseMode = Schemas['ReleaseMode']
export type Names = Schemas['Names']
export type Review = Schemas['Review']
/** What a session may do in one phase, as the server decides it. */
export type Abilities = Schemas['Abilities']
export type Created = Schemas['CreateReviewResponse']
export type Joined = Schemas['JoinResponse']
/** Where an anonymous item lives. */
export type Item = Schemas['Item']
/** The answer to an anonymous submission: when it appears. */
export type Held = Schemas['Held']
/** The answer to a new anonymous item: when it appears, the item and its key. */
export type HeldItem = Schemas['HeldItem']
/** A thread as a REST command answers it. */
export type ThreadView = Schemas['Thread']
export type Anchor = Schemas['Thread']['anchor']
export type TimerRequest = Schemas['TimerRequest']
export type ActionInput = Schemas['ActionInput']
export type ActionStatus = Schemas['ActionStatus']
export type ActionList = Schemas['ActionList']
export type ListedAction = Schemas['ListedAction']
export type ActionSearch = Schemas['ActionSearch']
export type HomeReview = Schemas['HomeReview']

export type Webhook = Schemas['Webhook']
export type WebhookAttempt = Schemas['WebhookAttempt']
export type WebhookFormat = Schemas['WebhookFormat']
export type ActionKinds = Schemas['ActionKinds']
export type Aggregate = Schemas['Aggregate']

export const ROLES: readonly Role[] = ['facilitator', 'author', 'participant', 'observer']
export const PHASES: readonly Phase[] = ['draft', 'review', 'meeting', 'closed']

export class ApiError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

/** What to tell a person about a failed request. */
export function errorMessage (err: unknown): string {
  if (err instanceof ApiError) {
    switch (err.code) {
      case 'invalid_invite': return 'This invite link is not valid: it may have been replaced by a new one. Ask the facilitator for the current link.'
      case 'server_unreachable': return 'The Debrief server cannot be reached. Check your connection and try again; what you typed is kept.'
      case 'sign_in_required': return `${err.message.charAt(0).toUpperCase()}${err.message.slice(1)}: ${signInHint()}.`
      default: return err.message
    }
  }
  return 'Something went wrong. Try again.'
}

let offered: Promise<Schemas['SignInOffer']> | undefined
let offerKnown: Schemas['SignInOffer'] | undefined

/** How to sign in on this server: its own sign-in, or the company's in front of it (a proxy). */
export function signInHint (): string {
  return offerKnown?.oidc === false && offerKnown.proxy
    ? 'open Debrief through your company\'s sign-in'
    : 'use “Sign in” at the top of the page'
}
let signedInAs: Promise<Schemas['Me'] | null> | undefined

/** Which sign-in the server offers (GET /api/sign-in), asked once per page load. */
export function signInOffer (): Promise<Schemas['SignInOffer']> {
  const none = { oidc: false, proxy: false, required_to_create: false }
  offered ??= fetch('/api/sign-in').then(async (res) => res.ok ? await res.json() as Schemas['SignInOffer'] : none, () => none)
    .then((offer) => { offerKnown = offer; return offer })
  return offered
}

/** Who is signed in (GET /api/me, asked once per page load, and only when the server offers
 * sign-in); null for nobody. Its CSRF token is sent on every request that changes something:
 * the server refuses those signed in by the cookie without it. */
export function whoAmI (): Promise<Schemas['Me'] | null> {
  signedInAs ??= signInOffer().then(async (offer) => {
    if (!offer.oidc && !offer.proxy) return null
    const res = await fetch('/api/me')
    return res.ok ? await res.json() as Schemas['Me'] : null
  }).catch(() => null)
  return signedInAs
}

async function send (method: string, path: string, body?: unknown, token?: string): Promise<Response> {
  const headers: Record<string, string> = {}
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  if (token !== undefined) headers.Authorization = `Bearer ${token}`
  if (method !== 'GET' && method !== 'HEAD') {
    const csrf = (await whoAmI())?.csrf_token
    if (csrf !== undefined) headers['X-Debrief-CSRF'] = csrf
  }
  let res: Response
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? null : JSON.stringify(body)
    })
  } catch {
    throw new ApiError(0, 'server_unreachable', 'The Debrief server cannot be reached. Check your connection and try again.')
  }
  if (!res.ok) {
    const err: Partial<Schemas['Error']> = await res.json().then((j: unknown) => j as Partial<Schemas['Error']>, () => ({}))
    throw new ApiError(res.status, err.code ?? 'error', err.message ?? `The server answered ${res.status}.`)
  }
  return res
}

async function call<T> (method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const res = await send(method, path, body, token)
  if (res.status === 204) return undefined as T
  try {
    return await res.json() as T
  } catch {
    throw new ApiError(res.status, 'bad_response', `The server answered ${res.status} without a readable body.`)
  }
}

/** A review's path under /api. */
const at = (id: string): string => `/api/reviews/${encodeURIComponent(id)}`

export const api = {
  create: (title: string, incidentDate: string | null, severity: string | null, markdown: string | null, release: ReleaseMode, smallGroups: boolean, team: string | null = null, signInRoles: Role[] = []) =>
    call<Created>('POST', '/api/reviews', {
      title,
      ...(team ? { team } : {}),
      anonymous_release: release,
      ...(smallGroups ? { small_group_anonymity: true } : {}),
      ...(incidentDate ? { incident_date: incidentDate } : {}),
      ...(severity ? { severity } : {}),
      ...(markdown ? { report_markdown: markdown } : {}),
      ...(signInRoles.length > 0 ? { sign_in_required: signInRoles } : {})
    } satisfies Schemas['CreateReviewRequest']),
  library: (q: string) => call<Schemas['LibraryList']>('GET', `/api/library?q=${encodeURIComponent(q)}`),
  libraryEntry: (id: string) => call<Schemas['PublishedReview']>('GET', `/api/library/${encodeURIComponent(id)}`),
  libraryFactors: () => call<Schemas['FactorTrend']>('GET', '/api/library/factors'),
  setFactors: (id: string, session: string, factors: string[]) =>
    call<Review>('POST', `${at(id)}/factors`, { factors } satisfies Schemas['FactorsRequest'], session),
  setTeam: (id: string, session: string, team: string | null) =>
    call<Review>('POST', `${at(id)}/team`, { team } satisfies Schemas['TeamRequest'], session),
  pulse: (id: string, session: string) => call<Schemas['PulseView']>('GET', `${at(id)}/pulse`, undefined, session),
  /** The team's trend over this review and those of `others` (the browser's other sessions). */
  pulseTrend: (id: string, session: string, others: string[]) => call<Schemas['PulseTrend']>('POST', `${at(id)}/pulse/trend`, { sessions: others.slice(0, 100) }, session),
  answerPulse: (id: string, session: string, answers: number[]) =>
    call<Schemas['PulseHeld']>('POST', `${at(id)}/pulse`, { answers } satisfies Schemas['PulseRequest'], session),
  invite: (invite: string) => call<Schemas['InviteView']>('POST', '/api/invite', { invite } satisfies Schemas['InviteRequest']),
  join: (invite: string, name: string) => call<Joined>('POST', '/api/join', { invite, name } satisfies Schemas['JoinRequest']),
  signOut: () => call<undefined>('POST', '/auth/logout'),
  review: (id: string, session: string) => call<Review>('GET', at(id), undefined, session),
  movePhase: (id: string, session: string, phase: Phase) =>
    call<Review>('POST', `${at(id)}/phase`, { phase } satisfies Schemas['PhaseRequest'], session),
  rotate: (id: string, session: string, role: Role, signIn?: boolean) =>
    call<Schemas['RotateResponse']>('POST', `${at(id)}/invites/${role}`, signIn === undefined ? {} : { sign_in_required: signIn }, session),
  addThread: (id: string, session: string, body: string, anchor: Anchor) =>
    call<ThreadView>('POST', `${at(id)}/threads`, (anchor ? { body, anchor } : { body }) satisfies Schemas['ThreadRequest'], session),
  reply: (id: string, session: string, thread: string, body: string) =>
    call<Schemas['AuthoredComment']>('POST', `${at(id)}/threads/${thread}/comments`, { body } satisfies Schemas['CommentRequest'], session),
  edit: (id: string, session: string, thread: string, comment: string, body: string) =>
    call<Schemas['AuthoredComment']>('PATCH', `${at(id)}/threads/${thread}/comments/${comment}`, { body } satisfies Schemas['CommentRequest'], session),
  remove: (id: string, session: string, thread: string, comment: string) =>
    call<undefined>('DELETE', `${at(id)}/threads/${thread}/comments/${comment}`, undefined, session),
  anonymousThread: (id: string, session: string, body: string, anchor: Anchor) =>
    call<HeldItem>('POST', `${at(id)}/anonymous/threads`, (anchor ? { body, anchor } : { body }) satisfies Schemas['ThreadRequest'], session),
  anonymousReply: (id: string, session: string, thread: string, body: string) =>
    call<HeldItem>('POST', `${at(id)}/anonymous/threads/${thread}/comments`, { body } satisfies Schemas['CommentRequest'], session),
  raiseConcern: (id: string, session: string, body: string) =>
    call<HeldItem>('POST', `${at(id)}/concerns`, { body } satisfies Schemas['CommentRequest'], session),
  support: (id: string, session: string, concern: string) =>
    call<Held>('POST', `${at(id)}/concerns/${concern}/support`, {} satisfies Schemas['EmptyRequest'], session),
  discussed: (id: string, session: string, concern: string, discussed: boolean) =>
    call<undefined>('POST', `${at(id)}/concerns/${concern}/discussed`, { discussed } satisfies Schemas['DiscussedRequest'], session),
  anonymousEdit: (id: string, session: string, item: string, key: string, body: string) =>
    call<Held>('POST', `${at(id)}/anonymous/${item}/edit`, { key, body } satisfies Schemas['AnonymousEditRequest'], session),
  anonymousRetract: (id: string, session: string, item: string, key: string) =>
    call<Held>('POST', `${at(id)}/anonymous/${item}/retract`, { key } satisfies Schemas['AnonymousRetractRequest'], session),
  hide: (id: string, session: string, item: Item) =>
    call<undefined>('POST', `${at(id)}/moderation/hide`, item, session),
  resolve: (id: string, session: string, thread: string, resolved: boolean) =>
    call<ThreadView>('POST', `${at(id)}/threads/${thread}/${resolved ? 'resolve' : 'reopen'}`, undefined, session),
  timer: (id: string, session: string, request: TimerRequest) =>
    call<Schemas['TimerResponse']>('POST', `${at(id)}/timer`, request, session),
  agenda: (id: string, session: string, item: string) =>
    call<undefined>('POST', `${at(id)}/agenda`, { item } satisfies Schemas['AgendaRequest'], session),
  addAction: (id: string, session: string, input: ActionInput) =>
    call<Schemas['ActionItem']>('POST', `${at(id)}/actions`, input, session),
  updateAction: (id: string, session: string, action: string, input: ActionInput) =>
    call<Schemas['ActionItem']>('PATCH', `${at(id)}/actions/${encodeURIComponent(action)}`, input, session),
  /** Action items across every review these sessions belong to, and the published ones. */
  searchActions: (search: ActionSearch) => call<ActionList>('POST', '/api/actions/search', search),
  /** The reviews these sessions belong to, last changed first, with what waits for the person. */
  home: (sessions: string[], search: string) =>
    call<Schemas['Home']>('POST', '/api/home', { sessions, ...(search ? { search } : {}) } satisfies Schemas['HomeRequest']),
  moveAction: (id: string, session: string, action: string, status: Schemas['ActionStatus']) =>
    call<Schemas['ActionItem']>('POST', `${at(id)}/actions/${encodeURIComponent(action)}/status`, { status } satisfies Schemas['StatusRequest'], session),
  markRead: (id: string, session: string) =>
    call<Schemas['ReadResponse']>('POST', `${at(id)}/read`, {}, session),
  settings: (id: string, session: string, hints: boolean) =>
    call<undefined>('POST', `${at(id)}/settings`, { hints } satisfies Schemas['SettingsRequest'], session),
  publish: (id: string, session: string, published: boolean, names: Names = 'kept') =>
    call<Schemas['PublishResponse']>('POST', `${at(id)}/publish`, { published, names } satisfies Schemas['PublishRequest'], session),
  /** What publishing now would make public, with names kept or replaced by roles. */
  previewPublication: (id: string, session: string, names: Names) =>
    call<Schemas['Preview']>('GET', `${at(id)}/publish?names=${names}`, undefined, session),
  versions: (id: string, session: string) => call<Schemas['VersionList']>('GET', `${at(id)}/versions`, undefined, session),
  version: (id: string, session: string, phase: Phase) => call<Schemas['Version']>('GET', `${at(id)}/versions/${phase}`, undefined, session),
  /** A review's webhooks with their recent attempts (its facilitator). */
  webhooks: (id: string, session: string) =>
    call<Schemas['WebhookList']>('GET', `/api/webhooks?review=${encodeURIComponent(id)}`, undefined, session),
  addWebhook: (id: string, session: string, url: string, format: WebhookFormat) =>
    call<Schemas['CreatedWebhook']>('POST', '/api/webhooks', { review: id, url, format } satisfies Schemas['CreateWebhookRequest'], session),
  removeWebhook: (session: string, webhook: string) =>
    call<undefined>('DELETE', `/api/webhooks/${encodeURIComponent(webhook)}`, undefined, session),
  /** The export as the text of the file to download (Markdown, or JSON of schema Export). */
  exportText: async (id: string, session: string, format: 'md' | 'json') =>
    (await send('GET', `${at(id)}/export.${format}`, undefined, session)).text()
}
