// coffer dashboard: progressive enhancement only (every page works as
// server-rendered HTML; this adds reveal/copy/auto-hide, the share-by-share
// init ceremony, share-field masking and the unseal progress poll).
// Rules: no value is in a page before its reveal; a revealed value is
// masked again after 30 s; no eval, no inline script, no third party.
(function () {
  'use strict';
  var HIDE_MS = 30000;

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute('content') : '';
  }

  // Controls that only work with script are rendered hidden.
  document.querySelectorAll('[data-js]').forEach(function (el) {
    el.hidden = false;
  });

  // Masked inputs: a show/hide toggle.
  document.querySelectorAll('button.toggle-mask').forEach(function (btn) {
    var input = document.getElementById(btn.getAttribute('aria-controls'));
    if (!input) { return; }
    btn.addEventListener('click', function () {
      var show = input.type === 'password';
      input.type = show ? 'text' : 'password';
      btn.textContent = show ? 'Hide' : 'Show';
      btn.setAttribute('aria-pressed', show ? 'true' : 'false');
    });
  });

  // Reveal one value on demand; copy; mask again after 30 s.
  document.querySelectorAll('tr[data-reveal]').forEach(function (row) {
    var btn = row.querySelector('button.reveal');
    var copy = row.querySelector('button.copy');
    var out = row.querySelector('.value');
    var timer = null;
    var masked = out.textContent;
    function hide() {
      if (timer) { clearTimeout(timer); timer = null; }
      out.textContent = masked;
      out.classList.add('masked');
      btn.textContent = 'Reveal';
      btn.setAttribute('aria-pressed', 'false');
      copy.hidden = true;
    }
    btn.addEventListener('click', function () {
      if (timer) { hide(); return; }
      btn.disabled = true;
      fetch(row.getAttribute('data-reveal'), {
        method: 'POST',
        credentials: 'same-origin',
        cache: 'no-store',
        headers: { 'X-CSRF-Token': csrf(), 'Accept': 'application/json' }
      }).then(function (r) {
        var json = (r.headers.get('Content-Type') || '').indexOf('application/json') === 0;
        if (!json) {
          return { ok: false, body: { message: 'your session has ended: reload the page to log in again' } };
        }
        return r.json().then(function (b) { return { ok: r.ok, body: b }; });
      }).then(function (res) {
        btn.disabled = false;
        if (!res.ok) {
          out.textContent = res.body.message || 'refused';
          return;
        }
        out.textContent = res.body.value;
        out.classList.remove('masked');
        btn.textContent = 'Hide';
        btn.setAttribute('aria-pressed', 'true');
        copy.hidden = false;
        timer = setTimeout(hide, HIDE_MS);
      }).catch(function () {
        btn.disabled = false;
        out.textContent = 'the server did not answer';
      });
    });
    copy.addEventListener('click', function () {
      if (timer && navigator.clipboard) {
        navigator.clipboard.writeText(out.textContent).then(function () {
          copy.textContent = 'Copied';
          setTimeout(function () { copy.textContent = 'Copy'; }, 2000);
        });
      }
    });
  });

  // Init ceremony: one step (share, then root token) at a time; "I stored
  // it" removes the step from the page and shows the next.
  var steps = Array.prototype.slice.call(document.querySelectorAll('.ceremony .step'));
  if (steps.length) {
    var done = document.getElementById('ceremony-done');
    steps.forEach(function (s, i) { s.hidden = i !== 0; });
    if (done) { done.hidden = true; }
    steps.forEach(function (s, i) {
      var stored = s.querySelector('button.stored');
      var copyBtn = s.querySelector('button.copy');
      var value = s.querySelector('.secret-value');
      if (copyBtn && value) {
        copyBtn.addEventListener('click', function () {
          if (navigator.clipboard) { navigator.clipboard.writeText(value.textContent); }
        });
      }
      stored.addEventListener('click', function () {
        s.remove();
        if (i + 1 < steps.length) {
          steps[i + 1].hidden = false;
          var next = steps[i + 1].querySelector('button.stored');
          if (next) { next.focus(); }
        } else if (done) {
          done.hidden = false;
          var link = done.querySelector('a');
          if (link) { link.focus(); }
        }
      });
    });
  }

  // Unseal page: follow other custodians' shares; move on once unsealed.
  var poll = document.querySelector('[data-seal-progress]');
  if (poll) {
    var seen = poll.getAttribute('data-seal-progress');
    setInterval(function () {
      fetch('/v1/sys/seal-status', { cache: 'no-store', credentials: 'omit' })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          if (s.sealed === false) { window.location.assign('/ui'); }
          else if (String(s.progress) !== seen) { window.location.reload(); }
        }).catch(function () {});
    }, 3000);
  }
}());

// --- access ---
// "Copy" next to a value shown once (a new token): copies the text of the
// element named by data-copy.
(function () {
  'use strict';
  document.querySelectorAll('button.copy-once[data-copy]').forEach(function (btn) {
    var src = document.getElementById(btn.getAttribute('data-copy'));
    if (!src) { return; }
    btn.addEventListener('click', function () {
      if (!navigator.clipboard) { return; }
      navigator.clipboard.writeText(src.textContent).then(function () {
        btn.textContent = 'Copied';
        setTimeout(function () { btn.textContent = 'Copy'; }, 2000);
      });
    });
  });
}());

// --- edit ---
// The Edit area (ui/edit.rs): type-aware value controls, validation as you
// type (JSON here, YAML by a debounced check on the server), revealing the
// current value into the field on demand, a file read into the import text
// area, and the history page's value diff (a reveal of both versions).
(function () {
  'use strict';
  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute('content') : '';
  }
  function postJson(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { 'X-CSRF-Token': csrf(), 'Accept': 'application/json', 'Content-Type': 'application/json' },
      body: body === undefined ? '' : JSON.stringify(body)
    }).then(function (r) {
      var json = (r.headers.get('Content-Type') || '').indexOf('application/json') === 0;
      if (!json) {
        return { ok: false, body: { message: 'your session has ended: reload the page to log in again' } };
      }
      return r.json().then(function (b) { return { ok: r.ok, body: b }; });
    });
  }

  var form = document.getElementById('secret-form');
  if (form) {
    var typeSel = document.getElementById('value_type');
    var check = document.getElementById('value-check');
    var controls = Array.prototype.slice.call(form.querySelectorAll('.value-control'));
    var timer = null;
    var seq = 0;
    function active() {
      var t = typeSel.value;
      var found = null;
      controls.forEach(function (c) {
        var on = (' ' + c.getAttribute('data-types') + ' ').indexOf(' ' + t + ' ') >= 0;
        c.hidden = !on;
        var input = c.querySelector('input, textarea, select');
        input.disabled = !on;
        if (on) { found = input; }
      });
      return found;
    }
    function report(input, message) {
      input.setCustomValidity(message);
      check.textContent = message;
      check.classList.toggle('error', message !== '');
    }
    function validate() {
      var input = active();
      if (!input) { return; }
      var t = typeSel.value;
      var v = input.value;
      if (timer) { clearTimeout(timer); timer = null; }
      if (v === '' || (t !== 'json' && t !== 'yaml')) { report(input, ''); return; }
      if (t === 'json') {
        try { JSON.parse(v); report(input, ''); } catch (e) {
          report(input, 'not valid JSON: ' + e.message.replace(/"[^"]*"/g, '…'));
        }
        return;
      }
      var mine = ++seq;
      check.textContent = 'checking…';
      timer = setTimeout(function () {
        postJson(form.getAttribute('data-validate'), { type: t, value: v }).then(function (res) {
          if (mine !== seq) { return; }
          if (!res.ok) { report(input, ''); check.textContent = res.body.message || ''; return; }
          report(input, res.body.valid ? '' : res.body.message);
        }).catch(function () { if (mine === seq) { check.textContent = ''; } });
      }, 300);
    }
    typeSel.addEventListener('change', function () { active(); validate(); });
    controls.forEach(function (c) {
      var input = c.querySelector('input, textarea, select');
      input.addEventListener('input', validate);
      input.addEventListener('change', validate);
    });
    active();

    var revealBtn = document.getElementById('reveal-into');
    if (revealBtn) {
      revealBtn.addEventListener('click', function () {
        revealBtn.disabled = true;
        postJson(revealBtn.getAttribute('data-reveal')).then(function (res) {
          revealBtn.disabled = false;
          if (!res.ok) { check.textContent = res.body.message || 'refused'; return; }
          var input = active();
          input.value = res.body.value;
          validate();
        }).catch(function () {
          revealBtn.disabled = false;
          check.textContent = 'the server did not answer';
        });
      });
    }
  }

  var file = document.getElementById('import-file');
  if (file) {
    file.addEventListener('change', function () {
      var f = file.files && file.files[0];
      if (!f) { return; }
      var name = f.name.toLowerCase();
      var fmt = document.getElementById('import-format');
      if (/\.json$/.test(name)) { fmt.value = 'json'; }
      else if (/\.ya?ml$/.test(name)) { fmt.value = 'yaml'; }
      else { fmt.value = 'env'; }
      var reader = new FileReader();
      reader.onload = function () { document.getElementById('import-content').value = reader.result; };
      reader.readAsText(f);
    });
  }

  var diffBtn = document.getElementById('diff-values');
  if (diffBtn) {
    var out = document.getElementById('value-diff');
    diffBtn.addEventListener('click', function () {
      diffBtn.disabled = true;
      postJson(diffBtn.getAttribute('data-url'), {
        a: Number(diffBtn.getAttribute('data-a')),
        b: Number(diffBtn.getAttribute('data-b'))
      }).then(function (res) {
        diffBtn.disabled = false;
        out.textContent = '';
        if (!res.ok) {
          var p = document.createElement('p');
          p.className = 'error';
          p.textContent = res.body.message || 'refused';
          out.appendChild(p);
          return;
        }
        var pre = document.createElement('pre');
        pre.className = 'diff';
        res.body.lines.forEach(function (l) {
          var line = document.createElement('span');
          line.className = l.op === '+' ? 'add' : (l.op === '-' ? 'del' : 'same');
          line.textContent = l.op + ' ' + l.text + '\n';
          pre.appendChild(line);
        });
        out.appendChild(pre);
      }).catch(function () {
        diffBtn.disabled = false;
        out.textContent = 'the server did not answer';
      });
    });
  }
}());

/* === share links === */
// The /s/<id> page (ui/shares.rs, docs/share-links.md): nothing is fetched
// until "Reveal" is clicked (link unfurlers burn no view). The key is the
// URL fragment (#k=<key>[&p=1]), which the browser never sends; it is
// dropped from the address bar at once. The server answers the ciphertext
// and the key derivation; decryption happens here with WebCrypto
// (AES-256-GCM). With a passphrase the content key is HMAC-SHA256(key,
// "coffer-share-v1 passphrase\0" || argon2id(passphrase)), argon2id from the
// vendored hash-wasm build, loaded (with its integrity) only then. Must
// match src/crypto/share.rs byte for byte.
(function () {
  'use strict';
  var box = document.getElementById('share-open');
  if (!box || !window.crypto || !window.crypto.subtle) { return; }
  var btn = document.getElementById('share-reveal');
  var errEl = document.getElementById('share-error');
  var passRow = document.getElementById('share-pass-row');
  var passIn = document.getElementById('share-passphrase');
  var result = document.getElementById('share-result');
  var out = document.getElementById('share-value');
  var id = decodeURIComponent(location.pathname.replace(/^\/s\//, ''));
  var frag = {};
  location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
    var i = kv.indexOf('=');
    if (i > 0) { frag[kv.slice(0, i)] = kv.slice(i + 1); }
  });
  if (location.hash) { history.replaceState(null, '', location.pathname); }
  // Another link pasted into this tab differs in the fragment only: no
  // new page load would read its key, so load it afresh.
  window.addEventListener('hashchange', function () { location.reload(); });
  function fail(msg) {
    errEl.textContent = msg;
    errEl.hidden = false;
  }
  function b64url(s) {
    s = s.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) { s += '='; }
    return b64(s);
  }
  function b64(s) {
    var bin = atob(s);
    var a = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { a[i] = bin.charCodeAt(i); }
    return a;
  }
  var key;
  try { key = frag.k ? b64url(frag.k) : null; } catch (e) { key = null; }
  if (!key || key.length !== 32) {
    btn.hidden = true;
    fail('This link is incomplete: the key after # is missing or damaged. Ask for the whole link.');
    return;
  }
  var needsPass = frag.p === '1';
  if (needsPass) { passRow.hidden = false; }
  var enc = new TextEncoder();

  function loadArgon2() {
    if (window.hashwasm && window.hashwasm.argon2id) { return Promise.resolve(window.hashwasm); }
    return new Promise(function (resolve, reject) {
      var s = document.createElement('script');
      s.src = box.getAttribute('data-argon2');
      s.integrity = box.getAttribute('data-argon2-integrity');
      s.onload = function () { resolve(window.hashwasm); };
      s.onerror = function () { reject(new Error('argon2')); };
      document.head.appendChild(s);
    });
  }

  function contentKey(kdf, passphrase, argon2) {
    if (kdf === 'none') { return Promise.resolve(key); }
    var m = /^argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9_-]+)$/.exec(kdf);
    if (!m || !argon2) { return Promise.reject(new Error('kdf')); }
    return argon2.argon2id({
      password: passphrase,
      salt: b64url(m[4]),
      memorySize: Number(m[1]),
      iterations: Number(m[2]),
      parallelism: Number(m[3]),
      hashLength: 32,
      outputType: 'binary'
    }).then(function (stretched) {
      var info = enc.encode('coffer-share-v1 passphrase\u0000');
      var msg = new Uint8Array(info.length + stretched.length);
      msg.set(info, 0);
      msg.set(stretched, info.length);
      return crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
        .then(function (k) { return crypto.subtle.sign('HMAC', k, msg); })
        .then(function (sig) { return new Uint8Array(sig); });
    });
  }

  btn.addEventListener('click', function () {
    errEl.hidden = true;
    var passphrase = passIn ? passIn.value : '';
    if (needsPass && !passphrase) {
      fail('Type the passphrase first (the person who shared the link tells you it).');
      return;
    }
    btn.disabled = true;
    var argon2 = needsPass ? loadArgon2() : Promise.resolve(null);
    argon2.then(function (a2) {
      return fetch('/api/v1/shares/open', {
        method: 'POST',
        credentials: 'omit',
        cache: 'no-store',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ id: id })
      }).then(function (r) {
        return r.json().then(function (body) { return { status: r.status, body: body }; });
      }).then(function (res) {
        if (res.status !== 200) {
          btn.hidden = true;
          throw new Error(res.status === 404
            ? 'This link was already opened, has expired, or never existed.'
            : (res.body && res.body.message) || 'The server refused the link.');
        }
        var kdf = res.body.data.kdf;
        var blob = b64(res.body.data.ciphertext);
        btn.hidden = true;
        return contentKey(kdf, passphrase, a2).then(function (raw) {
          return crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['decrypt']);
        }).then(function (k) {
          if (blob.length < 29 || blob[0] !== 1) { throw new Error('format'); }
          return crypto.subtle.decrypt({
            name: 'AES-GCM',
            iv: blob.slice(1, 13),
            additionalData: enc.encode('coffer-share-v1|' + kdf),
            tagLength: 128
          }, k, blob.slice(13));
        }).catch(function () {
          throw new Error('The value could not be decrypted: wrong passphrase, or the link was altered. This view is used.');
        });
      });
    }).then(function (plain) {
      out.textContent = new TextDecoder().decode(plain);
      result.hidden = false;
      if (passRow) { passRow.hidden = true; }
    }).catch(function (e) {
      btn.disabled = false;
      fail(e && e.message && e.message.length > 12 ? e.message : 'Opening the link failed.');
    });
  });
}());
/* === end share links === */
