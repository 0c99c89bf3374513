// The meeting and after: the timebox (the server's clock, so every tab agrees), the agenda, action
// items, the read count, hints, pinned versions with what changed, export and publishing. Reads
// the server-written `discussion` document; changes go through the REST API.

import type * as Y from 'yjs'
import { api, ApiError, type ActionInput, type Names, type Review, type TimerRequest } from './api'
import { h, notice, onNextFrame, replace } from './dom'
import { soundsLikeTryHarder } from './hints'
import { publicationView } from './publication'
import { abilities } from './rules'
import { memory, type Membership } from './store'
import { webhooksSection } from './webhooks'

interface Timer { state: 'running' | 'paused' | 'stopped', endsAt?: number | null, remainingMs?: number | null, durationMs: number }
interface Action { id: string, what: string, why: string, kind: string, owner: string, link: string | null, due: string | null, status: string, createdAt: number }

function mmss (ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

/** A line diff (longest common subsequence), for "what changed since the version before". */
export function lineDiff (before: string, after: string): { kind: ' ' | '+' | '-', line: string }[] {
  const a = before.split('\n')
  const b = after.split('\n')
  const n = a.length
  const m = b.length
  const w = m + 1
  const dp = new Int32Array((n + 1) * w)
  const at = (i: number, j: number): number => dp[i * w + j] ?? 0
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      dp[i * w + j] = a[i] === b[j] ? at(i + 1, j + 1) + 1 : Math.max(at(i + 1, j), at(i, j + 1))
    }
  }
  const out: { kind: ' ' | '+' | '-', line: string }[] = []
  let i = 0
  let j = 0
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ kind: ' ', line: a[i] ?? '' })
      i++
      j++
    } else if (at(i + 1, j) >= at(i, j + 1)) {
      out.push({ kind: '-', line: a[i++] ?? '' })
    } else {
      out.push({ kind: '+', line: b[j++] ?? '' })
    }
  }
  while (i < n) out.push({ kind: '-', line: a[i++] ?? '' })
  while (j < m) out.push({ kind: '+', line: b[j++] ?? '' })
  return out
}

export interface MeetingOptions {
  root: HTMLElement
  /** The facilitator's review of the report's flagged sentences (hints.ts), told how many remain. */
  flagReview: (changed?: (left: number) => void) => HTMLElement
  /** How many flagged sentences the facilitator has not dismissed. */
  flagsLeft: () => number
  timerSlot: HTMLElement
  membership: Membership
  review: () => Review
  discussion: Y.Doc
  /** Server time minus this browser's clock, ms. */
  offset: number
  /** Report sections (level-2 headings) that have open threads. */
  sectionsWithThreads: () => string[]
}

/** The action item form: its element, filled with an item to edit or emptied to add one. */
interface ActionForm { element: HTMLElement, fill: (a: Action | null) => void, focus: () => void }

/** An action item's statuses, in the order work moves through them, and how people say them. */
const STATUSES: [ActionInput['status'], string][] = [['open', 'Open'], ['in_progress', 'In progress'], ['done', 'Done']]

const statusLabel = (status: string): string => STATUSES.find(([value]) => value === status)?.[1] ?? status

/** The fields of an item as the API takes them back. */
const inputOf = (a: Action): ActionInput => ({
  what: a.what, why: a.why, kind: a.kind as ActionInput['kind'], owner: a.owner, link: a.link, due: a.due, status: a.status as ActionInput['status']
})

/** What went wrong with an action item, in plain words. */
function actionSaid (err: unknown): string {
  if (!(err instanceof ApiError)) return 'Not saved. Try again.'
  switch (err.code) {
    case 'invalid_what': return 'Not saved: say what will change, in at most 300 characters.'
    case 'invalid_why': return 'Not saved: name the contributing factor it addresses, in at most 500 characters.'
    case 'invalid_owner': return 'Not saved: name the owning team, in at most 100 characters.'
    case 'invalid_link': return 'Not saved: the tracking link must be a web address starting with http:// or https://.'
    case 'invalid_due': return 'Not saved: the due date must be a day of the calendar.'
    case 'unknown_action': return 'Not saved: this action item no longer exists.'
    case 'too_many_actions': return 'Not saved: a review holds at most 200 action items.'
    case 'not_allowed': return 'Not saved: action items can no longer be changed in this phase.'
    case 'server_unreachable': return 'Not saved: the server cannot be reached. Try again in a moment.'
    default: return 'Not saved. Try again.'
  }
}

export class MeetingPanel {
  private tick: number | null = null
  private readonly schedule = onNextFrame(() => { this.render() })
  private readonly agendaEl = h('ol', { class: 'agenda' })
  private readonly actionsEl = h('div', { class: 'actions' })
  private readonly readEl = h('div', { class: 'read' })
  private readonly status = h('div', {})
  /** The current agenda item, large in the presenter view. */
  private readonly nowEl = h('div', { class: 'now', 'aria-live': 'polite' })
  private readonly bigTimer = h('div', { class: 'big-timer', 'aria-hidden': 'true' })
  private readonly agendaStatus = h('div', { class: 'control-error' })

  constructor (private readonly o: MeetingOptions) {
    o.discussion.getMap('meeting').observeDeep(() => { this.schedule() })
    o.discussion.getMap('actions').observeDeep(() => { this.schedule() })
    o.discussion.getMap('concerns').observeDeep(() => { this.schedule() })
    o.discussion.getMap('review').observe(() => { this.schedule() })
    this.tick = window.setInterval(() => { this.renderTimer() }, 500)
    this.schedule()
  }

  destroy (): void {
    if (this.tick !== null) window.clearInterval(this.tick)
  }

  private get m (): Membership { return this.o.membership }
  private get phase (): string { return this.o.review().phase }


  private fail (err: unknown): void {
    replace(this.status, notice(err instanceof ApiError ? err.message : 'That did not work.', 'error'))
  }

  /** Awaits a command, showing its failure in the panel's status line. */
  private command<T> (sent: Promise<T>): Promise<T> {
    return sent.then((x) => {
      replace(this.status)
      return x
    }, (err: unknown) => { this.fail(err); throw err })
  }

  private timer (): Timer {
    const t = this.o.discussion.getMap('meeting').get('timer') as Timer | undefined
    return t ?? { state: 'stopped', durationMs: 0 }
  }

  /** The timebox, only during the meeting: before it there is none, and after it none is left. */
  private renderTimer (): void {
    const t = this.timer()
    if (this.phase !== 'meeting') {
      replace(this.o.timerSlot)
      replace(this.bigTimer)
      return
    }
    const now = Date.now() + this.o.offset
    const left = t.state === 'running' ? (t.endsAt ?? now) - now : t.state === 'paused' ? (t.remainingMs ?? 0) : 0
    const label = t.state === 'stopped' ? 'Timebox not started' : `${mmss(left)} left${t.state === 'paused' ? ' (paused)' : ''}`
    let el = this.o.timerSlot.querySelector('.timer')
    if (!el) {
      el = h('span', { class: 'timer', role: 'timer', 'aria-live': 'off' })
      this.o.timerSlot.prepend(el)
    }
    el.textContent = label
    el.classList.toggle('over', t.state === 'running' && left <= 0)
    this.bigTimer.textContent = t.state === 'stopped' ? '–:––' : mmss(left)
    this.bigTimer.classList.toggle('over', t.state === 'running' && left <= 0)
    this.updateTimerControls(t)
  }

  /** Each timer control is enabled only when it applies to the timer as it is now. */
  private updateTimerControls (t: Timer): void {
    const controls = this.o.timerSlot.querySelector('.timer-controls')
    if (!controls) return
    const button = (id: string): HTMLButtonElement | null => controls.querySelector(`#${id}`)
    const start = button('timer-start')
    if (start) start.textContent = t.state === 'stopped' ? 'Start' : 'Restart'
    const pause = button('timer-pause')
    if (pause) pause.disabled = t.state !== 'running'
    const resume = button('timer-resume')
    if (resume) resume.disabled = t.state !== 'paused'
    const extend = button('timer-extend')
    if (extend) extend.disabled = t.state === 'stopped'
  }

  /** What went wrong with a meeting control, in plain words (never the server's own text). */
  private static said (err: unknown): string {
    if (!(err instanceof ApiError)) return 'That did not work. Try again.'
    switch (err.code) {
      case 'invalid_minutes': return 'Choose a timebox from 1 to 240 minutes.'
      case 'invalid_timer_action': return 'The timer has changed meanwhile; try again.'
      case 'not_in_meeting': return 'The meeting is over, so the timer and agenda are closed.'
      case 'server_unreachable': return 'The server cannot be reached. Try again in a moment.'
      case 'not_allowed': return 'Only the facilitator runs the timer and the agenda.'
      default: return 'That did not work. Try again.'
    }
  }

  /** Sends a meeting command, showing its failure in `slot`, beside the control that sent it. */
  private beside<T> (slot: HTMLElement, sent: Promise<T>): void {
    replace(slot)
    sent.then(() => { replace(slot) }, (err: unknown) => {
      replace(slot, h('span', { class: 'notice error', role: 'alert' }, MeetingPanel.said(err)))
    })
  }

  private render (): void {
    this.renderTimer()
    const facilitator = this.m.role === 'facilitator'
    const meeting = this.phase === 'meeting'
    // Facilitator controls for the timebox, with their own place for what went wrong.
    if (facilitator && meeting && !this.o.timerSlot.querySelector('.timer-controls')) {
      const minutes = h('input', { type: 'number', min: 1, max: 240, value: 30, 'aria-label': 'Timebox minutes', class: 'minutes' })
      const start = h('button', { type: 'button', id: 'timer-start' }, 'Start')
      const pause = h('button', { type: 'button', id: 'timer-pause' }, 'Pause')
      const resume = h('button', { type: 'button', id: 'timer-resume' }, 'Resume')
      const extend = h('button', { type: 'button', id: 'timer-extend' }, '+5 min')
      const error = h('span', { class: 'control-error timer-error' })
      const send = (request: TimerRequest) => { this.beside(error, api.timer(this.m.review, this.m.session, request)) }
      start.addEventListener('click', () => { send({ action: 'start', minutes: Number(minutes.value) }) })
      pause.addEventListener('click', () => { send({ action: 'pause' }) })
      resume.addEventListener('click', () => { send({ action: 'resume' }) })
      extend.addEventListener('click', () => { send({ action: 'extend', minutes: 5 }) })
      this.o.timerSlot.appendChild(h('span', { class: 'timer-controls' }, minutes, start, pause, resume, extend, error))
      this.updateTimerControls(this.timer())
    }
    if (!meeting) this.o.timerSlot.querySelector('.timer-controls')?.remove()

    // Agenda: sections with open threads, then concerns by support.
    const current = this.o.discussion.getMap('meeting').get('agenda')
    const concerns = Object.values(this.o.discussion.getMap('concerns').toJSON() as Record<string, { body: string, votes: string[], hidden: boolean, discussed: boolean }>)
      .filter((c) => !c.hidden)
      .sort((a, b) => b.votes.length - a.votes.length)
    const items = [
      ...this.o.sectionsWithThreads().map((s) => `Section: ${s}`),
      ...concerns.map((c) => `Concern: ${c.body.slice(0, 150)}`)
    ]
    replace(this.agendaEl, ...items.map((item) => {
      const here = item === current
      const go = facilitator && meeting ? h('button', { type: 'button', class: 'link', 'data-agenda': item }, here ? 'Current' : 'Go') : null
      go?.addEventListener('click', () => { this.beside(this.agendaStatus, api.agenda(this.m.review, this.m.session, item)) })
      return h('li', { class: here ? 'here' : '', 'aria-current': here ? 'step' : null }, item, ' ', go)
    }))
    replace(this.nowEl, ...(meeting
      ? [h('span', { class: 'now-label' }, 'Now'), h('span', { class: 'now-item' }, typeof current === 'string' && current !== '' ? current : 'No agenda item chosen yet')]
      : []))

    this.renderActions()
    this.renderRead()
  }

  /** "I have read the report", beside the next step at the top of the page (see `readControl`). */
  private renderRead (): void {
    if (!abilities(this.o.review()).mark_read || (this.phase !== 'review' && this.phase !== 'meeting')) {
      replace(this.readEl)
      return
    }
    const count = Number(this.o.discussion.getMap('meeting').get('readCount') ?? this.o.review().read_count)
    const people = Number(this.o.discussion.getMap('meeting').get('people') ?? Object.values(this.o.review().participants).reduce((a, b) => a + b, 0))
    const shown = h('span', { class: 'read-count' }, `${count} of ${people} have read it`)
    const existing = this.readEl.querySelector('.read-done')
    if (memory.membership(this.m.review)?.read === true) {
      replace(this.readEl, existing ?? h('span', { class: 'read-done', role: 'status' }, '✓ You have read the report'), ' ', shown)
      return
    }
    const mark = h('button', { type: 'button', id: 'mark-read' }, 'I have read the report')
    mark.addEventListener('click', () => {
      mark.disabled = true
      mark.textContent = 'Marking…'
      api.markRead(this.m.review, this.m.session).then((answer) => {
        memory.update(this.m.review, { read: true })
        const at = new Date(answer.counted_after).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })
        // The count everyone sees changes with the next batch, so it does not say who just read.
        replace(this.readEl, h('span', { class: 'read-done', role: 'status' }, `✓ You have read the report. It is counted with the next batch, at ${at}.`), ' ', shown)
      }, (err: unknown) => {
        mark.disabled = false
        mark.textContent = 'I have read the report'
        replace(this.readEl, mark, ' ', h('span', { class: 'control-error' }, h('span', { class: 'notice error', role: 'alert' }, err instanceof ApiError && err.code === 'server_unreachable'
          ? 'The server cannot be reached. Try again in a moment.'
          : 'It could not be marked. Try again.')))
      })
    })
    replace(this.readEl, mark, ' ', shown)
  }

  /** The read control, which the review screen shows beside what to do now. */
  readControl (): HTMLElement {
    return this.readEl
  }

  /** The action item being edited in the form, if any. */
  private editing: string | null = null
  private form: ActionForm | null = null

  private actionsNow (): Action[] {
    return Object.values(this.o.discussion.getMap('actions').toJSON() as Record<string, Action>).sort((a, b) => a.createdAt - b.createdAt)
  }

  /**
   * The action items as a table that fits the column: what (with why, kind and link), owner and
   * due, status. Someone who may write action items moves the status from the table and edits an
   * item in the form below it.
   */
  private renderActions (): void {
    const actions = this.actionsNow()
    const writable = abilities(this.o.review()).actions
    if (this.editing !== null && !actions.some((a) => a.id === this.editing)) this.editing = null
    const row = (a: Action): HTMLElement => {
      const what = h('td', { class: 'what' },
        a.link ? h('a', { href: a.link, rel: 'noopener noreferrer', target: '_blank' }, a.what) : a.what,
        h('div', { class: 'muted' }, a.why),
        h('span', { class: 'kind' }, a.kind))
      const status = h('td', { class: 'status-cell' })
      if (writable) {
        const select = h('select', { 'aria-label': `Status of “${a.what}”`, 'data-action-status': a.id },
          ...STATUSES.map(([value, label]) => h('option', { value }, label)))
        select.value = a.status
        const error = h('div', { class: 'control-error' })
        select.addEventListener('change', () => {
          const status = select.value as ActionInput['status']
          select.disabled = true
          api.updateAction(this.m.review, this.m.session, a.id, { ...inputOf(a), status }).then(() => {
            replace(error)
          }, (err: unknown) => {
            select.value = a.status
            replace(error, h('span', { class: 'notice error', role: 'alert' }, actionSaid(err)))
          }).finally(() => { select.disabled = false })
        })
        const edit = h('button', { type: 'button', class: 'link', 'data-action-edit': a.id, 'aria-label': `Edit “${a.what}”` }, 'Edit')
        edit.addEventListener('click', () => { this.startEditing(a) })
        status.append(select, edit, error)
      } else {
        status.append(statusLabel(a.status))
      }
      return h('tr', { 'data-action': a.id, class: a.id === this.editing ? 'editing' : '' },
        what, h('td', {}, a.owner, a.due ? h('div', { class: 'muted' }, `due ${a.due}`) : null), status)
    }
    const table = actions.length === 0
      ? h('p', { class: 'hint' }, 'No action items yet.')
      : h('table', { class: 'action-table' },
        h('colgroup', {}, h('col', { class: 'col-what' }), h('col', { class: 'col-owner' }), h('col', { class: 'col-status' })),
        h('thead', {}, h('tr', {}, ...['What', 'Owner', 'Status'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, ...actions.map(row)))
    if (writable && this.form === null) this.form = this.actionForm()
    replace(this.actionsEl, table, writable && this.form ? this.form.element : null)
  }

  private startEditing (a: Action): void {
    this.editing = a.id
    this.form?.fill(a)
    this.renderActions()
    this.form?.focus()
  }

  private stopEditing (): void {
    this.editing = null
    this.form?.fill(null)
    this.renderActions()
  }

  private actionForm (): ActionForm {
    const what = h('input', { id: 'action-what', maxlength: 300, required: true })
    const why = h('input', { id: 'action-why', maxlength: 500, required: true })
    const kind = h('select', { id: 'action-kind' }, ...['prevent', 'detect', 'mitigate', 'process'].map((k) => h('option', { value: k }, k)))
    const owner = h('input', { id: 'action-owner', maxlength: 100, required: true })
    // A web address, or an issue key (PROJ-123) that the server's tracker patterns turn into one.
    const link = h('input', { id: 'action-link', type: 'text', inputmode: 'url', autocomplete: 'off', placeholder: 'https://… or an issue key' })
    const due = h('input', { id: 'action-due', type: 'date' })
    const nudge = h('p', { class: 'nudge', hidden: true, role: 'status' }, 'This reads like asking people to try harder. What change to tools, defaults or process would make the mistake hard to make?')
    what.addEventListener('input', () => { nudge.hidden = !soundsLikeTryHarder(what.value) })
    const status = h('div', { class: 'control-error' })
    const title = h('h3', { class: 'form-title' }, 'Add an action item')
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Add action item')
    const cancel = h('button', { type: 'button', hidden: true }, 'Cancel')
    cancel.addEventListener('click', () => { replace(status); this.stopEditing() })
    let current: Action | null = null
    const form = h('form', { class: 'action-form' }, title,
      h('label', { for: 'action-what' }, 'What will change'), what, nudge,
      h('label', { for: 'action-why' }, 'Contributing factor it addresses'), why,
      h('div', { class: 'row' },
        h('div', {}, h('label', { for: 'action-kind' }, 'Kind'), kind),
        h('div', {}, h('label', { for: 'action-owner' }, 'Owning team'), owner)),
      h('div', { class: 'row' },
        h('div', {}, h('label', { for: 'action-link' }, 'Tracking link'), link),
        h('div', {}, h('label', { for: 'action-due' }, 'Due'), due)),
      h('div', { class: 'row' }, submit, cancel), status)
    const fill = (a: Action | null): void => {
      current = a
      what.value = a?.what ?? ''
      why.value = a?.why ?? ''
      kind.value = a?.kind ?? 'prevent'
      owner.value = a?.owner ?? ''
      link.value = a?.link ?? ''
      due.value = a?.due ?? ''
      nudge.hidden = !soundsLikeTryHarder(what.value)
      title.textContent = a ? 'Edit the action item' : 'Add an action item'
      submit.textContent = a ? 'Save changes' : 'Add action item'
      cancel.hidden = a === null
    }
    form.addEventListener('submit', (e) => {
      e.preventDefault()
      const input: ActionInput = {
        what: what.value, why: why.value, kind: kind.value as ActionInput['kind'], owner: owner.value,
        link: link.value || null, due: due.value || null, status: (current?.status ?? 'open') as ActionInput['status']
      }
      const sent = current ? api.updateAction(this.m.review, this.m.session, current.id, input) : api.addAction(this.m.review, this.m.session, input)
      sent.then(() => {
        replace(status)
        if (current) this.stopEditing()
        else fill(null)
      }, (err: unknown) => { replace(status, h('span', { class: 'notice error', role: 'alert' }, actionSaid(err))) })
    })
    return { element: form, fill, focus: () => { what.focus() } }
  }

  /** The panel's sections (agenda, actions, read count, record), built once. */
  mount (): void {
    const facilitator = this.m.role === 'facilitator'
    const hints = h('input', { type: 'checkbox', id: 'hints-toggle' })
    hints.checked = this.o.discussion.getMap('review').get('hints') !== false
    hints.addEventListener('change', () => { void this.command(api.settings(this.m.review, this.m.session, hints.checked)).catch(() => undefined) })
    const exportMd = h('button', { type: 'button', id: 'export-md' }, 'Export Markdown')
    const exportJson = h('button', { type: 'button' }, 'Export JSON')
    const download = (ext: 'md' | 'json') => {
      api.exportText(this.m.review, this.m.session, ext).then((body) => {
        const text = ext === 'json' ? JSON.stringify(JSON.parse(body), null, 2) : body
        const a = h('a', { href: URL.createObjectURL(new Blob([text], { type: ext === 'md' ? 'text/markdown' : 'application/json' })), download: `review-${this.m.review}.${ext}` })
        document.body.appendChild(a)
        a.click()
        a.remove()
      }, (err: unknown) => { this.fail(err) })
    }
    exportMd.addEventListener('click', () => { download('md') })
    exportJson.addEventListener('click', () => { download('json') })
    const versions = h('button', { type: 'button', id: 'show-versions' }, 'Versions')
    versions.addEventListener('click', () => { void this.showVersions() })
    const publish = h('button', { type: 'button', id: 'publish' }, 'Publish to the library…')
    publish.addEventListener('click', () => { this.publishDialog() })
    const unpublish = h('button', { type: 'button', id: 'unpublish' }, 'Take it out of the library')
    unpublish.addEventListener('click', () => {
      this.command(api.publish(this.m.review, this.m.session, false)).then(() => {
        replace(this.status, notice('No longer in the library.'))
      }, () => undefined)
    })
    replace(this.o.root,
      this.bigTimer, this.nowEl,
      h('section', { 'aria-labelledby': 'agenda-h', class: 'agenda-section' }, h('h2', { id: 'agenda-h', class: 'margin-title' }, 'Agenda'), this.agendaEl, this.agendaStatus),
      h('section', { 'aria-labelledby': 'actions-h' }, h('h2', { id: 'actions-h', class: 'margin-title' }, 'Action items'), this.actionsEl),
      h('section', { 'aria-labelledby': 'record-h' }, h('h2', { id: 'record-h', class: 'margin-title' }, 'Record'),
        facilitator ? h('label', { class: 'check' }, hints, ' Blameless-language hints for everyone') : null,
        abilities(this.o.review()).records ? h('div', { class: 'row' }, versions, exportMd, exportJson) : null,
        facilitator && this.phase === 'closed' ? h('div', { class: 'row' }, publish, unpublish) : null,
        this.status,
        facilitator ? webhooksSection(this.m.review, this.m.session) : null))
    this.schedule()
  }

  /**
   * Publishing says what it publishes (issue 17): the facilitator chooses whether names are
   * replaced by roles (the default), reads exactly what will be public in the library's own
   * view, reviews the flagged sentences not dismissed yet, and only then publishes.
   */
  private publishDialog (): void {
    const review = this.o.review()
    const roles = h('input', { type: 'checkbox', id: 'publish-roles' })
    roles.checked = true
    const names = (): Names => roles.checked ? 'roles' : 'kept'
    const confirm = h('button', { value: 'publish', class: 'primary', id: 'confirm-publish', disabled: '' }, 'Publish')
    const preview = h('div', { class: 'publish-preview', id: 'publish-preview', tabindex: '0', 'aria-label': 'Preview of what will be public' })
    let asked = 0
    const load = (): void => {
      const mine = ++asked
      const mode = names()
      confirm.disabled = true
      replace(preview, notice('Loading the preview…'))
      api.previewPublication(this.m.review, this.m.session, mode).then((p) => {
        if (mine !== asked) return
        replace(preview, publicationView({ ...review, published_at: null, html: p.html, names: mode }))
        confirm.disabled = false
      }, (err: unknown) => {
        if (mine === asked) replace(preview, notice(err instanceof ApiError ? err.message : 'The preview could not be loaded.', 'error'))
      })
    }
    roles.addEventListener('change', load)
    const flags = this.o.flagsLeft() > 0
      ? h('section', { 'aria-labelledby': 'publish-flags-h' },
        h('h3', { id: 'publish-flags-h' }, 'Sentences that may blame a person'),
        this.o.flagReview())
      : null
    const dialog = h('dialog', { 'aria-labelledby': 'publish-dialog-h', class: 'publish-dialog' },
      h('h2', { id: 'publish-dialog-h' }, 'Publish to the library'),
      h('p', {}, 'Anyone who can reach this server can find and read what you publish. Anonymous comments and concerns stay anonymous.'),
      h('label', { class: 'check' }, roles, ' Replace people’s names with their roles'),
      h('p', { class: 'muted' }, 'Everyone who joined this review becomes their role (“Participant 2”), as author and wherever their name is written. Names of people who never joined cannot be recognised: read the preview.'),
      flags,
      h('h3', {}, 'What will be public'),
      preview,
      h('form', { method: 'dialog', class: 'row' }, confirm, h('button', { value: 'cancel' }, 'Cancel')))
    document.body.appendChild(dialog)
    dialog.addEventListener('close', () => {
      dialog.remove()
      if (dialog.returnValue !== 'publish') return
      const mode = names()
      this.command(api.publish(this.m.review, this.m.session, true, mode)).then((r) => {
        const link = r.published ? r.link : `/library/${this.m.review}`
        replace(this.status, h('p', { class: 'notice info', role: 'status' },
          mode === 'roles' ? 'Published with names replaced by roles. ' : 'Published with names as written. ',
          'Anyone who can reach this server can read it: ', h('a', { href: link }, 'open it in the library'), '.'))
      }, () => undefined)
    })
    dialog.showModal()
    load()
  }

  private async showVersions (): Promise<void> {
    try {
      const list = await api.versions(this.m.review, this.m.session)
      const view = h('div', { class: 'version-view' })
      const dialog = h('dialog', { 'aria-label': 'Pinned versions', class: 'versions' },
        h('h2', {}, 'Pinned versions'),
        list.versions.length === 0 ? h('p', {}, 'A version is pinned each time the review changes phase.') : null,
        h('div', { class: 'row' }, ...list.versions.map((v, i) => {
          const b = h('button', { type: 'button', 'data-version': v.phase }, v.label)
          b.addEventListener('click', () => {
            void (async () => {
              const got = await api.version(this.m.review, this.m.session, v.phase)
              const prevPhase = list.versions[i - 1]?.phase
              const prev = prevPhase ? await api.version(this.m.review, this.m.session, prevPhase) : null
              const lines = prev ? lineDiff(prev.report, got.report) : got.report.split('\n').map((line) => ({ kind: ' ' as const, line }))
              replace(view,
                h('p', { class: 'hint' }, prev ? `Changes since "${list.versions[i - 1]?.label ?? ''}"` : 'The first pinned version'),
                h('pre', { class: 'diff' }, ...lines.map((l) => h('span', { class: l.kind === '+' ? 'add' : l.kind === '-' ? 'del' : '' }, `${l.kind} ${l.line}\n`))))
            })().catch((err: unknown) => { replace(view, notice(err instanceof ApiError ? err.message : 'Could not load it.', 'error')) })
          })
          return b
        })),
        view,
        h('form', { method: 'dialog' }, h('button', {}, 'Close')))
      document.body.appendChild(dialog)
      dialog.addEventListener('close', () => { dialog.remove() })
      dialog.showModal()
    } catch (err) {
      this.fail(err)
    }
  }
}
