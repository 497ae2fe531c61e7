// A small line graph on a canvas: the points of a series ({t, v}, oldest first), scaled to fit.
// The canvas keeps the count of points it drew in data-points (what a test can read).

export function drawGraph(canvas, points) {
  if (!canvas) return
  const ctx = canvas.getContext('2d')
  const { width, height } = canvas
  ctx.clearRect(0, 0, width, height)
  const known = points.filter(p => Number.isFinite(p.v))
  canvas.dataset.points = String(known.length)
  if (!known.length) return
  const t0 = known[0].t
  const t1 = Math.max(known.at(-1).t, t0 + 1)
  const top = Math.max(...known.map(p => p.v), 1e-9) * 1.1
  ctx.strokeStyle = '#d9dee4'
  ctx.beginPath()
  for (let i = 1; i < 4; i++) { ctx.moveTo(0, (height * i) / 4); ctx.lineTo(width, (height * i) / 4) }
  ctx.stroke()
  ctx.strokeStyle = '#1f6feb'
  ctx.lineWidth = 2
  ctx.beginPath()
  known.forEach((p, i) => {
    const x = ((p.t - t0) / (t1 - t0)) * (width - 4) + 2
    const y = height - 2 - (p.v / top) * (height - 4)
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)
  })
  ctx.stroke()
  ctx.fillStyle = '#66707c'
  ctx.font = '11px sans-serif'
  ctx.fillText(known.at(-1).v.toFixed(1), width - 40, 12)
}
