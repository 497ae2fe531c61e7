// The page: a login, the pool (hosts, storage, VMs with filters and their power actions), a VM
// (record, disks, NICs, snapshots, live graphs, console), creating a VM from a template,
// import and export with task progress, and the task list, all live through event.from.
import { Cache, XapiError, call, login, logout, onLogout, permissions, rrdUpdates, session } from './api.js'
import { drawGraph } from './graph.js'

const CLASSES = ['pool', 'host', 'host_metrics', 'SR', 'VM', 'VM_metrics', 'VBD', 'VDI', 'VIF', 'network', 'task', 'console']
const POWER_ACTIONS = [
  // [allowed_operations entry, message, extra arguments, label]
  ['start', 'VM.start', [false, false], 'Start'],
  ['clean_shutdown', 'VM.clean_shutdown', [], 'Shut down'],
  ['hard_shutdown', 'VM.hard_shutdown', [], 'Force off'],
  ['clean_reboot', 'VM.clean_reboot', [], 'Reboot'],
  ['pause', 'VM.pause', [], 'Pause'],
  ['unpause', 'VM.unpause', [], 'Unpause'],
  ['suspend', 'VM.suspend', [], 'Suspend'],
  ['resume', 'VM.resume', [false, false], 'Resume'],
]
const $ = selector => document.querySelector(selector)
const main = $('#main')
const state = { cache: null, allowed: new Set(), filter: '', power: '', hostStats: {}, graphTimer: null, rfb: null }

export function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])
}

const MIB = 1024 * 1024
const GIB = 1024 * MIB
const size = bytes => (bytes >= GIB ? `${(bytes / GIB).toFixed(1)} GiB` : `${Math.round(bytes / MIB)} MiB`)

function bars() { // widths set through the CSSOM (the page's policy allows no inline styles)
  for (const bar of main.querySelectorAll('.bar > span, .progress > span')) {
    bar.style.width = `${Math.max(0, Math.min(1, +bar.dataset.fraction || 0)) * 100}%`
  }
}

function flash(error) {
  const message = error instanceof XapiError ? `${error.code} ${error.params.join(' ')}` : String(error)
  const box = $('#flash') || Object.assign(document.createElement('p'), { id: 'flash', className: 'error' })
  box.textContent = message
  main.prepend(box)
}

// ---- login -------------------------------------------------------------------------------

function showLogin() {
  state.cache?.stop()
  state.cache = null
  clearInterval(state.graphTimer)
  $('#nav').hidden = true
  $('#tasks').hidden = true
  main.replaceChildren($('#login-template').content.cloneNode(true))
  $('#login').addEventListener('submit', async event => {
    event.preventDefault()
    const form = new FormData(event.target)
    try {
      await login(form.get('user'), form.get('password'))
      location.hash = '#/pool'
      await start()
    } catch (error) {
      $('#login-error').textContent = error instanceof XapiError ? error.code : String(error)
    }
  })
}

onLogout(showLogin)

async function start() {
  $('#nav').hidden = false
  $('#tasks').hidden = false
  $('#whoami').textContent = session.user
  main.innerHTML = '<p class="muted">Loading…</p>'
  state.allowed = await permissions()
  for (const link of document.querySelectorAll('[data-needs]')) link.hidden = !state.allowed.has(link.dataset.needs)
  state.cache = new Cache(CLASSES, (changed, refs) => schedule(changed, refs))
  await state.cache.load()
  state.cache.watch()
  pollHosts()
}

let pending = null
let pendingRefs = null
function schedule(changed, refs) { // one render per frame, however many events arrived
  if (pending) {
    for (const c of changed) pending.add(c)
    if (refs && pendingRefs) for (const r of refs) pendingRefs.add(r)
    else pendingRefs = null
    return
  }
  pending = new Set(changed)
  pendingRefs = refs ? new Set(refs) : null
  requestAnimationFrame(() => {
    const classes = pending
    const changedRefs = pendingRefs
    pending = pendingRefs = null
    render(classes, changedRefs)
  })
}

function render(changed = new Set(CLASSES), refs = null) {
  if (!state.cache) return
  if (changed.has('task')) renderTasks()
  const [, view, ref] = location.hash.split('/')
  if (view === 'vm' && ref) return renderVm(decodeURIComponent(ref), changed)
  if (view === 'create') return changed.has('VM') && renderCreate()
  if (view === 'import') return changed.has('SR') && renderImport()
  if (refs && updateVmRows(changed, refs)) return
  renderPool()
}

window.addEventListener('hashchange', () => { clearInterval(state.graphTimer); state.rfb?.disconnect(); state.rfb = null; render() })

// ---- the pool ----------------------------------------------------------------------------

async function pollHosts() {
  while (state.cache) {
    try {
      const { legend, rows } = await rrdUpdates({ start: '-10', host: 'true', vm_uuid: 'none' })
      const last = rows.at(-1)?.values || []
      const stats = {}
      legend.forEach((entry, i) => {
        const [, owner, uuid, name] = entry.split(':')
        if (owner === 'host') (stats[uuid] ??= {})[name] = last[i]
      })
      state.hostStats = stats
      const body = $('#hosts tbody') // the host rows alone: the VM list stays as it is
      if (body && state.cache) { body.innerHTML = hostRows(); bars() }
    } catch {}
    await new Promise(resolve => setTimeout(resolve, 5000))
  }
}

function userVms() {
  return [...state.cache.of('VM')].filter(([, vm]) => !vm.is_a_template && !vm.is_control_domain && !vm.is_a_snapshot)
}

function actionButtons(ref, vm) {
  return POWER_ACTIONS.filter(([op, method]) => vm.allowed_operations.includes(op) && state.allowed.has(method))
    .map(([op, , , label]) => `<button data-vm="${esc(ref)}" data-op="${op}">${label}</button>`).join('')
}

function matches(vm) {
  const filter = state.filter.toLowerCase()
  return (!state.power || vm.power_state === state.power) && (!filter || vm.name_label.toLowerCase().includes(filter))
}

function vmRow(ref, vm) {
  return `<tr data-vm-row="${esc(ref)}"><td><a href="#/vm/${encodeURIComponent(ref)}">${esc(vm.name_label)}</a></td>
    <td class="state-${esc(vm.power_state)}" data-state>${esc(vm.power_state)}</td>
    <td>${esc(state.cache.get('host', vm.resident_on)?.name_label || '')}</td><td>${vm.VCPUs_at_startup}</td>
    <td>${size(+vm.memory_static_max)}</td><td class="actions">${actionButtons(ref, vm)}</td></tr>`
}

// VMs that changed but stay where they are in the list: their rows alone are redrawn
function updateVmRows(changed, refs) {
  if ([...changed].some(c => !['VM', 'VM_metrics', 'task', 'host_metrics', 'VBD', 'VIF'].includes(c))) return false
  const body = $('#vms tbody')
  if (!body) return false
  const rows = []
  for (const ref of refs) {
    const vm = state.cache.get('VM', ref)
    if (!vm) { if (body.querySelector(`tr[data-vm-row="${CSS.escape(ref)}"]`)) return false; continue }
    if (vm.is_a_template || vm.is_control_domain || vm.is_a_snapshot) continue
    const row = body.querySelector(`tr[data-vm-row="${CSS.escape(ref)}"]`)
    if (!row || !matches(vm) || row.querySelector('a').textContent !== vm.name_label) return false
    rows.push([row, ref, vm])
  }
  for (const [row, ref, vm] of rows) row.outerHTML = vmRow(ref, vm)
  return true
}

function hostRows() {
  const cache = state.cache
  return [...cache.of('host')].map(([ref, host]) => {
    const metrics = cache.get('host_metrics', host.metrics) || {}
    const stats = state.hostStats[host.uuid] || {}
    const total = +metrics.memory_total || 0
    const used = total - (+metrics.memory_free || 0)
    const cpu = stats.cpu_avg ?? null
    return `<tr data-host="${esc(ref)}"><td>${esc(host.name_label)}</td><td>${esc(host.address)}</td>
      <td>${cpu === null ? '–' : `${(cpu * 100).toFixed(1)} %`}</td><td>${stats.loadavg ?? '–'}</td>
      <td><div class="bar"><span data-fraction="${total ? used / total : 0}"></span></div>${size(used)} / ${size(total)}</td></tr>`
  }).join('')
}

function renderPool() {
  const cache = state.cache
  const hosts = hostRows()
  const srs = [...cache.of('SR')].filter(([, sr]) => +sr.physical_size > 0).map(([, sr]) => {
    const fraction = +sr.physical_utilisation / +sr.physical_size
    return `<tr><td>${esc(sr.name_label)}</td><td>${esc(sr.type)}</td>
      <td><div class="bar"><span data-fraction="${fraction}"></span></div>${size(+sr.physical_utilisation)} / ${size(+sr.physical_size)}</td></tr>`
  }).join('')
  const vms = userVms().filter(([, vm]) => matches(vm))
  vms.sort((a, b) => a[1].name_label.localeCompare(b[1].name_label))
  const rows = vms.map(([ref, vm]) => vmRow(ref, vm)).join('')
  const focused = document.activeElement?.id
  main.innerHTML = `
    <section class="card"><h2>Hosts</h2><table id="hosts"><thead><tr><th>Host</th><th>Address</th><th>CPU</th><th>Load</th><th>Memory</th></tr></thead><tbody>${hosts}</tbody></table></section>
    <section class="card"><h2>Storage</h2><table id="srs"><thead><tr><th>SR</th><th>Type</th><th>Used</th></tr></thead><tbody>${srs}</tbody></table></section>
    <section class="card"><h2>VMs <span class="muted" id="vm-count">${vms.length} of ${userVms().length}</span></h2>
      <div class="filters"><input id="vm-filter" placeholder="Filter by name" value="${esc(state.filter)}">
      <select id="vm-power"><option value="">Any state</option>${['Running', 'Halted', 'Paused', 'Suspended'].map(p => `<option${p === state.power ? ' selected' : ''}>${p}</option>`).join('')}</select></div>
      <table id="vms"><thead><tr><th>Name</th><th>State</th><th>Host</th><th>vCPUs</th><th>Memory</th><th>Actions</th></tr></thead><tbody>${rows}</tbody></table></section>`
  bars()
  const input = $('#vm-filter')
  input.addEventListener('input', () => { state.filter = input.value; renderPool() })
  if (focused === 'vm-filter') { input.focus(); input.setSelectionRange(input.value.length, input.value.length) }
  $('#vm-power').addEventListener('change', event => { state.power = event.target.value; renderPool() })
  if (!document.body.dataset.ready) {
    document.body.dataset.ready = '1'
    performance.mark('xenstack-interactive')
  }
}

main.addEventListener('click', async event => {
  const button = event.target.closest('button[data-op]')
  if (!button) return
  const action = POWER_ACTIONS.find(([op]) => op === button.dataset.op)
  button.disabled = true
  try {
    await call(action[1], button.dataset.vm, ...action[2])
  } catch (error) {
    flash(error)
    button.disabled = false
  }
})

// ---- a VM --------------------------------------------------------------------------------

function renderVm(ref, changed) {
  const cache = state.cache
  const vm = cache.get('VM', ref)
  if (!vm) { main.innerHTML = '<p class="error">No such VM.</p>'; return }
  if (!changed.has('VM') && !changed.has('VBD') && !changed.has('VDI') && !changed.has('VIF') && !changed.has('task') && main.dataset.vm === ref) return
  main.dataset.vm = ref
  const disks = vm.VBDs.map(r => cache.get('VBD', r)).filter(Boolean).map(vbd => {
    const vdi = cache.get('VDI', vbd.VDI)
    return `<tr><td>${esc(vbd.userdevice)}</td><td>${esc(vbd.device)}</td><td>${esc(vbd.type)}</td><td>${esc(vdi?.name_label || '')}</td><td>${vdi ? size(+vdi.virtual_size) : ''}</td></tr>`
  }).join('')
  const nics = vm.VIFs.map(r => cache.get('VIF', r)).filter(Boolean).map(vif => `<tr><td>${esc(vif.device)}</td><td>${esc(vif.MAC)}</td><td>${esc(cache.get('network', vif.network)?.name_label || '')}</td><td>${vif.currently_attached ? 'attached' : ''}</td></tr>`).join('')
  const canSnap = state.allowed.has('VM.snapshot') && vm.allowed_operations.includes('snapshot')
  const snaps = vm.snapshots.map(r => [r, cache.get('VM', r)]).filter(([, s]) => s).map(([r, s]) => `<tr data-snapshot="${esc(r)}"><td>${esc(s.name_label)}</td><td>${esc(s.snapshot_time)}</td>
    <td class="actions">${state.allowed.has('VM.revert') ? `<button data-snap-op="revert" data-ref="${esc(r)}">Revert</button>` : ''}${state.allowed.has('VM.destroy') ? `<button data-snap-op="delete" data-ref="${esc(r)}" class="secondary">Delete</button>` : ''}</td></tr>`).join('')
  const fields = ['uuid', 'power_state', 'name_description', 'VCPUs_max', 'memory_static_max', 'domain_type', 'resident_on']
  const record = fields.map(f => `<tr><th>${f}</th><td data-field="${f}">${esc(f === 'resident_on' ? cache.get('host', vm[f])?.name_label || '' : vm[f])}</td></tr>`).join('')
  const running = vm.power_state === 'Running'
  const screen = state.rfb ? $('#console-screen') : null // a live console survives a redraw
  main.innerHTML = `
    <p><a href="#/pool">← Pool</a></p>
    <section class="card"><h2 id="vm-name">${esc(vm.name_label)}</h2><p class="actions" id="vm-actions">${actionButtons(ref, vm)}
      ${state.allowed.has('task.create') && vm.allowed_operations.includes('export') ? '<button id="export" class="secondary">Export</button>' : ''}</p>
      <table>${record}</table></section>
    <section class="card"><h2>Graphs</h2><div class="graphs">
      <div><h3>CPU (%)</h3><canvas class="graph" id="graph-cpu" width="600" height="120"></canvas></div>
      <div><h3>Memory (MiB)</h3><canvas class="graph" id="graph-memory" width="600" height="120"></canvas></div>
      <div><h3>Network (KiB/s)</h3><canvas class="graph" id="graph-net" width="600" height="120"></canvas></div></div></section>
    <section class="card"><h2>Disks</h2><table id="disks"><thead><tr><th>#</th><th>Device</th><th>Type</th><th>VDI</th><th>Size</th></tr></thead><tbody>${disks}</tbody></table></section>
    <section class="card"><h2>Network interfaces</h2><table id="nics"><thead><tr><th>#</th><th>MAC</th><th>Network</th><th></th></tr></thead><tbody>${nics}</tbody></table></section>
    <section class="card"><h2>Snapshots</h2>${canSnap ? '<form id="snapshot-form"><input name="name" placeholder="Snapshot name" required> <button>Take snapshot</button></form>' : ''}
      <table id="snapshots"><tbody>${snaps}</tbody></table></section>
    <section class="card"><h2>Console</h2><p id="console-status" class="muted">${running ? 'Connecting…' : 'The VM is not running.'}</p><div id="console-screen"></div></section>`
  $('#snapshot-form')?.addEventListener('submit', async event => {
    event.preventDefault()
    try { await call('VM.snapshot', ref, new FormData(event.target).get('name')) } catch (error) { flash(error) }
  })
  $('#export')?.addEventListener('click', () => exportVm(ref, vm))
  startGraphs(vm)
  if (screen) $('#console-screen').replaceWith(screen)
  if (screen && !running) { state.rfb.disconnect(); state.rfb = null }
  if (running && !state.rfb) openConsole(ref, vm)
  else if (state.rfb) $('#console-status').textContent = 'Connected'
}

main.addEventListener('click', async event => {
  const button = event.target.closest('button[data-snap-op]')
  if (!button) return
  button.disabled = true
  const snapshot = button.dataset.ref
  try {
    if (button.dataset.snapOp === 'revert') {
      await call('VM.revert', snapshot)
    } else { // a snapshot's disks go with it, as XO deletes them
      const vbds = state.cache.get('VM', snapshot)?.VBDs || []
      const vdis = vbds.map(r => state.cache.get('VBD', r)).filter(v => v && v.type === 'Disk' && v.VDI !== 'OpaqueRef:NULL').map(v => v.VDI)
      await call('VM.destroy', snapshot)
      for (const vdi of vdis) await call('VDI.destroy', vdi).catch(() => {})
    }
  } catch (error) { flash(error); button.disabled = false }
})

function startGraphs(vm) {
  clearInterval(state.graphTimer)
  const draw = async () => {
    if (!location.hash.startsWith('#/vm/')) return
    const { legend, rows } = await rrdUpdates({ start: '-595', vm_uuid: vm.uuid, host: 'false' }) // one step inside ten minutes: 5-second rows.catch(() => ({ legend: [], rows: [] }))
    const series = (test, scale) => rows.map(row => { // NaN (not drawn) where nothing is known
      const known = legend.map((entry, i) => (test(entry.split(':')[3]) ? row.values[i] : null)).filter(v => v !== null)
      return { t: row.t, v: known.length ? known.reduce((sum, v) => sum + v * scale, 0) : NaN }
    })
    drawGraph($('#graph-cpu'), series(n => /^cpu\d+$/.test(n), 100))
    drawGraph($('#graph-memory'), series(n => n === 'memory', 1 / MIB))
    drawGraph($('#graph-net'), series(n => /^vif_\d+_(rx|tx)$/.test(n), 1 / 1024))
  }
  draw()
  state.graphTimer = setInterval(draw, 5000)
}

async function openConsole(ref, vm) {
  const status = $('#console-status')
  const consoles = vm.consoles?.map(r => [r, state.cache.get('console', r)]).filter(([, c]) => c && c.protocol === 'rfb')
  if (!consoles?.length) { status.textContent = 'This VM has no graphical console.'; return }
  const [consoleRef] = consoles[0]
  try {
    const { default: RFB } = await import('/ui/vendor/novnc/core/rfb.js')
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
    const url = `${scheme}://${location.host}/console?ref=${encodeURIComponent(consoleRef)}&session_id=${encodeURIComponent(session.ref)}`
    const rfb = new RFB($('#console-screen'), url)
    rfb.scaleViewport = true
    rfb.addEventListener('connect', () => { status.textContent = 'Connected'; status.dataset.state = 'connected' })
    rfb.addEventListener('disconnect', () => { status.textContent = 'Disconnected'; status.dataset.state = 'disconnected'; state.rfb = null })
    state.rfb = rfb
  } catch (error) {
    status.textContent = `The console is unavailable: ${error.message}`
  }
}

// ---- import, export, create --------------------------------------------------------------

async function exportVm(ref, vm) {
  try {
    const task = await call('task.create', `Export of ${vm.name_label}`, '')
    const link = document.createElement('a')
    link.href = `/export?${new URLSearchParams({ session_id: session.ref, ref, task_id: task, use_compression: 'false' })}`
    link.download = `${vm.name_label}.xva`
    document.body.append(link)
    link.click()
    link.remove()
  } catch (error) { flash(error) }
}

function renderImport() {
  const srs = [...state.cache.of('SR')].filter(([, sr]) => sr.content_type !== 'iso' && +sr.physical_size > 0)
  main.innerHTML = `<section class="card"><h2>Import a VM (XVA)</h2><form id="import-form">
    <input type="file" name="file" accept=".xva" required> <select name="sr">${srs.map(([r, sr]) => `<option value="${esc(r)}">${esc(sr.name_label)}</option>`).join('')}</select>
    <button>Import</button></form><p id="import-status" class="muted"></p></section>`
  $('#import-form').addEventListener('submit', async event => {
    event.preventDefault()
    const form = new FormData(event.target)
    try {
      const task = await call('task.create', `Import of ${form.get('file').name}`, '')
      $('#import-status').textContent = 'Uploading…'
      const query = new URLSearchParams({ session_id: session.ref, task_id: task, sr_id: form.get('sr') })
      const response = await fetch(`/import?${query}`, { method: 'PUT', body: form.get('file') })
      $('#import-status').textContent = response.ok ? 'Sent; the task list shows its progress.' : `Refused: ${response.status} ${await response.text()}`
    } catch (error) { flash(error) }
  })
}

function renderCreate() {
  const templates = [...state.cache.of('VM')].filter(([, vm]) => vm.is_a_template && !vm.is_a_snapshot)
    .sort((a, b) => a[1].name_label.localeCompare(b[1].name_label))
  main.innerHTML = `<section class="card"><h2>New VM from a template</h2><form id="create-form">
    <select name="template">${templates.map(([r, t]) => `<option value="${esc(r)}">${esc(t.name_label)}</option>`).join('')}</select>
    <input name="name" placeholder="Name" required> <button>Create</button></form></section>`
  $('#create-form').addEventListener('submit', async event => {
    event.preventDefault()
    const form = new FormData(event.target)
    try {
      const vm = await call('VM.clone', form.get('template'), form.get('name'))
      await call('VM.provision', vm)
      await call('VM.set_is_a_template', vm, false)
      location.hash = `#/vm/${encodeURIComponent(vm)}`
    } catch (error) { flash(error) }
  })
}

// ---- tasks -------------------------------------------------------------------------------

function renderTasks() {
  const tasks = [...state.cache.of('task')].sort((a, b) => String(b[1].created).localeCompare(String(a[1].created)))
  $('#task-list').innerHTML = tasks.slice(0, 30).map(([ref, task]) => `<li data-task="${esc(ref)}"><div>${esc(task.name_label)}</div>
    <span class="progress"><span data-fraction="${+task.progress}"></span></span> <span data-status>${esc(task.status)}</span> ${Math.round(+task.progress * 100)}%</li>`).join('')
  for (const bar of $('#task-list').querySelectorAll('.progress > span')) bar.style.width = `${+bar.dataset.fraction * 100}%`
}

// ---- start -------------------------------------------------------------------------------

$('#logout').addEventListener('click', () => logout())
if (session.ref) start().catch(error => (error instanceof XapiError && error.code === 'SESSION_INVALID' ? showLogin() : flash(error)))
else showLogin()
