// What a person may do, and the words that explain it. The server decides every rule and tells
// each session what it may do in every phase (`you.may` of the review, computed by the checks its
// requests and connections go through): the app shows a control only when that says it works,
// and explains the rest from the same answers.

import type { Abilities, Phase, Review, Role } from './api'

const NOTHING: Abilities = {
  report: 'none', notes: 'none', comment: false, actions: false, mark_read: false, records: false, facilitate: false, chair: false
}

/** What the session `review` was read through may do in `phase` (nothing when it is unknown). */
export function abilities (review: Review, phase: Phase = review.phase): Abilities {
  return review.you?.may[phase] ?? NOTHING
}

/** One sentence on why the report is read-only (or hidden) for this person in `phase`. */
export function reportExplanation (role: Role, review: Review, phase: Phase): string | null {
  const may = abilities(review, phase)
  if (may.report === 'write') return null
  if (phase === 'closed') return 'This review is closed: the report, comments and notes are kept as a read-only record.'
  if (may.report === 'none') {
    const later = abilities(review, 'review')
    return `The report is still a draft that the authors are writing. You can read it${later.comment ? ' and comment on it' : ''} once the facilitator opens the review.`
  }
  if (role === 'facilitator') return phase === 'draft'
    ? 'Authors are drafting the report. As facilitator you can read it now, comment once the review opens, and edit it during the meeting.'
    : 'Authors write the report. As facilitator you can edit it during the meeting; until then, read and comment.'
  if (!may.comment) return 'You read along: the report and its comments are read-only for you.'
  return 'Only authors edit the report. Select text to comment on it.'
}

/** What `phase` means for someone who may do `may` in it, in one sentence. */
export function phaseMeaning (phase: Phase, may: Abilities): string {
  if (phase === 'closed') return 'Everything is kept as a read-only record.'
  if (may.report === 'none') return 'The authors draft the report; you cannot see it yet.'
  const verbs = [may.report === 'write' ? 'edit the report' : 'read the report']
  if (may.comment) verbs.push('comment')
  if (may.notes === 'write') verbs.push('take notes')
  else if (may.notes === 'read') verbs.push('follow the notes')
  if (may.actions) verbs.push('add action items')
  if (may.chair) verbs.push('run the timebox and agenda')
  const last = verbs.pop() ?? ''
  return `You ${verbs.length > 0 ? `${verbs.join(', ')} and ${last}` : last}.`
}

/** The one thing to do now, for someone who may do `may` in `phase`. */
export function nextStep (phase: Phase, may: Abilities): string {
  if (may.report === 'none') return 'Nothing to do yet: the authors are drafting. This page shows the report as soon as the facilitator opens the review.'
  switch (phase) {
    case 'draft':
      if (may.report === 'write') return 'Write the report: fill in each section, then tell the facilitator it is ready for review.'
      return may.facilitate
        ? 'Share the invite links, and open the review once the authors have a draft.'
        : 'Read the draft as it is written.'
    case 'review': {
      if (may.report === 'write') return 'Answer the comments and improve the report.'
      const read = `Read the report${may.comment ? ', comment where something is unclear' : ''}${may.mark_read ? ', then mark it read' : ''}.`
      return may.facilitate ? `${read} Start the meeting when people have read it.` : read
    }
    case 'meeting':
      if (may.chair) return 'Run the meeting: start the timebox, go through the agenda, record action items, then close the review.'
      if (may.notes === 'write') return `Take notes${may.actions ? ' and add action items' : ''} as the team talks.`
      return 'Follow the notes and the agenda.'
    case 'closed':
      return may.facilitate
        ? 'The review is closed: export it, or publish it to the library.'
        : 'The review is closed: read the record whenever you need it.'
  }
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
  meeting: 'The live meeting: authors and the facilitator edit the report; everyone but observers takes notes.',
  closed: 'Everything becomes read-only for everyone, permanently.'
}

export const PHASE_NAMES: Record<Phase, string> = {
  draft: 'Draft',
  review: 'Review',
  meeting: 'Meeting',
  closed: 'Closed'
}
