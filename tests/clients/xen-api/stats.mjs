// Xen Orchestra's stats, as xo-server fetches and reads them, with the unmodified `xen-api`
// connector: the host's server time (host.get_servertime), then
// getResource('/rrd_updates', {host, query: {cf: AVERAGE, host: true, interval, json: true,
// start: now - points * step + step}}) parsed with JSON5, its step checked against the
// granularity asked for, the legend split as `AVERAGE:<type>:<uuid>:<metric>` and each metric
// XO graphs taken from the rows, oldest first. Prints one JSON line: the findings and the
// stats it built for the host and the VM; exits 1 on a failed check.
//
//   node stats.mjs URL PASSWORD VM_UUID
import JSON5 from 'json5'
import { createClient } from 'xen-api'

const [url, password, vmUuid] = process.argv.slice(2)
const findings = {}
const GRANULARITIES = { seconds: [5, 120], minutes: [60, 120], hours: [3600, 168], days: [86400, 366] }

function check(name, ok, detail) {
  findings[name] = ok ? true : `failed: ${JSON.stringify(detail)}`
  if (!ok) {
    console.log(JSON.stringify({ findings }))
    process.exit(1)
  }
}

// XAPI's DateTime (20260101T10:00:00Z) as seconds since the epoch
function seconds(date) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$/.exec(date)
  return Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6]) / 1000
}

// the metrics XO's host and VM graphs read, by legend name: [path, transform]
const METRICS = {
  host: [
    [/^cpu(\d+)$/, m => ['cpus', m[1]], v => v * 100],
    [/^memory_total_kib$/, () => ['memory'], v => v * 1024],
    [/^memory_free_kib$/, () => ['memoryFree'], v => v * 1024],
    [/^loadavg$/, () => ['load'], v => v],
    [/^pif_eth(\d+)_rx$/, m => ['pifs', 'rx', m[1]], v => v],
    [/^pif_eth(\d+)_tx$/, m => ['pifs', 'tx', m[1]], v => v],
  ],
  vm: [
    [/^cpu(\d+)$/, m => ['cpus', m[1]], v => v * 100],
    [/^memory$/, () => ['memory'], v => v],
    [/^memory_internal_free$/, () => ['memoryFree'], v => v * 1024],
    [/^vif_(\d+)_rx$/, m => ['vifs', 'rx', m[1]], v => v],
    [/^vif_(\d+)_tx$/, m => ['vifs', 'tx', m[1]], v => v],
    [/^vbd_xvd(.)_read$/, m => ['xvds', 'r', m[1]], v => v],
    [/^vbd_xvd(.)_write$/, m => ['xvds', 'w', m[1]], v => v],
  ],
}

function statsOf(json, uuid) {
  const rows = [...json.data].reverse() // XAPI sends the newest row first
  const stats = {}
  json.meta.legend.forEach((entry, index) => {
    const [, type, owner, metric] = /^AVERAGE:([^:]+):(.+):(.+)$/.exec(entry)
    if (owner !== uuid || METRICS[type] === undefined) return
    for (const [test, path, transform] of METRICS[type]) {
      const match = test.exec(metric)
      if (match === null) continue
      const keys = path(match)
      let node = stats
      keys.slice(0, -1).forEach(k => (node = node[k] = node[k] ?? {}))
      node[keys.at(-1)] = rows.map(({ values }) => {
        const value = values[index]
        return value === null || isNaN(value) ? null : transform(+value)
      })
      break
    }
  })
  return stats
}

async function fetchStats(xapi, host, granularity) {
  const [step, points] = GRANULARITIES[granularity]
  const now = seconds(await xapi.call('host.get_servertime', host.$ref))
  // XO names the host; for the master the connector then uses the URL's host name but drops
  // its port (it assumes XAPI's 80/443), so the master is reached through the URL itself here
  const response = await xapi.getResource('/rrd_updates', {
    query: { cf: 'AVERAGE', host: 'true', interval: step, json: 'true', start: now - points * step + step },
  })
  return JSON5.parse(await response.body.text())
}

const xapi = createClient({ url, allowUnauthorized: true, auth: { user: 'root', password } })
try {
  await xapi.connect()
  await xapi.objectsFetched
  const host = xapi.getObject(xapi.pool.master) // as XO: the host object from the cache
  const json = await fetchStats(xapi, host, 'seconds')
  check('the step is the granularity asked for', json.meta.step === 5, json.meta)
  check('rows and columns match the data', json.meta.rows === json.data.length &&
    json.data.every(row => row.values.length === json.meta.columns), json.meta)
  check('rows are newest first', json.data.length > 1 && json.data[0].t > json.data[1].t, json.data.slice(0, 2))
  const hostStats = statsOf(json, host.uuid)
  check('host CPUs in percent', Object.keys(hostStats.cpus ?? {}).length > 0, hostStats)
  check('host memory in bytes', hostStats.memory?.at(-1) > 0, hostStats.memory)
  check('host load and PIFs', hostStats.load !== undefined && hostStats.pifs?.rx?.['0'] !== undefined, hostStats)
  const vmStats = statsOf(json, vmUuid)
  check('VM CPUs, memory, VIFs and disks', vmStats.cpus?.['0'] !== undefined && vmStats.memory !== undefined &&
    vmStats.vifs?.rx?.['0'] !== undefined && vmStats.xvds?.r?.a !== undefined, vmStats)
  const minutes = await fetchStats(xapi, host, 'minutes')
  check('a coarser granularity answers at its step', minutes.meta.step === 60, minutes.meta)
  console.log(JSON.stringify({ findings, host: hostStats, vm: vmStats }))
} finally {
  await xapi.disconnect()
}
