// The XenAPI from the browser: JSON-RPC on /jsonrpc, the session kept in sessionStorage (never
// the password), an object cache fed by event.from, the metric handler and the permission
// probe. A call answered SESSION_INVALID ends the session: the page goes back to its login.

export class XapiError extends Error {
  constructor(code, params) {
    super(`${code} ${params.join(' ')}`)
    this.code = code
    this.params = params
  }
}

const KEY = 'xenstack-session'
let nextId = 1
const listeners = { logout: [] }

export const session = {
  get ref() { return sessionStorage.getItem(KEY) },
  set ref(value) { value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY) },
  user: sessionStorage.getItem(KEY + '-user') || '',
}

export function onLogout(fn) { listeners.logout.push(fn) }

function endSession() {
  session.ref = null
  for (const fn of listeners.logout) fn()
}

export async function rawCall(method, params) {
  const response = await fetch('/jsonrpc', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: nextId++, method, params }),
  })
  const doc = await response.json()
  if (doc.error) {
    const error = new XapiError(doc.error.message, (doc.error.data || []).map(String))
    if (error.code === 'SESSION_INVALID') endSession()
    throw error
  }
  return doc.result
}

// a call that takes the session first
export function call(method, ...params) {
  if (!session.ref) {
    endSession()
    return Promise.reject(new XapiError('SESSION_INVALID', []))
  }
  return rawCall(method, [session.ref, ...params])
}

export async function login(user, password) {
  const ref = await rawCall('session.login_with_password', [user, password, '2.21', 'xenstack-ui'])
  session.ref = ref
  session.user = user
  sessionStorage.setItem(KEY + '-user', user)
  return ref
}

export async function logout() {
  const ref = session.ref
  endSession()
  if (ref) await rawCall('session.logout', [ref]).catch(() => {})
}

// What this session may do: the API checks the role before it looks at the arguments, so a
// call on the null ref answers RBAC_PERMISSION_DENIED when the role lacks the message, and
// another error (HANDLE_INVALID...) when it has it. Nothing is changed either way.
const PROBES = {
  'VM.start': [false, false], 'VM.clean_shutdown': [], 'VM.hard_shutdown': [],
  'VM.clean_reboot': [], 'VM.hard_reboot': [], 'VM.pause': [], 'VM.unpause': [],
  'VM.suspend': [], 'VM.resume': [false, false], 'VM.snapshot': ['probe'], 'VM.revert': [],
  'VM.destroy': [], 'VM.clone': ['probe'], 'VM.provision': [], 'VDI.destroy': [],
}
export async function permissions() {
  const allowed = new Set()
  await Promise.all(Object.entries(PROBES).map(async ([method, rest]) => {
    try {
      await call(method, 'OpaqueRef:NULL', ...rest)
      allowed.add(method)
    } catch (error) {
      if (error.code !== 'RBAC_PERMISSION_DENIED') allowed.add(method)
    }
  }))
  try {
    await call('task.create', 'probe', '').then(task => call('task.destroy', task))
    allowed.add('task.create')
  } catch {}
  return allowed
}

// The objects of some classes, by class and ref, kept current with event.from
export class Cache {
  constructor(classes, onChange) {
    this.classes = classes
    this.onChange = onChange
    this.objects = Object.fromEntries(classes.map(c => [c, new Map()]))
    this.byLower = Object.fromEntries(classes.map(c => [c.toLowerCase(), c])) // events name classes in lower case
    this.running = false
  }

  of(cls) { return this.objects[cls] }
  get(cls, ref) { return this.objects[cls]?.get(ref) }

  async load() {
    const token = await call('event.inject', 'pool', (await call('pool.get_all'))[0])
    await Promise.all(this.classes.map(async cls => {
      const records = await call(`${cls}.get_all_records`)
      for (const [ref, record] of Object.entries(records)) this.objects[cls].set(ref, record)
    }))
    this.token = token
    this.onChange(new Set(this.classes))
  }

  async watch() {
    this.running = true
    while (this.running && session.ref) {
      let answer
      try {
        answer = await call('event.from', this.classes, this.token, 30.0)
      } catch (error) {
        if (error.code === 'SESSION_INVALID') return
        await new Promise(resolve => setTimeout(resolve, 1000))
        continue
      }
      this.token = answer.token
      const changed = new Set()
      const refs = new Set()
      for (const event of answer.events) {
        const cls = this.byLower[String(event.class).toLowerCase()]
        const table = this.objects[cls]
        if (!table) continue
        if (event.operation === 'del') table.delete(event.ref)
        else if (event.snapshot) table.set(event.ref, event.snapshot)
        changed.add(cls)
        refs.add(event.ref)
      }
      if (changed.size) this.onChange(changed, refs)
    }
  }

  stop() { this.running = false }
}

// /rrd_updates, JSON form: { names: [...legend], rows: [{t, values}] } oldest first
export async function rrdUpdates(query) {
  const params = new URLSearchParams({ session_id: session.ref, json: 'true', cf: 'AVERAGE', ...query })
  const response = await fetch(`/rrd_updates?${params}`)
  if (response.status === 401) { endSession(); throw new XapiError('SESSION_INVALID', []) }
  if (!response.ok) return { legend: [], rows: [] }
  const doc = await response.json()
  return { legend: doc.meta.legend, rows: [...doc.data].reverse() }
}
