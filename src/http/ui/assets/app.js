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
