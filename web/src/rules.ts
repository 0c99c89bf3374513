// The phase table (docs/architecture.md, "The phase table"), mirrored for explanations only: the server decides and
// enforces every rule; the app uses this to say *why* something is read-only before anyone tries.

import type { Phase, Role } from './api'

export type Access = 'write' | 'read' | 'none'

export function reportAccess (role: Role, phase: Phase): Access {
  if (phase === 'closed') return 'read'
  if (phase === 'draft' && (role === 'participant' || role === 'observer')) return 'none'
  if (role === 'author') return 'write'
  if (phase === 'meeting' && role === 'facilitator') return 'write'
  return 'read'
}

export function mayComment (role: Role, phase: Phase): boolean {
  if (phase === 'draft') return role === 'author'
  if (phase === 'closed') return false
  return role !== 'observer'
}

/** One sentence on why the report is read-only (or hidden) for this role in this phase. */
export function reportExplanation (role: Role, phase: Phase): string | null {
  const access = reportAccess(role, phase)
  if (access === 'write') return null
  if (phase === 'closed') return 'This review is closed: the report, comments and notes are kept as a read-only record.'
  if (access === 'none') return 'The report is still a draft that the authors are writing. You can read and comment on it once the facilitator opens the review.'
  if (role === 'facilitator') return phase === 'draft'
    ? 'Authors are drafting the report. As facilitator you can read it now, comment once the review opens, and edit it during the meeting.'
    : 'Authors write the report. As facilitator you can edit it during the meeting; until then, read and comment.'
  if (role === 'observer') return 'Observers read along: the report and its comments are read-only for you.'
  return 'Only authors edit the report. Select text to comment on it.'
}

export const ROLE_HELP: Record<Role, string> = {
  facilitator: 'runs the review: moves phases, rotates links, moderates',
  author: 'writes the report and answers comments',
  participant: 'reads, comments and takes notes in the meeting',
  observer: 'reads along without changing anything'
}

export const PHASE_HELP: Record<Phase, string> = {
  draft: 'Authors write the report; participants and observers cannot see it yet.',
  review: 'Everyone reads the report and comments on it; only authors edit it.',
  meeting: 'The live meeting: authors and the facilitator edit the report; everyone takes notes.',
  closed: 'Everything becomes read-only for everyone, permanently.'
}
