// A Xen Orchestra-style session against xenstack, with the unmodified `xen-api` connector:
// connect, the object cache fed by event.from, Async calls watched through task objects,
// field setters and XAPI errors. Prints one JSON line of findings; exits 1 on a failed check.
//
//   node session.mjs URL PASSWORD
import { createClient } from 'xen-api'

const [url, password] = process.argv.slice(2)
const MIB = 1024 * 1024
const findings = {}

function check(name, ok, detail) {
  findings[name] = ok ? true : `failed: ${JSON.stringify(detail)}`
  if (!ok) {
    console.log(JSON.stringify(findings))
    process.exit(1)
  }
}

// Resolves once the object cache (fed by event.from) holds an object satisfying `predicate`.
function waitFor(xapi, predicate, what) {
  const found = () => Object.values(xapi.objects.all).find(predicate)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 10000)
    const look = () => {
      const object = found()
      if (object !== undefined) {
        clearTimeout(timer)
        xapi.objects.removeListener('add', look)
        xapi.objects.removeListener('update', look)
        resolve(object)
      }
    }
    xapi.objects.on('add', look)
    xapi.objects.on('update', look)
    look()
  })
}

function waitGone(xapi, ref) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${ref} to go`)), 10000)
    const look = () => {
      if (xapi.getObjectByRef(ref, undefined) === undefined) {
        clearTimeout(timer)
        xapi.objects.removeListener('remove', look)
        resolve()
      }
    }
    xapi.objects.on('remove', look)
    look()
  })
}

function vmRecord(name) {
  return {
    name_label: name, name_description: 'made by xen-api', user_version: '1',
    is_a_template: false, affinity: 'OpaqueRef:NULL',
    memory_static_max: String(256 * MIB), memory_dynamic_max: String(256 * MIB),
    memory_dynamic_min: String(256 * MIB), memory_static_min: String(128 * MIB),
    VCPUs_params: {}, VCPUs_max: '1', VCPUs_at_startup: '1',
    actions_after_shutdown: 'destroy', actions_after_reboot: 'restart',
    actions_after_crash: 'restart', PV_bootloader: 'pygrub', PV_kernel: '', PV_ramdisk: '',
    PV_args: '', PV_bootloader_args: '', PV_legacy_args: '', HVM_boot_policy: '',
    HVM_boot_params: {}, platform: {}, PCI_bus: '', other_config: {}, recommendations: '',
  }
}

const xapi = createClient({ url, auth: { user: 'root', password }, allowUnauthorized: true })
try {
  await xapi.connect()
  await xapi.objectsFetched
  check('connected', xapi.status === 'connected', xapi.status)

  const objects = Object.values(xapi.objects.all)
  const byType = type => objects.filter(o => o.$type === type)
  check('pool cached', byType('pool').length === 1, byType('pool').length)
  const host = byType('host')[0]
  check('host cached', host !== undefined && host.$ref.startsWith('OpaqueRef:'), host)
  check('host resolves its metrics', host.$metrics?.$type === 'host_metrics', host.metrics)
  check('templates cached', byType('VM').some(vm => vm.is_a_template), byType('VM').length)
  check('getObject by uuid', xapi.getObject(host.uuid).$ref === host.$ref, host.uuid)

  // a plain call, then the object arrives through event.from
  const ref = await xapi.call('VM.create', vmRecord('xo-vm'))
  const vm = await waitFor(xapi, o => o.$ref === ref, 'the new VM')
  check('created VM cached', vm.name_label === 'xo-vm' && vm.power_state === 'Halted', vm)

  // setters: a field, then a map entry (remove_from_ + add_to_)
  await xapi.setField('VM', ref, 'name_description', 'set by xen-api')
  await xapi.setFieldEntry('VM', ref, 'other_config', 'xo:owner', 'tests')
  const updated = await waitFor(
    xapi, o => o.$ref === ref && o.other_config['xo:owner'] === 'tests', 'the updated VM')
  check('setters seen through events', updated.name_description === 'set by xen-api', updated)

  // Async calls: the connector watches the task object and parses its XML-RPC result
  await xapi.callAsync('VM.start', ref, false, false)
  const running = await waitFor(xapi, o => o.$ref === ref && o.power_state === 'Running', 'Running')
  check('Async start', running.resident_on === host.$ref, running.resident_on)
  const clone = await xapi.callAsync('VM.clone', byType('VM').find(v => v.is_a_template).$ref, 'xo-clone')
  check('Async result parsed from the task', typeof clone === 'string' && clone.startsWith('OpaqueRef:'), clone)

  // errors: XAPI's code and parameters, from a plain call and from a task
  try {
    await xapi.call('VM.start', ref, false, false)
    check('error from a call', false, 'no error')
  } catch (error) {
    check('error from a call', error.code === 'VM_BAD_POWER_STATE' && error.params[0] === ref, error)
  }
  try {
    await xapi.callAsync('VM.start', ref, false, false)
    check('error from a task', false, 'no error')
  } catch (error) {
    check('error from a task', error.code === 'VM_BAD_POWER_STATE' && error.task?.status === 'failure', error)
  }

  await xapi.callAsync('VM.hard_shutdown', ref)
  await waitFor(xapi, o => o.$ref === ref && o.power_state === 'Halted', 'Halted')
  await xapi.call('VM.destroy', ref)
  await xapi.call('VM.destroy', clone)
  await waitGone(xapi, ref)
  check('destroyed VM leaves the cache', xapi.getObjectByRef(ref, undefined) === undefined, ref)
  check('finished tasks were destroyed',
    Object.values(xapi.objects.all).filter(o => o.$type === 'task').length === 0, 'tasks left')
} finally {
  await xapi.disconnect()
}
console.log(JSON.stringify(findings))
