"""The web page served at `/`: price one description, or a file of them (CSV, TSV, JSON Lines, JSON, .xlsx).

Self-contained (no CDN, no external font or script), so it works offline. It talks to the same
app: `POST /price` for one description, `POST /price/file` for a file, which the browser reads and
sends as text and gets back priced, to download. When the service has an API key, the page asks for
it and keeps it in the page's memory only.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pricetune</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: system-ui, sans-serif; max-width: 760px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: .2em; } .sub { color: #666; margin-top: 0; }
textarea { width: 100%; min-height: 9em; font: inherit; padding: .5em; box-sizing: border-box; }
button { font: inherit; padding: .45em 1.2em; margin-top: .5em; cursor: pointer; }
#price { font-size: 2.2em; font-weight: 600; margin: .4em 0; min-height: 1.2em; }
.error { color: #b00020; } .muted { color: #666; font-size: .9em; }
section { border-top: 1px solid #ddd; margin-top: 1.6em; padding-top: 1em; }
input[type=password] { font: inherit; padding: .3em; width: 22em; }
#alikes li { margin: .3em 0; } #alikes .t { color: #444; }
</style></head><body>
<h1>pricetune</h1>
<p class="sub">Price a product from its description with <b id="model">__MODEL__</b>.</p>
<div id="keybox" hidden><label>API key <input id="key" type="password" autocomplete="off"></label></div>
<form id="one">
<label for="description">Description</label>
<textarea id="description" placeholder="Title: ...&#10;Category: ...&#10;Description: ..."></textarea>
<button id="go" type="submit">Price it</button>
</form>
<div id="price" aria-live="polite"></div>
<div id="why" class="muted"></div>
<div id="alike" hidden><h2>Similar training items</h2>
<p class="muted">The items the model trained on that read most like this one, with their prices.</p>
<ol id="alikes"></ol></div>
<section>
<h2>A file of descriptions</h2>
<p class="muted">CSV (comma or semicolon), TSV, JSON Lines, a JSON list or an .xlsx workbook: each row's <code>prompt</code> or <code>text</code>, else its
catalog columns (<code>title</code>, <code>category</code>, <code>brand</code>, <code>description</code>, ...) read
together. You get the same file back, in its format, with a <code>price</code> column (and <code>error</code> where an item could
not be priced).</p>
<input id="file" type="file" accept=".csv,.tsv,.jsonl,.json,.xlsx,text/csv">
<button id="gofile" type="button">Price the file</button>
<div id="filestatus" class="muted"></div>
<a id="download" hidden>Download the priced file</a>
</section>
<script>
const needsKey = __NEEDS_KEY__;
const RANGES = __RANGES__;
const SIMILAR = __SIMILAR__;
if (needsKey) document.getElementById('keybox').hidden = false;
function headers() {
  const h = {'Content-Type': 'application/json'};
  const k = document.getElementById('key').value;
  if (k) h['Authorization'] = 'Bearer ' + k;
  return h;
}
async function call(path, payload) {
  const r = await fetch(path, {method: 'POST', headers: headers(), body: JSON.stringify(payload)});
  let body = {};
  try { body = await r.json(); } catch (e) {}
  if (!r.ok) throw new Error(body.detail || body.error || ('HTTP ' + r.status));
  return body;
}
function showAlikes(items) {
  // text nodes only: the items' text is data, never markup
  const list = document.getElementById('alikes');
  list.replaceChildren();
  for (const a of items) {
    const li = document.createElement('li'), t = document.createElement('span');
    li.textContent = money(a.price) + ' (similarity ' + a.similarity.toFixed(2) + ') ';
    t.className = 't'; t.textContent = a.text.replace(/\s+/g, ' ').slice(0, 160);
    li.appendChild(t); list.appendChild(li);
  }
  document.getElementById('alike').hidden = items.length === 0;
}
const money = p => '$' + p.toLocaleString('en-US', {minimumFractionDigits: 2, maximumFractionDigits: 2});
document.getElementById('one').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const out = document.getElementById('price'), why = document.getElementById('why');
  out.className = ''; out.textContent = '…'; why.textContent = '';
  try {
    const ask = {description: document.getElementById('description').value};
    if (RANGES) ask.interval = 0.8;
    if (SIMILAR) ask.similar = Math.min(SIMILAR, 5);
    document.getElementById('alike').hidden = true;
    const body = await call('/price', ask);
    showAlikes(body.similar || []);
    if (body.price === null) { out.className = 'error'; out.textContent = 'no price'; why.textContent = body.error || ''; }
    else {
      out.textContent = money(body.price);
      if (body.low !== undefined && body.low !== null)
        why.textContent = '80% range: ' + money(body.low) + ' to ' + (body.high === null ? 'no limit' : money(body.high))
          + ' (it held the true price for 80% of validation items)';
    }
  } catch (e) { out.className = 'error'; out.textContent = 'error'; why.textContent = e.message; }
});
document.getElementById('gofile').addEventListener('click', async () => {
  const f = document.getElementById('file').files[0], status = document.getElementById('filestatus');
  const link = document.getElementById('download');
  link.hidden = true;
  if (!f) { status.textContent = 'choose a file first'; return; }
  status.textContent = 'pricing ' + f.name + ' …';
  try {
    const types = {csv: 'text/csv', tsv: 'text/tab-separated-values', json: 'application/json', jsonl: 'application/jsonl',
                   xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'};
    const ext = f.name.toLowerCase().split('.').pop(), format = Object.hasOwn(types, ext) ? ext : 'jsonl';
    if (['xls', 'ods'].includes(ext)) {
      status.textContent = 'an older workbook: save it as .xlsx or CSV first';
      return;
    }
    let content;
    if (format === 'xlsx') {  // a workbook travels as its bytes in base64
      const bytes = new Uint8Array(await f.arrayBuffer());
      let bin = '';
      for (let i = 0; i < bytes.length; i += 32768) bin += String.fromCharCode(...bytes.subarray(i, i + 32768));
      content = btoa(bin);
    } else {
      content = await f.text();
    }
    const body = await call('/price/file', {format, content});
    const data = format === 'xlsx' ? Uint8Array.from(atob(body.content), c => c.charCodeAt(0)) : body.content;
    const blob = new Blob([data], {type: types[format]});
    link.href = URL.createObjectURL(blob);
    link.download = f.name.replace(/(\\.[^.]*)?$/, '-priced$1');
    link.hidden = false;
    status.textContent = body.priced + ' priced, ' + body.failed + ' without a price'
      + (body.note ? '. Note: ' + body.note : '');
  } catch (e) { status.textContent = 'error: ' + e.message; }
});
</script>
</body></html>
"""


def render(model: str, needs_key: bool, ranges: bool = False, similar: int = 0) -> str:
    """The page; `ranges`: the model is calibrated, so the page asks for an 80% range with each price;
    `similar`: the service shows look-alike training items, and the page lists up to 5."""
    import html
    import json

    return (PAGE.replace("__MODEL__", html.escape(model)).replace("__NEEDS_KEY__", json.dumps(needs_key))
            .replace("__RANGES__", json.dumps(ranges)).replace("__SIMILAR__", json.dumps(similar)))
