// Learning across reviews (issue 20): a review's contributing factors and team in its page, the
// factors and action kinds of published reviews in the library, the recurring factors per month
// (/library/factors), and the culture pulse of a closed review: a form for those who took part and
// the results once five people answered. Results are aggregates from the server; this page never
// learns or shows who answered what.

import { api, ApiError, type ActionKinds, type Aggregate, type Review } from './api'
import { h, notice, replace } from './dom'
import { memory, type Membership } from './store'

/** What went wrong, in plain words. */
function said (err: unknown): string {
  if (err instanceof ApiError) {
    switch (err.code) {
      case 'invalid_factor': return 'A factor is up to 40 letters, digits and spaces (and - / & \' . ( )).'
      case 'too_many_factors': return 'A review has at most 12 contributing factors.'
      case 'invalid_team': return 'A team name is 1 to 60 characters.'
      case 'already_answered': return 'You already answered this pulse.'
      case 'server_unreachable': return 'The server cannot be reached. Try again.'
      default: return err.message
    }
  }
  return 'Something went wrong. Try again.'
}

/** Factors as small labels. */
export function factorChips (factors: readonly string[]): HTMLElement {
  return h('ul', { class: 'factors', 'aria-label': 'Contributing factors' },
    ...factors.map((f) => h('li', { class: 'factor' }, f)))
}

/** "2 detect · 1 mitigate": the kinds of a review's action items. */
export function kindsText (k: ActionKinds): string {
  const parts = (['prevent', 'detect', 'mitigate', 'process'] as const)
    .filter((kind) => k[kind] > 0)
    .map((kind) => `${k[kind]} ${kind}`)
  return parts.length === 0 ? 'no action items' : parts.join(' · ')
}

/** The review page's contributing factors (and team): shown to all, changed by those who may. */
export function factorsSection (m: Membership, review: () => Review, changed: (r: Review) => void): HTMLElement {
  const root = h('section', { class: 'learning', id: 'factors', 'aria-labelledby': 'factors-h' })
  const render = (): void => {
    const r = review()
    const may = m.role === 'facilitator' || m.role === 'author'
    const current = h('div', { class: 'factors-now' },
      r.factors.length === 0 ? h('span', { class: 'muted' }, 'None tagged yet.') : factorChips(r.factors),
      r.team ? h('span', { class: 'muted team' }, ` · Team: ${r.team}`) : null)
    const parts: (HTMLElement | null)[] = [h('h2', { id: 'factors-h', class: 'section-title' }, 'Contributing factors'), current]
    if (may) {
      const status = h('p', { class: 'form-status', role: 'status' })
      const choices = [...new Set([...r.factor_choices, ...r.factors])]
      const boxes = choices.map((f) => {
        const box = h('input', { type: 'checkbox', value: f, checked: r.factors.includes(f) })
        return { f, box, label: h('label', { class: 'check factor-choice' }, box, ` ${f}`) }
      })
      const free = h('input', { id: 'factor-free', maxlength: 200, placeholder: 'Other factors, separated by commas', 'aria-label': 'Other factors' })
      const save = h('button', { type: 'submit', id: 'factors-save' }, 'Save factors')
      const form = h('form', { class: 'factors-form' },
        h('div', { class: 'factor-choices' }, ...boxes.map((b) => b.label)), free, save, status)
      form.addEventListener('submit', (e) => {
        e.preventDefault()
        const picked = [...boxes.filter((b) => b.box.checked).map((b) => b.f),
          ...free.value.split(',').map((x) => x.trim()).filter((x) => x.length > 0)]
        save.disabled = true
        api.setFactors(m.review, m.session, picked).then((updated) => {
          changed(updated)
          render()
        }, (err: unknown) => {
          replace(status, notice(said(err), 'error'))
          save.disabled = false
        })
      })
      parts.push(h('details', {}, h('summary', {}, 'Tag factors'), form))
    }
    if (m.role === 'facilitator') {
      const team = h('input', { id: 'team', maxlength: 60, value: r.team ?? '', placeholder: 'e.g. Payments', 'aria-label': 'Team' })
      const status = h('p', { class: 'form-status', role: 'status' })
      const save = h('button', { type: 'submit', id: 'team-save' }, 'Save team')
      const form = h('form', { class: 'team-form row' }, team, save, status)
      form.addEventListener('submit', (e) => {
        e.preventDefault()
        save.disabled = true
        api.setTeam(m.review, m.session, team.value.trim() || null).then((updated) => {
          changed(updated)
          render()
        }, (err: unknown) => {
          replace(status, notice(said(err), 'error'))
          save.disabled = false
        })
      })
      parts.push(h('details', {}, h('summary', {}, 'Team'), h('p', { class: 'hint' }, 'The culture pulse of the reviews of the same team that you took part in is shown as a trend.'), form))
    }
    replace(root, ...parts)
  }
  render()
  return root
}

const SCALE = ['Strongly disagree', 'Disagree', 'Somewhat disagree', 'Neutral', 'Somewhat agree', 'Agree', 'Strongly agree']

/** One aggregate as a table: per statement, how many, the mean, and a bar per score. */
function resultsTable (a: Aggregate, caption: string): HTMLElement {
  return h('table', { class: 'pulse-results' },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Statement'), h('th', { scope: 'col' }, 'Mean (1–7)'), h('th', { scope: 'col' }, 'Answers 1 … 7'))),
    h('tbody', {}, ...a.statements.map((s) => {
      const most = Math.max(1, ...s.distribution)
      return h('tr', {},
        h('th', { scope: 'row' }, s.statement),
        h('td', { class: 'mean' }, s.mean.toFixed(2)),
        h('td', {}, h('span', { class: 'dist', 'aria-label': s.distribution.map((n, i) => `${n} × ${i + 1}`).join(', ') },
          ...s.distribution.map((n, i) => h('span', { class: 'dist-bar', title: `${SCALE[i] ?? i + 1}: ${n}`, style: `height:${Math.round((n / most) * 100)}%` })))))
    })))
}

/** The culture pulse of a closed review: the form for those who may answer, then the results. */
export function pulseSection (m: Membership, review: () => Review): HTMLElement {
  const root = h('section', { class: 'learning pulse', id: 'pulse', 'aria-labelledby': 'pulse-h' })
  const load = (): void => {
    api.pulse(m.review, m.session).then((p) => {
      const parts: (HTMLElement | null)[] = [
        h('h2', { id: 'pulse-h', class: 'section-title' }, 'Culture pulse'),
        h('p', { class: 'hint' }, `Anonymous: nobody, not even the facilitator, can see who answered or what. Results appear once ${p.min_answers} people have answered.`)
      ]
      if (p.you.may_answer) {
        const groups = p.statements.map((statement, i) => {
          const radios = SCALE.map((label, v) => h('label', { class: 'scale-point', title: label },
            h('input', { type: 'radio', name: `pulse-${i}`, value: String(v + 1), required: true, 'aria-label': `${v + 1}: ${label}` }), String(v + 1)))
          return h('fieldset', { class: 'pulse-statement' }, h('legend', {}, statement),
            h('span', { class: 'muted scale-end' }, 'disagree'), ...radios, h('span', { class: 'muted scale-end' }, 'agree'))
        })
        const status = h('p', { class: 'form-status', role: 'status' })
        const send = h('button', { type: 'submit', class: 'primary', id: 'pulse-send' }, 'Send my answers')
        const form = h('form', { class: 'pulse-form' }, ...groups, send, status)
        form.addEventListener('submit', (e) => {
          e.preventDefault()
          const answers = p.statements.map((_, i) => Number(form.querySelector<HTMLInputElement>(`input[name="pulse-${i}"]:checked`)?.value ?? 0))
          send.disabled = true
          api.answerPulse(m.review, m.session, answers).then((held) => {
            const by = held.release_by ? new Date(held.release_by).toLocaleTimeString() : null
            replace(form, notice(`Thank you. Your answers count with the next release${by ? `, by ${by}` : ''}, together with others'.`))
          }, (err: unknown) => {
            replace(status, notice(said(err), 'error'))
            send.disabled = false
          })
        })
        parts.push(form)
      } else if (p.you.answered) {
        parts.push(h('p', { class: 'muted', id: 'pulse-answered' }, 'You answered this pulse.'))
      }
      parts.push(p.results
        ? resultsTable(p.results, `${p.results.answers} people answered`)
        : h('p', { class: 'muted', id: 'pulse-waiting' }, `Fewer than ${p.min_answers} answers so far: nothing is shown yet.`))
      replace(root, ...parts)
      if (review().team) {
        api.pulseTrend(m.review, m.session, memory.memberships().filter((o) => o.review !== m.review).map((o) => o.session)).then((t) => {
          if (t.months.length === 0) return
          root.append(h('h3', {}, `Trend of ${t.team ?? 'the team'}`),
            ...t.months.map((month) => resultsTable(month.results, `${month.month}: ${month.reviews} review${month.reviews === 1 ? '' : 's'}, ${month.results.answers} answers`)))
        }, () => undefined)
      }
    }, (err: unknown) => { replace(root, notice(said(err), 'error')) })
  }
  load()
  return root
}

/** /library/factors: what keeps coming back, per month, over published reviews. */
export function factorsScreen (app: HTMLElement, header: () => HTMLElement): void {
  document.title = 'Recurring factors · Debrief library'
  replace(app, header(), h('main', { class: 'narrow' }, notice('Loading…')))
  api.libraryFactors().then((t) => {
    const most = Math.max(1, ...t.factors.flatMap((f) => f.counts))
    const table = h('table', { class: 'factor-trend', id: 'factor-trend' },
      h('caption', {}, `Contributing factors of ${t.reviews} published review${t.reviews === 1 ? '' : 's'}, per month`),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Factor'), h('th', { scope: 'col' }, 'Reviews'),
        ...t.months.map((month) => h('th', { scope: 'col' }, month)))),
      h('tbody', {}, ...t.factors.map((f) => h('tr', { 'data-factor': f.factor },
        h('th', { scope: 'row' }, f.factor),
        h('td', { class: 'total' }, String(f.total)),
        ...f.counts.map((n, i) => h('td', { class: 'count', 'data-month': t.months[i] ?? '' },
          h('span', { class: 'bar', style: `width:${Math.round((n / most) * 100)}%` }),
          h('span', { class: 'n' }, n === 0 ? '' : String(n))))))))
    replace(app, header(), h('main', { class: 'narrow' },
      h('h1', {}, 'Recurring factors'),
      h('p', {}, 'How often each contributing factor was tagged on published reviews, by the month of the incident. What keeps coming back is at the top.'),
      t.factors.length === 0 ? notice('No published review has contributing factors yet.') : table,
      h('p', {}, h('a', { href: '/' }, 'Back to the library'))))
  }, (err: unknown) => {
    replace(app, header(), h('main', { class: 'narrow' }, notice(said(err), 'error')))
  })
}
