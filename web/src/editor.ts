// The report editor: TipTap on the shared Y.XmlFragment through the stock Collaboration
// extensions, with the toolbar a post-mortem needs. Node and mark names are the schema contract
// of docs/schema.md (StarterKit names; underline is left out because the contract has no such mark).

import { Editor, Extension } from '@tiptap/core'
import StarterKit from '@tiptap/starter-kit'
import Collaboration from '@tiptap/extension-collaboration'
import CollaborationCaret from '@tiptap/extension-collaboration-caret'
import { Plugin, PluginKey, type EditorState } from '@tiptap/pm/state'
import { ySyncPluginKey } from '@tiptap/y-tiptap'
import { Decoration, DecorationSet } from '@tiptap/pm/view'
import type { HocuspocusProvider } from '@hocuspocus/provider'
import { h } from './dom'
import { blamelessHints } from './hints'

/** A highlighted range of the report (a comment's anchor). */
export interface Highlight { id: string, from: number, to: number, active: boolean }

export const highlightKey = new PluginKey('debrief-highlights')

/** Decorates the ranges `ranges(state)` returns; recomputed on every state change. */
function highlights (ranges: (state: EditorState) => Highlight[]): Extension {
  return Extension.create({
    name: 'debriefHighlights',
    addProseMirrorPlugins () {
      return [new Plugin({
        key: highlightKey,
        props: {
          decorations (state) {
            const size = state.doc.content.size
            const decos = ranges(state)
              .filter((r) => r.from < r.to && r.to <= size)
              .map((r) => Decoration.inline(r.from, r.to, {
                class: r.active ? 'anchor active' : 'anchor',
                'data-thread': r.id
              }))
            return DecorationSet.create(state.doc, decos)
          }
        }
      })]
    }
  })
}

export interface EditorOptions {
  element: HTMLElement
  provider: HocuspocusProvider
  user: { name: string, color: string }
  label: string
  ranges: (state: EditorState) => Highlight[]
  onSelection: (empty: boolean) => void
  /** Whether blameless-language hints show. */
  hints: () => boolean
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

/** Whether local changes are accepted. */
export function isWritable (editor: Editor): boolean {
  return writableKey.getState(editor.state) === true
}

/** Grants or withdraws local changes, and says so to assistive technology and to tests. */
export function setWritable (editor: Editor, writable: boolean): void {
  if (isWritable(editor) !== writable) editor.view.dispatch(editor.state.tr.setMeta(writableKey, writable))
  editor.view.dom.setAttribute('aria-readonly', String(!writable))
  editor.view.dom.setAttribute('data-writable', String(writable))
}

export function createEditor (o: EditorOptions): Editor {
  const editor = new Editor({
    element: o.element,
    editorProps: { attributes: { 'aria-label': o.label, role: 'textbox', 'aria-multiline': 'true', class: 'prose', 'aria-readonly': 'true', 'data-writable': 'false' } },
    extensions: [
      StarterKit.configure({ undoRedo: false, underline: false, link: { openOnClick: false, autolink: true } }),
      Collaboration.configure({ document: o.provider.document, field: 'default' }),
      CollaborationCaret.configure({ provider: o.provider, user: o.user }),
      highlights(o.ranges),
      blamelessHints(o.hints),
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
