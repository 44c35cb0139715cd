// MagicAds console pages. The server renders each page from the JSON API;
// this script performs the actions (fetch with the CSRF header), then
// re-renders the page's <main> in place from the server and shows a toast.
(function () {
  'use strict';

  var FLASH_KEY = 'magicads.flash';
  var FRAGMENT_HEADER = 'X-Console-Fragment';
  var CSRF_COOKIE = 'magicads_csrf';
  var page = document.body.dataset.page;

  // csrfToken returns the value of the CSRF cookie, or ''.
  function csrfToken() {
    var parts = document.cookie ? document.cookie.split(';') : [];
    for (var i = 0; i < parts.length; i++) {
      var c = parts[i].trim();
      if (c.indexOf(CSRF_COOKIE + '=') === 0) {
        var v = c.slice(CSRF_COOKIE.length + 1);
        try { return decodeURIComponent(v); } catch (e) { return v; }
      }
    }
    return '';
  }

  // api calls the host's JSON API and resolves to {ok, status, data}; a
  // failure's data.error is the host's own message.
  async function api(method, url, body) {
    var headers = { 'Accept': 'application/json' };
    var token = csrfToken();
    if (token) { headers['X-CSRF-Token'] = token; }
    var payload;
    if (body instanceof FormData) {
      payload = body;
    } else if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    var res;
    try {
      res = await fetch(url, { method: method, headers: headers, body: payload, credentials: 'same-origin' });
    } catch (e) {
      return { ok: false, status: 0, data: { error: 'The host could not be reached: ' + e.message } };
    }
    var data = {};
    var text = '';
    try { text = await res.text(); } catch (e) { text = ''; }
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = { error: text.trim() }; }
      if (data === null || typeof data !== 'object') { data = { value: data }; }
    }
    if (!res.ok && !data.error) { data.error = res.status + ' ' + res.statusText; }
    return { ok: res.ok, status: res.status, data: data };
  }

  function clearToasts() {
    var box = document.getElementById('toasts');
    if (box) { box.replaceChildren(); }
  }

  // sentence returns a message starting with a capital letter.
  function sentence(message) {
    var m = String(message == null ? '' : message).trim();
    return m.charAt(0).toUpperCase() + m.slice(1);
  }

  // How long a toast stays: long enough to read, never in the way for long.
  var TOAST_MS = { ok: 6000, error: 12000 };

  // toast shows one green (ok) or red message in the strip under the
  // navigation, outside the page's scrolling area, so it is always in view
  // and never covers the page; a new one replaces it. It dismisses itself after a while (not while the pointer
  // or the focus is on it), and its × dismisses it at once.
  function toast(ok, message) {
    var box = document.getElementById('toasts');
    box.replaceChildren();
    var t = document.createElement('div');
    t.className = 'toast ' + (ok ? 'toast-ok' : 'toast-error');
    t.setAttribute('role', ok ? 'status' : 'alert');
    var text = document.createElement('span');
    text.className = 'toast-text';
    text.textContent = sentence(message);
    var close = document.createElement('button');
    close.type = 'button';
    close.className = 'toast-close';
    close.setAttribute('aria-label', 'Dismiss');
    close.textContent = '×';
    close.addEventListener('click', function () { t.remove(); });
    t.append(text, close);
    box.appendChild(t);
    var left = ok ? TOAST_MS.ok : TOAST_MS.error;
    var started = Date.now();
    var timer = null;
    function run() { started = Date.now(); timer = setTimeout(function () { t.remove(); }, left); }
    function pause() {
      if (timer === null) { return; }
      clearTimeout(timer);
      timer = null;
      left = Math.max(1500, left - (Date.now() - started));
    }
    t.addEventListener('mouseenter', pause);
    t.addEventListener('focusin', pause);
    t.addEventListener('mouseleave', function () { if (timer === null) { run(); } });
    t.addEventListener('focusout', function () { if (timer === null) { run(); } });
    run();
  }

  // confirmAction asks in the page's dialog and resolves to true when the
  // admin confirms; the dialog says what will happen.
  function confirmAction(title, message, okLabel, alt) {
    var dlg = document.getElementById('confirm-dialog');
    if (!dlg || typeof dlg.showModal !== 'function') {
      return Promise.resolve(window.confirm(title + '\n\n' + message));
    }
    document.getElementById('confirm-title').textContent = title;
    document.getElementById('confirm-message').textContent = message;
    document.getElementById('confirm-ok').textContent = okLabel;
    // alt, when given, is a link offered instead ({href, label}).
    var altLink = document.getElementById('confirm-alt');
    if (altLink) {
      altLink.hidden = !alt;
      if (alt) { altLink.href = alt.href; altLink.textContent = alt.label; }
    }
    dlg.returnValue = '';
    return new Promise(function (resolve) {
      dlg.addEventListener('close', function () { resolve(dlg.returnValue === 'confirm'); }, { once: true });
      dlg.showModal();
    });
  }

  // reloadWith reloads the page (or goes to url) and shows the toast there.
  function reloadWith(ok, message, url) {
    if (message) {
      try { sessionStorage.setItem(FLASH_KEY, JSON.stringify({ ok: ok, message: message })); } catch (e) { /* no storage */ }
    }
    if (url) { location.replace(url); } else { location.reload(); }
  }

  function showFlash() {
    var raw = null;
    try { raw = sessionStorage.getItem(FLASH_KEY); sessionStorage.removeItem(FLASH_KEY); } catch (e) { return; }
    if (!raw) { return; }
    try { var f = JSON.parse(raw); toast(!!f.ok, f.message); } catch (e) { /* ignore */ }
  }

  // refresh re-renders <main> from the server in place, then shows the
  // toast (message may be a function, called after the re-render); it
  // falls back to a full reload when that is not possible. It asks for the
  // <main> element only and parses it in an inert <template>, so nothing
  // of the fresh page (its style and script, whose CSP nonce differs from
  // this page's) is ever applied here.
  async function refresh(ok, message) {
    var fresh = null;
    try {
      var headers = { 'Accept': 'text/html' };
      headers[FRAGMENT_HEADER] = 'main';
      var res = await fetch(location.href, { credentials: 'same-origin', headers: headers });
      if (res.ok && !res.redirected) {
        var tpl = document.createElement('template');
        tpl.innerHTML = await res.text();
        var m = tpl.content.querySelector('main');
        if (m && m.dataset.page === page) { fresh = m; }
      }
    } catch (e) { fresh = null; }
    var text = typeof message === 'function' ? '' : message;
    if (!fresh) { reloadWith(ok, text); return; }
    document.querySelector('main').replaceWith(document.importNode(fresh, true));
    decorate();
    if (typeof message === 'function') { text = message(); }
    if (text) { toast(ok, text); }
  }

  // busy disables the buttons around btn and labels it; the returned
  // function undoes both.
  function busy(btn, label) {
    var scope = btn.closest('form, article, li, section') || document;
    var buttons = Array.prototype.slice.call(scope.querySelectorAll('button'));
    var old = btn.textContent;
    buttons.forEach(function (b) { b.disabled = true; });
    btn.textContent = label;
    return function () {
      buttons.forEach(function (b) { b.disabled = false; });
      btn.textContent = old;
    };
  }

  async function logout(btn) {
    var done = busy(btn, 'Logging out…');
    var r = await api('POST', '/logout');
    if (r.ok || r.status === 401) { location.assign('/login'); return; }
    done();
    toast(false, r.data.error);
  }

  // ---- Plugins ----

  function pluginName(id) {
    var card = document.getElementById('plugin-' + id);
    return (card && card.dataset.name) || id;
  }

  function progress(id, text) {
    var p = document.getElementById('progress-' + id);
    if (!p) { return; }
    p.textContent = text || '';
    p.hidden = !text;
  }

  // checkoutURL adds ?return=<this page> to a checkout address; '' when it
  // is not an http(s) address.
  function checkoutURL(raw) {
    if (!raw) { return ''; }
    var u;
    try { u = new URL(raw, location.href); } catch (e) { return ''; }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') { return ''; }
    u.searchParams.set('return', location.origin + location.pathname);
    return u.toString();
  }

  // decorate points the Buy links at the checkout with the return address.
  function decorate() {
    document.querySelectorAll('a[data-action="buy"]').forEach(function (a) {
      var href = checkoutURL(a.dataset.checkout);
      if (href) { a.href = href; }
    });
  }

  async function buy(a, ev) {
    if (checkoutURL(a.dataset.checkout)) { return; } // the link goes there
    ev.preventDefault();
    clearToasts();
    var r = await api('POST', '/api/v1/admin/plugins/' + encodeURIComponent(a.dataset.id) + '/purchase');
    if (!r.ok) { toast(false, r.data.error); return; }
    var to = checkoutURL(r.data.checkout_url);
    if (!to) { toast(false, 'The marketplace has no checkout address for ' + pluginName(a.dataset.id) + ': ask the marketplace for one, or use a license that includes the plugin'); return; }
    location.assign(to);
  }

  async function install(b) {
    var id = b.dataset.id;
    var update = b.dataset.action === 'update';
    clearToasts();
    var done = busy(b, update ? 'Updating…' : 'Installing…');
    progress(id, update
      ? 'Updating… downloading, verifying and starting the new version.'
      : 'Installing… downloading, verifying, migrating and starting the plugin.');
    var r = await api('POST', '/api/v1/admin/plugins/' + encodeURIComponent(id) + '/install');
    if (r.ok) {
      var v = r.data.installed_version ? ' (version ' + r.data.installed_version + ')' : '';
      await refresh(true, pluginName(id) + (update ? ' updated' : ' installed') + v);
      return;
    }
    done();
    progress(id, '');
    toast(false, r.data.error);
  }

  async function uninstall(b) {
    var id = b.dataset.id;
    var name = pluginName(id);
    var msg = b.dataset.confirm || ('Uninstall ' + name + '? If it is the Default Storage, new results go back to the local server. Results already stored there keep serving, and nothing in the bucket is deleted.');
    var alt = b.dataset.bringBack ? { href: b.dataset.bringBack, label: 'Bring back to local first' } : null;
    if (!(await confirmAction('Uninstall ' + name + '?', msg, 'Uninstall', alt))) { return; }
    clearToasts();
    var done = busy(b, 'Uninstalling…');
    progress(id, 'Uninstalling…');
    var r = await api('POST', '/api/v1/admin/plugins/' + encodeURIComponent(id) + '/uninstall');
    if (r.ok) { await refresh(true, name + ' uninstalled'); return; }
    done();
    progress(id, '');
    toast(false, r.data.error);
  }

  // recordReceipt posts the ?receipt=… the checkout came back with.
  async function recordReceipt() {
    var params = new URLSearchParams(location.search);
    var receipt = params.get('receipt');
    if (receipt === null) { return; }
    params.delete('receipt');
    var q = params.toString();
    history.replaceState(null, '', location.pathname + (q ? '?' + q : '') + location.hash);
    var status = document.getElementById('purchase-status');
    if (status) { status.textContent = 'Recording your purchase…'; status.hidden = false; }
    var r = await api('POST', '/api/v1/admin/purchases', { receipt: receipt });
    if (r.ok) {
      var who = r.data.plugin_id ? ' for ' + pluginName(r.data.plugin_id) : '';
      await refresh(true, 'Purchase recorded' + who + '. You can install it now.');
      return;
    }
    if (status) { status.hidden = true; }
    toast(false, r.data.error);
  }

  // ---- Plugin config screen ----

  function settingsBase(form) {
    return '/api/v1/admin/plugins/' + encodeURIComponent(form.dataset.plugin);
  }

  function inputs(form) {
    return Array.prototype.slice.call(form.querySelectorAll('[data-key]'));
  }

  // collect returns the form's values as the settings API takes them; a
  // blank secret is left out so the stored one is kept.
  function collect(form) {
    var values = {};
    inputs(form).forEach(function (el) {
      if (el.dataset.readonly) { return; }
      var k = el.dataset.key;
      var t = el.dataset.type;
      if (el.type === 'checkbox') { values[k] = el.checked; return; }
      var v = el.value;
      if (el.dataset.secret) { if (v !== '') { values[k] = v; } return; }
      if (t === 'number' || t === 'integer') {
        if (v.trim() === '') { return; }
        var n = Number(v);
        values[k] = isNaN(n) ? v : n;
        return;
      }
      if (t === 'boolean') { values[k] = v === 'true'; return; }
      if (t === 'json') {
        if (v.trim() === '') { return; }
        try { values[k] = JSON.parse(v); } catch (e) { values[k] = v; }
        return;
      }
      values[k] = v;
    });
    return values;
  }

  function clearErrors(form) {
    form.querySelectorAll('.field-error').forEach(function (e) { e.textContent = ''; e.hidden = true; });
    form.querySelectorAll('.field.invalid').forEach(function (f) { f.classList.remove('invalid'); });
  }

  // showErrors puts each field's message under its input; messages for
  // fields the form does not show go under the buttons.
  function showErrors(form, fields) {
    var first = null;
    var other = [];
    Object.keys(fields || {}).forEach(function (k) {
      var msg = String(fields[k]);
      var el = inputs(form).find(function (i) { return i.dataset.key === k; });
      var box = el && el.closest('.field');
      var err = box && box.querySelector('.field-error');
      if (!err) { other.push((k ? k + ': ' : '') + msg); return; }
      err.textContent = sentence(msg);
      err.hidden = false;
      box.classList.add('invalid');
      if (!first) { first = el; }
    });
    var formErr = document.getElementById('error-form');
    if (other.length && formErr) { formErr.textContent = other.join('\n'); formErr.hidden = false; }
    if (first) { first.focus(); }
  }

  // labelOf returns the text of an input's label, or its key.
  function labelOf(el) {
    var label = el.id ? document.querySelector('label[for="' + el.id + '"] .label-text') : null;
    return (label && label.textContent.trim()) || el.dataset.key;
  }

  // joinOr joins names as "a", "a or b" or "a, b or c".
  function joinOr(names) {
    if (names.length <= 1) { return names.join(''); }
    return names.slice(0, -1).join(', ') + ' or ' + names[names.length - 1];
  }

  // boundValue returns what an input that decides where secrets are sent
  // holds now, and boundStored what is stored for it; an empty text input
  // stands for the schema default, as on the host.
  function boundValue(el) {
    if (el.type === 'checkbox') { return String(el.checked); }
    return el.value === '' ? (el.dataset.default || '') : el.value;
  }
  function boundStored(el) {
    var v = el.dataset.stored || '';
    if (el.type === 'checkbox') { return v === 'true' ? 'true' : 'false'; }
    return v === '' ? (el.dataset.default || '') : v;
  }

  // secretWarnings shows the warning next to each stored secret left blank
  // once an input marked data-binds-secrets (the schema's x-binds-secrets:
  // an endpoint, an account) differs from its stored value. The host
  // refuses that save until the secret is entered again: a stored secret is
  // only sent to where it was entered.
  function secretWarnings(form) {
    if (!form) { return; }
    var changed = [];
    form.querySelectorAll('[data-binds-secrets]').forEach(function (el) {
      if (boundValue(el) !== boundStored(el)) { changed.push(labelOf(el)); }
    });
    form.querySelectorAll('[data-secret]').forEach(function (el) {
      var warn = document.getElementById('warning-' + el.dataset.key);
      if (!warn) { return; }
      var show = changed.length > 0 && el.value === '' && el.dataset.storedSecret === 'true';
      if (show) {
        warn.textContent = 'Changing ' + joinOr(changed) + ' does not keep the stored ' + labelOf(el) + ': enter it again before you save.';
      }
      warn.hidden = !show;
    });
  }

  // reloadStored re-reads what is stored: which secrets are set, and the
  // problem banner. Secret inputs are emptied, and what was just saved
  // becomes the stored value of the inputs secrets are bound to.
  async function reloadStored(form) {
    var r = await api('GET', settingsBase(form) + '/settings');
    if (!r.ok) { return; }
    var set = r.data.secrets_set || [];
    form.querySelectorAll('[data-secret]').forEach(function (el) {
      el.value = '';
      el.placeholder = set.indexOf(el.dataset.key) >= 0 ? form.dataset.storedPlaceholder : (el.dataset.placeholder || '');
      if (set.indexOf(el.dataset.key) >= 0) { el.dataset.storedSecret = 'true'; } else { delete el.dataset.storedSecret; }
    });
    form.querySelectorAll('[data-binds-secrets]').forEach(function (el) {
      el.dataset.stored = el.type === 'checkbox' ? String(el.checked) : el.value;
    });
    secretWarnings(form);
    var problem = document.getElementById('settings-problem');
    var problemText = document.getElementById('settings-problem-text');
    if (problem && problemText) {
      problemText.textContent = r.data.problem ? sentence(r.data.problem) : '';
      problem.hidden = !r.data.problem;
    }
    markMissing(form, !!r.data.problem);
  }

  // isEmpty is true for an input with no value: a secret not stored and not
  // typed, a blank text, an unchecked box.
  function isEmpty(el) {
    if (el.type === 'checkbox') { return !el.checked; }
    if (el.dataset.secret) { return el.value === '' && el.dataset.storedSecret !== 'true'; }
    return el.value.trim() === '';
  }

  // markMissing marks the fields the schema's x-fully-configured asks for
  // that are empty, while the provider has a problem, and lists them in the
  // problem banner.
  function markMissing(form, hasProblem) {
    var byKey = {};
    inputs(form).forEach(function (el) { byKey[el.dataset.key] = el; });
    var all = (form.dataset.completeAll || '').split(',').filter(Boolean);
    var any = (form.dataset.completeAny || '').split(',').filter(Boolean).filter(function (k) { return byKey[k]; });
    var marks = {};
    var names = [];
    all.forEach(function (k) {
      if (byKey[k] && isEmpty(byKey[k])) { marks[k] = 'Required before the provider can be used.'; names.push(labelOf(byKey[k])); }
    });
    if (any.length && any.every(function (k) { return isEmpty(byKey[k]); })) {
      var anyNames = any.map(function (k) { return labelOf(byKey[k]); });
      any.forEach(function (k) { marks[k] = 'Set ' + joinOr(anyNames) + ' before the provider can be used.'; });
      names.push(joinOr(anyNames));
    }
    inputs(form).forEach(function (el) {
      var k = el.dataset.key;
      var box = el.closest('.field');
      var note = document.getElementById('missing-' + k);
      var show = hasProblem && !!marks[k];
      if (box) { box.classList.toggle('missing', show); }
      if (note) { note.textContent = show ? marks[k] : ''; note.hidden = !show; }
    });
    var list = document.getElementById('settings-missing');
    if (list) {
      list.textContent = hasProblem && names.length ? 'Fill in the marked fields: ' + joinAnd(names) + '.' : '';
    }
  }

  // joinAnd joins names as "a", "a and b" or "a, b and c".
  function joinAnd(names) {
    if (names.length <= 1) { return names.join(''); }
    return names.slice(0, -1).join(', ') + ' and ' + names[names.length - 1];
  }

  // isR2Dev is true when text is a URL on r2.dev or one of its subdomains.
  function isR2Dev(text) {
    var u;
    try { u = new URL(String(text).trim()); } catch (e) { return false; }
    var h = u.hostname.toLowerCase().replace(/\.$/, '');
    return h === 'r2.dev' || h.slice(-7) === '.r2.dev';
  }

  // r2devWarnings shows the r2.dev warning under each text input whose
  // value is an r2.dev address.
  function r2devWarnings(form) {
    if (!form) { return; }
    form.querySelectorAll('.r2dev-warning').forEach(function (warn) {
      var el = document.getElementById('field-' + warn.id.slice('r2dev-'.length));
      var show = !!el && isR2Dev(el.value);
      if (show) { warn.textContent = form.dataset.r2devWarning || ''; }
      warn.hidden = !show;
    });
  }

  async function saveSettings(form) {
    clearToasts();
    clearErrors(form);
    var done = busy(document.getElementById('save'), 'Saving…');
    var r = await api('PUT', settingsBase(form) + '/settings', { values: collect(form) });
    if (r.ok) {
      await reloadStored(form);
      done();
      var problem = document.getElementById('settings-problem');
      toast(true, problem && !problem.hidden
        ? 'Settings saved. The provider cannot be used yet: see the warning at the top of the page.'
        : 'Settings saved');
      return;
    }
    done();
    showErrors(form, r.data.fields);
    toast(false, r.data.error);
  }

  async function testConnection(btn) {
    var form = document.getElementById('settings-form');
    clearToasts();
    clearErrors(form);
    var done = busy(btn, 'Testing…');
    var r = await api('POST', settingsBase(form) + '/test', { values: collect(form) });
    if (!r.ok) {
      done();
      showErrors(form, r.data.fields);
      toast(false, r.data.error);
      return;
    }
    await reloadStored(form); // the test saved the settings first
    done();
    var msg = sentence(r.data.message || (r.data.ok ? 'Connection successful' : 'The connection test failed at step ' + r.data.step));
    // The test saves before it probes: say so unless the host already did
    // (an older host does not send "saved", but it saved too).
    if (r.data.saved !== false && !/\bsaved\b/i.test(msg)) {
      msg = msg.replace(/[.\s]*$/, '.') + (r.data.ok ? ' Your settings were saved.' : ' Your settings were saved anyway: fix what the test reports and test again.');
    }
    toast(!!r.data.ok, msg);
  }

  // ---- Default Storage ----

  async function saveStorage(form) {
    var select = document.getElementById('default-storage');
    clearToasts();
    var done = busy(document.getElementById('save-storage'), 'Saving…');
    var r = await api('PUT', '/api/v1/admin/storage', { default: select.value });
    if (r.ok) {
      var name = select.options[select.selectedIndex] ? select.options[select.selectedIndex].textContent.trim() : select.value;
      await refresh(true, 'Default Storage saved: new results are stored on ' + name + '.');
      return;
    }
    done();
    toast(false, r.data.error);
  }

  // retry puts a provider's failed uploads back in the queue.
  async function retry(b) {
    clearToasts();
    var done = busy(b, 'Retrying…');
    var r = await api('POST', '/api/v1/admin/storage/' + encodeURIComponent(b.dataset.id) + '/retry');
    if (r.ok) {
      var n = Number(r.data.retried) || 0;
      await refresh(true, n === 1 ? '1 failed upload to ' + b.dataset.name + ' is queued again.' : n + ' failed uploads to ' + b.dataset.name + ' are queued again.');
      return;
    }
    done();
    toast(false, r.data.error);
  }

  // ---- Results ----

  // demoPNG draws a 256×256 gradient with the time on it and resolves to a PNG blob.
  function demoPNG() {
    return new Promise(function (resolve, reject) {
      var c = document.createElement('canvas');
      c.width = 256;
      c.height = 256;
      var g = c.getContext('2d');
      if (!g) { reject(new Error('no 2D canvas')); return; }
      var hue = Math.floor(Math.random() * 360);
      var grad = g.createLinearGradient(0, 0, 256, 256);
      grad.addColorStop(0, 'hsl(' + hue + ', 80%, 55%)');
      grad.addColorStop(1, 'hsl(' + ((hue + 140) % 360) + ', 75%, 40%)');
      g.fillStyle = grad;
      g.fillRect(0, 0, 256, 256);
      var now = new Date();
      g.fillStyle = '#ffffff';
      g.textAlign = 'center';
      g.textBaseline = 'middle';
      g.font = 'bold 22px sans-serif';
      g.fillText('MagicAds demo', 128, 96);
      g.font = 'bold 30px sans-serif';
      g.fillText(now.toLocaleTimeString(), 128, 138);
      g.font = '15px sans-serif';
      g.fillText(now.toISOString().slice(0, 10), 128, 176);
      c.toBlob(function (b) {
        if (b) { resolve(b); } else { reject(new Error('the canvas gave no PNG')); }
      }, 'image/png');
    });
  }

  // sendResult posts a result; the list is re-rendered with it first.
  async function sendResult(blob, filename, kind, generator, done) {
    var fd = new FormData();
    fd.append('kind', kind);
    fd.append('generator', generator);
    fd.append('file', blob, filename);
    var r = await api('POST', '/api/v1/results', fd);
    if (!r.ok) {
      done();
      toast(false, r.data.error);
      return;
    }
    var msg = 'Stored ' + r.data.path;
    if (location.search) { reloadWith(true, msg + '.', location.pathname); return; } // back to the newest page
    await refresh(true, function () {
      var where = document.querySelector('#result-' + CSS.escape(String(r.data.id)) + ' .result-storage');
      return msg + ' on ' + (where ? where.textContent.trim() : r.data.storage) + '.';
    });
  }

  async function generate(btn) {
    clearToasts();
    var done = busy(btn, 'Generating…');
    var blob;
    try { blob = await demoPNG(); } catch (e) {
      done();
      toast(false, 'The browser could not draw the demo image: ' + e.message);
      return;
    }
    await sendResult(blob, 'demo.png', 'images', 'demo', done);
  }

  async function upload() {
    var file = document.getElementById('upload-file');
    var f = file.files && file.files[0];
    clearToasts();
    if (!f) { toast(false, 'Choose a file to upload'); return; }
    var done = busy(document.getElementById('upload'), 'Uploading…');
    await sendResult(f, f.name, document.getElementById('upload-kind').value, document.getElementById('upload-generator').value, done);
  }

  async function deleteResult(b) {
    var msg = b.dataset.confirm || 'Delete this result? This cannot be undone.';
    if (!(await confirmAction('Delete this result?', msg, 'Delete'))) { return; }
    clearToasts();
    var done = busy(b, 'Deleting…');
    var r = await api('DELETE', '/api/v1/results/' + encodeURIComponent(b.dataset.id));
    if (r.ok) { await refresh(true, 'Result deleted'); return; }
    done();
    toast(false, r.data.error);
  }


  // ---- Storage overview: failed jobs and bulk offload / bring back ----

  async function retryJob(b) {
    clearToasts();
    var done = busy(b, 'Retrying…');
    var r = await api('POST', '/api/v1/admin/storage/jobs/' + encodeURIComponent(b.dataset.job) + '/retry');
    if (r.ok) { await refresh(true, 'The failed job is queued again.'); return; }
    done();
    toast(false, r.data.error);
  }

  // humanBytes formats a byte count as the server does.
  function humanBytes(n) {
    n = Number(n) || 0;
    if (n < 1024) { return n + ' B'; }
    var units = 'KMGTPE';
    var i = -1;
    do { n /= 1024; i++; } while (n >= 1024 && i < units.length - 1);
    return n.toFixed(1) + ' ' + units.charAt(i) + 'iB';
  }

  // humanSeconds formats a duration.
  function humanSeconds(s) {
    s = Math.max(0, Math.round(Number(s) || 0));
    if (s < 60) { return s + ' s'; }
    if (s < 3600) { return Math.floor(s / 60) + ' min ' + (s % 60) + ' s'; }
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  // bulkRequest is the dry run shown, ready to start.
  var bulkRequest = null;
  // bulkRun is the latest state of the run being watched.
  var bulkRun = null;
  var bulkTimer = null;
  var POLL_MS = 1000;

  async function bulkPlan(b) {
    clearToasts();
    var req = { direction: b.dataset.direction, provider: b.dataset.provider };
    var done = busy(b, 'Checking…');
    var r = await api('POST', '/api/v1/admin/storage/bulk', { direction: req.direction, provider: req.provider, dry_run: true });
    done();
    if (!r.ok) { toast(false, r.data.error); return; }
    var plan = r.data;
    bulkRequest = req;
    var moved = req.direction === 'offload' ? plan.total : plan.download;
    var what = req.direction === 'offload'
      ? 'Offload ' + plan.total.results + ' results (' + humanBytes(plan.total.bytes) + ') to ' + b.dataset.name + '.'
      : 'Bring back ' + plan.total.results + ' results from ' + b.dataset.name + ', downloading ' + moved.results + ' (' + humanBytes(moved.bytes) + ').';
    var eta = plan.estimated_seconds == null ? ' Estimated time: unknown until something was moved (' + plan.note + ').' : ' Estimated time: about ' + humanSeconds(plan.estimated_seconds) + '.';
    document.getElementById('bulk-plan-text').textContent = 'Dry run: ' + what + eta;
    var start = document.getElementById('bulk-start');
    start.textContent = req.direction === 'offload' ? 'Start offload' : 'Start bring back';
    start.disabled = plan.total.results === 0;
    document.getElementById('bulk-plan').hidden = false;
    document.getElementById('bulk-panel').scrollIntoView({ block: 'nearest' });
  }

  async function bulkStart(b) {
    if (!bulkRequest) { return; }
    clearToasts();
    var done = busy(b, 'Starting…');
    var r = await api('POST', '/api/v1/admin/storage/bulk', bulkRequest);
    done();
    if (!r.ok) { toast(false, r.data.error); return; }
    bulkRequest = null;
    document.getElementById('bulk-plan').hidden = true;
    watchRun(r.data);
  }

  // renderRun shows run in the progress panel.
  function renderRun(run) {
    var box = document.getElementById('bulk-run');
    if (!box || !run) { return; }
    var total = run.total.results;
    var handled = total - run.remaining.results;
    var pct = total > 0 ? Math.floor(handled * 100 / total) : 100;
    box.hidden = false;
    document.getElementById('bulk-panel').dataset.run = String(run.id);
    document.getElementById('bulk-panel').dataset.state = run.state;
    var named = document.querySelector('button[data-action="bulk-plan"][data-provider="' + CSS.escape(run.provider) + '"]');
    var name = named ? named.dataset.name : run.provider;
    document.getElementById('bulk-title').textContent = (run.direction === 'offload' ? 'Offloading to ' : 'Bringing back from ') + name;
    var bar = document.getElementById('bulk-progress');
    bar.value = pct;
    bar.textContent = pct + ' %';
    document.getElementById('bulk-percent').textContent = pct + ' %';
    document.getElementById('bulk-count').textContent = handled + ' of ' + total + ' results (' + run.done.results + ' done, ' + run.failed.results + ' failed, ' + run.skipped.results + ' skipped)';
    document.getElementById('bulk-state').textContent = run.state;
    document.getElementById('bulk-rate').textContent = run.rate ? humanBytes(run.rate.bytes_per_second) + '/s, ' + run.rate.results_per_second.toFixed(1) + ' results/s' : 'rate unknown yet';
    document.getElementById('bulk-eta').textContent = run.eta_seconds != null ? 'ETA ' + humanSeconds(run.eta_seconds) : (run.state === 'done' ? 'finished' : 'ETA unknown');
    var waiting = document.getElementById('bulk-waiting');
    waiting.textContent = run.waiting ? sentence(run.waiting) : '';
    waiting.hidden = !run.waiting;
    var active = run.state === 'running' || run.state === 'paused';
    document.getElementById('bulk-pause').hidden = run.state !== 'running';
    document.getElementById('bulk-resume').hidden = run.state !== 'paused';
    document.getElementById('bulk-cancel').hidden = !active;
  }

  // watchRun shows run and polls it until it is done or cancelled, then
  // re-renders the page's numbers.
  function watchRun(run) {
    bulkRun = run;
    renderRun(run);
    if (bulkTimer) { clearTimeout(bulkTimer); bulkTimer = null; }
    if (run.state === 'done' || run.state === 'cancelled') {
      refresh(true, function () {
        renderRun(bulkRun);
        return (run.direction === 'offload' ? 'Offload ' : 'Bring back ') + run.state + ': ' + run.done.results + ' moved, ' + run.failed.results + ' failed.';
      });
      return;
    }
    bulkTimer = setTimeout(pollRun, POLL_MS);
  }

  async function pollRun() {
    bulkTimer = null;
    if (!bulkRun) { return; }
    var r = await api('GET', '/api/v1/admin/storage/bulk/' + encodeURIComponent(bulkRun.id));
    if (!r.ok) {
      toast(false, r.data.error);
      bulkTimer = setTimeout(pollRun, POLL_MS * 5);
      return;
    }
    watchRun(r.data);
  }

  async function bulkControl(b) {
    var panel = document.getElementById('bulk-panel');
    var id = panel && panel.dataset.run;
    if (!id) { return; }
    var op = b.dataset.op;
    if (op === 'cancel' && !(await confirmAction('Cancel this operation?', 'Results already moved stay where they are now; the rest stay where they were. Jobs running now finish.', 'Cancel operation'))) { return; }
    clearToasts();
    var done = busy(b, op === 'pause' ? 'Pausing…' : op === 'resume' ? 'Resuming…' : 'Cancelling…');
    var r = await api('POST', '/api/v1/admin/storage/bulk/' + encodeURIComponent(id) + '/' + op);
    done();
    if (!r.ok) { toast(false, r.data.error); return; }
    watchRun(r.data);
  }

  // startOverview watches the active run the page was rendered with, and
  // points at the bring back the URL's fragment names.
  function startOverview() {
    var panel = document.getElementById('bulk-panel');
    if (panel && panel.dataset.run) {
      bulkRun = { id: panel.dataset.run };
      pollRun();
    } else {
      var box = document.getElementById('bulk-run');
      if (box) { box.hidden = true; }
    }
    if (location.hash.indexOf('#bring-back-') === 0) {
      var b = document.getElementById(location.hash.slice(1));
      if (b) { b.scrollIntoView({ block: 'center' }); b.focus(); }
    }
  }

  // ---- Wiring (delegated, so re-rendered content needs no re-binding) ----

  document.addEventListener('click', function (ev) {
    var t = ev.target instanceof Element ? ev.target : null;
    if (!t) { return; }
    var el;
    if ((el = t.closest('#logout'))) { logout(el); return; }
    if ((el = t.closest('a[data-action="buy"]'))) { buy(el, ev); return; }
    if ((el = t.closest('button[data-action="install"], button[data-action="update"]'))) { install(el); return; }
    if ((el = t.closest('button[data-action="uninstall"]'))) { uninstall(el); return; }
    if ((el = t.closest('#test-connection'))) { testConnection(el); return; }
    if ((el = t.closest('#generate'))) { generate(el); return; }
    if ((el = t.closest('button.result-delete'))) { deleteResult(el); return; }
    if ((el = t.closest('button[data-action="retry-job"]'))) { retryJob(el); return; }
    if ((el = t.closest('button[data-action="bulk-plan"]'))) { bulkPlan(el); return; }
    if ((el = t.closest('button[data-action="bulk-start"]'))) { bulkStart(el); return; }
    if ((el = t.closest('button[data-action="bulk-control"]'))) { bulkControl(el); return; }
    if ((el = t.closest('button[data-action="retry"]'))) { retry(el); }
  });

  document.addEventListener('submit', function (ev) {
    var f = ev.target;
    if (f.id === 'settings-form') { ev.preventDefault(); saveSettings(f); }
    if (f.id === 'storage-form') { ev.preventDefault(); saveStorage(f); }
    if (f.id === 'upload-form') { ev.preventDefault(); upload(); }
  });

  // Editing the config form re-checks the secret warnings.
  ['input', 'change'].forEach(function (type) {
    document.addEventListener(type, function (ev) {
      var form = ev.target instanceof Element ? ev.target.closest('#settings-form') : null;
      if (form) { secretWarnings(form); r2devWarnings(form); }
    });
  });

  document.addEventListener('change', function (ev) {
    var el = ev.target;
    if (el.id !== 'upload-file') { return; }
    var f = el.files && el.files[0];
    var kind = document.getElementById('upload-kind');
    if (f && f.type && kind) { kind.value = f.type.indexOf('video/') === 0 ? 'videos' : 'images'; }
  });

  showFlash();
  decorate();
  if (page === 'plugins') { recordReceipt(); }
  if (page === 'overview') { startOverview(); }
  if (page === 'config') {
    secretWarnings(document.getElementById('settings-form'));
    r2devWarnings(document.getElementById('settings-form'));
  }
})();
