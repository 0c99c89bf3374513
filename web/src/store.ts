// What this browser remembers: the display name, and the sessions it joined (per review).

import type { Phase, Role } from './api'

export interface Membership {
  review: string
  session: string
  role: Role
  participant: string
  name: string
  title: string
  phase: Phase
  /** This session marked the report read (the server keeps only a hash, and shows a count). */
  read?: boolean
}

const NAME = 'debrief.name'
const SESSIONS = 'debrief.sessions'
const KEYS = 'debrief.keys'

function readKeys (): Record<string, string> {
  try {
    const raw = localStorage.getItem(KEYS)
    return raw ? JSON.parse(raw) as Record<string, string> : {}
  } catch {
    return {}
  }
}

function read (): Record<string, Membership> {
  try {
    const raw = localStorage.getItem(SESSIONS)
    return raw ? JSON.parse(raw) as Record<string, Membership> : {}
  } catch {
    return {}
  }
}

export const memory = {
  name: (): string => localStorage.getItem(NAME) ?? '',
  setName: (name: string): void => { localStorage.setItem(NAME, name) },
  membership: (review: string): Membership | undefined => read()[review],
  memberships: (): Membership[] => Object.values(read()).sort((a, b) => a.title.localeCompare(b.title)),
  remember: (m: Membership): void => {
    const all = read()
    all[m.review] = m
    localStorage.setItem(SESSIONS, JSON.stringify(all))
  },
  /** Forgets the memberships of these session tokens (the server no longer knows them). */
  forgetSessions: (sessions: string[]): void => {
    const gone = new Set(sessions)
    const rest = Object.fromEntries(Object.entries(read()).filter(([, m]) => !gone.has(m.session)))
    localStorage.setItem(SESSIONS, JSON.stringify(rest))
  },
  /** The key of an anonymous item this browser wrote (kept only here; the server has its hash). */
  key: (item: string): string | undefined => readKeys()[item],
  rememberKey: (item: string, key: string): void => {
    const all = readKeys()
    all[item] = key
    localStorage.setItem(KEYS, JSON.stringify(all))
  },
  forgetKey: (item: string): void => {
    const rest = Object.fromEntries(Object.entries(readKeys()).filter(([k]) => k !== item))
    localStorage.setItem(KEYS, JSON.stringify(rest))
  },
  update: (review: string, change: Partial<Membership>): void => {
    const all = read()
    const m = all[review]
    if (!m) return
    all[review] = { ...m, ...change }
    localStorage.setItem(SESSIONS, JSON.stringify(all))
  }
}
