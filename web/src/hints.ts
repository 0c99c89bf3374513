// Blameless-language hints: phrasing that points at a person rather than the system (docs/architecture.md) is underlined
// with the reason and a reframe. The rules are data (blameless-rules.json); the check runs only
// in this browser, so nobody is told whose text was flagged.
//
// The reason is not only a tooltip (issue 17): when the caret is in a flagged phrase, moved there
// by keyboard, mouse or touch, a panel below the report says why and what to write instead. Before
// the review is closed and before it is published, the facilitator is shown every flagged
// sentence (`flagged`, `flagReview`) and may dismiss each; dismissals are kept in this browser's
// storage for that review, so they survive a reload (they are the facilitator's judgement, not
// the team's, and are never sent).

import { Extension } from '@tiptap/core'
import { Plugin, PluginKey, type EditorState } from '@tiptap/pm/state'
import { Decoration, DecorationSet } from '@tiptap/pm/view'
import type { Node as PmNode } from '@tiptap/pm/model'
import { h, replace } from './dom'
import rules from './blameless-rules.json'

interface Rule { pattern: string, why: string, instead: string, caseSensitive?: boolean }

const compiled = (rules as Rule[]).map((r) => ({ ...r, re: new RegExp(r.pattern, r.caseSensitive ? 'gu' : 'giu') }))

/** The last document decorated and its decorations: the view asks again for the same state. */
let last: { doc: PmNode, set: DecorationSet } | null = null

/** The hint decorations for a document. */
function decorate (state: EditorState): DecorationSet {
  if (last?.doc === state.doc) return last.set
  const set = scan(state)
  last = { doc: state.doc, set }
  return set
}

function scan (state: EditorState): DecorationSet {
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
        }, { phrase: m[0], why: r.why, instead: r.instead }))
      }
    }
  })
  return DecorationSet.create(state.doc, decos)
}

export const hintsKey = new PluginKey<boolean>('debrief-hints')

interface HintSpec { phrase: string, why: string, instead: string }

/**
 * Underlines flagged phrasing while `enabled()` is true, and says the reason of the phrase the
 * caret is in, in `panel` (a live region, so a screen reader hears it too).
 */
export function blamelessHints (enabled: () => boolean, panel?: HTMLElement): Extension {
  const explain = (state: EditorState, decos: DecorationSet): void => {
    if (!panel) return
    const at = state.selection.head
    const found = decos.find(at, at, (spec: unknown) => typeof (spec as HintSpec).why === 'string')[0]
    const hint = found?.spec as HintSpec | undefined
    panel.hidden = hint === undefined
    if (hint) {
      replace(panel, h('strong', {}, `Blameless hint: “${hint.phrase}”`), ' ', hint.why, ' ',
        h('span', { class: 'instead' }, `Instead: ${hint.instead}`))
    } else replace(panel)
  }
  return Extension.create({
    name: 'blamelessHints',
    addProseMirrorPlugins () {
      const decorations = (state: EditorState): DecorationSet => enabled() ? decorate(state) : DecorationSet.empty
      return [new Plugin({
        key: hintsKey,
        props: { decorations },
        view: (view) => {
          explain(view.state, decorations(view.state))
          return {
            update: (v, previous) => {
              if (v.state.doc.eq(previous.doc) && v.state.selection.eq(previous.selection)) return
              explain(v.state, decorations(v.state))
            }
          }
        }
      })]
    }
  })
}

/** One sentence of the report with flagged phrasing. */
export interface Flag { sentence: string, phrase: string, why: string, instead: string }

/** Every flagged sentence of `doc`, in document order (one entry per phrase). */
export function flagged (doc: PmNode): Flag[] {
  const out: Flag[] = []
  doc.descendants((node) => {
    if (!node.isTextblock) return true
    const text = node.textContent
    for (const r of compiled) {
      r.re.lastIndex = 0
      for (let m = r.re.exec(text); m; m = r.re.exec(text)) {
        if (m[0].length === 0) break
        const start = Math.max(0, ...['. ', '! ', '? '].map((end) => text.lastIndexOf(end, m.index)).filter((i) => i >= 0).map((i) => i + 2))
        const ends = ['.', '!', '?'].map((end) => text.indexOf(end, m.index + m[0].length)).filter((i) => i >= 0)
        const end = ends.length > 0 ? Math.min(...ends) + 1 : text.length
        out.push({ sentence: text.slice(start, end).trim(), phrase: m[0], why: r.why, instead: r.instead })
      }
    }
    return false
  })
  return out
}

const dismissedKey = (review: string): string => `debrief.dismissedHints.${review}`
const flagKey = (f: Flag): string => `${f.phrase.toLowerCase()}\u0000${f.sentence}`

function dismissed (review: string): Set<string> {
  try {
    const raw: unknown = JSON.parse(localStorage.getItem(dismissedKey(review)) ?? '[]')
    return new Set(Array.isArray(raw) ? raw.filter((x): x is string => typeof x === 'string') : [])
  } catch {
    return new Set()
  }
}

/** The flags of `doc` not dismissed in this browser for `review`. */
export function undismissed (review: string, doc: PmNode): Flag[] {
  const gone = dismissed(review)
  return flagged(doc).filter((f) => !gone.has(flagKey(f)))
}

/**
 * The facilitator's review of flagged sentences, before closing or publishing: each sentence
 * with its reason and a Dismiss button. `changed` is told how many remain after a dismissal.
 */
export function flagReview (review: string, doc: PmNode, changed: (left: number) => void = () => undefined): HTMLElement {
  const root = h('section', { class: 'flag-review', 'aria-label': 'Blameless-language review' })
  const draw = (): void => {
    const flags = undismissed(review, doc)
    if (flags.length === 0) {
      replace(root, h('p', { class: 'flag-none' }, 'No sentence of the report is flagged by the blameless-language hints.'))
      return
    }
    replace(root,
      h('p', {}, h('strong', {}, `${flags.length === 1 ? 'One sentence' : `${flags.length} sentences`} of the report may blame a person.`),
        ' Read each; reword it in the report, or dismiss it if it is fine as it is.'),
      h('ul', { class: 'flags' }, ...flags.map((f) => {
        const dismiss = h('button', { type: 'button', class: 'link', 'data-dismiss-flag': '' }, 'Dismiss')
        dismiss.addEventListener('click', () => {
          const gone = dismissed(review)
          gone.add(flagKey(f))
          localStorage.setItem(dismissedKey(review), JSON.stringify([...gone]))
          draw()
          changed(undismissed(review, doc).length)
        })
        return h('li', { class: 'flag' }, h('q', {}, f.sentence), ' ',
          h('span', { class: 'muted' }, `“${f.phrase}”: ${f.why} Instead: ${f.instead}`), ' ', dismiss)
      })))
  }
  draw()
  return root
}

/** True when an action item reads like "try harder" rather than a systemic change. */
export function soundsLikeTryHarder (text: string): boolean {
  return /\b(be (more )?careful|pay (more )?attention|double[- ]check|remember to|retrain|more training|be vigilant|don'?t forget)\b/i.test(text)
}
