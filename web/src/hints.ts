// Blameless-language hints: phrasing that points at a person rather than the system (docs/architecture.md) is underlined
// with the reason and a reframe. The rules are data (blameless-rules.json); the check runs only
// in this browser, so nobody is told whose text was flagged.

import { Extension } from '@tiptap/core'
import { Plugin, PluginKey, type EditorState } from '@tiptap/pm/state'
import { Decoration, DecorationSet } from '@tiptap/pm/view'
import rules from './blameless-rules.json'

interface Rule { pattern: string, why: string, instead: string, caseSensitive?: boolean }

const compiled = (rules as Rule[]).map((r) => ({ ...r, re: new RegExp(r.pattern, r.caseSensitive ? 'gu' : 'giu') }))

/** The hint decorations for a document. */
function decorate (state: EditorState): DecorationSet {
  const decos: Decoration[] = []
  state.doc.descendants((node, pos) => {
    if (!node.isText || !node.text) return
    for (const r of compiled) {
      r.re.lastIndex = 0
      for (let m = r.re.exec(node.text); m; m = r.re.exec(node.text)) {
        if (m[0].length === 0) break
        decos.push(Decoration.inline(pos + m.index, pos + m.index + m[0].length, {
          class: 'hint-blame',
          title: `${r.why} Instead: ${r.instead}`,
          'data-hint': r.why
        }))
      }
    }
  })
  return DecorationSet.create(state.doc, decos)
}

export const hintsKey = new PluginKey<boolean>('debrief-hints')

/** Underlines flagged phrasing while `enabled()` is true. */
export function blamelessHints (enabled: () => boolean): Extension {
  return Extension.create({
    name: 'blamelessHints',
    addProseMirrorPlugins () {
      return [new Plugin({
        key: hintsKey,
        props: {
          decorations (state) {
            return enabled() ? decorate(state) : DecorationSet.empty
          }
        }
      })]
    }
  })
}

/** True when an action item reads like "try harder" rather than a systemic change. */
export function soundsLikeTryHarder (text: string): boolean {
  return /\b(be (more )?careful|pay (more )?attention|double[- ]check|remember to|retrain|more training|be vigilant|don'?t forget)\b/i.test(text)
}
