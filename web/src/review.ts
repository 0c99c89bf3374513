// The review screen: a header that stays in view (title, phase, who is here, an honest save
// indicator), where the review is and what to do now, facilitator controls, the report editor and
// the comments margin; in the meeting, the notes and the meeting panel come first, and a
// presenter view shows the timer and the current agenda item large. One socket carries every document
// (HocuspocusProviderWebsocket); each document has its own provider and the session token.

import * as Y from 'yjs'
import { HocuspocusProvider, HocuspocusProviderWebsocket, WebSocketStatus } from '@hocuspocus/provider'
import type { Editor } from '@tiptap/core'
import { api, ApiError, PHASES, ROLES, type Phase, type Review } from './api'
import { CommentsPanel } from './comments'
import { ConcernsBoard } from './concerns'
import { MeetingPanel } from './meeting'
import { h, notice, replace } from './dom'
import { createEditor, setWritable, toolbar } from './editor'
import { flagReview, undismissed } from './hints'
import { abilities, nextStep, PHASE_HELP, PHASE_NAMES, phaseMeaning, reportExplanation, ROLE_HELP } from './rules'
import { memory, type Membership } from './store'
import { signedIn } from './signin'
import { count } from './debug'
import { factorsSection, pulseSection } from './learning'

const COLORS = ['#b4541a', '#1f6feb', '#8250df', '#1a7f37', '#bf3989', '#9a6700', '#0a7ea4', '#cf222e']

/** How often a page that cannot see the review's documents yet (draft) asks for the phase. */
const PHASE_POLL_MS = 3000

/** A change the server has not acknowledged for this long means the server is not answering. */
const UNANSWERED_MS = 5000

/** Whether the presenter view was asked for in the address (`?present`). */
function presentingFromUrl (): boolean {
  return new URLSearchParams(location.search).has('present')
}

function colorFor (name: string): string {
  let hash = 0
  for (const ch of name) hash = (hash * 31 + (ch.codePointAt(0) ?? 0)) >>> 0
  return COLORS[hash % COLORS.length] ?? '#1f6feb'
}

/** Why moving the phase did not work, in plain words. */
function phaseError (err: unknown, next: Phase): string {
  if (!(err instanceof ApiError)) return 'The phase could not be changed. Try again.'
  switch (err.code) {
    case 'illegal_transition': return `The review has moved on meanwhile, so it cannot be moved to ${next}. Reload the page to see where it is.`
    case 'server_unreachable': return `The server cannot be reached, so the review is not in ${next} yet. Try again in a moment.`
    case 'document_too_large':
    case 'review_quota_exceeded': return `The review moved to ${next}, but its record is full, so the move could not be written down completely. Try again; if it keeps failing, export the review.`
    default: return 'The phase could not be changed. Try again.'
  }
}

function collabUrl (): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/collab`
}

export function openReview (app: HTMLElement, id: string, header: () => HTMLElement): void {
  const membership = memory.membership(id)
  if (!membership) {
    replace(app, header(), h('main', { class: 'narrow' },
      notice('You have not joined this review in this browser. Open the invite link you were sent to join it.', 'error'),
      h('a', { href: '/' }, 'Go to the start page')))
    return
  }
  replace(app, header(), h('main', { class: 'narrow' }, notice('Loading the review…')))
  api.review(id, membership.session).then((review) => {
    new ReviewScreen(app, header, membership, review).start()
  }, (err: unknown) => {
    const text = err instanceof ApiError && err.code === 'unknown_review'
      ? 'This review does not exist. Check the address.'
      : err instanceof ApiError && err.code === 'invalid_token'
        ? 'Your place in this review has ended (your invite may have been revoked). Ask the facilitator for a current invite link.'
        : err instanceof ApiError ? err.message : 'The review could not be loaded.'
    const retry = h('button', { type: 'button' }, 'Try again')
    retry.addEventListener('click', () => { openReview(app, id, header) })
    replace(app, header(), h('main', { class: 'narrow' }, notice(text, 'error'), retry))
  })
}

/** Where the reason of the blameless hint at the caret is said, below an editor. */
const hintPanel = (): HTMLElement => h('div', { class: 'hint-panel', role: 'status', 'aria-live': 'polite', hidden: true })

class ReviewScreen {
  private readonly socket: HocuspocusProviderWebsocket
  private readonly providers: HocuspocusProvider[] = []
  private report: HocuspocusProvider | null = null
  private editor: Editor | null = null
  private comments: CommentsPanel | null = null
  private concerns: ConcernsBoard | null = null
  private meeting: MeetingPanel | null = null
  private notesEditor: Editor | null = null
  private readonly timerSlot = h('span', { class: 'timer-slot' })
  private phase: Phase
  private readonly statusEl = h('span', { class: 'status', role: 'status', 'data-state': 'connecting', hidden: true }, 'Connecting…')
  private notes: HocuspocusProvider | null = null
  /** When each document's oldest unacknowledged change was made (absent: none pending). */
  private readonly pendingSince = new Map<HocuspocusProvider, number>()
  private statusTimer: number | null = null
  private everConnected = false
  private readonly phaseBar = h('ol', { class: 'phase-bar', 'aria-label': 'Phases of the review' })
  private readonly nextStepEl = h('p', { class: 'next-step' })
  private readonly presentToggle = h('button', { type: 'button', id: 'present-toggle', class: 'present-toggle', hidden: true }, 'Presenter view')
  private headObserver: ResizeObserver | null = null
  private readonly presenceEl = h('ul', { class: 'presence', 'aria-label': 'Who is here' })
  private readonly phaseEl = h('span', { class: 'phase' })
  /** "3 of 5 actions done", linking to the action items page; live from the discussion. */
  private readonly actionsEl = h('a', { href: '/actions', class: 'actions-count', id: 'actions-count' })
  private readonly banner = h('div', { class: 'banner', hidden: true })
  /** The culture pulse, once the review is closed. */
  private readonly pulseSlot = h('div', {})
  private readonly controls = h('div', { class: 'controls' })
  private poll: number | null = null
  private readonly user: { name: string, color: string }

  constructor (
    private readonly app: HTMLElement,
    private readonly header: () => HTMLElement,
    private readonly m: Membership,
    private review: Review
  ) {
    this.phase = review.phase
    this.user = { name: m.name, color: colorFor(m.name + m.participant) }
    this.socket = new HocuspocusProviderWebsocket({ url: collabUrl() })
    this.socket.on('status', () => {
      if (this.socket.status === WebSocketStatus.Connected) this.everConnected = true
      this.updateStatus()
    })
    this.presentToggle.addEventListener('click', () => { this.present(!document.body.classList.contains('presenting')) })
    // A socket can outlive the network silently; trust the browser's offline signal, keep edits
    // in the document, and reconnect (which syncs them) when the network returns.
    window.addEventListener('offline', this.onOffline)
    window.addEventListener('online', this.onOnline)
  }

  private readonly onOffline = (): void => {
    this.socket.disconnect()
    this.updateStatus()
  }

  private readonly onOnline = (): void => {
    void this.socket.connect()
  }

  start (): void {
    const editorEl = h('div', { class: 'editor', id: 'report' })
    const margin = h('aside', { class: 'margin', 'aria-label': 'Comments' })
    const reportSection = h('section', { class: 'report', 'aria-label': 'Report' })
    const notesOpen = this.phase === 'meeting' || this.phase === 'closed'
    const notesSection = h('section', { class: 'report notes', 'aria-label': 'Meeting notes', hidden: !notesOpen })
    // In the meeting the notes show first, beside the meeting panel (style.css), the report below.
    const main = h('div', { class: 'main-column' }, reportSection, notesSection)
    const layout = h('div', { class: `layout${notesOpen ? ' with-notes' : ''}${this.phase === 'meeting' ? ' meeting' : ''}` }, main, margin)
    const head = h('div', { class: 'review-head' },
      h('div', { class: 'title-row' },
        h('h1', {}, this.review.title),
        this.phaseEl,
        this.review.severity ? h('span', { class: 'severity' }, this.review.severity) : null,
        this.review.incident_date ? h('span', { class: 'muted' }, this.review.incident_date) : null,
        h('span', { class: 'head-end' }, this.presentToggle, this.statusEl)),
      h('div', { class: 'meta-row' },
        h('span', { class: 'muted you' }, `You are ${this.m.name}, ${this.m.role}`),
        this.actionsEl,
        this.presenceEl, this.timerSlot))
    this.showActions(this.review.actions.done, this.review.actions.total)
    replace(this.app, this.header(), head,
      h('div', { class: 'review-info' }, this.phaseBar, this.nextStepEl, this.controls),
      h('div', { class: 'review-learning' },
        factorsSection(this.m, () => this.review, (r) => { this.review = { ...this.review, team: r.team, factors: r.factors } }),
        this.pulseSlot),
      this.banner, layout)
    if (this.phase === 'closed') replace(this.pulseSlot, pulseSection(this.m, () => this.review))
    // What sticks below the head (the editor's toolbar) sits below it, however tall it wraps.
    this.headObserver = new ResizeObserver(() => {
      document.documentElement.style.setProperty('--head-h', `${head.offsetHeight}px`)
    })
    this.headObserver.observe(head)
    this.renderPhase()

    const canSeeDocs = abilities(this.review).report !== 'none'
    if (!canSeeDocs) {
      replace(reportSection, notice(reportExplanation(this.m.role, this.review, this.phase) ?? '', 'info'))
      margin.hidden = true
      this.pollPhase()
      this.updateStatus()
      return
    }
    const discussion = this.provider(this.review.documents.discussion)
    // Someone joined (the server counts people in the discussion): whether anonymous posting is
    // open depends on how many may post, so the counts are read again. Nothing the person on this
    // page does triggers it.
    const meetingMap = discussion.document.getMap('meeting')
    let people = meetingMap.get('people')
    meetingMap.observe(() => {
      if (meetingMap.get('people') === people) return
      people = meetingMap.get('people')
      api.review(this.m.review, this.m.session).then((r) => { this.review = { ...this.review, participants: r.participants, anonymous: r.anonymous } }, () => undefined)
    })
    const actionsMap = discussion.document.getMap('actions')
    actionsMap.observeDeep(() => {
      const all = Object.values(actionsMap.toJSON() as Record<string, { status?: string }>)
      this.showActions(all.filter((a) => a.status === 'done').length, all.length)
    })
    discussion.document.getMap('review').observe(() => {
      const phase = discussion.document.getMap('review').get('phase')
      if (typeof phase === 'string' && (PHASES as readonly string[]).includes(phase)) this.onPhase(phase as Phase)
    })
    // Presence (issue 15) is the editor's job alone: names for everyone, a caret only while one
    // may edit (editor.ts). Nothing else here writes awareness, so what a page publishes while
    // someone writes a comment, a concern or a vote is the same whether it is named or anonymous.
    const report = this.provider(this.review.documents.report)
    const commentsRoot = h('div', {})
    const concernsRoot = h('div', { class: 'board' })
    const meetingRoot = h('div', { class: 'meeting-panel', id: 'meeting-panel' })
    // Threads sit beside their text, so the comments come first, except during the meeting, when
    // the agenda and action items matter most.
    if (this.phase === 'meeting') replace(margin, meetingRoot, commentsRoot, concernsRoot)
    else replace(margin, commentsRoot, concernsRoot, meetingRoot)
    const hintsOn = () => discussion.document.getMap('review').get('hints') !== false
    discussion.document.getMap('review').observe(() => {
      for (const e of [this.editor, this.notesEditor]) if (e && !e.isDestroyed) e.view.dispatch(e.state.tr.setMeta('debrief-hints', true))
    })
    this.comments = new CommentsPanel({ root: commentsRoot, membership: this.m, review: () => this.review, discussion: discussion.document, canComment: () => abilities(this.review).comment })
    this.concerns = new ConcernsBoard({ root: concernsRoot, membership: this.m, review: () => this.review, discussion: discussion.document, canRaise: () => abilities(this.review).comment })
    this.report = report
    this.track(report)
    report.on('authenticated', () => {
      this.applyScope()
      this.updateStatus()
    })
    report.awareness?.on('change', () => { this.renderPresence() })
    const comments = this.comments
    const reportHint = hintPanel()
    const editor = createEditor({
      element: editorEl,
      provider: report,
      user: this.user,
      label: 'Report',
      ranges: (state) => comments.ranges(state),
      onSelection: (empty) => { commentButton.disabled = empty || !abilities(this.review).comment },
      hints: hintsOn,
      hintPanel: reportHint
    })
    this.editor = editor
    this.meeting = new MeetingPanel({
      root: meetingRoot,
      timerSlot: this.timerSlot,
      membership: this.m,
      review: () => this.review,
      discussion: discussion.document,
      offset: this.review.server_time - Date.now(),
      flagReview: (changed) => flagReview(this.m.review, editor.state.doc, changed),
      flagsLeft: () => undismissed(this.m.review, editor.state.doc).length,
      sectionsWithThreads: () => {
        const headings: { pos: number, text: string }[] = []
        editor.state.doc.descendants((node, pos) => {
          if (node.type.name === 'heading' && node.attrs.level === 2) headings.push({ pos, text: node.textContent })
          return node.type.name !== 'heading'
        })
        const sections = new Set<string>()
        for (const r of comments.ranges(editor.state)) {
          const before = headings.filter((x) => x.pos < r.from).at(-1)
          if (before) sections.add(before.text)
        }
        return headings.map((x) => x.text).filter((t) => sections.has(t))
      }
    })
    this.meeting.mount()
    this.nextStepEl.after(this.meeting.readControl())
    if (notesOpen) {
      const notes = this.provider(this.review.documents.notes)
      this.notes = notes
      this.track(notes)
      const notesEl = h('div', { class: 'editor', id: 'notes' })
      const notesHint = hintPanel()
      const notesEditor = createEditor({
        element: notesEl,
        provider: notes,
        user: this.user,
        label: 'Meeting notes',
        ranges: () => [],
        onSelection: () => undefined,
        hints: hintsOn,
        hintPanel: notesHint
      })
      this.notesEditor = notesEditor
      const applyNotes = () => {
        const writable = notes.authorizedScope === 'read-write' && abilities(this.review).notes === 'write'
        setWritable(notesEditor, writable)
        this.updateStatus()
      }
      notes.on('authenticated', applyNotes)
      applyNotes()
      replace(notesSection, h('h2', { class: 'section-title' }, 'Meeting notes'), toolbar(notesEditor, []), notesEl, notesHint)
    }
    const commentButton = h('button', { type: 'button', class: 'tool comment', id: 'comment-selection', disabled: true, hidden: !abilities(this.review).comment }, 'Comment')
    this.commentButton = commentButton
    commentButton.addEventListener('mousedown', (e) => { e.preventDefault() })
    commentButton.addEventListener('click', () => {
      const { from, to, empty } = editor.state.selection
      if (!empty) comments.compose({ from, to })
    })
    comments.attach(editor)
    replace(reportSection, toolbar(editor, [commentButton]), editorEl, reportHint)
    this.applyScope()
    this.renderPresence()
    this.updateStatus()
    if (this.phase === 'meeting' && presentingFromUrl()) this.present(true)
  }

  private commentButton: HTMLButtonElement | null = null

  /** Follows what the server acknowledged of a document this page may change. */
  private track (provider: HocuspocusProvider): void {
    provider.on('unsyncedChanges', () => {
      if (!provider.hasUnsyncedChanges) this.pendingSince.delete(provider)
      else if (!this.pendingSince.has(provider)) this.pendingSince.set(provider, Date.now())
      this.updateStatus()
    })
    provider.on('synced', () => { this.updateStatus() })
  }

  /** The presenter view: the timer and the current agenda item large, for a projector. */
  private present (on: boolean): void {
    const active = on && this.phase === 'meeting'
    document.body.classList.toggle('presenting', active)
    this.presentToggle.textContent = active ? 'Leave presenter view' : 'Presenter view'
    this.presentToggle.setAttribute('aria-pressed', String(active))
    const url = new URL(location.href)
    if (active) url.searchParams.set('present', '')
    else url.searchParams.delete('present')
    history.replaceState(null, '', url.pathname + (active ? '?present' : '') + url.hash)
  }

  private showActions (done: number, total: number): void {
    this.actionsEl.textContent = total === 0 ? 'Action items' : `${done} of ${total} actions done`
  }

  private provider (name: string): HocuspocusProvider {
    const provider = new HocuspocusProvider({
      websocketProvider: this.socket,
      name,
      document: new Y.Doc(),
      token: this.m.session
    })
    provider.on('authenticationFailed', ({ reason }: { reason: string }) => {
      this.showBanner(reason.startsWith('invalid_token')
        ? 'Your place in this review has ended (your invite may have been revoked). Ask the facilitator for a current invite link.'
        : `The server refused this document: ${reason}`)
    })
    provider.attach()
    this.providers.push(provider)
    return provider
  }

  /** The editor is editable only when the server said read-write and the phase allows it. */
  private applyScope (): void {
    const editor = this.editor
    if (!editor || !this.report) return
    const writable = this.report.authorizedScope === 'read-write' && abilities(this.review).report === 'write'
    setWritable(editor, writable)
    const why = reportExplanation(this.m.role, this.review, this.phase)
    if (why && !writable) this.showBanner(why)
    else this.showBanner(null)
  }

  private showBanner (text: string | null): void {
    this.banner.hidden = text === null
    replace(this.banner, text ?? '')
  }

  private onPhase (phase: Phase): void {
    // Phases only move forward: an older copy (a stale document, a slow poll) is ignored.
    if (PHASES.indexOf(phase) <= PHASES.indexOf(this.phase)) return
    const couldSee = abilities(this.review).report !== 'none'
    this.phase = phase
    this.review = { ...this.review, phase }
    memory.update(this.m.review, { phase })
    // Entering the meeting opens the notes beside the report.
    const notesChange = phase === 'meeting'
    if ((!couldSee && abilities(this.review).report !== 'none') || notesChange) {
      // The documents open now: start over with them.
      this.destroy()
      openReview(this.app, this.m.review, this.header)
      return
    }
    this.present(false)
    if (phase === 'closed') replace(this.pulseSlot, pulseSection(this.m, () => this.review))
    this.renderPhase()
    this.applyScope()
    if (this.commentButton) this.commentButton.hidden = !abilities(this.review).comment
    this.comments?.refresh()
    this.concerns?.refresh()
    this.meeting?.mount()
    this.updateStatus()
  }

  private pollPhase (): void {
    this.poll = window.setInterval(() => {
      api.review(this.m.review, this.m.session).then((r) => { this.onPhase(r.phase) }, () => undefined)
    }, PHASE_POLL_MS)
  }

  private destroy (): void {
    if (this.poll !== null) window.clearInterval(this.poll)
    if (this.statusTimer !== null) window.clearTimeout(this.statusTimer)
    this.headObserver?.disconnect()
    document.body.classList.remove('presenting')
    this.comments?.destroy()
    this.meeting?.destroy()
    this.notesEditor?.destroy()
    window.removeEventListener('offline', this.onOffline)
    window.removeEventListener('online', this.onOnline)
    this.editor?.destroy()
    for (const p of this.providers) p.destroy()
    this.socket.destroy()
  }

  private renderPhase (): void {
    this.phaseEl.className = `phase phase-${this.phase}`
    this.phaseEl.textContent = this.phase
    this.phaseEl.title = PHASE_HELP[this.phase]
    const now = PHASES.indexOf(this.phase)
    replace(this.phaseBar, ...PHASES.map((p, i) => h('li', {
      class: `phase-step${i < now ? ' done' : ''}${i === now ? ' current' : ''}`,
      'aria-current': i === now ? 'step' : null,
      'data-phase': p
    }, h('strong', {}, PHASE_NAMES[p]), h('span', { class: 'phase-meaning' }, phaseMeaning(p, abilities(this.review, p))))))
    replace(this.nextStepEl, h('strong', {}, 'What to do now: '), nextStep(this.phase, abilities(this.review)))
    this.presentToggle.hidden = this.phase !== 'meeting'
    if (abilities(this.review).facilitate) this.renderControls()
  }

  private renderControls (): void {
    const next = PHASES[PHASES.indexOf(this.phase) + 1]
    const status = h('div', {})
    const move = next && h('button', { type: 'button', class: 'primary', id: 'move-phase' }, `Move to ${next}`)
    if (move) {
      move.addEventListener('click', () => {
        const report = this.editor
        const dialog = h('dialog', { 'aria-labelledby': 'phase-dialog-h' },
          h('h2', { id: 'phase-dialog-h' }, `Move the review to ${next}?`),
          h('p', {}, PHASE_HELP[next]),
          next === 'closed' ? h('p', {}, 'This cannot be undone.') : null,
          next === 'closed' && report ? flagReview(this.m.review, report.state.doc) : null,
          h('form', { method: 'dialog', class: 'row' },
            h('button', { value: 'move', class: 'primary', id: 'confirm-phase' }, `Move to ${next}`),
            h('button', { value: 'cancel' }, 'Cancel')))
        document.body.appendChild(dialog)
        dialog.addEventListener('close', () => {
          dialog.remove()
          if (dialog.returnValue !== 'move') return
          api.movePhase(this.m.review, this.m.session, next).then((r) => { this.onPhase(r.phase) }, (err: unknown) => {
            replace(status, notice(phaseError(err, next), 'error'))
          })
        })
        dialog.showModal()
      })
    }
    const links = h('details', { class: 'links' }, h('summary', {}, 'Invite links'),
      h('p', { class: 'hint' }, 'Replacing a link stops the old one from working; people who already joined stay.'),
      h('ul', {}, ...ROLES.map((role) => {
        const out = h('span', { class: 'muted' })
        const replaceLink = (signIn?: boolean): void => {
          api.rotate(this.m.review, this.m.session, role, signIn).then((r) => {
            const link = new URL(r.invite.link, location.origin).href
            replace(out, h('input', { readonly: true, value: link, 'aria-label': `new ${role} invite link` }),
              r.invite.sign_in_required === true ? ' (needs sign-in)' : '')
          }, (err: unknown) => {
            replace(out, notice(err instanceof ApiError && err.code === 'server_unreachable'
              ? 'The server cannot be reached, so the link was not replaced. Try again in a moment.'
              : 'The link could not be replaced. Try again.', 'error'))
          })
        }
        const rotate = h('button', { type: 'button', 'data-rotate': role }, `New ${role} link`)
        rotate.addEventListener('click', () => { replaceLink() })
        // On a server with sign-in, a link can ask the people joining to sign in first; they then
        // join with the name their sign-in gives.
        const signInSlot = h('span', {})
        void signedIn().then(({ offer }) => {
          if (!offer.required_to_create) return
          const needing = h('button', { type: 'button', 'data-rotate-sign-in': role }, `New ${role} link that needs sign-in`)
          needing.addEventListener('click', () => { replaceLink(true) })
          replace(signInSlot, ' ', needing)
        }, () => {})
        return h('li', {}, h('strong', {}, role), ` — ${ROLE_HELP[role]} `, rotate, signInSlot, out)
      })))
    replace(this.controls, move ?? null, links, status)
  }

  /** The people the presence list shows, as `renderPresence` compares them. */
  private presenceShown = ''

  private renderPresence (): void {
    const states = this.report?.awareness?.getStates()
    if (!states) return
    const people = new Map<string, string>()
    for (const s of states.values()) {
      const user = (s as { user?: { name?: unknown, color?: unknown } }).user
      // Awareness is whatever other browsers claim: only a plain colour reaches a style attribute.
      const color = typeof user?.color === 'string' && /^#[0-9a-fA-F]{6}$/.test(user.color) ? user.color : '#888888'
      if (typeof user?.name === 'string') people.set(user.name, color)
    }
    // Awareness changes with every caret move; the list is redrawn only when who is here (or
    // their colour) changed, so typing does not cost more with more people present (issue 17).
    const shown = JSON.stringify([...people])
    if (shown === this.presenceShown) return
    this.presenceShown = shown
    count('presence-drawn')
    replace(this.presenceEl, ...[...people].map(([name, color]) =>
      h('li', {}, h('span', { class: 'dot', style: `background:${color}`, 'aria-hidden': 'true' }), name)))
  }

  /**
   * The save indicator covers every document this page may change (the report, the notes): it
   * says "Saved" only when the server acknowledged each change, "Saving…" until then, and tells
   * "you are offline" (the browser says so) apart from "the server cannot be reached" (the socket
   * is down, or a change went unanswered for UNANSWERED_MS). Someone who may change nothing sees
   * no saving state at all, only whether they are cut off.
   */
  private updateStatus (): void {
    if (this.statusTimer !== null) window.clearTimeout(this.statusTimer)
    this.statusTimer = null
    const may = abilities(this.review)
    const writable = [
      may.report === 'write' ? this.report : null,
      may.notes === 'write' ? this.notes : null
    ].filter((p): p is HocuspocusProvider => p !== null && p.authorizedScope !== 'readonly')
    const connected = this.socket.status === WebSocketStatus.Connected
    const oldest = Math.min(...writable.map((p) => this.pendingSince.get(p) ?? Infinity))
    const unanswered = Date.now() - oldest >= UNANSWERED_MS
    const pending = writable.some((p) => p.hasUnsyncedChanges)
    let state: string | null
    let text = ''
    if (!navigator.onLine) {
      state = 'offline'
      text = writable.length > 0 ? 'You are offline — changes are kept in this tab' : 'You are offline'
    } else if ((!connected && this.everConnected) || (connected && pending && unanswered)) {
      state = 'unreachable'
      text = writable.length > 0 ? 'The server cannot be reached — changes are kept in this tab' : 'The server cannot be reached'
    } else if (writable.length === 0) {
      state = null
    } else if (!connected) {
      state = 'connecting'
      text = 'Connecting…'
    } else if (pending) {
      state = 'saving'
      text = 'Saving…'
      // Looks again when the oldest change would count as unanswered.
      this.statusTimer = window.setTimeout(() => { this.updateStatus() }, Math.max(0, oldest + UNANSWERED_MS - Date.now()) + 50)
    } else {
      state = 'saved'
      text = 'Saved'
    }
    this.statusEl.hidden = state === null
    this.statusEl.dataset.state = state ?? 'none'
    this.statusEl.textContent = text
  }

}
