// tracegraph dashboard: the hover tooltip of Gantt bars. Plain JavaScript, no build step.
(function () {
  'use strict';
  const tip = document.getElementById('tip');
  if (!tip) return;
  function esc(text) {
    return String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
  }
  function show(el, event) {
    let data;
    try { data = JSON.parse(el.getAttribute('data-tip')); } catch (e) { return; }
    const rows = [['duration', data.duration], ['status', data.status]];
    if (data.outcome) rows.push(['outcome', data.outcome]);
    if (data.next) rows.push(['next', data.next]);
    for (const [k, v] of Object.entries(data.attributes || {})) {
      const text = typeof v === 'string' ? v : JSON.stringify(v);
      rows.push([k, text.length > 300 ? text.slice(0, 300) + '…' : text]);
    }
    tip.innerHTML = '<b>' + esc(data.title) + '</b><table>' +
      rows.map(([k, v]) => '<tr><td>' + esc(k) + '</td><td>' + esc(v) + '</td></tr>').join('') + '</table>';
    tip.hidden = false;
    move(event);
  }
  function move(event) {
    const pad = 14;
    const w = tip.offsetWidth, h = tip.offsetHeight;
    let x = event.clientX + pad, y = event.clientY + pad;
    if (x + w > window.innerWidth) x = Math.max(0, event.clientX - w - pad);
    if (y + h > window.innerHeight) y = Math.max(0, event.clientY - h - pad);
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  }
  document.addEventListener('mouseover', (e) => {
    const el = e.target.closest && e.target.closest('[data-tip]');
    if (el) show(el, e);
  });
  document.addEventListener('mousemove', (e) => { if (!tip.hidden) move(e); });
  document.addEventListener('mouseout', (e) => {
    const el = e.target.closest && e.target.closest('[data-tip]');
    if (el) tip.hidden = true;
  });
})();
