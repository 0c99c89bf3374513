// The report template's guidance as placeholders (issue 17): the server seeds each section as a
// level-2 heading and an empty paragraph; while that paragraph is empty the editor shows the
// section's one line of guidance in it. The guidance is a decoration, never text of the
// document, so it cannot reach exports, versions or the library. The sections are
// web/src/template.json, the copy of the server's TEMPLATE (a server test keeps them equal).

import { Extension } from '@tiptap/core'
import { Plugin, PluginKey } from '@tiptap/pm/state'
import { Decoration, DecorationSet } from '@tiptap/pm/view'
import type { Node as PmNode } from '@tiptap/pm/model'
import template from './template.json'

interface Section { title: string, help: string }

const guidanceFor = new Map((template as Section[]).map((s) => [s.title, s.help]))

/** Placeholders for the empty paragraphs right below a template heading. */
function decorate (doc: PmNode): DecorationSet {
  const decos: Decoration[] = []
  let help: string | undefined
  // Only the top level: the template's headings and paragraphs are children of the document.
  doc.forEach((node, pos) => {
    const after = help
    help = node.type.name === 'heading' && node.attrs.level === 2 ? guidanceFor.get(node.textContent.trim()) : undefined
    if (after !== undefined && node.type.name === 'paragraph' && node.content.size === 0) {
      decos.push(Decoration.node(pos, pos + node.nodeSize, { class: 'guidance', 'data-guidance': after }))
    }
  })
  return DecorationSet.create(doc, decos)
}

const guidanceKey = new PluginKey<DecorationSet>('debrief-guidance')

/** Shows the template's guidance in the empty paragraph of each section. */
export function templateGuidance (): Extension {
  return Extension.create({
    name: 'templateGuidance',
    addProseMirrorPlugins () {
      return [new Plugin<DecorationSet>({
        key: guidanceKey,
        state: {
          init: (_, state) => decorate(state.doc),
          apply: (tr, old) => tr.docChanged ? decorate(tr.doc) : old
        },
        props: { decorations: (state) => guidanceKey.getState(state) }
      })]
    }
  })
}
