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
