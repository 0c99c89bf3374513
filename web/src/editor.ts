// The report editor: TipTap on the shared Y.XmlFragment through the stock Collaboration
// extension, presence (names for all, carets only for writers), and the toolbar a post-mortem
// needs. Node and mark names are the schema contract of docs/schema.md (StarterKit names;
// underline is left out because the contract has no such mark).

import { Editor, Extension } from '@tiptap/core'
import StarterKit from '@tiptap/starter-kit'
import Collaboration from '@tiptap/extension-collaboration'
import { Plugin, PluginKey, type EditorState } from '@tiptap/pm/state'
import { Mapping, StepMap, type Mappable } from '@tiptap/pm/transform'
import { ySyncPluginKey, yCursorPlugin } from '@tiptap/y-tiptap'
import { Decoration, DecorationSet, type DecorationAttrs, type EditorView } from '@tiptap/pm/view'
import type { HocuspocusProvider } from '@hocuspocus/provider'
import { h } from './dom'
import { blamelessHints } from './hints'
import { templateGuidance } from './guidance'
import { count } from './debug'

/** A highlighted range of the report (a comment's anchor). */
export interface Highlight { id: string, from: number, to: number, active: boolean }

export const highlightKey = new PluginKey<HighlightState>('debrief-highlights')

/**
 * The highlights drawn (`set`), the ranges they draw (`ranges`, in the order `ranges(state)` gives
 * them), and whether they were moved with an edit of this page (`moved`) rather than resolved
 * from the anchors: such a set is checked against the anchors once the edit is in the shared
 * document.
 */
interface HighlightState { set: DecorationSet, ranges: Highlight[], moved: boolean }

/** One highlight's decoration. */
function highlightDecoration (r: Highlight): Decoration {
  return Decoration.inline(r.from, r.to, {
    class: r.active ? 'anchor active' : 'anchor',
    'data-thread': r.id
  }, {
    // An anchor's ends are Yjs positions that keep to the character on their left (y-tiptap makes
    // them with assoc -1): text typed at the start of a highlight joins it, text typed at its end
    // does not. `moveRanges` moves the ranges the same way.
    inclusiveStart: true,
    inclusiveEnd: false
  })
}

/**
 * `ranges` moved through `mapping` as ProseMirror moves their decorations (both ends keep to the
 * left, as inclusiveStart and not inclusiveEnd say); a range that closes up is dropped.
 */
function moveRanges (ranges: Highlight[], mapping: Mappable): Highlight[] {
  const out: Highlight[] = []
  for (const r of ranges) {
    const from = mapping.map(r.from, -1)
    const to = mapping.map(r.to, -1)
    if (from < to) out.push({ ...r, from, to })
  }
  return out
}

function sameRanges (a: Highlight[], b: Highlight[]): boolean {
  if (a.length !== b.length) return false
  return a.every((r, i) => {
    const o = b[i]
    return o !== undefined && r.id === o.id && r.from === o.from && r.to === o.to && r.active === o.active
  })
}

/**
 * Decorates the comments' anchors, which `ranges(state)` resolves from the shared document. Issue
 * 17: typing must not cost more in a review with many comments, so nothing here reads the threads
 * on a keystroke, and the decorations of paragraphs a change did not touch are kept (ProseMirror
 * then compares nothing there):
 * - a change from the shared document (another person's edit, the first render) resolves every
 *   anchor against it; when the result is where the highlights land by moving them over the one
 *   range in which the two documents differ, the moved set is kept, otherwise a new one is made;
 * - this page's own edit is not in the shared document yet when its transaction is applied (the
 *   sync plugin writes it there afterwards), so the highlights move with the edit, and once it is
 *   written (a microtask later, before anything is painted) the anchors are resolved and the
 *   highlights replaced if they differ (an edit across a highlight's end, a paragraph split in it);
 * - `tr.setMeta(highlightKey, true)` resolves again (the threads or the active one changed);
 * - anything else (a caret, a selection, someone's presence) keeps the set as it is.
 * What is drawn is therefore always what the anchors say once a change is in the shared document.
 */
function highlights (ranges: (state: EditorState) => Highlight[]): Extension {
  const fresh = (state: EditorState): Highlight[] => {
    const size = state.doc.content.size
    return ranges(state).filter((r) => r.from < r.to && r.to <= size)
  }
  const made = (state: EditorState, drawn: Highlight[]): HighlightState => {
    count('highlights-made')
    return { set: DecorationSet.create(state.doc, drawn.map(highlightDecoration)), ranges: drawn, moved: false }
  }
  /** Another person's change: the old highlights moved over the range the documents differ in, if that is where the anchors are. */
  const remote = (old: HighlightState, before: EditorState, after: EditorState): HighlightState => {
    const drawn = fresh(after)
    const start = before.doc.content.findDiffStart(after.doc.content)
    if (start === null) return sameRanges(drawn, old.ranges) ? { ...old, moved: false } : made(after, drawn)
    const end = before.doc.content.findDiffEnd(after.doc.content)
    let endA = end?.a ?? before.doc.content.size
    let endB = end?.b ?? after.doc.content.size
    const overlap = start - Math.min(endA, endB)
    if (overlap > 0) { endA += overlap; endB += overlap }
    const map = new StepMap([start, endA - start, endB - start])
    if (!sameRanges(drawn, moveRanges(old.ranges, map))) return made(after, drawn)
    return { set: old.set.map(new Mapping([map]), after.doc), ranges: drawn, moved: false }
  }
  return Extension.create({
    name: 'debriefHighlights',
    addProseMirrorPlugins () {
      return [new Plugin<HighlightState>({
        key: highlightKey,
        state: {
          init: (_, state) => made(state, fresh(state)),
          apply: (tr, old, before, after) => {
            const asked = tr.getMeta(highlightKey) as HighlightState | true | undefined
            if (asked === true) return made(after, fresh(after))
            if (asked !== undefined) return asked
            if (!tr.docChanged) return old
            if (tr.getMeta(ySyncPluginKey) !== undefined) return remote(old, before, after)
            return { set: old.set.map(tr.mapping, tr.doc), ranges: moveRanges(old.ranges, tr.mapping), moved: true }
          }
        },
        props: { decorations: (state) => highlightKey.getState(state)?.set },
        view: () => ({
          update: (view, previous) => {
            if (view.state.doc === previous.doc || highlightKey.getState(view.state)?.moved !== true) return
            queueMicrotask(() => {
              const now = highlightKey.getState(view.state)
              if (view.isDestroyed || now?.moved !== true) return
              const drawn = fresh(view.state)
              if (!sameRanges(drawn, now.ranges)) view.dispatch(view.state.tr.setMeta(highlightKey, made(view.state, drawn)))
            })
          }
        })
      })]
    }
  })
}

export interface EditorOptions {
  element: HTMLElement
  provider: HocuspocusProvider
  user: PresenceUser
  label: string
  ranges: (state: EditorState) => Highlight[]
  onSelection: (empty: boolean) => void
  /** Whether blameless-language hints show. */
  hints: () => boolean
  /** Where the reason of the hint at the caret is said. */
  hintPanel?: HTMLElement
}

/**
 * Read-only without losing the keyboard: the editor stays focusable (so a keyboard user can move
 * the caret and select text to comment on), while every local change is dropped until
 * `setWritable(editor, true)`. Changes arriving from other people (the sync plugin) always pass.
 */
const writableKey = new PluginKey<boolean>('debrief-writable')

function readOnlyGuard (): Extension {
  return Extension.create({
    name: 'debriefReadOnly',
    addProseMirrorPlugins () {
      return [new Plugin<boolean>({
        key: writableKey,
        state: {
          init: () => false,
          apply: (tr, value) => (tr.getMeta(writableKey) as boolean | undefined) ?? value
        },
        filterTransaction: (tr, state) =>
          !tr.docChanged || writableKey.getState(state) === true || tr.getMeta(ySyncPluginKey) !== undefined
      })]
    }
  })
}

function writableState (state: EditorState): boolean {
  return writableKey.getState(state) === true
}

/**
 * Whether local changes are accepted. It is also whether this page shows its caret and selection
 * to others (see `presence`), so a composer can tell whether a selection was seen.
 */
export function isWritable (editor: Editor): boolean {
  return writableState(editor.state)
}

/** Grants or withdraws local changes, and says so to assistive technology and to tests. */
export function setWritable (editor: Editor, writable: boolean): void {
  if (isWritable(editor) !== writable) editor.view.dispatch(editor.state.tr.setMeta(writableKey, writable))
  editor.view.dom.setAttribute('aria-readonly', String(!writable))
  editor.view.dom.setAttribute('data-writable', String(writable))
}

type Awareness = NonNullable<HocuspocusProvider['awareness']>

/** What a page publishes about its person in awareness, besides a writer's `cursor`. */
export interface PresenceUser { name: string, color: string }

const presenceKey = new PluginKey('debrief-presence')

/** Takes the `cursor` field out of this page's awareness state, if it has one. */
function dropCursor (awareness: Awareness): void {
  const state = awareness.getLocalState()
  if (state === null || !('cursor' in state)) return
  awareness.setLocalState(Object.fromEntries(Object.entries(state).filter(([field]) => field !== 'cursor')))
}

/**
 * The awareness that the caret plugin sees: the page's own, except that a `cursor` it sets while
 * `mayShow()` is false is not published (and one already there is taken out).
 */
function caretGate (awareness: Awareness, mayShow: () => boolean): Awareness {
  const setLocalStateField = (field: string, value: unknown): void => {
    if (field === 'cursor' && !mayShow()) dropCursor(awareness)
    else awareness.setLocalStateField(field, value)
  }
  return new Proxy(awareness, {
    get (target, property) {
      if (property === 'setLocalStateField') return setLocalStateField
      const value: unknown = Reflect.get(target, property, target)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    }
  })
}

const VALID_COLOR = /^#[0-9a-fA-F]{6}$/

/** Awareness is whatever other browsers claim: only a plain colour reaches a style attribute. */
function colorOf (user: { color?: unknown }): string | null {
  return typeof user.color === 'string' && VALID_COLOR.test(user.color) ? user.color : null
}

function caretElement (user: { name?: unknown, color?: unknown }): HTMLElement {
  const color = colorOf(user) ?? '#888888'
  return h('span', { class: 'collaboration-carets__caret', style: `border-color: ${color}` },
    h('div', { class: 'collaboration-carets__label', style: `background-color: ${color}` }, typeof user.name === 'string' ? user.name : ''))
}

function selectionAttrs (user: { color?: unknown }): DecorationAttrs {
  const color = colorOf(user)
  return color === null ? {} : { class: 'ProseMirror-yjs-selection', style: `background-color: ${color}70` }
}

/**
 * Presence in a shared document (issue 15). Everyone publishes their name. Only someone who may
 * edit the document (the editor is writable: the server granted write access and the phase
 * allows it) publishes a caret and selection, in the awareness field `cursor`, and only while the
 * editor has focus. Someone who only reads never gets a `cursor` field, so selecting text to
 * comment on it shows nothing to anyone; losing write access takes the field out at once.
 * Everyone sees the writers' carets.
 */
function presence (awareness: Awareness, user: PresenceUser): Extension {
  return Extension.create({
    name: 'debriefPresence',
    addProseMirrorPlugins () {
      let view: EditorView | null = null
      const mayShowCaret = (): boolean => view !== null && writableState(view.state)
      const carets = yCursorPlugin(caretGate(awareness, mayShowCaret), {
        cursorBuilder: caretElement,
        selectionBuilder: selectionAttrs
      }) as Plugin
      const names = new Plugin({
        key: presenceKey,
        view: (created) => {
          view = created
          awareness.setLocalStateField('user', user)
          return {
            update: (current) => { if (!writableState(current.state)) dropCursor(awareness) },
            destroy: () => { view = null }
          }
        }
      })
      return [names, carets]
    }
  })
}

export function createEditor (o: EditorOptions): Editor {
  const editor = new Editor({
    element: o.element,
    editorProps: { attributes: { 'aria-label': o.label, role: 'textbox', 'aria-multiline': 'true', class: 'prose', 'aria-readonly': 'true', 'data-writable': 'false' } },
    extensions: [
      StarterKit.configure({ undoRedo: false, underline: false, link: { openOnClick: false, autolink: true } }),
      Collaboration.configure({ document: o.provider.document, field: 'default' }),
      ...(o.provider.awareness ? [presence(o.provider.awareness, o.user)] : []),
      highlights(o.ranges),
      blamelessHints(o.hints, o.hintPanel),
      templateGuidance(),
      readOnlyGuard()
    ],
    onSelectionUpdate: ({ editor }) => { o.onSelection(editor.state.selection.empty) }
  })
  return editor
}

/** The toolbar: each button is labelled, shows its state with aria-pressed, and keeps focus in the editor. */
export function toolbar (editor: Editor, extra: HTMLElement[]): HTMLElement {
  type Item = [label: string, text: string, run: () => void, active: () => boolean]
  const chain = () => editor.chain().focus()
  const items: Item[] = [
    ['Heading', 'H2', () => chain().toggleHeading({ level: 2 }).run(), () => editor.isActive('heading', { level: 2 })],
    ['Subheading', 'H3', () => chain().toggleHeading({ level: 3 }).run(), () => editor.isActive('heading', { level: 3 })],
    ['Bold', 'B', () => chain().toggleBold().run(), () => editor.isActive('bold')],
    ['Italic', 'I', () => chain().toggleItalic().run(), () => editor.isActive('italic')],
    ['Inline code', '</>', () => chain().toggleCode().run(), () => editor.isActive('code')],
    ['Bulleted list', '• List', () => chain().toggleBulletList().run(), () => editor.isActive('bulletList')],
    ['Numbered list', '1. List', () => chain().toggleOrderedList().run(), () => editor.isActive('orderedList')],
    ['Code block', '{ }', () => chain().toggleCodeBlock().run(), () => editor.isActive('codeBlock')],
    ['Link', 'Link', () => {
      const previous = editor.getAttributes('link').href as string | undefined
      const href = window.prompt('Link address (empty to remove)', previous ?? 'https://')
      if (href === null) return
      if (href.trim() === '') chain().unsetLink().run()
      else chain().extendMarkRange('link').setLink({ href: href.trim() }).run()
    }, () => editor.isActive('link')]
  ]
  const buttons = items.map(([label, text, run, active]) => {
    const b = h('button', { type: 'button', 'aria-label': label, title: label, class: 'tool' }, text)
    b.addEventListener('mousedown', (e) => { e.preventDefault() })
    b.addEventListener('click', run)
    return { b, active }
  })
  const bar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Formatting' }, ...buttons.map((x) => x.b), ...extra)
  const refresh = () => {
    for (const { b, active } of buttons) {
      b.setAttribute('aria-pressed', String(active()))
      b.disabled = !isWritable(editor)
    }
  }
  editor.on('transaction', refresh)
  editor.on('update', refresh)
  refresh()
  return bar
}
