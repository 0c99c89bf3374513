// Comments in the margin: threads from the server-written `discussion` document, each beside
// the report text it is anchored to (Yjs relative positions, so they follow edits), the anchored
// text highlighted, general threads and threads whose text was deleted listed apart, resolved ones
// folded away. Every change goes through the REST API; the panel only reads the document.

import * as Y from 'yjs'
import type { Editor } from '@tiptap/core'
import type { EditorState } from '@tiptap/pm/state'
import { TextSelection } from '@tiptap/pm/state'
import { ySyncPluginKey, absolutePositionToRelativePosition, relativePositionToAbsolutePosition } from '@tiptap/y-tiptap'
import { api, ApiError, type HeldItem, type Review, type ThreadView } from './api'
import type { Comment, Thread } from './discussion'
import { anonymityNotice, anonymousError, fleeting, keep, moreMenu } from './anonymous'
import { h, notice, onNextFrame, reconcile, replace } from './dom'
import { highlightKey, isWritable, type Highlight } from './editor'
import type { Membership } from './store'
import { count } from './debug'

const MAX_QUOTE = 500

/**
 * How long the report must go unchanged before the cards beside it follow their text: placing
 * them reads where every anchor is on the screen, which costs in proportion to the number of
 * threads, so it is not done on each keystroke (issue 17).
 */
const CARDS_SETTLE_MS = 150
/** While someone types without a pause, the cards still follow their text this often. */
const CARDS_MAX_WAIT_MS = 1000

type Mapping = Parameters<typeof relativePositionToAbsolutePosition>[3]

interface Binding { mapping: Mapping, type: Y.XmlFragment, doc: Y.Doc }

/** An anchor's two ends, decoded once per thread. */
interface Ends { start: Y.RelativePosition, end: Y.RelativePosition }

function binding (state: EditorState): Binding | null {
  const s = ySyncPluginKey.getState(state) as { binding?: Binding | null } | undefined
  return s?.binding ?? null
}

function toBase64 (bytes: Uint8Array): string {
  let s = ''
  for (const b of bytes) s += String.fromCharCode(b)
  return btoa(s)
}

function fromBase64 (text: string): Uint8Array {
  const s = atob(text)
  const out = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i)
  return out
}

function when (ms: number): string {
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })
}

export interface PanelOptions {
  root: HTMLElement
  membership: Membership
  review: () => Review
  discussion: Y.Doc
  canComment: () => boolean
}

export class CommentsPanel {
  private editor: Editor | null = null
  private active: string | null = null
  private readonly cards = new Map<string, { card: HTMLElement, body: HTMLElement, json: string }>()
  /**
   * The threads, sorted, read out of the discussion document once per change of it: nothing that
   * happens on a keystroke serialises them (issue 17). Null: to be read again.
   */
  private threadList: Thread[] | null = null
  /** Counts the changes of the threads, so that what was drawn for them can tell it is current. */
  private version = 0
  /** Each anchored thread's decoded ends, keyed by thread id (with the anchor they were decoded from). */
  private readonly ends = new Map<string, { anchor: NonNullable<Thread['anchor']>, ends: Ends | null }>()
  /** The open anchors' ranges, resolved once per report state, threads and active thread. */
  private located: { doc: EditorState['doc'], version: number, active: string | null, ranges: Highlight[], byId: Map<string, Highlight> } | null = null
  /** What the cards' bodies and the highlights were last drawn for. */
  private drawn = { version: -1, active: null as string | null }
  /** The timers that let the cards follow their text once typing pauses. */
  private settle: number | null = null
  private settleSince: number | null = null
  /** Threads with an edit box open: their body is not redrawn until it closes. */
  private readonly editing = new Set<string>()
  private readonly anchored: HTMLElement
  private readonly general: HTMLElement
  private readonly orphaned: HTMLElement
  private readonly resolved: HTMLDetailsElement
  private readonly resolvedSummary = h('summary', {})
  private readonly orphanedTitle = h('h3', {}, 'On text that was deleted')
  private readonly composerSlot: HTMLElement
  /** Shown only to someone who may comment now. */
  private readonly newGeneral = h('button', { type: 'button', class: 'link', id: 'general-comment' }, 'Add a general comment')
  /** Redraws at the next frame, however often it is asked to before then. */
  readonly schedule = onNextFrame(() => { this.render() })
  private readonly onResize = (): void => { this.schedule() }
  /**
   * Cards beside the text are placed one below the other by their height; a card that grows (its
   * "⋯" panel or reply box opens) pushes the ones below it down instead of covering them.
   */
  private readonly resized = new ResizeObserver(() => { this.schedule() })

  constructor (private readonly o: PanelOptions) {
    this.anchored = h('div', { class: 'anchored' })
    this.composerSlot = h('div', { class: 'composer-slot' })
    this.general = h('div', { class: 'general' })
    this.orphaned = h('div', { class: 'orphaned' })
    this.resolved = h('details', { class: 'resolved' })
    const newGeneral = this.newGeneral
    newGeneral.hidden = !o.canComment()
    newGeneral.addEventListener('click', () => { this.compose(null) })
    replace(o.root,
      h('h2', { class: 'margin-title' }, 'Comments'),
      this.composerSlot,
      this.anchored,
      h('section', { 'aria-label': 'General comments' }, h('h3', {}, 'General'), this.general, newGeneral),
      h('section', { 'aria-label': 'Comments on deleted text' }, this.orphaned),
      this.resolved)
    o.discussion.getMap('threads').observeDeep(() => {
      this.threadList = null
      this.version++
      this.schedule()
    })
    this.schedule()
  }

  attach (editor: Editor): void {
    this.editor = editor
    // The cards follow their text once the report stops changing (see CARDS_SETTLE_MS).
    editor.on('update', () => {
      count('report-changes')
      this.placeSoon()
    })
    editor.view.dom.addEventListener('click', (e) => {
      const target = (e.target as HTMLElement).closest('[data-thread]')
      const id = target?.getAttribute('data-thread')
      if (id) this.focus(id, false)
    })
    window.addEventListener('resize', this.onResize)
    this.schedule()
  }

  /** Stops following the window and the cards (the screen is rebuilt). */
  destroy (): void {
    if (this.settle !== null) window.clearTimeout(this.settle)
    window.removeEventListener('resize', this.onResize)
    this.resized.disconnect()
    this.editor = null
  }

  /** The threads, oldest first; the same array (and objects) until the threads change. */
  threads (): Thread[] {
    if (this.threadList === null) {
      count('threads-read')
      const json = this.o.discussion.getMap('threads').toJSON() as Record<string, Thread>
      this.threadList = Object.values(json).sort((a, b) => a.createdAt - b.createdAt)
    }
    return this.threadList
  }

  /**
   * The open anchors' current ranges in the report state `state`, for highlighting. Resolved from
   * the anchors (Yjs relative positions) through the sync plugin's mapping, so `state` must be
   * the one the shared document holds; resolved once per state, threads and active thread.
   */
  ranges (state: EditorState): Highlight[] {
    return this.resolveAll(state).ranges
  }

  private resolveAll (state: EditorState): { ranges: Highlight[], byId: Map<string, Highlight> } {
    const threads = this.threads()
    const r = this.located
    if (r && r.doc === state.doc && r.version === this.version && r.active === this.active) return r
    const ranges: Highlight[] = []
    const byId = new Map<string, Highlight>()
    const b = binding(state)
    if (b) {
      for (const t of threads) {
        if (!t.anchor || t.resolved) continue
        const at = this.resolve(t, b)
        if (!at) continue
        const range = { id: t.id, from: at.from, to: at.to, active: t.id === this.active }
        ranges.push(range)
        byId.set(t.id, range)
      }
    }
    this.located = { doc: state.doc, version: this.version, active: this.active, ranges, byId }
    return this.located
  }

  /** A thread's anchor ends, decoded from their base64 text once. */
  private endsOf (t: Thread): Ends | null {
    if (!t.anchor) return null
    const known = this.ends.get(t.id)
    if (known && known.anchor.start === t.anchor.start && known.anchor.end === t.anchor.end) return known.ends
    let ends: Ends | null = null
    try {
      ends = { start: Y.decodeRelativePosition(fromBase64(t.anchor.start)), end: Y.decodeRelativePosition(fromBase64(t.anchor.end)) }
    } catch {
      ends = null
    }
    this.ends.set(t.id, { anchor: t.anchor, ends })
    return ends
  }

  private resolve (t: Thread, b: Binding): { from: number, to: number } | null {
    const ends = this.endsOf(t)
    if (!ends) return null
    count('anchors-resolved')
    try {
      const from = relativePositionToAbsolutePosition(b.doc, b.type, ends.start, b.mapping)
      const to = relativePositionToAbsolutePosition(b.doc, b.type, ends.end, b.mapping)
      if (from === null || to === null || to <= from) return null
      return { from, to }
    } catch {
      return null
    }
  }

  /**
   * Lets the cards follow their text once the report has not changed for CARDS_SETTLE_MS, or at
   * the latest CARDS_MAX_WAIT_MS after the first change that moved nothing yet.
   */
  private placeSoon (): void {
    const now = performance.now()
    this.settleSince ??= now
    if (this.settle !== null) window.clearTimeout(this.settle)
    const wait = Math.min(CARDS_SETTLE_MS, Math.max(0, this.settleSince + CARDS_MAX_WAIT_MS - now))
    this.settle = window.setTimeout(() => {
      this.settle = null
      this.settleSince = null
      this.schedule()
    }, wait)
  }

  /**
   * Opens the composer for the current selection (or a general comment when `selection` is null).
   * Named and anonymous comments share it, so opening it does the same for both: the focus moves
   * into it, which takes a writer's caret and selection out of presence (editor.ts) before anyone
   * knows which it will be; ticking "Post anonymously" sends nothing (issue 15).
   */
  compose (selection: { from: number, to: number } | null): void {
    if (!this.o.canComment()) return
    let anchor: Thread['anchor'] = null
    const editor = this.editor
    if (selection && editor) {
      const b = binding(editor.state)
      if (!b) return
      const start = absolutePositionToRelativePosition(selection.from, b.type, b.mapping) as Y.RelativePosition
      const end = absolutePositionToRelativePosition(selection.to, b.type, b.mapping) as Y.RelativePosition
      anchor = {
        start: toBase64(Y.encodeRelativePosition(start)),
        end: toBase64(Y.encodeRelativePosition(end)),
        quote: editor.state.doc.textBetween(selection.from, selection.to, '\n').slice(0, MAX_QUOTE)
      }
    }
    const text = h('textarea', { 'aria-label': anchor ? 'Comment on the selected text' : 'General comment', rows: 3, maxlength: 4000, id: 'composer' })
    const status = h('div', {})
    const send = h('button', { type: 'submit', class: 'primary' }, 'Comment')
    const cancel = h('button', { type: 'button' }, 'Cancel')
    const quote = anchor && h('blockquote', { class: 'quote' }, anchor.quote)
    // A writer's selection was live for others while they made it (a reader's never is), so an
    // anonymous comment on it says so before it is posted and offers to drop the anchor.
    let warning: HTMLElement | null = null
    if (anchor && editor && isWritable(editor)) {
      const general = h('button', { type: 'button', class: 'link' }, 'Post as a general comment instead')
      warning = h('div', { class: 'selection-warning', role: 'alert' },
        h('p', {}, 'Others in the report may have seen your selection of this text, with your name on it, while you made it. If that could point to you, post this as a general comment instead: it quotes no text.'),
        general)
      general.addEventListener('click', () => {
        anchor = null
        quote?.remove()
        warning?.remove()
        warning = null
        text.setAttribute('aria-label', 'General comment')
        text.focus()
      })
    }
    const { toggle, note } = this.anonymousToggle(send, 'Comment', () => warning)
    const form = h('form', { class: 'composer card' },
      quote, text, toggle, note, h('div', { class: 'row' }, send, cancel), status)
    cancel.addEventListener('click', () => { replace(this.composerSlot) })
    form.addEventListener('submit', (e) => {
      e.preventDefault()
      if (!text.value.trim()) return
      send.disabled = true
      const m = this.o.membership
      const anonymous = toggle.querySelector('input')?.checked === true
      const sent: Promise<ThreadView | HeldItem> = anonymous
        ? api.anonymousThread(m.review, m.session, text.value, anchor)
        : api.addThread(m.review, m.session, text.value, anchor)
      sent.then((result) => {
        // The answer may come after another composer was opened: that one stays.
        if ('release' in result) {
          keep(result)
          fleeting(this.composerSlot, result, form)
        } else {
          if (this.composerSlot.contains(form)) replace(this.composerSlot)
          this.active = result.id
        }
        this.schedule()
      }, (err: unknown) => {
        // The text stays in the box.
        replace(status, notice(anonymousError(err, 'Could not send the comment.'), 'error'))
        send.disabled = false
      })
    })
    replace(this.composerSlot, form)
    if (selection && editor) {
      const top = editor.view.coordsAtPos(selection.from).top - this.o.root.getBoundingClientRect().top
      form.style.marginTop = `${Math.max(0, top - 40)}px`
    }
    text.focus()
  }

  /** Makes a thread active: highlights its text, and either focuses its card or its text. */
  focus (id: string, scrollEditor: boolean): void {
    this.active = id
    const card = this.cards.get(id)?.card
    card?.focus()
    const editor = this.editor
    if (scrollEditor && editor) {
      const r = this.resolveAll(editor.state).byId.get(id)
      if (r) {
        editor.view.dispatch(editor.state.tr.setSelection(TextSelection.create(editor.state.doc, r.from, r.to)).scrollIntoView())
      }
    }
    this.schedule()
  }

  /**
   * A labelled "Post anonymously" switch; while on, the notice (and `extra()`, if any) explains
   * what is protected. It changes this page only: nothing is sent when it is ticked.
   */
  private anonymousToggle (send: HTMLButtonElement, named: string, extra: () => HTMLElement | null = () => null): { toggle: HTMLElement, note: HTMLElement } {
    const box = h('input', { type: 'checkbox', class: 'anonymous-toggle' })
    const note = h('div', { hidden: true })
    box.addEventListener('change', () => {
      note.hidden = !box.checked
      if (box.checked) replace(note, anonymityNotice(this.o.review(), this.o.review().phase), extra())
      else replace(note)
      send.textContent = box.checked ? `${named} anonymously` : named
    })
    return { toggle: h('label', { class: 'check' }, box, ' Post anonymously'), note }
  }


  private render (): void {
    const editor = this.editor
    // A redraw asked for just before the screen was rebuilt (a phase change) has nothing to do.
    if (editor?.isDestroyed) return
    count('cards-placed')
    const threads = this.threads()
    const changed = this.drawn.version !== this.version
    // Redraw the highlights (their plugin asks this panel) when the threads or the active one changed.
    if (editor && (changed || this.drawn.active !== this.active)) editor.view.dispatch(editor.state.tr.setMeta(highlightKey, true))
    this.drawn = { version: this.version, active: this.active }
    const b = editor ? binding(editor.state) : null
    const ranges = editor ? this.resolveAll(editor.state).byId : new Map<string, Highlight>()
    const open = threads.filter((t) => !t.resolved)
    const done = threads.filter((t) => t.resolved)
    const placed: { id: string, from: number, top: number, card: HTMLElement }[] = []
    const view = editor && !editor.isDestroyed ? editor.view : null
    const general: HTMLElement[] = []
    const orphaned: HTMLElement[] = []
    const seen = new Set<string>()
    for (const t of open) {
      seen.add(t.id)
      const card = this.card(t, changed)
      const range = b && t.anchor ? ranges.get(t.id) : undefined
      card.classList.toggle('orphan', Boolean(t.anchor) && !range && Boolean(b))
      if (!t.anchor) general.push(card)
      else if (range && view) placed.push({ id: t.id, from: range.from, top: 0, card })
      else orphaned.push(card)
    }
    // Where each card's text is: read before anything on the page is changed, so the layout is
    // computed once, not once per card.
    if (view && placed.length > 0) {
      const origin = this.anchored.getBoundingClientRect().top
      // The highlight's first piece says where its text starts; a thread whose highlight is not
      // drawn (yet) asks the editor.
      const starts = new Map<string, Element>()
      for (const el of view.dom.querySelectorAll('[data-thread]')) {
        const id = el.getAttribute('data-thread')
        if (id !== null && !starts.has(id)) starts.set(id, el)
      }
      for (const p of placed) {
        const el = starts.get(p.id)
        p.top = (el ? el.getBoundingClientRect().top : view.coordsAtPos(p.from).top) - origin
      }
    }
    placed.sort((x, y) => x.top - y.top)
    // Cards already in place are not moved: a reply being typed keeps its focus when a batch of
    // anonymous items lands.
    reconcile(this.anchored, placed.map((p) => p.card))
    // Every height is read before any card is moved, for the same reason.
    const heights = placed.map((p) => p.card.offsetHeight)
    let bottom = 0
    placed.forEach((p, i) => {
      const top = Math.max(p.top, bottom)
      const px = `${top}px`
      if (p.card.style.top !== px) p.card.style.top = px
      bottom = top + (heights[i] ?? 0) + 8
    })
    const height = `${bottom}px`
    if (this.anchored.style.height !== height) this.anchored.style.height = height
    reconcile(this.general, general)
    reconcile(this.orphaned, orphaned.length > 0 ? [this.orphanedTitle, ...orphaned] : [])
    const resolvedCards = done.map((t) => { seen.add(t.id); return this.card(t, changed) })
    this.resolvedSummary.textContent = `Resolved (${done.length})`
    reconcile(this.resolved, [this.resolvedSummary, ...resolvedCards])
    this.resolved.hidden = done.length === 0
    for (const [id, c] of this.cards) {
      if (!seen.has(id)) { c.card.remove(); this.resized.unobserve(c.card); this.cards.delete(id) }
      else c.card.classList.toggle('active', id === this.active)
    }
  }

  /**
   * A thread's card; its body is redrawn only when the thread changed, so a reply being typed
   * survives. Whether it did is looked at only when the threads changed (`changed`).
   */
  private card (t: Thread, changed: boolean): HTMLElement {
    let entry = this.cards.get(t.id)
    if (entry && !changed && entry.json !== '') return entry.card
    const json = JSON.stringify(t)
    if (!entry) {
      const body = h('div', {})
      const card = h('article', { class: 'thread card', tabindex: -1, 'data-thread-card': t.id, 'aria-label': 'Comment thread' }, body, this.replyForm(t.id))
      card.addEventListener('click', (e) => {
        if ((e.target as HTMLElement).closest('button, textarea, a')) return
        this.focus(t.id, true)
      })
      entry = { card, body, json: '' }
      this.cards.set(t.id, entry)
      this.resized.observe(card)
    }
    if (entry.json !== json && !this.editing.has(t.id)) {
      entry.json = json
      replace(entry.body, ...this.threadBody(t))
    }
    return entry.card
  }

  private threadBody (t: Thread): HTMLElement[] {
    const m = this.o.membership
    const mine = t.comments[0]?.author?.participant === m.participant
    const mayResolve = this.o.canComment() && (mine || m.role === 'facilitator')
    const toggle = h('button', { type: 'button', class: 'link' }, t.resolved ? 'Reopen' : 'Resolve')
    const status = h('div', {})
    toggle.addEventListener('click', () => {
      api.resolve(m.review, m.session, t.id, !t.resolved).catch((err: unknown) => {
        replace(status, notice(err instanceof ApiError ? err.message : 'Could not change the thread.', 'error'))
      })
    })
    const show = h('button', { type: 'button', class: 'link' }, 'Show in report')
    show.addEventListener('click', () => { this.focus(t.id, true) })
    return [
      t.anchor ? h('blockquote', { class: 'quote' }, t.anchor.quote) : null,
      ...t.comments.map((c) => this.comment(t, c)),
      h('div', { class: 'row end' }, t.anchor ? show : null, mayResolve ? toggle : null),
      status
    ].filter((x): x is HTMLElement => x !== null)
  }

  private comment (t: Thread, c: Comment): HTMLElement {
    const m = this.o.membership
    if (c.hidden) return h('div', { class: 'comment deleted' }, h('em', {}, 'Hidden by the facilitator'))
    if (c.deleted) return h('div', { class: 'comment deleted' }, h('em', {}, c.anonymous ? 'Retracted' : 'Comment deleted'))
    const text = h('p', { class: 'body' }, c.body)
    if (c.anonymous || !c.author) {
      return h('div', { class: 'comment anonymous' },
        h('div', { class: 'meta' }, h('strong', {}, 'Anonymous'), ' ', h('time', {}, when(c.createdAt)), c.editedAt ? ' (edited)' : ''),
        text,
        moreMenu(m, { kind: 'comment', thread: t.id, comment: c.id }, c.body, this.o.canComment()))
    }
    const own = c.author.participant === m.participant && this.o.canComment()
    const el = h('div', { class: 'comment' },
      h('div', { class: 'meta' }, h('strong', {}, c.author.name), ' ', h('time', {}, when(c.createdAt)), c.editedAt ? ' (edited)' : ''),
      text)
    if (own) {
      const status = h('div', {})
      const fail = (what: string) => (err: unknown) => {
        replace(status, notice(err instanceof ApiError ? err.message : `Could not ${what} the comment.`, 'error'))
      }
      const edit = h('button', { type: 'button', class: 'link' }, 'Edit')
      const del = h('button', { type: 'button', class: 'link' }, 'Delete')
      edit.addEventListener('click', () => {
        const box = h('textarea', { 'aria-label': 'Edit comment', rows: 3, maxlength: 4000 })
        box.value = c.body
        const save = h('button', { type: 'button', class: 'primary' }, 'Save')
        const cancel = h('button', { type: 'button' }, 'Cancel')
        const editor = h('div', {}, box, h('div', { class: 'row' }, save, cancel))
        const close = () => {
          this.editing.delete(t.id)
          const entry = this.cards.get(t.id)
          if (entry) entry.json = ''
          this.schedule()
        }
        save.addEventListener('click', () => {
          save.disabled = true
          api.edit(m.review, m.session, t.id, c.id, box.value).then(close, (err: unknown) => {
            save.disabled = false
            fail('save')(err)
          })
        })
        cancel.addEventListener('click', close)
        this.editing.add(t.id)
        text.replaceWith(editor)
        box.focus()
      })
      del.addEventListener('click', () => {
        if (window.confirm('Delete this comment?')) api.remove(m.review, m.session, t.id, c.id).catch(fail('delete'))
      })
      el.appendChild(h('div', { class: 'row end' }, edit, del))
      el.appendChild(status)
    }
    return el
  }

  /**
   * A thread's "Reply" link; the reply box, with its "Post anonymously" switch, opens only when
   * it is asked for, so the margin stays calm.
   */
  private replyForm (threadId: string): HTMLElement {
    const open = h('button', { type: 'button', class: 'link reply-open' }, 'Reply')
    const box = h('textarea', { 'aria-label': 'Reply', rows: 2, maxlength: 4000, placeholder: 'Reply…' })
    const send = h('button', { type: 'submit' }, 'Reply')
    const cancel = h('button', { type: 'button' }, 'Cancel')
    const status = h('div', {})
    const { toggle, note } = this.anonymousToggle(send, 'Reply')
    const form = h('form', { class: 'reply', hidden: true }, box, toggle, note, h('div', { class: 'row' }, send, cancel))
    const show = (on: boolean): void => {
      form.hidden = !on
      open.hidden = on
      if (on) box.focus()
    }
    open.addEventListener('click', () => {
      replace(status)
      show(true)
    })
    cancel.addEventListener('click', () => { show(false) })
    form.addEventListener('submit', (e) => {
      e.preventDefault()
      if (!box.value.trim()) return
      const m = this.o.membership
      send.disabled = true
      const anonymous = toggle.querySelector('input')?.checked === true
      const sent: Promise<unknown> = anonymous
        ? api.anonymousReply(m.review, m.session, threadId, box.value).then((held) => {
          keep(held)
          fleeting(status, held)
        })
        : api.reply(m.review, m.session, threadId, box.value).then(() => { replace(status) })
      sent.then(() => {
        box.value = ''
        send.disabled = false
        show(false)
      }, (err: unknown) => {
        replace(status, notice(anonymousError(err, 'Could not send the reply.'), 'error'))
        send.disabled = false
      })
    })
    const wrap = h('div', { class: 'reply-wrap' }, open, form, status)
    wrap.hidden = !this.o.canComment()
    return wrap
  }

  /** Re-evaluates who may comment (after a phase change). */
  refresh (): void {
    for (const { card } of this.cards.values()) {
      const reply = card.querySelector('.reply-wrap')
      if (reply instanceof HTMLElement) reply.hidden = !this.o.canComment()
    }
    for (const entry of this.cards.values()) entry.json = ''
    this.newGeneral.hidden = !this.o.canComment()
    if (!this.o.canComment()) replace(this.composerSlot)
    this.schedule()
  }
}
