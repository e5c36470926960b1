// tracegraph dashboard: the span detail panel and live updates. Plain JavaScript, no build step.
(function () {
  'use strict';

  // What the page shows beyond its URL's query (the open span, the timeline's zoom) lives in its hash, as
  // `#span=…&zoom=…`: replaced in place (no navigation, no history entry), so a copied link opens the same view.
  const hash = {
    get(name) { return new URLSearchParams(location.hash.slice(1)).get(name); },
    set(name, value) {
      const params = new URLSearchParams(location.hash.slice(1));
      if (value === null || value === undefined) params.delete(name); else params.set(name, value);
      const text = params.toString();
      history.replaceState(history.state, '', location.pathname + location.search + (text ? '#' + text : ''));
    },
  };
  window.tracegraphHash = hash;

  function esc(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  }

  function parsed(value) {
    if (typeof value !== 'string') return value;
    const t = value.trim();
    if (!(t.startsWith('{') || t.startsWith('['))) return value;
    try { return JSON.parse(t); } catch (e) { return value; }
  }

  function valueHtml(value) {
    const v = parsed(value);
    if (v !== null && typeof v === 'object') {
      return '<details open><summary>JSON</summary><pre class="json">' + esc(JSON.stringify(v, null, 2)) + '</pre></details>';
    }
    return '<span class="value">' + esc(v) + '</span>';
  }

  function copyButton(text) {
    return '<button type="button" class="copy" data-copy="' + esc(text) + '" aria-label="Copy value">copy</button>';
  }

  function attrRows(entries) {
    return entries.map(([k, v]) => {
      const text = typeof v === 'string' ? v : JSON.stringify(v);
      return '<tr><th scope="row">' + esc(k) + '</th><td>' + valueHtml(v) + '</td><td>' + copyButton(text) + '</td></tr>';
    }).join('');
  }

  function stateTable(attrs) {
    const diff = parsed(attrs['tracegraph.state.diff']);
    let rows = [];
    if (diff && typeof diff === 'object' && !Array.isArray(diff)) {
      rows = Object.entries(diff).map(([k, d]) => [k, d && d.old, d && d.new]);
    } else {
      const before = parsed(attrs['tracegraph.state.before']);
      const after = parsed(attrs['tracegraph.state.after']);
      if (before && after && typeof before === 'object' && typeof after === 'object') {
        const keys = Array.from(new Set(Object.keys(before).concat(Object.keys(after))));
        rows = keys.filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k])).map((k) => [k, before[k], after[k]]);
      }
    }
    if (!rows.length) return '';
    const cell = (v) => '<td><pre class="json">' + esc(v === undefined ? '–' : JSON.stringify(v, null, 2)) + '</pre></td>';
    return '<h3>State change</h3><table class="state-diff"><thead><tr><th>Field</th><th>Before</th><th>After</th></tr></thead><tbody>' +
      rows.map(([k, a, b]) => '<tr><th scope="row">' + esc(k) + '</th>' + cell(a) + cell(b) + '</tr>').join('') + '</tbody></table>';
  }

  function spanLink(ref) {
    return '<a href="#" class="open-span" data-span="' + esc(ref.span_id) + '">' + esc(ref.name) + '</a>';
  }

  function render(panel, data) {
    const span = data.span;
    const attrs = span.attributes || {};
    const entries = Object.entries(attrs);
    // Shown in their own sections above the attributes, so not again among them.
    const state = stateTable(attrs);
    const above = new Set(['tracegraph.node.input'].concat(state ? ['tracegraph.state.diff', 'tracegraph.state.before', 'tracegraph.state.after'] : []));
    const own = entries.filter(([k]) => !k.startsWith('logfire.') && !above.has(k));
    const logfire = entries.filter(([k]) => k.startsWith('logfire.'));
    let html = '<header><h2>' + esc(span.name) + '</h2><button type="button" class="close" aria-label="Close the detail panel">×</button></header>';
    html += '<p class="meta">' + esc(span.duration.toFixed(6)) + ' s · status ' + esc(span.status) +
      (span.status_message ? ': ' + esc(span.status_message) : '') + ' · span <code>' + esc(span.span_id) + '</code></p>';
    if ('tracegraph.node.input' in attrs) {
      html += '<h3>Node input</h3>' + valueHtml(attrs['tracegraph.node.input']);
    }
    html += state;
    if (attrs['tracegraph.step'] !== undefined && attrs['tracegraph.run.id'] !== undefined && attrs['tracegraph.node.id'] !== undefined) {
      html += '<section class="state-at" data-run="' + esc(attrs['tracegraph.run.id']) + '" data-step="' + esc(attrs['tracegraph.step']) + '"></section>';
    }
    html += '<h3>Attributes</h3><table class="attrs"><tbody>' + attrRows(own) + '</tbody></table>';
    if (logfire.length) {
      html += '<details class="logfire"><summary>Logfire attributes (' + logfire.length + ')</summary><table class="attrs"><tbody>' +
        attrRows(logfire) + '</tbody></table></details>';
    }
    if (span.events && span.events.length) {
      html += '<h3>Events</h3>' + span.events.map((ev) => {
        const a = ev.attributes || {};
        const trace = a['exception.stacktrace'] ? '<pre class="traceback">' + esc(a['exception.stacktrace']) + '</pre>' : '';
        const rest = Object.entries(a).filter(([k]) => k !== 'exception.stacktrace');
        return '<div class="event"><b>' + esc(ev.name) + '</b> <time>' + esc(ev.time) + '</time><table class="attrs"><tbody>' +
          attrRows(rest) + '</tbody></table>' + trace + '</div>';
      }).join('');
    }
    html += '<h3>Around it</h3><ul class="around">' +
      (data.parent ? '<li>parent: ' + spanLink(data.parent) + '</li>' : '<li>no parent (a root span)</li>') +
      data.children.map((c) => '<li>child: ' + spanLink(c) + '</li>').join('') + '</ul>';
    panel.innerHTML = html;
  }

  // The run's whole state after the step the panel shows (rebuilt by the server from the steps' recorded state).
  async function loadStateAt(panel) {
    const box = panel.querySelector('section.state-at');
    if (!box) return;
    const query = new URLSearchParams({ run_id: box.dataset.run, step: box.dataset.step });
    const reply = await fetch('/api/runs/' + panel.dataset.trace + '/state?' + query, { credentials: 'same-origin' });
    if (!reply.ok) return;
    const state = await reply.json();
    const names = Object.keys(state.fields);
    if (state.recorded === 'none' || !names.length) return;
    const rows = names.map((name) => {
      const f = state.fields[name];
      const when = f.changed_at === null ? 'from the start' : f.changed_at === state.step ? 'this step' : 'step ' + f.changed_at;
      return '<tr><th scope="row">' + esc(name) + '</th><td><pre class="json">' + esc(JSON.stringify(f.value, null, 2)) +
        '</pre></td><td>' + esc(when) + '</td></tr>';
    }).join('');
    const note = state.complete ? '' : '<p class="hint">Recorded as diffs: only the fields some step changed are known.</p>';
    box.innerHTML = '<h3>State after step ' + esc(state.step) + '</h3>' + note +
      '<table class="state-at"><thead><tr><th>Field</th><th>Value</th><th>Last changed</th></tr></thead><tbody>' + rows + '</tbody></table>';
  }

  // What had the focus when the detail panel opened: Esc or the close button give it back.
  let panelOpener = null;

  // The element standing for the same thing as `el` (a span's bar or row, an element with an id, or the element at
  // the same place in `root`), found again after a live update replaced the markup.
  function keyOf(el, root) {
    if (el.dataset && el.dataset.span) return { css: '[data-span="' + CSS.escape(el.dataset.span) + '"]', tag: el.tagName };
    if (el.id) return { css: '#' + CSS.escape(el.id), tag: el.tagName };
    const path = [];
    for (let node = el; node && node !== root; node = node.parentElement) {
      path.unshift(Array.prototype.indexOf.call(node.parentElement.children, node));
    }
    return { path: path, tag: el.tagName };
  }

  function findKey(key, root) {
    if (key.css) {
      const found = Array.from(root.querySelectorAll(key.css));
      return found.find((el) => el.tagName === key.tag) || found[0] || null;
    }
    let node = root;
    for (const i of key.path) {
      node = node && node.children[i];
    }
    return node && node.tagName === key.tag ? node : null;
  }

  function closePanel() {
    const panel = document.getElementById('detail');
    if (!panel || panel.hidden) return;
    panel.hidden = true;
    hash.set('span', null);
    let back = panelOpener && document.contains(panelOpener) ? panelOpener : null;
    if (!back && panelOpener && panelOpener.dataset && panelOpener.dataset.span) {
      back = document.querySelector('[data-span="' + CSS.escape(panelOpener.dataset.span) + '"]');
    }
    if (back) back.focus();
  }

  async function openSpan(spanId, opener) {
    const panel = document.getElementById('detail');
    if (!panel) return;
    if (panel.hidden) panelOpener = opener || document.activeElement;
    panel.hidden = false;
    panel.innerHTML = '<p class="meta">Loading…</p>';
    document.querySelectorAll('.selected').forEach((el) => el.classList.remove('selected'));
    if (opener) opener.classList.add('selected');
    hash.set('span', spanId);
    const url = '/api/traces/' + panel.dataset.trace + '/spans/' + spanId;
    try {
      const reply = await fetch(url, { credentials: 'same-origin' });
      if (!reply.ok) throw new Error((await reply.json()).detail || reply.statusText);
      render(panel, await reply.json());
      await loadStateAt(panel);
    } catch (e) {
      panel.innerHTML = '<p class="error">Could not load the span: ' + esc(e.message) + '</p>';
    }
    panel.focus();
  }

  document.addEventListener('click', (e) => {
    const copy = e.target.closest && e.target.closest('button.copy');
    if (copy) {
      navigator.clipboard && navigator.clipboard.writeText(copy.dataset.copy);
      copy.textContent = 'copied';
      return;
    }
    if (e.target.closest && e.target.closest('#detail button.close')) {
      closePanel();
      return;
    }
    const el = e.target.closest && e.target.closest('[data-span]');
    if (el && !e.target.closest('a[href]:not(.open-span)')) {
      e.preventDefault();
      openSpan(el.dataset.span, el);
    }
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      closePanel();
      return;
    }
    if (e.key !== 'Enter' && e.key !== ' ') return;
    const el = document.activeElement && document.activeElement.closest && document.activeElement.closest('[data-span]');
    if (el && el.tagName !== 'BUTTON') {
      e.preventDefault();
      openSpan(el.dataset.span, el);
    }
  });

  // A link to a span (`#span=…`, e.g. from a run's slowest steps) opens it, with its bar or row selected: on load,
  // and when a link on the page changes only the hash.
  function openFromHash() {
    const linked = hash.get('span');
    if (!linked || !/^[0-9a-f]{16}$/.test(linked) || !document.getElementById('detail')) return;
    const target = document.querySelector('.bar[data-span="' + linked + '"]') || document.querySelector('[data-span="' + linked + '"]');
    openSpan(linked, target);
    if (target && target.scrollIntoView) target.scrollIntoView({ block: 'center' });
  }
  window.addEventListener('hashchange', openFromHash);
  openFromHash();

  // A date picker fills the text field it stands for (which also takes durations such as 6h).
  document.querySelectorAll('input.pick[data-for]').forEach((picker) => {
    picker.addEventListener('change', () => {
      const field = document.querySelector('input[name="' + picker.dataset.for + '"]');
      if (field && picker.value) field.value = picker.value;
    });
  });

  // Live updates: the element marked data-live is fetched again every 2 s and swapped in place.
  const live = document.querySelector('[data-live]');
  if (live) {
    const toggle = document.getElementById('live-toggle');
    const state = document.getElementById('live-state');
    let paused = false;
    let lastHtml = live.innerHTML;
    if (toggle) {
      toggle.addEventListener('click', () => {
        paused = !paused;
        toggle.setAttribute('aria-pressed', String(paused));
        toggle.textContent = paused ? 'Resume updates' : 'Pause updates';
        if (state) state.textContent = paused ? 'paused' : 'updating every 2 s';
      });
    }
    const refresh = async () => {
      if (paused || document.hidden) return;
      try {
        const reply = await fetch(location.href, { credentials: 'same-origin', headers: { 'X-Requested-With': 'refresh' } });
        if (!reply.ok) return;
        const doc = new DOMParser().parseFromString(await reply.text(), 'text/html');
        const fresh = doc.getElementById(live.id);
        const current = document.getElementById(live.id);
        if (fresh && current && fresh.innerHTML !== lastHtml) {
          lastHtml = fresh.innerHTML;
          // Focus and selection survive the swap: found again by what they stand for, not by node identity.
          const focused = current.contains(document.activeElement) ? keyOf(document.activeElement, current) : null;
          const selected = Array.from(current.querySelectorAll('.selected')).map((el) => keyOf(el, current));
          current.innerHTML = fresh.innerHTML;
          selected.forEach((key) => { const el = findKey(key, current); if (el) el.classList.add('selected'); });
          const again = focused && findKey(focused, current);
          if (again) again.focus({ preventScroll: true });
          if (!fresh.hasAttribute('data-live')) current.removeAttribute('data-live');
          document.dispatchEvent(new CustomEvent('tracegraph:swapped'));
        }
      } catch (e) { /* the next round tries again */ }
    };
    setInterval(refresh, 2000);
  }
})();
