// What anonymous writing looks like in the browser: a toggle, a plain-words notice about when the
// item appears and how strong anonymity is here, and the same "More" menu on every anonymous item
// (so nothing on screen marks an item as yours; only this browser's stored key unlocks Edit).

import { api, ApiError, type Held, type HeldItem, type Item, type Phase, type Review } from './api'
import { h, notice, replace } from './dom'
import { memory, type Membership } from './store'

/**
 * Fewer people than this who may post anonymously make anonymity weak: the rest can guess. The
 * server refuses anonymous items below it unless the facilitator allowed small groups.
 */
export const WEAK_BELOW = 3

/** How many people may post anonymously in `phase` (the server's count, by session). */
export function posters (review: Review, phase: Phase): number {
  return review.anonymous.posters[phase]
}

function clock (ms: number): string {
  return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })
}

/** One sentence on when a held item appears. */
export function releaseNote (held: Held): string {
  if (held.release_after === null) return 'Sent anonymously. It appears for everyone when the meeting starts.'
  const soon = `Sent anonymously. It appears for everyone with the next batch, at ${clock(held.release_after)}`
  if (held.release_by === null || held.release_by <= held.release_after) return `${soon}.`
  return `${soon}, or later if nobody else posts anonymously by then (at the latest ${clock(held.release_by)}), so that it never appears alone.`
}

/** Says why anonymous posting is closed in a small group, or null when it is open. */
export function closedForSmallGroup (review: Review, phase: Phase): string | null {
  if (review.anonymous.small_group_anonymity) return null
  const n = posters(review, phase)
  if (n >= WEAK_BELOW) return null
  return `Anonymous posting opens once at least ${WEAK_BELOW} people who can comment have joined (${n} so far): with fewer, the others could tell who wrote it.`
}

/** Words for a refused anonymous submission. */
export function anonymousError (err: unknown, fallback: string): string {
  if (err instanceof ApiError && err.code === 'too_few_for_anonymity') {
    return `Not sent: anonymous posting opens once at least ${WEAK_BELOW} people who can comment have joined, or the others could tell who wrote it. Your text is still here.`
  }
  return err instanceof ApiError ? err.message : fallback
}

/**
 * Shows the release note in `slot` briefly, in place of `sent` (the form that was sent). It is
 * gone before the item appears, so nothing on screen sits next to the released item saying whose
 * it is. Only the note leaves: whatever was opened in the slot since (the next composer) stays,
 * and when the answer comes after the next composer was opened, that composer is left alone.
 */
export function fleeting (slot: HTMLElement, held: Held, sent?: HTMLElement): void {
  if (sent && !slot.contains(sent)) return
  const note = notice(releaseNote(held))
  replace(slot, note)
  const untilRelease = held.release_after === null ? Infinity : held.release_after - Date.now() - 300
  window.setTimeout(() => { note.remove() }, Math.max(0, Math.min(5000, untilRelease)))
}

/** The notice shown while anonymous mode is on. */
export function anonymityNotice (review: Review, phase: Phase): HTMLElement {
  const closed = closedForSmallGroup(review, phase)
  if (closed) return h('div', { class: 'anon-note' }, h('p', { class: 'weak', role: 'alert' }, closed))
  const when = review.anonymous.release === 'meeting'
    ? 'Anonymous items appear when the meeting starts.'
    : `Anonymous items appear together, in shuffled batches about every ${Math.round(review.anonymous.cadence_ms / 1000)} s.`
  const weak = posters(review, phase) < WEAK_BELOW
  return h('div', { class: 'anon-note' },
    h('p', {}, `Others see it as “Anonymous”. Debrief keeps no record of who wrote it, and nothing about it reaches anyone while you write it. ${when}`),
    h('p', {}, 'What Debrief cannot hide: your wording, and details that only you would know.'),
    weak ? h('p', { class: 'weak', role: 'alert' }, `Anonymity is weak here: the facilitator allowed anonymous comments in a small group, and fewer than ${WEAK_BELOW} people can comment now, so the others may guess who wrote it.`) : null)
}

/** Remembers a new item's key, so this browser (and only it) can edit or retract it. */
export function keep (held: HeldItem): void {
  memory.rememberKey(itemId(held.item), held.key)
}

function itemId (item: Item): string {
  return item.kind === 'comment' ? item.comment : item.concern
}

/** The "More" control every anonymous item carries, whoever wrote it. */
export function moreMenu (m: Membership, item: Item, body: string, editable: boolean): HTMLElement {
  const panel = h('div', { class: 'more-panel', hidden: true })
  const button = h('button', { type: 'button', class: 'link more', 'aria-expanded': 'false', 'aria-label': 'More actions for this anonymous item' }, '⋯')
  const status = h('div', {})
  button.addEventListener('click', () => {
    const open = panel.hidden
    panel.hidden = !open
    button.setAttribute('aria-expanded', String(open))
    if (!open) return
    const key = memory.key(itemId(item))
    const parts: HTMLElement[] = []
    if (key && editable) {
      const box = h('textarea', { 'aria-label': 'Edit anonymous item', rows: 3, maxlength: 4000 })
      box.value = body
      const save = h('button', { type: 'button', class: 'primary' }, 'Save anonymously')
      const retract = h('button', { type: 'button' }, 'Retract')
      save.addEventListener('click', () => {
        api.anonymousEdit(m.review, m.session, itemId(item), key, box.value).then((held) => {
          replace(status, notice(`Saved. ${releaseNote(held).replace('Sent anonymously. It', 'The change')}`))
        }, (err: unknown) => { replace(status, notice(anonymousError(err, 'Could not save.'), 'error')) })
      })
      retract.addEventListener('click', () => {
        if (!window.confirm('Retract this anonymous item?')) return
        api.anonymousRetract(m.review, m.session, itemId(item), key).then(() => {
          memory.forgetKey(itemId(item))
          replace(status, notice('Retracted. It disappears with the next batch.'))
        }, (err: unknown) => { replace(status, notice(anonymousError(err, 'Could not retract.'), 'error')) })
      })
      parts.push(box, h('div', { class: 'row' }, save, retract))
    } else {
      parts.push(h('p', { class: 'hint' }, 'Only the browser that wrote an anonymous item can change it.'))
    }
    if (m.role === 'facilitator') {
      const hide = h('button', { type: 'button' }, 'Hide for everyone')
      hide.addEventListener('click', () => {
        if (!window.confirm('Hide this anonymous item for everyone? Nobody, you included, learns who wrote it.')) return
        api.hide(m.review, m.session, item).catch((err: unknown) => {
          replace(status, notice(err instanceof ApiError ? err.message : 'Could not hide it.', 'error'))
        })
      })
      parts.push(h('div', { class: 'row' }, hide))
    }
    replace(panel, ...parts)
  })
  return h('div', { class: 'more-wrap' }, button, panel, status)
}
