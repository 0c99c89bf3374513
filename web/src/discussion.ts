// Shapes of the `discussion` document as the server writes it (docs/schema.md), read over sync,
// not REST: comment threads and the concern board. (What REST commands answer is typed from the
// OpenAPI document, in api.ts.)

export interface Comment {
  id: string
  body: string
  /** Null for an anonymous comment. */
  author: { participant: string, name: string } | null
  anonymous?: boolean
  hidden?: boolean
  createdAt: number
  editedAt?: number
  deleted: boolean
}

export interface Thread {
  id: string
  anchor: { start: string, end: string, quote: string } | null
  resolved: boolean
  createdAt: number
  comments: Comment[]
}

export interface Concern {
  id: string
  body: string
  createdAt: number
  editedAt?: number
  discussed: boolean
  hidden: boolean
  votes: string[]
}
