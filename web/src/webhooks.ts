// Webhooks of one review, for its facilitator (in the review's Record): add one (a URL and a
// format), see each one's recent delivery attempts, remove one. The signing secret is shown once,
// right after adding, and never again.

import { api, ApiError, type Webhook, type WebhookAttempt, type WebhookFormat } from './api'
import { h, notice, replace } from './dom'

/** What went wrong, in plain words. */
function said (err: unknown): string {
  if (!(err instanceof ApiError)) return 'Something went wrong; try again.'
  switch (err.code) {
    case 'invalid_url': return 'Give a web address starting with https:// (or http://), without a user name or password.'
    case 'private_url': return 'This server does not send to its own machine or a private network. Give the receiver\'s public address, or ask the operator to allow private addresses (--webhooks-allow-private).'
    case 'too_many_webhooks': return 'This review already has 5 webhooks: remove one first.'
    default: return err.message
  }
}

const time = (ms: number): string => new Date(ms).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' })

/** One attempt as a table row: when, which event, what came of it. */
function attemptRow (a: WebhookAttempt): HTMLTableRowElement {
  let result: string
  if (a.delivered) result = `Delivered (${a.status ?? ''})`
  else if (a.status !== null) result = `Refused: HTTP ${a.status}`
  else result = a.error ?? 'Failed'
  if (!a.delivered && a.error !== null && a.status !== null) result += ` (${a.error})`
  const next = a.next_retry === null ? '' : `next try ${time(a.next_retry)}`
  return h('tr', { class: a.delivered ? 'delivered' : 'failed' },
    h('td', {}, time(a.at)), h('td', {}, h('code', {}, a.event_type)), h('td', {}, result), h('td', {}, next))
}

/** The webhooks section; it loads its list itself. */
export function webhooksSection (review: string, session: string): HTMLElement {
  const list = h('div', { class: 'webhook-list', 'aria-live': 'polite' })
  const status = h('div', { class: 'webhook-status' })
  const url = h('input', { type: 'url', id: 'webhook-url', required: true, maxlength: 2000, placeholder: 'https://hooks.slack.com/services/…', 'aria-label': 'Webhook URL' })
  const format = h('select', { id: 'webhook-format', 'aria-label': 'Format' },
    h('option', { value: 'json' }, 'JSON event'),
    h('option', { value: 'slack' }, 'Slack or Mattermost message'))
  const add = h('button', { type: 'submit', id: 'webhook-add' }, 'Add webhook')
  const refresh = h('button', { type: 'button', id: 'webhook-refresh' }, 'Refresh')
  const form = h('form', { class: 'row webhook-form' }, url, format, add)

  const render = (hooks: Webhook[]): void => {
    if (hooks.length === 0) {
      replace(list, h('p', { class: 'hint' }, 'No webhook yet. Add one to tell a chat channel or a tracker when this review moves on.'))
      return
    }
    replace(list, ...hooks.map((hook) => {
      const remove = h('button', { type: 'button', class: 'webhook-remove' }, 'Remove')
      remove.addEventListener('click', () => {
        remove.disabled = true
        api.removeWebhook(session, hook.id).then(load, (err: unknown) => {
          remove.disabled = false
          replace(status, notice(said(err), 'error'))
        })
      })
      const waiting = hook.waiting > 0 ? ` · ${hook.waiting} waiting` : ''
      return h('div', { class: 'webhook', 'data-webhook': hook.id },
        h('div', { class: 'row' },
          h('span', { class: 'webhook-url' }, hook.url),
          h('span', { class: 'hint' }, ` ${hook.format === 'slack' ? 'Slack or Mattermost' : 'JSON'}${waiting} `),
          remove),
        hook.attempts.length === 0
          ? h('p', { class: 'hint' }, 'Nothing sent yet.')
          : h('details', {},
            h('summary', {}, `Recent deliveries (${hook.attempts.length})`),
            h('table', { class: 'webhook-attempts' },
              h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'Event'), h('th', {}, 'Result'), h('th', {}, 'Retry'))),
              h('tbody', {}, ...hook.attempts.map(attemptRow)))))
    }))
  }

  // Only the latest answer is shown: an earlier one may arrive after it.
  let asked = 0
  function load (): void {
    const mine = ++asked
    api.webhooks(review, session).then((got) => { if (mine === asked) render(got.webhooks) }, (err: unknown) => {
      if (mine === asked) replace(status, notice(said(err), 'error'))
    })
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault()
    add.disabled = true
    replace(status)
    api.addWebhook(review, session, url.value, format.value as WebhookFormat).then((created) => {
      add.disabled = false
      url.value = ''
      const secret = h('code', { id: 'webhook-secret' }, created.secret)
      replace(status, h('p', { class: 'notice info', role: 'status' },
        'Webhook added. Its signing secret, shown only now: ', secret,
        '. Deliveries carry X-Debrief-Signature, an HMAC-SHA256 of the time and the body with this secret.'))
      load()
    }, (err: unknown) => {
      add.disabled = false
      replace(status, notice(said(err), 'error'))
    })
  })
  refresh.addEventListener('click', load)
  load()
  return h('section', { class: 'webhooks', 'aria-labelledby': 'webhooks-h' },
    h('h3', { id: 'webhooks-h' }, 'Webhooks'),
    h('p', { class: 'hint' }, 'Signed notices of phase changes, the meeting, action items and publishing, sent to a URL of your choice.'),
    list, h('div', { class: 'row' }, refresh), form, status)
}
