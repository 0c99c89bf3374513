// The concerns board: free-standing anonymous concerns, most supported first. It shows counts,
// never voters, and marks nothing as yours; support is counted at the next release.

import type * as Y from 'yjs'
import { api, ApiError, type Review } from './api'
import type { Concern } from './discussion'
import { anonymityNotice, anonymousError, fleeting, keep, moreMenu } from './anonymous'
import { h, notice, onNextFrame, replace } from './dom'
import type { Membership } from './store'

export interface BoardOptions {
  root: HTMLElement
  membership: Membership
  review: () => Review
  discussion: Y.Doc
  canRaise: () => boolean
}

export class ConcernsBoard {
  private readonly list = h('ol', { class: 'concerns' })
  private readonly composer = h('div', {})
  private readonly schedule = onNextFrame(() => { this.render() })
  /** Raising a concern, shown only to someone who may raise one now. */
  private readonly raise = h('div', { class: 'raise' },
    h('p', { class: 'hint' }, 'What worries you about this incident? Concerns are always anonymous.'),
    h('button', { type: 'button', id: 'raise-concern' }, 'Raise a concern'))

  constructor (private readonly o: BoardOptions) {
    this.raise.querySelector('button')?.addEventListener('click', () => { this.compose() })
    this.raise.hidden = !o.canRaise()
    replace(o.root,
      h('h2', { class: 'margin-title' }, 'Concerns'),
      this.raise, this.composer, this.list)
    o.discussion.getMap('concerns').observeDeep(() => { this.schedule() })
    this.schedule()
  }

  refresh (): void {
    this.raise.hidden = !this.o.canRaise()
    if (!this.o.canRaise()) replace(this.composer)
    this.schedule()
  }

  private compose (): void {
    if (!this.o.canRaise()) return
    const text = h('textarea', { id: 'concern-composer', 'aria-label': 'Your concern', rows: 3, maxlength: 4000 })
    const send = h('button', { type: 'submit', class: 'primary' }, 'Raise anonymously')
    const cancel = h('button', { type: 'button' }, 'Cancel')
    const status = h('div', {})
    const form = h('form', { class: 'card composer' }, text, anonymityNotice(this.o.review(), this.o.review().phase), h('div', { class: 'row' }, send, cancel), status)
    cancel.addEventListener('click', () => { replace(this.composer) })
    form.addEventListener('submit', (e) => {
      e.preventDefault()
      if (!text.value.trim()) return
      send.disabled = true
      const m = this.o.membership
      api.raiseConcern(m.review, m.session, text.value).then((held) => {
        keep(held)
        fleeting(this.composer, held, form)
      }, (err: unknown) => {
        replace(status, notice(anonymousError(err, 'Could not send the concern.'), 'error'))
        send.disabled = false
      })
    })
    replace(this.composer, form)
    text.focus()
  }


  private render (): void {
    const all = Object.values(this.o.discussion.getMap('concerns').toJSON() as Record<string, Concern>)
    all.sort((a, b) => b.votes.length - a.votes.length || a.createdAt - b.createdAt)
    replace(this.list, ...all.map((c) => this.item(c)))
  }

  private item (c: Concern): HTMLElement {
    const m = this.o.membership
    if (c.hidden) return h('li', { class: 'concern card deleted' }, h('em', {}, 'Hidden by the facilitator'))
    const status = h('div', {})
    const support = this.o.canRaise() ? h('button', { type: 'button', class: 'support' }, 'Support') : null
    support?.addEventListener('click', () => {
      api.support(m.review, m.session, c.id).then((held) => {
        replace(status, notice(held.release_after === null ? 'Counted when the meeting starts.' : 'Counted with the next batch.'))
      }, (err: unknown) => {
        replace(status, notice(anonymousError(err, 'Could not count your support.'), 'error'))
      })
    })
    const discussed = h('button', { type: 'button', class: 'link' }, c.discussed ? 'Mark not discussed' : 'Mark discussed')
    discussed.addEventListener('click', () => {
      api.discussed(m.review, m.session, c.id, !c.discussed).catch((err: unknown) => {
        replace(status, notice(err instanceof ApiError ? err.message : 'Could not change it.', 'error'))
      })
    })
    const count = c.votes.length
    return h('li', { class: c.discussed ? 'concern card discussed' : 'concern card', 'data-concern': c.id },
      h('p', { class: 'body' }, c.body),
      h('div', { class: 'row' },
        h('span', { class: 'count', 'aria-label': `${count} supporting` }, `${count} supporting`),
        c.discussed ? h('span', { class: 'badge' }, 'Discussed') : null,
        support,
        m.role === 'facilitator' ? discussed : null,
        moreMenu(m, { kind: 'concern', concern: c.id }, c.body, this.o.canRaise())),
      status)
  }
}
