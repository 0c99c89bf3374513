// The REST API of the server (see /api/openapi.json), typed. Every failure becomes an ApiError
// with a stable code, including "server_unreachable" when no answer came at all.

export type Role = 'facilitator' | 'author' | 'participant' | 'observer'
export type Phase = 'draft' | 'review' | 'meeting' | 'closed'

export const ROLES: readonly Role[] = ['facilitator', 'author', 'participant', 'observer']
export const PHASES: readonly Phase[] = ['draft', 'review', 'meeting', 'closed']

export interface Review {
  id: string
  title: string
  incident_date: string | null
  severity: string | null
  phase: Phase
  created_at: number
  participants: Record<Role, number>
  documents: { report: string, discussion: string, notes: string }
  anonymous: { release: 'batch' | 'meeting', cadence_ms: number, small_group_anonymity: boolean }
  read_count: number
  server_time: number
  you?: { role: Role, participant: string, name: string }
}

/** Where an anonymous item lives. */
export type Item = { kind: 'comment', thread: string, comment: string } | { kind: 'concern', concern: string }

/** The answer to an anonymous submission: when it appears, and (for new items) its key. */
export interface Held {
  release: 'batch' | 'meeting'
  /** The earliest it appears; null until the meeting in a review that releases then. */
  release_after: number | null
  /** The latest: a batch only one person contributed to waits for others' items up to then. */
  release_by: number | null
  receipt: string
  item?: Item
  key?: string
}

export interface Concern {
  id: string
  body: string
  createdAt: number
  editedAt?: number
  discussed: boolean
  hidden: boolean
  votes: string[]
}

export interface Invite { token: string, link: string }

export interface Created { review: Review, invites: Record<Role, Invite> }
export interface Joined { session: string, review: Review }

export interface Comment {
  id: string
  body: string
  /** Null for an anonymous comment. */
  author: { participant: string, name: string } | null
  anonymous?: boolean
  hidden?: boolean
  createdAt: number
  editedAt?: number
  deleted: boolean
}

export interface Thread {
  id: string
  anchor: { start: string, end: string, quote: string } | null
  resolved: boolean
  createdAt: number
  comments: Comment[]
}

export class ApiError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

async function call<T> (method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = {}
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  if (token !== undefined) headers.Authorization = `Bearer ${token}`
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
  if (res.status === 204) return undefined as T
  let json: unknown
  try {
    json = await res.json()
  } catch {
    throw new ApiError(res.status, 'bad_response', `The server answered ${res.status} without a readable body.`)
  }
  if (!res.ok) {
    const err = json as { code?: string, message?: string }
    throw new ApiError(res.status, err.code ?? 'error', err.message ?? `The server answered ${res.status}.`)
  }
  return json as T
}

export const api = {
  create: (title: string, incidentDate: string | null, severity: string | null, markdown: string | null, release: 'batch' | 'meeting', smallGroups: boolean) =>
    call<Created>('POST', '/api/reviews', {
      title,
      anonymous_release: release,
      ...(smallGroups ? { small_group_anonymity: true } : {}),
      ...(incidentDate ? { incident_date: incidentDate } : {}),
      ...(severity ? { severity } : {}),
      ...(markdown ? { report_markdown: markdown } : {})
    }),
  library: (q: string) => call<{ reviews: { id: string, title: string, incident_date: string | null, severity: string | null, published_at: number }[] }>('GET', `/api/library?q=${encodeURIComponent(q)}`),
  libraryEntry: (id: string) => call<{ id: string, title: string, markdown: string, published_at: number }>('GET', `/api/library/${encodeURIComponent(id)}`),
  join: (invite: string, name: string) => call<Joined>('POST', '/api/join', { invite, name }),
  review: (id: string, session: string) => call<Review>('GET', `/api/reviews/${encodeURIComponent(id)}`, undefined, session),
  movePhase: (id: string, session: string, phase: Phase) =>
    call<Review>('POST', `/api/reviews/${encodeURIComponent(id)}/phase`, { phase }, session),
  rotate: (id: string, session: string, role: Role) =>
    call<{ role: Role, invite: Invite }>('POST', `/api/reviews/${encodeURIComponent(id)}/invites/${role}`, {}, session),
  addThread: (id: string, session: string, body: string, anchor: Thread['anchor']) =>
    call<Thread>('POST', `/api/reviews/${encodeURIComponent(id)}/threads`, anchor ? { body, anchor } : { body }, session),
  reply: (id: string, session: string, thread: string, body: string) =>
    call<Comment>('POST', `/api/reviews/${encodeURIComponent(id)}/threads/${thread}/comments`, { body }, session),
  edit: (id: string, session: string, thread: string, comment: string, body: string) =>
    call<Comment>('PATCH', `/api/reviews/${encodeURIComponent(id)}/threads/${thread}/comments/${comment}`, { body }, session),
  remove: (id: string, session: string, thread: string, comment: string) =>
    call<undefined>('DELETE', `/api/reviews/${encodeURIComponent(id)}/threads/${thread}/comments/${comment}`, undefined, session),
  anonymousThread: (id: string, session: string, body: string, anchor: Thread['anchor']) =>
    call<Held>('POST', `/api/reviews/${encodeURIComponent(id)}/anonymous/threads`, anchor ? { body, anchor } : { body }, session),
  anonymousReply: (id: string, session: string, thread: string, body: string) =>
    call<Held>('POST', `/api/reviews/${encodeURIComponent(id)}/anonymous/threads/${thread}/comments`, { body }, session),
  raiseConcern: (id: string, session: string, body: string) =>
    call<Held>('POST', `/api/reviews/${encodeURIComponent(id)}/concerns`, { body }, session),
  support: (id: string, session: string, concern: string) =>
    call<Held>('POST', `/api/reviews/${encodeURIComponent(id)}/concerns/${concern}/support`, {}, session),
  discussed: (id: string, session: string, concern: string, discussed: boolean) =>
    call<undefined>('POST', `/api/reviews/${encodeURIComponent(id)}/concerns/${concern}/discussed`, { discussed }, session),
  anonymousEdit: (id: string, session: string, item: string, key: string, body: string) =>
    call<Held>('POST', `/api/reviews/${encodeURIComponent(id)}/anonymous/${item}/edit`, { key, body }, session),
  anonymousRetract: (id: string, session: string, item: string, key: string) =>
    call<Held>('POST', `/api/reviews/${encodeURIComponent(id)}/anonymous/${item}/retract`, { key }, session),
  hide: (id: string, session: string, item: Item) =>
    call<undefined>('POST', `/api/reviews/${encodeURIComponent(id)}/moderation/hide`, item, session),
  resolve: (id: string, session: string, thread: string, resolved: boolean) =>
    call<Thread>('POST', `/api/reviews/${encodeURIComponent(id)}/threads/${thread}/${resolved ? 'resolve' : 'reopen'}`, undefined, session)
}
